//! What templates and scripts see, and rendering with it: a step's `with:`
//! arguments (typed as the action declares them) and a playbook's runbook
//! parameters (from the alert or the schedule).

use handlebars::Handlebars;
use serde_json::{json, Map, Value};

use super::Settings;
use crate::actions::{Action, ArgKind};
use crate::catalog::Catalog;
use crate::incident::Incident;
use crate::run::Run;
use crate::runbook::{Runbook, Step};
use crate::template;

/// The template registries runs render with: plain, and one that escapes
/// values for Slack's mrkdwn (so a label cannot make a mention or a link).
pub struct Renderer {
    plain: Handlebars<'static>,
    slack: Handlebars<'static>,
}

impl Renderer {
    pub fn new() -> Self {
        let mut slack = template::registry();
        slack.register_escape_fn(crate::actions::slack::escape);
        Renderer {
            plain: template::registry(),
            slack,
        }
    }

    /// A step's `with:` rendered over `context`, each argument turned into
    /// the type its action declares; `slack.notify`'s `template` is
    /// rendered into its `text`.
    pub fn args(&self, step: &Step, context: &Value, catalog: &Catalog) -> Result<Value, String> {
        let mut out = Map::new();
        for (name, value) in &step.with {
            let registry = if step.action == Action::SlackNotify && name == "text" {
                &self.slack
            } else {
                &self.plain
            };
            let rendered = render_value(registry, value, context).map_err(|e| format!("`{name}`: {e}"))?;
            let kind = step.action.arg(name).map(|a| a.kind);
            let typed = coerce(kind, rendered).map_err(|e| format!("`{name}` {e}"))?;
            if typed.as_str() == Some("") {
                continue; // an empty optional argument is no argument (e.g. `cluster`)
            }
            out.insert(name.clone(), typed);
        }
        if step.action == Action::SlackNotify {
            if let Some(name) = out.get("template").and_then(Value::as_str).map(str::to_string) {
                let source = catalog
                    .templates
                    .get(&name)
                    .ok_or_else(|| format!("template `{name}` is not loaded"))?;
                let text = self
                    .slack
                    .render_template(source, context)
                    .map_err(|e| format!("template `{name}`: {e}"))?;
                out.insert("text".into(), Value::String(text.trim_end().to_string()));
            }
        }
        Ok(Value::Object(out))
    }

    /// Renders a playbook's parameters for a runbook and checks them.
    pub fn call_params(
        &self,
        runbook: &Runbook,
        params: &Map<String, Value>,
        context: &Value,
    ) -> Result<Map<String, Value>, String> {
        let mut rendered = Map::new();
        for (name, value) in params {
            let v = render_value(&self.plain, value, context).map_err(|e| format!("parameter `{name}`: {e}"))?;
            // An empty rendering means the alert lacked the labels; leave it
            // out so the default (if any) applies and a required one is missing.
            if v.as_str() == Some("") {
                if runbook.param(name).is_some_and(|p| p.required) {
                    let written = value.as_str().unwrap_or_default();
                    return Err(format!(
                        "parameter `{name}` is empty for this alert: `{written}` found none of those labels"
                    ));
                }
                continue;
            }
            rendered.insert(name.clone(), v);
        }
        crate::runbook::params::check(runbook, &rendered)
    }
}

/// The incident as templates see it.
pub fn incident_value(inc: &Incident, settings: &Settings) -> Value {
    json!({
        "id": inc.id,
        "title": inc.title,
        "severity": inc.severity,
        "status": inc.status,
        "playbook": inc.playbook,
        "group": inc.group,
        "opened_at": inc.opened_at,
        "url": crate::incident::page_url(settings.external_url.as_deref(), inc.id),
    })
}

/// What `when`, `with:` templates and scripts see.
pub fn step_context(run: &Run, incident: &Value) -> Value {
    let steps: Map<String, Value> = run
        .steps
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                json!({"status": s.status.as_str(), "output": s.output, "error": s.error, "summary": s.summary, "attempts": s.attempts}),
            )
        })
        .collect();
    // A run without an alert (by hand, on schedule, or stored before runs
    // got one) sees an alert with no labels: a condition on a label is then
    // false, not an error.
    let alert = if run.alert.is_null() {
        super::start::empty_alert()
    } else {
        run.alert.clone()
    };
    json!({
        "params": run.params,
        "alert": alert,
        "incident": incident,
        "steps": steps,
        "run": {"id": run.id, "runbook": run.runbook, "dry_run": run.dry_run},
    })
}

/// Renders every template string in a value.
fn render_value(hb: &Handlebars<'static>, value: &Value, context: &Value) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) if template::is_template(s) => {
            Value::String(hb.render_template(s, context).map_err(|e| e.to_string())?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_value(hb, v, context))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(hb, v, context)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Turns a rendered value into the argument's type ("3" → 3 for integers).
fn coerce(kind: Option<ArgKind>, value: Value) -> Result<Value, String> {
    let Some(kind) = kind else { return Ok(value) };
    let text = value.as_str().map(str::trim);
    Ok(match (kind, text) {
        (ArgKind::Int, Some("")) => Value::String(String::new()),
        (ArgKind::Int, Some(t)) => json!(t
            .parse::<i64>()
            .map_err(|_| format!("rendered to {t:?}, which is not a whole number"))?),
        (ArgKind::Bool, Some(t)) => json!(t
            .parse::<bool>()
            .map_err(|_| format!("rendered to {t:?}, which is not true or false"))?),
        (ArgKind::Enum(words), Some(t)) if !words.contains(&t) => {
            return Err(format!("rendered to {t:?}; expected one of {}", words.join(", ")))
        }
        // A rendered list (`{{json params.approvers}}`) is a list; any other
        // text is one entry. Text is never split on commas: a label holding
        // `bob,role:operator` must not add approvers.
        (ArgKind::StrList, Some(t)) if t.starts_with('[') => match serde_json::from_str::<Vec<String>>(t) {
            Ok(list) => json!(list),
            Err(_) => return Err(format!("rendered to {t:?}, which is not a list of strings")),
        },
        (ArgKind::ScaleBy, Some(t)) if crate::actions::k8s::scale::parse_scale_by(t).is_none() => {
            return Err(format!("rendered to {t:?}; write +N, -N, xF or *F"))
        }
        (ArgKind::IntMap, _) => match value {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| {
                        let n = match &v {
                            Value::String(s) => s
                                .trim()
                                .parse::<i64>()
                                .map_err(|_| format!("`{k}` rendered to {s:?}, which is not a whole number"))?,
                            other => other.as_i64().ok_or_else(|| format!("`{k}` is not a whole number"))?,
                        };
                        Ok((k, json!(n)))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            other => other,
        },
        _ => value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_strings_become_the_declared_type() {
        assert_eq!(coerce(Some(ArgKind::Int), json!("12")).unwrap(), json!(12));
        assert!(coerce(Some(ArgKind::Int), json!("twelve"))
            .unwrap_err()
            .contains("not a whole number"));
        assert_eq!(
            coerce(Some(ArgKind::IntMap), json!({"a": "0", "b": 100})).unwrap(),
            json!({"a": 0, "b": 100})
        );
        assert!(coerce(Some(ArgKind::Enum(&["A", "CNAME"])), json!("MX")).is_err());
        assert_eq!(
            coerce(Some(ArgKind::StrList), json!(r#"["oncall","role:admin"]"#)).unwrap(),
            json!(["oncall", "role:admin"])
        );
        assert_eq!(
            coerce(Some(ArgKind::StrList), json!("bob,role:operator")).unwrap(),
            json!("bob,role:operator"),
            "text is one entry, never split"
        );
    }

    #[test]
    fn a_label_holding_a_template_stays_text() {
        let r = Renderer::new();
        let context = json!({"alert": {"labels": {"app": "{{params.secret}}"}}, "params": {"secret": "s3cr3t"}});
        let out = render_value(&r.plain, &json!("app={{alert.labels.app}}"), &context).unwrap();
        assert_eq!(out, json!("app={{params.secret}}"));
    }
}
