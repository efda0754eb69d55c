//! The web view over HTTP, as a browser speaks to it: sign in with a
//! token, the session cookie, CSRF and same-origin on every form, the
//! security headers, escaping of what alerts carry, roles, and the live
//! timeline's resume from `Last-Event-ID`.

use laojun::config::Role;
use reqwest::header;
use reqwest::redirect::Policy;

use crate::support::{token, webhook_body, Alert, Server};

/// A client that does not follow redirects, so each answer is seen.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

async fn server() -> Server {
    Server::start_with(|c| {
        c.auth.tokens = vec![
            token("olga", Role::Operator),
            token("vic", Role::Viewer),
            token("am", Role::Webhook),
        ];
    })
    .await
}

/// Signs in with `name`'s token: the session cookie's `name=value`.
async fn sign_in(server: &Server, name: &str) -> String {
    let answer = browser()
        .post(format!("{}/ui/login", server.url))
        .form(&[("token", format!("{name}-token-0123456789abcdef"))])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303, "{name} signs in");
    let cookie = answer.headers()[header::SET_COOKIE].to_str().unwrap().to_string();
    cookie.split(';').next().unwrap().to_string()
}

async fn page(server: &Server, cookie: &str, path: &str) -> (u16, String) {
    let answer = browser()
        .get(format!("{}{path}", server.url))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// The CSRF token the page's forms carry.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with the CSRF token") + 19;
    html[at..at + 32].to_string()
}

async fn post(server: &Server, cookie: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let answer = browser()
        .post(format!("{}{path}", server.url))
        .header(header::COOKIE, cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// An incident whose alert carries markup and script in its labels,
/// annotations and links (no playbook takes it: no runbook changes its
/// timeline meanwhile).
async fn hostile_incident(server: &Server) -> laojun::ids::IncidentId {
    let alert = Alert::firing(serde_json::json!({
        "alertname": "HostileLabels",
        "namespace": "prod",
        "service": "<script>window.pwned=1</script>",
    }))
    .annotations(serde_json::json!({
        "summary": "<img src=x onerror=window.pwned=2>",
        "runbook_url": "javascript:window.pwned=3",
        "dashboard": "https://grafana.example.com/d/api",
    }))
    .starts_at("2026-12-02T10:00:00Z");
    let answer = server.client().post_alerts(webhook_body([alert])).await.unwrap();
    answer.opened[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_in_keeps_a_session_in_a_strict_cookie_and_signing_out_ends_it() {
    let server = server().await;
    // Signed out, every page goes to the sign-in form.
    for path in ["/", "/ui/", "/ui/incidents"] {
        let answer = reqwest::Client::new()
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.url().path(), "/ui/login", "{path}");
        let html = answer.text().await.unwrap();
        assert!(html.contains(r#"type="password" id="token" name="token""#), "{html}");
    }
    // A wrong token and a webhook token do not sign in.
    for (token, status) in [("nope", 401), ("am-token-0123456789abcdef", 403)] {
        let answer = browser()
            .post(format!("{}/ui/login", server.url))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{token}");
        assert!(answer.headers().get(header::SET_COOKIE).is_none());
    }
    let answer = browser()
        .post(format!("{}/ui/login", server.url))
        .form(&[("token", "olga-token-0123456789abcdef")])
        .send()
        .await
        .unwrap();
    let set = answer.headers()[header::SET_COOKIE].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age="] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: no Secure ({set})");
    assert!(
        !set.contains("olga-token"),
        "the cookie holds a session id, never the token"
    );
    let cookie = set.split(';').next().unwrap().to_string();

    let (status, html) = page(&server, &cookie, "/ui/incidents").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("olga (operator)") && html.contains(r#"id="sign-out""#),
        "{html}"
    );
    // The bearer API ignores the cookie.
    let api = browser()
        .get(format!("{}/api/v1/incidents", server.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);

    let csrf = csrf_of(&html);
    let (status, _) = post(&server, &cookie, "/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    let answer = browser()
        .get(format!("{}/ui/incidents", server.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303, "the old cookie is refused");
    assert_eq!(answer.headers()[header::LOCATION], "/ui/login");
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_escape_what_alerts_carry_and_send_a_strict_content_security_policy() {
    let server = server().await;
    let incident = hostile_incident(&server).await;
    let cookie = sign_in(&server, "vic").await;
    let answer = browser()
        .get(format!("{}/ui/incidents/{incident}", server.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let headers = answer.headers().clone();
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let html = answer.text().await.unwrap();
    assert!(!html.contains("<script>window"), "label markup is text");
    assert!(
        html.contains("&lt;script&gt;window.pwned&#x3D;1&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<img src=x"), "annotation markup is text");
    assert!(!html.contains(r#"href="javascript:"#), "no javascript: link");
    assert!(
        html.contains(r#"href="https://grafana.example.com/d/api""#),
        "http(s) links stay links"
    );
    // The page itself has no inline script or style for the policy to block.
    assert!(!html.contains("<script>") && !html.contains("style="), "{html}");

    let (_, list) = page(&server, &cookie, "/ui/incidents?q=pwned").await;
    assert!(
        list.contains(&format!(r#"href="/ui/incidents/{incident}""#)),
        "q searches label values: {list}"
    );
    let (_, none) = page(&server, &cookie, "/ui/incidents?q=nothing-like-it&severity=P3").await;
    assert!(none.contains("No incident matches."), "{none}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_needs_the_sessions_csrf_token_and_this_origin_and_a_viewer_may_not_act() {
    let server = server().await;
    let incident = hostile_incident(&server).await;
    let path = format!("/ui/incidents/{incident}");
    let events = async || server.client().incident(incident).await.unwrap().timeline.len();
    let before = events().await;

    // A viewer sees no buttons, and a post with its own token is refused.
    let viewer = sign_in(&server, "vic").await;
    let (_, html) = page(&server, &viewer, &path).await;
    assert!(
        !html.contains(&format!(r#"action="{path}/ack""#)),
        "no ack button for a viewer"
    );
    assert!(!html.contains(r#"id="add-note""#));
    let csrf = csrf_of(&html);
    let (status, _) = post(&server, &viewer, &format!("{path}/ack"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 403, "a viewer may not act");

    // An operator: refused without the token, with another session's,
    // and from another site; taken with its own.
    let operator = sign_in(&server, "olga").await;
    let (_, html) = page(&server, &operator, &path).await;
    assert!(html.contains(r#"id="add-note""#), "an operator has the note form");
    let mine = csrf_of(&html);
    let note = format!("{path}/note");
    let (status, _) = post(&server, &operator, &note, &[("kind", "root_cause"), ("text", "forged")]).await;
    assert_eq!(status, 403, "no token");
    let (status, _) = post(
        &server,
        &operator,
        &note,
        &[("csrf", &csrf), ("kind", "root_cause"), ("text", "forged")],
    )
    .await;
    assert_eq!(status, 403, "the viewer's session's token");
    let cross = browser()
        .post(format!("{}{note}", server.url))
        .header(header::COOKIE, &operator)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", mine.as_str()), ("kind", "root_cause"), ("text", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403, "from another site");
    assert_eq!(events().await, before, "nothing refused changed anything");

    let (status, _) = post(
        &server,
        &operator,
        &note,
        &[
            ("csrf", &mine),
            ("kind", "root_cause"),
            ("text", "a bad deploy of the api"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let postmortem = server.client().postmortem(incident).await.unwrap();
    assert!(postmortem.contains("a bad deploy of the api"), "{postmortem}");
    let audit = server.client().audit(Some(10)).await.unwrap();
    assert!(audit.iter().any(|a| a.by == "olga" && a.action == "note"), "{audit:?}");
}

/// Reads an SSE stream until `count` events came; their ids.
async fn sse_ids(server: &Server, cookie: &str, path: &str, last: Option<&str>, count: usize) -> Vec<u64> {
    let mut request = browser()
        .get(format!("{}{path}", server.url))
        .header(header::COOKIE, cookie);
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    let mut answer = request.send().await.unwrap();
    assert_eq!(answer.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut text = String::new();
    let mut ids = Vec::new();
    while ids.len() < count {
        let chunk = answer.chunk().await.unwrap().expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
        ids = text
            .lines()
            .filter_map(|l| l.strip_prefix("id: ").or_else(|| l.strip_prefix("id:")))
            .map(|id| id.trim().parse().unwrap())
            .collect();
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_timeline_resumes_from_last_event_id_without_gaps_or_repeats() {
    let server = server().await;
    let incident = hostile_incident(&server).await;
    for text in ["one", "two", "three"] {
        let note = serde_json::json!({"kind": "note", "text": text});
        server.client().note(incident, &note).await.unwrap();
    }
    let total = server.client().incident(incident).await.unwrap().timeline.len() as u64;
    assert!(total >= 5, "opened, the alert, three notes: {total}");
    let cookie = sign_in(&server, "vic").await;
    let path = format!("/ui/incidents/{incident}/events");
    let from_start = sse_ids(&server, &cookie, &path, Some("0"), total as usize).await;
    assert_eq!(
        from_start,
        (1..=total).collect::<Vec<_>>(),
        "0 replays everything, in order"
    );
    let resumed = sse_ids(&server, &cookie, &path, Some("3"), (total - 3) as usize).await;
    assert_eq!(resumed, (4..=total).collect::<Vec<_>>(), "resumes after 3");
    // A note added now arrives as the next event.
    let operator = sign_in(&server, "olga").await;
    let (_, html) = page(&server, &operator, &format!("/ui/incidents/{incident}")).await;
    let csrf = csrf_of(&html);
    let mut live = browser()
        .get(format!("{}{path}", server.url))
        .header(header::COOKIE, &cookie)
        .header("last-event-id", total.to_string())
        .send()
        .await
        .unwrap();
    let (status, _) = post(
        &server,
        &operator,
        &format!("/ui/incidents/{incident}/note"),
        &[("csrf", &csrf), ("kind", "note"), ("text", "watching")],
    )
    .await;
    assert_eq!(status, 303);
    let mut text = String::new();
    while !text.contains("watching") {
        let chunk = live.chunk().await.unwrap().expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains(&format!("id: {}", total + 1)), "{text}");
}
