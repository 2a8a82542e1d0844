//! The `emotions` command line: a thin layer over the library crates.

use std::io::Write;
use std::process::ExitCode;

mod args;
mod classify;
mod serve;
mod training;

fn main() -> ExitCode {
    let cli = args::parse();
    let result = match cli.command {
        args::Command::Classify(a) => a.resolve().and_then(classify::classify),
        args::Command::Embed(a) => a.resolve().and_then(classify::embed),
        args::Command::Train(a) => a.resolve().and_then(training::train),
        args::Command::Tune(a) => a.resolve().and_then(training::tune),
        args::Command::Eval(a) => a.resolve().and_then(training::eval),
        args::Command::Serve(a) => a.resolve().and_then(serve::serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "emotions: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A closed stdout (`emotions ... | head`) is not an error worth reporting.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
