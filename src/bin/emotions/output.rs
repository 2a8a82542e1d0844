//! A progress bar for long runs whose size is known (embedding a split).

use std::io::IsTerminal;

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
