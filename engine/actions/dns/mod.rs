//! Route53, for `dns.failover` (in its own file). The AWS default
//! credential chain is used; `aws.endpoint_url` points at a
//! Route53-compatible endpoint (tests use moto). Credentials are never
//! logged or put in an output.

pub mod failover;

use aws_sdk_route53::error::ProvideErrorMetadata;

use super::ActionError;

/// A Route53 client, made on first use.
pub struct Route53 {
    region: String,
    endpoint_url: Option<String>,
    /// Stand-in credentials instead of the default chain (which may ask
    /// the instance metadata service): `laojun test`, which sends Route53
    /// to its recorder.
    offline: bool,
    client: tokio::sync::OnceCell<aws_sdk_route53::Client>,
}

impl Route53 {
    pub fn new(region: String, endpoint_url: Option<String>) -> Self {
        Route53 {
            region,
            endpoint_url,
            offline: false,
            client: tokio::sync::OnceCell::new(),
        }
    }

    /// Route53 at `endpoint_url` with stand-in credentials: nothing leaves
    /// for AWS, not even a credentials lookup.
    pub fn offline(endpoint_url: String) -> Self {
        Route53 {
            offline: true,
            ..Route53::new("us-east-1".into(), Some(endpoint_url))
        }
    }

    pub(crate) async fn client(&self) -> &aws_sdk_route53::Client {
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
                if self.offline {
                    let stand_in = aws_sdk_route53::config::Credentials::new(
                        "laojun-test",
                        "laojun-test",
                        None,
                        None,
                        "laojun test",
                    );
                    loader = loader.credentials_provider(stand_in);
                }
                aws_sdk_route53::Client::new(&loader.load().await)
            })
            .await
    }
}

impl Route53 {
    /// Where requests go, for messages: the configured endpoint, else AWS's.
    pub(crate) fn endpoint(&self) -> String {
        self.endpoint_url
            .clone()
            .unwrap_or_else(|| format!("route53.amazonaws.com ({})", self.region))
    }
}

/// The innermost cause of an error, which says what actually went wrong
/// ("Connection refused (os error 111)").
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
}

/// An SDK error as an action error: throttling, 5xx and network trouble
/// are worth a retry; a missing zone or an invalid change is not.
/// `endpoint` names where the request went, for "cannot reach" messages.
pub(crate) fn aws_error<E>(
    what: &str,
    endpoint: &str,
    e: aws_sdk_route53::error::SdkError<E, aws_sdk_route53::config::http::HttpResponse>,
) -> ActionError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_route53::error::SdkError;
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().unwrap_or_default().to_string();
    let message = e.message().map(str::to_string).unwrap_or_else(|| match &e {
        SdkError::DispatchFailure(_) => format!("cannot reach Route53 at {endpoint}: {}", root_cause(&e)),
        SdkError::TimeoutError(_) => format!("Route53 at {endpoint} timed out"),
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

impl Route53 {
    /// A hosted zone's name, read (`GetHostedZone`) and changed nothing:
    /// the credentials reach it.
    pub async fn zone_name(&self, zone: &str) -> Result<String, ActionError> {
        let answer = self
            .client()
            .await
            .get_hosted_zone()
            .id(zone)
            .send()
            .await
            .map_err(|e| aws_error(&format!("reading hosted zone {zone}"), &self.endpoint(), e))?;
        Ok(answer.hosted_zone().map(|z| z.name().to_string()).unwrap_or_default())
    }
}
