//! TEI's `/tokenize`, `/decode` and `/embed_all`, and OpenAI's token-id input and
//! `/v1/models`, against the real server: the tokenizer's own ids and offsets, round trips,
//! agreement with `/embed` and the CLI, and the errors.

use crate::serve::Server;
use serde_json::{Value, json};

fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = server.request("POST", path, body.to_string().as_bytes());
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    (status, value)
}

fn ids(tokens: &Value) -> Vec<u64> {
    tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn tokenize_decode_and_token_ids_agree_with_the_texts() {
    let server = Server::start(&[]);
    let text = "Héllo wörld, thank you!";
    let (status, tokens) = post(&server, "/tokenize", json!({"inputs": text}));
    assert_eq!(status, 200, "{tokens}");
    let row = &tokens[0];
    let n = row.as_array().unwrap().len();
    assert_eq!(
        (row[0]["text"].as_str(), row[n - 1]["text"].as_str()),
        (Some("[CLS]"), Some("[SEP]"))
    );
    for t in row.as_array().unwrap() {
        let special = t["special"].as_bool().unwrap();
        assert_eq!(special, t["start"].is_null() && t["stop"].is_null(), "{t}");
        if !special {
            let (a, b) = (
                t["start"].as_u64().unwrap() as usize,
                t["stop"].as_u64().unwrap() as usize,
            );
            assert_eq!(t["text"], text[a..b], "{t}");
        }
    }
    // The same ids the encoder embeds, and without special tokens the inner ones.
    let (_, bare) = post(
        &server,
        "/tokenize",
        json!({"inputs": [text], "add_special_tokens": false}),
    );
    assert_eq!(ids(&bare[0]), ids(row)[1..n - 1]);

    let (status, decoded) = post(&server, "/decode", json!({"ids": ids(row)}));
    assert_eq!(status, 200);
    assert_eq!(decoded, json!(["hello world, thank you!"]));
    let (_, kept) = post(
        &server,
        "/decode",
        json!({"ids": [ids(row)], "skip_special_tokens": false}),
    );
    assert_eq!(kept, json!(["[CLS] hello world, thank you! [SEP]"]));

    // Token ids in, the text's embedding out, to the bit; order kept when mixed.
    let (status, mixed) = post(
        &server,
        "/v1/embeddings",
        json!({"input": [ids(row), text, ids(row)]}),
    );
    assert_eq!(status, 200, "{mixed}");
    let (_, embedded) = post(&server, "/embed", json!({"inputs": text}));
    for i in 0..3 {
        assert_eq!(mixed["data"][i]["embedding"], embedded[0], "input {i}");
        assert_eq!(mixed["data"][i]["index"], i);
    }
    assert_eq!(mixed["usage"]["prompt_tokens"], 3 * n);

    // A long text is tokenised whole, past the window.
    let long = "word ".repeat(600);
    let (_, all) = post(&server, "/tokenize", json!({"inputs": long}));
    assert_eq!(all[0].as_array().unwrap().len(), 602);

    let (status, models) = post(
        &server,
        "/tokenize",
        json!({"inputs": "x", "prompt_name": "query"}),
    );
    assert_eq!(
        (status, models["error_type"].as_str()),
        (422, Some("validation")),
        "{models}"
    );
    let (status, models) = server.request("GET", "/v1/models", b"");
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&models).unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "all-MiniLM-L6-v2");
}

#[test]
fn embed_all_pools_to_the_embedding() {
    let server = Server::start(&[]);
    let texts = ["Thank you so much!", "I can't believe they cancelled it."];
    let (status, states) = post(&server, "/embed_all", json!({"inputs": texts}));
    assert_eq!(status, 200, "{states}");
    let (_, tokens) = post(&server, "/tokenize", json!({"inputs": texts}));
    let (_, embedded) = post(&server, "/embed", json!({"inputs": texts}));
    for i in 0..2 {
        let rows = states[i].as_array().unwrap();
        assert_eq!(rows.len(), tokens[i].as_array().unwrap().len());
        // MiniLM's pooling: the mean over tokens, then unit length.
        let mut mean = vec![0f64; 384];
        for r in rows {
            let r = r.as_array().unwrap();
            assert_eq!(r.len(), 384);
            for (m, x) in mean.iter_mut().zip(r) {
                *m += x.as_f64().unwrap() / rows.len() as f64;
            }
        }
        let norm = mean.iter().map(|x| x * x).sum::<f64>().sqrt();
        let worst = mean
            .iter()
            .zip(embedded[i].as_array().unwrap())
            .map(|(m, e)| (m / norm - e.as_f64().unwrap()).abs())
            .fold(0f64, f64::max);
        assert!(
            worst <= 1e-6,
            "text {i}: pooled /embed_all vs /embed, worst {worst:.2e}"
        );
    }
    let long = "word ".repeat(600);
    let (status, refused) = post(
        &server,
        "/embed_all",
        json!({"inputs": long, "truncate": false}),
    );
    assert_eq!(
        (status, refused["error_type"].as_str()),
        (422, Some("validation")),
        "{refused}"
    );
    let (_, cut) = post(&server, "/embed_all", json!({"inputs": long}));
    assert_eq!(cut[0].as_array().unwrap().len(), 256);
}

#[test]
fn bad_token_ids_are_client_errors() {
    let server = Server::start(&[]);
    for (path, body, status, error_type) in [
        (
            "/decode",
            json!({"ids": [101, 40000]}),
            422,
            "invalid_input",
        ),
        ("/decode", json!({"ids": []}), 400, "empty_input"),
        ("/decode", json!({"ids": [[101], []]}), 400, "empty_input"),
        ("/decode", json!({"ids": [1.5]}), 400, "invalid_request"),
        ("/v1/embeddings", json!({"input": [[]]}), 400, "empty_input"),
        (
            "/v1/embeddings",
            json!({"input": [101, 30522]}),
            422,
            "invalid_input",
        ),
        (
            "/v1/embeddings",
            json!({"input": [vec![101u32; 257]]}),
            422,
            "invalid_input",
        ),
        (
            "/v1/embeddings",
            json!({"input": [-1]}),
            400,
            "invalid_request",
        ),
    ] {
        let (got, v) = post(&server, path, body.clone());
        assert_eq!(
            (got, v["error_type"].as_str()),
            (status, Some(error_type)),
            "{path} {body}: {v}"
        );
    }
    let (_, v) = post(&server, "/v1/embeddings", json!({"input": [101, 30522]}));
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("id 30522 at position 1: expected ids below 30522"),
        "{v}"
    );
}
