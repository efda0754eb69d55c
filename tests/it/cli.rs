//! The `laojun` binary's exit codes, as scripts rely on them: 0 done, 1 the
//! operation failed, 2 bad usage, 3 the server cannot be reached, 4 refused
//! (401/403), 5 not found (404); errors as `{"error": ...}` with `--output json`.

use std::process::{Command, Output};

use crate::support::{self, Server, TOKEN};

fn laojun(server: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_laojun"))
        .args(args)
        .env("LAOJUN_URL", server)
        .env("LAOJUN_API_TOKEN", token)
        .current_dir(support::repo())
        .output()
        .expect("laojun runs")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("an exit code, not a signal")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_exit_code_from_the_real_binary() {
    let server = Server::start().await;
    let url = server.url.clone();
    server
        .client()
        .post_alerts(support::fixture("firing-single.json"))
        .await
        .unwrap();
    let run = |token: &str, args: &[&str]| {
        let (url, token) = (url.clone(), token.to_string());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        std::thread::spawn(move || laojun(&url, &token, &args.iter().map(String::as_str).collect::<Vec<_>>()))
            .join()
            .unwrap()
    };

    let listed = run(TOKEN, &["incidents", "list", "--severity", "p1", "--status", "OPEN"]);
    assert_eq!(code(&listed), 0, "{}", stderr(&listed));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("INC-1"),
        "flags in any case"
    );
    let noted = run(
        TOKEN,
        &["incidents", "note", "INC-1", "--kind", "ROOT_CAUSE", "a bad deploy"],
    );
    assert_eq!(code(&noted), 0, "{}", stderr(&noted));
    let resolved = run(TOKEN, &["incidents", "resolve", "INC-1"]);
    assert_eq!(code(&resolved), 0, "{}", stderr(&resolved));
    assert_eq!(String::from_utf8_lossy(&resolved.stdout), "INC-1 is resolved\n");
    let audit = run(TOKEN, &["audit"]);
    assert_eq!(code(&audit), 0);
    let trail = String::from_utf8_lossy(&audit.stdout).into_owned();
    assert!(trail.contains("note") && trail.contains("resolve"), "{trail}");

    let again = run(TOKEN, &["incidents", "resolve", "INC-1"]);
    assert_eq!(code(&again), 1, "a 409 is a failed operation: {}", stderr(&again));
    let reopened = run(TOKEN, &["incidents", "reopen", "INC-1", "--reason", "errors are back"]);
    assert_eq!(code(&reopened), 0, "{}", stderr(&reopened));
    assert_eq!(String::from_utf8_lossy(&reopened.stdout), "INC-1 is open\n");
    let no_reason = run(TOKEN, &["incidents", "reopen", "INC-1"]);
    assert_eq!(code(&no_reason), 2, "--reason is required: {}", stderr(&no_reason));
    let severity = run(
        TOKEN,
        &["incidents", "severity", "INC-1", "p0", "--reason", "all users"],
    );
    assert_eq!(code(&severity), 0, "{}", stderr(&severity));
    assert_eq!(String::from_utf8_lossy(&severity.stdout), "INC-1 is P0\n");
    let bad_severity = run(TOKEN, &["incidents", "severity", "INC-1", "P7", "--reason", "x"]);
    assert_eq!(code(&bad_severity), 2, "{}", stderr(&bad_severity));
    let bad_due = run(
        TOKEN,
        &[
            "incidents",
            "note",
            "INC-1",
            "--kind",
            "action_item",
            "--owner",
            "bob",
            "--due",
            "friday",
            "add a canary",
        ],
    );
    assert_eq!(code(&bad_due), 1, "the server refuses it: {}", stderr(&bad_due));
    assert!(
        stderr(&bad_due).contains("`due` must be a date written YYYY-MM-DD"),
        "{}",
        stderr(&bad_due)
    );
    let item = run(
        TOKEN,
        &[
            "incidents",
            "note",
            "INC-1",
            "--kind",
            "action_item",
            "--owner",
            "bob",
            "--due",
            "2026-12-24",
            "add a canary",
        ],
    );
    assert_eq!(code(&item), 0, "{}", stderr(&item));
    let acked = run(TOKEN, &["incidents", "ack", "INC-1"]);
    assert_eq!(code(&acked), 0, "{}", stderr(&acked));
    let resolved = run(TOKEN, &["incidents", "resolve", "INC-1", "--reason", "canary is green"]);
    assert_eq!(code(&resolved), 0, "{}", stderr(&resolved));
    let missing = run(TOKEN, &["incidents", "show", "INC-999"]);
    assert_eq!(code(&missing), 5, "{}", stderr(&missing));
    let refused = run("wrong-token-0123456789abcdef", &["incidents", "list"]);
    assert_eq!(code(&refused), 4, "{}", stderr(&refused));
    let bad_usage = run(TOKEN, &["runs", "list", "--status", "sideways"]);
    assert_eq!(code(&bad_usage), 2, "{}", stderr(&bad_usage));
    let failed_run = run(
        TOKEN,
        &[
            "run",
            "rollback-deployment",
            "-p",
            "namespace=prod",
            "-p",
            "deployment=none",
        ],
    );
    assert_eq!(code(&failed_run), 1, "the run failed: {}", stderr(&failed_run));
    let problems = run(TOKEN, &["validate", "tests/fixtures/broken"]);
    assert_eq!(code(&problems), 1);
    let as_json = run(TOKEN, &["validate", "tests/fixtures/broken", "--output", "json"]);
    assert_eq!(code(&as_json), 1);
    let report: serde_json::Value = serde_json::from_slice(&as_json.stdout).expect("validate prints JSON");
    assert_eq!(report["problems"].as_array().unwrap().len(), 29, "{report}");

    let as_json = run(TOKEN, &["incidents", "show", "INC-999", "--output", "json"]);
    assert_eq!(code(&as_json), 5);
    let error: serde_json::Value = serde_json::from_str(stderr(&as_json).trim()).expect("the error is JSON");
    assert!(error["error"].as_str().unwrap().contains("INC-999"), "{error}");

    let no_scheme = laojun(url.trim_start_matches("http://"), TOKEN, &["incidents", "list"]);
    assert_eq!(code(&no_scheme), 2);
    assert!(
        stderr(&no_scheme).contains("has no scheme; write http://"),
        "{}",
        stderr(&no_scheme)
    );

    server.stop().await;
    let down = laojun(&url, TOKEN, &["incidents", "list"]);
    assert_eq!(code(&down), 3, "{}", stderr(&down));
    assert!(stderr(&down).contains("cannot reach"), "{}", stderr(&down));
}

#[test]
fn the_exit_codes_are_in_the_help() {
    let help = laojun("http://127.0.0.1:1", TOKEN, &["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("3 the server cannot be reached") && text.contains("5 not found"),
        "{text}"
    );
    let postmortem = laojun("http://127.0.0.1:1", TOKEN, &["postmortem", "--help"]);
    let text = String::from_utf8_lossy(&postmortem.stdout).into_owned();
    for flag in ["--output-file", "--server", "--token"] {
        assert_eq!(text.matches(flag).count(), 1, "{flag} once in: {text}");
    }
}
