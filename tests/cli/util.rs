//! Helpers: run the `emotions` binary in a scratch directory and read what it wrote.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_emotions");

/// Repository paths, so tests read the committed fixtures.
pub fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn head_fixture(name: &str) -> PathBuf {
    repo(&format!("crates/conformance/fixtures/heads/{name}"))
}

/// A scratch directory (a `tempfile::TempDir`, removed on drop) with helpers for its files.
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("emotions-{tag}-"))
            .tempdir()
            .unwrap();
        Scratch(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// Runs `emotions args...` with optional stdin.
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Asserts success and returns stdout.
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstderr: {}",
        o.status,
        stderr(&o)
    );
    stdout(&o)
}

/// Asserts a clean failure: non-zero exit, nothing on stdout, no panic, and `want` in stderr.
pub fn fails_with(o: Output, want: &str) {
    assert!(o.stdout.is_empty(), "partial output: {}", stdout(&o));
    fails_cleanly(&o, want);
}

/// Non-zero exit, no signal, no panic, and `want` in stderr.
fn fails_cleanly(o: &Output, want: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, stdout: {}",
        stdout(o)
    );
    assert!(o.status.code().is_some(), "killed by a signal: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(want), "want {want:?} in stderr: {err}");
}

/// Asserts a clean failure after `rows` results: non-zero exit, no panic, `want` in stderr,
/// and stdout exactly `rows` whole JSON lines (the rows before the bad one).
pub fn fails_after(o: Output, want: &str, rows: usize) -> Vec<serde_json::Value> {
    fails_cleanly(&o, want);
    let out = stdout(&o);
    assert!(out.is_empty() || out.ends_with('\n'), "a cut line: {out:?}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), rows, "{out}");
    lines
}

/// Copies the MiniLM encoder folder to `dir`, passing each JSON file's text through `edit`.
pub fn minilm_copy(dir: &Path, edit: impl Fn(&str, String) -> String) {
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    for f in [
        "model.onnx",
        "tokenizer.json",
        "config.json",
        "sentence_bert_config.json",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        let from = repo(&format!("models/minilm/{f}"));
        if f.ends_with(".json") {
            let text = edit(f, std::fs::read_to_string(&from).unwrap());
            std::fs::write(dir.join(f), text).unwrap();
        } else {
            std::fs::copy(&from, dir.join(f)).unwrap();
        }
    }
}

/// JSON lines → one `serde_json::Value` per line.
pub fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Rows of a matrix as JSON Lines.
pub fn to_jsonl(e: &emotions_io::Embeddings) -> String {
    (0..e.rows())
        .map(|r| serde_json::to_string(e.row(r)).unwrap() + "\n")
        .collect()
}

pub fn read_npy(path: &Path) -> emotions_io::Embeddings {
    emotions_io::read_npy_f32(&std::fs::read(path).unwrap(), &path.display().to_string()).unwrap()
}

/// A card-format head (`dim` → 28 labels, small weights) with `metadata` in its ONNX file.
pub fn head_onnx(dim: usize, metadata: &[(&str, &str)]) -> Vec<u8> {
    let output = emotions_train::Dense {
        inputs: dim,
        outputs: emotions::NUM_LABELS,
        weights: vec![0.01; dim * emotions::NUM_LABELS],
        bias: vec![0.0; emotions::NUM_LABELS],
    };
    emotions_train::HeadGraph {
        hidden: None,
        output,
        labels: emotions::LABELS.iter().map(|s| s.to_string()).collect(),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
    .to_onnx_bytes()
    .unwrap()
}

/// `emotions classify --text hi` with `extra` flags.
pub fn classify_hi(extra: &[&str]) -> Output {
    let mut args = vec!["classify", "--text", "hi"];
    args.extend_from_slice(extra);
    run(&args, None)
}

/// Copies `files` (paths relative to both folders) from `from` to `to`, making folders.
pub fn copy_files(from: &Path, to: &Path, files: &[&str]) {
    for f in files {
        let dest = to.join(f);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from.join(f), dest).unwrap();
    }
}

/// go_emotions dev texts, as a file of `n` lines.
pub fn dev_texts(s: &Scratch, n: usize) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo("../shared/data/go_emotions/dev.tsv")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .take(n)
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    s.write("dev.txt", lines.join("\n") + "\n")
}
