//! The errors the core returns. Messages name the problem, never the input key.

use thiserror::Error;

/// Why a string is not a well-formed tenantgate key.
///
/// Each variant's message says which part is wrong; none of them echoes the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum KeyFormatError {
    /// The key does not start with `tg_`.
    #[error("key does not start with 'tg_'")]
    Prefix,
    /// The environment after `tg_` is not `live` or `test`, or is not followed by `_`.
    #[error("key environment is not 'live' or 'test'")]
    Environment,
    /// The random part plus checksum has the wrong length.
    #[error("key has the wrong length")]
    Length,
    /// A character outside `0-9A-Za-z` after the environment.
    #[error("key contains a character outside 0-9A-Za-z")]
    Alphabet,
    /// The trailing checksum does not match the rest of the key.
    #[error("key checksum does not match")]
    Checksum,
}

/// Every error the core returns.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoreError {
    /// A malformed key (see [`KeyFormatError`]).
    #[error(transparent)]
    KeyFormat(#[from] KeyFormatError),
    /// A caller-supplied argument out of range; the message names the argument.
    #[error("{0}")]
    InvalidArgument(&'static str),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// `Result` with [`CoreError`].
pub type CoreResult<T> = Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_do_not_echo_input() {
        let all = [
            KeyFormatError::Prefix,
            KeyFormatError::Environment,
            KeyFormatError::Length,
            KeyFormatError::Alphabet,
            KeyFormatError::Checksum,
        ];
        for e in all {
            let msg = CoreError::from(e).to_string();
            assert!(msg.starts_with("key "), "{msg}");
        }
    }
}
