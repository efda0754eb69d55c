//! The memory allocator. The `laojun` binary (and the benches that stand
//! in for it) use mimalloc instead of glibc's malloc: sled copies B-tree
//! nodes on every write, and under an alert storm glibc's malloc spent a
//! third of the time in its own bookkeeping and kept most of the freed
//! memory (docs/PERFORMANCE.md has the figures).
//!
//! The binary (and the benches) say `laojun::use_laojun_allocator!();`,
//! which declares the global allocator and runs `configure` before `main`;
//! the library itself does not choose an allocator (tests and fuzzing keep
//! the system one).

use libmimalloc_sys::{mi_option_set_default, mi_option_t};
pub use mimalloc::MiMalloc;

// The option's number in mimalloc.h (v3, as vendored by libmimalloc-sys
// 0.1.49), which libmimalloc-sys does not name.
const MI_OPTION_ARENA_EAGER_COMMIT: mi_option_t = 4;

/// Commit memory only as it is used, so resident memory follows what
/// laojun holds: about 22 MiB idle rather than the 64 MiB arena mimalloc
/// commits up front. (Purging freed pages at once, rather than after
/// mimalloc's 10 ms, saved little memory and cost page faults.)
///
/// Must run before mimalloc's first allocation, which happens before
/// `main`: see `use_laojun_allocator!`.
pub extern "C" fn configure() {
    // SAFETY: a plain setter of one of mimalloc's global options; any value
    // is valid. A default, so MIMALLOC_ARENA_EAGER_COMMIT still wins.
    unsafe {
        mi_option_set_default(MI_OPTION_ARENA_EAGER_COMMIT, 0);
    }
}

/// Declares mimalloc as the global allocator and sets its options before
/// anything allocates: the Rust runtime allocates before `main`, and
/// mimalloc initializes itself from a constructor of priority 101, so
/// `configure` runs at 100.
#[macro_export]
macro_rules! use_laojun_allocator {
    () => {
        #[global_allocator]
        static GLOBAL: $crate::allocator::MiMalloc = $crate::allocator::MiMalloc;

        #[cfg(target_os = "linux")]
        #[used]
        #[link_section = ".init_array.00100"]
        static CONFIGURE_BEFORE_MAIN: extern "C" fn() = $crate::allocator::configure;
    };
}
