//! Any bytes as a LoRA adapter file: reading must end in an adapter or an error, never a
//! panic, an abort or an unbounded allocation. A read adapter's factors have the shapes it
//! declares, and writing it back reads back the same adapter.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(adapter) = emotions_runtime::LoraAdapter::from_safetensors(data, "fuzz.safetensors")
    else {
        return;
    };
    for d in &adapter.deltas {
        assert_eq!(d.a.len(), d.rank * d.inputs, "{}", d.target);
        assert_eq!(d.b.len(), d.outputs * d.rank, "{}", d.target);
        assert!(d.a.iter().chain(&d.b).all(|x| x.is_finite()), "{}", d.target);
    }
    let again = emotions_runtime::LoraAdapter::from_safetensors(&adapter.to_safetensors(), "again")
        .expect("a written adapter reads back");
    assert_eq!(again, adapter);
});
