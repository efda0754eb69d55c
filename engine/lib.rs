//! laojun: incident and runbook automation. AlertManager alerts in, runbooks
//! run against Kubernetes, Route53, Slack and HTTP, a timeline and a
//! postmortem left behind.

pub mod actions;
pub mod alert;
pub mod allocator;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod config;
pub mod decode;
pub mod diag;
pub mod effects;
pub mod engine;
pub mod executor;
pub mod ids;
pub mod incident;
pub mod ledger;
pub mod matcher;
pub mod metrics;
pub mod playbook;
pub mod postmortem;
pub mod run;
pub mod runbook;
pub mod scheduler;
pub mod script;
pub mod secret;
pub mod serve;
pub mod server;
pub mod severity;
pub mod store;
pub mod template;
pub mod writer;
pub mod yaml;
