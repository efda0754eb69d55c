//! Text for people: the incident table, one incident, one run; and JSON
//! for scripts (`--output json`).

use serde::Serialize;

use crate::client::IncidentDetail;
use crate::incident::Incident;
use crate::run::Run;

/// Pretty JSON with a final newline; keys in alphabetical order, as
/// `serde_json::Value` keeps them.
pub fn json(value: &impl Serialize) -> String {
    let value = serde_json::to_value(value).unwrap_or_default();
    format!("{}\n", serde_json::to_string_pretty(&value).unwrap_or_default())
}

pub fn incident_table(incidents: &[Incident]) -> String {
    if incidents.is_empty() {
        return "no incidents\n".into();
    }
    let rows: Vec<[String; 6]> = incidents
        .iter()
        .map(|i| {
            [
                i.id.to_string(),
                i.severity.to_string(),
                i.status.as_str().to_string(),
                i.opened_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                i.alerts.len().to_string(),
                i.title.clone(),
            ]
        })
        .collect();
    let header = ["ID", "SEV", "STATUS", "OPENED (UTC)", "ALERTS", "TITLE"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[&str], out: &mut String| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push('\n');
    };
    line(&header, &mut out);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells, &mut out);
    }
    out
}

/// An incident with its alerts and timeline.
pub fn incident(detail: &IncidentDetail) -> String {
    let (incident, timeline) = (&detail.incident, &detail.timeline);
    let mut out = format!(
        "{}  {}  {}\n{}\nplaybook: {}\nopened:   {}\n",
        incident.id,
        incident.severity,
        incident.status.as_str(),
        incident.title,
        incident.playbook,
        incident.opened_at.to_rfc3339()
    );
    if let Some(at) = incident.resolved_at {
        out.push_str(&format!("resolved: {}\n", at.to_rfc3339()));
    }
    out.push_str(&format!("\nalerts ({}):\n", incident.alerts.len()));
    for a in &incident.alerts {
        let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let repeats = if a.repeats > 0 {
            format!(", sent {} more times", a.repeats)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {} {} since {}{repeats}\n    {{{}}}\n",
            a.fingerprint,
            a.status.as_str(),
            a.starts_at.to_rfc3339(),
            labels.join(", ")
        ));
    }
    out.push_str(&format!("\ntimeline ({} events):\n", timeline.len()));
    for e in timeline {
        out.push_str(&format!(
            "  {}  {}\n",
            e.at.format("%Y-%m-%d %H:%M:%S%.3f"),
            e.what.describe()
        ));
    }
    out
}

/// A run for people: its status and one line per step.
pub fn run(run: &Run) -> String {
    let mut out = format!(
        "{} `{}` {}{}{}\n",
        run.id,
        run.runbook,
        run.status.as_str(),
        if run.dry_run { " (dry run)" } else { "" },
        run.incident.as_ref().map(|i| format!(" for {i}")).unwrap_or_default()
    );
    if let Some(r) = &run.reason {
        out.push_str(&format!("  reason: {r}\n"));
    }
    for s in &run.steps {
        let timing = s.duration_ms().map(|ms| format!(" {ms} ms")).unwrap_or_default();
        let attempts = if s.attempts > 1 {
            format!(" ({} attempts)", s.attempts)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {:<20} {:<18} {:<17}{timing}{attempts}\n",
            s.id,
            s.action,
            s.status.as_str()
        ));
        if let Some(summary) = &s.summary {
            out.push_str(&format!("      {summary}\n"));
        }
        if let Some(ask) = &s.approval {
            out.push_str(&format!(
                "      asks {}: {}\n      until {}; decide with `laojun approve {}` or `laojun deny {}`\n",
                who(&ask.who),
                ask.message,
                ask.expires_at.format("%Y-%m-%d %H:%M:%S UTC"),
                run.id,
                run.id
            ));
        }
        if let Some(e) = &s.error {
            out.push_str(&format!("      error: {e}\n"));
        }
    }
    out
}

/// Who an approval asks, in words.
fn who(list: &[String]) -> String {
    if list.is_empty() {
        "any operator or admin".to_string()
    } else {
        format!("{} (or an admin)", list.join(", "))
    }
}

/// Runs as a table, newest first.
pub fn runs(runs: &[Run]) -> String {
    if runs.is_empty() {
        return "no runs\n".into();
    }
    let mut out = format!(
        "{:<9} {:<26} {:<18} {:<8} {:<19} {}\n",
        "RUN", "RUNBOOK", "STATUS", "INCIDENT", "STARTED", "BY"
    );
    for r in runs {
        out.push_str(&format!(
            "{:<9} {:<26} {:<18} {:<8} {:<19} {}\n",
            r.id.to_string(),
            r.runbook,
            format!("{}{}", r.status.as_str(), if r.dry_run { " (dry)" } else { "" }),
            r.incident.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            r.created_at.format("%Y-%m-%d %H:%M:%S"),
            r.by
        ));
    }
    out
}

/// Waiting approvals, oldest first, each with how to decide it.
pub fn approvals(list: &[crate::run::PendingApproval]) -> String {
    if list.is_empty() {
        return "no approval is waiting\n".into();
    }
    let mut out = String::new();
    for a in list {
        out.push_str(&format!(
            "{} step `{}` of `{}`{} asks {}: {}\n  requested by {} at {}, until {}; `laojun approve {}` or `laojun deny {}`\n",
            a.run,
            a.step,
            a.runbook,
            a.incident.map(|i| format!(" ({i})")).unwrap_or_default(),
            who(&a.who),
            a.message,
            a.requested_by,
            a.requested_at.format("%Y-%m-%d %H:%M:%S UTC"),
            a.expires_at.format("%Y-%m-%d %H:%M:%S UTC"),
            a.run,
            a.run
        ));
    }
    out
}
