//! The web view in a real browser: Debian's headless Chromium driven over
//! WebDriver (its chromedriver), against a laojun with the shipped catalog.
//! Screenshots of the list, an incident and a run go to
//! `target/ui-screenshots/`.

use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use laojun::config::Role;
use laojun::run::RunStatus;
use serde_json::json;

use crate::support::{self, eventually, first_run, token, wait_run, webhook_body, Alert, Server};

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: std::process::Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn driver() -> Option<(Driver, Client)> {
    let chromium = support::require("chromium")?;
    let chromedriver = support::require("chromedriver")?;
    let (child, port) = support::spawn_listening(
        "chromedriver",
        |port| {
            let mut command = std::process::Command::new(&chromedriver);
            command
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            command
        },
        // Only chromedriver's /status says it is a ChromeDriver.
        async |url| support::body_contains(&format!("{url}/status"), "ChromeDriver").await,
    )
    .await;
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: profile,
    };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-default-apps", "--window-size=1280,1000",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    Some((driver, client))
}

async fn server() -> Server {
    Server::start_with(|c| {
        c.auth.tokens = vec![token("oncall", Role::Operator), token("vic", Role::Viewer)];
    })
    .await
}

/// A laojun with a cluster (the fake API server) holding prod/api at its
/// second revision, whose rollouts take `ready` to come ready, and a Slack
/// listener: the shipped ServiceDown runbooks really roll it back.
async fn server_with_cluster(ready: Duration) -> (Server, fake_kube::FakeKube, support::Listener, tempfile::TempDir) {
    let kube = fake_kube::FakeKube::start().await.unwrap();
    kube.set_ready_delay(ready);
    kube.add_deployment("prod", "api", "registry.example/api:v1", 3);
    kube.set_image("prod", "api", "registry.example/api:v2");
    let work = tempfile::tempdir().unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig, &["ap-east-1"]).unwrap();
    let slack = support::Listener::start().await;
    let webhook = format!("{}/slack", slack.url);
    let server = Server::start_with(move |c| {
        c.auth.tokens = vec![token("oncall", Role::Operator), token("vic", Role::Viewer)];
        c.kubernetes.kubeconfig = Some(kubeconfig);
        c.slack.webhook_url = Some(webhook);
    })
    .await;
    (server, kube, slack, work)
}

async fn sign_in(browser: &Client, server: &Server, name: &str) {
    browser.goto(&format!("{}/ui/incidents", server.url)).await.unwrap();
    assert!(
        browser.current_url().await.unwrap().path().ends_with("/ui/login"),
        "signed out: the form"
    );
    let field = browser.find(Locator::Css("#token")).await.unwrap();
    assert_eq!(field.attr("type").await.unwrap().as_deref(), Some("password"));
    field
        .send_keys(&format!("{name}-token-0123456789abcdef"))
        .await
        .unwrap();
    browser
        .find(Locator::Css("#login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_url(reqwest::Url::parse(&format!("{}/ui/incidents", server.url)).unwrap())
        .await
        .unwrap();
}

async fn shot(browser: &Client, name: &str) {
    let dir = support::repo().join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The text of the page's timeline.
async fn timeline(browser: &Client) -> String {
    browser
        .find(Locator::Css("#timeline"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_on_call_engineer_follows_approves_and_notes_an_incident_in_chromium() {
    let Some((_driver, browser)) = driver().await else {
        return;
    };
    let (server, kube, _slack, _work) = server_with_cluster(Duration::from_millis(100)).await;
    let api = server.client();
    sign_in(&browser, &server, "oncall").await;

    // A ServiceDown incident from a webhook: its page shows the rollback's
    // steps (and the cluster is rolled back).
    let down =
        Alert::firing(json!({"alertname": "ServiceDown", "namespace": "prod", "job": "api", "instance": "api:80"}))
            .starts_at("2026-12-02T10:00:00Z");
    let service_down = api.post_alerts(webhook_body([down])).await.unwrap().opened[0];
    let rollback = eventually("the rollback run", async || {
        let runs = api.incident(service_down).await.ok()?.incident.runs;
        runs.get(1).copied()
    })
    .await;
    wait_run(&api, rollback, &[RunStatus::Succeeded, RunStatus::Failed]).await;
    let image =
        kube.get("Deployment", "prod", "api").unwrap()["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(image, json!("registry.example/api:v1"), "rolled back in the cluster");
    browser.goto(&format!("{}/ui/incidents", server.url)).await.unwrap();
    let list = browser
        .find(Locator::Css("#incidents"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        list.contains(&service_down.to_string()) && list.contains("P0"),
        "{list}"
    );
    shot(&browser, "incidents").await;
    browser
        .goto(&format!("{}/ui/incidents/{service_down}", server.url))
        .await
        .unwrap();
    let text = timeline(&browser).await;
    assert!(
        text.contains(&format!("{rollback} step `rollback` (k8s.rollback) succeeded")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{rollback} (`rollback-deployment`) succeeded")),
        "{text}"
    );

    // A note added through the API appears too, while the page stays.
    browser.execute("window.laojunTestMarker = 43;", vec![]).await.unwrap();
    let note = json!({"kind": "note", "text": "watching from the API"});
    api.note(service_down, &note).await.unwrap();
    eventually("the note to appear live", async || {
        timeline(&browser).await.contains("watching from the API").then_some(())
    })
    .await;
    let marker = browser
        .execute("return window.laojunTestMarker;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, json!(43), "no reload");
    shot(&browser, "incident").await;

    // Add a note with the page's form: it is in the postmortem.
    let kind = browser
        .find(Locator::Css("#note-form select[name=kind]"))
        .await
        .unwrap();
    kind.select_by_value("root_cause").await.unwrap();
    browser
        .find(Locator::Css("#note-form textarea[name=text]"))
        .await
        .unwrap()
        .send_keys("a bad deploy of the api")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#add-note"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the note in the postmortem", async || {
        let pm = browser
            .find(Locator::Css("#postmortem"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        pm.contains("a bad deploy of the api").then_some(())
    })
    .await;

    // A region-failover waits for approval. Its run's page stays open in
    // one tab; approved from the incident's page in another, the run goes
    // on, and the first tab shows its steps as they come, without a reload.
    let region =
        Alert::firing(json!({"alertname": "RegionDown", "region": "ap-east-1"})).starts_at("2026-12-02T10:05:00Z");
    let outage = api.post_alerts(webhook_body([region])).await.unwrap().opened[0];
    let failover = first_run(&api, outage).await;
    wait_run(&api, failover, &[RunStatus::AwaitingApproval]).await;
    browser
        .goto(&format!("{}/ui/runs/{failover}", server.url))
        .await
        .unwrap();
    browser.execute("window.laojunTestMarker = 44;", vec![]).await.unwrap();
    let run_tab = browser.window().await.unwrap();
    let status = |b: &Client| {
        let b = b.clone();
        async move { b.find(Locator::Css("#run-status")).await.unwrap().text().await.unwrap() }
    };
    assert_eq!(status(&browser).await, "awaiting_approval");
    let other = browser.new_window(true).await.unwrap();
    browser.switch_to_window(other.handle).await.unwrap();
    browser
        .goto(&format!("{}/ui/incidents/{outage}", server.url))
        .await
        .unwrap();
    let waiting = browser
        .find(Locator::Css("#approvals"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        waiting.contains("Fail api.taishanglaojun.ai over from ap-east-1"),
        "{waiting}"
    );
    browser
        .find(Locator::Css("#approvals button.approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let after = wait_run(
        &api,
        failover,
        &[RunStatus::Succeeded, RunStatus::Failed, RunStatus::Interrupted],
    )
    .await;
    assert_eq!(
        after.steps[0].status,
        laojun::run::StepStatus::Succeeded,
        "approved: {after:#?}"
    );
    assert!(
        after.steps[1].attempts >= 1,
        "the run went on past the approval: {after:#?}"
    );
    eventually("the approval on the incident's timeline", async || {
        timeline(&browser).await.contains("approved by oncall").then_some(())
    })
    .await;
    browser.close_window().await.unwrap();
    browser.switch_to_window(run_tab).await.unwrap();
    eventually("the run's page to follow it to its end", async || {
        (status(&browser).await == after.status.as_str()).then_some(())
    })
    .await;
    let steps = browser
        .find(Locator::Css("#steps"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for step in &after.steps {
        assert!(steps.contains(&step.id), "{} on the page: {steps}", step.id);
    }
    let marker = browser
        .execute("return window.laojunTestMarker;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, json!(44), "the run page was not reloaded");
    assert!(
        browser
            .find_all(Locator::Css("#run .approval, #cancel"))
            .await
            .unwrap()
            .is_empty(),
        "decided and ended: no approve, deny or cancel left on the page"
    );
    shot(&browser, "run").await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_sees_no_buttons_a_forged_post_is_refused_and_hostile_labels_stay_text() {
    let Some((_driver, browser)) = driver().await else {
        return;
    };
    let server = server().await;
    let hostile = Alert::firing(json!({
        "alertname": "HostileLabels",
        "service": "<script>window.pwned=1</script>",
    }))
    .annotations(json!({
        "summary": "<img src=x onerror=\"window.pwned=2\">",
        "runbook_url": "javascript:window.pwned=3",
    }))
    .starts_at("2026-12-02T10:00:00Z");
    let incident = server
        .client()
        .post_alerts(webhook_body([hostile]))
        .await
        .unwrap()
        .opened[0];
    sign_in(&browser, &server, "vic").await;
    browser
        .goto(&format!("{}/ui/incidents/{incident}", server.url))
        .await
        .unwrap();
    let body = browser.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    assert!(
        body.contains("<script>window.pwned=1</script>"),
        "the label shows as text: {body}"
    );
    assert!(body.contains("<img src=x"), "the summary shows as text");
    // Nothing the payloads would set is set, and the javascript: URL is no link.
    let pwned = browser.execute("return typeof window.pwned;", vec![]).await.unwrap();
    assert_eq!(pwned, json!("undefined"));
    let links = browser.find_all(Locator::Css("a[href^='javascript']")).await.unwrap();
    assert!(links.is_empty());
    // A viewer gets no action buttons.
    for css in ["#ack", "#add-note", "#resolve", "button.approve"] {
        assert!(browser.find_all(Locator::Css(css)).await.unwrap().is_empty(), "{css}");
    }
    // A POST without the CSRF token, from the page itself: 403, nothing changes.
    let before = server.client().incident(incident).await.unwrap().timeline.len();
    let status = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch(arguments[0], {method: 'POST', body: new URLSearchParams({kind: 'note', text: 'forged'})})\
               .then(r => done(r.status), e => done(String(e)));",
            vec![json!(format!("/ui/incidents/{incident}/note"))],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    assert_eq!(server.client().incident(incident).await.unwrap().timeline.len(), before);
    browser.close().await.unwrap();
}
