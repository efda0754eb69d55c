//! laojun: incident and runbook automation. AlertManager alerts in, runbooks
//! run against Kubernetes, Route53, Slack and HTTP, a timeline and a
//! postmortem left behind.
//!
//! How the crate is laid out, top down (a module uses only those below it;
//! docs/DESIGN.md has the table with each module's allowed dependencies):
//!
//! - The edges: `cli` (the `laojun` commands, one runtime), `client` (the
//!   typed API client the CLI and the tests use), `serve` (serving an
//!   engine), `server` (the HTTP routes).
//! - Assembly: `engine` (`Engine::builder(config).store(..).clock(..).start()`),
//!   `effects` (what a committed change leads to).
//! - Running: `executor` (runs and steps), `scheduler` (cron), `actions`
//!   (one type per action, behind the `Action` enum).
//! - Keeping: `writer` (the one thread that changes incidents), `ledger`
//!   (alerts into incidents, runs, notes, resolves, audit as store writes),
//!   `store` (the `Store` trait, sled), `postmortem`, `metrics`.
//! - What users write: `catalog`, `runbook`, `playbook`, `template`,
//!   `script` (the Rhai sandbox), `secret`, `config`.
//! - Plain data and parsing: `ids`, `incident`, `run`, `alert`, `matcher`,
//!   `severity`, `yaml`, `decode`, `diag`, and `allocator` (the binary's).

pub mod actions;
pub mod alert;
pub mod allocator;
pub mod automation;
pub mod catalog;
pub mod causes;
pub mod cli;
pub mod client;
pub mod config;
pub mod decode;
pub mod diag;
pub mod effects;
pub mod engine;
pub mod executor;
pub mod health;
pub mod ids;
pub mod incident;
pub mod ledger;
pub mod live;
pub mod matcher;
pub mod metrics;
pub mod notices;
pub mod playbook;
pub mod postmortem;
pub mod preflight;
pub mod rbac;
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
pub mod testing;
pub mod timing;
pub mod writer;
pub mod yaml;
