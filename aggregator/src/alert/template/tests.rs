use super::*;

fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run(text: &str, value: f64) -> String {
    let l = labels(&[
        ("host", "web-1"),
        ("instance", "db.example.com:5432"),
        ("job", "api"),
    ]);
    let ext = labels(&[("cluster", "eu")]);
    let data = TemplateData {
        labels: &l,
        value,
        external_labels: &ext,
        external_url: "http://vigil:8080",
    };
    match expand("t", text, &data) {
        Ok(s) => s,
        Err(e) => panic!("{text:?}: {e}"),
    }
}

fn each(func: &str, inputs: &[f64]) -> String {
    inputs
        .iter()
        .map(|v| run(&format!("{{{{ {func} $value }}}}:"), *v))
        .collect()
}

#[test]
fn humanize_helpers_match_prometheus_documented_outputs() {
    // Prometheus' template_test.go cases.
    assert_eq!(
        each("humanize", &[0.0, 1.0, 1234567.0, 0.12]),
        "0:1:1.235M:120m:"
    );
    assert_eq!(
        each("humanize", &[f64::INFINITY, f64::NEG_INFINITY, f64::NAN]),
        "+Inf:-Inf:NaN:"
    );
    assert_eq!(
        each("humanize1024", &[0.0, 1.0, 1048576.0, 0.12]),
        "0:1:1Mi:0.12:"
    );
    assert_eq!(
        each(
            "humanizeDuration",
            &[
                0.0,
                1.0,
                60.0,
                3600.0,
                86400.0,
                86400.0 + 3600.0,
                -(86400.0 * 2.0 + 3600.0 * 3.0 + 60.0 * 4.0 + 5.0),
                899.99
            ]
        ),
        "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:"
    );
    assert_eq!(
        each(
            "humanizeDuration",
            &[0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345]
        ),
        "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:"
    );
    assert_eq!(
        each("humanizePercentage", &[0.0, 0.1234567, 0.5, 1.0, 1.5]),
        "0%:12.35%:50%:100%:150%:"
    );
    assert_eq!(
        run("{{ humanizeTimestamp $value }}", 1435065584.128),
        "2015-06-23 13:19:44.128 +0000 UTC"
    );
    assert_eq!(
        run("{{ $value | humanizeTimestamp }}", 0.0),
        "1970-01-01 00:00:00 +0000 UTC"
    );
    // Strings that parse are numbers too.
    assert_eq!(run(r#"{{ humanize "1234567" }}"#, 0.0), "1.235M");
}

#[test]
fn data_variables_and_dot() {
    assert_eq!(
        run("{{ $labels.host }} {{ .Labels.job }}", 0.0),
        "web-1 api"
    );
    assert_eq!(run("{{ $value }} {{ .Value }}", 0.25), "0.25 0.25");
    assert_eq!(run("{{ $value }}", 1234567.0), "1.234567e+06");
    assert_eq!(
        run("{{ $externalLabels.cluster }} {{ $externalURL }}", 0.0),
        "eu http://vigil:8080"
    );
    assert_eq!(run("[{{ $labels.missing }}]", 0.0), "[]");
    assert_eq!(run(r#"{{ index $labels "host" }}"#, 0.0), "web-1");
    assert_eq!(run("{{ $ := 1 }}", 0.0), "");
}

#[test]
fn pipelines_and_functions() {
    assert_eq!(run("{{ $value | humanize }}B", 2048.0), "2.048kB");
    assert_eq!(run(r#"{{ printf "%.2f" $value }}"#, 2.74567), "2.75");
    assert_eq!(run(r#"{{ $value | printf "%.1f%%" }}"#, 97.25), "97.2%");
    assert_eq!(
        run(
            "{{ toUpper $labels.host }} {{ $labels.job | toLower }}",
            0.0
        ),
        "WEB-1 api"
    );
    assert_eq!(run(r#"{{ title "aa bb CC" }}"#, 0.0), "Aa Bb CC");
    assert_eq!(run(r#"{{ reReplaceAll "(a)b" "x$1" "ab" }}"#, 0.0), "xa");
    assert_eq!(
        run(r#"{{ reReplaceAll ":.*" "" $labels.instance }}"#, 0.0),
        "db.example.com"
    );
    assert_eq!(
        run(
            "{{ stripPort $labels.instance }} {{ stripDomain $labels.instance }}",
            0.0
        ),
        "db.example.com db:5432"
    );
    assert_eq!(
        run(r#"{{ if match "^web" $labels.host }}web{{ end }}"#, 0.0),
        "web"
    );
    assert_eq!(run("{{ (printf \"%d\" 3) | len }}", 0.0), "1");
}

#[test]
fn conditionals_and_trimming() {
    let t = "{{ if gt $value 90.0 }}critical{{ else if gt $value 80 }}high{{ else }}ok{{ end }}";
    assert_eq!(run(t, 95.0), "critical");
    assert_eq!(run(t, 85.0), "high");
    assert_eq!(run(t, 5.0), "ok");
    assert_eq!(
        run(r#"{{ if eq $labels.job "db" "api" }}y{{ end }}"#, 0.0),
        "y"
    );
    assert_eq!(
        run(
            "{{ if and (ge $value 1.0) (lt $value 2.0) }}in{{ end }}",
            1.5
        ),
        "in"
    );
    assert_eq!(
        run("{{ if not $labels.missing }}none{{ end }}", 0.0),
        "none"
    );
    assert_eq!(run("a  {{- \" b \" -}}  c", 0.0), "a b c");
    assert_eq!(run("x {{/* comment */}} y", 0.0), "x  y");
    assert_eq!(run("x {{- /* comment */ -}} y", 0.0), "xy");
    assert_eq!(
        run(
            "{{ with $labels.host }}on {{ . }}{{ else }}nowhere{{ end }}",
            0.0
        ),
        "on web-1"
    );
    assert_eq!(
        run(
            "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
            0.0
        ),
        "host=web-1;instance=db.example.com:5432;job=api;"
    );
    assert_eq!(run("{{ $x := $labels.host }}{{ $x }}", 0.0), "web-1");
}

#[test]
fn parse_errors_are_reported_by_check() {
    for (bad, why) in [
        ("{{ $labels.host ", "unclosed action"),
        ("{{ if $value }}x", "without {{end}}"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ nosuch $value }}", "not defined"),
        ("{{ query \"up\" | first | value }}", "not supported"),
        ("{{ \"abc }}", "unterminated"),
        ("{{ $value | }}", "missing"),
        ("{{ template \"x\" }}", "not supported"),
        ("{{ (humanize 1 }}", "unclosed left paren"),
        (
            &format!("{{{{ {}1{} }}}}", "(".repeat(100), ")".repeat(100)),
            "nested deeper",
        ),
        (&"{{ if 1 }}".repeat(100), "nested deeper"),
    ] {
        let bad: &str = bad;
        let e = check("summary", bad).expect_err(bad);
        assert!(e.message.contains(why), "{bad:?}: {e}");
        assert_eq!(e.name, "summary");
    }
    check(
        "ok",
        "{{ $value | humanize }} {{- if gt $value 1.0 }} x {{ end }}",
    )
    .expect("valid");
}

#[test]
fn execution_errors_become_error_text() {
    let l = LabelSet::new();
    let data = TemplateData {
        labels: &l,
        value: 1.0,
        external_labels: &l,
        external_url: "",
    };
    let e = expand("d", "{{ $nosuch }}", &data).expect_err("undefined variable");
    assert!(e.message.contains("undefined variable"), "{e}");
    let e = expand("d", "{{ .Nope }}", &data).expect_err("bad field");
    assert!(e.message.contains("Nope"), "{e}");
    let e = expand("d", r#"{{ humanize "abc" }}"#, &data).expect_err("bad number");
    assert!(e.message.contains("convert"), "{e}");
    let e = expand("d", r#"{{ gt "a" 1 }}"#, &data).expect_err("bad comparison");
    assert!(e.message.contains("incompatible"), "{e}");
    let s = expand_or_error("d", "{{ $nosuch }}", &data);
    assert!(s.starts_with("<error expanding template: "), "{s}");
}

proptest::proptest! {
    /// Whatever an operator writes into a rule file, parsing and expanding
    /// return a result: never a panic (the aggregator loads rules at run time).
    #[test]
    fn arbitrary_templates_never_panic(text in r#"[{}\-$.a-zA-Z0-9 "|()%:=,`/*_]{0,60}"#) {
        let _ = check("t", &text);
        let l = labels(&[("host", "a")]);
        let data = TemplateData { labels: &l, value: 1.5, external_labels: &l, external_url: "" };
        let _ = expand("t", &text, &data);
    }

    #[test]
    fn arbitrary_actions_never_panic(
        body in proptest::collection::vec(
            proptest::sample::select(vec![
                "$value", "$labels.host", ".Labels", "|", "humanize", "printf", "\"%5.2f\"", "(", ")",
                "if", "else", "end", "range", "with", "eq", "1", "-2.5", ":=", "$x", ",", "-}}", "{{-", "}}{{",
                "index", "len", "and", "not", "title", "\"a\"", "`r`",
            ]),
            0..12,
        )
    ) {
        let text = format!("{{{{ {} }}}}", body.join(" "));
        let _ = check("t", &text);
        let l = labels(&[("host", "a")]);
        let data = TemplateData { labels: &l, value: 1.5, external_labels: &l, external_url: "" };
        let _ = expand("t", &text, &data);
    }
}
