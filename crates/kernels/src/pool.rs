//! The thread pool the kernels spread their work over, set by [`set_threads`], and the one
//! parallel-for over it ([`for_each_block`] over slices, [`for_each_index`] over a range).
//!
//! tract's own pool (tract-linalg's `multithread-mm` feature) is not built. It makes every
//! generic element-wise, binary and reduction op of tract-core parallel, which compiles rayon's
//! join machinery once per op and datum type: 6.9 MB of the binary (README, "Binary size"), for
//! ops the encoder's rewrites leave with little work. The projections, attention, layer norm
//! and GELU, where the time goes, run on these kernels and spread over this pool instead.

use crate::{KernelError, KernelErrorKind};
use rayon::ThreadPool;
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::{Arc, RwLock};

/// The process-wide pool; `None` runs everything on the calling thread.
static DEFAULT_POOL: RwLock<Option<Arc<ThreadPool>>> = RwLock::new(None);

thread_local! {
    /// A pool (or none) that overrides the default on this thread, for [`single_threaded`].
    static SCOPED_POOL: RefCell<Option<Option<Arc<ThreadPool>>>> = const { RefCell::new(None) };
}

/// Sets how many threads the kernels use, process-wide (0 or 1: single-threaded).
///
/// ```
/// emotions_kernels::set_threads(2)?;
/// emotions_kernels::set_threads(1)?;
/// # Ok::<(), emotions_kernels::KernelError>(())
/// ```
pub fn set_threads(threads: usize) -> Result<(), KernelError> {
    let KernelThreads(pool) = KernelThreads::new(threads)?;
    *DEFAULT_POOL.write().unwrap_or_else(|e| e.into_inner()) = pool;
    Ok(())
}

/// A pool of kernel threads that one owner uses in place of the process-wide one, so that two
/// users in one process (two classifiers in a Python program, say) each keep their own count.
///
/// ```
/// let two = emotions_kernels::KernelThreads::new(2)?;
/// assert_eq!(two.threads(), 2);
/// assert_eq!(two.install(|| 1 + 1), 2);
/// assert_eq!(emotions_kernels::KernelThreads::new(0)?.threads(), 1);
/// # Ok::<(), emotions_kernels::KernelError>(())
/// ```
#[derive(Debug, Clone)]
pub struct KernelThreads(Option<Arc<ThreadPool>>);

impl KernelThreads {
    /// `threads` threads (0 or 1: the calling thread alone).
    pub fn new(threads: usize) -> Result<Self, KernelError> {
        if threads <= 1 {
            return Ok(KernelThreads(None));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("emotions-{i}"))
            .num_threads(threads)
            .build()
            .map_err(|source| KernelError::new(KernelErrorKind::ThreadPool { threads, source }))?;
        Ok(KernelThreads(Some(Arc::new(pool))))
    }

    /// How many threads the kernels run on inside [`KernelThreads::install`].
    pub fn threads(&self) -> usize {
        self.0.as_ref().map_or(1, |p| p.current_num_threads())
    }

    /// Runs `work` on this thread with these threads in place of the process-wide pool.
    pub fn install<R>(&self, work: impl FnOnce() -> R) -> R {
        scoped(self.0.clone(), work)
    }
}

/// Runs `work` with the kernels single-threaded on this thread, for callers that run
/// one batch per thread themselves.
pub fn single_threaded<R>(work: impl FnOnce() -> R) -> R {
    scoped(None, work)
}

/// Runs `work` with `pool` (or none) in place of the default on this thread.
fn scoped<R>(pool: Option<Arc<ThreadPool>>, work: impl FnOnce() -> R) -> R {
    let previous = SCOPED_POOL.replace(Some(pool));
    // Restored on unwind too, so a caught panic leaves the thread as it was.
    struct Restore(Option<Option<Arc<ThreadPool>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPED_POOL.set(self.0.take());
        }
    }
    let _restore = Restore(previous);
    work()
}

/// The pool kernels called on this thread spread over, if any.
pub fn current() -> Option<Arc<ThreadPool>> {
    SCOPED_POOL
        .with_borrow(|scoped| scoped.clone())
        .unwrap_or_else(|| {
            DEFAULT_POOL
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
}

/// Runs `f(index, block)` on each `block_len`-value block of `xs` (`block_len > 0`), spread
/// over the current pool when there is one and more than one block.
pub fn for_each_block<E: Send>(
    xs: &mut [f32],
    block_len: usize,
    f: impl Fn(usize, &mut [f32]) -> Result<(), E> + Sync + Send,
) -> Result<(), E> {
    let each = |(i, block): (usize, &mut [f32])| f(i, block);
    match current() {
        Some(pool) if xs.len() > block_len => {
            pool.install(|| xs.par_chunks_mut(block_len).enumerate().try_for_each(each))
        }
        _ => xs.chunks_mut(block_len).enumerate().try_for_each(each),
    }
}

/// Runs `work` on a thread of the current pool, with that pool current there, and waits for
/// it; without a pool, or on one of its threads already, `work` runs here.
///
/// The parallel loops inside then share work between the pool's threads directly. Called from
/// outside, each loop hands its work to the pool and sleeps until it is done: over a MiniLM
/// forward pass's dozens of loops that cost one 16-token text 12-34% of its time (three
/// alternated criterion runs, AVX2 Zen 3).
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match current() {
        Some(pool) if pool.current_thread_index().is_none() => {
            let inner = pool.clone();
            pool.install(move || scoped(Some(inner), work))
        }
        _ => work(),
    }
}

/// Runs `f(i)` for every `i < count`, spread over the current pool when there is one and more
/// than one index.
pub fn for_each_index(count: usize, f: impl Fn(usize) + Send + Sync) {
    match current() {
        Some(pool) if count > 1 => pool.install(|| (0..count).into_par_iter().for_each(f)),
        _ => (0..count).for_each(f),
    }
}

/// Runs `work` on this thread with a pool of `threads` threads (1: none), for tests and
/// benchmarks that compare pooled and single-threaded runs.
pub fn with_threads<R>(threads: usize, work: impl FnOnce() -> R) -> R {
    KernelThreads::new(threads)
        .expect("a test thread pool")
        .install(work)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_names(xs: &mut [f32]) -> Vec<String> {
        let names = std::sync::Mutex::new(Vec::new());
        let Ok(()) = for_each_block::<std::convert::Infallible>(xs, 1, |_, _| {
            let name = std::thread::current().name().unwrap_or("").to_string();
            names.lock().unwrap().push(name);
            Ok(())
        });
        names.into_inner().unwrap()
    }

    #[test]
    fn blocks_run_where_the_scope_says() {
        let here = std::thread::current().name().unwrap_or("").to_string();
        let mut xs = vec![0f32; 64];
        let alone = single_threaded(|| thread_names(&mut xs));
        assert_eq!(alone.len(), 64);
        assert!(alone.iter().all(|n| *n == here), "{alone:?}");
        let pooled = with_threads(2, || thread_names(&mut xs));
        assert_eq!(pooled.len(), 64);
        assert!(pooled.iter().all(|n| *n != here), "{pooled:?}");
        let owned = KernelThreads::new(2).unwrap();
        let named = owned.install(|| thread_names(&mut xs));
        assert!(
            named.iter().all(|n| n.starts_with("emotions-")),
            "{named:?}"
        );
        let lone = KernelThreads::new(1)
            .unwrap()
            .install(|| thread_names(&mut xs));
        assert!(lone.iter().all(|n| *n == here), "{lone:?}");
        // The scope ends with its closure.
        assert!(SCOPED_POOL.with_borrow(|s| s.is_none()));
    }

    #[test]
    fn work_on_the_pool_keeps_the_pool_and_its_loops_stay_on_it() {
        let here = std::thread::current().name().unwrap_or("").to_string();
        let (outer, inner) = with_threads(2, || {
            on_pool(|| {
                let outer = std::thread::current().name().unwrap_or("").to_string();
                let threads = current().map(|p| p.current_num_threads());
                (outer, (threads, thread_names(&mut [0f32; 64])))
            })
        });
        assert_ne!(outer, here, "on_pool ran on the calling thread");
        assert_eq!(
            inner.0,
            Some(2),
            "the scoped pool is not current on its thread"
        );
        assert_eq!(inner.1.len(), 64);
        assert!(inner.1.iter().all(|n| *n != here), "{:?}", inner.1);
        // Without a pool it runs here, and nothing leaks out of the scope.
        let alone = single_threaded(|| on_pool(|| std::thread::current().name().map(String::from)));
        assert_eq!(alone.unwrap_or_default(), here);
        assert!(SCOPED_POOL.with_borrow(|s| s.is_none()));
    }

    #[test]
    fn blocks_see_their_index_and_every_value_once() {
        let mut xs: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        with_threads(2, || {
            for_each_block::<std::convert::Infallible>(&mut xs, 64, |b, block| {
                for (j, x) in block.iter_mut().enumerate() {
                    assert_eq!(*x as usize, b * 64 + j);
                    *x = -*x;
                }
                Ok(())
            })
        })
        .unwrap();
        assert!(xs.iter().enumerate().all(|(i, x)| *x == -(i as f32)));
    }

    #[test]
    fn an_error_in_a_block_is_returned() {
        let mut xs = vec![0f32; 100];
        let got = with_threads(2, || {
            for_each_block(&mut xs, 10, |b, _| if b == 7 { Err(b) } else { Ok(()) })
        });
        assert_eq!(got, Err(7));
    }
}
