//! A case's expectations against what happened: each one that does not
//! hold becomes a failure naming the expectation (at its `path:line:col`),
//! what it wanted and what happened instead.

use std::path::PathBuf;

use fake_kube::FakeKube;

use super::case::{Case, Expect};
use super::world::{glob, Request};
use crate::incident::{Event, Incident};
use crate::run::{Run, StepStatus};
use crate::yaml::Pos;

/// One expectation that did not hold, or a case that could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub file: PathBuf,
    pub pos: Pos,
    pub expected: String,
    pub got: String,
}

impl Failure {
    pub fn setup(case: &Case, why: String) -> Failure {
        Failure {
            file: case.file.clone(),
            pos: case.pos,
            expected: "the case to run".into(),
            got: why,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: expected {}; got {}",
            self.file.display(),
            self.pos,
            self.expected,
            self.got
        )
    }
}

/// What a case left behind.
pub struct Seen<'a> {
    pub incident: Option<Incident>,
    pub timeline: Vec<Event>,
    pub runs: Vec<Run>,
    pub requests: Vec<Request>,
    pub kube: &'a FakeKube,
}

impl Seen<'_> {
    /// The timeline (or, without an incident, the runs' steps) as lines.
    pub fn story(&self) -> Vec<String> {
        if !self.timeline.is_empty() {
            return self
                .timeline
                .iter()
                .map(|e| format!("{} {}", e.at.format("%H:%M:%S%.3f"), e.what.describe()))
                .collect();
        }
        let mut lines = Vec::new();
        for run in &self.runs {
            lines.push(format!(
                "{} `{}` {}{}",
                run.id,
                run.runbook,
                run.status.as_str(),
                reason(run)
            ));
            for s in &run.steps {
                let detail = s.error.as_deref().or(s.summary.as_deref()).unwrap_or_default();
                lines.push(format!("  {} ({}) {} {detail}", s.id, s.action, s.status.as_str()));
            }
        }
        lines
    }

    fn slack_texts(&self) -> Vec<String> {
        self.requests.iter().filter_map(Request::slack_text).collect()
    }
}

fn reason(run: &Run) -> String {
    run.reason.as_deref().map_or(String::new(), |r| format!(": {r}"))
}

/// Every expectation of `case` that does not hold.
pub fn all(case: &Case, seen: &Seen<'_>) -> Vec<Failure> {
    case.expect
        .iter()
        .filter_map(|e| {
            one(&e.what, seen).err().map(|(expected, got)| Failure {
                file: case.file.clone(),
                pos: e.pos,
                expected,
                got,
            })
        })
        .collect()
}

type Verdict = Result<(), (String, String)>;

fn one(expect: &Expect, seen: &Seen<'_>) -> Verdict {
    match expect {
        Expect::IncidentSeverity(want) => {
            let got = seen.incident.as_ref().map(|i| i.severity.as_str().to_string());
            compare(
                format!("incident severity {want}"),
                want,
                got.as_deref().unwrap_or("no incident"),
            )
        }
        Expect::IncidentStatus(want) => {
            let got = seen.incident.as_ref().map_or("none", |i| i.status.as_str());
            compare(format!("incident status {want}"), want, got)
        }
        Expect::Run { runbook, status } => {
            let of_runbook: Vec<&Run> = seen.runs.iter().filter(|r| &r.runbook == runbook).collect();
            let expected = format!("a run of `{runbook}` that {status}");
            if of_runbook.iter().any(|r| r.status.as_str() == status) {
                return Ok(());
            }
            let got = if of_runbook.is_empty() {
                let ran: Vec<String> = seen.runs.iter().map(|r| format!("`{}`", r.runbook)).collect();
                format!(
                    "no run of it (runs: {})",
                    if ran.is_empty() { "none".into() } else { ran.join(", ") }
                )
            } else {
                of_runbook
                    .iter()
                    .map(|r| format!("{} {}{}", r.id, r.status.as_str(), reason(r)))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            Err((expected, got))
        }
        Expect::Step { id, status } => {
            let expected = format!("step `{id}` {status}");
            let found: Vec<(&Run, &crate::run::StepRecord)> = seen
                .runs
                .iter()
                .flat_map(|r| r.steps.iter().filter(|s| &s.id == id).map(move |s| (r, s)))
                .collect();
            if found.iter().any(|(_, s)| s.status.as_str() == status) {
                return Ok(());
            }
            if found.is_empty() {
                let ran: Vec<&str> = seen
                    .runs
                    .iter()
                    .flat_map(|r| r.steps.iter().map(|s| s.id.as_str()))
                    .collect();
                let near =
                    crate::diag::did_you_mean(id, &ran).map_or(String::new(), |n| format!(" (did you mean `{n}`?)"));
                return Err((
                    expected,
                    format!(
                        "no run had a step `{id}`{near}; the steps were {}",
                        crate::diag::one_of(&ran)
                    ),
                ));
            }
            let got = found
                .iter()
                .map(|(r, s)| {
                    let detail = s.error.as_deref().or(s.summary.as_deref()).unwrap_or_default();
                    format!("{} {} ({} attempts): {detail}", r.id, s.status.as_str(), s.attempts)
                })
                .collect::<Vec<_>>()
                .join("; ");
            Err((expected, got))
        }
        Expect::Deployment {
            namespace,
            name,
            image,
            replicas,
        } => {
            let Some(d) = seen.kube.get("deployments", namespace, name) else {
                return Err((format!("deployment {namespace}/{name}"), "it does not exist".into()));
            };
            if let Some(image) = image {
                let got = d["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default();
                compare(format!("deployment {namespace}/{name} on image {image}"), image, got)?;
            }
            if let Some(replicas) = replicas {
                let got = d["spec"]["replicas"].as_i64().unwrap_or_default().to_string();
                compare(
                    format!("deployment {namespace}/{name} at {replicas} replicas"),
                    &replicas.to_string(),
                    &got,
                )?;
            }
            Ok(())
        }
        Expect::Service {
            namespace,
            name,
            selector,
        } => {
            let Some(s) = seen.kube.get("services", namespace, name) else {
                return Err((format!("service {namespace}/{name}"), "it does not exist".into()));
            };
            let got = &s["spec"]["selector"];
            let wanted: serde_json::Map<String, serde_json::Value> = selector
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            if got == &serde_json::Value::Object(wanted.clone()) {
                Ok(())
            } else {
                Err((
                    format!(
                        "service {namespace}/{name} selecting {}",
                        serde_json::Value::Object(wanted)
                    ),
                    format!("it selects {got}"),
                ))
            }
        }
        Expect::Slack { contains } => {
            let texts = seen.slack_texts();
            if texts.iter().any(|t| t.contains(contains.as_str())) {
                return Ok(());
            }
            let got = if texts.is_empty() {
                "nothing was posted to Slack".to_string()
            } else {
                format!(
                    "Slack got {}",
                    texts.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ")
                )
            };
            Err((format!("a Slack post containing {contains:?}"), got))
        }
        Expect::NotCalled(action) => {
            let called: Vec<String> = seen
                .runs
                .iter()
                .flat_map(|r| {
                    r.steps
                        .iter()
                        .filter(|s| {
                            &s.action == action && !matches!(s.status, StepStatus::Pending | StepStatus::Skipped)
                        })
                        .map(move |s| format!("{} step `{}` {}", r.id, s.id, s.status.as_str()))
                })
                .collect();
            if called.is_empty() {
                Ok(())
            } else {
                Err((format!("no `{action}` step to run"), called.join("; ")))
            }
        }
        Expect::Requests { method, url, count } => {
            let pattern = glob(url);
            let matching = seen
                .requests
                .iter()
                .filter(|r| method.as_deref().is_none_or(|m| m == r.method) && pattern.is_match(&r.url))
                .count();
            let what = format!("{} {url}", method.as_deref().unwrap_or("any request to"));
            match count {
                Some(n) if *n == matching => Ok(()),
                None if matching > 0 => Ok(()),
                Some(n) => Err((format!("{n} × {what}"), format!("{matching}"))),
                None => {
                    let sent: Vec<String> = seen
                        .requests
                        .iter()
                        .map(|r| format!("{} {}", r.method, r.url))
                        .collect();
                    Err((
                        format!("at least one {what}"),
                        format!(
                            "requests: {}",
                            if sent.is_empty() {
                                "none".into()
                            } else {
                                sent.join(", ")
                            }
                        ),
                    ))
                }
            }
        }
    }
}

fn compare(expected: String, want: &str, got: &str) -> Verdict {
    if want == got {
        Ok(())
    } else {
        Err((expected, got.to_string()))
    }
}
