//! The `emotions` command line: a thin layer over the library crates. Flags are parsed and
//! checked first (`args`), then models and data are loaded (`load`), then a command runs.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

mod args;
mod classify;
mod load;
mod output;
mod serve;
mod training;

/// Loading the models fills ~70 MB of fresh memory: in huge pages, a cold `classify --text`
/// took 0.138 s instead of 0.152 s (medians of 25 alternated runs, AVX2 Zen 3).
#[global_allocator]
static ALLOCATOR: emotions::HugePageAlloc = emotions::HugePageAlloc;

fn main() -> ExitCode {
    // Streaming and serving run batch after batch for hours: keep the heap from growing.
    emotions::limit_heap_arenas();
    // Loading the models fills ~70 MB of fresh blocks: from a heap in huge pages.
    emotions::grow_heap_in_huge_pages();
    // A panic inside tract or tokenizers that a boundary catches is reported once, as the
    // error it becomes; its trace is for `-v` or RUST_BACKTRACE.
    emotions::quiet_caught_panics();
    // A forced instruction-set class the CPU lacks is refused before any flag is read.
    let result = emotions::Isa::selected()
        .map_err(anyhow::Error::new)
        .and_then(|_| args::parse())
        .inspect(|command| emotions::show_caught_panics(command.verbose()))
        .and_then(|command| match command {
            args::HiArgs::Classify(plan) => classify::classify(plan),
            args::HiArgs::Embed(plan) => classify::embed(plan),
            args::HiArgs::Train(plan) => training::train(plan),
            args::HiArgs::Tune(plan) => training::tune(plan),
            args::HiArgs::Calibrate(plan) => training::calibrate(plan),
            args::HiArgs::Average(plan) => training::average(plan),
            args::HiArgs::Eval(plan) => training::eval(plan),
            args::HiArgs::Serve(plan) => serve::serve(plan),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "emotions: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A closed stdout (`emotions ... | head`) is not an error worth reporting, however the OS
/// error came back wrapped.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == BrokenPipe)
            || e.downcast_ref::<emotions_io::IoError>()
                .and_then(emotions_io::IoError::io_error)
                .is_some_and(|io| io.kind() == BrokenPipe)
            || e.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(BrokenPipe)
    })
}
