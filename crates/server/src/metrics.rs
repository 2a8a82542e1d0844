//! Prometheus counters and histograms, kept with atomics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const LATENCY_BUCKETS_MS: [f64; 12] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0,
];
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// A cumulative histogram.
struct Histogram<const N: usize> {
    bounds: [f64; N],
    counts: [AtomicU64; N],
    count: AtomicU64,
    /// Sum in micro-units, to stay integral.
    sum_micros: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: [f64; N]) -> Self {
        Histogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
    fn observe(&self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if v <= *b {
                c.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((v * 1e6) as u64, Relaxed);
    }
    fn render(&self, name: &str, help: &str, scale: f64, out: &mut String) {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            out.push_str(&format!(
                "{name}_bucket{{le=\"{}\"}} {}\n",
                b * scale,
                c.load(Relaxed)
            ));
        }
        let count = self.count.load(Relaxed);
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {count}\n"));
        out.push_str(&format!(
            "{name}_sum {}\n",
            self.sum_micros.load(Relaxed) as f64 / 1e6 * scale
        ));
        out.push_str(&format!("{name}_count {count}\n"));
    }
}

pub(crate) struct Metrics {
    /// Requests by (route, status class), in the order first seen.
    requests: std::sync::Mutex<Vec<((&'static str, &'static str), u64)>>,
    latency_ms: Histogram<12>,
    batch_texts: Histogram<8>,
    /// Jobs the batcher dropped because their clients were gone.
    abandoned: std::sync::atomic::AtomicU64,
    /// Jobs waiting in the batcher's queue.
    queue_depth: std::sync::atomic::AtomicI64,
    /// Texts longer than the encoder's window: cut, and read in windows.
    truncated: AtomicU64,
    chunked: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Default::default(),
            latency_ms: Histogram::new(LATENCY_BUCKETS_MS),
            batch_texts: Histogram::new(BATCH_BUCKETS),
            abandoned: Default::default(),
            queue_depth: Default::default(),
            truncated: Default::default(),
            chunked: Default::default(),
        }
    }
}

impl Metrics {
    pub(crate) fn observe_request(&self, route: &'static str, status: u16, elapsed: Duration) {
        let class = match status {
            200..=299 => "2xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        match requests.iter_mut().find(|(key, _)| *key == (route, class)) {
            Some((_, n)) => *n += 1,
            None => requests.push(((route, class), 1)),
        }
        drop(requests);
        self.latency_ms.observe(elapsed.as_secs_f64() * 1e3);
    }

    pub(crate) fn observe_batch(&self, texts: usize) {
        self.batch_texts.observe(texts as f64);
    }

    pub(crate) fn observe_abandoned(&self, jobs: usize) {
        self.abandoned.fetch_add(jobs as u64, Relaxed);
    }

    /// `n` texts longer than the window, read as `long` says.
    pub(crate) fn observe_long_texts(&self, long: crate::backend::LongTexts, n: usize) {
        let counter = match long {
            crate::backend::LongTexts::Truncate => &self.truncated,
            crate::backend::LongTexts::Chunk => &self.chunked,
        };
        counter.fetch_add(n as u64, Relaxed);
    }

    /// A job joined (`1`) or left (`-1`) the batcher's queue.
    pub(crate) fn queued(&self, change: i64) {
        self.queue_depth.fetch_add(change, Relaxed);
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::from(
            "# HELP emotions_requests_total Scoring and embedding requests by route and outcome.\n# TYPE emotions_requests_total counter\n",
        );
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        requests.sort();
        for ((route, class), n) in requests {
            out.push_str(&format!(
                "emotions_requests_total{{route=\"{route}\",status=\"{class}\"}} {n}\n"
            ));
        }
        // Rendered in seconds, as Prometheus expects.
        self.latency_ms.render(
            "emotions_request_duration_seconds",
            "Latency of scoring and embedding requests.",
            1e-3,
            &mut out,
        );
        self.batch_texts.render(
            "emotions_encoder_batch_texts",
            "Texts per encoder call after micro-batching.",
            1.0,
            &mut out,
        );
        out.push_str(&format!(
            "# HELP emotions_abandoned_jobs_total Requests dropped before they were computed: their clients had gone (a timeout, a disconnect).\n# TYPE emotions_abandoned_jobs_total counter\nemotions_abandoned_jobs_total {}\n",
            self.abandoned.load(Relaxed)
        ));
        out.push_str(&format!(
            "# HELP emotions_queue_depth Requests waiting for the encoder.\n# TYPE emotions_queue_depth gauge\nemotions_queue_depth {}\n",
            self.queue_depth.load(Relaxed).max(0)
        ));
        out.push_str(&format!(
            "# HELP emotions_long_texts_total Texts longer than the encoder's window, by how they were read: truncated to it, or chunked into windows.\n# TYPE emotions_long_texts_total counter\nemotions_long_texts_total{{read=\"truncated\"}} {}\nemotions_long_texts_total{{read=\"chunked\"}} {}\n",
            self.truncated.load(Relaxed),
            self.chunked.load(Relaxed)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_counts_and_buckets() {
        let m = super::Metrics::default();
        m.observe_request("/classify", 200, std::time::Duration::from_millis(3));
        m.observe_request("/predict", 400, std::time::Duration::from_millis(30));
        m.observe_batch(5);
        let text = m.render();
        assert!(
            text.contains("emotions_requests_total{route=\"/classify\",status=\"2xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("emotions_requests_total{route=\"/predict\",status=\"4xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("emotions_request_duration_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("emotions_request_duration_seconds_count 2\n"),
            "{text}"
        );
        assert!(
            text.contains("emotions_encoder_batch_texts_bucket{le=\"4\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("emotions_encoder_batch_texts_bucket{le=\"8\"} 1\n"),
            "{text}"
        );
    }
}
