//! `GET /audit` (admins only): the audit log, newest first, with the API's
//! filters (`since`, `until`, `actor`, `action`, `limit`, `before`) as a
//! form; "Older" pages through with the `before` cursor.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;

use super::super::AppState;
use super::super::audit::{Params, filter};
use super::super::session::WebUser;
use super::{PageError, format, page_context, render};
use crate::audit::{self, Action};

/// `GET /audit`.
pub async fn page(
    user: WebUser,
    State(state): State<AppState>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, PageError> {
    if !user.role.is_admin() {
        return Err(PageError::Forbidden(format!(
            "{} is a {}: the audit log needs the admin role",
            user.name,
            user.role.as_str()
        )));
    }
    let Query(params) = params.map_err(|e| PageError::BadRequest(e.body_text()))?;
    // An empty form field means "no filter", as a browser sends it.
    let blank = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let params = Params {
        since: blank(&params.since),
        until: blank(&params.until),
        actor: blank(&params.actor),
        action: blank(&params.action),
        limit: blank(&params.limit),
        before: blank(&params.before),
    };
    let f = filter(&params).map_err(PageError::BadRequest)?;
    let page = audit::query(&state.store.db(), &f).await?;
    let entries: Vec<serde_json::Value> = page
        .records
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "time": format::time(r.at_ms),
                "actor_kind": r.actor_kind,
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "details": r.details,
                "source": r.source.unwrap_or_else(|| "-".into()),
            })
        })
        .collect();
    let mut c = page_context(&state, &user, "audit", "Audit log");
    c.insert("entries", &entries);
    c.insert(
        "actions",
        &Action::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
    );
    let kept = [
        ("since", &params.since),
        ("until", &params.until),
        ("actor", &params.actor),
        ("action", &params.action),
        ("limit", &params.limit),
    ];
    let shown = |v: &Option<String>| v.clone().unwrap_or_default();
    c.insert(
        "filter",
        &serde_json::json!({
            "since": shown(&params.since),
            "until": shown(&params.until),
            "actor": shown(&params.actor),
            "action": shown(&params.action),
        }),
    );
    // The next page keeps the filters.
    let next_url = page.next.map(|before| {
        let mut url = format!("/audit?before={before}");
        for (name, value) in kept {
            if let Some(v) = value {
                url.push_str(&format!("&{name}={}", query_encode(v)));
            }
        }
        url
    });
    c.insert("next_url", &next_url.unwrap_or_default());
    Ok(render("audit.html", &c))
}

/// `s` percent-encoded for a query string (everything but RFC 3986's
/// unreserved characters).
fn query_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(super::query_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(
            super::query_encode("2024-01-02T15:04:05Z"),
            "2024-01-02T15%3A04%3A05Z"
        );
    }
}
