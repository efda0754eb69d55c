//! The `laojun` binary: parses the command line and hands over to `cli`.

use std::process::ExitCode;

/// See `laojun::allocator`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets mimalloc's options before anything allocates: the Rust runtime
/// allocates before `main`, and mimalloc initializes itself from a
/// constructor of priority 101, so this one runs at 100.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array.00100"]
static CONFIGURE_BEFORE_MAIN: extern "C" fn() = laojun::allocator::configure;

fn main() -> ExitCode {
    laojun::cli::main()
}
