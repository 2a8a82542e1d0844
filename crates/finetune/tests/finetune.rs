//! The training model against the runtime: it embeds as `emotions` does before training, and
//! after training the runtime with the adapter merged (exact mode) or beside the weights
//! (integer mode) embeds as the training model does.

use emotions_encoder::{Encoder, EncoderAdapter, EncoderOptions, Precision};
use emotions_finetune::{FineTuneOptions, LoraBert, TokenIds, Trainer};
use std::path::PathBuf;

fn minilm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/minilm")
}

const TEXTS: [&str; 6] = [
    "I love this so much!",
    "This is the worst day ever.",
    "What? I did not expect that at all",
    "thanks",
    "I'm scared of what happens next, honestly.",
    "ok",
];

fn exact() -> EncoderOptions {
    EncoderOptions {
        precision: Precision::F32,
        ..Default::default()
    }
}

fn setup(options: &FineTuneOptions) -> (Encoder, Trainer, Vec<TokenIds>) {
    let encoder = Encoder::from_dir_with(minilm(), exact()).unwrap();
    let bytes = std::fs::read(minilm().join("model.onnx")).unwrap();
    let weights = emotions_runtime::encoder_weights(&bytes, "model.onnx").unwrap();
    let model = LoraBert::new(weights, 12, 3, &[0.3, 0.5, 0.2], options).unwrap();
    let ids: Vec<TokenIds> = TEXTS
        .iter()
        .map(|t| encoder.tokenize(t).unwrap().ids)
        .collect();
    let trainer = Trainer::new(model, options.clone(), TEXTS.len()).unwrap();
    (encoder, trainer, ids)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn training_model_embeds_as_the_runtime_before_and_after_training() {
    let options = FineTuneOptions {
        rank: 4,
        learning_rate: 1e-2,
        head_learning_rate: 1e-2,
        warmup_steps: 1,
        epochs: 3,
        batch_size: 3,
        ..Default::default()
    };
    let (encoder, mut trainer, ids) = setup(&options);
    let before = trainer.embeddings(&ids, 4).unwrap();
    let reference = encoder.embed(&TEXTS).unwrap();
    let d = max_diff(&before, &reference);
    assert!(d < 1e-5, "candle vs runtime before training: {d}");

    // Three labels; the targets are arbitrary but fixed.
    let targets: Vec<f32> = (0..TEXTS.len() * 3)
        .map(|i| (i % 4 == 0) as u8 as f32)
        .collect();
    let mut losses = vec![];
    for epoch in 1..=3 {
        let report = trainer
            .epoch(epoch, &ids, &targets, 3, &mut |_, _, _| {})
            .unwrap();
        losses.push(report.mean_loss);
    }
    assert!(losses[2] < losses[0], "the loss should fall: {losses:?}");
    let after = trainer.embeddings(&ids, 4).unwrap();
    assert!(
        max_diff(&after, &before) > 1e-3,
        "training should move the embeddings"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adapter.safetensors");
    let adapter = trainer.model.adapter(Default::default()).unwrap();
    assert_eq!(adapter.deltas.len(), 36);
    std::fs::write(&path, adapter.to_safetensors()).unwrap();
    let adapter = EncoderAdapter::from_file(&path).unwrap();
    for (precision, tolerance) in [(Precision::F32, 1e-5), (Precision::Int16, 1e-3)] {
        let options = EncoderOptions {
            precision,
            ..Default::default()
        };
        let adapted =
            Encoder::from_dir_file_adapted(minilm(), None::<&str>, options, Some(&adapter))
                .unwrap();
        let runtime = adapted.embed(&TEXTS).unwrap();
        let d = max_diff(&runtime, &after);
        assert!(
            d < tolerance,
            "{precision:?}: runtime with the adapter vs training model: {d}"
        );
    }
}

#[test]
fn scores_are_probabilities_in_row_order() {
    let options = FineTuneOptions::default();
    let (_, trainer, ids) = setup(&options);
    let all = trainer.scores(&ids, 2).unwrap();
    assert_eq!(all.len(), TEXTS.len() * 3);
    assert!(all.iter().all(|p| (0.0..=1.0).contains(p)));
    // Untrained: the head is zero, so every row scores the label priors.
    for row in all.chunks(3) {
        for (p, prior) in row.iter().zip([0.3f32, 0.5, 0.2]) {
            assert!((p - prior).abs() < 1e-3, "{p} vs {prior}");
        }
    }
    let one = trainer.scores(&ids[2..3], 1).unwrap();
    assert_eq!(one, all[6..9].to_vec());
}

#[test]
fn bad_options_and_weights_are_errors() {
    let bad = FineTuneOptions {
        rank: 0,
        ..Default::default()
    };
    assert!(bad.validate().unwrap_err().to_string().contains("rank"));
    let lr = FineTuneOptions {
        learning_rate: f64::NAN,
        ..Default::default()
    };
    assert!(lr.validate().is_err());
    let err = LoraBert::new(vec![], 12, 3, &[0.1; 3], &FineTuneOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("word_embeddings"), "{err}");
}

#[test]
fn averaged_weights_are_swapped_in_and_back_out() {
    let options = FineTuneOptions {
        rank: 4,
        learning_rate: 1e-2,
        head_learning_rate: 1e-2,
        warmup_steps: 1,
        epochs: 2,
        batch_size: 2,
        dropout: 0.1,
        ema: 0.9,
        ..Default::default()
    };
    let (encoder, mut trainer, ids) = setup(&options);
    let targets: Vec<f32> = (0..TEXTS.len() * 3)
        .map(|i| (i % 3 == 0) as u8 as f32)
        .collect();
    for epoch in 1..=2 {
        trainer
            .epoch(epoch, &ids, &targets, 3, &mut |_, _, _| {})
            .unwrap();
    }
    assert!(
        trainer.averages_are_detached(),
        "averages must not grow a graph"
    );
    let trained = trainer.embeddings(&ids, 4).unwrap();
    let (averaged, adapter) = trainer
        .with_averaged_weights(|t| {
            Ok::<_, emotions_finetune::FineTuneError>((
                t.embeddings(&ids, 4)?,
                t.model.adapter(Default::default())?,
            ))
        })
        .unwrap();
    assert!(
        max_diff(&averaged, &trained) > 1e-4,
        "the average should differ from the last step's weights"
    );
    assert_eq!(trainer.embeddings(&ids, 4).unwrap(), trained, "restored");
    // The adapter written inside is the averaged model's, as the runtime reads it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adapter.safetensors");
    std::fs::write(&path, adapter.to_safetensors()).unwrap();
    let adapter = EncoderAdapter::from_file(&path).unwrap();
    let adapted =
        Encoder::from_dir_file_adapted(minilm(), None::<&str>, exact(), Some(&adapter)).unwrap();
    let d = max_diff(&adapted.embed(&TEXTS).unwrap(), &averaged);
    assert!(d < 1e-5, "runtime with the averaged adapter: {d}");
    drop(encoder);
}
