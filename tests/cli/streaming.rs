//! `classify` and `embed` stream: results do not depend on the chunk size, a bad line stops the
//! run after the rows before it (or is skipped on request), and `.npy` output is patched.

use crate::util::*;
use std::io::{BufRead, Write};

#[test]
fn results_are_bit_identical_for_any_chunk_size() {
    let s = Scratch::new("chunks");
    let texts = dev_texts(&s, 70);
    let t = texts.to_str().unwrap();
    let whole = ok(run(
        &["classify", "--texts", t, "--chunk-size", "1000000"],
        None,
    ));
    assert_eq!(json_lines(&whole).len(), 70);
    for chunk in ["1", "7", "64"] {
        let got = ok(run(
            &["classify", "--texts", t, "--chunk-size", chunk],
            None,
        ));
        assert_eq!(got, whole, "--chunk-size {chunk}");
    }
    let whole = ok(run(
        &["embed", "--texts", t, "--chunk-size", "1000000"],
        None,
    ));
    let piped = ok(run(
        &["embed", "--texts", "-", "--chunk-size", "9"],
        Some(&std::fs::read(&texts).unwrap()),
    ));
    assert_eq!(piped, whole);
    // .npy: the same numbers as JSON Lines, whatever the chunking.
    let npy = s.path("e.npy");
    let n = npy.to_str().unwrap();
    ok(run(
        &["embed", "--texts", t, "--chunk-size", "16", "--output", n],
        None,
    ));
    let e = read_npy(&npy);
    assert_eq!((e.rows(), e.dim()), (70, 384));
    for (row, line) in json_lines(&whole).iter().enumerate() {
        let want: Vec<f32> = line
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(e.row(row), want, "row {row}");
    }
}

#[test]
fn bad_lines_stop_the_run_or_are_skipped() {
    let s = Scratch::new("skip");
    let f = s.write("t.txt", b"fine\nbad \xc3\x28 byte\nalso fine\n\xff\nlast\n");
    let t = f.to_str().unwrap();
    // Stops at line 2, after line 1; with a .npy, the file holds line 1's row, complete.
    fails_after(
        run(&["classify", "--texts", t, "--chunk-size", "2"], None),
        "t.txt: line 2: invalid UTF-8 at byte 4",
        1,
    );
    let npy = s.path("s.npy");
    let o = run(
        &["classify", "--texts", t, "--output", npy.to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(read_npy(&npy).rows(), 1);
    // Skipped: every other line is classified, in order, each bad one reported.
    let o = run(&["classify", "--texts", t, "--skip-bad-lines"], None);
    let out = ok(o.clone());
    let err = stderr(&o);
    for line in [2, 4] {
        let want = format!("t.txt: line {line}: invalid UTF-8");
        assert!(
            err.lines()
                .any(|l| l.starts_with("emotions: skipped ") && l.contains(&want)),
            "{err}"
        );
    }
    let good = s.write("good.txt", "fine\nalso fine\nlast\n");
    assert_eq!(
        out,
        ok(run(&["classify", "--texts", good.to_str().unwrap()], None))
    );
    // Embeddings too: a short row is skipped, the others scored.
    let row = serde_json::to_string(&vec![0.01f32; 384]).unwrap();
    let e = format!("{row}\n[1, 2]\n{row}\n");
    let o = run(
        &["classify", "--embeddings", "-", "--skip-bad-lines"],
        Some(e.as_bytes()),
    );
    assert_eq!(json_lines(&ok(o.clone())).len(), 2);
    assert!(stderr(&o).contains("stdin: line 2: expected 384 numbers, found 2"));
}

#[test]
fn npy_output_needs_a_seekable_file() {
    let s = Scratch::new("pipe");
    let fifo = s.path("out.npy");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|st| st.success()) {
        return;
    }
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo))
    };
    let o = run(
        &["embed", "--text", "hi", "--output", fifo.to_str().unwrap()],
        None,
    );
    let _ = reader.join();
    fails_with(o, "needs a regular file, not a pipe");
}

#[test]
fn a_text_the_encoder_refuses_is_named_by_its_line() {
    // A tokenizer that adds no special tokens: an empty line has no tokens to pool.
    let s = Scratch::new("notokens");
    let dir = s.path("enc");
    minilm_copy(&dir, |f, text| {
        if f != "tokenizer.json" {
            return text;
        }
        let mut tokenizer: serde_json::Value = serde_json::from_str(&text).unwrap();
        tokenizer["post_processor"] = serde_json::Value::Null;
        tokenizer.to_string()
    });
    let f = s.write("t.txt", "first\nsecond\n\nfourth\n");
    let o = run(
        &[
            "embed",
            "--texts",
            f.to_str().unwrap(),
            "--encoder",
            dir.to_str().unwrap(),
            "--chunk-size",
            "1",
        ],
        None,
    );
    fails_after(o, "input line 3: text 0 has no tokens", 2);
}

/// The first chunk is small: its results are written while the input is still open, long
/// before a whole `--chunk-size` of rows has been read.
#[test]
fn first_results_come_before_the_input_ends() {
    let s = Scratch::new("first");
    let texts = std::fs::read_to_string(dev_texts(&s, 32)).unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["classify", "--texts", "-", "--threads", "1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // 32 lines, and stdin stays open: only a first chunk of 32 can be written now.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(texts.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let lines: Vec<String> = std::io::BufReader::new(out)
            .lines()
            .take(32)
            .map(Result::unwrap)
            .collect();
        let _ = tx.send(lines);
    });
    // Generous: the point is that they come at all before end of input.
    let got = rx.recv_timeout(std::time::Duration::from_secs(300));
    drop(stdin);
    let status = child.wait().unwrap();
    let got = got.expect("no 32 result lines while stdin was still open");
    assert!(status.success());
    assert_eq!(got.len(), 32);
    for line in &got {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["scores"].is_object(), "{line}");
    }
}
