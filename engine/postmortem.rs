//! Postmortems: an incident, its timeline, runs, alerts and notes rendered
//! to markdown through the Handlebars templates in `templates/`
//! (`postmortem.P0.md.hbs` wins over `postmortem.md.hbs` for a P0).
//!
//! Every `{{value}}` is markdown-escaped on the way out, so an alert label
//! cannot add headings, links or tables; rendering is one pass, so a label
//! holding `{{...}}` stays text. Notes people wrote are markdown on purpose
//! and are printed with `{{{...}}}`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use handlebars::Handlebars;
use serde_json::{json, Value};

use crate::catalog::Catalog;
use crate::ids::IncidentId;
use crate::incident::{Event, EventKind, Incident, NoteKind};
use crate::run::{Run, StepStatus};

/// Why a postmortem could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum PostmortemError {
    /// Neither `postmortem.<severity>.md.hbs` nor `postmortem.md.hbs` exists.
    #[error("no postmortem template: add templates/postmortem.md.hbs")]
    NoTemplate,
    #[error("rendering {template}: {reason}")]
    Render { template: String, reason: String },
}

pub use crate::template::{escape_markdown, human_duration};

/// The registry for postmortems: laojun's helpers with `date` in the
/// configured time zone, and markdown escaping on every `{{value}}`.
pub fn registry(tz: Tz) -> Handlebars<'static> {
    let mut hb = crate::template::registry();
    hb.register_escape_fn(escape_markdown);
    hb.register_helper("date", crate::template::date_in(tz));
    hb
}

/// The template for an incident of this severity.
pub fn template_for<'a>(catalog: &'a Catalog, severity: &str) -> Option<(String, &'a String)> {
    [format!("postmortem.{severity}.md"), "postmortem.md".to_string()]
        .into_iter()
        .find_map(|name| catalog.templates.get(&name).map(|t| (name, t)))
}

/// Renders postmortems from one catalog's templates in one time zone. The
/// templates are compiled once, when it is made; the server holds one.
pub struct Renderer {
    catalog: Arc<Catalog>,
    compiled: Compiled,
}

impl Renderer {
    pub fn new(catalog: Arc<Catalog>, tz: Tz) -> Result<Renderer, PostmortemError> {
        let compiled = compile(&catalog, tz)?;
        Ok(Renderer { catalog, compiled })
    }

    /// Renders the postmortem of an incident.
    pub fn render(
        &self,
        incident: &Incident,
        timeline: &[Event],
        runs: &[Run],
        now: DateTime<Utc>,
    ) -> Result<String, PostmortemError> {
        render_with(&self.catalog, &self.compiled, incident, timeline, runs, now)
    }

    /// Renders the postmortem of a stored incident (with its timeline and runs).
    pub fn render_stored(&self, store: &dyn crate::store::Store, id: IncidentId) -> anyhow::Result<String> {
        let incident = store.incident(id)?.ok_or_else(|| anyhow::anyhow!("no incident {id}"))?;
        let timeline = store.timeline(id)?;
        let mut runs = Vec::new();
        for run_id in &incident.runs {
            runs.extend(store.run(*run_id)?);
        }
        Ok(self.render(&incident, &timeline, &runs, Utc::now())?)
    }
}

/// Renders one postmortem, compiling the templates for it (a `Renderer`
/// keeps them compiled).
pub fn render(
    catalog: &Catalog,
    incident: &Incident,
    timeline: &[Event],
    runs: &[Run],
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<String, PostmortemError> {
    render_with(catalog, &compile(catalog, tz)?, incident, timeline, runs, now)
}

/// Renders with templates already compiled for `catalog`.
fn render_with(
    catalog: &Catalog,
    compiled: &Compiled,
    incident: &Incident,
    timeline: &[Event],
    runs: &[Run],
    now: DateTime<Utc>,
) -> Result<String, PostmortemError> {
    let (name, _) = template_for(catalog, incident.severity.as_str()).ok_or(PostmortemError::NoTemplate)?;
    // `from` takes the data as is; `render` would copy all of it first.
    let context = handlebars::Context::from(data(incident, timeline, runs, compiled.tz, now, compiled.parts));
    compiled
        .registry
        .render_with_context(&name, &context)
        .map_err(|e| PostmortemError::Render {
            template: format!("templates/{name}.hbs"),
            reason: e.to_string(),
        })
}

/// The postmortem registry with every catalog template compiled, so
/// postmortems can use partials (`{{> postmortem-summary}}`).
#[derive(Debug)]
struct Compiled {
    tz: Tz,
    registry: Handlebars<'static>,
    parts: Parts,
}

/// Which of the large values the templates read. Building `timeline` and
/// `runs` as JSON for thousands of events costs more than rendering them,
/// so `data` builds only the ones some template names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parts {
    pub timeline: bool,
    pub runs: bool,
    pub timeline_markdown: bool,
    pub runs_markdown: bool,
}

impl Parts {
    /// The values named inside `{{ }}` anywhere in the catalog's templates
    /// (partials included). It errs towards building too much, never too
    /// little: a name mentioned in any template counts, and a template
    /// that could reach the arrays without naming them (`{{json incident}}`,
    /// `{{#each incident}}`, a bare `this`, `@root` or `..`, `lookup`) gets
    /// everything.
    pub fn used_by(catalog: &Catalog) -> Parts {
        let mut names = BTreeSet::new();
        let mut whole = false;
        for source in catalog.templates.values() {
            for inside in mustaches(source) {
                whole |= inside.contains("..");
                let words = inside.split(|c: char| !(c.is_alphanumeric() || c == '_'));
                for word in words.filter(|w| !w.is_empty()) {
                    let start = word.as_ptr() as usize - inside.as_ptr() as usize;
                    let path_goes_on = inside[start + word.len()..].starts_with('.');
                    let after_at = inside[..start].ends_with('@');
                    whole |= matches!(word, "json" | "lookup")
                        || (matches!(word, "incident" | "this") && !path_goes_on)
                        || (word == "root" && after_at && !path_goes_on);
                    names.insert(word);
                }
            }
        }
        let named = |name: &str| whole || names.contains(name);
        Parts {
            timeline: named("timeline"),
            runs: named("runs"),
            timeline_markdown: named("timeline_markdown"),
            runs_markdown: named("runs_markdown"),
        }
    }
}

/// The text inside each `{{ }}` of a template; a `}}` inside a quoted
/// string does not end it.
fn mustaches(source: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        let inside = &rest[open + 2..];
        let mut quote = None;
        let mut end = inside.len();
        let bytes = inside.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            match (quote, b) {
                (Some(q), _) if b == q => quote = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'') => quote = Some(b),
                (None, b'}') if bytes.get(i + 1) == Some(&b'}') => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        found.push(&inside[..end]);
        rest = &inside[(end + 2).min(inside.len())..];
    }
    found
}

fn compile(catalog: &Catalog, tz: Tz) -> Result<Compiled, PostmortemError> {
    let mut registry = registry(tz);
    for (t, source) in &catalog.templates {
        registry
            .register_template_string(t, source)
            .map_err(|e| PostmortemError::Render {
                template: format!("templates/{t}.hbs"),
                reason: e.to_string(),
            })?;
    }
    Ok(Compiled {
        tz,
        registry,
        parts: Parts::used_by(catalog),
    })
}

fn span(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Value {
    match (from, to) {
        (Some(a), Some(b)) => {
            let secs = (b - a).num_seconds();
            json!({"secs": secs, "human": human_duration(secs)})
        }
        _ => json!({"secs": null, "human": null}),
    }
}

/// Everything a postmortem template can use (see README, "Postmortems");
/// the large values only where `parts` asks for them.
pub fn data(incident: &Incident, timeline: &[Event], runs: &[Run], tz: Tz, now: DateTime<Utc>, parts: Parts) -> Value {
    let detected = incident.alerts.iter().map(|a| a.starts_at).min();
    let first_action = timeline
        .iter()
        .find(|e| {
            matches!(
                &e.what,
                EventKind::Step {
                    status: StepStatus::Running,
                    ..
                }
            )
        })
        .map(|e| e.at);
    let mitigated = incident.mitigated_at.or(incident.resolved_at);
    let mut scope: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for a in &incident.alerts {
        for (key, labels) in [
            ("services", &["service", "app", "job", "deployment"][..]),
            ("regions", &["region"][..]),
            ("namespaces", &["namespace"][..]),
        ] {
            if let Some(v) = labels.iter().find_map(|l| a.labels.get(*l)) {
                scope.entry(key).or_default().insert(v.clone());
            }
        }
    }
    let mut notes: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for kind in NoteKind::NAMES {
        notes.insert(kind, Vec::new());
    }
    for e in timeline {
        if let EventKind::Note { note, text, by } = &e.what {
            let key = serde_json::to_value(note)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            if let Some(list) = notes.iter_mut().find(|(k, _)| **k == key).map(|(_, v)| v) {
                list.push(json!({"text": text, "by": by, "at": e.at}));
            }
        }
    }
    let clock = |at: DateTime<Utc>| {
        let local = at.with_timezone(&tz);
        // Formatted by hand: `format("%H:%M:%S")` parses its pattern for every event.
        format!("{:02}:{:02}:{:02}", local.hour(), local.minute(), local.second())
    };
    let events: Vec<Value> = if parts.timeline {
        timeline
            .iter()
            .map(|e| json!({"at": e.at, "time": clock(e.at), "kind": e.what.kind_name(), "text": e.what.describe()}))
            .collect()
    } else {
        Vec::new()
    };
    let timeline_markdown = if parts.timeline_markdown {
        markdown::timeline(timeline, clock)
    } else {
        String::new()
    };
    let runs_markdown = if parts.runs_markdown {
        markdown::runs(runs)
    } else {
        String::new()
    };
    let runs: Vec<Value> = if parts.runs {
        runs.iter()
            .map(|r| {
                let steps: Vec<Value> = r
                    .steps
                    .iter()
                    .map(|s| json!({"id": s.id, "action": s.action, "status": s.status.as_str(), "attempts": s.attempts, "duration_ms": s.duration_ms(), "summary": s.summary, "error": s.error}))
                    .collect();
                json!({"id": r.id, "runbook": r.runbook, "status": r.status.as_str(), "dry_run": r.dry_run, "by": r.by,
                       "started_at": r.created_at, "finished_at": r.finished_at, "reason": r.reason,
                       "duration": span(Some(r.created_at), r.finished_at), "steps": steps})
            })
            .collect()
    } else {
        Vec::new()
    };
    let alerts: Vec<Value> = incident
        .alerts
        .iter()
        .map(|a| {
            let labels: Vec<Value> = a.labels.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
            json!({"fingerprint": a.fingerprint, "alertname": a.labels.get("alertname"), "status": a.status.as_str(),
                   "starts_at": a.starts_at, "ends_at": a.ends_at, "summary": a.annotations.get("summary"), "labels": labels, "repeats": a.repeats})
        })
        .collect();
    let list = |k: &str| {
        scope
            .get(k)
            .map(|s| s.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let scope_text = [list("services"), list("regions"), list("namespaces")]
        .concat()
        .join(", ");
    json!({
        "incident": {
            "id": incident.id, "title": incident.title, "severity": incident.severity, "status": incident.status,
            "playbook": incident.playbook, "group": incident.group,
            "opened_at": incident.opened_at, "detected_at": detected, "first_action_at": first_action,
            "mitigated_at": incident.mitigated_at, "resolved_at": incident.resolved_at,
            "durations": {
                "to_first_action": span(detected.or(Some(incident.opened_at)), first_action),
                "to_mitigate": span(detected.or(Some(incident.opened_at)), mitigated),
                "to_resolve": span(detected.or(Some(incident.opened_at)), incident.resolved_at),
                "open": span(Some(incident.opened_at), incident.resolved_at),
            },
            "scope": {"services": list("services"), "regions": list("regions"), "namespaces": list("namespaces"), "text": scope_text},
            "timeline": events, "runs": runs, "alerts": alerts, "notes": notes,
            "timeline_markdown": timeline_markdown, "runs_markdown": runs_markdown,
        },
        "timezone": tz.name(),
        "generated_at": now,
    })
}

/// The timeline and the runs as ready markdown, for the shipped templates:
/// a 5,000-event timeline renders here in a few milliseconds, against
/// tens through Handlebars. Every value is escaped as `{{value}}` would be.
mod markdown {
    use std::fmt::Write;

    use chrono::{DateTime, Utc};

    use super::{escape_markdown, human_duration};
    use crate::incident::Event;
    use crate::run::Run;

    /// `- 12:00:05 - what happened`, one line per event.
    pub fn timeline(events: &[Event], clock: impl Fn(DateTime<Utc>) -> String) -> String {
        let mut out = String::with_capacity(events.len() * 96);
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = write!(out, "- {} - {}", clock(e.at), escape_markdown(&e.what.describe()));
        }
        out
    }

    /// Per run a heading (id, runbook, status, how long) and a table of
    /// its steps.
    pub fn runs(runs: &[Run]) -> String {
        let mut out = String::with_capacity(runs.len() * 400);
        for (i, r) in runs.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let took = r
                .finished_at
                .map(|end| human_duration((end - r.created_at).num_seconds()))
                .unwrap_or_else(|| "still running".to_string());
            let _ = write!(
                out,
                "### {} `{}`: {}{}, {}\n\n| step | action | result | time | detail |\n|---|---|---|---|---|",
                escape_markdown(&r.id.to_string()),
                escape_markdown(&r.runbook),
                escape_markdown(r.status.as_str()),
                if r.dry_run { " (dry run)" } else { "" },
                escape_markdown(&took),
            );
            for s in &r.steps {
                let time = match s.duration_ms() {
                    Some(ms) if ms != 0 => format!("{ms} ms"),
                    _ => "—".to_string(),
                };
                let detail = match s.error.as_deref() {
                    Some(error) if !error.is_empty() => error,
                    _ => s.summary.as_deref().unwrap_or(""),
                };
                let _ = write!(
                    out,
                    "\n| {} | {} | {} | {} | {} |",
                    escape_markdown(&s.id),
                    escape_markdown(&s.action),
                    escape_markdown(s.status.as_str()),
                    time,
                    escape_markdown(detail),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human_duration(12), "12s");
        assert_eq!(human_duration(245), "4m 05s");
        assert_eq!(human_duration(4500), "1h 15m");
        assert_eq!(human_duration(90_000), "1d 1h 00m");
    }

    /// Every value, whatever the templates read.
    const ALL: Parts = Parts {
        timeline: true,
        runs: true,
        timeline_markdown: true,
        runs_markdown: true,
    };

    fn parts_for(templates: &[&str]) -> Parts {
        let mut catalog = Catalog::default();
        for (i, t) in templates.iter().enumerate() {
            catalog.templates.insert(format!("t{i}"), t.to_string());
        }
        Parts::used_by(&catalog)
    }

    #[test]
    fn the_large_values_are_built_for_any_template_that_could_reach_them() {
        let none = Parts {
            timeline: false,
            runs: false,
            timeline_markdown: false,
            runs_markdown: false,
        };
        assert_eq!(
            parts_for(&["# {{incident.title}} {{#each incident.alerts}}{{this.status}}{{/each}}"]),
            none
        );
        assert_eq!(
            parts_for(&[
                "{{{incident.timeline_markdown}}}",
                "{{#if incident.runs_markdown}}x{{/if}}"
            ]),
            Parts {
                timeline_markdown: true,
                runs_markdown: true,
                ..none
            }
        );
        assert_eq!(
            parts_for(&["{{#with incident}}{{#each timeline}}{{text}}{{/each}}{{/with}}"]),
            ALL,
            "incident without a path reaches everything"
        );
        for reaches in [
            "{{json incident}}",
            "{{#each incident}}{{@key}}{{/each}}",
            "{{#each incident.alerts}}{{json ../this}}{{/each}}",
            "{{#each this}}{{/each}}",
            "{{json @root}}",
            "{{lookup incident \"runs\"}}",
        ] {
            assert_eq!(parts_for(&[reaches]), ALL, "{reaches}");
        }
        // A `}}` in a string does not end the expression early.
        assert!(parts_for(&["{{coalesce \"}}\" incident.timeline}}"]).timeline);
        assert!(parts_for(&["{{~#each incident.runs~}}{{/each}}"]).runs);
    }

    #[test]
    fn markdown_in_values_is_escaped_and_stays_on_one_line() {
        assert_eq!(
            escape_markdown("# boom\n[x](http://evil)"),
            "\\# boom \\[x\\](http://evil)"
        );
        assert_eq!(escape_markdown("a|b <i>"), "a\\|b \\<i\\>");
        assert_eq!(escape_markdown("- item"), "\\- item");
        assert_eq!(escape_markdown("12. item"), "12\\. item");
        assert_eq!(escape_markdown("core-services 1.2"), "core-services 1.2");
    }
}
