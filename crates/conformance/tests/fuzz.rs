//! Deterministic mutation fuzzing of every parser that reads outside input: JSON Lines and
//! `.npy` embeddings, thresholds.json, and the server's request bodies. Each target gets
//! `CASES` inputs made by mutating valid seeds (bit flips, byte insertions and deletions,
//! truncation, splices). Every input must give `Ok` or `Err`; a panic fails the test.
//! Inputs that once crashed a parser would be added to the seeds as regression cases.

const CASES: usize = 20_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Interesting bytes for text formats.
const TOKENS: &[&[u8]] = &[
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b"\"",
    b"\n",
    b"\r\n",
    b"NaN",
    b"1e39",
    b"-0",
    b"null",
    b"\xff",
    b"\xc3",
    b"embedding",
    b"inputs",
    b"embeddings",
    b"9999999999999999999999",
    b"\\u0000",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            3 => {
                let n = rng.below(v.len() + 1);
                v.truncate(n);
            }
            4 => {
                let i = rng.below(v.len() + 1);
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(i..i, t.iter().copied());
            }
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let (i, j) = (rng.below(v.len() + 1), rng.below(other.len() + 1));
                v.truncate(i);
                v.extend_from_slice(&other[j..]);
            }
        }
    }
    v
}

fn row(n: usize) -> String {
    serde_json::to_string(&(0..n).map(|i| i as f32 * 0.25 - 1.0).collect::<Vec<_>>()).unwrap()
}

#[test]
fn jsonl_reader_never_panics() {
    let seeds: Vec<Vec<u8>> = vec![
        format!("{}\n{}\n", row(4), row(4)).into_bytes(),
        format!("{{\"embedding\": {}}}\n", row(4)).into_bytes(),
        b"[1e-3, -2.5e10, 0, 7]\r\n".to_vec(),
        Vec::new(),
    ];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut ok = 0;
    for _ in 0..CASES {
        let input = mutate(&mut rng, &seeds);
        if let Ok(e) = emotions_io::read_embeddings_jsonl(&input[..], "fuzz", None) {
            assert_eq!(e.data().len(), e.rows() * e.dim());
            assert!(e.data().iter().all(|x| x.is_finite()));
            ok += 1;
        }
    }
    assert!(
        ok > 0 && ok < CASES,
        "mutations should both pass and fail: {ok} ok"
    );
}

#[test]
fn npy_reader_never_panics() {
    let dir = std::env::temp_dir().join(format!("emotions-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut seeds = vec![];
    for (rows, cols) in [(2, 3), (1, 384), (0, 5)] {
        let p = dir.join("seed.npy");
        let data: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        emotions_io::write_npy_f32(&p, rows, cols, &data).unwrap();
        seeds.push(std::fs::read(&p).unwrap());
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut ok = 0;
    for _ in 0..CASES {
        let input = mutate(&mut rng, &seeds);
        if let Ok(e) = emotions_io::read_npy_f32(&input, "fuzz") {
            assert_eq!(e.data().len(), e.rows() * e.dim());
            ok += 1;
        }
    }
    assert!(ok > 0 && ok < CASES, "{ok} ok");
}

#[test]
fn thresholds_reader_never_panics() {
    let seeds = vec![
        emotions_labels::Thresholds::card_defaults()
            .to_json_pretty()
            .into_bytes(),
        serde_json::to_string(&[0.5f32; 28]).unwrap().into_bytes(),
    ];
    let mut rng = Rng(0x0bad_5eed_0bad_5eed);
    let mut ok = 0;
    for _ in 0..CASES {
        let input = mutate(&mut rng, &seeds);
        let text = String::from_utf8_lossy(&input);
        if let Ok(t) = emotions_labels::Thresholds::from_json_str(&text, "fuzz") {
            assert!(t.as_array().iter().all(|v| (0.0..=1.0).contains(v)));
            ok += 1;
        }
    }
    assert!(ok > 0 && ok < CASES, "{ok} ok");
}

#[test]
fn request_parser_never_panics() {
    let seeds: Vec<Vec<u8>> = vec![
        br#"{"inputs": ["so happy", "so sad"], "threshold": 0.3}"#.to_vec(),
        br#"{"inputs": "one text", "top_k": 3, "raw_scores": true}"#.to_vec(),
        format!("{{\"embeddings\": [{}, {}]}}", row(4), row(4)).into_bytes(),
    ];
    let mut rng = Rng(0x5eed_1234_5eed_1234);
    let mut ok = 0;
    for _ in 0..CASES {
        let input = mutate(&mut rng, &seeds);
        match emotions_server::parse_request(&input, 8, 4) {
            Ok(r) => {
                if let emotions_server::Inputs::Embeddings { rows, data } = &r.inputs {
                    assert_eq!(data.len(), rows * 4);
                }
                ok += 1;
            }
            Err(e) => assert!(!e.error_type().is_empty()),
        }
    }
    assert!(ok > 0 && ok < CASES, "{ok} ok");
}
