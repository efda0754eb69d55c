//! `dns.failover` on Route53: UPSERT a record to its standby target, or
//! shift the weights of a weighted record, then wait for INSYNC. The AWS
//! default credential chain is used; `aws.endpoint_url` points at a
//! Route53-compatible endpoint (tests use moto). Credentials are never
//! logged or put in an output.

use std::time::Duration;

use aws_sdk_route53::error::ProvideErrorMetadata;
use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
use serde_json::{json, Map, Value};

use super::{int_arg, str_arg, ActionError, Outcome};

/// A Route53 client, made on first use.
pub struct Route53 {
    region: String,
    endpoint_url: Option<String>,
    client: tokio::sync::OnceCell<aws_sdk_route53::Client>,
}

impl Route53 {
    pub fn new(region: String, endpoint_url: Option<String>) -> Self {
        Route53 {
            region,
            endpoint_url,
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_route53::Client {
        self.client
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.region.clone()))
                    // The step's `retries` decide, and each attempt lands on
                    // the timeline; the SDK would otherwise retry throttling
                    // out of sight (3 attempts, backoff up to 20 s).
                    .retry_config(aws_config::retry::RetryConfig::disabled());
                if let Some(url) = &self.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                aws_sdk_route53::Client::new(&loader.load().await)
            })
            .await
    }
}

/// An SDK error as an action error: throttling, 5xx and network trouble
/// are worth a retry; a missing zone or an invalid change is not.
fn aws_error<E>(
    what: &str,
    e: aws_sdk_route53::error::SdkError<E, aws_sdk_route53::config::http::HttpResponse>,
) -> ActionError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_route53::error::SdkError;
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().unwrap_or_default().to_string();
    let message = e.message().map(str::to_string).unwrap_or_else(|| match &e {
        SdkError::DispatchFailure(_) => "cannot reach Route53".into(),
        SdkError::TimeoutError(_) => "Route53 timed out".into(),
        other => other.to_string(),
    });
    let text = format!("{what}: {code} {message}").replace("  ", " ");
    let retryable = matches!(
        e,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_)
    ) || matches!(
        code.as_str(),
        "Throttling" | "ThrottlingException" | "PriorRequestNotComplete" | "ServiceUnavailable"
    ) || status.is_some_and(|s| s >= 500 || s == 429);
    if retryable {
        ActionError::retry(text)
    } else {
        ActionError::fatal(text)
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

pub async fn failover(r53: &Route53, args: &Value, dry_run: bool, comment: &str) -> Result<Outcome, ActionError> {
    let zone = str_arg(args, "hosted_zone_id").ok_or_else(|| ActionError::fatal("`hosted_zone_id` is empty"))?;
    let name = fqdn(str_arg(args, "record_name").ok_or_else(|| ActionError::fatal("`record_name` is empty"))?);
    let type_name = str_arg(args, "record_type").unwrap_or("A");
    let kind = RrType::from(type_name);
    let ttl = int_arg(args, "ttl").unwrap_or(60);
    let what = format!("{name} {type_name} in zone {zone}");
    let client = r53.client().await;
    let listed = client
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .start_record_name(&name)
        .start_record_type(kind.clone())
        .max_items(100)
        .send()
        .await
        .map_err(|e| aws_error(&what, e))?;
    let sets: Vec<&ResourceRecordSet> = listed
        .resource_record_sets()
        .iter()
        .filter(|s| fqdn(s.name()) == name && *s.r#type() == kind)
        .collect();

    let (changes, previous, description) = if let Some(weights) = args.get("weights").and_then(Value::as_object) {
        let mut changes = Vec::new();
        let mut previous = Map::new();
        let mut parts = Vec::new();
        for (id, weight) in weights {
            let weight = weight.as_i64().unwrap_or(0);
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
        let to = str_arg(args, "to")
            .ok_or_else(|| ActionError::fatal("give `to` or `weights`"))?
            .to_string();
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
        if let Some(from) = str_arg(args, "from") {
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
        .map_err(|e| aws_error(&what, e))?;
    let info = sent.change_info();
    let change_id = info.map(|i| i.id().to_string()).unwrap_or_default();
    let mut status = info.map(|i| i.status().as_str().to_string()).unwrap_or_default();
    let wait = args.get("wait_insync").and_then(Value::as_bool).unwrap_or(true);
    // The step's timeout bounds this wait.
    while wait && status != "INSYNC" {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let got = client
            .get_change()
            .id(&change_id)
            .send()
            .await
            .map_err(|e| aws_error(&what, e))?;
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
