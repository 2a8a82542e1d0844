//! Any tokenizer.json and sentence-transformers configs: loading must end in an encoder or an
//! error naming a file, never a panic. The parts are separated by 0xFF bytes; the model bytes
//! are the last part (usually not ONNX, which the loader must refuse cleanly too).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The library turns panics inside tract and tokenizers into errors (its panic boundary),
    // so libfuzzer-sys's abort-on-any-panic hook is replaced: only a panic that escapes the
    // public API reaches libfuzzer-sys's own catch, which aborts, and counts as a crash.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let mut parts = data.split(|b| *b == 0xFF);
    let mut next = || parts.next().unwrap_or(&[]);
    let tokenizer_json = next();
    let texts: Vec<String> = (0..4)
        .map(|_| String::from_utf8_lossy(next()).into_owned())
        .collect();
    let model_onnx = next();
    let files = emotions_encoder::EncoderFiles {
        name: "fuzz",
        model_onnx,
        tokenizer_json,
        config_json: &texts[0],
        sentence_bert_config_json: &texts[1],
        modules_json: &texts[2],
        pooling_config_json: &texts[3],
        int8_calibration_json: None,
    };
    if let Ok(encoder) = emotions_encoder::Encoder::from_files(files) {
        let _ = encoder.embed(&["hello", ""]);
    }
});
