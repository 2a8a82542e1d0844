//! Any bytes as a request body, for every route's parser: a request or a 4xx-class error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The library turns panics inside tract and tokenizers into errors (its panic boundary),
    // so libfuzzer-sys's abort-on-any-panic hook is replaced: only a panic that escapes the
    // public API reaches libfuzzer-sys's own catch, which aborts, and counts as a crash.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let _ = emotions_server::parse_request(data, 64, 384);
    let _ = serde_json::from_slice::<emotions_server::PredictRequest>(data);
    let _ = serde_json::from_slice::<emotions_server::TextClassificationRequest>(data);
    let _ = serde_json::from_slice::<emotions_server::EmbedRequest>(data);
    let _ = serde_json::from_slice::<emotions_server::OpenAiEmbeddingsRequest>(data);
});
