//! `--long-texts truncate|chunk`: a long text's late emotion, the count on stderr, texts that
//! fit unchanged, and the flags' checks.

use crate::util::*;

/// Neutral go_emotions train texts (label 27 alone), joined until the text is about
/// `words` words long, then a last paragraph of thanks.
fn late_thanks(words: usize) -> String {
    let train = std::fs::read_to_string(repo("../shared/data/go_emotions/train.tsv")).unwrap();
    let mut filler: Vec<&str> = Vec::new();
    for line in train.lines() {
        let mut cols = line.split('\t');
        let (text, labels) = (cols.next().unwrap(), cols.next().unwrap());
        if labels == "27" {
            filler.extend(text.split_whitespace());
        }
        if filler.len() >= words {
            break;
        }
    }
    filler.truncate(words);
    format!(
        "{} Thank you so much for all your help! I really appreciate everything you did for us. Thanks again, we are so grateful.",
        filler.join(" ")
    )
}

fn gratitude(line: &serde_json::Value) -> (f64, bool) {
    let score = line["scores"]["gratitude"].as_f64().unwrap();
    let labels = line["labels"].as_array().unwrap();
    (score, labels.iter().any(|l| l == "gratitude"))
}

/// Some 2,000 tokens, the thanks only at the end: `chunk` finds gratitude and `truncate`
/// cannot, at several lengths, so that it does not hang on where the last window starts.
#[test]
fn chunk_finds_the_late_emotion_truncate_does_not() {
    let s = Scratch::new("late-thanks");
    let texts: Vec<String> = [1500, 1550, 1600, 1650, 1700]
        .iter()
        .map(|&w| late_thanks(w))
        .collect();
    let file = s.write("long.txt", texts.join("\n") + "\n");
    let file = file.to_str().unwrap();

    let truncated = run(&["classify", "--texts", file], None);
    let err = stderr(&truncated);
    assert!(
        err.contains("5 of 5 texts were longer than the encoder's 256 tokens and truncated"),
        "{err}"
    );
    for line in json_lines(&ok(truncated)) {
        let (score, found) = gratitude(&line);
        assert!(
            !found && score < 0.1,
            "truncate read the end: gratitude {score}"
        );
    }

    let chunked = run(
        &["classify", "--texts", file, "--long-texts", "chunk"],
        None,
    );
    let err = stderr(&chunked);
    assert!(
        err.contains("5 of 5 texts were longer") && err.contains("read in windows"),
        "{err}"
    );
    for (i, line) in json_lines(&ok(chunked)).iter().enumerate() {
        let (score, found) = gratitude(line);
        assert!(
            found,
            "text {i}: chunk missed the thanks: gratitude {score}"
        );
    }
}

/// Texts that fit the window give the same bytes in both modes, for classify and embed, and
/// nothing on stderr.
#[test]
fn texts_that_fit_are_identical_in_both_modes() {
    let s = Scratch::new("fit");
    let texts = dev_texts(&s, 300);
    let texts = texts.to_str().unwrap();
    for command in ["classify", "embed"] {
        let truncate = run(&[command, "--texts", texts], None);
        assert_eq!(stderr(&truncate), "", "{command}");
        let chunk = run(
            &[
                command,
                "--texts",
                texts,
                "--long-texts",
                "chunk",
                "--stride",
                "10",
            ],
            None,
        );
        assert_eq!(stderr(&chunk), "", "{command}");
        assert!(ok(truncate) == ok(chunk), "{command}: the outputs differ");
    }
}

/// `embed --long-texts chunk`: a long text's embedding is its windows' token-weighted mean,
/// normalised as MiniLM's are, and no longer its first window's.
#[test]
fn chunked_embeddings_are_unit_length_and_read_the_whole_text() {
    let text = late_thanks(1500);
    let first = json_lines(&ok(run(&["embed", "--text", &text], None)));
    let chunk = run(&["embed", "--text", &text, "--long-texts", "chunk"], None);
    assert!(
        stderr(&chunk).contains("1 of 1 text was longer"),
        "{}",
        stderr(&chunk)
    );
    let chunk = json_lines(&ok(chunk));
    let vec = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (a, b) = (vec(&first[0]), vec(&chunk[0]));
    assert_eq!(b.len(), 384);
    let norm = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    let cos: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    assert!(
        cos < 0.999,
        "the chunked embedding is the first window's: cos {cos}"
    );
}

#[test]
fn long_text_flags_are_checked() {
    fails_with(
        run(&["classify", "--text", "hi", "--stride", "8"], None),
        "--stride: only with --long-texts chunk",
    );
    fails_with(
        run(&["classify", "--text", "hi", "--aggregate", "mean"], None),
        "--aggregate: only with --long-texts chunk",
    );
    fails_with(
        run(
            &[
                "embed",
                "--text",
                "hi",
                "--long-texts",
                "chunk",
                "--stride",
                "254",
            ],
            None,
        ),
        "a stride of 254 tokens: expected fewer than the 254 tokens of text a window holds",
    );
    let npy = head_fixture("inputs.npy");
    fails_with(
        run(
            &[
                "classify",
                "--embeddings",
                npy.to_str().unwrap(),
                "--long-texts",
                "chunk",
            ],
            None,
        ),
        "--long-texts: only for texts, not --embeddings",
    );
}

/// `--aggregate mean` never scores a label above `max` does.
#[test]
fn mean_is_at_most_max() {
    let text = late_thanks(1500);
    let score = |how: &str| {
        let out = ok(run(
            &[
                "classify",
                "--text",
                &text,
                "--long-texts",
                "chunk",
                "--aggregate",
                how,
            ],
            None,
        ));
        json_lines(&out)[0]["scores"].clone()
    };
    let (max, mean) = (score("max"), score("mean"));
    for label in emotions::LABELS {
        let (a, b) = (max[label].as_f64().unwrap(), mean[label].as_f64().unwrap());
        assert!(b <= a, "{label}: mean {b} > max {a}");
    }
    assert!(mean["gratitude"].as_f64().unwrap() < max["gratitude"].as_f64().unwrap());
}

/// The routes: `truncate: false` refuses a long text as TEI does (422 `validation`, TEI's
/// message), `long_texts: "chunk"` reads it whole with the CLI's result, the default cuts it,
/// and `/metrics` counts both.
#[test]
fn routes_refuse_chunk_or_truncate_long_texts_and_count_them() {
    let server = crate::serve::Server::start(&[]);
    let long = late_thanks(1500);
    let body = |extra: &str| format!(r#"{{"inputs": {}{extra}}}"#, serde_json::json!(long));
    for (path, extra) in [
        ("/classify", r#", "truncate": false"#),
        ("/predict", r#", "truncate": false"#),
        ("/embed", r#", "truncate": false"#),
        ("/", r#", "parameters": {}, "truncate": false"#),
        ("/", r#", "truncate": false, "long_texts": "truncate""#),
    ] {
        let (status, text) = server.request("POST", path, body(extra).as_bytes());
        assert_eq!(status, 422, "{path} {extra}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error_type"], "validation", "{text}");
        let error = v["error"].as_str().unwrap();
        assert!(
            error.starts_with("`inputs` must have less than 256 tokens. Given: "),
            "{error}"
        );
    }

    let cli = json_lines(&ok(run(
        &["classify", "--text", &long, "--long-texts", "chunk"],
        None,
    )));
    let (status, text) = server.request(
        "POST",
        "/classify",
        body(r#", "long_texts": "chunk", "truncate": false"#).as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let served: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        served[0]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "gratitude"),
        "{text}"
    );
    for label in emotions::LABELS {
        let (a, b) = (
            served[0]["scores"][label].as_f64().unwrap(),
            cli[0]["scores"][label].as_f64().unwrap(),
        );
        assert!((a - b).abs() <= 1e-6, "{label}: served {a}, CLI {b}");
    }
    let (status, text) = server.request("POST", "/classify", body("").as_bytes());
    assert_eq!(status, 200, "{text}");
    let cut: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        !cut[0]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "gratitude"),
        "{text}"
    );

    let (status, text) = server.request(
        "POST",
        "/predict",
        body(r#", "long_texts": "chunk""#).as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let ranked: serde_json::Value = serde_json::from_str(&text).unwrap();
    let gratitude = ranked
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["label"] == "gratitude")
        .unwrap();
    assert!(gratitude["score"].as_f64().unwrap() > 0.68, "{text}");

    let cli = json_lines(&ok(run(
        &["embed", "--text", &long, "--long-texts", "chunk"],
        None,
    )));
    let (status, text) = server.request(
        "POST",
        "/embed",
        body(r#", "long_texts": "chunk""#).as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let served: serde_json::Value = serde_json::from_str(&text).unwrap();
    let worst = (0..384)
        .map(|i| (served[0][i].as_f64().unwrap() - cli[0][i].as_f64().unwrap()).abs())
        .fold(0f64, f64::max);
    assert!(worst <= 1e-6, "/embed chunk vs the CLI: worst {worst}");
    let openai = format!(
        r#"{{"input": {}, "long_texts": "chunk"}}"#,
        serde_json::json!(long)
    );
    let (status, text) = server.request("POST", "/v1/embeddings", openai.as_bytes());
    assert_eq!(status, 200, "{text}");

    let (_, metrics) = server.request("GET", "/metrics", b"");
    assert!(
        metrics.contains("emotions_long_texts_total{read=\"truncated\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("emotions_long_texts_total{read=\"chunked\"} 4\n"),
        "{metrics}"
    );
}

/// `--per-sentence`: a line per sentence with its input line, index and text, each scored
/// exactly as that sentence alone; an empty line is still one (empty) sentence.
#[test]
fn per_sentence_scores_each_sentence_as_itself() {
    let s = Scratch::new("per-sentence");
    let file = s.write(
        "t.txt",
        "I loved the first half. But the ending made me so angry! Thanks for the tickets though.\n\nWow.\n",
    );
    let out = json_lines(&ok(run(
        &[
            "classify",
            "--texts",
            file.to_str().unwrap(),
            "--per-sentence",
        ],
        None,
    )));
    let want = [
        (1, 0, "I loved the first half."),
        (1, 1, "But the ending made me so angry!"),
        (1, 2, "Thanks for the tickets though."),
        (2, 0, ""),
        (3, 0, "Wow."),
    ];
    assert_eq!(out.len(), want.len());
    for (got, (line, sentence, text)) in out.iter().zip(want) {
        assert_eq!(
            (got["line"].as_u64(), got["sentence"].as_u64()),
            (Some(line), Some(sentence))
        );
        assert_eq!(got["text"], text);
        let alone = json_lines(&ok(run(&["classify", "--text", text], None)));
        assert_eq!(got["scores"], alone[0]["scores"], "{text}");
        assert_eq!(got["labels"], alone[0]["labels"], "{text}");
    }
    let late = json_lines(&ok(run(
        &["classify", "--text", &late_thanks(1500), "--per-sentence"],
        None,
    )));
    let last = late.last().unwrap();
    assert!(
        last["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "gratitude"),
        "{last}"
    );

    let npy = s.path("out.npy");
    fails_with(
        run(
            &[
                "classify",
                "--text",
                "a. b.",
                "--per-sentence",
                "--output",
                npy.to_str().unwrap(),
            ],
            None,
        ),
        "--per-sentence writes JSON Lines",
    );
    assert!(!npy.exists(), "a refused run wrote its output");
}
