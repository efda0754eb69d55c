//! RBAC, when a test turns it on: the Roles and ClusterRoles given are the
//! only requests allowed (one identity; bindings are not consulted), and
//! anything else gets Kubernetes' 403 `Forbidden` Status.

use serde_json::Value;

use super::store::ApiError;

/// One rule of a Role (namespace given) or a ClusterRole (none).
#[derive(Debug, Clone)]
pub struct Grant {
    namespace: Option<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

/// The grants in `objects` (Roles and ClusterRoles; other kinds ignored).
pub fn grants(objects: &[Value]) -> Vec<Grant> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for o in objects {
        let namespace = match o["kind"].as_str() {
            Some("Role") => Some(o["metadata"]["namespace"].as_str().unwrap_or("default").to_string()),
            Some("ClusterRole") => None,
            _ => continue,
        };
        for rule in o["rules"].as_array().into_iter().flatten() {
            out.push(Grant {
                namespace: namespace.clone(),
                groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                verbs: strings(&rule["verbs"]),
            });
        }
    }
    out
}

/// Whether a request is allowed; the error is the real server's 403.
pub fn check(
    grants: &[Grant],
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<(), ApiError> {
    let any = |list: &[String], want: &str| list.iter().any(|x| x == "*" || x == want);
    let allowed = grants.iter().any(|g| {
        g.namespace.as_deref().is_none_or(|ns| Some(ns) == namespace)
            && any(&g.groups, group)
            && any(&g.resources, resource)
            && any(&g.verbs, verb)
    });
    if allowed {
        return Ok(());
    }
    let (base, sub) = resource.split_once('/').map_or((resource, None), |(b, s)| (b, Some(s)));
    let qualified = if group.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{group}")
    };
    let subject = match name {
        Some(n) => format!("{qualified} \"{n}\" is forbidden"),
        None => format!("{qualified} is forbidden"),
    };
    let what = match sub {
        Some(s) => format!("resource \"{base}/{s}\""),
        None => format!("resource \"{base}\""),
    };
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    Err(ApiError::new(
        403,
        format!("{subject}: User \"system:serviceaccount:laojun:laojun\" cannot {verb} {what} in API group \"{group}\" {scope}"),
    ))
}
