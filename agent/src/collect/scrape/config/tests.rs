use std::path::Path;

use super::*;
use crate::collect::probe::{ProbeConfig, ProbeMethod};
use crate::collect::scrape::relabel::Action;

/// An agent config with `top` among the top-level keys and `tables`
/// (`[[collect.*]]`) after the required `[aggregator]` table.
fn config(top: &str, tables: &str) -> Result<AgentConfig, Vec<String>> {
    let text = format!(
        "agent_id = \"a1\"\ninterval = \"10s\"\n{top}\n[aggregator]\n\
         endpoints = [\"127.0.0.1:1\"]\nserver_name = \"localhost\"\n\
         ca = \"c\"\ncert = \"c\"\nkey = \"k\"\nsigning_key = \"s\"\n{tables}\n"
    );
    AgentConfig::from_toml(&text, Path::new("/etc/vigil")).map_err(|e| e.problems())
}

#[test]
fn an_api_host_scrapes_its_service_by_default() {
    let api = config("roles = [\"db\", \"api\"]", "").expect("valid");
    let defaults = scrapes(&api);
    assert_eq!(defaults, [ScrapeConfig::new("api", DEFAULT_API_URL)]);
    assert_eq!(defaults[0].role, "api");
    assert_eq!(defaults[0].url, "http://127.0.0.1:8000/metrics");

    assert!(scrapes(&config("roles = [\"db\"]", "").expect("valid")).is_empty());
    let own = config(
        "roles = [\"api\"]",
        "[[collect.scrape]]\nname = \"svc\"\nurl = \"http://127.0.0.1:9100/metrics\"",
    )
    .expect("valid");
    let names: Vec<String> = scrapes(&own).into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["svc"], "a configured scrape replaces the default");
}

#[test]
fn scrape_and_probe_tables_parse_with_defaults() {
    let c = config(
        "",
        "[[collect.scrape]]\nname = \"ml\"\nurl = \"https://ml:9000/m\"\nca_file = \"ca.crt\"\n\
         interval = \"30s\"\nbearer_token = \"t\"\n\
         [[collect.scrape.relabel]]\naction = \"keep\"\nsource_labels = [\"__name__\"]\n\
         regex = \"model_.*\"\n\
         [[collect.probe]]\nname = \"site\"\nurl = \"https://example.com/\"\nmethod = \"HEAD\"\n\
         expected_status = [200, 301]\ntimeout = \"2s\"",
    )
    .expect("valid");
    let s = &c.collect.scrape[0];
    assert_eq!(s.ca_file.as_deref(), Some(Path::new("/etc/vigil/ca.crt")));
    assert_eq!(
        (s.role.as_str(), s.interval),
        ("api", Some(Duration::from_secs(30)))
    );
    assert_eq!(
        (s.timeout, s.max_body_bytes),
        (Duration::from_secs(5), 10 << 20)
    );
    assert_eq!(
        (s.relabel[0].action, s.relabel[0].separator.as_str()),
        (Action::Keep, ";")
    );
    let p = &c.collect.probe[0];
    assert_eq!(p.method, ProbeMethod::Head);
    assert_eq!(p.expected_status, [200, 301]);
    assert_eq!(p.timeout, Duration::from_secs(2));
}

#[test]
fn every_scrape_and_probe_problem_is_listed_with_the_others() {
    let found = config(
        "max_batch_samples = 0",
        "[[collect.scrape]]\nname = \"api\"\nurl = \"ftp://x/\"\ntimeout = \"1ms\"\n\
         interval = \"1s\"\nmax_body_bytes = 10\nmax_series = 0\nrole = \"a b\"\n\
         bearer_token = \"t\"\nbasic_auth = { username = \"u\" }\n\
         [[collect.scrape.relabel]]\nsource_labels = [\"__name__\"]\nregex = \"(unclosed\"\n\
         target_label = \"x\"\n\
         [[collect.scrape.relabel]]\naction = \"drop\"\nregex = \"[z-a]\"\n\
         [[collect.scrape]]\nname = \"api\"\nurl = \"http://h/\"\n\
         [[collect.scrape]]\nname = \"system\"\nurl = \"http://h/\"\n\
         [[collect.probe]]\nname = \"\"\nurl = \"nope\"\nexpected_status = [999]\ntimeout = \"1h\"",
    )
    .expect_err("invalid");
    let expect = [
        "max_batch_samples: must be from 1",
        "collect.scrape[0].url: \"ftp://x/\": scheme \"ftp\" is not http or https",
        "collect.scrape[0].role: \"a b\" is not a valid role",
        "collect.scrape[0].timeout: 1ms is out of range",
        "collect.scrape[0].interval: 1s is out of range",
        "collect.scrape[0].max_body_bytes: must be from 1024",
        "collect.scrape[0].max_series: must be from 1",
        "collect.scrape[0]: set bearer_token or basic_auth, not both",
        "collect.scrape[0].relabel[0]: invalid regex \"(unclosed\": unclosed group",
        "collect.scrape[0].relabel[1]: invalid regex \"[z-a]\": invalid character class range",
        "collect.scrape[0].relabel[1]: Drop needs source_labels",
        "collect.scrape[1].name: \"api\" is used by another scrape or probe",
        "collect.scrape[2].name: \"system\" is the name of a built-in collector",
        "collect.probe[0].name: must not be empty",
        "collect.probe[0].url: \"nope\"",
        "collect.probe[0].timeout: 1h is out of range",
        "collect.probe[0].expected_status: 999 is not an HTTP status code",
    ];
    for e in expect {
        assert!(
            found.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    assert!(
        found.iter().all(|p| !p.contains('\n')),
        "one line each: {found:#?}"
    );
}

#[test]
fn ca_files_must_hold_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let mut c = config("", "").expect("valid");
    let mut scrape = ScrapeConfig::new("s", "https://h/");
    scrape.ca_file = Some(dir.path().join("missing.pem"));
    c.collect.scrape.push(scrape);
    let mut probe = ProbeConfig::new("p", "https://h/");
    probe.ca_file = Some(empty);
    c.collect.probe.push(probe);
    let found = file_problems(&c);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("collect.scrape[0].ca_file: "),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("collect.probe[0].ca_file: "),
        "{found:#?}"
    );
    vigil_certs::create_ca(dir.path(), "CA", 1, false).expect("ca");
    c.collect.scrape[0].ca_file = Some(vigil_certs::ca_paths(dir.path()).0);
    assert_eq!(file_problems(&c).len(), 1);
}
