//! The `scmpl` binary: parses flags ([`cli`]), calls the library, and maps the outcome to an
//! exit code: 0 all good, 1 could not run, 2 some inputs failed. A closed standard output
//! (`scmpl predict V | head -1`) ends the command quietly with 0.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use scmpl::exit;

fn main() -> ExitCode {
    // Bad flags are "could not run" (1), not clap's default 2, which means "some inputs failed" here.
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::CANNOT_RUN as u8 } else { exit::OK as u8 });
        }
    };
    cli::init_logging(args.verbose);
    #[cfg(all(feature = "cuda", feature = "train"))]
    scmpl::train::accel::load_cuda_library();
    match cli::run(args) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) if cli::output::is_closed(&e) => ExitCode::from(exit::OK as u8),
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::from(exit::CANNOT_RUN as u8)
        }
    }
}

/// The error and its causes in one line, each said once: a cause whose text its error already
/// holds (an I/O error quoted in its file's message) is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
