//! `laojun test`: loads the catalog and the cases, runs them (each on a
//! runtime of its own, off this one), prints the report, and exits 0 only
//! when every case passed.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{exit, print_error, usage, TestOutput};
use crate::catalog;
use crate::script::Sandbox;
use crate::testing::{self, report};

pub async fn test(dir: PathBuf, filter: Option<String>, output: TestOutput, rbac: Option<PathBuf>) -> ExitCode {
    if !dir.is_dir() {
        return usage(&format!("test: {} is not a folder", dir.display()));
    }
    let roles = match &rbac {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| testing::read_objects(&t))
        {
            Ok(objects) => Some(objects),
            Err(e) => return usage(&format!("test: --rbac {}: {e}", path.display())),
        },
        None => None,
    };
    let loaded = match catalog::load(&dir, &Sandbox::default()) {
        Ok(l) => l,
        Err(e) => return usage(&format!("test: {e}")),
    };
    let mut problems = loaded.problems;
    let cases = testing::case::load(&dir, &loaded.catalog, &mut problems);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        print_error(&format!(
            "test: {} problem{} in {}; `laojun validate {}` lists the same",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            dir.display(),
            dir.display()
        ));
        return ExitCode::from(exit::FAILED);
    }
    if cases.is_empty() {
        return usage(&format!(
            "test: no cases in {}; write one, e.g. {0}/service-down.yaml with `name:`, `alert:` and `expect:`",
            dir.join(testing::case::DIR).display()
        ));
    }
    if let Some(f) = filter.as_deref() {
        if !cases.iter().any(|c| c.name.contains(f)) {
            let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
            return usage(&format!(
                "test: no case name contains {f:?}; the cases are {}",
                names.join(", ")
            ));
        }
    }
    let started = std::time::Instant::now();
    // Each case builds a runtime of its own, which cannot be done on this one's threads.
    let worker = std::thread::spawn(move || testing::run_all(&dir, &cases, filter.as_deref(), roles.as_deref()));
    let outcomes = match tokio::task::spawn_blocking(move || worker.join()).await {
        Ok(Ok(outcomes)) => outcomes,
        _ => {
            print_error("test: running the cases panicked");
            return ExitCode::from(exit::FAILED);
        }
    };
    let took = started.elapsed();
    match output {
        TestOutput::Table => print!("{}", report::table(&outcomes, took)),
        TestOutput::Json => println!("{}", report::json(&outcomes, took)),
        TestOutput::Junit => print!("{}", report::junit(&outcomes, took)),
    }
    if outcomes.iter().all(testing::Outcome::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILED)
    }
}
