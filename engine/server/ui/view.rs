//! The web view's templates (handlebars, compiled once, escaping every
//! `{{value}}` for HTML; strict, so a misspelt field fails the render
//! instead of showing nothing) and its assets, all compiled into the
//! binary. Values are prepared in Rust (times formatted, links checked),
//! so the templates only place them.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use handlebars::Handlebars;
use serde_json::{json, Value};

use super::Viewer;

const TEMPLATES: &[(&str, &str)] = &[
    ("layout", include_str!("templates/layout.hbs")),
    ("login", include_str!("templates/login.hbs")),
    ("message", include_str!("templates/message.hbs")),
    ("incidents", include_str!("templates/incidents.hbs")),
    ("incident", include_str!("templates/incident.hbs")),
    ("run", include_str!("templates/run.hbs")),
    ("approvals", include_str!("templates/approvals.hbs")),
    ("automation", include_str!("templates/automation.hbs")),
];

fn registry() -> &'static Handlebars<'static> {
    static REGISTRY: OnceLock<Handlebars<'static>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        for (name, source) in TEMPLATES {
            hb.register_template_string(name, *source)
                .unwrap_or_else(|e| panic!("web view template {name}: {e}"));
        }
        hb
    })
}

fn render(name: &str, data: &Value) -> Result<String, String> {
    registry()
        .render(name, data)
        .map_err(|e| format!("rendering {name}: {e}"))
}

/// A page: `body` rendered from template `name` inside the layout.
pub(super) fn page(viewer: &Viewer, title: &str, name: &str, mut data: Value, extra: LayoutExtra) -> Response {
    data["can_act"] = json!(viewer.operates());
    data["csrf"] = json!(viewer.csrf);
    let body = match render(name, &data) {
        Ok(body) => body,
        Err(e) => return message_page(StatusCode::INTERNAL_SERVER_ERROR, &e).into_response(),
    };
    let layout = json!({
        "title": title,
        "body": body,
        "who": viewer.caller.name,
        "role": viewer.caller.role.as_str(),
        "open": viewer.open,
        "csrf": viewer.csrf,
        "approvals": extra.approvals,
        "paused": extra.paused,
    });
    match render("layout", &layout) {
        Ok(html) => Html(html).into_response(),
        Err(e) => message_page(StatusCode::INTERNAL_SERVER_ERROR, &e).into_response(),
    }
}

/// What the layout shows on every page: approvals waiting, a pause.
#[derive(Default)]
pub(super) struct LayoutExtra {
    pub approvals: usize,
    pub paused: Option<String>,
}

pub(super) fn login_page(error: Option<&str>) -> Html<String> {
    Html(render("login", &json!({"error": error})).unwrap_or_else(|e| e))
}

pub(super) fn message_page(status: StatusCode, message: &str) -> Html<String> {
    let data = json!({"status": status.to_string(), "message": message});
    Html(render("message", &data).unwrap_or_else(|_| "error".into()))
}

/// `GET /ui/assets/{file}`: the stylesheet and the script.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "ui.css" => (include_str!("assets/ui.css"), "text/css; charset=utf-8"),
        "ui.js" => (include_str!("assets/ui.js"), "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// A time as the pages show it.
pub(super) fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An http(s) URL as a link target; anything else (`javascript:`, data)
/// is shown as text only.
pub(super) fn link(url: &str) -> Option<String> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")).then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_values_are_escaped() {
        let html = render(
            "message",
            &json!({"status": "400", "message": "<script>alert(1)</script>"}),
        )
        .unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(!html.contains("<script>"));
        assert_eq!(registry().get_templates().len(), TEMPLATES.len());
    }

    #[test]
    fn only_http_and_https_urls_become_links() {
        assert_eq!(link("https://grafana/d/1").as_deref(), Some("https://grafana/d/1"));
        assert_eq!(link(" HTTP://x ").as_deref(), Some("HTTP://x"));
        assert_eq!(link("javascript:alert(1)"), None);
        assert_eq!(link("data:text/html,x"), None);
    }
}
