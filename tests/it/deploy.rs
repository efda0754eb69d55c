//! `deploy/kubernetes/` rendered by `kubectl kustomize` and every object
//! decoded with k8s-openapi's types, a field they do not know being an
//! error; the Deployment is what a restricted namespace admits; the Roles
//! are what `laojun rbac` prints; the ConfigMaps hold exactly the shipped
//! catalog and pass `laojun validate`; AlertManager takes the receiver.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;

use crate::support;

/// The first place where `typed`'s JSON lacks something of `raw`'s: a
/// field the type does not know (or spelled wrong).
fn lost(raw: &Value, typed: &Value, path: &str) -> Option<String> {
    match (raw, typed) {
        (Value::Object(a), Value::Object(b)) => a.iter().find_map(|(k, v)| match b.get(k) {
            None if !v.is_null() => Some(format!("{path}.{k}")),
            None => None,
            Some(w) => lost(v, w, &format!("{path}.{k}")),
        }),
        (Value::Array(a), Value::Array(b)) => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (v, w))| lost(v, w, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Decodes `object` as `T` and back; an unknown field fails, naming it.
fn strict<T: serde::de::DeserializeOwned + serde::Serialize>(object: &Value) -> T {
    let name = format!("{} {}", object["kind"], object["metadata"]["name"]);
    let typed: T = serde_json::from_value(object.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    if let Some(field) = lost(object, &back, "") {
        panic!("{name}: {field} is not a field of its type");
    }
    typed
}

fn rendered(kubectl: &Path) -> Vec<Value> {
    let out = Command::new(kubectl)
        .args(["kustomize"])
        .arg(support::repo().join("deploy/kubernetes"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    laojun::testing::read_objects(&String::from_utf8(out.stdout).unwrap()).unwrap()
}

#[test]
fn the_kustomization_renders_objects_kubernetes_accepts_with_the_shipped_catalog_and_its_least_privilege() {
    let Some(kubectl) = support::require("kubectl") else {
        return;
    };
    let objects = rendered(&kubectl);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut config_maps = BTreeMap::new();
    let mut deployment = None;
    let mut rbac = Vec::new();
    for o in &objects {
        let kind = o["kind"].as_str().unwrap().to_string();
        *kinds.entry(kind.clone()).or_default() += 1;
        match kind.as_str() {
            "Namespace" => drop(strict::<Namespace>(o)),
            "ServiceAccount" => drop(strict::<ServiceAccount>(o)),
            "Role" => drop(strict::<Role>(o)),
            "RoleBinding" => drop(strict::<RoleBinding>(o)),
            "ClusterRole" => drop(strict::<ClusterRole>(o)),
            "ClusterRoleBinding" => drop(strict::<ClusterRoleBinding>(o)),
            "PersistentVolumeClaim" => drop(strict::<PersistentVolumeClaim>(o)),
            "Service" => drop(strict::<Service>(o)),
            "Deployment" => deployment = Some(strict::<Deployment>(o)),
            "ConfigMap" => {
                let cm = strict::<ConfigMap>(o);
                config_maps.insert(cm.metadata.name.clone().unwrap(), cm);
            }
            other => panic!("unexpected kind {other}"),
        }
        if matches!(
            kind.as_str(),
            "ServiceAccount" | "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding"
        ) {
            rbac.push(o.clone());
        }
    }
    let expected: BTreeMap<String, usize> = [
        ("ClusterRole", 1),
        ("ClusterRoleBinding", 1),
        ("ConfigMap", 4),
        ("Deployment", 1),
        ("Namespace", 1),
        ("PersistentVolumeClaim", 1),
        ("Role", 1),
        ("RoleBinding", 1),
        ("Service", 1),
        ("ServiceAccount", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(kinds, expected);

    // The RBAC is what `laojun rbac` prints for the shipped catalog now.
    let out = Command::new(env!("CARGO_BIN_EXE_laojun"))
        .args(["rbac", ".", "--namespace", "prod"])
        .current_dir(support::repo())
        .output()
        .unwrap();
    let mut generated = laojun::testing::read_objects(&String::from_utf8(out.stdout).unwrap()).unwrap();
    // kustomize orders objects by kind.
    let key = |v: &Value| v.to_string();
    generated.sort_by_key(key);
    rbac.sort_by_key(key);
    assert_eq!(
        rbac, generated,
        "deploy/kubernetes/rbac.yaml is stale: run scripts/sync-deploy"
    );

    // The pod: non-root, read-only root, resources, both probes, its volumes.
    let deployment = deployment.unwrap();
    let pod = deployment.spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("laojun"));
    assert_eq!(pod.security_context.as_ref().unwrap().run_as_non_root, Some(true));
    let container = &pod.containers[0];
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert!(container
        .resources
        .as_ref()
        .unwrap()
        .limits
        .as_ref()
        .unwrap()
        .contains_key("memory"));
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone().unwrap()
    };
    assert_eq!(probe_path(&container.liveness_probe), "/healthz");
    assert_eq!(probe_path(&container.readiness_probe), "/readyz");
    // The image's entrypoint is `laojun serve`: args are serve's flags.
    assert_eq!(
        container.args.as_ref().unwrap()[..2],
        ["--config".to_string(), "/etc/laojun/config/laojun.yaml".to_string()]
    );
    assert_eq!(
        container.image.as_deref(),
        Some(concat!("localhost/laojun:", env!("CARGO_PKG_VERSION")))
    );
    let volumes = pod.volumes.unwrap();
    let mounts: BTreeMap<String, String> = container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect();
    for v in &volumes {
        assert!(mounts.contains_key(&v.name), "volume {} is not mounted", v.name);
        if let Some(cm) = &v.config_map {
            assert!(
                config_maps.contains_key(&cm.name),
                "volume {} names no generated ConfigMap",
                v.name
            );
        }
    }

    // The config the pod reads, with the paths the mounts give it.
    let config_map = |prefix: &str| {
        config_maps
            .iter()
            .find(|(name, _)| name.starts_with(prefix))
            .map(|(_, cm)| cm.data.clone().unwrap_or_default())
            .unwrap_or_else(|| panic!("no ConfigMap {prefix}-*"))
    };
    let text = &config_map("laojun-config-")["laojun.yaml"];
    let config: laojun::config::Config = serde_yaml::from_str(text).expect("laojun.yaml in the ConfigMap is a config");
    assert_eq!(config.data_dir.to_str(), mounts.get("data").map(String::as_str));
    for dir in ["runbooks", "playbooks", "templates"] {
        assert_eq!(
            mounts[dir],
            config.root.join(dir).to_str().unwrap(),
            "{dir} is mounted where the config's root reads it"
        );
    }
    assert_eq!(config.kubernetes.kubeconfig, None, "in the pod: its ServiceAccount");

    // The catalog in the ConfigMaps is the shipped one, byte for byte, and
    // passes validate as laojun in the pod would load it.
    let root = tempfile::tempdir().unwrap();
    for dir in ["runbooks", "playbooks", "templates"] {
        let data = config_map(&format!("laojun-{dir}-"));
        std::fs::create_dir(root.path().join(dir)).unwrap();
        let shipped: BTreeMap<String, String> = std::fs::read_dir(support::repo().join(dir))
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                (
                    path.file_name().unwrap().to_str().unwrap().to_string(),
                    std::fs::read_to_string(&path).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            shipped.keys().collect::<Vec<_>>(),
            "deploy/kubernetes/catalog/{dir} is stale: run scripts/sync-deploy"
        );
        for (name, text) in &data {
            assert_eq!(
                text, &shipped[name],
                "catalog/{dir}/{name} is stale: run scripts/sync-deploy"
            );
            std::fs::write(root.path().join(dir).join(name), text).unwrap();
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_laojun"))
        .arg("validate")
        .arg(root.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.starts_with("ok: 11 runbooks, 8 playbooks, 4 templates"), "{said}");
}

#[test]
fn alertmanager_takes_the_receiver_that_points_at_the_service() {
    let Some(amtool) = support::require("amtool") else {
        return;
    };
    let file = support::repo().join("deploy/kubernetes/alertmanager-receiver.yaml");
    let out = Command::new(amtool).arg("check-config").arg(&file).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("url: http://laojun.laojun.svc:9095/api/v1/alerts"),
        "{text}"
    );
}

#[test]
fn systemd_accepts_the_unit_and_restarts_laojun_when_it_exits_for_a_reopened_store() {
    let Some(analyze) = support::require("systemd-analyze") else {
        return;
    };
    let text = std::fs::read_to_string(support::repo().join("deploy/systemd/laojun.service")).unwrap();
    for line in [
        "Restart=on-failure",
        "RestartSec=2s",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=laojun",
    ] {
        assert!(text.lines().any(|l| l == line), "the unit lacks {line}");
    }
    // verify checks that ExecStart's binary exists: point it at the built one.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("laojun.service");
    std::fs::write(
        &unit,
        text.replace("/usr/local/bin/laojun", env!("CARGO_BIN_EXE_laojun")),
    )
    .unwrap();
    let out = Command::new(analyze).arg("verify").arg(&unit).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
