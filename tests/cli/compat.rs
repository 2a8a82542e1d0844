//! The TEI, Hugging Face Inference and OpenAI routes of `emotions serve`: their wire formats,
//! for one input and for several, and their errors. The real clients are run against the same
//! server by `tests/clients/run.sh`.

use crate::serve::Server;
use serde_json::{Value, json};

fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = server.request("POST", path, body.to_string().as_bytes());
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, value)
}

fn ok(server: &Server, path: &str, body: Value) -> Value {
    let (status, v) = post(server, path, body);
    assert_eq!(status, 200, "{path}: {v}");
    v
}

/// `[{label, score}, ...]` as (label, score) pairs.
fn pairs(v: &Value) -> Vec<(String, f32)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e.as_object().unwrap().len(), 2, "{e}");
            (
                e["label"].as_str().unwrap().to_string(),
                e["score"].as_f64().unwrap() as f32,
            )
        })
        .collect()
}

/// The scores `/classify` gives a text, by label.
fn classify_scores(server: &Server, text: &str) -> serde_json::Map<String, Value> {
    let v = ok(
        server,
        "/classify",
        json!({"inputs": text, "raw_scores": true}),
    );
    v[0]["scores"].as_object().unwrap().clone()
}

/// Labels by /classify's score, highest first.
fn ranked(scores: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut labels: Vec<(&String, f64)> = scores
        .iter()
        .map(|(l, s)| (l, s.as_f64().unwrap()))
        .collect();
    labels.sort_by(|a, b| b.1.total_cmp(&a.1));
    labels.into_iter().map(|(l, _)| l.clone()).collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

const TEXT: &str = "Thank you so much, this is wonderful!";

#[test]
fn tei_predict_scores_every_label_highest_first() {
    let server = Server::start(&[]);
    let want = classify_scores(&server, TEXT);
    // One string: one list of all 28, sorted, with /classify's probabilities.
    let one = pairs(&ok(
        &server,
        "/predict",
        json!({"inputs": TEXT, "truncate": true, "unknown": 1}),
    ));
    assert_eq!(one.len(), 28);
    assert!(one.windows(2).all(|w| w[0].1 >= w[1].1), "{one:?}");
    for (label, score) in &one {
        assert_eq!(*score, want[label].as_f64().unwrap() as f32, "{label}");
    }
    // Highest first, as /classify ranks them (gratitude, then admiration, for this text).
    let order = ranked(&want);
    assert_eq!(one[0].0, order[0]);
    assert_eq!(one[1].0, order[1]);
    // A list: one list per text, in order.
    let many = ok(
        &server,
        "/predict",
        json!({"inputs": [TEXT, "I hate this"]}),
    );
    assert_eq!(many.as_array().unwrap().len(), 2);
    assert_eq!(pairs(&many[0]), one);
    assert_eq!(pairs(&many[1]).len(), 28);
    // raw_scores: the logits, in the same order.
    let raw = pairs(&ok(
        &server,
        "/predict",
        json!({"inputs": TEXT, "raw_scores": true}),
    ));
    for ((l, p), (rl, z)) in one.iter().zip(&raw) {
        assert_eq!(l, rl);
        let back = 1.0 / (1.0 + (-*z as f64).exp());
        assert!(
            (back - *p as f64).abs() < 1e-6,
            "{l}: {z} → {back}, want {p}"
        );
    }
}

#[test]
fn hugging_face_text_classification_and_feature_extraction_share_the_root() {
    let server = Server::start(&[]);
    let want = classify_scores(&server, TEXT);
    // What InferenceClient.text_classification sends: `parameters`, maybe empty.
    let all = ok(&server, "/", json!({"inputs": TEXT, "parameters": {}}));
    assert_eq!(all.as_array().unwrap().len(), 1, "one list per input");
    let all = pairs(&all[0]);
    assert_eq!(all.len(), 28);
    for (label, score) in &all {
        assert_eq!(*score, want[label].as_f64().unwrap() as f32, "{label}");
    }
    let top = ok(
        &server,
        "/",
        json!({"inputs": TEXT, "parameters": {"top_k": 3}}),
    );
    assert_eq!(pairs(&top[0]), all[..3]);
    let soft = ok(
        &server,
        "/",
        json!({"inputs": [TEXT, "so sad"], "parameters": {"function_to_apply": "softmax"}}),
    );
    assert_eq!(soft.as_array().unwrap().len(), 2);
    for row in soft.as_array().unwrap() {
        let sum: f32 = pairs(row).iter().map(|p| p.1).sum();
        assert!((sum - 1.0).abs() < 1e-5, "softmax sums to {sum}");
    }
    let none = ok(
        &server,
        "/",
        json!({"inputs": TEXT, "parameters": {"function_to_apply": "none", "top_k": 1}}),
    );
    let (label, z) = &pairs(&none[0])[0];
    assert_eq!(*label, ranked(&want)[0]);
    assert!(*z > 0.0, "a logit, not a probability: {z}");
    // What InferenceClient.feature_extraction sends: no `parameters`.
    let features = ok(&server, "/", json!({"inputs": TEXT, "normalize": true}));
    let embedded = ok(&server, "/embed", json!({"inputs": TEXT}));
    assert_eq!(features, embedded);
}

#[test]
fn tei_embed_and_openai_embeddings_agree() {
    let server = Server::start(&[]);
    let one = ok(&server, "/embed", json!({"inputs": TEXT}));
    assert_eq!(one.as_array().unwrap().len(), 1, "always a list of lists");
    let e = floats(&one[0]);
    assert_eq!(e.len(), 384);
    let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    let two = ok(
        &server,
        "/embed",
        json!({"inputs": [TEXT, "so sad"], "normalize": false}),
    );
    assert_eq!(floats(&two[0]), e);
    // OpenAI, float: same numbers, usage from the tokenizer ([CLS] hi [SEP] = 3 tokens).
    let f = ok(
        &server,
        "/v1/embeddings",
        json!({"input": [TEXT, "hi"], "model": "m", "encoding_format": "float"}),
    );
    assert_eq!(f["object"], "list");
    assert_eq!(f["model"], "m");
    assert_eq!(f["data"][0]["object"], "embedding");
    assert_eq!(f["data"][1]["index"], 1);
    assert_eq!(floats(&f["data"][0]["embedding"]), e);
    let hi_tokens = 3;
    let text_tokens = f["usage"]["prompt_tokens"].as_u64().unwrap() - hi_tokens;
    assert!(text_tokens > 5, "{f}");
    assert_eq!(f["usage"]["total_tokens"], f["usage"]["prompt_tokens"]);
    // base64: little-endian f32 bytes of the same numbers.
    let b = ok(
        &server,
        "/v1/embeddings",
        json!({"input": TEXT, "encoding_format": "base64"}),
    );
    let b64 = b["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(decode_f32_base64(b64), e);
    assert_eq!(b["model"], "all-MiniLM-L6-v2");
}

#[test]
fn info_and_openapi_describe_every_route() {
    let server = Server::start(&["--max-inputs", "8"]);
    let (status, info) = server.request("GET", "/info", b"");
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["max_input_length"], 256);
    assert_eq!(info["max_client_batch_size"], 8);
    assert_eq!(
        info["model_type"]["classifier"]["id2label"]["0"],
        "admiration"
    );
    assert_eq!(info["model_type"]["classifier"]["label2id"]["neutral"], 27);
    assert!(info["version"].is_string());
    let (status, doc) = server.request("GET", "/openapi.json", b"");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    for path in [
        "/classify",
        "/predict",
        "/",
        "/embed",
        "/v1/embeddings",
        "/info",
        "/health",
        "/labels",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(doc["components"]["schemas"].get("PredictRequest").is_some());
}

#[test]
fn bad_requests_on_the_new_routes_get_4xx_json() {
    let server = Server::start(&["--max-body-bytes", "4096", "--max-inputs", "2"]);
    let cases: [(&str, &str, u16, &str); 14] = [
        ("/predict", "{\"inputs\": ", 400, "malformed_json"),
        ("/predict", "{\"inputs\": 42}", 400, "invalid_request"),
        ("/predict", "{\"inputs\": []}", 400, "empty_input"),
        (
            "/predict",
            "{\"inputs\": [\"a\", \"b\", \"c\"]}",
            400,
            "too_many_inputs",
        ),
        ("/predict", "{}", 400, "invalid_request"),
        (
            "/",
            "{\"inputs\": \"a\", \"parameters\": {\"top_k\": 0}}",
            400,
            "invalid_request",
        ),
        (
            "/",
            "{\"inputs\": \"a\", \"parameters\": {\"function_to_apply\": \"relu\"}}",
            400,
            "invalid_request",
        ),
        ("/", "[1, 2]", 400, "invalid_request"),
        (
            "/embed",
            "{\"inputs\": [\"a\", null]}",
            400,
            "invalid_request",
        ),
        ("/embed", "{\"inputs\": []}", 400, "empty_input"),
        (
            "/v1/embeddings",
            "{\"input\": [[101, \"a\"]]}",
            400,
            "invalid_request",
        ),
        (
            "/v1/embeddings",
            "{\"input\": \"a\", \"dimensions\": 12}",
            400,
            "invalid_request",
        ),
        (
            "/v1/embeddings",
            "{\"input\": \"a\", \"encoding_format\": \"hex\"}",
            400,
            "invalid_request",
        ),
        (
            "/v1/embeddings",
            "{\"input\": [\"a\", \"b\", \"c\"]}",
            400,
            "too_many_inputs",
        ),
    ];
    for (path, body, status, error_type) in cases {
        let (got, text) = server.request("POST", path, body.as_bytes());
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path} {body}: {text}"));
        assert_eq!(
            (got, v["error_type"].as_str()),
            (status, Some(error_type)),
            "{path} {body}: {v}"
        );
        assert!(v["error"].is_string());
    }
    for path in ["/predict", "/", "/embed", "/v1/embeddings"] {
        let big = format!("{{\"inputs\": \"{}\"}}", "a".repeat(5000));
        let (got, text) = server.request("POST", path, big.as_bytes());
        assert_eq!(got, 413, "{path}: {text}");
    }
    let (_, metrics) = server.request("GET", "/metrics", b"");
    assert!(
        metrics.contains("emotions_requests_total{route=\"/predict\",status=\"4xx\"} 6"),
        "{metrics}"
    );
}

/// Standard base64 (padded) of little-endian f32s, decoded.
fn decode_f32_base64(s: &str) -> Vec<f32> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut bytes = vec![];
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = alphabet
            .iter()
            .position(|&a| a == c)
            .expect("base64 alphabet") as u32;
        bits = bits << 6 | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            bytes.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
