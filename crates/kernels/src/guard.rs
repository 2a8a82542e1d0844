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
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|panic| panic_message(panic.as_ref()))
}

/// What a caught panic said.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}
