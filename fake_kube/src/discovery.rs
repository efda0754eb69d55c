//! The discovery documents kubectl and kube-rs read before anything else,
//! and the server-side `Table` rendering `kubectl get` asks for.
//!
//! Only the legacy (unaggregated) discovery forms are served: a client
//! asking for `APIGroupDiscoveryList` gets plain JSON back and falls back to
//! walking `/api`, `/apis` and each group version, as kubectl 1.32 does.

use serde_json::{json, Value};

use super::store::Kind;

/// The document for a discovery path, or None when `path` is not one.
pub fn document(path: &str, server_address: &str) -> Option<Value> {
    match path.trim_end_matches('/') {
        "/version" => Some(version()),
        "/api" => Some(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        })),
        "/apis" => Some(json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [{
                "name": "apps",
                "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
            }],
        })),
        "/api/v1" => Some(resource_list("v1", core_resources())),
        "/apis/apps/v1" => Some(resource_list("apps/v1", apps_resources())),
        _ => None,
    }
}

/// Whether a path belongs to discovery (never subject to fault injection).
pub fn is_discovery(path: &str) -> bool {
    path.starts_with("/openapi")
        || matches!(
            path.trim_end_matches('/'),
            "/version" | "/api" | "/apis" | "/api/v1" | "/apis/apps/v1" | "/healthz" | "/readyz" | "/livez"
        )
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-laojun-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn resource_list(group_version: &str, resources: Vec<Value>) -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

const ALL_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn resource(name: &str, singular: &str, kind: &str, verbs: &[&str], short: &[&str]) -> Value {
    let mut r = json!({
        "name": name,
        "singularName": singular,
        "namespaced": true,
        "kind": kind,
        "verbs": verbs,
    });
    if !short.is_empty() {
        r["shortNames"] = json!(short);
        r["categories"] = json!(["all"]);
    }
    r
}

fn core_resources() -> Vec<Value> {
    vec![
        resource("services", "service", "Service", &ALL_VERBS, &["svc"]),
        resource("services/status", "", "Service", &["get", "patch", "update"], &[]),
        resource("pods", "pod", "Pod", &ALL_VERBS, &["po"]),
        resource("pods/log", "", "Pod", &["get"], &[]),
        resource("pods/status", "", "Pod", &["get", "patch", "update"], &[]),
    ]
}

fn apps_resources() -> Vec<Value> {
    let mut scale = resource("deployments/scale", "", "Scale", &["get", "patch", "update"], &[]);
    // kubectl scale reads the Scale's group and version from here.
    scale["group"] = json!("autoscaling");
    scale["version"] = json!("v1");
    vec![
        resource("deployments", "deployment", "Deployment", &ALL_VERBS, &["deploy"]),
        scale,
        resource("deployments/status", "", "Deployment", &["get", "patch", "update"], &[]),
        resource(
            "replicasets",
            "replicaset",
            "ReplicaSet",
            &["get", "list", "watch"],
            &["rs"],
        ),
    ]
}

/// Whether an Accept header asks for server-side printing.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

/// Column (name, type) pairs and the function that fills a row's cells.
type Layout = (&'static [(&'static str, &'static str)], fn(&Value) -> Vec<Value>);

/// A `meta.k8s.io/v1` Table with the columns `kubectl get` shows.
pub fn table(kind: Kind, objects: &[Value], resource_version: &str) -> Value {
    let (columns, cells) = layout(kind);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({
                "cells": cells(o),
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]},
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns.iter().map(|(name, ty)| column(name, ty)).collect::<Vec<_>>(),
        "rows": rows,
    })
}

/// The columns `kubectl get` shows for a kind, as the real server defines them.
fn layout(kind: Kind) -> Layout {
    match kind {
        Kind::Deployments => (
            &[
                ("Name", "name"),
                ("Ready", "string"),
                ("Up-to-date", "integer"),
                ("Available", "integer"),
                ("Age", "string"),
                ("Containers", "string"),
                ("Images", "string"),
                ("Selector", "string"),
            ],
            deployment_cells,
        ),
        Kind::ReplicaSets => (
            &[
                ("Name", "name"),
                ("Desired", "integer"),
                ("Current", "integer"),
                ("Ready", "integer"),
                ("Age", "string"),
            ],
            replica_set_cells,
        ),
        Kind::Services => (
            &[
                ("Name", "name"),
                ("Type", "string"),
                ("Cluster-IP", "string"),
                ("External-IP", "string"),
                ("Ports", "string"),
                ("Age", "string"),
            ],
            service_cells,
        ),
        Kind::Pods => (
            &[
                ("Name", "name"),
                ("Ready", "string"),
                ("Status", "string"),
                ("Restarts", "string"),
                ("Age", "string"),
                ("IP", "string"),
            ],
            pod_cells,
        ),
    }
}

/// A column definition; `-o wide` also shows the priority-1 ones, and
/// kubectl prefixes the kind (`deployment.apps/x`) in the string column
/// whose format is "name" when several kinds are listed.
fn column(name: &str, ty: &str) -> Value {
    let (ty, format) = if ty == "name" { ("string", "name") } else { (ty, "") };
    let priority = if WIDE_COLUMNS.contains(&name) { 1 } else { 0 };
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

const WIDE_COLUMNS: [&str; 4] = ["Containers", "Images", "Selector", "IP"];

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn deployment_cells(d: &Value) -> Vec<Value> {
    let s = &d["status"];
    vec![
        d["metadata"]["name"].clone(),
        json!(format!("{}/{}", int(&s["readyReplicas"]), int(&d["spec"]["replicas"]))),
        json!(int(&s["updatedReplicas"])),
        json!(int(&s["availableReplicas"])),
        json!(age(d)),
        json!(container_field(d, "name")),
        json!(container_field(d, "image")),
        json!(selector_text(d)),
    ]
}

fn container_field(d: &Value, field: &str) -> String {
    let containers = d["spec"]["template"]["spec"]["containers"].as_array();
    let values: Vec<&str> = containers
        .map(|cs| cs.iter().filter_map(|c| c[field].as_str()).collect())
        .unwrap_or_default();
    values.join(",")
}

/// A deployment's selector as `k=v,k=v`, the form Scale and `-o wide` show.
pub fn selector_text(d: &Value) -> String {
    let labels = d["spec"]["selector"]["matchLabels"].as_object();
    let pairs: Vec<String> = labels
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    pairs.join(",")
}

fn replica_set_cells(rs: &Value) -> Vec<Value> {
    vec![
        rs["metadata"]["name"].clone(),
        json!(int(&rs["spec"]["replicas"])),
        json!(int(&rs["status"]["replicas"])),
        json!(int(&rs["status"]["readyReplicas"])),
        json!(age(rs)),
    ]
}

fn service_cells(svc: &Value) -> Vec<Value> {
    let ports: Vec<String> = svc["spec"]["ports"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| format!("{}/{}", int(&p["port"]), p["protocol"].as_str().unwrap_or("TCP")))
                .collect()
        })
        .unwrap_or_default();
    vec![
        svc["metadata"]["name"].clone(),
        svc["spec"]["type"].clone(),
        svc["spec"]["clusterIP"].clone(),
        json!("<none>"),
        json!(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        }),
        json!(age(svc)),
    ]
}

/// The pod row `kubectl get pods` prints: ready containers, and a status
/// that is the waiting or terminated reason when there is one (so a crash
/// loop reads `CrashLoopBackOff`, a finished Job's pod `Completed`).
fn pod_cells(pod: &Value) -> Vec<Value> {
    let statuses = pod["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let total = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = statuses.iter().filter(|c| c["ready"] == true).count();
    let restarts: i64 = statuses.iter().map(|c| int(&c["restartCount"])).sum();
    let reason = statuses.iter().find_map(|c| {
        let state = &c["state"];
        state["waiting"]["reason"]
            .as_str()
            .or_else(|| state["terminated"]["reason"].as_str())
    });
    let status = pod["status"]["reason"]
        .as_str()
        .or(reason)
        .or_else(|| pod["status"]["phase"].as_str())
        .unwrap_or("Unknown");
    vec![
        pod["metadata"]["name"].clone(),
        json!(format!("{ready}/{total}")),
        json!(status),
        json!(restarts.to_string()),
        json!(age(pod)),
        pod["status"]["podIP"].clone(),
    ]
}

/// Age as kubectl prints it: "5s", "3m", "2h", "4d".
fn age(object: &Value) -> String {
    let created = object["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let Some(created) = created else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - created.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}
