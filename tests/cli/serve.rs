//! `emotions serve` over loopback: endpoints, bad requests, agreement with the CLI, load, and
//! graceful shutdown.

use crate::util::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

pub struct Server {
    child: Child,
    port: u16,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
        });
        Server { child, port }
    }

    /// One HTTP/1.1 request; returns status and body.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        let _ = s.write_all(body);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    fn post(&self, body: &str) -> (u16, String) {
        self.request("POST", "/classify", body.as_bytes())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn endpoints_answer() {
    let server = Server::start(&[]);
    assert_eq!(
        server.request("GET", "/health", b""),
        (200, r#"{"status":"ok"}"#.into())
    );
    let (status, labels) = server.request("GET", "/labels", b"");
    assert_eq!(status, 200);
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["labels"].as_array().unwrap().len(), 28);
    assert_eq!(labels["encoder"], "all-MiniLM-L6-v2");
    assert_eq!(labels["thresholds"].as_object().unwrap().len(), 28);
    let (status, body) =
        server.post(r#"{"inputs": ["Thank you so much, this is wonderful!", "I hate this"]}"#);
    assert_eq!(status, 200, "{body}");
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert!(
        rows[0]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "gratitude"),
        "{body}"
    );
    let (_, top) = server.post(r#"{"inputs": "so happy", "top_k": 2}"#);
    let top: serde_json::Value = serde_json::from_str(&top).unwrap();
    assert_eq!(top[0]["labels"].as_array().unwrap().len(), 2);
    let (_, raw) = server.post(r#"{"inputs": "so happy", "raw_scores": true}"#);
    let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert!(raw[0].get("labels").is_none() && raw[0]["scores"].as_object().unwrap().len() == 28);
    let (status, metrics) = server.request("GET", "/metrics", b"");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("emotions_requests_total{route=\"/classify\",status=\"2xx\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("emotions_encoder_batch_texts_count"),
        "{metrics}"
    );
    assert_eq!(server.request("GET", "/nope", b"").0, 404);
}

#[test]
fn bad_requests_get_4xx_json() {
    let server = Server::start(&["--max-body-bytes", "4096", "--max-inputs", "4"]);
    let row = |n: usize| serde_json::to_string(&vec![0.01f32; n]).unwrap();
    let cases = [
        ("{\"inputs\": ", 400, "malformed_json"),
        ("{\"inputs\": 42}", 400, "invalid_request"),
        ("{\"inputs\": [\"a\", null]}", 400, "invalid_request"),
        ("{\"inputs\": []}", 400, "empty_input"),
        ("{\"embeddings\": []}", 400, "empty_input"),
        (
            "{\"inputs\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}",
            400,
            "too_many_inputs",
        ),
        (
            &format!("{{\"embeddings\": [{}]}}", row(383)),
            400,
            "wrong_embedding_width",
        ),
        ("{\"embeddings\": [[NaN]]}", 400, "malformed_json"),
        (
            "{\"inputs\": \"a\", \"threshold\": 7}",
            400,
            "invalid_threshold",
        ),
        (
            &format!("{{\"inputs\": \"{}\"}}", "x".repeat(5000)),
            413,
            "body_too_large",
        ),
    ];
    for (body, status, error_type) in cases {
        let (got, text) = server.post(body);
        assert_eq!(got, status, "{body:.80}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{body:.80}: not JSON ({e}): {text}"));
        assert_eq!(v["error_type"], error_type, "{body:.80}: {text}");
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
    let mut nan_row = vec![serde_json::json!(0.01); 384];
    nan_row[3] = serde_json::json!(1e39);
    let (got, text) = server.post(&serde_json::json!({"embeddings": [nan_row]}).to_string());
    assert_eq!(
        (
            got,
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["error_type"]
                .as_str()
                .unwrap()
        ),
        (400, "non_finite_value")
    );
    assert_eq!(server.request("GET", "/health", b"").0, 200, "still alive");
}

#[test]
fn scores_match_the_cli() {
    let server = Server::start(&[]);
    let texts = [
        "I am so proud of you",
        "",
        "what is going on?",
        "this is disgusting",
        "Thank you so much, this is wonderful!",
    ];
    let (status, body) = server.post(&serde_json::json!({"inputs": texts}).to_string());
    assert_eq!(status, 200);
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut args = vec!["classify"];
    for t in &texts {
        args.extend(["--text", t]);
    }
    let cli = json_lines(&ok(run(&args, None)));
    for (i, c) in cli.iter().enumerate() {
        assert_eq!(served[i]["labels"], c["labels"], "text {i}");
        for (label, v) in c["scores"].as_object().unwrap() {
            let d = (v.as_f64().unwrap() - served[i]["scores"][label].as_f64().unwrap()).abs();
            assert!(d <= 1e-6, "text {i} {label}: {d}");
        }
    }
}

/// 8 clients, 800 requests, every answer a 200, and the server alive after.
#[test]
fn holds_800_requests_from_8_clients() {
    let server = Server::start(&[]);
    let texts = [
        "great job!",
        "this is terrible",
        "I'm not sure what you mean",
        "love it",
        "so sad to hear that",
    ];
    let failures = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for c in 0..8 {
            let (server, failures, texts) = (&server, &failures, &texts);
            s.spawn(move || {
                for r in 0..100 {
                    let body = serde_json::json!({"inputs": [texts[(c + r) % texts.len()], texts[r % texts.len()]]}).to_string();
                    if server.post(&body).0 != 200 {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(failures.into_inner(), 0, "non-200 answers");
    assert_eq!(server.request("GET", "/health", b"").0, 200);
    let (_, metrics) = server.request("GET", "/metrics", b"");
    assert!(
        metrics.contains("emotions_requests_total{route=\"/classify\",status=\"2xx\"} 800"),
        "{metrics}"
    );
}

#[test]
fn sigterm_sighup_and_sigusr1_shut_down_gracefully() {
    for signal in ["-TERM", "-HUP", "-USR1"] {
        let mut server = Server::start(&[]);
        assert_eq!(server.request("GET", "/health", b"").0, 200);
        let status = Command::new("kill")
            .args([signal, &server.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        // Exit 0 after "shut down", not death by the signal.
        let exit = server.child.wait().unwrap();
        assert!(exit.success(), "{signal}: {exit:?}");
    }
}

/// An empty text through a tokenizer that adds no special tokens has nothing to pool: the
/// client's fault, a 4xx JSON error like every other bad input, not a 500.
#[test]
fn a_text_with_no_tokens_is_a_client_error() {
    let s = Scratch::new("serve-no-tokens");
    let dir = s.path("enc");
    minilm_copy(&dir, |f, text| {
        if f != "tokenizer.json" {
            return text;
        }
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["post_processor"] = serde_json::Value::Null;
        v.to_string()
    });
    let server = Server::start(&["--encoder", dir.to_str().unwrap()]);
    for (path, body) in [
        ("/classify", r#"{"inputs": ["fine", ""]}"#),
        ("/embed", r#"{"inputs": ""}"#),
        ("/predict", r#"{"inputs": ""}"#),
    ] {
        let (status, answer) = server.request("POST", path, body.as_bytes());
        assert_eq!(status, 422, "{path}: {answer}");
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["error_type"], "invalid_input", "{path}: {answer}");
        assert!(answer.contains("has no tokens"), "{path}: {answer}");
    }
    let (status, _) = server.request("POST", "/classify", br#"{"inputs": "fine"}"#);
    assert_eq!(status, 200);
}

/// The binary loads its models into a heap grown in huge pages
/// (`emotions::grow_heap_in_huge_pages`): blocks up to 32 MiB come from the heap (the `[heap]`
/// mapping and those the advice split off it, contiguous after it), which carries the
/// huge-page advice (`hg`) wherever the kernel takes it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_models_load_into_a_heap_advised_for_huge_pages() {
    let server = Server::start(&[]);
    let (status, body) = server.request("POST", "/embed", br#"{"inputs": ["hi there"]}"#);
    assert_eq!(status, 200, "{body}");
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", server.child.id())).unwrap();
    // (start, end, path, flags) of each mapping.
    let mut maps: Vec<(u64, u64, String, String)> = Vec::new();
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let range = parts.next().unwrap_or("");
        if let Some((lo, hi)) = range.split_once('-')
            && let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16))
        {
            maps.push((
                lo,
                hi,
                parts.nth(4).unwrap_or("").to_string(),
                String::new(),
            ));
        } else if let Some(flags) = line.strip_prefix("VmFlags:") {
            maps.last_mut().unwrap().3 = flags.trim().to_string();
        }
    }
    let first = maps
        .iter()
        .position(|m| m.2 == "[heap]")
        .expect("a [heap] mapping");
    let mut heap = vec![&maps[first]];
    for m in &maps[first + 1..] {
        if m.0 != heap.last().unwrap().1 || !(m.2.is_empty() || m.2 == "[heap]") {
            break;
        }
        heap.push(m);
    }
    let size_kb: u64 = heap.iter().map(|m| (m.1 - m.0) >> 10).sum();
    assert!(
        size_kb >= 32 << 10,
        "the heap is {size_kb} kB: the models' blocks came from elsewhere"
    );
    let thp =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    // Without it, only the huge pages inside blocks of 4 MiB or more are advised: 8 of 41 MB
    // when this was written; with it, 66 of 70 MB (the unadvised rest: the first huge page,
    // and growth since the last block of 64 KiB or more, at most the 32 MiB the heap grows by).
    if thp.contains("[always]") || thp.contains("[madvise]") {
        let advised_kb: u64 = heap
            .iter()
            .filter(|m| m.3.split(' ').any(|f| f == "hg"))
            .map(|m| (m.1 - m.0) >> 10)
            .sum();
        assert!(
            2 * advised_kb >= size_kb,
            "{advised_kb} of the heap's {size_kb} kB advised: {heap:?}"
        );
    }
}
