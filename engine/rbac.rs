//! `laojun rbac`: the ServiceAccount, Roles and RoleBindings that exactly
//! the catalog's Kubernetes steps need. Each action's spec lists the
//! requests its code sends (`ActionSpec::kube`); each step's namespace comes
//! from its `with.namespace` — a literal, a runbook parameter's default, or
//! what the playbooks pass — and when it comes from an alert label, from
//! the namespaces the operator names (else a ClusterRole, with a warning).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::catalog::Catalog;
use crate::runbook::{OnFailure, Runbook, Step};

/// Who needs a rule, for the comment beside it: `runbook/step (action)`.
type Needers = BTreeSet<String>;
/// (API group, resource) → verb → who needs it.
type Rules = BTreeMap<(String, String), BTreeMap<String, Needers>>;

/// What the catalog needs.
#[derive(Debug, Default)]
pub struct Plan {
    /// Per namespace.
    pub roles: BTreeMap<String, Rules>,
    /// Cluster-wide: steps across all namespaces, or whose namespace is
    /// not known without `--namespace`.
    pub cluster: Rules,
    pub warnings: Vec<String>,
}

/// Where a step acts.
enum Scope {
    Namespaces(Vec<String>),
    AllNamespaces,
    /// From an alert label or another run-time value.
    Unknown(String),
}

pub fn plan(catalog: &Catalog, given: &[String]) -> Plan {
    let mut plan = Plan::default();
    for runbook in catalog.runbooks.values() {
        for step in steps(&runbook.steps) {
            let rules = step.action.spec().kube;
            if rules.is_empty() {
                continue;
            }
            let who = format!("{}/{} ({})", runbook.name, step.id, step.action.name());
            let targets: Vec<Option<String>> = match scope(step, runbook, catalog) {
                Scope::Namespaces(ns) => ns.into_iter().map(Some).collect(),
                Scope::AllNamespaces => {
                    plan.warnings.push(format!(
                        "{who} looks across all namespaces (`namespace: \"*\"`): it needs a ClusterRole"
                    ));
                    vec![None]
                }
                Scope::Unknown(_) if !given.is_empty() => given.iter().cloned().map(Some).collect(),
                Scope::Unknown(why) => {
                    plan.warnings.push(format!(
                        "{who} acts in a namespace known only when it runs ({why}): it gets a ClusterRole; name the namespaces with --namespace for Roles instead"
                    ));
                    vec![None]
                }
            };
            for target in targets {
                let rules_of = match target {
                    Some(ns) => plan.roles.entry(ns).or_default(),
                    None => &mut plan.cluster,
                };
                for rule in rules {
                    let verbs = rules_of
                        .entry((rule.group.to_string(), rule.resource.to_string()))
                        .or_default();
                    for verb in rule.verbs {
                        verbs.entry((*verb).to_string()).or_default().insert(who.clone());
                    }
                }
            }
        }
    }
    subsume(&mut plan);
    plan
}

/// A verb the ClusterRole grants needs no Role as well: its steps are
/// named beside the ClusterRole's rule instead, so each rule given is one
/// some step would miss.
fn subsume(plan: &mut Plan) {
    let cluster = &mut plan.cluster;
    for rules in plan.roles.values_mut() {
        for (key, verbs) in rules.iter_mut() {
            let Some(wide) = cluster.get_mut(key) else { continue };
            verbs.retain(|verb, who| match wide.get_mut(verb) {
                Some(needers) => {
                    needers.append(who);
                    false
                }
                None => true,
            });
        }
        rules.retain(|_, verbs| !verbs.is_empty());
    }
    plan.roles.retain(|_, rules| !rules.is_empty());
}

/// Every step of a list, `on_failure` steps included.
fn steps(list: &[Step]) -> Vec<&Step> {
    let mut out = Vec::new();
    for s in list {
        out.push(s);
        if let OnFailure::Steps(more) = &s.on_failure {
            out.extend(steps(more));
        }
    }
    out
}

fn scope(step: &Step, runbook: &Runbook, catalog: &Catalog) -> Scope {
    let Some(written) = step.with.get("namespace").and_then(|v| v.as_str()) else {
        return Scope::Unknown("no `namespace`".into());
    };
    if written == "*" {
        return Scope::AllNamespaces;
    }
    if !written.contains("{{") {
        return Scope::Namespaces(vec![written.to_string()]);
    }
    let Some(param) = written
        .trim()
        .strip_prefix("{{params.")
        .and_then(|r| r.strip_suffix("}}"))
        .filter(|p| p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    else {
        return Scope::Unknown(format!("`namespace: {written}`"));
    };
    let default = runbook
        .param(param)
        .and_then(|p| p.default.as_ref())
        .and_then(|d| d.as_str())
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let calls: Vec<Option<&serde_json::Value>> = catalog
        .playbooks
        .iter()
        .flat_map(|p| p.runbooks.iter())
        .filter(|c| c.runbook == runbook.name)
        .map(|c| c.params.get(param))
        .collect();
    let mut found = BTreeSet::new();
    if calls.is_empty() || calls.iter().any(Option::is_none) {
        match &default {
            Some(d) => {
                found.insert(d.clone());
            }
            None if calls.is_empty() => {
                return Scope::Unknown(format!("`params.{param}` is given by whoever runs it"));
            }
            None => {}
        }
    }
    for value in calls.into_iter().flatten() {
        match value.as_str() {
            Some(v) if !v.contains("{{") && !v.is_empty() => {
                found.insert(v.to_string());
            }
            Some(v) => return Scope::Unknown(format!("a playbook passes `{param}: {v}`")),
            None => return Scope::Unknown(format!("a playbook passes a non-text `{param}`")),
        }
    }
    // A default of `*` (assess-impact's `scope`) means every namespace.
    if found.contains("*") {
        return Scope::AllNamespaces;
    }
    Scope::Namespaces(found.into_iter().collect())
}

/// The plan as Kubernetes YAML documents, each rule commented with the
/// steps that need it.
pub fn to_yaml(plan: &Plan, name: &str, namespace: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Generated by `laojun rbac`: exactly the requests the catalog's Kubernetes steps send.\n# Each rule names the steps that need it; regenerate after changing runbooks or playbooks."
    );
    for w in &plan.warnings {
        let _ = writeln!(out, "# warning: {w}");
    }
    let _ = write!(
        out,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
    );
    for (ns, rules) in &plan.roles {
        let _ = write!(
            out,
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {name}\n  namespace: {ns}\nrules:\n{}",
            rules_yaml(rules)
        );
        let _ = write!(
            out,
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {name}\n  namespace: {ns}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: {name}\nsubjects:\n  - kind: ServiceAccount\n    name: {name}\n    namespace: {namespace}\n"
        );
    }
    if !plan.cluster.is_empty() {
        let _ = write!(
            out,
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {name}\nrules:\n{}",
            rules_yaml(&plan.cluster)
        );
        let _ = write!(
            out,
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {name}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {name}\nsubjects:\n  - kind: ServiceAccount\n    name: {name}\n    namespace: {namespace}\n"
        );
    }
    out
}

/// One rule per (group, resource); verbs sorted; who needs each verb in a comment.
fn rules_yaml(rules: &Rules) -> String {
    let mut out = String::new();
    for ((group, resource), verbs) in rules {
        let names: Vec<&str> = verbs.keys().map(String::as_str).collect();
        for (verb, who) in verbs {
            let who: Vec<&str> = who.iter().map(String::as_str).collect();
            let _ = writeln!(out, "  # {verb} {resource}: {}", who.join(", "));
        }
        let _ = writeln!(
            out,
            "  - apiGroups: [\"{group}\"]\n    resources: [\"{resource}\"]\n    verbs: [{}]",
            names.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", ")
        );
    }
    out
}
