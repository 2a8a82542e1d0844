//! The `emotions` command line: a thin layer over the library crates.

use std::io::Write;
use std::process::ExitCode;

mod args;
mod classify;

fn main() -> ExitCode {
    let cli = args::parse();
    let result = match cli.command {
        args::Command::Classify(a) => a.resolve().and_then(|c| classify::run(&c)),
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
