//! Hostile clients and a failing model against the real server on loopback: stalled uploads,
//! half-sent requests, a panicking encoder, one bad text in a micro-batch, shutdown with a
//! stalled client. Every wait is bounded.

use emotions_labels::{DecisionPolicy, NUM_LABELS, Thresholds};
use emotions_server::{Backend, BackendError, ServerConfig};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Embeds every text as a constant row; panics on "boom", refuses "bad", takes 300 ms over
/// "slow".
struct Mock(DecisionPolicy);

impl Backend for Mock {
    fn dim(&self) -> usize {
        4
    }
    fn embed(&self, texts: &[String]) -> Result<Vec<f32>, BackendError> {
        if texts.iter().any(|t| t == "boom") {
            panic!("injected encoder panic");
        }
        if texts.iter().any(|t| t == "bad") {
            return Err(BackendError::Input("a text the tokenizer refuses".into()));
        }
        if texts.iter().any(|t| t == "slow") {
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(vec![0.5; texts.len() * 4])
    }
    fn scores(&self, _: &[f32], rows: usize) -> Result<Vec<f32>, BackendError> {
        Ok(vec![0.25; rows * NUM_LABELS])
    }
    fn count_tokens(&self, texts: &[String]) -> Result<Vec<usize>, BackendError> {
        Ok(texts.iter().map(|t| t.len() + 2).collect())
    }
    fn normalizes(&self) -> bool {
        false
    }
    fn max_input_length(&self) -> usize {
        256
    }
    fn policy(&self) -> &DecisionPolicy {
        &self.0
    }
    fn model_name(&self) -> String {
        "mock".into()
    }
    fn encoder_name(&self) -> String {
        "mock".into()
    }
}

struct Server {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Server {
    fn start(config: ServerConfig) -> Server {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                let backend = Arc::new(Mock(DecisionPolicy::PerLabel(Thresholds::card_defaults())));
                emotions_server::serve(listener, backend, config, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
            let _ = done_tx.send(());
        });
        Server {
            port: port_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            stop: Some(stop),
            done: std::sync::Mutex::new(done),
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    /// Sends raw bytes and reads the whole answer: (status, body); status 0 if the server
    /// closed the connection without one.
    fn raw(&self, bytes: &[u8]) -> (u16, String) {
        let mut s = self.connect();
        s.write_all(bytes).unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    fn request(&self, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
        self.raw(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    }

    fn post(&self, body: &str) -> (u16, String) {
        self.request("POST", "/classify", "application/json", body)
    }
}

fn error_type(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    v["error_type"].as_str().unwrap_or_default().to_string()
}

/// An overload whose requests all time out leaves nothing behind: the batcher drops the jobs
/// whose clients have gone instead of computing them, so a request right after is answered at
/// once. (Before, 24 queued slow jobs would have held the batcher for 7 s.)
#[test]
fn after_an_overload_the_next_request_is_answered_at_once() {
    let server = Arc::new(Server::start(ServerConfig {
        request_timeout: Duration::from_millis(200),
        max_batch: 1,
        batch_wait: Duration::from_millis(0),
        ..ServerConfig::default()
    }));
    let load: Vec<_> = (0..24)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || server.post(r#"{"inputs": "slow"}"#))
        })
        .collect();
    for client in load {
        let (status, body) = client.join().unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(error_type(&body), "deadline_exceeded");
    }
    let started = Instant::now();
    let (status, body) = server.post(r#"{"inputs": "fine"}"#);
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        took < Duration::from_millis(1500),
        "answered after {took:?}"
    );
    let (_, metrics) = server.request("GET", "/metrics", "application/json", "");
    let abandoned = metrics
        .lines()
        .find_map(|l| l.strip_prefix("emotions_abandoned_jobs_total "))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no abandoned-jobs count in {metrics}"));
    assert!(abandoned >= 20, "{abandoned} jobs dropped");
}

fn queue_depth(server: &Server) -> u64 {
    let (_, metrics) = server.request("GET", "/metrics", "application/json", "");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("emotions_queue_depth "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no queue depth in {metrics}"))
}

/// The queue holds as many jobs as requests may be in flight. Requests that timed out leave
/// their jobs queued until the batcher reaches them; while those fill it, new requests get a
/// 429 at once rather than waiting behind them, and `/metrics` shows the depth.
#[test]
fn a_full_queue_answers_429_and_shows_its_depth() {
    let server = Arc::new(Server::start(ServerConfig {
        max_concurrent: 4,
        request_timeout: Duration::from_millis(100),
        max_batch: 1,
        batch_wait: Duration::from_millis(0),
        ..ServerConfig::default()
    }));
    let wave = |n: usize| -> Vec<(u16, String)> {
        let clients: Vec<_> = (0..n)
            .map(|_| {
                let server = server.clone();
                std::thread::spawn(move || server.post(r#"{"inputs": "slow"}"#))
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    };
    // One slow job runs for 300 ms; the three behind it stay queued after their 503s.
    for (status, body) in wave(4) {
        assert_eq!(
            (status, error_type(&body)),
            (503, "deadline_exceeded".into())
        );
    }
    assert!(queue_depth(&server) >= 2, "{}", queue_depth(&server));
    let second = wave(4);
    let full = second
        .iter()
        .filter(|(status, body)| *status == 429 && error_type(body) == "queue_full")
        .count();
    assert!(full >= 1, "{second:?}");
    // The batcher drops the abandoned jobs; then the queue is empty and requests succeed.
    std::thread::sleep(Duration::from_millis(1000));
    let (status, body) = server.post(r#"{"inputs": "fine"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(queue_depth(&server), 0);
}

/// Errors in the request head are answered by hyper before any handler runs, as GUIDE.md
/// says: a status with an empty body, then the connection closes.
#[test]
fn hyper_answers_a_broken_request_head_itself() {
    let server = Server::start(ServerConfig::default());
    let mut many = String::from("POST /classify HTTP/1.1\r\nHost: x\r\n");
    for i in 0..120 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("Content-Length: 2\r\n\r\n{}");
    let (status, body) = server.raw(many.as_bytes());
    assert_eq!((status, body.as_str()), (431, ""));
    let (status, body) =
        server.raw(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}");
    assert_eq!((status, body.as_str()), (400, ""));
}

/// A body that breaks HTTP's framing is the client's error (400, JSON), not "too large".
#[test]
fn a_badly_framed_body_is_a_400_with_a_json_error() {
    let server = Server::start(ServerConfig::default());
    let (status, body) = server.raw(
        b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    );
    assert_eq!(
        (status, error_type(&body)),
        (400, "bad_body".into()),
        "{body}"
    );
    // A body cut short: fewer bytes than Content-Length, then the client stops sending.
    let mut s = server.connect();
    s.write_all(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\"")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("\"error_type\":\"bad_body\""), "{text}");
}

#[test]
fn an_encoder_panic_fails_one_request_and_the_server_goes_on() {
    let server = Server::start(ServerConfig::default());
    let (status, body) = server.post(r#"{"inputs": "boom"}"#);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("panicked: injected encoder panic"), "{body}");
    for _ in 0..3 {
        assert_eq!(server.post(r#"{"inputs": "fine"}"#).0, 200);
    }
    assert_eq!(
        server.request("GET", "/health", "application/json", "").0,
        200
    );
}

#[test]
fn one_bad_text_fails_only_its_own_request_in_a_micro_batch() {
    let server = Arc::new(Server::start(ServerConfig {
        batch_wait: Duration::from_millis(500),
        ..Default::default()
    }));
    let bad = {
        let server = server.clone();
        std::thread::spawn(move || server.post(r#"{"inputs": ["x", "bad"]}"#))
    };
    let panicking = {
        let server = server.clone();
        std::thread::spawn(move || server.post(r#"{"inputs": "boom"}"#))
    };
    let fine = server.post(r#"{"inputs": ["fine", "also fine"]}"#);
    assert_eq!(fine.0, 200, "{}", fine.1);
    let bad = bad.join().unwrap();
    assert_eq!(
        (bad.0, error_type(&bad.1)),
        (422, "invalid_input".into()),
        "{}",
        bad.1
    );
    assert_eq!(panicking.join().unwrap().0, 500);
}

#[test]
fn stalled_uploads_hold_no_slot_and_time_out() {
    let server = Server::start(ServerConfig {
        body_timeout: Duration::from_secs(2),
        ..Default::default()
    });
    // 70 clients that send headers and part of a body, then stall (more than the 64 slots).
    let stalled: Vec<TcpStream> = (0..70)
        .map(|_| {
            let mut s = server.connect();
            s.write_all(
                b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\"",
            )
            .unwrap();
            s
        })
        .collect();
    let start = Instant::now();
    let (status, body) = server.post(r#"{"inputs": "fine"}"#);
    assert_eq!(status, 200, "{body}");
    assert!(
        start.elapsed() < Duration::from_secs(25),
        "{:?}",
        start.elapsed()
    );
    // Each stalled upload gets a 408 once the body timeout passes.
    let mut first = stalled.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = first.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("body_timeout"), "{answer}");
}

#[test]
fn half_sent_headers_are_cut_off() {
    let server = Server::start(ServerConfig {
        header_timeout: Duration::from_secs(1),
        ..Default::default()
    });
    let start = Instant::now();
    let (status, _) = server.raw(b"POST /classify HTTP/1.1\r\nHost: x\r\n");
    let waited = start.elapsed();
    // hyper answers a header timeout by closing the connection (some versions send a 408).
    assert!(status == 0 || status == 408, "{status}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

#[test]
fn limits_and_methods_get_json_errors() {
    let server = Server::start(ServerConfig::default());
    let start = Instant::now();
    let (status, body) = server.raw(
        b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((status, error_type(&body)), (413, "body_too_large".into()));
    assert!(start.elapsed() < Duration::from_secs(5));
    let (status, body) = server.request("GET", "/classify", "application/json", "");
    assert_eq!(
        (status, error_type(&body)),
        (405, "method_not_allowed".into())
    );
    let (status, body) = server.request("POST", "/classify", "text/plain", r#"{"inputs": "x"}"#);
    assert_eq!(
        (status, error_type(&body)),
        (415, "unsupported_media_type".into())
    );
    let (status, body) = server.request("GET", "/nope", "application/json", "");
    assert_eq!((status, error_type(&body)), (404, "not_found".into()));
}

#[test]
fn shutdown_ends_within_the_grace_period_despite_a_stalled_client() {
    let mut server = Server::start(ServerConfig {
        shutdown_grace: Duration::from_secs(1),
        ..Default::default()
    });
    let mut stalled = server.connect();
    stalled
        .write_all(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    server.stop.take().unwrap().send(()).unwrap();
    server
        .done
        .lock()
        .unwrap()
        .recv_timeout(Duration::from_secs(10))
        .expect("the server did not stop");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
