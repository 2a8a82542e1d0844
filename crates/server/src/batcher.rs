//! The micro-batcher: concurrent requests' texts embedded together in one backend call, on a
//! thread of its own.
//!
//! It waits for a first job, then for more until `batch_wait` has passed or `max_batch` texts
//! are in (a wait with a deadline, not a polling sleep), and embeds them in one call; each job
//! gets its rows back on its own channel.

use crate::backend::{Backend, BackendError, LongTexts, TextRows};
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What a job gets back: its rows, or the error its batch failed with (shared by every job of
/// a failed batch).
pub(crate) type Reply = Result<Vec<f32>, Arc<BackendError>>;

struct Job {
    texts: Vec<String>,
    kind: JobKind,
    reply: oneshot::Sender<Reply>,
}

/// What a job wants; jobs of one kind run as one backend call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobKind {
    /// Scores (28 per text, [`Backend::score_texts`]) rather than embeddings
    /// ([`Backend::embed_texts`]).
    pub(crate) scores: bool,
    pub(crate) long: LongTexts,
}

impl JobKind {
    /// Values per text in the reply.
    fn width(self, dim: usize) -> usize {
        if self.scores {
            emotions_labels::NUM_LABELS
        } else {
            dim
        }
    }
}

/// Why a job was not queued.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The queue holds this many jobs, its bound: the client should retry later (429).
    Full(usize),
    /// The batcher has stopped: the server is shutting down (or the thread died).
    Closed,
}

/// The handlers' end of the batcher.
pub(crate) struct Batcher {
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
    /// False once the batcher thread has ended (it should not); `/health` then says 503.
    alive: Arc<AtomicBool>,
}

impl Batcher {
    /// Starts the batcher's thread, grouping up to `config.max_batch` texts for at most
    /// `config.batch_wait`.
    pub(crate) fn start(
        backend: Arc<dyn Backend>,
        config: &ServerConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Batcher> {
        let (max_batch, batch_wait) = (config.max_batch, config.batch_wait);
        // As many jobs as requests may be in flight: more are only there after timeouts,
        // and are refused (429) rather than queued behind answers nobody waits for.
        let (jobs, rx) = mpsc::channel::<Job>(config.max_concurrent.max(1));
        let handle_metrics = metrics.clone();
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        std::thread::Builder::new()
            .name("emotions-batcher".into())
            .spawn(move || {
                /// Marks the batcher dead however its thread ends.
                struct Alive(Arc<AtomicBool>);
                impl Drop for Alive {
                    fn drop(&mut self) {
                        self.0.store(false, Ordering::Relaxed);
                    }
                }
                let _alive = Alive(flag);
                run(rx, &*backend, (max_batch, batch_wait), &metrics);
            })?;
        Ok(Batcher {
            jobs,
            metrics: handle_metrics,
            alive,
        })
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Embeds or scores `texts` in the next batch of their kind.
    pub(crate) async fn submit(&self, texts: Vec<String>, kind: JobKind) -> Result<Reply, Refused> {
        let (reply, wait) = oneshot::channel();
        let job = Job { texts, kind, reply };
        match self.jobs.try_send(job) {
            Ok(()) => self.metrics.queued(1),
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(Refused::Full(self.jobs.max_capacity()));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Refused::Closed),
        }
        wait.await.map_err(|_| Refused::Closed)
    }
}

/// Collects jobs for up to `batch_wait` (or `max_batch` texts), embeds them in one call, and
/// hands each job its rows. Ends when every sender is gone.
fn run(
    mut rx: mpsc::Receiver<Job>,
    backend: &dyn Backend,
    (max_batch, batch_wait): (usize, Duration),
    metrics: &Metrics,
) {
    // A runtime of this thread's own, for the deadline: the embedding itself blocks this
    // thread, never the server's.
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return;
    };
    let dim = backend.dim();
    runtime.block_on(async {
        while let Some(first) = rx.recv().await {
            metrics.queued(-1);
            let mut jobs = vec![first];
            let mut count = jobs[0].texts.len();
            let deadline = tokio::time::Instant::now() + batch_wait;
            while count < max_batch {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => {
                        metrics.queued(-1);
                        count += job.texts.len();
                        jobs.push(job);
                    }
                    // The deadline passed, or every sender is gone: run what there is.
                    Ok(None) | Err(_) => break,
                }
            }
            // Each kind (scores or embeddings, truncated or chunked) runs as its own batch, in
            // the order its first job came.
            while let Some(kind) = jobs.first().map(|j| j.kind) {
                let (same, rest): (Vec<Job>, Vec<Job>) =
                    jobs.into_iter().partition(|j| j.kind == kind);
                run_batch(same, kind, backend, metrics, dim);
                jobs = rest;
            }
        }
    });
}

/// Embeds one batch of jobs in one call, and hands each job its rows. Jobs whose clients are
/// gone (answered already by a timeout, or disconnected) are dropped first: after an overload,
/// the queue then empties at once instead of computing answers nobody waits for.
fn run_batch(jobs: Vec<Job>, kind: JobKind, backend: &dyn Backend, metrics: &Metrics, dim: usize) {
    let before = jobs.len();
    let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
    metrics.observe_abandoned(before - jobs.len());
    if jobs.is_empty() {
        return;
    }
    let width = kind.width(dim);
    let embed = |texts: &[String]| -> Result<Vec<f32>, BackendError> {
        let rows: TextRows = if kind.scores {
            backend.score_texts(texts, kind.long)?
        } else {
            backend.embed_texts(texts, kind.long)?
        };
        metrics.observe_long_texts(kind.long, rows.long_texts);
        Ok(rows.values)
    };
    let texts: Vec<String> = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
    metrics.observe_batch(texts.len());
    match no_panic(|| embed(&texts)) {
        Ok(all) if all.len() == texts.len() * width => {
            let mut offset = 0;
            for job in jobs {
                let n = job.texts.len();
                let _ = job
                    .reply
                    .send(Ok(all[offset * width..(offset + n) * width].to_vec()));
                offset += n;
            }
        }
        // One request's texts must not fail the others batched with it: run each alone.
        _ if jobs.len() > 1 => {
            for job in jobs {
                let result = no_panic(|| embed(&job.texts)).map_err(Arc::new);
                let _ = job.reply.send(result);
            }
        }
        result => {
            let e = Arc::new(result.err().unwrap_or_else(|| {
                BackendError::Model("the encoder returned the wrong number of values".into())
            }));
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Runs `f`, turning a panic into a backend error.
pub(crate) fn no_panic<T>(f: impl FnOnce() -> Result<T, BackendError>) -> Result<T, BackendError> {
    emotions_kernels::catch_panic(f).unwrap_or_else(|what| {
        Err(BackendError::Model(
            format!("the model panicked: {what}").into(),
        ))
    })
}
