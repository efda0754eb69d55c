//! laojun: incident and runbook automation. AlertManager alerts in, runbooks
//! run against Kubernetes, Route53, Slack and HTTP, a timeline and a
//! postmortem left behind.

pub mod decode;
pub mod diag;
pub mod matcher;
pub mod script;
pub mod yaml;
