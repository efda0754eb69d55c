//! How long loading and validating a large catalog takes: 500 runbooks
//! (copies of the shipped rollback runbook), the shipped playbooks and
//! templates; and how long a reload takes (load, check, compile the
//! postmortem templates, swap) for the shipped catalog and the large one. Run: `cargo bench --bench validate` (or `scripts/bench
//! validate`); prints one line and writes <out>/bench-validate.json, <out>
//! being $LAOJUN_BENCH_OUT or target/bench.

mod common;

use std::time::{Duration, Instant};

use laojun::catalog;
use laojun::script::Sandbox;

const RUNBOOKS: usize = 500;
const ROUNDS: usize = 7;

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().expect("a temp dir");
    for sub in ["runbooks", "playbooks", "templates"] {
        std::fs::create_dir(dir.path().join(sub)).expect("create folder");
    }
    let template =
        std::fs::read_to_string(format!("{root}/runbooks/rollback-deployment.yaml")).expect("shipped runbook");
    for i in 0..RUNBOOKS {
        let name = format!("rollback-{i:03}");
        let text = template.replace("name: rollback-deployment", &format!("name: {name}"));
        std::fs::write(dir.path().join(format!("runbooks/{name}.yaml")), text).expect("write runbook");
    }
    for t in std::fs::read_dir(format!("{root}/templates")).expect("templates") {
        let t = t.expect("entry").path();
        std::fs::copy(&t, dir.path().join("templates").join(t.file_name().expect("name"))).expect("copy template");
    }

    let sandbox = Sandbox::default();
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let loaded = catalog::load(dir.path(), &sandbox).expect("loads");
            let took = start.elapsed();
            assert!(loaded.problems.is_empty(), "{:?}", loaded.problems.first());
            assert_eq!(loaded.catalog.runbooks.len(), RUNBOOKS);
            took
        })
        .collect();
    times.sort();
    let (median, min, max) = (ms(times[ROUNDS / 2]), ms(times[0]), ms(times[ROUNDS - 1]));
    println!(
        "validate {RUNBOOKS} runbooks: median {median:.1} ms, min {min:.1} ms, max {max:.1} ms over {ROUNDS} rounds"
    );
    let reload_shipped = reload_median(std::path::Path::new(root), &sandbox);
    let reload_large = reload_median(dir.path(), &sandbox);
    println!(
        "reload the shipped catalog: median {reload_shipped:.1} ms; {RUNBOOKS} runbooks: median {reload_large:.1} ms"
    );
    common::write_json(
        "validate",
        &serde_json::json!({
            "bench": "validate", "runbooks": RUNBOOKS, "rounds": ROUNDS,
            "median_ms": median, "min_ms": min, "max_ms": max,
            "reload_shipped_median_ms": reload_shipped, "reload_large_median_ms": reload_large,
        }),
    );
}

/// A reload as the engine does it: load and check, then put in force
/// (which compiles the postmortem templates).
fn reload_median(root: &std::path::Path, sandbox: &Sandbox) -> f64 {
    let first = catalog::load(root, sandbox).expect("loads").catalog;
    let live = laojun::live::Live::new(std::sync::Arc::new(first), chrono_tz::UTC).expect("templates compile");
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let loaded = catalog::load(root, sandbox).expect("loads");
            assert!(loaded.problems.is_empty(), "{:?}", loaded.problems.first());
            live.replace(std::sync::Arc::new(loaded.catalog))
                .expect("templates compile");
            start.elapsed()
        })
        .collect();
    times.sort();
    ms(times[ROUNDS / 2])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
