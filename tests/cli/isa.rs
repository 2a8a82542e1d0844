//! `EMOTIONS_ISA`: a class the CPU has is run and reported; one it lacks, or a wrong name, is
//! refused before anything runs.

use crate::util::{BIN, json_lines, stderr, stdout};
use std::process::{Command, Output};

const TEXT: &str = "Thank you so much, this is wonderful!";

fn classify_with(isa: &str) -> Output {
    classify_with_args(isa, &[])
}

fn classify_with_args(isa: &str, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["classify", "-v", "--text", TEXT])
        .args(extra)
        .env("EMOTIONS_ISA", isa)
        .output()
        .unwrap()
}

fn scores(o: &Output) -> Vec<f64> {
    let row = &json_lines(&stdout(o))[0];
    let scores = row["scores"].as_object().unwrap();
    scores.values().map(|v| v.as_f64().unwrap()).collect()
}

/// Every class this CPU runs gives the same labels, and scores within the kernels' tolerance of
/// the widest class's at the same precision (the integer projections are identical on every
/// class; the f32 kernels' copies differ in rounding only). Int16 against f32 is the
/// conformance suite's question, with its own tolerance: on an AVX2-only CPU the two
/// precisions' scores differed by 1.2e-4 here.
#[test]
fn every_class_the_cpu_runs_is_run_and_reported() {
    let classes = emotions::Isa::all_available();
    assert!(
        classes
            .iter()
            .any(|c| c.class() == emotions::IsaClass::Portable)
    );
    // The integer kernels on every class, forced; then each class's own default precision.
    let int16 = ["--precision", "int16"];
    let widest = classify_with_args(&classes[0].to_string(), &int16);
    assert!(widest.status.success(), "{}", stderr(&widest));
    let widest_f32 = classify_with_args(&classes[0].to_string(), &["--precision", "f32"]);
    assert!(widest_f32.status.success(), "{}", stderr(&widest_f32));
    let want = |precision: &str| match precision {
        "int16" => scores(&widest),
        _ => scores(&widest_f32),
    };
    let runs = classes.iter().flat_map(|isa| {
        let default = emotions::Precision::for_isa(isa.class()).name();
        [(*isa, &int16[..], "int16"), (*isa, &[][..], default)]
    });
    for (isa, extra, precision) in runs {
        let o = classify_with_args(&isa.to_string(), extra);
        assert!(o.status.success(), "{isa}: {}", stderr(&o));
        let reported = format!("kernels {isa}, precision {precision}");
        assert!(stderr(&o).contains(&reported), "{isa}: {}", stderr(&o));
        let row = &json_lines(&stdout(&o))[0];
        assert_eq!(
            row["labels"],
            json_lines(&stdout(&widest))[0]["labels"],
            "{isa}"
        );
        let worst = scores(&o)
            .iter()
            .zip(&want(precision))
            .map(|(a, b)| (a - b).abs())
            .fold(0f64, f64::max);
        // The stated text-to-scores tolerances (docs/CONFORMANCE.md). int16: its activation
        // scales follow the f32 kernels' rounding, which differs per class (portable against
        // avx2 int16 differed by 1.7e-4 on a Zen 3). int8 (avx512-vnni's default), against
        // f32: 2.4e-2 at worst over the 5,426 dev texts.
        let tolerance = match precision {
            "int16" => 1e-3,
            "int8" => 3e-2,
            _ => 1e-4,
        };
        assert!(
            worst <= tolerance,
            "{isa} {precision}: worst score difference {worst:e}"
        );
    }
}

#[test]
fn a_class_the_cpu_lacks_or_a_wrong_name_is_refused() {
    let o = classify_with("sse9");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("EMOTIONS_ISA is 'sse9'") && err.contains("avx2"),
        "{err}"
    );
    assert!(stdout(&o).is_empty());
    let available = emotions::Isa::all_available();
    for class in emotions::IsaClass::ALL {
        if available.iter().any(|i| i.class() == class) {
            continue;
        }
        let o = classify_with(class.name());
        assert_eq!(o.status.code(), Some(1), "{class}: {}", stderr(&o));
        assert!(stderr(&o).contains("this CPU lacks"), "{}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
}
