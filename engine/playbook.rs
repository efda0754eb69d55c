//! Playbooks: which alerts (or which cron schedule) start which runbooks,
//! at what severity, grouped into which incident, within which guards.
//! `load` reads one from YAML; `check_calls` checks its runbook calls
//! against the loaded runbooks.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::decode::{expect_str, str_list, Fields};
use crate::diag::{did_you_mean, one_of, Diagnostic, Diagnostics};
use crate::matcher::{parse_matchers, Matcher};
use crate::runbook::Runbook;
use crate::severity::Severity;
use crate::template::{self, Scope};
use crate::yaml::{self, Node, Pos, Value};

/// The playbook that takes alerts no other playbook matches.
pub const DEFAULT_PLAYBOOK: &str = "default";

/// The names a playbook's runbook parameters may start from.
pub const PARAM_ROOTS: &[&str] = &["alert", "incident", "schedule"];

const PLAYBOOK_KEYS: &[&str] = &[
    "name",
    "description",
    "trigger",
    "severity",
    "group_by",
    "runbooks",
    "guards",
];
const TRIGGER_KEYS: &[&str] = &["alerts", "schedule"];
const SCHEDULE_KEYS: &[&str] = &["cron", "timezone", "catch_up"];
const SEVERITY_KEYS: &[&str] = &["rules", "default"];
const RULE_KEYS: &[&str] = &["match", "severity"];
const CALL_KEYS: &[&str] = &["runbook", "params", "mitigates", "when", "on_failure"];
const GUARD_KEYS: &[&str] = &["cooldown_secs", "max_runs"];
const MAX_RUNS_KEYS: &[&str] = &["count", "window_secs"];

/// A playbook as loaded from `playbooks/NAME.yaml`.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub name: String,
    pub description: String,
    pub trigger: Trigger,
    pub severity: SeverityPolicy,
    /// Labels whose values together name one incident.
    pub group_by: Vec<String>,
    pub runbooks: Vec<RunbookCall>,
    pub guards: Guards,
    pub path: PathBuf,
}

/// What starts a playbook.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// Alerts whose labels pass every matcher.
    Alerts(Vec<Matcher>),
    Schedule(Box<Schedule>),
}

/// A cron schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// As written in the playbook.
    pub expression: String,
    pub cron: cron::Schedule,
    pub timezone: chrono_tz::Tz,
    /// After a restart, run a missed firing once (true) or skip it (false).
    pub catch_up: bool,
}

/// How a playbook decides an incident's severity.
#[derive(Debug, Clone)]
pub struct SeverityPolicy {
    /// The first rule whose matchers all pass gives the severity.
    pub rules: Vec<(Vec<Matcher>, Severity)>,
    /// When no rule matches: a fixed class, or `None` for the `severity`
    /// label mapping.
    pub default: Option<Severity>,
}

impl SeverityPolicy {
    pub fn from_label() -> Self {
        SeverityPolicy {
            rules: Vec::new(),
            default: None,
        }
    }

    /// The severity this policy gives an alert with `labels`.
    pub fn classify(&self, labels: &BTreeMap<String, String>) -> Severity {
        self.classify_or(labels, Severity::P3)
    }

    /// As `classify`, with `missing` for an alert no rule takes and that
    /// has no `severity` label.
    pub fn classify_or(&self, labels: &BTreeMap<String, String>, missing: Severity) -> Severity {
        self.rules
            .iter()
            .find(|(ms, _)| ms.iter().all(|m| m.matches(labels)))
            .map(|(_, s)| *s)
            .or(self.default)
            .unwrap_or_else(|| Severity::from_label_or(labels.get("severity").map(String::as_str), missing))
    }
}

/// One runbook a playbook starts, with its parameters as templates.
#[derive(Debug, Clone)]
pub struct RunbookCall {
    pub runbook: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Overrides the runbook's own `mitigates`.
    pub mitigates: Option<bool>,
    /// Runs the entry only when this holds (Rhai over `alert`, `incident`
    /// and `runs.<runbook>.status` of the entries before it).
    pub when: Option<crate::runbook::Condition>,
    /// Whether the entries after this one run when it does not succeed.
    pub on_failure: CallFailure,
    pub pos: Pos,
    /// Positions of each parameter value, for messages.
    param_pos: HashMap<String, Pos>,
}

/// What a playbook does after one of its runbooks did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallFailure {
    /// The later entries are recorded as not started, with the reason.
    #[default]
    Stop,
    /// The later entries run all the same.
    Continue,
}

/// Limits on how often a playbook's runbooks start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Guards {
    /// No new run for the same group within this long after the last one.
    pub cooldown: Option<Duration>,
    /// At most `count` runs within `window`.
    pub max_runs: Option<(u32, Duration)>,
}

impl Playbook {
    /// Whether an alert with these labels starts this playbook.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match &self.trigger {
            Trigger::Alerts(ms) => ms.iter().all(|m| m.matches(labels)),
            Trigger::Schedule(_) => false,
        }
    }
}

/// Loads one playbook. Problems go to `found`; the playbook is returned
/// only when this file had none.
pub fn load(path: &Path, source: &str, found: &mut Vec<Diagnostic>) -> Option<Playbook> {
    let before = found.len();
    let mut d = Diagnostics::new(path, found);
    let doc = match yaml::parse(source) {
        Ok(doc) => doc,
        Err(e) => {
            d.error(e.pos, e.message);
            return None;
        }
    };
    let f = Fields::of(&doc, "the playbook", PLAYBOOK_KEYS, &mut d)?;
    let name = f
        .req_str("name", "name: service-down", &mut d)
        .unwrap_or_default()
        .to_string();
    if let Some(node) = f.get("name") {
        crate::decode::check_name_matches_file("playbook", "service-down", &name, node.pos, &mut d);
    }
    let description = f.opt_str("description", &mut d).unwrap_or_default().to_string();
    let trigger = f
        .required("trigger", "trigger: {alerts: ['alertname=\"ServiceDown\"']}", &mut d)
        .and_then(|n| trigger(n, &mut d));
    let severity = match f.get("severity") {
        Some(n) => severity_policy(n, &mut d),
        None => Some(SeverityPolicy::from_label()),
    };
    let group_by = match f.get("group_by") {
        Some(n) => {
            let labels = str_list(n, "`group_by`", &mut d);
            for (label, pos) in &labels {
                if !is_label_name(label) {
                    d.error(*pos, format!("`group_by` entry {label:?} is not a label name; write names such as `alertname` or `namespace`"));
                }
            }
            labels.into_iter().map(|(l, _)| l.to_string()).collect()
        }
        None => vec!["alertname".to_string()],
    };
    let runbooks = match f.get("runbooks") {
        Some(n) => calls(n, &mut d),
        None => Vec::new(),
    };
    let guards = f.get("guards").and_then(|n| guards(n, &mut d)).unwrap_or_default();
    if found.len() != before {
        return None;
    }
    Some(Playbook {
        name,
        description,
        trigger: trigger?,
        severity: severity?,
        group_by,
        runbooks,
        guards,
        path: path.to_path_buf(),
    })
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn trigger(node: &Node, d: &mut Diagnostics) -> Option<Trigger> {
    let f = Fields::of(node, "`trigger`", TRIGGER_KEYS, d)?;
    match (f.get("alerts"), f.get("schedule")) {
        (Some(alerts), None) => Some(Trigger::Alerts(matchers(alerts, "`trigger.alerts`", d)?)),
        (None, Some(schedule)) => schedule_of(schedule, d).map(|s| Trigger::Schedule(Box::new(s))),
        (Some(_), Some(_)) => {
            d.error(f.pos, "`trigger` has both `alerts` and `schedule`; a playbook has one trigger, so split it into two playbooks");
            None
        }
        (None, None) => {
            d.error(f.pos, "`trigger` needs `alerts` (e.g. `alerts: ['alertname=\"ServiceDown\"']`) or `schedule` (e.g. `schedule: {cron: \"0 9 * * *\", timezone: Asia/Shanghai}`)");
            None
        }
    }
}

/// Reads a list of matchers (all must pass); reports every bad one.
fn matchers(node: &Node, field: &str, d: &mut Diagnostics) -> Option<Vec<Matcher>> {
    let before = d.count();
    let mut out = Vec::new();
    for (text, pos) in str_list(node, field, d) {
        match parse_matchers(text) {
            // AlertManager takes an empty entry as "no condition"; in a
            // trigger that is a slip that would take every alert.
            Ok(ms) if ms.is_empty() => d.error(
                pos,
                format!("{field}: {text:?} holds no matcher; write e.g. `alertname=\"ServiceDown\"`"),
            ),
            Ok(ms) => out.extend(ms),
            Err(e) => d.error(pos, format!("{field}: {e}")),
        }
    }
    if out.is_empty() && d.count() == before {
        d.error(
            node.pos,
            format!("{field} is empty; add a matcher such as `alertname=\"ServiceDown\"`"),
        );
    }
    (d.count() == before).then_some(out)
}

fn schedule_of(node: &Node, d: &mut Diagnostics) -> Option<Schedule> {
    let f = Fields::of(node, "`trigger.schedule`", SCHEDULE_KEYS, d)?;
    let expr_node = f.required("cron", "cron: \"0 9 * * *\"", d)?;
    let expression = expect_str(expr_node, "`cron`", d)?.to_string();
    let cron = parse_cron(&expression).map_err(|e| d.error(expr_node.pos, e)).ok();
    let timezone = match f.get("timezone") {
        None => Some(chrono_tz::UTC),
        Some(n) => {
            let tz = expect_str(n, "`timezone`", d)?;
            let parsed = chrono_tz::Tz::from_str(tz).ok();
            if parsed.is_none() {
                d.error(n.pos, format!("`timezone` {tz:?} is not an IANA time zone; write e.g. `Asia/Shanghai`, `Europe/Dublin` or `UTC`"));
            }
            parsed
        }
    };
    let catch_up = f.opt_bool("catch_up", d).unwrap_or(false);
    Some(Schedule {
        expression,
        cron: cron?,
        timezone: timezone?,
        catch_up,
    })
}

/// Parses a cron expression: the usual five fields (minute hour day month
/// weekday), or six/seven with seconds (and years) first. Weekdays must be
/// names (`MON-FRI`): numbers mean different days in different cron dialects.
pub fn parse_cron(expression: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let full = match fields.len() {
        5 => format!("0 {expression}"),
        6 | 7 => expression.to_string(),
        n => {
            return Err(format!(
                "cron {expression:?} has {n} fields; write five (minute hour day month weekday), e.g. `0 9 * * MON-FRI`"
            ))
        }
    };
    let weekday = if fields.len() == 5 { fields[4] } else { fields[5] };
    if weekday.chars().any(|c| c.is_ascii_digit()) && !weekday.contains('/') {
        return Err(format!(
            "cron {expression:?} gives weekdays as numbers ({weekday}); write names such as `MON-FRI` or `SUN`, because 0/1 mean Sunday or Monday depending on the cron dialect"
        ));
    }
    cron::Schedule::from_str(&full).map_err(|e| {
        // The crate's message repeats the expression with a caret; keep its reason.
        let text = e.to_string();
        let reason = text.lines().last().unwrap_or(&text).trim().to_string();
        format!("cron {expression:?} does not parse: {reason} Write minute hour day month weekday, e.g. `30 2 * * *` for 02:30 every day")
    })
}

fn severity_policy(node: &Node, d: &mut Diagnostics) -> Option<SeverityPolicy> {
    if let Some(text) = node.as_str() {
        return match text {
            "from_label" => Some(SeverityPolicy::from_label()),
            _ => severity_word(text, node.pos, d).map(|s| SeverityPolicy {
                rules: Vec::new(),
                default: Some(s),
            }),
        };
    }
    let f = Fields::of(node, "`severity`", SEVERITY_KEYS, d)?;
    let default = match f.get("default") {
        None => None,
        Some(n) => match n.as_str() {
            Some("from_label") => None,
            Some(w) => Some(severity_word(w, n.pos, d)?),
            None => {
                d.error(n.pos, "`severity.default` must be P0, P1, P2, P3 or `from_label`");
                return None;
            }
        },
    };
    let mut rules = Vec::new();
    if let Some(list) = f.get("rules") {
        let Some(items) = list.as_seq() else {
            d.error(
                list.pos,
                "`severity.rules` must be a list such as `- {match: ['env=\"prod\"'], severity: P0}`",
            );
            return None;
        };
        for item in items {
            let Some(rf) = Fields::of(item, "a severity rule", RULE_KEYS, d) else {
                continue;
            };
            let ms = rf
                .required("match", "match: ['env=\"prod\"']", d)
                .and_then(|n| matchers(n, "`match`", d));
            let sev = rf
                .required("severity", "severity: P0", d)
                .and_then(|n| match n.as_str() {
                    Some(w) => severity_word(w, n.pos, d),
                    None => {
                        d.error(n.pos, "`severity` must be P0, P1, P2 or P3");
                        None
                    }
                });
            if let (Some(ms), Some(sev)) = (ms, sev) {
                rules.push((ms, sev));
            }
        }
    }
    Some(SeverityPolicy { rules, default })
}

fn severity_word(word: &str, pos: Pos, d: &mut Diagnostics) -> Option<Severity> {
    let s = Severity::parse(word);
    if s.is_none() {
        d.error(
            pos,
            format!(
                "severity `{word}` is not a class; write one of {} (P0 is the worst), or `from_label`",
                one_of(Severity::NAMES)
            ),
        );
    }
    s
}

fn calls(node: &Node, d: &mut Diagnostics) -> Vec<RunbookCall> {
    let Some(items) = node.as_seq() else {
        d.error(
            node.pos,
            "`runbooks` must be a list such as `- runbook: rollback-deployment`",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Some(f) = Fields::of(item, "a runbook call", CALL_KEYS, d) else {
            continue;
        };
        let Some(name) = f.req_str("runbook", "runbook: rollback-deployment", d) else {
            continue;
        };
        let mut params = serde_json::Map::new();
        let mut param_pos = HashMap::new();
        if let Some(pn) = f.get("params") {
            let Some(entries) = pn.as_map() else {
                d.error(pn.pos, "`params` must be a mapping of parameter names to values");
                continue;
            };
            for (k, v) in entries {
                if let Value::Str { text, .. } = &v.value {
                    check_param_template(text, v.pos, &k.key_text(), d);
                }
                params.insert(k.key_text(), v.to_json());
                param_pos.insert(k.key_text(), k.pos);
            }
        }
        let mitigates = f.opt_bool("mitigates", d);
        let when = f.get("when").and_then(|n| call_condition(n, name, d));
        let on_failure = match f.opt_str("on_failure", d) {
            None | Some("stop") => CallFailure::Stop,
            Some("continue") => CallFailure::Continue,
            Some(other) => {
                let pos = f.get("on_failure").map_or(item.pos, |n| n.pos);
                d.error(
                    pos,
                    format!("`on_failure` of runbook `{name}` is `{other}`; write `stop` (the later runbooks do not run) or `continue`"),
                );
                CallFailure::Stop
            }
        };
        out.push(RunbookCall {
            runbook: name.to_string(),
            params,
            mitigates,
            when,
            on_failure,
            pos: item.pos,
            param_pos,
        });
    }
    out
}

/// Compiles an entry's `when:` in the one sandbox every playbook shares.
fn call_condition(node: &Node, runbook: &str, d: &mut Diagnostics) -> Option<crate::runbook::Condition> {
    static SANDBOX: std::sync::OnceLock<crate::script::Sandbox> = std::sync::OnceLock::new();
    let source = crate::decode::expect_str(node, &format!("`when` of runbook `{runbook}`"), d)?;
    let sandbox = SANDBOX.get_or_init(crate::script::Sandbox::default);
    match sandbox.compile_condition(source) {
        Ok(script) => Some(crate::runbook::Condition {
            source: source.to_string(),
            script,
        }),
        Err(e) => {
            d.error(
                node.pos,
                format!("`when` of runbook `{runbook}` {}; write a Rhai expression such as `runs[\"notify\"].status == \"succeeded\"`", e.message),
            );
            None
        }
    }
}

fn check_param_template(text: &str, pos: Pos, name: &str, d: &mut Diagnostics) {
    if let Err(msg) = crate::secret::check_references(text) {
        d.error(pos, format!("parameter `{name}`: {msg}"));
    }
    if !template::is_template(text) {
        return;
    }
    let scope = Scope {
        roots: Some(PARAM_ROOTS),
        ..Scope::default()
    };
    for p in template::check(text, &scope) {
        d.error(pos, format!("parameter `{name}`: {}", p.message));
    }
}

fn guards(node: &Node, d: &mut Diagnostics) -> Option<Guards> {
    let f = Fields::of(node, "`guards`", GUARD_KEYS, d)?;
    let cooldown = f
        .opt_int("cooldown_secs", 0, 7 * 86_400, d)
        .map(|s| Duration::from_secs(s as u64));
    let max_runs = match f.get("max_runs") {
        None => None,
        Some(n) => {
            let mf = Fields::of(n, "`guards.max_runs`", MAX_RUNS_KEYS, d)?;
            let count = mf.opt_int("count", 1, 10_000, d);
            let window = mf.opt_int("window_secs", 1, 30 * 86_400, d);
            match (count, window) {
                (Some(c), Some(w)) => Some((c as u32, Duration::from_secs(w as u64))),
                _ => {
                    d.error(
                        n.pos,
                        "`guards.max_runs` needs `count` and `window_secs`, e.g. `{count: 3, window_secs: 3600}`",
                    );
                    None
                }
            }
        }
    };
    Some(Guards { cooldown, max_runs })
}

/// Checks each runbook call against the loaded runbooks: the runbook
/// exists, every parameter is declared, required ones are given, and
/// literal values have the declared type and an allowed value.
/// Calls to runbooks named in `broken` (which failed to load and were
/// reported already) are skipped.
pub fn check_calls(
    playbook: &Playbook,
    runbooks: &BTreeMap<String, Runbook>,
    broken: &std::collections::HashSet<String>,
    found: &mut Vec<Diagnostic>,
) {
    let mut d = Diagnostics::new(&playbook.path, found);
    for call in playbook.runbooks.iter().filter(|c| !broken.contains(&c.runbook)) {
        let Some(rb) = runbooks.get(&call.runbook) else {
            let names: Vec<&str> = runbooks.keys().map(String::as_str).collect();
            let hint = did_you_mean(&call.runbook, &names)
                .map(|n| format!("did you mean `{n}`? "))
                .unwrap_or_default();
            d.error(
                call.pos,
                format!(
                    "runbook `{}` does not exist; {hint}the runbooks are {}",
                    call.runbook,
                    one_of(&names)
                ),
            );
            continue;
        };
        for (name, value) in &call.params {
            let pos = call.param_pos.get(name).copied().unwrap_or(call.pos);
            let Some(param) = rb.param(name) else {
                let names: Vec<&str> = rb.params.iter().map(|p| p.name.as_str()).collect();
                let hint = did_you_mean(name, &names)
                    .map(|n| format!("did you mean `{n}`? "))
                    .unwrap_or_default();
                d.error(
                    pos,
                    format!(
                        "runbook `{}` has no parameter `{name}`; {hint}its parameters are {}",
                        rb.name,
                        one_of(&names)
                    ),
                );
                continue;
            };
            let templated = value.as_str().is_some_and(template::is_template);
            if !templated && !param.kind.accepts(value) {
                d.error(
                    pos,
                    format!(
                        "parameter `{name}` of runbook `{}` is a {}, found {value}",
                        rb.name,
                        param.kind.name()
                    ),
                );
            } else if !templated && !param.allowed.is_empty() && !param.allowed.contains(value) {
                let allowed: Vec<String> = param.allowed.iter().map(ToString::to_string).collect();
                d.error(
                    pos,
                    format!(
                        "parameter `{name}` of runbook `{}` must be one of {}, found {value}",
                        rb.name,
                        allowed.join(", ")
                    ),
                );
            }
        }
        for param in rb
            .params
            .iter()
            .filter(|p| p.required && !call.params.contains_key(&p.name))
        {
            d.error(
                call.pos,
                format!(
                    "runbook `{}` needs parameter `{}`; add it under `params:`, e.g. `{}: \"{{{{alert.labels.{}}}}}\"`",
                    rb.name, param.name, param.name, param.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(src: &str) -> (Option<Playbook>, Vec<String>) {
        let mut found = Vec::new();
        let pb = load(Path::new("playbooks/pb.yaml"), src, &mut found);
        (pb, found.iter().map(ToString::to_string).collect())
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn an_alert_playbook_matches_and_classifies() {
        let (pb, errs) = load_str(
            r#"
name: pb
trigger:
  alerts: ['alertname="ServiceDown"', 'namespace!="dev"']
severity:
  rules:
    - {match: ['env="prod"'], severity: P0}
  default: from_label
group_by: [alertname, namespace]
runbooks:
  - runbook: rollback-deployment
    params: {namespace: "{{alert.labels.namespace}}"}
guards: {cooldown_secs: 600, max_runs: {count: 3, window_secs: 3600}}
"#,
        );
        assert!(errs.is_empty(), "{errs:#?}");
        let pb = pb.unwrap();
        let prod = labels(&[
            ("alertname", "ServiceDown"),
            ("namespace", "web"),
            ("env", "prod"),
            ("severity", "critical"),
        ]);
        assert!(pb.matches(&prod));
        assert_eq!(pb.severity.classify(&prod), Severity::P0);
        let staging = labels(&[("alertname", "ServiceDown"), ("severity", "critical")]);
        assert_eq!(pb.severity.classify(&staging), Severity::P1);
        assert!(!pb.matches(&labels(&[("alertname", "ServiceDown"), ("namespace", "dev")])));
        assert_eq!(pb.guards.max_runs, Some((3, Duration::from_secs(3600))));
    }

    #[test]
    fn a_schedule_playbook_takes_five_field_cron_in_a_time_zone() {
        let (pb, errs) = load_str(
            "name: pb\ntrigger:\n  schedule: {cron: \"0 9 * * MON-FRI\", timezone: Asia/Shanghai, catch_up: true}\n",
        );
        assert!(errs.is_empty(), "{errs:#?}");
        let Trigger::Schedule(s) = pb.unwrap().trigger else {
            panic!("not a schedule")
        };
        assert!(s.catch_up);
        assert_eq!(s.timezone, chrono_tz::Asia::Shanghai);
    }

    #[test]
    fn bad_matchers_cron_zones_and_severities_are_each_reported() {
        let (_, errs) = load_str(
            "name: pb\ntrigger:\n  alerts: ['severity=~\"(crit\"']\nseverity: P5\ngroup_by: [\"not a label\"]\n",
        );
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(
            errs[0].starts_with("playbooks/pb.yaml:3:12: `trigger.alerts`: `severity=~\"(crit\"` has an invalid regex"),
            "{}",
            errs[0]
        );
        assert!(errs[1].contains("4:11: severity `P5` is not a class"), "{}", errs[1]);
        let (_, errs) = load_str("name: pb\ntrigger:\n  schedule: {cron: \"0 9 * * 1-5\", timezone: Mars/Olympus}\n");
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(errs[0].contains("weekdays as numbers"), "{}", errs[0]);
        assert!(errs[1].contains("not an IANA time zone"), "{}", errs[1]);
    }
}
