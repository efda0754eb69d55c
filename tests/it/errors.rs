//! Backend errors that say what to do: a Route53 that cannot be reached is
//! named with its endpoint and the cause; `run --standalone` beside a
//! running server says another laojun holds the data dir, once.

use laojun::client::RunRequest;
use laojun::run::RunStatus;

use crate::support::{self, root_with, Server};

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_route53_is_named_with_its_endpoint_and_the_cause() {
    // Signing needs some credentials; nothing listens where they would go.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let endpoint = format!("http://{}", support::CLOSED);
    let runbook = "name: move\nsteps:\n  - id: dns\n    action: dns.failover\n    with: {hosted_zone_id: Z1, record_name: api.example.com, to: standby.example.com}\n";
    let root = root_with(&[("runbooks/move.yaml", runbook)]);
    let (path, url) = (root.path().to_path_buf(), endpoint.clone());
    let server = Server::start_with(move |c| {
        c.root = path;
        c.aws.endpoint_url = Some(url);
    })
    .await;
    let run = support::run_to_end(&server.client(), "move", &RunRequest::default()).await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.steps[0].error.as_deref().unwrap();
    assert!(
        error.contains(&format!("cannot reach Route53 at {endpoint}: ")),
        "{error}"
    );
    assert!(error.to_lowercase().contains("connection refused"), "{error}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_beside_a_running_server_says_who_holds_the_data_dir_once() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_path_buf();
    let server = support::spawn_binary(move |c| {
        c.arg("--root")
            .arg(support::repo())
            .arg("--data-dir")
            .arg(d)
            .env("LAOJUN_API_TOKEN", support::TOKEN);
    })
    .await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_laojun"))
        .args(["run", "slack-status-update", "-p", "text=hi", "--standalone", "--root"])
        .arg(support::repo())
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let wanted = format!(
        "another laojun is using data dir {} (pid {}?)",
        data.path().display(),
        server.child.id()
    );
    assert_eq!(stderr.matches(&wanted).count(), 1, "{stderr}");
    assert!(
        !stderr.contains("could not acquire lock"),
        "no raw sled error: {stderr}"
    );
}
