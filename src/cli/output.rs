//! What commands print on standard output. A reader that stops early (`scmpl predict V | head -1`)
//! closes the pipe: that is not an error, the command ends quietly with exit 0.

use std::fmt::Display;
use std::io::Write;

/// Standard output was closed by its reader.
#[derive(Debug, thiserror::Error)]
#[error("standard output closed")]
pub struct Closed;

/// Writes `text` to standard output (no newline added), flushed.
pub fn print(text: impl Display) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match write!(out, "{text}").and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Closed.into()),
        r => Ok(r?),
    }
}

/// Writes `text` and a newline to standard output.
pub fn line(text: impl Display) -> anyhow::Result<()> {
    print(format_args!("{text}\n"))
}

/// Whether `e` is, or was caused by, a closed standard output.
pub fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Closed>())
}
