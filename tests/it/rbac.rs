//! `laojun rbac` against the shipped catalog, and its round trip on the
//! fake cluster enforcing it: every shipped case passes under the generated
//! Roles, and with any one verb taken away a case fails with the 403 naming
//! exactly that verb and resource.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use laojun::testing::read_objects;
use serde_json::Value;

use crate::support;

fn laojun(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_laojun"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("laojun runs")
}

/// (kind, namespace, group, resource, verb) for every rule of every role.
fn grants(objects: &[Value]) -> BTreeSet<(String, String, String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut out = BTreeSet::new();
    for o in objects
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
    {
        for rule in o["rules"].as_array().unwrap() {
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        out.insert((
                            text(&o["kind"]),
                            text(&o["metadata"]["namespace"]),
                            text(group),
                            text(resource),
                            text(verb),
                        ));
                    }
                }
            }
        }
    }
    out
}

fn generated() -> (String, Vec<Value>) {
    let out = laojun(support::repo(), &["rbac", ".", "--namespace", "prod"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let yaml = String::from_utf8(out.stdout).unwrap();
    let objects = read_objects(&yaml).unwrap();
    (yaml, objects)
}

#[test]
fn the_shipped_catalog_needs_exactly_these_verbs_and_nothing_the_guides_operator_role_adds() {
    let (yaml, objects) = generated();
    let kinds: Vec<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding"
        ]
    );
    let role = |ns: &str, group: &str, resource: &str, verb: &str| {
        (
            "Role".to_string(),
            ns.to_string(),
            group.to_string(),
            resource.to_string(),
            verb.to_string(),
        )
    };
    let mut expected: BTreeSet<_> = [
        ("apps", "deployments", "get"),
        ("apps", "deployments", "list"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments/scale", "get"),
        ("apps", "deployments/scale", "patch"),
        ("apps", "replicasets", "list"),
        ("apps", "replicasets", "delete"),
        ("", "services", "get"),
        ("", "services", "patch"),
        ("", "pods", "delete"),
        ("", "pods/log", "get"),
    ]
    .into_iter()
    .map(|(g, r, v)| role("prod", g, r, v))
    .collect();
    // assess-impact looks at pods in every namespace, as the guide does; that
    // covers listing pods in prod too, so the Role does not repeat it.
    expected.insert((
        "ClusterRole".into(),
        String::new(),
        String::new(),
        "pods".into(),
        "list".into(),
    ));
    assert_eq!(grants(&objects), expected, "{yaml}");
    // What the guide's operator Role grants and laojun does not ask for.
    let rules: String = yaml
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for absent in ["configmaps", "\"*\"", "create", "update", "watch", "secrets"] {
        assert!(!rules.contains(absent), "{absent} in {yaml}");
    }
    assert!(
        yaml.contains("# patch deployments: monthly-maintenance/security_update (k8s.restart), restart-deployment/restart (k8s.restart), rollback-deployment/rollback (k8s.rollback), weekly-maintenance/update_image (k8s.set_image)"),
        "each verb names the steps that need it: {yaml}"
    );
    let binding = objects.iter().find(|o| o["kind"] == "RoleBinding").unwrap();
    assert_eq!(binding["subjects"][0]["name"], "laojun");
    assert_eq!(binding["subjects"][0]["namespace"], "laojun");
    assert_eq!(binding["roleRef"]["name"], "laojun");

    // Without --namespace, the alert-driven steps say why they get a ClusterRole.
    let open = laojun(support::repo(), &["rbac", "."]);
    let warnings = String::from_utf8_lossy(&open.stderr);
    assert!(
        warnings.contains("rollback-deployment/rollback (k8s.rollback) acts in a namespace known only when it runs (a playbook passes `namespace: {{alert.labels.namespace}}`)"),
        "{warnings}"
    );
}

#[test]
fn every_shipped_case_passes_under_the_generated_rbac_and_each_verb_removed_fails_with_its_403() {
    let (yaml, objects) = generated();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rbac.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let all = laojun(support::repo(), &["test", ".", "--rbac", file.to_str().unwrap()]);
    assert_eq!(all.status.code(), Some(0), "{}", String::from_utf8_lossy(&all.stdout));

    for (kind, namespace, group, resource, verb) in grants(&objects) {
        // The same roles with this one verb taken away.
        let mut fewer = objects.clone();
        for o in fewer.iter_mut().filter(|o| {
            o["kind"] == kind.as_str() && o["metadata"]["namespace"].as_str().unwrap_or_default() == namespace
        }) {
            for rule in o["rules"].as_array_mut().unwrap() {
                let covers = rule["apiGroups"][0] == group.as_str() && rule["resources"][0] == resource.as_str();
                if covers {
                    rule["verbs"].as_array_mut().unwrap().retain(|v| v != verb.as_str());
                }
            }
        }
        let text: Vec<String> = fewer.iter().map(|o| serde_yaml::to_string(o).unwrap()).collect();
        std::fs::write(&file, text.join("---\n")).unwrap();
        let out = laojun(
            support::repo(),
            &["test", ".", "--rbac", file.to_str().unwrap(), "--output", "json"],
        );
        assert_eq!(out.status.code(), Some(1), "without {verb} {resource}, a case fails");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let (base, sub) = resource
            .split_once('/')
            .map_or((resource.as_str(), None), |(b, s)| (b, Some(s)));
        let denied = match sub {
            Some(s) => format!("cannot {verb} resource \"{base}/{s}\" in API group \"{group}\""),
            None => format!("cannot {verb} resource \"{base}\" in API group \"{group}\""),
        };
        let saw_403 = report["cases"].as_array().unwrap().iter().any(|c| {
            c["failures"].as_array().unwrap().iter().any(|f| {
                let got = f["got"].as_str().unwrap_or_default();
                got.contains(&denied) && got.contains("(403)")
            }) || c["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l.as_str().unwrap_or_default().contains(&denied))
        });
        assert!(
            saw_403,
            "without {verb} {resource}: no failure names {denied:?}: {report}"
        );
        let failures: Vec<&str> = report["cases"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["failures"].as_array().unwrap())
            .filter_map(|f| f["got"].as_str())
            .filter(|g| g.contains("(403)"))
            .collect();
        assert!(
            // Slack texts are quoted in the message, their quotes escaped.
            failures.iter().all(|g| g.replace("\\\"", "\"").contains(&denied)),
            "only the removed verb is refused: {failures:?}"
        );
    }
}

/// `kubectl auth can-i` (a SelfSubjectAccessReview) against the fake
/// example binary started with `--rbac`: yes for what the Roles grant, no
/// for what the ops guide's operator Role would add.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_auth_can_i_answers_from_the_roles_the_fake_example_enforces() {
    let Some(kubectl) = support::require("kubectl") else {
        return;
    };
    let (yaml, _) = generated();
    let dir = tempfile::tempdir().unwrap();
    let (roles, kubeconfig) = (dir.path().join("rbac.yaml"), dir.path().join("kubeconfig"));
    std::fs::write(&roles, yaml).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/examples/fake_kube");
    let mut fake = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(target) => Command::new(Path::new(&target).join("debug/examples/fake_kube")),
        None => Command::new(example),
    };
    let mut fake = fake
        // Port 0: it binds a free port itself and writes the kubeconfig for it.
        .arg("127.0.0.1:0")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--rbac")
        .arg(&roles)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the fake_kube example is built (cargo test builds examples)");
    // It prints where it listens once it serves and its kubeconfig is written.
    let stdout = fake.stdout.take().unwrap();
    // Read to the end: a closed pipe would make its next print fail.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = tokio::task::spawn_blocking(move || rx.recv().unwrap_or_default())
        .await
        .unwrap();
    assert!(first.starts_with("fake Kubernetes API server on"), "{first}");
    let can_i = |args: &[&str]| {
        let out = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["auth", "can-i"])
            .args(args)
            .output()
            .unwrap();
        // `no` exits 1 with nothing on stderr; anything else is an error to show.
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if answer.is_empty() {
            format!("error: {}", String::from_utf8_lossy(&out.stderr).trim())
        } else {
            answer
        }
    };
    let answers = [
        (
            can_i(&["patch", "deployments", "--subresource=scale", "-n", "prod"]),
            "yes",
        ),
        (can_i(&["get", "deployments", "-n", "prod"]), "yes"),
        (can_i(&["patch", "services", "-n", "prod"]), "yes"),
        (can_i(&["list", "pods", "-A"]), "yes"),
        (can_i(&["delete", "deployments", "-n", "prod"]), "no"),
        (can_i(&["create", "configmaps", "-n", "prod"]), "no"),
        (can_i(&["patch", "deployments", "-n", "staging"]), "no"),
    ];
    let _ = fake.kill();
    let _ = fake.wait();
    let got: Vec<&str> = answers.iter().map(|(a, _)| a.as_str()).collect();
    let want: Vec<&str> = answers.iter().map(|(_, w)| *w).collect();
    assert_eq!(got, want);
}
