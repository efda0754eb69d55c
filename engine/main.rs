//! The `laojun` binary: parses the command line and hands over to `cli`.

use std::process::ExitCode;

laojun::use_laojun_allocator!();

fn main() -> ExitCode {
    laojun::cli::main()
}
