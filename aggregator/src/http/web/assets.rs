//! The dashboard's static files, compiled into the binary and served at
//! `/static/{name}`. Pages link them as `/static/{name}?v={hash}` (see
//! [`urls`]): a request carrying the current hash is cached for a year
//! (`immutable`), any other is revalidated with its `ETag`, so a new binary's
//! files are picked up at once.
//!
//! uPlot (`uPlot.iife.min.js`, `uPlot.min.css`, MIT, `uPlot.LICENSE`) is
//! vendored from the npm package `uplot` 1.6.32.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// One static file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every static file.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("static/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("static/app.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("static/favicon.svg"),
    },
    Asset {
        name: "uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("static/uPlot.iife.min.js"),
    },
    Asset {
        name: "uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("static/uPlot.min.css"),
    },
    Asset {
        name: "uPlot.LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("static/uPlot.LICENSE"),
    },
];

/// FNV-1a: a content fingerprint for cache busting (not a security hash).
fn fingerprint(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

static HASHES: LazyLock<BTreeMap<&'static str, String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| (a.name, fingerprint(a.body)))
        .collect()
});

/// Each asset's versioned URL by a template-friendly key (`app_js`,
/// `uplot_css`, ...): what pages link.
pub fn urls() -> BTreeMap<String, String> {
    HASHES
        .iter()
        .map(|(name, hash)| {
            let key = name.to_ascii_lowercase().replace(['.', '-'], "_");
            (key, format!("/static/{name}?v={hash}"))
        })
        .collect()
}

#[derive(Debug, Deserialize)]
pub struct Version {
    v: Option<String>,
}

/// `GET /static/{file}`.
pub async fn serve(
    Path(file): Path<String>,
    Query(version): Query<Version>,
    headers: HeaderMap,
) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == file) else {
        return (StatusCode::NOT_FOUND, "no such static file").into_response();
    };
    let hash = HASHES.get(asset.name).cloned().unwrap_or_default();
    let etag = format!("\"{hash}\"");
    let cache = if version.v.as_deref() == Some(hash.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut out_headers = HeaderMap::new();
    out_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    out_headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out_headers.insert(header::ETAG, v);
    }
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, out_headers).into_response();
    }
    out_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    (out_headers, asset.body).into_response()
}
