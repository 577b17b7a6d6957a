//! docs/configuration.md against the config structs (the method is described
//! at the top of that page).
//!
//! Each file's part of the page starts with `<!-- config: ID -->`; in it, every
//! fenced `toml` / `yaml` block is a complete example of that file, and every
//! row of a `| key | type | default | meaning |` table documents one key by
//! its full path. For each file:
//!
//! 1. every example parses (and, where the code has one, passes the value
//!    checks) with the real parser, unknown keys included as errors;
//! 2. the documented keys equal the keys serde accepts, both ways
//!    (`walk::keys` over the examples);
//! 3. every documented key is set in some example, with a value of the
//!    documented type;
//! 4. the default: "required" means every example is refused without the
//!    key; a literal in backticks means an example without the key parses to
//!    exactly what it parses to with the key set to that literal (or is
//!    refused for the same reasons); anything else (prose) means some example
//!    is accepted without the key.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use vigil_agent::config::AgentConfig;
use vigil_aggregator::config::Config;
use vigil_aggregator::notify::config::{RawFile, parse_file};
use vigil_common::config::parse_toml;

use super::walk::{Keys, keys};
use super::{code_blocks, read};

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Toml,
    Yaml,
}

/// One config file the page documents.
struct File {
    id: &'static str,
    format: Format,
    keys: fn(&Value) -> Result<Keys, String>,
    /// The file's text parsed as the binary parses it: `Ok` holds the
    /// result's `Debug` text (to compare two parses), `Err` why it is refused.
    parse: fn(&str) -> Result<String, String>,
    /// Maps a path to the one the page documents it under (nested child
    /// routes are documented once, as `route.routes[].X`).
    normalize: fn(&str) -> String,
}

fn same(path: &str) -> String {
    path.to_string()
}

/// Child routes nest to any depth: `route.routes[].routes[].X` is documented
/// as `route.routes[].X`. `mute_time_intervals` (Alertmanager's older name)
/// holds the same entries as `time_intervals`.
fn notify_path(path: &str) -> String {
    // The root route accepts these keys only to refuse them (it takes every
    // alert): they are documented once, for child routes.
    for key in ["matchers", "match", "match_re", "continue"] {
        if path == format!("route.{key}") {
            return format!("route.routes[].{key}");
        }
    }
    let mut p = path.to_string();
    while p.contains("routes[].routes[]") {
        p = p.replace("routes[].routes[]", "routes[]");
    }
    match p.strip_prefix("mute_time_intervals[]") {
        Some(rest) => format!("time_intervals[]{rest}"),
        None => p,
    }
}

const FILES: &[File] = &[
    File {
        id: "agent",
        format: Format::Toml,
        keys: keys::<AgentConfig>,
        parse: |text| {
            // Values checked too (ranges, names, URLs), files not read.
            AgentConfig::from_toml(text, Path::new("/etc/vigil"))
                .map(|c| format!("{c:?}"))
                .map_err(|e| e.to_string())
        },
        normalize: same,
    },
    File {
        id: "aggregator",
        format: Format::Toml,
        keys: keys::<Config>,
        parse: |text| {
            // Parsed as `check-config` parses it; its value checks need the
            // certificates and rule files, which `deploy/` tests cover.
            let mut problems = Vec::new();
            match parse_toml::<Config>(text, &mut problems) {
                Some(c) if problems.is_empty() => Ok(format!("{c:?}")),
                _ => Err(problems.join("\n")),
            }
        },
        normalize: same,
    },
    File {
        id: "notify",
        format: Format::Yaml,
        keys: keys::<RawFile>,
        parse: |text| {
            parse_file(text, true)
                .map(|plan| format!("{plan:?}"))
                .map_err(|e| e.join("\n"))
        },
        normalize: notify_path,
    },
];

/// One documented key.
#[derive(Debug)]
struct Row {
    key: String,
    ty: String,
    default: String,
}

/// One file's part of the page.
struct Section {
    examples: Vec<Value>,
    texts: Vec<String>,
    rows: Vec<Row>,
}

fn section(md: &str, file: &File) -> Section {
    let marker = format!("<!-- config: {} -->", file.id);
    let start = md
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/configuration.md has no {marker}"));
    let rest = &md[start + marker.len()..];
    let text = &rest[..rest.find("<!-- config: ").unwrap_or(rest.len())];
    let lang = match file.format {
        Format::Toml => "toml",
        Format::Yaml => "yaml",
    };
    let texts: Vec<String> = code_blocks(text)
        .into_iter()
        .filter(|(info, _)| info == lang)
        .map(|(_, body)| body)
        .collect();
    assert!(!texts.is_empty(), "{}: no {lang} example", file.id);
    let examples = texts
        .iter()
        .map(|t| match file.format {
            Format::Toml => toml::from_str::<Value>(t)
                .unwrap_or_else(|e| panic!("{}: example is not TOML: {e}\n{t}", file.id)),
            Format::Yaml => serde_norway::from_str::<Value>(t)
                .unwrap_or_else(|e| panic!("{}: example is not YAML: {e}\n{t}", file.id)),
        })
        .collect();
    Section {
        examples,
        texts,
        rows: rows(text),
    }
}

/// The rows of every `| key | type | default | meaning |` table.
fn rows(md: &str) -> Vec<Row> {
    let mut out = Vec::new();
    let mut in_table = false;
    for line in md.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() >= 4 && cells[..4] == ["key", "type", "default", "meaning"] {
            in_table = true;
            continue;
        }
        if !in_table || cells[0].starts_with("---") {
            continue;
        }
        let key = cells[0].trim_matches('`');
        assert!(
            cells[0].starts_with('`') && !key.contains('`') && !key.is_empty(),
            "a key cell must be one `path`: {line}"
        );
        out.push(Row {
            key: key.to_string(),
            ty: cells[1].to_string(),
            default: cells[2].to_string(),
        });
    }
    out
}

/// One step of a concrete path: a key, then list indices (`a[1][0]`).
fn step(seg: &str) -> (&str, Vec<usize>) {
    let name_end = seg.find('[').unwrap_or(seg.len());
    let indices = seg[name_end..]
        .split(['[', ']'])
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    (&seg[..name_end], indices)
}

/// The value at a concrete path (`collect.scrape[1].url`), if set.
fn find<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, seg| {
        let (name, indices) = step(seg);
        indices.into_iter().try_fold(v.get(name)?, |v, i| v.get(i))
    })
}

/// Applies `f` to the object holding the last key of a concrete path, and
/// that key.
fn edit(v: &mut Value, path: &str, f: &mut dyn FnMut(&mut serde_json::Map<String, Value>, &str)) {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, path),
    };
    let mut here = Some(v);
    for seg in parent.into_iter().flat_map(|p| p.split('.')) {
        let (name, indices) = step(seg);
        here = here.and_then(|v| v.get_mut(name));
        for i in indices {
            here = here.and_then(|v| v.get_mut(i));
        }
    }
    if let Some(obj) = here.and_then(Value::as_object_mut) {
        f(obj, last);
    }
}

/// `a[1].b[0][2].c` -> `a[].b[][].c`.
fn generic(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// Every key path a document sets, shallowest first, with list indices.
fn raw_paths(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut queue = std::collections::VecDeque::from([(String::new(), doc)]);
    while let Some((prefix, v)) = queue.pop_front() {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    out.push(path.clone());
                    queue.push_back((path, child));
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    queue.push_back((format!("{prefix}[{i}]"), item));
                }
            }
            _ => {}
        }
    }
    out
}

fn render(format: Format, doc: &Value) -> String {
    match format {
        Format::Toml => {
            let value = toml::Value::try_from(doc).expect("a TOML-shaped document");
            toml::to_string(&value).expect("TOML text")
        }
        Format::Yaml => serde_norway::to_string(doc).expect("YAML text"),
    }
}

/// A default written as one backticked literal, as a value: TOML syntax
/// (`true`, `8`, `20.0`, `[]`, `["host"]`), else the text as a string (`10s`).
fn literal(cell: &str) -> Option<Value> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    if inner.contains('`') {
        return None;
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {inner}"))
        .ok()
        .and_then(|t| t.get("v").cloned());
    Some(match parsed {
        Some(v) => serde_json::to_value(v).expect("json"),
        None => Value::String(inner.to_string()),
    })
}

/// Whether `value` has the JSON shape of the documented type.
fn type_matches(ty: &str, value: &Value) -> Result<bool, String> {
    let word = ty
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_lowercase();
    Ok(match word.as_str() {
        "string" | "duration" | "path" | "address" | "url" | "secret" | "regex" | "matcher"
        | "template" | "time" | "enum:" => value.is_string(),
        "integer" | "bytes" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "bool" => value.is_boolean(),
        "list" => value.is_array(),
        "map" | "table" => value.is_object(),
        _ => return Err(format!("unknown type word {word:?} in {ty:?}")),
    })
}

#[test]
fn configuration_md_matches_the_config_structs() {
    let md = read("docs/configuration.md");
    let mut failures = Vec::new();
    let mut literals_checked = 0;
    for file in FILES {
        let s = section(&md, file);
        let id = file.id;

        // 1. Every example is a valid file.
        for text in &s.texts {
            if let Err(e) = (file.parse)(text) {
                failures.push(format!("{id}: an example is refused:\n{e}\n{text}"));
            }
        }

        // 2. Documented keys == accepted keys.
        let mut accepted = Keys::default();
        for ex in &s.examples {
            match (file.keys)(ex) {
                Ok(k) => {
                    accepted.fields.extend(k.fields);
                    accepted.sections.extend(k.sections);
                }
                Err(e) => failures.push(format!("{id}: walking an example: {e}")),
            }
        }
        let norm = file.normalize;
        let leaves: BTreeSet<String> = accepted.leaves().iter().map(|k| norm(k)).collect();
        let sections: BTreeSet<String> = accepted
            .sections
            .iter()
            .map(|k| norm(k.trim_end_matches("[]")))
            .collect();
        let mut documented = BTreeSet::new();
        for row in &s.rows {
            if !documented.insert(row.key.clone()) {
                failures.push(format!("{id}: `{}` is documented twice", row.key));
            }
        }
        for k in leaves.difference(&documented) {
            failures.push(format!("{id}: `{k}` is accepted but not documented"));
        }
        // A section may have a row of its own (e.g. an inline table with
        // its default), besides its keys' rows.
        for k in documented
            .difference(&leaves)
            .filter(|k| !sections.contains(*k))
        {
            failures.push(format!(
                "{id}: `{k}` is documented but not a key the file accepts"
            ));
        }

        for row in &s.rows {
            // 3. Set in an example, with the documented type.
            let places: Vec<(&Value, String)> = s
                .examples
                .iter()
                .flat_map(|e| {
                    raw_paths(e)
                        .into_iter()
                        .filter(|p| norm(&generic(p)) == row.key)
                        .map(move |p| (e, p))
                })
                .collect();
            let Some((example, path)) = places.first() else {
                failures.push(format!("{id}: `{}` is set in no example", row.key));
                continue;
            };
            let value = find(example, path).expect("a path raw_paths found");
            match type_matches(&row.ty, value) {
                Ok(true) => {}
                Ok(false) => failures.push(format!(
                    "{id}: `{}` is documented as {:?} but the example sets {value}",
                    row.key, row.ty
                )),
                Err(e) => failures.push(format!("{id}: `{}`: {e}", row.key)),
            }

            // 4. The default, at each place the examples set the key.
            let without = |(example, path): &(&Value, String)| {
                let mut doc = (*example).clone();
                edit(&mut doc, path, &mut |obj, k| {
                    obj.remove(k);
                });
                (file.parse)(&render(file.format, &doc))
            };
            if row.default == "required" {
                if let Some((_, path)) = places.iter().find(|place| without(place).is_ok()) {
                    failures.push(format!(
                        "{id}: `{}` is documented as required, but a file without it ({path}) is accepted",
                        row.key
                    ));
                }
                continue;
            }
            if let Some(lit) = literal(&row.default) {
                // Without the key, the file means exactly what it means with
                // the key set to the literal (both accepted and equal, or
                // both refused for the same reasons when another key needs
                // this one: a `replace` rule needs a `target_label`).
                let (example, path) = &places[0];
                let mut with = (*example).clone();
                edit(&mut with, path, &mut |obj, k| {
                    obj.insert(k.to_string(), lit.clone());
                });
                literals_checked += 1;
                let parsed_with = (file.parse)(&render(file.format, &with));
                if parsed_with != without(&places[0]) {
                    failures.push(format!(
                        "{id}: `{}`: the documented default {} is not the default ({path}: {})",
                        row.key,
                        row.default,
                        parsed_with
                            .err()
                            .unwrap_or_else(|| "parses differently".into())
                    ));
                }
            } else if !places.iter().any(|place| without(place).is_ok()) {
                // Optional: some example is accepted without it (another key
                // may need it where it is set: a Redis `username` needs a
                // password).
                failures.push(format!(
                    "{id}: `{}` has a default ({}), but every example is refused without it: {}",
                    row.key,
                    row.default,
                    without(&places[0]).err().unwrap_or_default()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "docs/configuration.md disagrees with the code:\n- {}",
        failures.join("\n- ")
    );
    // The literal-default check must keep covering most keys.
    assert!(
        literals_checked >= 60,
        "only {literals_checked} defaults checked"
    );
}

#[test]
fn the_checks_catch_drift() {
    // The helpers the test above relies on, on a small document.
    let doc = serde_json::json!({"a": {"b": [{"c": 1}, {"d": "x"}]}});
    assert_eq!(find(&doc, "a.b[1].d"), Some(&Value::from("x")));
    assert_eq!(find(&doc, "a.b[0].d"), None);
    assert_eq!(generic("a.b[1].d[0][2]"), "a.b[].d[][]");
    let mut edited = doc.clone();
    edit(&mut edited, "a.b[1].d", &mut |o, k| {
        o.insert(k.into(), Value::from(2));
    });
    assert_eq!(edited["a"]["b"][1]["d"], Value::from(2));
    assert_eq!(literal("`10s`"), Some(Value::from("10s")));
    assert_eq!(literal("`true`"), Some(Value::from(true)));
    assert_eq!(literal("`[\"host\"]`"), Some(serde_json::json!(["host"])));
    assert_eq!(literal("this machine's hostname"), None);
    assert_eq!(literal("`a` or `b`"), None);
    let table = "| key | type | default | meaning |\n|---|---|---|---|\n| `x.y` | bool | `true` | m |\n\ntext\n| `z` | a | b | c |\n";
    let r = rows(table);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].key.as_str(), r[0].default.as_str()),
        ("x.y", "`true`")
    );
    assert!(type_matches("duration", &Value::from("5s")).expect("known"));
    assert!(!type_matches("integer", &Value::from("5")).expect("known"));
    assert!(type_matches("colour", &Value::from(1)).is_err());
    let paths = raw_paths(
        &serde_json::json!({"route": {"receiver": "a", "routes": [{"routes": [{"continue": true}]}]}}),
    );
    assert_eq!(
        paths,
        [
            "route",
            "route.receiver",
            "route.routes",
            "route.routes[0].routes",
            "route.routes[0].routes[0].continue"
        ]
    );
    assert_eq!(notify_path("route.continue"), "route.routes[].continue");
    assert_eq!(
        notify_path("route.routes[].routes[].continue"),
        "route.routes[].continue"
    );
    assert_eq!(
        notify_path("mute_time_intervals[].name"),
        "time_intervals[].name"
    );
}
