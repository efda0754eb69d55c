//! What every bench shares: the binary's allocator (so figures taken in
//! the bench's own process match `laojun serve`), and where figures go.

use std::path::{Path, PathBuf};

// The same allocator and options as the `laojun` binary.
laojun::use_laojun_allocator!();

/// Resident memory of a process, from /proc (Linux).
#[allow(dead_code)] // not every bench measures memory
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Writes `<out>/bench-<name>.json`, <out> being $LAOJUN_BENCH_OUT or
/// target/bench in the repository.
pub fn write_json(name: &str, value: &serde_json::Value) {
    let out = std::env::var_os("LAOJUN_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench"));
    std::fs::create_dir_all(&out).expect("create the bench output folder");
    let path = out.join(format!("bench-{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).expect("write the bench JSON");
    println!("wrote {}", path.display());
}

/// For the tests' PostgreSQL harness (`#[path]`-included as `pg_cluster`,
/// which asks its parent for `require` and `PATIENCE`): where initdb is.
#[allow(dead_code)] // not every bench uses PostgreSQL
pub fn require(component: &str) -> Option<PathBuf> {
    assert_eq!(component, "initdb", "the benches only look for initdb");
    ["17", "16", "15"]
        .iter()
        .map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin/initdb")))
        .find(|p| p.is_file())
}

#[allow(dead_code)]
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);
