//! `GET /rules` and `GET /alerts` in Prometheus' JSON shape, from the rule
//! evaluator: groups with their rules' health, last error, evaluation time
//! and active alerts.
//!
//! `/rules` filters as Prometheus does: `type=alert|record`, `rule_name[]`,
//! `rule_group[]`, `file[]`.

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use super::error::PromError;
use super::params::Params;
use super::{json as pjson, respond};
use crate::alert::eval::machine::Entry;
use crate::alert::eval::machine::Phase;
use crate::alert::eval::{GroupRun, Health};
use crate::alert::rules::Rule;
use crate::http::AppState;
use crate::http::access::ReadAccess;
use crate::http::ops::rfc3339;

/// A sample value as Prometheus shows it in alerts: Go's `%e` form.
pub fn format_e(v: f64) -> String {
    if !v.is_finite() {
        return pjson::format_value(v);
    }
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

fn time(ms: Option<i64>) -> String {
    // Prometheus' zero time for "never".
    ms.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339)
}

fn alert_json(e: &Entry) -> Value {
    let mut a = json!({
        "labels": e.labels,
        "annotations": e.annotations,
        "state": e.phase.as_str(),
        "activeAt": rfc3339(e.active_at_ms),
        "value": format_e(e.value),
    });
    if let Some(k) = e.keep_firing_since_ms {
        a["keepFiringSince"] = json!(rfc3339(k));
    }
    a
}

fn active(entries: impl Iterator<Item = Entry>) -> Vec<Entry> {
    let mut v: Vec<Entry> = entries.filter(|e| e.phase != Phase::Inactive).collect();
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    v
}

fn health(h: Health) -> &'static str {
    h.as_str()
}

/// `GET /rules?type=&rule_name[]=&rule_group[]=&file[]=`
pub async fn rules(
    _: ReadAccess,
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, PromError> {
    let kind = params.get("type");
    let (want_alerts, want_records) = match kind.map(str::to_ascii_lowercase).as_deref() {
        None => (true, true),
        Some("alert") => (true, false),
        Some("record") => (false, true),
        Some(other) => {
            return Err(PromError::param(
                "type",
                format!("unsupported value {other:?}"),
            ));
        }
    };
    let names = params.all("rule_name[]");
    let groups_wanted = params.all("rule_group[]");
    let files = params.all("file[]");
    let mut groups = Vec::new();
    for g in state.alerting.groups() {
        let GroupRun {
            name,
            file,
            interval_ms,
            last_eval_ms,
            last_duration_s,
            rules,
            ..
        } = g;
        let file = file.display().to_string();
        if (!groups_wanted.is_empty() && !groups_wanted.contains(&name.as_str()))
            || (!files.is_empty() && !files.contains(&file.as_str()))
        {
            continue;
        }
        let mut out = Vec::new();
        for r in rules {
            let mut common = json!({
                "health": health(r.health),
                "lastError": r.last_error.clone().unwrap_or_default(),
                "evaluationTime": r.last_duration_s,
                "lastEvaluation": time(r.last_eval_ms),
            });
            match r.rule {
                Rule::Alerting(a) if want_alerts => {
                    if !names.is_empty() && !names.contains(&a.name.as_str()) {
                        continue;
                    }
                    let alerts = active(r.alerts.alerts.into_values());
                    let state_name = if alerts.iter().any(|e| e.phase == Phase::Firing) {
                        "firing"
                    } else if alerts.is_empty() {
                        "inactive"
                    } else {
                        "pending"
                    };
                    common["type"] = json!("alerting");
                    common["name"] = json!(a.name);
                    common["query"] = json!(a.expr);
                    common["duration"] = json!(a.for_.as_secs_f64());
                    common["keepFiringFor"] = json!(a.keep_firing_for.as_secs_f64());
                    common["labels"] = json!(a.labels);
                    common["annotations"] = json!(a.annotations);
                    common["state"] = json!(state_name);
                    common["alerts"] = Value::Array(alerts.iter().map(alert_json).collect());
                }
                Rule::Recording(rec) if want_records => {
                    if !names.is_empty() && !names.contains(&rec.record.as_str()) {
                        continue;
                    }
                    common["type"] = json!("recording");
                    common["name"] = json!(rec.record);
                    common["query"] = json!(rec.expr);
                    common["labels"] = json!(rec.labels);
                }
                _ => continue,
            }
            out.push(common);
        }
        if out.is_empty() && (!names.is_empty() || kind.is_some()) {
            continue;
        }
        groups.push(json!({
            "name": name,
            "file": file,
            "rules": out,
            "interval": interval_ms as f64 / 1000.0,
            "limit": 0,
            "evaluationTime": last_duration_s,
            "lastEvaluation": time(last_eval_ms),
        }));
    }
    let data = json!({ "groups": groups });
    Ok(respond(pjson::success(&data.to_string(), &[])))
}

/// `GET /alerts`: every pending and firing alert.
pub async fn alerts(_: ReadAccess, State(state): State<AppState>) -> Response {
    let list: Vec<Value> = state
        .alerting
        .active()
        .into_iter()
        .map(|a| {
            let mut v = json!({
                "labels": a.labels,
                "annotations": a.annotations,
                "state": a.phase.as_str(),
                "activeAt": rfc3339(a.active_at_ms),
                "value": format_e(a.value),
            });
            if let Some(k) = a.keep_firing_since_ms {
                v["keepFiringSince"] = json!(rfc3339(k));
            }
            v
        })
        .collect();
    let data = json!({ "alerts": list });
    respond(pjson::success(&data.to_string(), &[]))
}

#[cfg(test)]
mod tests {
    use super::format_e;

    #[test]
    fn values_are_written_like_go_percent_e() {
        assert_eq!(format_e(1.0), "1e+00");
        assert_eq!(format_e(95.5), "9.55e+01");
        assert_eq!(format_e(0.001), "1e-03");
        assert_eq!(format_e(0.0), "0e+00");
    }
}
