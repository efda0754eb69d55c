//! The actions a step can take and the typed arguments each accepts. This
//! table is the single source for validation, for `laojun actions` and for
//! docs/ACTIONS.md (a test keeps that file equal to the table).

/// The type of one `with:` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// Text; may be a template.
    Str,
    /// A whole number, or a template that renders to one.
    Int,
    Bool,
    /// A mapping of names to strings (selectors, headers).
    StrMap,
    /// A mapping of names to whole numbers (DNS weights).
    IntMap,
    /// One string or a list of strings.
    StrList,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
    /// A relative change: `+2`, `-1`, `x2` or `*1.5`.
    ScaleBy,
    /// One HTTP status code or a list of them.
    Statuses,
    /// Any YAML value (sent as JSON).
    Any,
}

impl ArgKind {
    /// How the type reads in messages and the reference.
    pub fn describe(&self) -> String {
        match self {
            ArgKind::Str => "string".into(),
            ArgKind::Int => "integer".into(),
            ArgKind::Bool => "boolean".into(),
            ArgKind::StrMap => "map of strings".into(),
            ArgKind::IntMap => "map of integers".into(),
            ArgKind::StrList => "string or list of strings".into(),
            ArgKind::Enum(words) => format!("one of {}", words.join(" | ")),
            ArgKind::ScaleBy => "`+N`, `-N`, `xF` or `*F`".into(),
            ArgKind::Statuses => "status code or list of codes".into(),
            ArgKind::Any => "any value (sent as JSON)".into(),
        }
    }
}

/// One argument of an action.
#[derive(Debug)]
pub struct Arg {
    pub name: &'static str,
    pub kind: ArgKind,
    pub required: bool,
    /// The value used when the argument is left out, as the reference shows it.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

/// One action.
#[derive(Debug)]
pub struct ActionSpec {
    pub name: &'static str,
    pub summary: &'static str,
    pub args: &'static [Arg],
    /// Groups of arguments of which exactly one must be given.
    pub exactly_one_of: &'static [&'static [&'static str]],
    /// Whether running the action twice leaves the same state as once, so a
    /// step interrupted by a crash may be re-run without `idempotent: true`.
    pub idempotent: bool,
    /// What the step's output holds, for `steps.<id>.output`.
    pub output: &'static str,
}

impl ActionSpec {
    pub fn arg(&self, name: &str) -> Option<&Arg> {
        self.args.iter().find(|a| a.name == name)
    }

    pub fn arg_names(&self) -> Vec<&'static str> {
        self.args.iter().map(|a| a.name).collect()
    }
}

const fn req(name: &'static str, kind: ArgKind, doc: &'static str) -> Arg {
    Arg {
        name,
        kind,
        required: true,
        default: None,
        doc,
    }
}

const fn opt(name: &'static str, kind: ArgKind, default: Option<&'static str>, doc: &'static str) -> Arg {
    Arg {
        name,
        kind,
        required: false,
        default,
        doc,
    }
}

const CLUSTER: Arg = opt(
    "cluster",
    ArgKind::Str,
    Some("the configured context"),
    "kubeconfig context to act on (one cluster per region)",
);
const NAMESPACE: Arg = req("namespace", ArgKind::Str, "namespace of the object");
const DEPLOYMENT: Arg = req("deployment", ArgKind::Str, "name of the Deployment");

/// Every action, in the order the reference lists them.
pub const ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "k8s.rollback",
        summary: "Roll a Deployment back to an earlier revision, as `kubectl rollout undo` does.",
        args: &[
            CLUSTER,
            NAMESPACE,
            DEPLOYMENT,
            opt(
                "to_revision",
                ArgKind::Int,
                Some("the previous revision"),
                "revision to roll back to",
            ),
        ],
        exactly_one_of: &[],
        idempotent: false,
        output: "`from_revision`, `to_revision`, `image` (the restored pod template's first image)",
    },
    ActionSpec {
        name: "k8s.scale",
        summary: "Set a Deployment's replicas through the scale subresource, absolute or relative, within bounds.",
        args: &[
            CLUSTER,
            NAMESPACE,
            DEPLOYMENT,
            opt("replicas", ArgKind::Int, None, "the replica count to set"),
            opt(
                "by",
                ArgKind::ScaleBy,
                None,
                "a change from the current count: `+2`, `-1`, `x2`, `*1.5`",
            ),
            opt("min", ArgKind::Int, Some("0"), "never scale below this"),
            opt("max", ArgKind::Int, None, "never scale above this"),
        ],
        exactly_one_of: &[&["replicas", "by"]],
        idempotent: false,
        output: "`previous_replicas`, `replicas`",
    },
    ActionSpec {
        name: "k8s.switch_traffic",
        summary: "Point a Service at other pods by patching its selector (e.g. `version: stable`).",
        args: &[
            CLUSTER,
            NAMESPACE,
            req("service", ArgKind::Str, "name of the Service"),
            req("selector", ArgKind::StrMap, "labels to set in the Service's selector"),
        ],
        exactly_one_of: &[],
        idempotent: true,
        output: "`previous_selector` (to switch back), `selector`",
    },
    ActionSpec {
        name: "k8s.restart",
        summary: "Restart a Deployment's pods, as `kubectl rollout restart` does.",
        args: &[CLUSTER, NAMESPACE, DEPLOYMENT],
        exactly_one_of: &[],
        idempotent: false,
        output: "`restarted_at`",
    },
    ActionSpec {
        name: "k8s.wait_ready",
        summary: "Wait until a Deployment's rollout is complete and all replicas are available.",
        args: &[
            CLUSTER,
            NAMESPACE,
            DEPLOYMENT,
            opt("timeout_secs", ArgKind::Int, Some("300"), "give up after this long"),
        ],
        exactly_one_of: &[],
        idempotent: true,
        output: "`ready_replicas`, `waited_secs`",
    },
    ActionSpec {
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
    },
    ActionSpec {
        name: "slack.notify",
        summary: "Post a Block Kit message to Slack through an incoming webhook.",
        args: &[
            opt(
                "channel",
                ArgKind::Str,
                Some("the webhook's channel"),
                "channel to post to, e.g. `#ops-alerts`",
            ),
            opt("text", ArgKind::Str, None, "the message text (a template)"),
            opt(
                "template",
                ArgKind::Str,
                None,
                "name of a template in templates/ to render as the message",
            ),
            opt(
                "webhook_url",
                ArgKind::Str,
                Some("`slack.webhook_url` from the config"),
                "a secret reference such as `${env:SLACK_WEBHOOK_URL}`",
            ),
        ],
        exactly_one_of: &[&["text", "template"]],
        idempotent: false,
        output: "`status`",
    },
    ActionSpec {
        name: "http",
        summary: "Call an HTTP endpoint and check its status.",
        args: &[
            opt(
                "method",
                ArgKind::Enum(&["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
                Some("GET"),
                "HTTP method",
            ),
            req("url", ArgKind::Str, "http:// or https:// URL"),
            opt(
                "headers",
                ArgKind::StrMap,
                None,
                "request headers; values may hold secret references `${env:NAME}`",
            ),
            opt(
                "body",
                ArgKind::Any,
                None,
                "request body: a string is sent as is, anything else as JSON",
            ),
            opt(
                "expect_status",
                ArgKind::Statuses,
                Some("any 2xx"),
                "status codes that count as success",
            ),
        ],
        exactly_one_of: &[],
        idempotent: false,
        output: "`status`, `body` (JSON when the response is JSON, else text, at most 64 KiB)",
    },
    ActionSpec {
        name: "script",
        summary: "Run Rhai in the sandbox; its value becomes the output, `throw \"why\"` fails the step.",
        args: &[
            opt("source", ArgKind::Str, None, "inline Rhai"),
            opt("file", ArgKind::Str, None, "a `.rhai` file beside the runbook"),
        ],
        exactly_one_of: &[&["source", "file"]],
        idempotent: false,
        output: "the script's value; `log` holds what it printed",
    },
    ActionSpec {
        name: "approval",
        summary:
            "Wait until a person approves (API or CLI); deny or timeout fails the step unless `on_timeout: approve`.",
        args: &[
            opt(
                "who",
                ArgKind::StrList,
                Some("any operator"),
                "who may approve (token names)",
            ),
            opt("message", ArgKind::Str, None, "what the approver is asked"),
            opt("ttl_secs", ArgKind::Int, Some("900"), "how long to wait for a decision"),
            opt(
                "on_timeout",
                ArgKind::Enum(&["deny", "approve"]),
                Some("deny"),
                "what happens when nobody decides in time",
            ),
        ],
        exactly_one_of: &[],
        idempotent: true,
        output: "`decision`, `by`",
    },
    ActionSpec {
        name: "wait",
        summary: "Pause the run.",
        args: &[req("secs", ArgKind::Int, "how long to wait")],
        exactly_one_of: &[],
        idempotent: true,
        output: "nothing",
    },
];

/// Looks an action up by name.
pub fn action(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|a| a.name == name)
}

pub fn action_names() -> Vec<&'static str> {
    ACTIONS.iter().map(|a| a.name).collect()
}

/// The action reference in markdown (docs/ACTIONS.md).
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Actions\n\n\
         Generated by `laojun actions` from the table in `engine/runbook/spec.rs`; a test keeps this file\n\
         equal to it. String arguments are Handlebars templates over `params`, `alert`, `incident`,\n\
         `steps.<id>.output` and `run`.\n",
    );
    for a in ACTIONS {
        out.push_str(&format!("\n## `{}`\n\n{}\n\n", a.name, a.summary));
        out.push_str("| argument | type | required | default | meaning |\n|---|---|---|---|---|\n");
        for arg in a.args {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                arg.name,
                arg.kind.describe().replace('|', "\\|"),
                if arg.required { "yes" } else { "no" },
                arg.default.unwrap_or("—"),
                arg.doc
            ));
        }
        for group in a.exactly_one_of {
            let names: Vec<String> = group.iter().map(|n| format!("`{n}`")).collect();
            out.push_str(&format!("\nGive exactly one of {}.\n", names.join(", ")));
        }
        out.push_str(&format!(
            "\nOutput: {}. Safe to re-run after a crash without `idempotent: true`: {}.\n",
            a.output,
            if a.idempotent { "yes" } else { "no" }
        ));
    }
    out
}
