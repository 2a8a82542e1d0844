//! Where the encoder's time goes, per op type: `cargo run --release -p emotions-encoder
//! --example op_profile -- MODEL_DIR TEXTS_FILE [symbolic|buckets]`. Single-threaded, one line
//! per text.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(texts)) = (args.next(), args.next()) else {
        return Err("usage: op_profile MODEL_DIR TEXTS_FILE [symbolic|buckets]".into());
    };
    let plans = match args.next().as_deref() {
        Some("buckets") => emotions_encoder::PlanShapes::Buckets,
        None | Some("symbolic") => emotions_encoder::PlanShapes::Symbolic,
        Some(other) => return Err(format!("expected buckets or symbolic, found '{other}'").into()),
    };
    let texts: Vec<String> = std::fs::read_to_string(&texts)?
        .lines()
        .map(str::to_string)
        .collect();
    let start = std::time::Instant::now();
    let encoder = emotions_encoder::Encoder::from_dir_with(
        &dir,
        emotions_encoder::EncoderOptions {
            plans,
            ..Default::default()
        },
    )?;
    let loaded = start.elapsed();
    let start = std::time::Instant::now();
    encoder.op_profile(&texts)?; // the first pass also optimises a plan per shape
    let first = start.elapsed();
    let start = std::time::Instant::now();
    let rows = encoder.op_profile(&texts)?;
    let second = start.elapsed();
    println!(
        "load {loaded:.2?}; first pass {first:.2?}, second {second:.2?}: {} plans, {:.1?} each",
        encoder.cached_shapes().len(),
        first.saturating_sub(second) / encoder.cached_shapes().len().max(1) as u32
    );
    let total: f64 = rows.iter().map(|r| r.1.as_secs_f64()).sum();
    println!("{:>9} {:>6} {:>7}  op", "ms", "%", "calls");
    for (name, time, calls) in rows {
        let ms = time.as_secs_f64() * 1e3;
        println!(
            "{ms:>9.1} {:>5.1}% {calls:>7}  {name}",
            100.0 * ms / 1e3 / total
        );
    }
    println!("{:>9.1}        total", total * 1e3);
    Ok(())
}
