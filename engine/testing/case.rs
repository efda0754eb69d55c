//! Reading `runbook-tests/*.yaml`: each file is one case (a mapping) or a
//! list of cases. Every problem is reported at `file:line:col` with what to
//! write instead, as `validate` does for runbooks; a case is only run when
//! its file has none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};

use crate::catalog::Catalog;
use crate::decode::{expect_int, expect_str, Fields};
use crate::diag::{did_you_mean, one_of, Diagnostic, Diagnostics};
use crate::playbook::Trigger;
use crate::yaml::{self, Node, Pos, Value};

/// The folder of test files beside `runbooks/` and `playbooks/`.
pub const DIR: &str = "runbook-tests";

const CASE_KEYS: &[&str] = &[
    "name",
    "alert",
    "schedule",
    "run",
    "cluster",
    "responses",
    "approvals",
    "expect",
];
const ALERT_KEYS: &[&str] = &["file", "labels", "annotations", "status"];
const RUN_KEYS: &[&str] = &["runbook", "params"];
const CLUSTER_KEYS: &[&str] = &["contexts", "deployments", "services", "pods", "fail_next"];
const DEPLOYMENT_KEYS: &[&str] = &["namespace", "name", "revisions", "replicas", "labels"];
const SERVICE_KEYS: &[&str] = &["namespace", "name", "selector"];
const POD_KEYS: &[&str] = &["namespace", "name", "deployment", "state", "reason", "restarts", "logs"];
const FAIL_KEYS: &[&str] = &["status", "count"];
const RESPONSE_KEYS: &[&str] = &["match", "status", "json", "text", "times"];
const MATCH_KEYS: &[&str] = &["method", "url", "contains"];
const EXPECT_KEYS: &[&str] = &[
    "incident",
    "runs",
    "steps",
    "cluster",
    "slack",
    "not_called",
    "requests",
];
const INCIDENT_KEYS: &[&str] = &["severity", "status"];
const RUN_EXPECT_KEYS: &[&str] = &["runbook", "status"];
const CLUSTER_EXPECT_KEYS: &[&str] = &["deployments", "services"];
const DEPLOYMENT_EXPECT_KEYS: &[&str] = &["namespace", "name", "image", "replicas"];
const SLACK_KEYS: &[&str] = &["contains"];
const REQUEST_KEYS: &[&str] = &["method", "url", "count"];
const POD_STATES: &[&str] = &["Running", "CrashLoopBackOff", "Pending", "Succeeded", "Failed"];
const RUN_STATUSES: &[&str] = &[
    "succeeded",
    "failed",
    "cancelled",
    "refused",
    "skipped",
    "paused",
    "interrupted",
];
const STEP_STATUSES: &[&str] = &["succeeded", "failed", "skipped", "cancelled", "pending"];

/// One case, ready to run.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub file: PathBuf,
    pub pos: Pos,
    pub trigger: TriggerSpec,
    pub cluster: Seed,
    pub responses: Vec<Response>,
    /// Approval step id → approve (true) or deny.
    pub approvals: BTreeMap<String, bool>,
    pub expect: Vec<Expectation>,
}

/// What starts the case.
#[derive(Debug, Clone)]
pub enum TriggerSpec {
    /// A webhook body, as AlertManager would post it.
    Alert(Vec<u8>),
    /// A scheduled playbook coming due.
    Schedule(String),
    /// A runbook started by hand.
    Run {
        runbook: String,
        params: serde_json::Map<String, Json>,
    },
}

/// The fake cluster's starting state.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    /// More kubeconfig contexts (say, one per region), all on the one fake.
    pub contexts: Vec<String>,
    pub deployments: Vec<SeedDeployment>,
    pub services: Vec<SeedService>,
    pub pods: Vec<SeedPod>,
    /// The next requests fail with these statuses, in order.
    pub fail_next: Vec<(u16, usize)>,
}

#[derive(Debug, Clone)]
pub struct SeedDeployment {
    pub namespace: String,
    pub name: String,
    /// Images, oldest first: each becomes a revision.
    pub revisions: Vec<String>,
    pub replicas: i64,
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct SeedService {
    pub namespace: String,
    pub name: String,
    pub selector: Vec<(String, String)>,
}

/// A pod of a seeded deployment (its first) put in a state, or a pod of
/// its own; with log lines.
#[derive(Debug, Clone)]
pub struct SeedPod {
    pub namespace: String,
    pub name: Option<String>,
    pub deployment: Option<String>,
    pub state: String,
    pub reason: Option<String>,
    pub restarts: i64,
    pub logs: Vec<String>,
}

/// An answer the recorder gives to matching requests.
#[derive(Debug, Clone)]
pub struct Response {
    pub pos: Pos,
    pub method: Option<String>,
    /// A URL, `*` matching any run of characters.
    pub url: String,
    /// Text the request's query or body must contain.
    pub contains: Option<String>,
    pub status: u16,
    pub body: Json,
    /// Answer this many matching requests, then let the next response match.
    pub times: Option<usize>,
}

/// One thing the case expects, where it is written.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub pos: Pos,
    pub what: Expect,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    IncidentSeverity(String),
    IncidentStatus(String),
    Run {
        runbook: String,
        status: String,
    },
    Step {
        id: String,
        status: String,
    },
    Deployment {
        namespace: String,
        name: String,
        image: Option<String>,
        replicas: Option<i64>,
    },
    Service {
        namespace: String,
        name: String,
        selector: Vec<(String, String)>,
    },
    Slack {
        contains: String,
    },
    NotCalled(String),
    Requests {
        method: Option<String>,
        url: String,
        count: Option<usize>,
    },
}

/// The cases under `root/runbook-tests/`, and every problem in them. No
/// folder: no cases and no problems.
pub fn load(root: &Path, catalog: &Catalog, found: &mut Vec<Diagnostic>) -> Vec<Case> {
    let dir = root.join(DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let before = found.len();
        // Named as from the root, as `validate` names runbooks.
        let shown = PathBuf::from(DIR).join(path.file_name().unwrap_or_default());
        let mut d = Diagnostics::new(&shown, found);
        let parsed = read_file(&path, &shown, catalog, &mut d);
        if d.count() == before {
            cases.extend(parsed);
        }
    }
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for case in &cases {
        if let Some(first) = seen.insert(case.name.clone(), case.file.clone()) {
            found.push(Diagnostic {
                path: case.file.clone(),
                pos: case.pos,
                message: format!(
                    "case name `{}` is also used in {}; names must be unique (`--filter` picks cases by name)",
                    case.name,
                    first.display()
                ),
            });
        }
    }
    cases
}

fn read_file(path: &Path, shown: &Path, catalog: &Catalog, d: &mut Diagnostics) -> Vec<Case> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            d.error(Pos::new(1, 1), format!("cannot read: {e}"));
            return Vec::new();
        }
    };
    let root = match yaml::parse(&text) {
        Ok(n) => n,
        Err(e) => {
            d.error(e.pos, format!("YAML syntax: {}", e.message));
            return Vec::new();
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let nodes: Vec<&Node> = match &root.value {
        Value::Seq(items) => items.iter().collect(),
        Value::Map(_) => vec![&root],
        _ => {
            d.error(
                root.pos,
                "a test file is one case (`name:`, `alert:`, `expect:` ...) or a list of them",
            );
            return Vec::new();
        }
    };
    nodes
        .into_iter()
        .filter_map(|node| read_case(node, shown, base, catalog, d))
        .collect()
}

fn read_case(node: &Node, shown: &Path, base: &Path, catalog: &Catalog, d: &mut Diagnostics) -> Option<Case> {
    let f = Fields::of(node, "the case", CASE_KEYS, d)?;
    let name = f
        .req_str("name", "name: service-down-rolls-back", d)
        .map(str::to_string);
    let given: Vec<&str> = ["alert", "schedule", "run"]
        .into_iter()
        .filter(|k| f.get(k).is_some())
        .collect();
    let trigger = match given.as_slice() {
        ["alert"] => f.get("alert").and_then(|n| alert(n, base, shown, d)),
        ["schedule"] => f.get("schedule").and_then(|n| schedule(n, catalog, d)),
        ["run"] => f.get("run").and_then(|n| manual(n, catalog, d)),
        [] => {
            d.error(node.pos, "the case says nothing to start: give `alert:` (a webhook body or labels), `schedule: PLAYBOOK` or `run: {runbook: NAME}`");
            None
        }
        _ => {
            d.error(node.pos, format!("the case gives {}; give only one", one_of(&given)));
            None
        }
    };
    let cluster = f.get("cluster").map_or(Some(Seed::default()), |n| seed(n, d));
    let responses = f.get("responses").map_or(Some(Vec::new()), |n| responses(n, d));
    let approvals = f.get("approvals").map_or(Some(BTreeMap::new()), |n| approvals(n, d));
    let expect = match f.get("expect") {
        Some(n) => expectations(n, catalog, d),
        None => {
            d.error(node.pos, "the case is missing `expect`; add e.g. `expect: {runs: [{runbook: rollback-deployment, status: succeeded}]}`");
            None
        }
    };
    Some(Case {
        name: name?,
        file: shown.to_path_buf(),
        pos: node.pos,
        trigger: trigger?,
        cluster: cluster?,
        responses: responses?,
        approvals: approvals?,
        expect: expect?,
    })
}

fn alert(node: &Node, base: &Path, shown: &Path, d: &mut Diagnostics) -> Option<TriggerSpec> {
    let f = Fields::of(node, "`alert`", ALERT_KEYS, d)?;
    if let Some(file) = f.opt_str("file", d) {
        let path = base.join(file);
        let named = shown.parent().unwrap_or(Path::new("")).join(file);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                d.error(f.get("file")?.pos, format!("alert file {}: {e}", named.display()));
                return None;
            }
        };
        let value: Json = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                d.error(
                    f.get("file")?.pos,
                    format!("alert file {} is not JSON: {e}", named.display()),
                );
                return None;
            }
        };
        // A whole webhook body as AlertManager posts it, or one alert of one.
        let body = if value.get("alerts").is_some() {
            value
        } else {
            webhook(vec![value])
        };
        let bytes = body.to_string().into_bytes();
        if let Err(e) = crate::alert::parse(&bytes) {
            d.error(f.get("file")?.pos, format!("alert file {}: {}", named.display(), e.0));
            return None;
        }
        return Some(TriggerSpec::Alert(bytes));
    }
    let labels = f.required("labels", "labels: {alertname: ServiceDown, namespace: prod}", d)?;
    let labels = string_map(labels, "`labels` of `alert`", d)?;
    let annotations = match f.get("annotations") {
        Some(n) => string_map(n, "`annotations` of `alert`", d)?,
        None => Vec::new(),
    };
    let status = f.opt_str("status", d).unwrap_or("firing");
    if !["firing", "resolved"].contains(&status) {
        d.error(
            f.get("status")?.pos,
            format!("`status` of `alert` is `{status}`; write `firing` or `resolved`"),
        );
        return None;
    }
    let map = |pairs: Vec<(String, String)>| -> Json {
        pairs
            .into_iter()
            .map(|(k, v)| (k, Json::String(v)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let ends_at = if status == "resolved" {
        "2026-01-01T00:05:00Z"
    } else {
        "0001-01-01T00:00:00Z"
    };
    let one = json!({
        "status": status,
        "labels": map(labels),
        "annotations": map(annotations),
        // A fixed start: cases are repeatable; the engine keys episodes on it.
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": ends_at,
        "generatorURL": "",
    });
    Some(TriggerSpec::Alert(webhook(vec![one]).to_string().into_bytes()))
}

fn webhook(alerts: Vec<Json>) -> Json {
    let status = if alerts.iter().all(|a| a["status"] == "resolved") {
        "resolved"
    } else {
        "firing"
    };
    json!({
        "version": "4",
        "groupKey": "{}:{laojun-test}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "laojun",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": alerts,
    })
}

fn schedule(node: &Node, catalog: &Catalog, d: &mut Diagnostics) -> Option<TriggerSpec> {
    let name = expect_str(node, "`schedule`", d)?;
    match catalog.playbooks.iter().find(|p| p.name == name) {
        Some(p) if matches!(p.trigger, Trigger::Schedule(_)) => Some(TriggerSpec::Schedule(name.to_string())),
        Some(_) => {
            d.error(
                node.pos,
                format!("playbook `{name}` has no schedule; use `alert:` for it"),
            );
            None
        }
        None => {
            let names: Vec<&str> = catalog
                .playbooks
                .iter()
                .filter(|p| matches!(p.trigger, Trigger::Schedule(_)))
                .map(|p| p.name.as_str())
                .collect();
            d.error(
                node.pos,
                format!(
                    "no scheduled playbook `{name}`{}; the scheduled ones are {}",
                    hint(name, &names),
                    one_of(&names)
                ),
            );
            None
        }
    }
}

fn manual(node: &Node, catalog: &Catalog, d: &mut Diagnostics) -> Option<TriggerSpec> {
    let f = Fields::of(node, "`run`", RUN_KEYS, d)?;
    let runbook = f.req_str("runbook", "runbook: rollback-deployment", d)?;
    known_runbook(runbook, f.get("runbook")?.pos, catalog, d)?;
    let params = match f.get("params") {
        Some(n) => match n.to_json() {
            Json::Object(m) => m,
            _ => {
                d.error(n.pos, "`params` of `run` must be a mapping such as `{namespace: prod}`");
                return None;
            }
        },
        None => serde_json::Map::new(),
    };
    Some(TriggerSpec::Run {
        runbook: runbook.to_string(),
        params,
    })
}

fn known_runbook(name: &str, pos: Pos, catalog: &Catalog, d: &mut Diagnostics) -> Option<()> {
    if catalog.runbooks.contains_key(name) {
        return Some(());
    }
    let names: Vec<&str> = catalog.runbooks.keys().map(String::as_str).collect();
    d.error(
        pos,
        format!(
            "runbook `{name}` does not exist{}; the runbooks are {}",
            hint(name, &names),
            one_of(&names)
        ),
    );
    None
}

fn hint(word: &str, names: &[&str]) -> String {
    did_you_mean(word, names).map_or(String::new(), |n| format!(" (did you mean `{n}`?)"))
}

fn seq<'n>(node: &'n Node, what: &str, d: &mut Diagnostics) -> Option<&'n [Node]> {
    let items = node.as_seq();
    if items.is_none() {
        d.error(
            node.pos,
            format!(
                "{what} must be a list (`- ...` lines or `[...]`), found {}",
                node.kind()
            ),
        );
    }
    items
}

fn string_map(node: &Node, what: &str, d: &mut Diagnostics) -> Option<Vec<(String, String)>> {
    let Some(entries) = node.as_map() else {
        d.error(
            node.pos,
            format!(
                "{what} must be a mapping such as `{{app: checkout}}`, found {}",
                node.kind()
            ),
        );
        return None;
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let value = match &v.value {
            Value::Str { text, .. } => text.clone(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Float(f) => f.to_string(),
            _ => {
                d.error(v.pos, format!("values in {what} are text, found {}", v.brief()));
                return None;
            }
        };
        out.push((k.key_text(), value));
    }
    Some(out)
}

fn seed(node: &Node, d: &mut Diagnostics) -> Option<Seed> {
    let f = Fields::of(node, "`cluster`", CLUSTER_KEYS, d)?;
    let mut seed = Seed::default();
    let before = d.count();
    if let Some(n) = f.get("contexts") {
        seed.contexts = crate::decode::str_list(n, &f.field("contexts"), d)
            .into_iter()
            .map(|(s, _)| s.to_string())
            .collect();
    }
    for n in f
        .get("deployments")
        .and_then(|n| seq(n, "`cluster.deployments`", d))
        .unwrap_or_default()
    {
        let Some(g) = Fields::of(n, "a deployment in `cluster`", DEPLOYMENT_KEYS, d) else {
            continue;
        };
        let namespace = g.req_str("namespace", "namespace: prod", d);
        let name = g.req_str("name", "name: core-services", d);
        let revisions: Vec<String> = match g.required("revisions", r#"revisions: ["core:v1", "core:v2"]"#, d) {
            Some(r) => crate::decode::str_list(r, &g.field("revisions"), d)
                .into_iter()
                .map(|(s, _)| s.to_string())
                .collect(),
            None => Vec::new(),
        };
        if revisions.is_empty() && g.get("revisions").is_some() {
            d.error(g.pos, "`revisions` needs at least one image, oldest first");
        }
        let replicas = g.opt_int("replicas", 0, 1000, d).unwrap_or(1);
        let labels = g
            .get("labels")
            .and_then(|l| string_map(l, "`labels` of a deployment", d))
            .unwrap_or_default();
        if let (Some(namespace), Some(name)) = (namespace, name) {
            seed.deployments.push(SeedDeployment {
                namespace: namespace.into(),
                name: name.into(),
                revisions,
                replicas,
                labels,
            });
        }
    }
    for n in f
        .get("services")
        .and_then(|n| seq(n, "`cluster.services`", d))
        .unwrap_or_default()
    {
        let Some(g) = Fields::of(n, "a service in `cluster`", SERVICE_KEYS, d) else {
            continue;
        };
        let namespace = g.req_str("namespace", "namespace: prod", d);
        let name = g.req_str("name", "name: core-services", d);
        let selector = g
            .required("selector", "selector: {app: core-services}", d)
            .and_then(|s| string_map(s, "`selector`", d));
        if let (Some(namespace), Some(name), Some(selector)) = (namespace, name, selector) {
            seed.services.push(SeedService {
                namespace: namespace.into(),
                name: name.into(),
                selector,
            });
        }
    }
    for n in f
        .get("pods")
        .and_then(|n| seq(n, "`cluster.pods`", d))
        .unwrap_or_default()
    {
        let Some(g) = Fields::of(n, "a pod in `cluster`", POD_KEYS, d) else {
            continue;
        };
        let namespace = g.req_str("namespace", "namespace: prod", d);
        let (name, deployment) = (g.opt_str("name", d), g.opt_str("deployment", d));
        if name.is_some() == deployment.is_some() {
            d.error(
                g.pos,
                "a pod in `cluster` names either `deployment` (its first pod) or `name` (a pod of its own)",
            );
        }
        let state = g.opt_str("state", d).unwrap_or("Running");
        if !POD_STATES.contains(&state) {
            d.error(
                g.get("state")?.pos,
                format!("`state` is `{state}`; write {}", one_of(POD_STATES)),
            );
        }
        let logs = g
            .get("logs")
            .map(|l| {
                crate::decode::str_list(l, &g.field("logs"), d)
                    .into_iter()
                    .map(|(s, _)| s.to_string())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(namespace) = namespace {
            seed.pods.push(SeedPod {
                namespace: namespace.into(),
                name: name.map(str::to_string),
                deployment: deployment.map(str::to_string),
                state: state.into(),
                reason: g.opt_str("reason", d).map(str::to_string),
                restarts: g.opt_int("restarts", 0, 10_000, d).unwrap_or(0),
                logs,
            });
        }
    }
    for n in f
        .get("fail_next")
        .and_then(|n| seq(n, "`cluster.fail_next`", d))
        .unwrap_or_default()
    {
        let Some(g) = Fields::of(n, "an entry of `fail_next`", FAIL_KEYS, d) else {
            continue;
        };
        let status = g
            .get("status")
            .and_then(|s| expect_int(s, &g.field("status"), 400, 599, d));
        let count = g.opt_int("count", 1, 100, d).unwrap_or(1);
        if g.get("status").is_none() {
            d.error(
                g.pos,
                "an entry of `fail_next` needs `status`, e.g. `{status: 409, count: 1}`",
            );
        }
        if let Some(status) = status {
            seed.fail_next.push((status as u16, count as usize));
        }
    }
    (d.count() == before).then_some(seed)
}

fn responses(node: &Node, d: &mut Diagnostics) -> Option<Vec<Response>> {
    let before = d.count();
    let mut out = Vec::new();
    for n in seq(node, "`responses`", d)? {
        let Some(f) = Fields::of(n, "a response", RESPONSE_KEYS, d) else {
            continue;
        };
        let Some(m) = f.required(
            "match",
            r#"match: {method: POST, url: "http://prometheus/api/v1/query*"}"#,
            d,
        ) else {
            continue;
        };
        let Some(m) = Fields::of(m, "`match`", MATCH_KEYS, d) else {
            continue;
        };
        let Some(url) = m.req_str("url", r#"url: "http://prometheus/api/v1/query*""#, d) else {
            continue;
        };
        if !url.starts_with("http://") {
            d.error(m.get("url")?.pos, format!("`url` {url:?} must start with http://: `laojun test` answers plain-HTTP requests (Slack, Prometheus and AlertManager are sent there)"));
        }
        let body = match (f.get("json"), f.opt_str("text", d)) {
            (Some(j), None) => j.to_json(),
            (None, Some(t)) => Json::String(t.to_string()),
            (None, None) => json!({}),
            (Some(_), Some(_)) => {
                d.error(f.pos, "a response gives `json` or `text`, not both");
                continue;
            }
        };
        out.push(Response {
            pos: n.pos,
            method: m.opt_str("method", d).map(str::to_ascii_uppercase),
            url: url.to_string(),
            contains: m.opt_str("contains", d).map(str::to_string),
            status: f.opt_int("status", 100, 599, d).unwrap_or(200) as u16,
            body,
            times: f.opt_int("times", 1, 10_000, d).map(|t| t as usize),
        });
    }
    (d.count() == before).then_some(out)
}

fn approvals(node: &Node, d: &mut Diagnostics) -> Option<BTreeMap<String, bool>> {
    let Some(entries) = node.as_map() else {
        d.error(
            node.pos,
            "`approvals` maps approval step ids to `approve` or `deny`, e.g. `{ask: approve}`",
        );
        return None;
    };
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        match v.as_str() {
            Some("approve") => out.insert(k.key_text(), true),
            Some("deny") => out.insert(k.key_text(), false),
            _ => {
                d.error(
                    v.pos,
                    format!(
                        "approval `{}` is {}; write `approve` or `deny`",
                        k.key_text(),
                        v.brief()
                    ),
                );
                return None;
            }
        };
    }
    Some(out)
}

fn expectations(node: &Node, catalog: &Catalog, d: &mut Diagnostics) -> Option<Vec<Expectation>> {
    let f = Fields::of(node, "`expect`", EXPECT_KEYS, d)?;
    let before = d.count();
    let mut out = Vec::new();
    let mut push = |pos: Pos, what: Expect| out.push(Expectation { pos, what });
    if let Some(n) = f.get("incident") {
        if let Some(g) = Fields::of(n, "`expect.incident`", INCIDENT_KEYS, d) {
            if let Some(s) = g.opt_str("severity", d) {
                if !["P0", "P1", "P2", "P3"].contains(&s) {
                    d.error(
                        g.get("severity")?.pos,
                        format!("`severity` is `{s}`; write P0, P1, P2 or P3"),
                    );
                }
                push(g.get("severity")?.pos, Expect::IncidentSeverity(s.into()));
            }
            if let Some(s) = g.opt_str("status", d) {
                let allowed = ["open", "mitigated", "resolved", "none"];
                if !allowed.contains(&s) {
                    d.error(
                        g.get("status")?.pos,
                        format!(
                            "`status` is `{s}`; write {} (`none`: no incident opens)",
                            one_of(&allowed)
                        ),
                    );
                }
                push(g.get("status")?.pos, Expect::IncidentStatus(s.into()));
            }
        }
    }
    for n in f
        .get("runs")
        .and_then(|n| seq(n, "`expect.runs`", d))
        .unwrap_or_default()
    {
        let Some(g) = Fields::of(n, "an entry of `expect.runs`", RUN_EXPECT_KEYS, d) else {
            continue;
        };
        let runbook = g.req_str("runbook", "runbook: rollback-deployment", d);
        let status = g.req_str("status", "status: succeeded", d);
        if let Some(r) = runbook {
            known_runbook(r, g.get("runbook")?.pos, catalog, d);
        }
        if let Some(s) = status.filter(|s| !RUN_STATUSES.contains(s)) {
            d.error(
                g.get("status")?.pos,
                format!("run `status` is `{s}`; write {}", one_of(RUN_STATUSES)),
            );
        }
        if let (Some(runbook), Some(status)) = (runbook, status) {
            push(
                n.pos,
                Expect::Run {
                    runbook: runbook.into(),
                    status: status.into(),
                },
            );
        }
    }
    if let Some(n) = f.get("steps") {
        match n.as_map() {
            // A step id no runbook has is not refused here: the case fails
            // and says so, which is what a removed step should do.
            Some(entries) => {
                for (k, v) in entries {
                    let id = k.key_text();
                    match v.as_str() {
                        Some(s) if STEP_STATUSES.contains(&s) => push(k.pos, Expect::Step { id, status: s.into() }),
                        _ => d.error(
                            v.pos,
                            format!("step `{id}` is {}; write {}", v.brief(), one_of(STEP_STATUSES)),
                        ),
                    }
                }
            }
            None => d.error(
                n.pos,
                "`expect.steps` maps step ids to statuses, e.g. `{rollback: succeeded}`",
            ),
        }
    }
    if let Some(n) = f.get("cluster") {
        if let Some(g) = Fields::of(n, "`expect.cluster`", CLUSTER_EXPECT_KEYS, d) {
            for n in g
                .get("deployments")
                .and_then(|n| seq(n, "`expect.cluster.deployments`", d))
                .unwrap_or_default()
            {
                let Some(h) = Fields::of(n, "an expected deployment", DEPLOYMENT_EXPECT_KEYS, d) else {
                    continue;
                };
                let (ns, name) = (
                    h.req_str("namespace", "namespace: prod", d),
                    h.req_str("name", "name: core-services", d),
                );
                let image = h.opt_str("image", d).map(str::to_string);
                let replicas = h.opt_int("replicas", 0, 1000, d);
                if let (Some(ns), Some(name)) = (ns, name) {
                    push(
                        n.pos,
                        Expect::Deployment {
                            namespace: ns.into(),
                            name: name.into(),
                            image,
                            replicas,
                        },
                    );
                }
            }
            for n in g
                .get("services")
                .and_then(|n| seq(n, "`expect.cluster.services`", d))
                .unwrap_or_default()
            {
                let Some(h) = Fields::of(n, "an expected service", SERVICE_KEYS, d) else {
                    continue;
                };
                let (ns, name) = (
                    h.req_str("namespace", "namespace: prod", d),
                    h.req_str("name", "name: core-services", d),
                );
                let selector = h
                    .required("selector", "selector: {version: stable}", d)
                    .and_then(|s| string_map(s, "`selector`", d));
                if let (Some(ns), Some(name), Some(selector)) = (ns, name, selector) {
                    push(
                        n.pos,
                        Expect::Service {
                            namespace: ns.into(),
                            name: name.into(),
                            selector,
                        },
                    );
                }
            }
        }
    }
    for n in f
        .get("slack")
        .and_then(|n| seq(n, "`expect.slack`", d))
        .unwrap_or_default()
    {
        if let Some(g) = Fields::of(n, "an entry of `expect.slack`", SLACK_KEYS, d) {
            if let Some(text) = g.req_str("contains", "contains: rolled back", d) {
                push(n.pos, Expect::Slack { contains: text.into() });
            }
        }
    }
    if let Some(n) = f.get("not_called") {
        let names = crate::actions::Action::names();
        for (name, pos) in crate::decode::str_list(n, "`expect.not_called`", d) {
            if crate::actions::Action::from_name(name).is_none() {
                d.error(
                    pos,
                    format!(
                        "unknown action `{name}`{}; the actions are {}",
                        hint(name, &names),
                        one_of(&names)
                    ),
                );
            }
            push(pos, Expect::NotCalled(name.into()));
        }
    }
    for n in f
        .get("requests")
        .and_then(|n| seq(n, "`expect.requests`", d))
        .unwrap_or_default()
    {
        let Some(g) = Fields::of(n, "an entry of `expect.requests`", REQUEST_KEYS, d) else {
            continue;
        };
        if let Some(url) = g.req_str("url", r#"url: "http://example/hook*""#, d) {
            let method = g.opt_str("method", d).map(str::to_ascii_uppercase);
            let count = g.opt_int("count", 0, 10_000, d).map(|c| c as usize);
            push(
                n.pos,
                Expect::Requests {
                    method,
                    url: url.into(),
                    count,
                },
            );
        }
    }
    if out.is_empty() && d.count() == before {
        d.error(
            node.pos,
            "`expect` expects nothing; add e.g. `runs: [{runbook: rollback-deployment, status: succeeded}]`",
        );
    }
    (d.count() == before).then_some(out)
}
