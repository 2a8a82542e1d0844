//! The one place a panic becomes an error, for every crate of the workspace: tract's
//! assertions, a tokenizer's, or a bug in a kernel, caught at the boundary of a call.

/// Runs `f`; a panic comes back as `Err` with what it said.
///
/// ```
/// let caught = emotions_kernels::catch_panic(|| -> u8 { panic!("bad index") });
/// assert_eq!(caught, Err("bad index".to_string()));
/// assert_eq!(emotions_kernels::catch_panic(|| 7), Ok(7));
/// ```
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    CATCHING.fetch_add(1, Ordering::SeqCst);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.fetch_sub(1, Ordering::SeqCst);
    caught.map_err(|panic| panic_message(panic.as_ref()))
}

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Calls of [`catch_panic`] under way, on any thread: a panic in one of them (on its thread
/// or a pool thread it waits on) comes back as an error.
static CATCHING: AtomicUsize = AtomicUsize::new(0);
static SHOW_CAUGHT: AtomicBool = AtomicBool::new(false);

/// Installs a panic hook for programs (the CLI, the server, the bindings): a panic that
/// [`catch_panic`] will turn into an error prints nothing, since the error reports it in one
/// line; with `RUST_BACKTRACE` set, or after [`show_caught_panics`], it prints as Rust's
/// default hook does. Any other panic prints as always.
pub fn quiet_caught_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let caught = CATCHING.load(Ordering::SeqCst) > 0;
        let show =
            SHOW_CAUGHT.load(Ordering::SeqCst) || std::env::var_os("RUST_BACKTRACE").is_some();
        if !caught || show {
            default(info);
        }
    }));
}

/// Prints caught panics and their traces too (`-v`).
pub fn show_caught_panics(show: bool) {
    SHOW_CAUGHT.store(show, Ordering::SeqCst);
}

/// What a caught panic said.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}
