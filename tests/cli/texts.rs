//! Text in: `classify --text/--texts`, `embed`, encoder choice and encoder/head mismatches.

use crate::util::*;

#[test]
fn gratitude_is_found_in_thanks() {
    let out = ok(run(
        &[
            "classify",
            "--text",
            "Thank you so much, this is wonderful!",
        ],
        None,
    ));
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 1);
    let labels: Vec<&str> = rows[0]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(labels.contains(&"gratitude"), "{out}");
}

#[test]
fn empty_lines_are_empty_texts_and_order_is_kept() {
    let s = Scratch::new("texts");
    let f = s.write(
        "t.txt",
        "I am so angry right now\n\nthis is hilarious lol\n",
    );
    let file_rows = json_lines(&ok(run(
        &["classify", "--texts", f.to_str().unwrap()],
        None,
    )));
    assert_eq!(
        file_rows.len(),
        3,
        "the empty line is classified, not skipped"
    );
    let inline = json_lines(&ok(run(
        &[
            "classify",
            "--text",
            "I am so angry right now",
            "--text",
            "",
            "--text",
            "this is hilarious lol",
        ],
        None,
    )));
    assert_eq!(file_rows, inline);
    let stdin = json_lines(&ok(run(
        &["classify", "--texts", "-"],
        Some(b"I am so angry right now\n\nthis is hilarious lol\n"),
    )));
    assert_eq!(file_rows, stdin);
    let score = |row: &serde_json::Value, l: &str| row["scores"][l].as_f64().unwrap();
    assert!(score(&file_rows[0], "anger") > score(&file_rows[2], "anger"));
    assert!(score(&file_rows[2], "amusement") > score(&file_rows[0], "amusement"));
}

#[test]
fn invalid_utf8_names_the_line() {
    let s = Scratch::new("texts");
    let f = s.write("t.txt", b"fine\nalso fine\nbad \xc3\x28 byte\n");
    fails_after(
        run(&["classify", "--texts", f.to_str().unwrap()], None),
        "t.txt: line 3: invalid UTF-8 at byte 4",
        2,
    );
    fails_after(
        run(&["embed", "--texts", f.to_str().unwrap()], None),
        "line 3: invalid UTF-8",
        2,
    );
}

#[test]
fn embed_writes_unit_vectors_as_jsonl_or_npy() {
    let s = Scratch::new("embed");
    let f = s.write("t.txt", "hello world\nsad day\n");
    let rows = json_lines(&ok(run(&["embed", "--texts", f.to_str().unwrap()], None)));
    assert_eq!(rows.len(), 2);
    let npy = s.path("e.npy");
    ok(run(
        &[
            "embed",
            "--texts",
            f.to_str().unwrap(),
            "--output",
            npy.to_str().unwrap(),
        ],
        None,
    ));
    let e = read_npy(&npy);
    assert_eq!((e.rows(), e.dim()), (2, 384));
    for (r, row) in rows.iter().enumerate() {
        let v: Vec<f32> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(v, e.row(r), "JSON and .npy carry the same f32 values");
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "MiniLM normalises: {norm}");
    }
    // Embeddings fed back in give the same scores as text through the plain head, which is
    // the default for embeddings (text goes to the tuned model by default).
    let plain_head = repo("models/head/head.onnx");
    let via_text = json_lines(&ok(run(
        &[
            "classify",
            "--model",
            plain_head.to_str().unwrap(),
            "--texts",
            f.to_str().unwrap(),
        ],
        None,
    )));
    let via_npy = json_lines(&ok(run(
        &["classify", "--embeddings", npy.to_str().unwrap()],
        None,
    )));
    assert_eq!(via_text, via_npy);
}

#[test]
fn encoder_folder_problems_name_the_file() {
    let s = Scratch::new("enc");
    let dir = s.path("enc");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(repo("models/minilm/model.onnx"), dir.join("model.onnx")).unwrap();
    std::fs::copy(
        repo("models/minilm/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    fails_with(
        run(
            &[
                "classify",
                "--text",
                "hi",
                "--encoder",
                dir.to_str().unwrap(),
            ],
            None,
        ),
        "encoder folder is missing config.json",
    );
    for f in ["config.json", "sentence_bert_config.json", "modules.json"] {
        std::fs::copy(repo(&format!("models/minilm/{f}")), dir.join(f)).unwrap();
    }
    fails_with(
        run(
            &["embed", "--text", "hi", "--encoder", dir.to_str().unwrap()],
            None,
        ),
        "encoder folder is missing 1_Pooling/config.json",
    );
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    std::fs::copy(
        repo("models/minilm/1_Pooling/config.json"),
        dir.join("1_Pooling/config.json"),
    )
    .unwrap();
    // Complete now (with the int8 calibration that the embedded default has too, so that
    // both run the same precision on any CPU): the folder works like the embedded default.
    std::fs::copy(
        repo("models/minilm/calibration.json"),
        dir.join("calibration.json"),
    )
    .unwrap();
    let from_dir = ok(run(
        &[
            "embed",
            "--text",
            "hi there",
            "--encoder",
            dir.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(from_dir, ok(run(&["embed", "--text", "hi there"], None)));
}

fn head_with(dim: usize, encoder: &str) -> Vec<u8> {
    head_onnx(dim, &[("encoder", encoder)])
}

#[test]
fn encoder_head_mismatch_is_caught() {
    let s = Scratch::new("mismatch");
    let other = s.write("bge.onnx", head_with(384, "BAAI/bge-small-en-v1.5"));
    let o = classify_hi(&["--model", other.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("warning: the head was trained on 'BAAI/bge-small-en-v1.5' embeddings but the encoder is 'all-MiniLM-L6-v2'"), "{}", stderr(&o));
    let same = s.write(
        "minilm.onnx",
        head_with(384, "sentence-transformers/all-MiniLM-L6-v2"),
    );
    let o = classify_hi(&["--model", same.to_str().unwrap()]);
    assert!(
        o.status.success() && !stderr(&o).contains("warning"),
        "{}",
        stderr(&o)
    );
    let wide = s.write("wide.onnx", head_with(768, "all-mpnet-base-v2"));
    fails_with(
        classify_hi(&["--model", wide.to_str().unwrap()]),
        "input 'logits' must be 384 wide, found 768",
    );
}
