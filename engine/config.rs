//! The service config, `laojun.yaml`. Every key is optional; secrets are
//! written as references (`${env:NAME}`, `${file:PATH}`) and resolved when
//! the server starts.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::{self, Secret};

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on, e.g. `127.0.0.1:9095` (loopback by default).
    pub listen: String,
    /// Folder of the embedded store, postmortems and other state.
    pub data_dir: PathBuf,
    /// Folder holding runbooks/, playbooks/ and templates/.
    pub root: PathBuf,
    /// Where incidents and runs are kept: sled under `data_dir` unless
    /// `store.postgres` is set.
    pub store: StoreSection,
    pub auth: Auth,
    pub kubernetes: Kubernetes,
    pub aws: Aws,
    /// Where `prometheus.query` steps query (`url`, `bearer_token` or `username`/`password`).
    pub prometheus: Endpoint,
    /// Where `alertmanager.silence` steps create silences.
    pub alertmanager: Endpoint,
    pub slack: Slack,
    /// What laojun itself posts to Slack.
    pub notifications: Notifications,
    pub execution: Execution,
    pub intake: IntakeLimits,
    pub postmortem: Postmortems,
    /// How people reach this server.
    pub server: ServerSection,
    /// The older spelling of `server.external_url`, still read.
    pub external_url: Option<String>,
    /// Serve HTTPS instead of HTTP.
    pub tls: Option<Tls>,
    /// The web view under /ui/.
    pub ui: Ui,
}

/// `ui:` in laojun.yaml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ui {
    /// How long a web view sign-in lasts.
    pub session_ttl_secs: u64,
}

impl Default for Ui {
    fn default() -> Self {
        Ui {
            session_ttl_secs: 12 * 3600,
        }
    }
}

/// TLS for the listener: PEM files, read at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Certificate chain, PEM.
    pub cert_file: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9095".into(),
            data_dir: PathBuf::from("data"),
            root: PathBuf::from("."),
            store: StoreSection::default(),
            auth: Auth::default(),
            kubernetes: Kubernetes::default(),
            aws: Aws::default(),
            prometheus: Default::default(),
            alertmanager: Default::default(),
            slack: Slack::default(),
            notifications: Notifications::default(),
            execution: Execution::default(),
            intake: IntakeLimits::default(),
            postmortem: Postmortems::default(),
            server: ServerSection::default(),
            external_url: None,
            tls: None,
            ui: Ui::default(),
        }
    }
}

/// `store:` in laojun.yaml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    pub postgres: Option<Postgres>,
}

/// A PostgreSQL database shared by every replica.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    /// A libpq URL or key=value string (a secret reference, e.g.
    /// `${env:LAOJUN_PG_URL}`: it holds the password).
    pub url: String,
    /// Connections each replica keeps.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// The CA (PEM) that signed the server's certificate, when the URL asks
    /// for TLS (`sslmode=require`); without it, the system's CA roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long a replica's hold on a run lasts without renewal (it renews
    /// every third of it); a dead replica's runs are taken over after it.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

fn default_pool_size() -> usize {
    8
}

fn default_lease_secs() -> u64 {
    30
}

/// A base URL and how to authenticate to it; secrets are references,
/// resolved per call so none is held in memory longer than a request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Endpoint {
    /// e.g. `http://prometheus:9090` (a secret reference is allowed).
    pub url: Option<String>,
    /// Sent as `Authorization: Bearer` (a secret reference).
    pub bearer_token: Option<String>,
    /// HTTP basic auth; the password is a secret reference.
    pub username: Option<String>,
    pub password: Option<String>,
}

/// How people reach this server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// The base URL people open laojun at (`https://laojun.example.com`):
    /// links in Slack messages and postmortems point at the incident's
    /// page under it. Unset, messages carry no links.
    pub external_url: Option<String>,
}

/// API credentials.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// A token with every right (a secret reference), named `api-token` on
    /// timelines. Falls back to `$LAOJUN_API_TOKEN`. With no token at all
    /// the API is open.
    pub token: Option<String>,
    /// Named tokens with a role each.
    pub tokens: Vec<NamedToken>,
}

/// A token for one caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    /// Who it is, as timelines and audit records show it.
    pub name: String,
    pub role: Role,
    /// A secret reference, e.g. `${env:GRAFANA_TOKEN}`.
    pub token: String,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read incidents, runs, runbooks and postmortems.
    Viewer,
    /// Everything a viewer may, plus run runbooks, approve, deny, add notes, resolve, pause.
    Operator,
    /// Post alerts, nothing else (for AlertManager).
    Webhook,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Webhook => "webhook",
            Role::Admin => "admin",
        }
    }
}

/// A resolved token.
#[derive(Debug, Clone)]
pub struct Credential {
    pub name: String,
    pub role: Role,
    pub secret: Secret,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kubernetes {
    /// Default: `$KUBECONFIG`, `~/.kube/config`, then in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// Context used by steps that name no `cluster`.
    pub context: Option<String>,
    /// The namespaces steps whose namespace comes from an alert may act
    /// in: what `laojun check` (and `serve` at start) asks the cluster
    /// about, as `laojun rbac --namespace` grants.
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Aws {
    pub region: String,
    /// A Route53-compatible endpoint (tests use moto).
    pub endpoint_url: Option<String>,
}

impl Default for Aws {
    fn default() -> Self {
        Aws {
            region: "us-east-1".into(),
            endpoint_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Slack {
    /// Incoming webhook URL (a secret reference).
    pub webhook_url: Option<String>,
    /// The Slack app's signing secret (a secret reference): turns on the
    /// buttons and `POST /slack/interactions`.
    pub signing_secret: Option<String>,
    /// A bot token (a secret reference), for `chat.update` once a
    /// `response_url` has expired.
    pub bot_token: Option<String>,
    /// Slack's Web API, overridable for tests.
    pub api_url: String,
    /// Where laojun may post decisions back: a `response_url` must start
    /// with one of these.
    pub response_url_prefixes: Vec<String>,
    /// Slack user id → laojun identity (a token name), whose rights a click
    /// has.
    pub users: std::collections::BTreeMap<String, String>,
}

impl Default for Slack {
    fn default() -> Self {
        Slack {
            webhook_url: None,
            signing_secret: None,
            bot_token: None,
            api_url: "https://slack.com/api".into(),
            response_url_prefixes: vec!["https://hooks.slack.com/".into()],
            users: Default::default(),
        }
    }
}

/// The notices laojun posts by itself when Slack is configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    /// Channel to post to; the webhook's own channel when not set.
    pub channel: Option<String>,
    /// Incidents of these severities get an "opened" notice.
    pub opened_severities: Vec<crate::severity::Severity>,
    /// Which notices are posted.
    pub on: Vec<crate::notices::NoticeKind>,
}

impl Default for Notifications {
    fn default() -> Self {
        use crate::severity::Severity;
        Notifications {
            channel: None,
            opened_severities: vec![Severity::P0, Severity::P1],
            on: crate::notices::NoticeKind::ALL.to_vec(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Execution {
    /// Report what every step would do and change nothing.
    pub dry_run: bool,
    /// Start with automation paused (resume through the API).
    pub paused: bool,
}

/// Bounds on what the webhook accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeLimits {
    /// Larger bodies get 413.
    pub max_body_bytes: usize,
    /// Requests waiting for the store beyond this get 503 (AlertManager retries).
    pub queue_capacity: usize,
    /// The severity of an alert with no `severity` label that no playbook
    /// rule classifies (Grafana sends none by default).
    pub default_severity: crate::severity::Severity,
    /// Require Grafana's HMAC signature on Grafana webhook bodies.
    pub grafana_signature: Option<GrafanaSignature>,
}

/// Grafana's webhook HMAC: hex HMAC-SHA256 of `{timestamp}:{body}` (or of
/// the body alone without a timestamp header), keyed with `secret`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrafanaSignature {
    /// The shared secret (a secret reference).
    pub secret: String,
    /// The header holding the signature; Grafana's default.
    #[serde(default = "GrafanaSignature::default_header")]
    pub header: String,
    /// The header holding the Unix timestamp, when Grafana is set to send one.
    #[serde(default)]
    pub timestamp_header: Option<String>,
}

impl GrafanaSignature {
    fn default_header() -> String {
        "X-Grafana-Alert-Signature".into()
    }
}

impl Default for IntakeLimits {
    fn default() -> Self {
        IntakeLimits {
            max_body_bytes: 4 * 1024 * 1024,
            queue_capacity: 4096,
            default_severity: crate::severity::Severity::P3,
            grafana_signature: None,
        }
    }
}

/// Where postmortems go and how they show times.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Postmortems {
    /// IANA time zone for times in postmortems, e.g. `Asia/Shanghai`.
    pub timezone: String,
    /// Write `data_dir/postmortems/INC-n.md` when an incident resolves.
    pub write_on_resolve: bool,
    /// Kept so older configs still load; the summary on resolve is now the
    /// `incident_resolved` notice (`notifications.on`), posted by default.
    pub slack_summary: bool,
}

impl Default for Postmortems {
    fn default() -> Self {
        Postmortems {
            timezone: "UTC".into(),
            write_on_resolve: true,
            slack_summary: false,
        }
    }
}

impl Postmortems {
    pub fn tz(&self) -> Result<chrono_tz::Tz, String> {
        self.timezone.parse().map_err(|_| {
            format!(
                "postmortem.timezone {:?} is not an IANA time zone; write e.g. Asia/Shanghai or UTC",
                self.timezone
            )
        })
    }
}

/// Why the config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// YAML or a key/type problem; serde_yaml's message has line and column.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// A secret reference that cannot be resolved.
    #[error("{0}")]
    Secret(String),
    /// A value that is not usable (e.g. an unknown time zone).
    #[error("{0}")]
    Setting(String),
}

impl Config {
    /// Reads `path`; with `None`, reads `laojun.yaml` if it exists, else
    /// uses the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, must_exist) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("laojun.yaml"), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::parse(&text).map_err(|message| ConfigError::Invalid { path, message })
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let config: Config = serde_yaml::from_str(text).map_err(|e| match e.location() {
            Some(l) => format!("{}:{}: {}", l.line(), l.column(), strip_location(&e.to_string())),
            None => e.to_string(),
        })?;
        let mut config = config;
        match (&config.server.external_url, config.external_url.take()) {
            (Some(a), Some(b)) if *a != b => {
                return Err(format!(
                    "server.external_url {a:?} and external_url {b:?} differ; keep server.external_url only"
                ))
            }
            (None, old) => config.server.external_url = old,
            _ => {}
        }
        if let Some(url) = &config.server.external_url {
            let ok = reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !ok {
                return Err(format!(
                    "server.external_url {url:?} is not an http(s) URL; write e.g. https://laojun.example.com"
                ));
            }
        }
        config.postmortem.tz()?;
        if config.intake.max_body_bytes < 1024 {
            return Err("intake.max_body_bytes must be at least 1024".into());
        }
        Ok(config)
    }

    /// Every token, resolved. Empty means the API is open.
    pub fn credentials(&self) -> Result<Vec<Credential>, ConfigError> {
        let mut out = Vec::new();
        if let Some(secret) = self.api_token()? {
            out.push(Credential {
                name: "api-token".into(),
                role: Role::Admin,
                secret,
            });
        }
        for t in &self.auth.tokens {
            let secret =
                secret::resolve(&t.token).map_err(|e| ConfigError::Secret(format!("auth.tokens `{}`: {e}", t.name)))?;
            if secret.expose().len() < 16 {
                return Err(ConfigError::Secret(format!(
                    "auth.tokens `{}`: the token is shorter than 16 characters; use a long random one",
                    t.name
                )));
            }
            out.push(Credential {
                name: t.name.clone(),
                role: t.role,
                secret,
            });
        }
        Ok(out)
    }

    /// The API token: `auth.token` resolved, else `$LAOJUN_API_TOKEN`.
    pub fn api_token(&self) -> Result<Option<Secret>, ConfigError> {
        if let Some(reference) = &self.auth.token {
            let token = secret::resolve(reference).map_err(|e| ConfigError::Secret(format!("auth.token: {e}")))?;
            if !token.expose().is_empty() {
                return Ok(Some(token));
            }
        }
        Ok(std::env::var("LAOJUN_API_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(Secret::new))
    }
}

/// The config with what it refers to resolved once, at start: tokens and
/// the Slack webhook read from their references, the time zone parsed.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    /// Tokens and their roles; empty: the API needs no token.
    pub credentials: Vec<Credential>,
    pub slack_webhook: Option<Secret>,
    /// `intake.grafana_signature.secret`, resolved.
    pub grafana_secret: Option<Secret>,
    /// `slack.signing_secret` and `slack.bot_token`, resolved.
    pub slack_signing_secret: Option<Secret>,
    pub slack_bot_token: Option<Secret>,
    /// `postmortem.timezone`, for postmortems and their dates.
    pub timezone: chrono_tz::Tz,
}

impl Config {
    /// Resolves every secret reference and the time zone; an error names
    /// the key.
    pub fn resolve(self) -> Result<Resolved, ConfigError> {
        let credentials = self.credentials()?;
        let slack_webhook = match &self.slack.webhook_url {
            Some(reference) => {
                Some(secret::resolve(reference).map_err(|e| ConfigError::Secret(format!("slack.webhook_url: {e}")))?)
            }
            None => None,
        };
        let optional = |key: &str, reference: &Option<String>| -> Result<Option<Secret>, ConfigError> {
            reference
                .as_ref()
                .map(|r| secret::resolve(r).map_err(|e| ConfigError::Secret(format!("slack.{key}: {e}"))))
                .transpose()
        };
        let slack_signing_secret = optional("signing_secret", &self.slack.signing_secret)?;
        let slack_bot_token = optional("bot_token", &self.slack.bot_token)?;
        let grafana_secret = match &self.intake.grafana_signature {
            Some(g) => Some(
                secret::resolve(&g.secret)
                    .map_err(|e| ConfigError::Secret(format!("intake.grafana_signature.secret: {e}")))?,
            ),
            None => None,
        };
        let timezone = self.postmortem.tz().map_err(ConfigError::Setting)?;
        Ok(Resolved {
            config: self,
            credentials,
            slack_webhook,
            grafana_secret,
            slack_signing_secret,
            slack_bot_token,
            timezone,
        })
    }
}

fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_optional() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.listen, "127.0.0.1:9095");
        let c = Config::parse("listen: 0.0.0.0:1\naws: {endpoint_url: http://127.0.0.1:5000}\n").unwrap();
        assert_eq!(c.aws.region, "us-east-1");
        assert_eq!(c.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
    }

    #[test]
    fn external_url_is_read_under_server_or_at_the_top_and_must_be_http() {
        let c = Config::parse("server: {external_url: https://laojun.example.com}\n").unwrap();
        assert_eq!(c.server.external_url.as_deref(), Some("https://laojun.example.com"));
        let c = Config::parse("external_url: http://l:9095\n").unwrap();
        assert_eq!(c.server.external_url.as_deref(), Some("http://l:9095"));
        let e = Config::parse("server: {external_url: 'javascript:alert(1)'}\n").unwrap_err();
        assert!(e.contains("server.external_url") && e.contains("https://"), "{e}");
        let e = Config::parse("server: {external_url: http://a}\nexternal_url: http://b\n").unwrap_err();
        assert!(e.contains("differ"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_with_a_position() {
        let e = Config::parse("listen: x\ndata-dir: /tmp\n").unwrap_err();
        assert!(e.starts_with("2:1: unknown field `data-dir`, expected one of"), "{e}");
    }
}
