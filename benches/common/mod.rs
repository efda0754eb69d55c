//! What every bench shares: the binary's allocator (so figures taken in
//! the bench's own process match `laojun serve`), and where figures go.

use std::path::{Path, PathBuf};

/// The same allocator and options as the `laojun` binary (see
/// `laojun::allocator` and engine/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array.00100"]
static CONFIGURE_BEFORE_MAIN: extern "C" fn() = laojun::allocator::configure;

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
