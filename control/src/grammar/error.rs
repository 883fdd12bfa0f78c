//! The one error type of the grammar: the exact text ipvsadm writes to
//! stderr and the status it exits with.
//!
//! ipvsadm has three ways to fail on the client side, and a compatible
//! client must reproduce each one's text and status:
//! * `fail()`: a validation message, exit status 2;
//! * a popt error (`<word>: unknown option`, `<word>: missing argument`,
//!   `<word>: option does not take an argument`), exit status 255;
//! * a first option that is not a command: the "Try `ipvsadm -h'" hint,
//!   exit status 255.

use std::fmt;

/// Hint printed when the first option is not a command (or `-R` is nested).
pub const TRY_HELP: &str = "Try `ipvsadm -h' or 'ipvsadm --help' for more information.";

/// A rejected command line.
///
/// `message` is what ipvsadm prints to stderr **without** the final newline
/// that ipvsadm appends (print it with `eprintln!`). One message keeps an
/// embedded newline because ipvsadm's own format string has one:
/// `-6 used before -f\n` (ipvsadm prints an empty line after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrammarError {
    pub message: String,
    /// Exit status ipvsadm uses: 2 for validation, 255 for popt-level errors.
    pub exit_code: i32,
    /// For `-R` input only: the 1-based line that was rejected. ipvsadm
    /// itself does not say which line failed; a client may add a context
    /// line of its own after `message`.
    pub line: Option<usize>,
}

/// popt's error kinds that ipvsadm can meet, with `poptStrerror`'s text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoptFailure {
    UnknownOption,
    MissingArgument,
    UnwantedArgument,
}

impl PoptFailure {
    pub const fn text(self) -> &'static str {
        match self {
            PoptFailure::UnknownOption => "unknown option",
            PoptFailure::MissingArgument => "missing argument",
            PoptFailure::UnwantedArgument => "option does not take an argument",
        }
    }
}

impl GrammarError {
    /// ipvsadm's `fail(2, ...)`.
    pub fn fail(message: impl Into<String>) -> GrammarError {
        GrammarError {
            message: message.into(),
            exit_code: 2,
            line: None,
        }
    }

    /// A popt error about the command-line word `word`.
    pub fn popt(word: &str, failure: PoptFailure) -> GrammarError {
        GrammarError {
            message: format!("{word}: {}", failure.text()),
            exit_code: 255,
            line: None,
        }
    }

    /// ipvsadm's `tryhelp_exit(argv[0], -1)`.
    pub fn try_help() -> GrammarError {
        GrammarError {
            message: TRY_HELP.to_string(),
            exit_code: 255,
            line: None,
        }
    }

    pub(crate) fn at_line(mut self, line: usize) -> GrammarError {
        self.line = Some(line);
        self
    }
}

impl fmt::Display for GrammarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GrammarError {}
