//! Any bytes as `.npy`, JSON Lines embeddings or texts, whole or row by row: every row is a
//! value or an error naming its line or row, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The library turns panics inside tract and tokenizers into errors (its panic boundary),
    // so libfuzzer-sys's abort-on-any-panic hook is replaced: only a panic that escapes the
    // public API reaches libfuzzer-sys's own catch, which aborts, and counts as a crash.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    if let Ok(e) = emotions_io::read_npy_f32(data, "fuzz.npy") {
        assert_eq!(e.data().len(), e.rows() * e.dim());
    }
    if let Ok(rows) = emotions_io::NpyRows::new(data, "fuzz.npy", None) {
        let dim = rows.dim();
        for row in rows.take(10_000) {
            if let Ok(row) = row {
                assert_eq!(row.len(), dim);
            }
        }
    }
    for expected in [Some(3), None] {
        let _ = emotions_io::read_embeddings_jsonl(data, "fuzz.jsonl", expected);
        for row in emotions_io::JsonlRows::new(data, "fuzz.jsonl", expected) {
            if let (Ok(row), Some(d)) = (row, expected) {
                assert_eq!(row.len(), d);
            }
        }
    }
    let whole = emotions_io::read_texts(data, "fuzz.txt");
    let rows: Vec<_> = emotions_io::TextRows::new(data, "fuzz.txt").collect();
    if let Ok(texts) = whole {
        assert_eq!(texts.len(), rows.len());
    }
});
