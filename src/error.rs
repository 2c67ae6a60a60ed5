//! The one error type of minipull, and the exit codes it maps to.

use std::fmt;

/// What went wrong, in the terms a script calling minipull cares about.
/// Each kind has a documented exit code (see README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything not covered below.
    Other,
    /// Bad command line or invalid image reference.
    Usage,
    /// Repository, tag, digest or platform does not exist.
    NotFound,
    /// Authentication or authorization refused.
    Auth,
    /// Unreachable registry, timeouts, retries exhausted.
    Network,
    /// Digest or size mismatch, malformed or unsupported manifest.
    Integrity,
    /// Cannot write OUTDIR, disk full.
    Storage,
    /// Signature verification was asked for and no valid signature found.
    Untrusted,
    /// Not a failure of the pull: the image is pulled (and installed), and
    /// the upkeep after the commit point (`--prune`, removing the old tree,
    /// moving the record in) failed; reported as warnings.
    Upkeep,
}

impl Kind {
    /// The process exit code for this kind of failure.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Other => 1,
            Kind::Usage => 2,
            Kind::NotFound => 3,
            Kind::Auth => 4,
            Kind::Network => 5,
            Kind::Integrity => 6,
            Kind::Storage => 7,
            Kind::Untrusted => 8,
            Kind::Upkeep => 9,
        }
    }
}

/// An error with a kind, a message saying what happened, and optionally a hint
/// saying what the user can do about it.
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    pub hint: Option<String>,
}

/// Result alias used throughout minipull.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    /// Attach advice for the user, printed under the message.
    pub fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    /// Prefix the message with what we were doing when it happened.
    pub fn context(mut self, what: impl fmt::Display) -> Error {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(Kind::Usage, message)
    }
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(Kind::NotFound, message)
    }
    pub fn auth(message: impl Into<String>) -> Error {
        Error::new(Kind::Auth, message)
    }
    pub fn network(message: impl Into<String>) -> Error {
        Error::new(Kind::Network, message)
    }
    pub fn integrity(message: impl Into<String>) -> Error {
        Error::new(Kind::Integrity, message)
    }
    pub fn other(message: impl Into<String>) -> Error {
        Error::new(Kind::Other, message)
    }

    /// A local storage failure; `ENOSPC` gets a message of its own because
    /// the fix (free space) differs from a permission problem.
    pub fn storage(what: impl fmt::Display, err: &std::io::Error) -> Error {
        let e = Error::new(Kind::Storage, format!("{what}: {err}"));
        match err.raw_os_error() {
            Some(28) => e.hint("the disk is full; free some space and run the same command again to resume"),
            Some(13) | Some(30) | Some(1) => {
                e.hint("check that OUTDIR is writable by this user and not on a read-only filesystem")
            }
            _ => e,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Messages quote what registries and layers sent: no control
        // character of theirs reaches the terminal.
        write!(f, "{}", Clean(&self.message))?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {}", Clean(h))?;
        }
        Ok(())
    }
}

/// Text for a terminal: control characters (escape sequences, carriage
/// returns, newlines) shown as escapes, the rest as it is.
pub struct Clean<'a>(pub &'a str);

impl fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_str(c.encode_utf8(&mut [0; 4]))?;
            }
        }
        Ok(())
    }
}

/// A string in double quotes with quotes, backslashes and control
/// characters escaped: how messages show names that came from outside.
/// (Not `{:?}`: release builds drop Debug formatting to save space.)
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_debug())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_documented() {
        let kinds = [
            Kind::Other,
            Kind::Usage,
            Kind::NotFound,
            Kind::Auth,
            Kind::Network,
            Kind::Integrity,
            Kind::Storage,
            Kind::Untrusted,
            Kind::Upkeep,
        ];
        let codes: Vec<i32> = kinds.iter().map(|k| k.exit_code()).collect();
        assert_eq!(codes, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn outside_text_cannot_reach_the_terminal_raw() {
        let e = Error::integrity("media type \u{1b}[2Jevil\r\nline").hint("bell\u{7}");
        let shown = e.to_string();
        assert!(!shown.chars().any(|c| c.is_control() && c != '\n'), "{shown}");
        assert_eq!(shown.matches('\n').count(), 1, "{shown}");
        assert!(shown.contains("\\u{1b}[2Jevil\\r\\nline"), "{shown}");
        assert_eq!(Quoted("a\"b\u{1b}").to_string(), "\"a\\\"b\\u{1b}\"");
    }

    #[test]
    fn disk_full_gets_a_hint() {
        let e = Error::storage("writing blob", &std::io::Error::from_raw_os_error(28));
        assert_eq!(e.kind, Kind::Storage);
        assert!(e.to_string().contains("disk is full"));
    }
}
