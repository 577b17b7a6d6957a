//! The operator web UI: pages rendered with tera from templates compiled
//! into the binary (no file is read at run time, no asset comes from a CDN).

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// Every template, by name; `*.html` ones are autoescaped.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
];

/// The templates, parsed once. A template that does not parse is a bug
/// caught by the test below, so building can only fail in development.
static TERA: LazyLock<Result<tera::Tera, String>> = LazyLock::new(|| {
    let mut tera = tera::Tera::new();
    tera.autoescape_on(vec![".html"]);
    tera.add_raw_templates(TEMPLATES.iter().copied())
        .map_err(|e| format!("{e:?}"))?;
    Ok(tera)
});

/// Renders `name` with `context`; a rendering error is logged and answered
/// with a plain 500 page that shows nothing of the context.
pub fn render(name: &str, context: &tera::Context) -> Response {
    let rendered = match &*TERA {
        Ok(tera) => tera.render(name, context).map_err(|e| format!("{e:?}")),
        Err(e) => Err(e.clone()),
    };
    match rendered {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        if let Err(e) = &*TERA {
            panic!("templates do not parse: {e}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut context = tera::Context::new();
        context.insert("error", "<script>alert(1)</script>");
        context.insert("next", "/");
        context.insert("csrf_token", "t");
        let html = TERA
            .as_ref()
            .expect("templates parse")
            .render("login.html", &context)
            .expect("renders");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;")
                || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>alert"), "{html}");
    }
}
