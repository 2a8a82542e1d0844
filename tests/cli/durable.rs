//! Nothing is destroyed or hidden: an output that is an input is refused, a killed run leaves
//! every finished row readable and `--resume` completes it, a closed pipe is a quiet end, and
//! inputs of any size (`/dev/zero`, a 100 MB line) end in an answer or a clear error.

use crate::util::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn an_output_that_is_an_input_is_refused_and_the_input_kept() {
    let s = Scratch::new("same-file");
    let texts = dev_texts(&s, 3);
    let npy = s.path("e.npy");
    let n = npy.to_str().unwrap();
    ok(run(
        &["embed", "--texts", texts.to_str().unwrap(), "--output", n],
        None,
    ));
    let before = std::fs::read(&npy).unwrap();
    let link = s.path("link.npy");
    std::os::unix::fs::symlink(&npy, &link).unwrap();
    let hard = s.path("hard.npy");
    std::fs::hard_link(&npy, &hard).unwrap();
    for out in [&npy, &link, &hard] {
        for resume in [false, true] {
            let mut args = vec!["classify", "--embeddings", n, "--output"];
            args.push(out.to_str().unwrap());
            if resume {
                args.push("--resume");
            }
            fails_with(run(&args, None), "is the same file as the input");
        }
    }
    // A texts file as the JSON Lines output.
    let jsonl = s.write("t.jsonl", "not even texts\n");
    let o = run(
        &[
            "embed",
            "--texts",
            jsonl.to_str().unwrap(),
            "--output",
            jsonl.to_str().unwrap(),
        ],
        None,
    );
    fails_with(o, "is the same file as the input");
    assert_eq!(std::fs::read(&jsonl).unwrap(), b"not even texts\n");
    assert_eq!(std::fs::read(&npy).unwrap(), before);
}

/// The row count a streamed `.npy`'s header declares, if the file has one yet.
fn header_rows(path: &Path) -> Option<usize> {
    let bytes = std::fs::read(path).ok()?;
    let header = std::str::from_utf8(bytes.get(10..128)?).ok()?;
    let shape = header.split("'shape': (").nth(1)?;
    shape.split(',').next()?.trim().parse().ok()
}

fn complete_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Starts `args`, waits until `written(output)` reaches `at`, then kills it with SIGKILL.
fn kill_when(args: &[&str], output: &Path, written: fn(&Path) -> usize, at: usize) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while written(output) < at && start.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Child::kill sends SIGKILL: no handler runs, nothing is flushed or patched.
    let _ = child.kill();
    child.wait().unwrap();
}

#[test]
fn a_killed_run_keeps_its_finished_rows_and_resume_completes_it() {
    let s = Scratch::new("resume");
    let texts = dev_texts(&s, 160);
    let t = texts.to_str().unwrap();
    let common = ["--texts", t, "--chunk-size", "8", "--threads", "1"];
    for (command, ext, cols) in [
        ("classify", "npy", 28),
        ("embed", "jsonl", 0),
        ("classify", "jsonl", 0),
    ] {
        let whole = s.path(&format!("whole-{command}.{ext}"));
        let mut args = vec![command];
        args.extend(common);
        args.extend(["--output", whole.to_str().unwrap()]);
        ok(run(&args, None));
        let whole_bytes = std::fs::read(&whole).unwrap();
        let written: fn(&Path) -> usize = if ext == "npy" {
            |p| header_rows(p).unwrap_or(0)
        } else {
            complete_lines
        };
        // Killed at the start, after the first chunk, and in the middle.
        for at in [0, 8, 72] {
            let out = s.path(&format!("killed-{command}-{at}.{ext}"));
            let mut args = vec![command];
            args.extend(common);
            args.extend(["--output", out.to_str().unwrap()]);
            kill_when(&args, &out, written, at);
            if ext == "npy" {
                // Every row the header counts is there, and is the uninterrupted run's.
                if let Some(rows) = header_rows(&out) {
                    let end = 128 + rows * cols * 4;
                    let bytes = std::fs::read(&out).unwrap();
                    assert!(
                        bytes.len() >= end,
                        "{rows} rows counted, {} bytes",
                        bytes.len()
                    );
                    assert_eq!(bytes[128..end], whole_bytes[128..end], "killed at {at}");
                }
            } else if let Ok(bytes) = std::fs::read(&out) {
                let kept = bytes.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
                assert_eq!(bytes[..kept], whole_bytes[..kept], "killed at {at}");
            }
            args.push("--resume");
            ok(run(&args, None));
            assert!(
                std::fs::read(&out).unwrap() == whole_bytes,
                "{command} {ext}, killed after {at} rows: resumed output differs from one run's"
            );
            // Resuming a complete output adds nothing.
            ok(run(&args, None));
            assert!(std::fs::read(&out).unwrap() == whole_bytes);
        }
    }
    // The output of a different, shorter input is not silently taken for this one's.
    let short = s.write("short.txt", "one\ntwo\n");
    let whole = s.path("whole-classify.npy");
    fails_with(
        run(
            &[
                "classify",
                "--texts",
                short.to_str().unwrap(),
                "--output",
                whole.to_str().unwrap(),
                "--resume",
            ],
            None,
        ),
        "the output holds 160 rows, but the input ends after 2 good rows",
    );
}

#[test]
fn a_closed_pipe_is_a_quiet_end() {
    let s = Scratch::new("pipe-end");
    let texts = dev_texts(&s, 400);
    let rows = serde_json::to_string(&vec![0.01f32; 384]).unwrap() + "\n";
    let e = s.write("e.jsonl", rows.repeat(20_000));
    for args in [
        vec!["classify", "--embeddings", e.to_str().unwrap()],
        vec![
            "embed",
            "--texts",
            texts.to_str().unwrap(),
            "--chunk-size",
            "16",
        ],
    ] {
        let mut child = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read one line, then close the pipe, as `| head -1` does.
        let mut out = child.stdout.take().unwrap();
        let mut first = [0u8; 16];
        std::io::Read::read_exact(&mut out, &mut first).unwrap();
        drop(out);
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
    }
}

#[test]
fn endless_and_oversized_inputs_stop_at_their_cap() {
    let zero = "/dev/zero";
    fails_with(
        run(&["classify", "--texts", zero], None),
        "/dev/zero: line 1: longer than 268435456 bytes, the most read for one text",
    );
    fails_with(
        run(&["classify", "--embeddings", zero], None),
        "/dev/zero: line 1: longer than 90112 bytes, more than a row of 384 numbers can need",
    );
    fails_with(
        run(&["classify", "--model", zero, "--text", "hi"], None),
        "/dev/zero: cannot read model file: longer than 268435456 bytes, the most a head can need",
    );
    fails_with(
        run(&["classify", "--thresholds", zero, "--text", "hi"], None),
        "longer than 1048576 bytes, the most a thresholds file can need",
    );
    // One JSON Lines row far wider than the model's: refused at the cap, not parsed whole.
    let s = Scratch::new("caps");
    let wide = s.write("wide.jsonl", format!("[{}0]\n", "0.5, ".repeat(100_000)));
    fails_with(
        run(&["classify", "--embeddings", wide.to_str().unwrap()], None),
        "line 1: longer than 90112 bytes",
    );
}

/// Peak resident memory of a command, in KiB, from GNU time (Debian's `time`).
fn peak_rss_kib(args: &[&str]) -> Option<(u64, std::process::Output)> {
    if !Path::new("/usr/bin/time").exists() {
        return None;
    }
    let o = Command::new("/usr/bin/time")
        .args(["-f", "peak-rss-kib %M"])
        .arg(BIN)
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let kib = err
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))?
        .trim()
        .parse()
        .ok()?;
    Some((kib, o))
}

#[test]
fn a_100_mb_line_is_read_as_far_as_truncation_keeps() {
    let s = Scratch::new("long-line");
    // One line: 100 MB without a space, then the words that a model would see if the run
    // were read as one word; and 100 MB of ordinary text.
    let mut run_line = "a".repeat(100_000_000);
    run_line.push_str(" thank you so much\n");
    // A WordPiece vocabulary reads any word over 100 characters as one [UNK].
    let run_short = "a".repeat(200) + " thank you so much";
    let run_file = s.write("run.txt", &run_line);
    drop(run_line);
    let words = "i am so happy for you, this is wonderful news ";
    let prose = words.repeat(100_000_000 / words.len()) + "\n";
    let prose_file = s.write("prose.txt", &prose);
    // 4,600 bytes of it are already more than the 256 tokens kept.
    let prose_short = words.repeat(100).trim_end().to_string();
    drop(prose);
    for (file, short) in [(&run_file, &run_short), (&prose_file, &prose_short)] {
        let args = [
            "classify",
            "--texts",
            file.to_str().unwrap(),
            "--threads",
            "2",
        ];
        let long = match peak_rss_kib(&args) {
            Some((kib, o)) => {
                assert!(kib < 400 * 1024, "{}: peak {kib} KiB", file.display());
                ok(o)
            }
            None => ok(run(&args, None)),
        };
        // The same text as far as truncation keeps it: the same scores, to the bit.
        let short = ok(run(&["classify", "--text", short, "--threads", "2"], None));
        assert_eq!(long, short, "{}", file.display());
    }
}
