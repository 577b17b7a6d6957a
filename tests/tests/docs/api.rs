//! docs/api.md against the OpenAPI document a real aggregator serves:
//! - every `curl` example calls an operation (method and path) of the
//!   document;
//! - the page's route table (`| method | path | scope | what |`) lists
//!   exactly the document's operations, with the scope each requires.

use std::collections::BTreeSet;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_agent::Agent;
use vigil_tests::{Db, TestAggregator};

use super::{code_blocks, read};

/// (method, path) of every `curl` command in the page's `sh` blocks.
fn curl_calls(md: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (info, body) in code_blocks(md) {
        if info != "sh" {
            continue;
        }
        // Join continuation lines; a newline inside quotes (a JSON body
        // over several lines) does not end a command.
        let joined = body.replace("\\\n", " ");
        let (mut single, mut double, mut comment) = (false, false, false);
        let mut line = String::new();
        for c in joined.chars().chain(['\n']) {
            if comment && c != '\n' {
                continue;
            }
            match c {
                '#' if !single && !double && (line.is_empty() || line.ends_with(' ')) => {
                    comment = true;
                    continue;
                }
                '\'' if !double => single = !single,
                '"' if !single => double = !double,
                '\n' if !single && !double => {
                    comment = false;
                    if let Some(start) = line.find("curl ") {
                        out.push(
                            parse_curl(&line[start..]).unwrap_or_else(|e| panic!("{e}: {line}")),
                        );
                    }
                    line.clear();
                    continue;
                }
                _ => {}
            }
            line.push(if c == '\n' { ' ' } else { c });
        }
    }
    out
}

/// The method and path of one `curl` command line.
fn parse_curl(cmd: &str) -> Result<(String, String), String> {
    // A command substitution's words (`$(date -d '7 days ago' +%s)`) are
    // not curl's.
    let mut plain = String::with_capacity(cmd.len());
    let mut depth = 0usize;
    let mut chars = cmd.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek() == Some(&'(') {
            chars.next();
            depth += 1;
            plain.push('X');
        } else if depth > 0 {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
        } else {
            plain.push(c);
        }
    }
    let words: Vec<&str> = plain.split_whitespace().collect();
    let mut method = None;
    let mut has_body = false;
    let mut get = false;
    let mut url = None;
    for (i, w) in words.iter().enumerate() {
        match *w {
            "-X" | "--request" => method = words.get(i + 1).map(|m| m.to_uppercase()),
            "-d" | "--data" | "--data-raw" | "--data-binary" | "--data-urlencode" | "-F"
            | "--json" | "-T" => has_body = true,
            // -G sends the -d data as a query string.
            "-G" | "--get" => get = true,
            _ => {}
        }
        let bare = w.trim_matches(|c| c == '"' || c == '\'');
        for base in ["$VIGIL", "http://127.0.0.1:8080"] {
            if let Some(rest) = bare.strip_prefix(base)
                && rest.starts_with('/')
                && url.is_none()
            {
                url = Some(rest.to_string());
            }
        }
    }
    let url = url.ok_or("no $VIGIL/... or http://127.0.0.1:8080/... URL")?;
    let path = url.split('?').next().unwrap_or_default().to_string();
    let method = method.unwrap_or(if has_body && !get { "POST" } else { "GET" }.into());
    Ok((method, path))
}

/// Whether a concrete path matches an OpenAPI path template.
fn matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

/// (METHOD, path, scope) of the page's route table.
fn table(md: &str) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    let mut in_table = false;
    for line in md.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() >= 4 && cells[..3] == ["method", "path", "scope"] {
            in_table = true;
            continue;
        }
        if in_table && !cells[0].starts_with("---") {
            for method in cells[0].split(',') {
                out.insert((
                    method.trim().to_string(),
                    cells[1].trim_matches('`').to_string(),
                    cells[2].to_string(),
                ));
            }
        }
    }
    out
}

fn scope_name(op: &Value) -> String {
    op.get("x-vigil-scope")
        .and_then(Value::as_str)
        .unwrap_or("none")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_md_examples_and_routes_match_the_served_openapi_document() {
    let agg = TestAggregator::start(Db::Sqlite).await;
    let token = agg.token().await;
    let client = reqwest::Client::new();
    let url = agg.url("/api/openapi.json");
    // As api.md says: the document needs a read token like the rest of the API.
    let anonymous = client.get(&url).send().await.expect("request");
    assert_eq!(anonymous.status(), 401);
    let doc: Value = client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    agg.stop().await;

    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            operations.insert((method.to_uppercase(), path.clone(), scope_name(op)));
        }
    }

    let md = read("docs/api.md");
    let calls = curl_calls(&md);
    assert!(
        calls.len() >= 15,
        "only {} curl examples found",
        calls.len()
    );
    let mut failures = Vec::new();
    for (method, path) in &calls {
        if !operations
            .iter()
            .any(|(m, t, _)| m == method && matches(t, path))
        {
            failures.push(format!("curl example {method} {path}: no such operation"));
        }
    }
    let documented = table(&md);
    for op in operations.difference(&documented) {
        failures.push(format!("served but not in the route table: {op:?}"));
    }
    for op in documented.difference(&operations) {
        failures.push(format!("in the route table but not served: {op:?}"));
    }
    assert!(
        failures.is_empty(),
        "docs/api.md disagrees with /api/openapi.json:\n- {}",
        failures.join("\n- ")
    );
}

/// Runs every `sh` block of api.md that calls curl, against a real aggregator
/// with data: curl is wrapped so each call logs its status. Placeholders
/// (`$ALERT_ID`, `$SILENCE_ID`, `$WINDOW_ID`) are ids that do not exist:
/// those calls must answer 404, every other one 2xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_md_examples_run_against_a_real_aggregator() {
    for tool in ["curl", "date"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is not installed: the api.md examples need it"
        );
    }
    let agg = TestAggregator::start(Db::Sqlite).await;
    let token = agg.token().await;
    // The host the examples ask about sends real data.
    agg.add_agent("web-1").await;
    let agent = Agent::start(agg.agent_config("web-1"))
        .await
        .expect("agent starts");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client
            .get(agg.url("/api/v1/hosts/web-1"))
            .bearer_auth(&token)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "web-1 never showed up ({status})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let md = read("docs/api.md");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("calls.log");
    let base = agg.url("");
    let prelude = format!(
        "VIGIL='{base}'; TOKEN='{token}'; ALERT_ID=none; SILENCE_ID=none; WINDOW_ID=none\n\
         curl() {{ code=$(command curl -sS -o /dev/null -w '%{{http_code}}' \"$@\"); \
         printf '%s\\t%s\\n' \"$code\" \"$(printf '%s' \"$*\" | tr '\\n' ' ')\" >> '{}'; }}\n\
         jq() {{ cat > /dev/null; }}\n",
        log.display()
    );
    let mut scripts = 0;
    for (info, body) in code_blocks(&md) {
        if info != "sh" || !body.contains("curl ") {
            continue;
        }
        let body = body
            .replace("http://127.0.0.1:8080", &base)
            .replace("$(cat vigil-data/admin.token)", &token);
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{prelude}{body}"))
            .current_dir(dir.path())
            .output()
            .expect("sh runs");
        assert!(
            out.status.success(),
            "an api.md block failed:\n{body}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        scripts += 1;
    }
    agent
        .shutdown(Duration::from_secs(5))
        .await
        .expect("agent stops");
    agg.stop().await;

    let calls = std::fs::read_to_string(&log).expect("calls were logged");
    let mut failures = Vec::new();
    let mut n = 0;
    for line in calls.lines() {
        n += 1;
        let (code, args) = line.split_once('\t').unwrap_or((line, ""));
        let placeholder = args.contains("/none");
        let ok = if placeholder {
            code == "404"
        } else {
            code.starts_with('2')
        };
        if !ok {
            failures.push(format!("{code}: curl {args}"));
        }
    }
    assert!(scripts >= 5, "only {scripts} blocks ran");
    assert_eq!(
        n,
        curl_calls(&md).len(),
        "every curl example ran once:\n{calls}"
    );
    assert!(
        failures.is_empty(),
        "api.md examples that do not work:\n- {}",
        failures.join("\n- ")
    );
}

#[test]
fn curl_lines_are_read_as_curl_reads_them() {
    assert_eq!(
        parse_curl("curl -H \"Authorization: Bearer $TOKEN\" \"$VIGIL/api/v1/hosts?x=1\""),
        Ok(("GET".into(), "/api/v1/hosts".into()))
    );
    assert_eq!(
        parse_curl("curl -sf -H 'x: y' -d '{}' $VIGIL/api/v1/silences"),
        Ok(("POST".into(), "/api/v1/silences".into()))
    );
    assert_eq!(
        parse_curl("curl -X DELETE http://127.0.0.1:8080/api/v1/silences/abc"),
        Ok(("DELETE".into(), "/api/v1/silences/abc".into()))
    );
    assert_eq!(
        parse_curl("curl -G -d step=5m \"$VIGIL/api/v1/reports/metrics\""),
        Ok(("GET".into(), "/api/v1/reports/metrics".into()))
    );
    assert_eq!(
        parse_curl("curl -H x \"$VIGIL/api/v1/reports/alerts?from=$(date -d '30 days ago' +%s)\""),
        Ok(("GET".into(), "/api/v1/reports/alerts".into()))
    );
    assert!(parse_curl("curl https://example.com/").is_err());
    let md = "```sh\n# it's a comment\ncurl -d '{\n \"a\": 1}' $VIGIL/api/v1/silences\ncurl $VIGIL/readyz # the aggregator's\n```\n";
    assert_eq!(
        curl_calls(md),
        [
            ("POST".to_string(), "/api/v1/silences".to_string()),
            ("GET".to_string(), "/readyz".to_string())
        ]
    );
    assert!(matches("/api/v1/silences/{id}", "/api/v1/silences/abc"));
    assert!(!matches("/api/v1/silences/{id}", "/api/v1/silences"));
    assert!(!matches("/api/v1/hosts", "/api/v1/hostsx"));
}
