//! `dns.failover` on Route53: UPSERT a record to its standby target, or
//! shift the weights of a weighted record, then wait for INSYNC.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::aws_error;
use crate::actions::spec::{opt, req, ActionSpec, ArgKind};
use crate::actions::{Act, ActionError, Context, Outcome, Target};

pub struct Failover;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    hosted_zone_id: String,
    record_name: String,
    record_type: Option<String>,
    from: Option<String>,
    to: Option<String>,
    weights: Option<BTreeMap<String, i64>>,
    ttl: Option<i64>,
    wait_insync: Option<bool>,
}

impl Act for Failover {
    const SPEC: ActionSpec = ActionSpec {
        name: "dns.failover",
        summary: "Move a Route53 record to a standby target (UPSERT) or shift weights, then wait for INSYNC.",
        args: &[
            req(
                "hosted_zone_id",
                ArgKind::Str,
                "Route53 hosted zone id, e.g. `Z123456789`",
            ),
            req(
                "record_name",
                ArgKind::Str,
                "the record to change, e.g. `api.example.com`",
            ),
            opt(
                "record_type",
                ArgKind::Enum(&["A", "AAAA", "CNAME"]),
                Some("A"),
                "record type",
            ),
            opt(
                "from",
                ArgKind::Str,
                None,
                "the value the record must have now; the step fails if it has another",
            ),
            opt("to", ArgKind::Str, None, "the standby target to point the record at"),
            opt(
                "weights",
                ArgKind::IntMap,
                None,
                "new weight per set identifier, for weighted records",
            ),
            opt("ttl", ArgKind::Int, Some("60"), "TTL of the written record"),
            opt(
                "wait_insync",
                ArgKind::Bool,
                Some("true"),
                "wait until Route53 reports the change INSYNC",
            ),
        ],
        exactly_one_of: &[&["to", "weights"]],
        idempotent: true,
        output: "`change_id`, `status`, `previous` (values or weights before the change)",
        kube: &[],
    };
    type Args = Args;

    fn targets(args: &Args) -> Vec<Target> {
        vec![Target(format!(
            "dns:{}:{}:{}",
            args.hosted_zone_id,
            args.record_name.trim_end_matches('.'),
            args.record_type.as_deref().unwrap_or_default()
        ))]
    }

    /// Waiting for INSYNC takes a while: Route53 says up to a few minutes.
    fn timeout(_args: &Args) -> Duration {
        Duration::from_secs(330)
    }

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        failover(args, cx).await
    }
}

fn non_empty<'a>(value: &'a str, name: &str) -> Result<&'a str, ActionError> {
    if value.is_empty() {
        Err(ActionError::fatal(format!("`{name}` is empty")))
    } else {
        Ok(value)
    }
}

fn fqdn(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    }
}

fn values(set: &ResourceRecordSet) -> Vec<String> {
    set.resource_records().iter().map(|r| r.value().to_string()).collect()
}

fn record(
    name: &str,
    kind: &RrType,
    ttl: i64,
    values: &[String],
    template: Option<&ResourceRecordSet>,
) -> Result<ResourceRecordSet, ActionError> {
    let mut builder = ResourceRecordSet::builder().name(name).r#type(kind.clone()).ttl(ttl);
    for v in values {
        builder = builder.resource_records(
            ResourceRecord::builder()
                .value(v)
                .build()
                .map_err(|e| ActionError::fatal(e.to_string()))?,
        );
    }
    if let Some(t) = template {
        if let Some(id) = t.set_identifier() {
            builder = builder.set_identifier(id);
        }
    }
    builder
        .build()
        .map_err(|e| ActionError::fatal(format!("building the record: {e}")))
}

async fn failover(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
    let r53 = &cx.backends.route53;
    let dry_run = cx.dry_run;
    let comment = format!("laojun {} step {}", cx.run_id, cx.step_id);
    let comment = comment.as_str();
    let zone = non_empty(&args.hosted_zone_id, "hosted_zone_id")?;
    let name = fqdn(non_empty(&args.record_name, "record_name")?);
    let type_name = args.record_type.as_deref().filter(|t| !t.is_empty()).unwrap_or("A");
    let kind = RrType::from(type_name);
    let ttl = args.ttl.unwrap_or(60);
    let what = format!("{name} {type_name} in zone {zone}");
    let client = r53.client().await;
    let endpoint = r53.endpoint();
    let listed = client
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .start_record_name(&name)
        .start_record_type(kind.clone())
        .max_items(100)
        .send()
        .await
        .map_err(|e| aws_error(&what, &endpoint, e))?;
    let sets: Vec<&ResourceRecordSet> = listed
        .resource_record_sets()
        .iter()
        .filter(|s| fqdn(s.name()) == name && *s.r#type() == kind)
        .collect();

    let (changes, previous, description) = if let Some(weights) = &args.weights {
        let mut changes = Vec::new();
        let mut previous = Map::new();
        let mut parts = Vec::new();
        for (id, weight) in weights {
            let weight = *weight;
            let set = sets
                .iter()
                .find(|s| s.set_identifier() == Some(id.as_str()))
                .ok_or_else(|| {
                    let found: Vec<&str> = sets.iter().filter_map(|s| s.set_identifier()).collect();
                    ActionError::fatal(format!(
                        "{what} has no weighted record `{id}` (set identifiers: {found:?})"
                    ))
                })?;
            previous.insert(id.clone(), json!(set.weight()));
            let mut updated = record(&name, &kind, set.ttl().unwrap_or(ttl), &values(set), Some(set))?;
            updated.weight = Some(weight);
            parts.push(format!("{id}: {} → {weight}", set.weight().unwrap_or(0)));
            changes.push(
                Change::builder()
                    .action(ChangeAction::Upsert)
                    .resource_record_set(updated)
                    .build()
                    .map_err(|e| ActionError::fatal(e.to_string()))?,
            );
        }
        (
            changes,
            Value::Object(previous),
            format!("weights of {what} ({})", parts.join(", ")),
        )
    } else {
        let to = args
            .to
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ActionError::fatal("give `to` or `weights`"))?;
        let current: Vec<String> = sets
            .iter()
            .find(|s| s.set_identifier().is_none())
            .map(|s| values(s))
            .unwrap_or_default();
        let same = |a: &str, b: &str| a.trim_end_matches('.').eq_ignore_ascii_case(b.trim_end_matches('.'));
        if current.len() == 1 && same(&current[0], &to) {
            return Ok(Outcome {
                output: json!({"change_id": null, "status": "INSYNC", "previous": current}),
                summary: format!("{what} already points at {to}"),
            });
        }
        if let Some(from) = args.from.as_deref().filter(|f| !f.is_empty()) {
            if !current.iter().any(|v| same(v, from)) {
                return Err(ActionError::fatal(format!(
                    "{what} points at {current:?}, not at {from} as `from` expects; it was changed by someone else, check before failing over"
                )));
            }
        }
        let change = Change::builder()
            .action(ChangeAction::Upsert)
            .resource_record_set(record(&name, &kind, ttl, std::slice::from_ref(&to), None)?)
            .build()
            .map_err(|e| ActionError::fatal(e.to_string()))?;
        (vec![change], json!(current), format!("{what} from {current:?} to {to}"))
    };
    let batch_json: Vec<Value> = changes
        .iter()
        .map(|c| {
            let s = c.resource_record_set();
            json!({"action": "UPSERT", "name": s.map(|s| s.name()), "type": type_name, "ttl": s.and_then(|s| s.ttl()),
                   "values": s.map(values), "set_identifier": s.and_then(|s| s.set_identifier()), "weight": s.and_then(|s| s.weight())})
        })
        .collect();
    if dry_run {
        return Ok(Outcome {
            output: json!({"would_change": batch_json, "previous": previous}),
            summary: format!("would change {description}"),
        });
    }
    let batch = ChangeBatch::builder()
        .set_changes(Some(changes))
        .comment(comment)
        .build()
        .map_err(|e| ActionError::fatal(e.to_string()))?;
    let sent = client
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(batch)
        .send()
        .await
        .map_err(|e| aws_error(&what, &endpoint, e))?;
    let info = sent.change_info();
    let change_id = info.map(|i| i.id().to_string()).unwrap_or_default();
    let mut status = info.map(|i| i.status().as_str().to_string()).unwrap_or_default();
    let wait = args.wait_insync.unwrap_or(true);
    // The step's timeout bounds this wait.
    while wait && status != "INSYNC" {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let got = client
            .get_change()
            .id(&change_id)
            .send()
            .await
            .map_err(|e| aws_error(&what, &endpoint, e))?;
        status = got
            .change_info()
            .map(|i| i.status().as_str().to_string())
            .unwrap_or_default();
    }
    Ok(Outcome {
        output: json!({"change_id": change_id, "status": status, "previous": previous, "change": batch_json}),
        summary: format!("changed {description}: {change_id} {status}"),
    })
}
