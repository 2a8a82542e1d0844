//! Any bytes as a head file: loading must end in a head or an error, never a panic, an abort
//! or an unbounded allocation; a loaded head must score a row with probabilities.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The library turns panics inside tract and tokenizers into errors (its panic boundary),
    // so libfuzzer-sys's abort-on-any-panic hook is replaced: only a panic that escapes the
    // public API reaches libfuzzer-sys's own catch, which aborts, and counts as a crash.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    for expected in [Some(384), None] {
        let Ok(head) = emotions_runtime::Head::builder_from_bytes(data.to_vec(), "fuzz.onnx")
            .expected_dim(expected)
            .threads(1)
            .build()
        else {
            continue;
        };
        let row = vec![0.1f32; head.input_dim()];
        if let Ok(scores) = head.predict(&row, 1) {
            assert!(scores.iter().all(|p| (0.0..=1.0).contains(p)), "{scores:?}");
        }
    }
});
