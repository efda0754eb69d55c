//! Every integration and end-to-end test, as one test binary: each file
//! here used to be its own binary linking the whole engine (kube, the AWS
//! SDK), which on two cores cost more link time than the tests take to run.
//! Fixtures stay in `tests/fixtures/`; shared helpers are in `support`.

mod support;

mod alertmanager_e2e;
mod assessment;
mod auth;
mod bad_input;
mod cancel;
mod cli;
mod crash_cycles;
mod crash_recovery;
mod deploy;
mod errors;
mod fake_kube;
mod full_chain;
mod full_disk;
mod grafana;
mod in_cluster;
mod intake_api;
mod kubernetes;
mod lifecycle;
mod maintenance;
mod matchers;
mod observability;
mod observe;
mod overload;
mod postmortem;
mod preflight;
mod rbac;
mod reload;
mod replicas;
mod restart;
mod retry;
mod route53;
mod runbook_tests;
mod runs;
mod secrets;
mod slack_interactive;
mod store_contract;
mod store_unavailable;
mod takeover;
mod tls;
mod trust;
mod ui;
mod ui_browser;
mod validate;
