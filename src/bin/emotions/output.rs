//! Writing results: JSON Lines on stdout, and a progress bar for long runs.

use anyhow::Context;
use std::io::{IsTerminal, Write};

/// Runs `work` with a progress bar on stderr when stderr is a terminal and the input is large.
pub fn with_progress<T>(
    total: usize,
    work: impl FnOnce(&mut dyn FnMut(usize)) -> Result<T, emotions::Error>,
) -> anyhow::Result<T> {
    if total < 256 || !std::io::stderr().is_terminal() {
        return Ok(work(&mut |_| {})?);
    }
    let bar = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} texts, {per_sec}, eta {eta}")
            .expect("valid template"),
    );
    let result = work(&mut |done| bar.set_position(done as u64));
    bar.finish_and_clear();
    Ok(result?)
}

/// One JSON value per line on stdout, in input order.
pub fn write_json_lines<T: serde::Serialize>(
    items: impl IntoIterator<Item = T>,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for item in items {
        serde_json::to_writer(&mut out, &item).context("writing to stdout")?;
        out.write_all(b"\n").context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}
