//! laojun: incident and runbook automation. AlertManager alerts in, runbooks
//! run against Kubernetes, Route53, Slack and HTTP, a timeline and a
//! postmortem left behind.

pub mod catalog;
pub mod cli;
pub mod decode;
pub mod diag;
pub mod matcher;
pub mod playbook;
pub mod runbook;
pub mod script;
pub mod secret;
pub mod severity;
pub mod template;
pub mod yaml;
