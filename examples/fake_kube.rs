//! Runs the fake Kubernetes API server with a demo namespace, for trying
//! laojun's Kubernetes runbooks (or plain kubectl) without a cluster.
//!
//! ```text
//! cargo run --example fake_kube -- [ADDR] [--kubeconfig PATH] [--rbac FILE]
//! ```
//!
//! `--rbac FILE` (what `laojun rbac` prints) makes the fake serve only what
//! those Roles allow, with Kubernetes' 403 for the rest, and answer
//! `kubectl auth can-i` from them.

use std::path::PathBuf;
use std::time::Duration;

use fake_kube::{FakeKube, PodState};

const DEFAULT_ADDR: &str = "127.0.0.1:8001";
const CONTEXTS: [&str; 2] = ["ap-east-1", "ap-southeast-1"];

struct Args {
    addr: String,
    kubeconfig: Option<PathBuf>,
    rbac: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: DEFAULT_ADDR.to_string(),
        kubeconfig: None,
        rbac: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--kubeconfig" => {
                let path = it.next().ok_or("--kubeconfig needs a path")?;
                args.kubeconfig = Some(PathBuf::from(path));
            }
            "--rbac" => {
                let path = it.next().ok_or("--rbac needs a file (what `laojun rbac` prints)")?;
                args.rbac = Some(PathBuf::from(path));
            }
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}")),
            addr => args.addr = addr.to_string(),
        }
    }
    Ok(args)
}

/// The demo: core-services with a bad canary rollout on top of a good
/// revision (so a rollback has somewhere to go), two quiet neighbours, and
/// a Service still pointing at the canary.
fn seed(kube: &FakeKube) {
    kube.set_ready_delay(Duration::ZERO);
    let core = "registry.example.com/core-services";
    kube.add_deployment_with_labels(
        "prod",
        "core-services",
        &format!("{core}:1.41.0"),
        3,
        &[("version", "stable")],
    );
    // Seeding it again rolls it out: revision 2, the canary.
    kube.add_deployment_with_labels(
        "prod",
        "core-services",
        &format!("{core}:1.42.0-canary"),
        3,
        &[("version", "canary")],
    );
    kube.add_deployment(
        "prod",
        "localization-service",
        "registry.example.com/localization-service:2.3.1",
        2,
    );
    kube.add_deployment(
        "prod",
        "compliance-service",
        "registry.example.com/compliance-service:0.9.4",
        2,
    );
    kube.add_service(
        "prod",
        "core-services",
        &[("app", "core-services"), ("version", "canary")],
    );
    // The gateway in front: one pod crash-looping, 5xx in the other's log,
    // and a finished backup Job's pod, for the assessment and cleanup runbooks.
    kube.add_deployment("prod", "api-gateway", "registry.example.com/api-gateway:3.1.0", 2);
    let gateway = kube.pods_of("prod", "api-gateway");
    kube.append_logs(
        "prod",
        &gateway[0],
        None,
        &[
            "GET /v1/orders 200 12ms",
            "POST /v1/pay 503 3ms upstream=core-services",
            "GET /v1/cart 200 4ms",
        ],
    );
    kube.set_pod_state(
        "prod",
        &gateway[1],
        PodState::Waiting {
            reason: "CrashLoopBackOff",
            restarts: 5,
        },
    );
    kube.add_pod("prod", "db-backup-28861", &[("job", "db-backup")], PodState::Succeeded);
    // Rollouts made from here on take a moment, like a real cluster's.
    kube.set_ready_delay(Duration::from_secs(2));
}

fn usage(kube: &FakeKube, kubeconfig: Option<&PathBuf>) -> String {
    let config = match kubeconfig {
        Some(path) => format!(
            "kubeconfig written to {} (contexts {})",
            path.display(),
            CONTEXTS.join(", ")
        ),
        None => "no kubeconfig written; pass --kubeconfig PATH for one".to_string(),
    };
    let flag = kubeconfig.map_or_else(
        || format!("--server {}", kube.url()),
        |p| format!("--kubeconfig {}", p.display()),
    );
    format!(
        "fake Kubernetes API server on {url}\n{config}\n\ntry:\n  \
         kubectl {flag} -n prod get deployments,replicasets,services,pods\n  \
         kubectl {flag} -n prod logs -l app=api-gateway --since=10m\n  \
         kubectl {flag} -n prod rollout history deployment/core-services\n  \
         kubectl {flag} -n prod rollout undo deployment/core-services\n  \
         kubectl {flag} -n prod rollout status deployment/core-services\n\nCtrl-C stops it.",
        url = kube.url(),
    )
}

/// Every YAML document in `path` (Roles and ClusterRoles count; the rest
/// is ignored, as `laojun rbac` prints ServiceAccounts and bindings too).
fn read_roles(path: &PathBuf) -> Result<Vec<serde_json::Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let objects = laojun::testing::read_objects(&text)?;
    let roles = objects
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("Role" | "ClusterRole")))
        .count();
    if roles == 0 {
        return Err("no Role or ClusterRole in it".into());
    }
    Ok(objects)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("fake_kube: {problem}");
            }
            eprintln!("usage: cargo run --example fake_kube -- [ADDR] [--kubeconfig PATH] [--rbac FILE]");
            std::process::exit(2);
        }
    };
    let kube = match FakeKube::start_on(&args.addr).await {
        Ok(kube) => kube,
        Err(e) => {
            eprintln!("fake_kube: cannot listen on {}: {e}", args.addr);
            std::process::exit(1);
        }
    };
    seed(&kube);
    if let Some(path) = &args.rbac {
        match read_roles(path) {
            Ok(objects) => kube.enforce_rbac(&objects),
            Err(e) => {
                eprintln!("fake_kube: --rbac {}: {e}", path.display());
                std::process::exit(2);
            }
        }
    }
    if let Some(path) = &args.kubeconfig {
        if let Err(e) = kube.write_kubeconfig(path, &CONTEXTS) {
            eprintln!("fake_kube: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    println!("{}", usage(&kube, args.kubeconfig.as_ref()));
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("fake_kube: cannot wait for Ctrl-C: {e}");
    }
}
