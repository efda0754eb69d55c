//! Reads a runbook from its positioned YAML tree, checking every key,
//! type, action argument, template and script on the way.

use std::collections::HashMap;
use std::path::{Component, Path};
use std::time::Duration;

use super::{Condition, OnFailure, Param, ParamType, Retries, Runbook, Step};
use crate::actions::Action;
use crate::decode::{expect_int, expect_str, is_identifier, Fields};
use crate::diag::{did_you_mean, one_of, Diagnostic, Diagnostics};
use crate::script::{Sandbox, ScriptError};
use crate::yaml::{self, Node, Pos, Value};

const RUNBOOK_KEYS: &[&str] = &["name", "description", "mitigates", "params", "steps"];
const PARAM_KEYS: &[&str] = &["type", "required", "default", "allowed", "description"];
const STEP_KEYS: &[&str] = &[
    "id",
    "action",
    "with",
    "when",
    "timeout_secs",
    "retries",
    "on_failure",
    "idempotent",
    "evidence",
];
const RETRY_KEYS: &[&str] = &["attempts", "backoff_secs", "max_backoff_secs"];
const DAY_SECS: i64 = 86_400;

/// Everything loading needs besides the file itself.
pub struct Tools<'a> {
    pub sandbox: &'a Sandbox,
    /// Names of the templates in templates/, for `slack.notify template:`.
    /// `None` skips that check.
    pub templates: Option<&'a std::collections::HashSet<String>>,
}

/// Loads one runbook. Problems go to `found`; the runbook is returned only
/// when this file had none.
pub fn load(path: &Path, source: &str, tools: &Tools, found: &mut Vec<Diagnostic>) -> Option<Runbook> {
    let before = found.len();
    let mut d = Diagnostics::new(path, found);
    let doc = match yaml::parse(source) {
        Ok(doc) => doc,
        Err(e) => {
            d.error(e.pos, e.message);
            return None;
        }
    };
    let f = Fields::of(&doc, "the runbook", RUNBOOK_KEYS, &mut d)?;
    let name = f
        .req_str("name", "name: rollback-deployment", &mut d)
        .unwrap_or_default();
    if let Some(node) = f.get("name") {
        crate::decode::check_name_matches_file("runbook", "rollback-deployment", name, node.pos, &mut d);
    }
    let description = f.opt_str("description", &mut d).unwrap_or_default().to_string();
    let mitigates = f.opt_bool("mitigates", &mut d).unwrap_or(false);
    let params = f.get("params").map(|n| load_params(n, &mut d)).unwrap_or_default();
    let param_names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
    let param_types: HashMap<String, ParamType> = params.iter().map(|p| (p.name.clone(), p.kind)).collect();

    let mut ctx = StepContext {
        tools,
        dir: path.parent().unwrap_or(Path::new(".")),
        params: &param_names,
        param_types: &param_types,
        seen: HashMap::new(),
        earlier: Vec::new(),
    };
    let steps = match f.get("steps") {
        Some(node) => ctx.steps(node, "the runbook's `steps`", &mut d),
        None => {
            d.error(f.pos, "the runbook has no `steps`; add a list such as `steps: [{id: notify, action: slack.notify, with: {text: \"...\"}}]`");
            Vec::new()
        }
    };
    if steps.is_empty()
        && f.get("steps")
            .is_some_and(|n| n.as_seq().is_some_and(<[Node]>::is_empty))
    {
        d.error(
            f.get("steps").map_or(f.pos, |n| n.pos),
            "`steps` is empty; a runbook needs at least one step",
        );
    }
    (found.len() == before).then(|| Runbook {
        name: name.to_string(),
        description,
        mitigates,
        params,
        steps,
        path: path.to_path_buf(),
    })
}

fn load_params(node: &Node, d: &mut Diagnostics) -> Vec<Param> {
    let Some(entries) = node.as_map() else {
        d.error(node.pos, format!("`params` must be a mapping of parameter names to their types, e.g. `namespace: {{type: string, required: true}}`; found {}", node.kind()));
        return Vec::new();
    };
    let mut params = Vec::new();
    for (key, spec) in entries {
        let name = key.key_text();
        if !is_identifier(&name) {
            d.error(
                key.pos,
                format!("parameter name {name:?} must be lower-case letters, digits, `-` or `_`"),
            );
            continue;
        }
        if let Some(p) = load_param(&name, spec, d) {
            params.push(p);
        }
    }
    params
}

fn load_param(name: &str, node: &Node, d: &mut Diagnostics) -> Option<Param> {
    // `namespace: string` is short for `namespace: {type: string}`.
    if let Some(word) = node.as_str() {
        let kind = param_type(word, node.pos, name, d)?;
        return Some(Param {
            name: name.into(),
            kind,
            required: false,
            default: None,
            allowed: Vec::new(),
            description: String::new(),
        });
    }
    let f = Fields::of(node, format!("parameter `{name}`"), PARAM_KEYS, d)?;
    let kind = match f.get("type") {
        Some(t) => param_type(expect_str(t, &f.field("type"), d)?, t.pos, name, d)?,
        None => ParamType::String,
    };
    let required = f.opt_bool("required", d).unwrap_or(false);
    let description = f.opt_str("description", d).unwrap_or_default().to_string();
    let mut allowed = Vec::new();
    if let Some(list) = f.get("allowed") {
        match list.as_seq() {
            Some(items) => {
                for item in items {
                    let v = item.to_json();
                    if kind.accepts(&v) {
                        allowed.push(v);
                    } else {
                        d.error(
                            item.pos,
                            format!(
                                "allowed value {} of parameter `{name}` is not a {}",
                                item.brief(),
                                kind.name()
                            ),
                        );
                    }
                }
            }
            None => d.error(
                list.pos,
                format!("`allowed` of parameter `{name}` must be a list of values, e.g. `allowed: [prod, staging]`"),
            ),
        }
    }
    let mut default = None;
    if let Some(dn) = f.get("default") {
        let v = dn.to_json();
        if !kind.accepts(&v) {
            d.error(
                dn.pos,
                format!(
                    "default of parameter `{name}` must be a {}, found {}",
                    kind.name(),
                    dn.brief()
                ),
            );
        } else if !allowed.is_empty() && !allowed.contains(&v) {
            d.error(
                dn.pos,
                format!(
                    "default {} of parameter `{name}` is not among its allowed values",
                    dn.brief()
                ),
            );
        } else if required {
            d.error(dn.pos, format!("parameter `{name}` is `required: true` and has a default, so it can never be missing; drop one of them"));
        } else {
            default = Some(v);
        }
    }
    Some(Param {
        name: name.into(),
        kind,
        required,
        default,
        allowed,
        description,
    })
}

fn param_type(word: &str, pos: Pos, name: &str, d: &mut Diagnostics) -> Option<ParamType> {
    let t = ParamType::parse(word);
    if t.is_none() {
        let hint = did_you_mean(word, ParamType::NAMES)
            .map(|n| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        d.error(
            pos,
            format!(
                "parameter `{name}` has unknown type `{word}`; {hint}write one of {}",
                one_of(ParamType::NAMES)
            ),
        );
    }
    t
}

pub(super) struct StepContext<'a> {
    pub(super) tools: &'a Tools<'a>,
    pub(super) dir: &'a Path,
    pub(super) params: &'a [String],
    /// Each parameter's declared type, to check a `{{params.x}}` argument.
    pub(super) param_types: &'a HashMap<String, ParamType>,
    /// Every step id so far, in the whole runbook, with where it was.
    seen: HashMap<String, Pos>,
    /// Ids of the steps that run before the one being read.
    pub(super) earlier: Vec<String>,
}

impl StepContext<'_> {
    fn steps(&mut self, node: &Node, what: &str, d: &mut Diagnostics) -> Vec<Step> {
        let Some(items) = node.as_seq() else {
            d.error(
                node.pos,
                format!(
                    "{what} must be a list of steps (lines starting with `- id: ...`), found {}",
                    node.kind()
                ),
            );
            return Vec::new();
        };
        items.iter().filter_map(|item| self.step(item, d)).collect()
    }

    fn step(&mut self, node: &Node, d: &mut Diagnostics) -> Option<Step> {
        let label = node.get("id").and_then(Node::as_str).map_or_else(
            || format!("the step at line {}", node.pos.line),
            |id| format!("step `{id}`"),
        );
        let f = Fields::of(node, label.clone(), STEP_KEYS, d)?;
        let id = f.req_str("id", "id: rollback", d).map(str::to_string);
        if let (Some(id), Some(id_node)) = (&id, f.get("id")) {
            if !is_identifier(id) {
                d.error(
                    id_node.pos,
                    format!("step id {id:?} must be lower-case letters, digits, `-` or `_`, starting with a letter"),
                );
            } else if let Some(first) = self.seen.get(id) {
                d.error(id_node.pos, format!("step id `{id}` is used twice (first at line {}); step ids must be unique so `steps.{id}.output` means one step", first.line));
            } else {
                self.seen.insert(id.clone(), id_node.pos);
            }
        }
        let action = f
            .required("action", "action: k8s.rollback", d)
            .and_then(|n| action_of(n, d));
        let with = match (action, f.get("with")) {
            (Some(action), with) => self.arguments(action, with, &f, &label, d),
            (None, _) => None,
        };
        let when = f.get("when").and_then(|n| self.condition(n, &label, d));
        let timeout = f.opt_int("timeout_secs", 1, DAY_SECS, d).map(secs);
        let retries = f.get("retries").and_then(|n| retries(n, &label, d)).unwrap_or_default();
        let script = match (action, &with) {
            (Some(Action::Script), Some(with)) => self.script(with, &f, d),
            _ => None,
        };
        let default_idempotent = match (action, &with) {
            (Some(a), Some(w)) => a.rerun_safe(w),
            (Some(a), None) => a.spec().idempotent,
            (None, _) => false,
        };
        let idempotent = f.opt_bool("idempotent", d).unwrap_or(default_idempotent);
        let evidence = f.opt_bool("evidence", d).unwrap_or(false);
        // Steps in on_failure may use this step's output (it failed, but may
        // have produced some), so it counts as earlier for them.
        if let Some(id) = &id {
            self.earlier.push(id.clone());
        }
        let on_failure = match f.get("on_failure") {
            None => OnFailure::Abort,
            Some(n) => {
                match &n.value {
                    Value::Str { text, .. } if text == "abort" => OnFailure::Abort,
                    Value::Str { text, .. } if text == "continue" => OnFailure::Continue,
                    Value::Seq(_) => OnFailure::Steps(self.steps(n, &format!("`on_failure` of {label}"), d)),
                    _ => {
                        d.error(n.pos, format!("`on_failure` of {label} must be `abort`, `continue` or a list of steps to run, found {}", n.brief()));
                        OnFailure::Abort
                    }
                }
            }
        };
        Some(Step {
            id: id?,
            action: action?,
            with: with?,
            when,
            timeout,
            retries,
            on_failure,
            idempotent,
            evidence,
            script,
            pos: node.pos,
        })
    }

    /// `steps.<id>` (or `steps["id"]`) in Rhai must name a step that runs
    /// before this one, as templates must.
    fn check_step_refs(&self, source: &str, pos: Pos, what: &str, d: &mut Diagnostics) {
        for id in step_refs(source) {
            if !self.earlier.iter().any(|e| e == &id) {
                let hint = crate::diag::did_you_mean(&id, &self.earlier.iter().map(String::as_str).collect::<Vec<_>>())
                    .map(|n| format!("did you mean `steps.{n}`? "))
                    .unwrap_or_default();
                let earlier = if self.earlier.is_empty() {
                    "no step runs before it".to_string()
                } else {
                    format!(
                        "the steps before it are {}",
                        crate::diag::one_of(&self.earlier.iter().map(String::as_str).collect::<Vec<_>>())
                    )
                };
                d.error(
                    pos,
                    format!("{what} reads `steps.{id}`, which is not a step that runs before it; {hint}{earlier}"),
                );
            }
        }
    }

    fn condition(&self, node: &Node, label: &str, d: &mut Diagnostics) -> Option<Condition> {
        let source = expect_str(node, &format!("`when` in {label}"), d)?;
        self.check_step_refs(source, node.pos, &format!("`when` in {label}"), d);
        match self.tools.sandbox.compile_condition(source) {
            Ok(script) => Some(Condition {
                source: source.to_string(),
                script,
            }),
            Err(e) => {
                d.error(node.pos, format!("`when` in {label} {}{}; write a Rhai expression such as `alert.labels.severity == \"critical\"`", e.message, at_script_pos(&e)));
                None
            }
        }
    }

    /// Compiles a `script` step's inline source or file.
    fn script(
        &self,
        with: &serde_json::Map<String, serde_json::Value>,
        f: &Fields,
        d: &mut Diagnostics,
    ) -> Option<crate::script::Script> {
        let with_node = f.get("with")?;
        if let Some(source) = with.get("source").and_then(|v| v.as_str()) {
            let pos = with_node.get("source").map_or(with_node.pos, |n| n.pos);
            self.check_step_refs(source, pos, &f.field("with.source"), d);
            return match self.tools.sandbox.compile_script(source) {
                Ok(s) => Some(s),
                Err(e) => {
                    d.error(
                        pos,
                        format!("{} {}{}", f.field("with.source"), e.message, at_script_pos(&e)),
                    );
                    None
                }
            };
        }
        let file = with.get("file").and_then(|v| v.as_str())?;
        let pos = with_node.get("file").map_or(with_node.pos, |n| n.pos);
        let rel = Path::new(file);
        let inside =
            rel.extension().is_some_and(|e| e == "rhai") && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !inside {
            d.error(pos, format!("{} is {file:?}; name a `.rhai` file beside the runbook, e.g. `file: check-health.rhai` (no `..`, no absolute path)", f.field("with.file")));
            return None;
        }
        let full = self.dir.join(rel);
        let source = match std::fs::read_to_string(&full) {
            Ok(s) => s,
            Err(e) => {
                d.error(
                    pos,
                    format!(
                        "{} names {}, which cannot be read: {e}",
                        f.field("with.file"),
                        full.display()
                    ),
                );
                return None;
            }
        };
        self.check_step_refs(&source, pos, &format!("{} ({file})", f.field("with.file")), d);
        match self.tools.sandbox.compile_script(&source) {
            Ok(s) => Some(s),
            Err(e) => {
                // The problem is in the .rhai file: point there.
                d.error_in(
                    &full,
                    Pos::new(e.line.max(1), e.col.max(1)),
                    format!(
                        "script {} (used by {} of {})",
                        e.message,
                        f.field("with.file"),
                        d.path().display()
                    ),
                );
                None
            }
        }
    }
}

/// The step ids a Rhai source reads as `steps.<id>` or `steps["<id>"]`.
fn step_refs(source: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let bytes = source.as_bytes();
    let mut from = 0;
    while let Some(i) = source[from..].find("steps").map(|i| i + from) {
        from = i + 5;
        let before_ok =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b'.');
        if !before_ok {
            continue;
        }
        let rest = &source[i + 5..];
        let id: String = if let Some(r) = rest.strip_prefix('.') {
            r.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        } else if let Some(r) = rest.strip_prefix("[\"") {
            r.chars().take_while(|c| *c != '"').collect()
        } else {
            continue;
        };
        if !id.is_empty() && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

fn action_of(node: &Node, d: &mut Diagnostics) -> Option<Action> {
    let name = expect_str(node, "`action`", d)?;
    let found = Action::from_name(name);
    if found.is_none() {
        let names = Action::names();
        let hint = did_you_mean(name, &names)
            .map(|n| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        d.error(
            node.pos,
            format!("unknown action `{name}`; {hint}the actions are {}", one_of(&names)),
        );
    }
    found
}

fn retries(node: &Node, label: &str, d: &mut Diagnostics) -> Option<Retries> {
    if let Value::Int(_) = node.value {
        let attempts = expect_int(node, &format!("`retries` in {label}"), 1, 100, d)?;
        return Some(Retries {
            attempts: attempts as u32,
            ..Retries::default()
        });
    }
    let f = Fields::of(node, format!("`retries` of {label}"), RETRY_KEYS, d)?;
    let mut r = Retries::default();
    if let Some(a) = f.opt_int("attempts", 1, 100, d) {
        r.attempts = a as u32;
    }
    if let Some(n) = f.get("backoff_secs") {
        r.backoff = duration_secs(n, &f.field("backoff_secs"), d)?;
    }
    if let Some(n) = f.get("max_backoff_secs") {
        r.max_backoff = duration_secs(n, &f.field("max_backoff_secs"), d)?;
    }
    Some(r)
}

fn duration_secs(node: &Node, field: &str, d: &mut Diagnostics) -> Option<Duration> {
    let secs = match node.value {
        Value::Int(i) => i as f64,
        Value::Float(f) => f,
        _ => -1.0,
    };
    if (0.0..=DAY_SECS as f64).contains(&secs) {
        Some(Duration::from_secs_f64(secs))
    } else {
        d.error(
            node.pos,
            format!(
                "{field} must be a number of seconds between 0 and {DAY_SECS}, found {}",
                node.brief()
            ),
        );
        None
    }
}

fn secs(i: i64) -> Duration {
    Duration::from_secs(i.unsigned_abs())
}

fn at_script_pos(e: &ScriptError) -> String {
    if e.line > 0 {
        format!(" (script line {}, column {})", e.line, e.col)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(src: &str) -> (Option<Runbook>, Vec<String>) {
        let sandbox = Sandbox::default();
        let tools = Tools {
            sandbox: &sandbox,
            templates: None,
        };
        let mut found = Vec::new();
        let rb = load(Path::new("runbooks/rb.yaml"), src, &tools, &mut found);
        (rb, found.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_complete_runbook_loads() {
        let (rb, errs) = load_str(
            r#"
name: rb
description: roll back
params:
  namespace: {type: string, required: true}
  deployment: string
  replicas: {type: int, default: 3}
steps:
  - id: rollback
    action: k8s.rollback
    with: {namespace: "{{params.namespace}}", deployment: "{{params.deployment}}"}
    timeout_secs: 60
    retries: {attempts: 3, backoff_secs: 0.5}
    on_failure:
      - id: tell
        action: slack.notify
        with: {text: "rollback failed: {{steps.rollback.output}}"}
  - id: scale
    action: k8s.scale
    when: params.replicas > 1
    with: {namespace: prod, deployment: api, by: +2, max: 10}
"#,
        );
        assert!(errs.is_empty(), "{errs:#?}");
        let rb = rb.unwrap();
        assert_eq!(rb.steps.len(), 2);
        assert_eq!(rb.steps[0].retries.attempts, 3);
        assert!(matches!(&rb.steps[0].on_failure, OnFailure::Steps(s) if s.len() == 1));
        assert_eq!(rb.steps[1].with["by"], "+2");
        assert!(!rb.steps[1].idempotent, "relative scaling is not idempotent");
    }

    #[test]
    fn each_fault_gets_its_own_positioned_message() {
        let (rb, errs) = load_str(
            "name: rb\nsteps:\n  - id: a\n    action: k8s.rolback\n  - id: a\n    action: wait\n    with: {secs: soon}\n    timeout: 3\n",
        );
        assert!(rb.is_none());
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs[0].starts_with("runbooks/rb.yaml:4:13: unknown action `k8s.rolback`; did you mean `k8s.rollback`?"),
            "{}",
            errs[0]
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("runbooks/rb.yaml:5:9: step id `a` is used twice")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("7:18: `secs` in `with` of step `a` (wait) must be a whole number")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("8:5: unknown key `timeout` in step `a`; did you mean `timeout_secs`?")),
            "{errs:#?}"
        );
    }

    #[test]
    fn rhai_reads_of_steps_are_found_in_both_spellings_once_each() {
        assert_eq!(
            step_refs(r#"steps.find.output.x > 1 && steps["act"].status == "ok" || steps.find.error != ()"#),
            ["find", "act"]
        );
        assert!(
            step_refs("let mysteps = 1; mysteps.x; a.steps.b").is_empty(),
            "only the root `steps`"
        );
    }
}
