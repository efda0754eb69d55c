//! laojun in a pod: `KUBERNETES_SERVICE_HOST`/`PORT` set and the
//! ServiceAccount's token, CA and namespace under
//! /var/run/secrets/kubernetes.io/serviceaccount, no kubeconfig anywhere.
//! The fake API server serves HTTPS with a certificate only that CA vouches
//! for, and checks the token as a cluster does. The files sit at the fixed
//! path kube reads, inside a mount namespace of the test's own (a fresh
//! tmpfs on /run), so nothing on this machine changes.

use std::io::Write as _;
use std::path::Path;

use ::fake_kube::{FakeKube, Serving, Tls};
use laojun::run::RunStatus;
use serde_json::json;

use crate::support::{root_with, run_to_end, spawn_serving, with_params, Binary, TOKEN};

const SA_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.laojun-service-account";

/// Whether this process may make a mount namespace (root); in CI it must.
fn can_unshare() -> bool {
    let ok = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot make a mount namespace (unshare --mount); CI runs as root so that this test can"
        );
        let _ = writeln!(std::io::stderr(), "skipped: cannot make a mount namespace");
    }
    ok
}

/// `laojun serve` as a pod runs it: the ServiceAccount files from
/// `account` mounted where kube looks, the service env set, HOME empty.
async fn serve_in_pod(kube: &FakeKube, account: &Path, root: &Path, home: &Path) -> Binary {
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-ec"])
        .arg(
            "mount -t tmpfs tmpfs /run\n\
             mkdir -p /run/secrets/kubernetes.io/serviceaccount\n\
             cp \"$ACCOUNT\"/token \"$ACCOUNT\"/ca.crt \"$ACCOUNT\"/namespace /run/secrets/kubernetes.io/serviceaccount/\n\
             exec \"$LAOJUN\" \"$@\"",
        )
        .arg("sh")
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--root"])
        .arg(root)
        .arg("--data-dir")
        .arg(home.join("data"))
        .env("ACCOUNT", account)
        .env("LAOJUN", env!("CARGO_BIN_EXE_laojun"))
        .env("KUBERNETES_SERVICE_HOST", kube.addr().ip().to_string())
        .env("KUBERNETES_SERVICE_PORT", kube.addr().port().to_string())
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .env("LAOJUN_API_TOKEN", TOKEN);
    spawn_serving(command).await
}

fn write_account(dir: &Path, ca_pem: &str, token: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("token"), token).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_pem).unwrap();
    std::fs::write(dir.join("namespace"), "laojun").unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_pod_laojun_reaches_the_api_server_over_tls_with_its_service_account_token() {
    if !can_unshare() {
        return;
    }
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "kubernetes.default.svc".into()]).unwrap();
    let ca_pem = cert.cert.pem();
    let kube = FakeKube::serve(
        "127.0.0.1:0",
        Serving {
            tls: Some(Tls {
                cert_pem: ca_pem.clone(),
                key_pem: cert.signing_key.serialize_pem(),
            }),
            token: Some(SA_TOKEN.into()),
        },
    )
    .await
    .unwrap();
    assert!(kube.url().starts_with("https://"), "{}", kube.url());
    kube.add_deployment("prod", "checkout", "registry.example/checkout:v1", 3);
    let root = root_with(&[(
        "runbooks/scale-in.yaml",
        "name: scale-in\nparams:\n  cluster: {type: string, default: \"\"}\nsteps:\n  - id: scale\n    action: k8s.scale\n    with: {cluster: \"{{params.cluster}}\", namespace: prod, deployment: checkout, replicas: 5}\n",
    )]);
    let home = tempfile::tempdir().unwrap();
    let account = home.path().join("account");
    write_account(&account, &ca_pem, SA_TOKEN);

    let laojun = serve_in_pod(&kube, &account, root.path(), home.path()).await;
    let c = laojun.client(TOKEN);
    let run = run_to_end(&c, "scale-in", &with_params(json!({"cluster": ""}))).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}\n{}", laojun.kill());
    assert_eq!(
        kube.get("deployment", "prod", "checkout").unwrap()["spec"]["replicas"],
        5
    );
    assert!(
        kube.requests()
            .iter()
            .any(|(m, p, _)| m == "PATCH" && p.contains("/deployments/checkout/scale")),
        "the scale went through the fake: {:?}",
        kube.requests()
    );

    // In a pod there is only the cluster it runs in.
    let run = run_to_end(&c, "scale-in", &with_params(json!({"cluster": "ap-east-1"}))).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:#?}");
    let error = run.steps[0].error.clone().unwrap();
    assert!(
        error.starts_with("cluster `ap-east-1` is not configured: laojun runs in-cluster with its ServiceAccount"),
        "{error}"
    );
    drop(laojun);

    // A token the API server does not know: every request is refused, and
    // the step says so.
    let wrong = home.path().join("wrong-account");
    write_account(&wrong, &ca_pem, "a-revoked-token");
    let home2 = tempfile::tempdir().unwrap();
    let laojun = serve_in_pod(&kube, &wrong, root.path(), home2.path()).await;
    let run = run_to_end(&laojun.client(TOKEN), "scale-in", &with_params(json!({"cluster": ""}))).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:#?}");
    let error = run.steps[0].error.clone().unwrap();
    assert!(error.contains("Unauthorized") && error.contains("401"), "{error}");
}
