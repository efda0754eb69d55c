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

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use handlebars::Handlebars;
use serde_json::{json, Value};

use crate::catalog::Catalog;
use crate::ids::IncidentId;
use crate::incident::{Event, EventKind, Incident, NoteKind};
use crate::run::Run;
use crate::timing::Times;

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

/// How postmortems show times and links: `postmortem.timezone` and
/// `server.external_url`.
#[derive(Debug, Clone)]
pub struct Style {
    pub tz: Tz,
    pub external_url: Option<String>,
}

impl From<Tz> for Style {
    fn from(tz: Tz) -> Style {
        Style { tz, external_url: None }
    }
}

/// Renders postmortems from one catalog's templates in one style. The
/// templates are compiled once, when it is made; the server holds one.
pub struct Renderer {
    catalog: Arc<Catalog>,
    compiled: Compiled,
}

impl Renderer {
    pub fn new(catalog: Arc<Catalog>, style: impl Into<Style>) -> Result<Renderer, PostmortemError> {
        let compiled = compile(&catalog, style.into())?;
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
    style: impl Into<Style>,
    now: DateTime<Utc>,
) -> Result<String, PostmortemError> {
    render_with(catalog, &compile(catalog, style.into())?, incident, timeline, runs, now)
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
    let context = handlebars::Context::from(data(incident, timeline, runs, &compiled.style, now, compiled.parts));
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
    style: Style,
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

fn compile(catalog: &Catalog, style: Style) -> Result<Compiled, PostmortemError> {
    let mut registry = registry(style.tz);
    for (t, source) in &catalog.templates {
        registry
            .register_template_string(t, source)
            .map_err(|e| PostmortemError::Render {
                template: format!("templates/{t}.hbs"),
                reason: e.to_string(),
            })?;
    }
    Ok(Compiled {
        style,
        registry,
        parts: Parts::used_by(catalog),
    })
}

/// Everything a postmortem template can use (see README, "Postmortems");
/// the large values only where `parts` asks for them.
pub fn data(
    incident: &Incident,
    timeline: &[Event],
    runs: &[Run],
    style: &Style,
    now: DateTime<Utc>,
    parts: Parts,
) -> Value {
    let times = Times::of(incident, timeline);
    let tz = style.tz;
    let mut notes: BTreeMap<&str, Vec<Value>> = NoteKind::NAMES.iter().map(|k| (*k, Vec::new())).collect();
    for e in timeline {
        if let EventKind::Note {
            note,
            text,
            by,
            owner,
            due,
        } = &e.what
        {
            if let Some(list) = notes.get_mut(note.as_str()) {
                list.push(json!({"text": text, "by": by, "at": e.at, "owner": owner, "due": due}));
            }
        }
    }
    let clock = |at: DateTime<Utc>| markdown::stamp(at, tz);
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
        markdown::runs(runs, style.external_url.as_deref())
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
                let took = r.finished_at.map(|end| (end - r.created_at).num_seconds());
                let url = style
                    .external_url
                    .as_deref()
                    .map(|u| format!("{}{}", u.trim_end_matches('/'), crate::incident::run_page_path(r.id)));
                json!({"id": r.id, "url": url, "runbook": r.runbook, "status": r.status.as_str(), "dry_run": r.dry_run, "by": r.by,
                       "started_at": r.created_at, "finished_at": r.finished_at, "reason": r.reason,
                       "duration": {"secs": took, "human": took.map(human_duration)}, "steps": steps})
            })
            .collect()
    } else {
        Vec::new()
    };
    let alerts: Vec<Value> = incident.alerts.iter().map(alert_value).collect();
    // What `evidence: true` steps saw, one escaped line each.
    let evidence_markdown = timeline
        .iter()
        .filter(|e| matches!(e.what, EventKind::Evidence { .. }))
        .map(|e| format!("- {} — {}", clock(e.at), escape_markdown(&e.what.describe())))
        .collect::<Vec<_>>()
        .join("\n");
    let scope = scope(incident);
    let responders = incident.responders.join(", ");
    json!({
        "incident": {
            "id": incident.id, "title": incident.title, "severity": incident.severity, "status": incident.status,
            "playbook": incident.playbook, "group": incident.group,
            "url": crate::incident::page_url(style.external_url.as_deref(), incident.id),
            "commander": incident.commander, "responders": incident.responders, "responders_text": responders,
            "acknowledged_at": incident.acknowledged_at, "acknowledged_by": incident.acknowledged_by,
            "started_at": times.started, "ended_at": times.ended,
            "opened_at": incident.opened_at, "detected_at": incident.opened_at, "first_action_at": times.first_action,
            "mitigated_at": times.mitigated, "resolved_at": incident.resolved_at,
            "durations": times.spans(),
            "severity_history": incident.severity_history,
            "scope": scope,
            "timeline": events, "runs": runs, "alerts": alerts, "notes": notes,
            "action_items": notes.get("action_item"),
            "timeline_markdown": timeline_markdown, "runs_markdown": runs_markdown,
            "evidence_markdown": evidence_markdown,
        },
        "timezone": tz.name(),
        "generated_at": now,
    })
}

/// The services, regions and namespaces the alerts name.
fn scope(incident: &Incident) -> Value {
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
    let list = |k: &str| {
        scope
            .get(k)
            .map(|s| s.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let text = [list("services"), list("regions"), list("namespaces")]
        .concat()
        .join(", ");
    json!({"services": list("services"), "regions": list("regions"), "namespaces": list("namespaces"), "text": text})
}

/// One alert for templates. Its links are given only when they are
/// http(s) URLs, percent-encoded so they cannot end a markdown link early;
/// everything else is text (escaped on the way out).
fn alert_value(a: &crate::incident::IncidentAlert) -> Value {
    let labels: Vec<Value> = a.labels.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    let labels_text = a
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let runbook_url = a.annotations.get("runbook_url").and_then(|u| safe_link(u));
    let generator_url = a.generator_url.as_deref().and_then(safe_link);
    let extras = a.extras.as_deref().cloned().unwrap_or_default();
    let link = |u: &Option<String>| u.as_deref().and_then(safe_link);
    let (dashboard_url, panel_url, silence_url) = (
        link(&extras.dashboard_url),
        link(&extras.panel_url),
        link(&extras.silence_url),
    );
    let links: Vec<String> = [
        ("runbook", &runbook_url),
        ("source", &generator_url),
        ("dashboard", &dashboard_url),
        ("panel", &panel_url),
        ("silence", &silence_url),
    ]
    .into_iter()
    .filter_map(|(name, url)| url.as_ref().map(|u| format!("[{name}]({u})")))
    .collect();
    // What the rule saw: Grafana's `values` (by query), else its `valueString`.
    let values_text = if extras.values.is_empty() {
        extras.value_string.clone().unwrap_or_default()
    } else {
        extras
            .values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    json!({"fingerprint": a.fingerprint, "alertname": a.labels.get("alertname"), "status": a.status.as_str(),
           "starts_at": a.starts_at, "ends_at": a.ends_at,
           "summary": a.annotations.get("summary"), "description": a.annotations.get("description"),
           "labels": labels, "labels_text": labels_text, "repeats": a.repeats,
           "runbook_url": runbook_url, "generator_url": generator_url, "dashboard_url": dashboard_url,
           "panel_url": panel_url, "silence_url": silence_url, "values_text": values_text,
           "links_markdown": links.join(" · ")})
}

/// `url` when it is an absolute http(s) URL, with every character that
/// could end or break a markdown link (`(`, `)`, `<`, `>`, spaces, quotes)
/// percent-encoded; else nothing (`javascript:`, `data:`, relative paths).
pub fn safe_link(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url.trim()).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return None;
    }
    let mut out = String::with_capacity(url.len());
    for c in parsed.as_str().chars() {
        match c {
            '(' => out.push_str("%28"),
            ')' => out.push_str("%29"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            '"' => out.push_str("%22"),
            '\'' => out.push_str("%27"),
            '`' => out.push_str("%60"),
            '[' => out.push_str("%5B"),
            ']' => out.push_str("%5D"),
            '*' => out.push_str("%2A"),
            '_' => out.push_str("%5F"),
            '\\' => out.push_str("%5C"),
            c if c.is_whitespace() || c.is_control() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

/// The timeline and the runs as ready markdown, for the shipped templates:
/// a 5,000-event timeline renders here in a few milliseconds, against
/// tens through Handlebars. Every value is escaped as `{{value}}` would be.
mod markdown {
    use std::collections::HashMap;
    use std::fmt::Write;

    use chrono::{DateTime, Datelike, Timelike, Utc};
    use chrono_tz::{OffsetName, Tz};

    use super::{escape_markdown, human_duration};
    use crate::incident::{Event, EventKind};
    use crate::run::Run;

    /// `2023-12-01 22:30:05 CST`, in `tz`. Formatted by hand:
    /// `format(...)` parses its pattern for every event.
    pub fn stamp(at: DateTime<Utc>, tz: Tz) -> String {
        let local = at.with_timezone(&tz);
        let zone = local.offset().abbreviation().unwrap_or(tz.name());
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {zone}",
            local.year(),
            local.month(),
            local.day(),
            local.hour(),
            local.minute(),
            local.second()
        )
    }

    /// `- 2023-12-01 22:30:05 CST — what happened`, one line per event; a
    /// step is one line, where it began, saying how it ended (its last
    /// event: outcome, attempts, duration).
    pub fn timeline(events: &[Event], clock: impl Fn(DateTime<Utc>) -> String) -> String {
        let mut last_of_step: HashMap<(crate::ids::RunId, &str), usize> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            if let EventKind::Step { run, step, .. } = &e.what {
                last_of_step.insert((*run, step.as_str()), i);
            }
        }
        let mut shown: HashMap<(crate::ids::RunId, &str), ()> = HashMap::new();
        let mut out = String::with_capacity(events.len() * 96);
        for e in events {
            let what = match &e.what {
                EventKind::Step { run, step, .. } => {
                    let key = (*run, step.as_str());
                    if shown.insert(key, ()).is_some() {
                        continue;
                    }
                    &events[last_of_step[&key]].what
                }
                other => other,
            };
            if !out.is_empty() {
                out.push('\n');
            }
            let _ = write!(out, "- {} — {}", clock(e.at), escape_markdown(&what.describe()));
        }
        out
    }

    /// Per run a heading (id, runbook, status, how long) and a table of
    /// its steps.
    /// Each run's steps as a table; with a base URL, the run's id links to
    /// its page in the web view.
    pub fn runs(runs: &[Run], base: Option<&str>) -> String {
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
                "### {} `{}`: {}{}, {}\n\n| step | action | result | attempts | time | detail |\n|---|---|---|---|---|---|",
                match base {
                    Some(base) => format!(
                        "[{}]({}{})",
                        escape_markdown(&r.id.to_string()),
                        base.trim_end_matches('/'),
                        crate::incident::run_page_path(r.id)
                    ),
                    None => escape_markdown(&r.id.to_string()),
                },
                escape_markdown(&r.runbook),
                escape_markdown(r.status.as_str()),
                if r.dry_run { " (dry run)" } else { "" },
                escape_markdown(&took),
            );
            for s in &r.steps {
                let time = match s.duration_ms() {
                    Some(ms) if ms != 0 => crate::incident::step_time(ms),
                    _ => "—".to_string(),
                };
                let detail = match s.error.as_deref() {
                    Some(error) if !error.is_empty() => error,
                    _ => s.summary.as_deref().unwrap_or(""),
                };
                let _ = write!(
                    out,
                    "\n| {} | {} | {} | {} | {} | {} |",
                    escape_markdown(&s.id),
                    escape_markdown(&s.action),
                    escape_markdown(s.status.as_str()),
                    s.attempts,
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
