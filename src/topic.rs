//! Topic and pattern syntax: validation and matching.
//!
//! A topic is a non-empty sequence of `.`-separated tokens, such as `orders.created.eu`. Every
//! token is non-empty and made of printable, non-whitespace characters; the whole topic is at
//! most [`MAX_TOPIC_LEN`] bytes. Not printable: control characters, invisible format
//! characters (Unicode category Cf, such as the zero-width space U+200B or the byte-order mark
//! U+FEFF, which would make two topics that look the same differ) and noncharacters (such as
//! U+FFFF).
//!
//! A *pattern* (what a subscription names) may also use two wildcard tokens, with NATS
//! semantics: `*` matches exactly one token, and `>` matches one or more trailing tokens and
//! may only be the last token. A wildcard must be a whole token (`orders*` is invalid). A
//! published topic may contain neither.
//!
//! This module is pure: no locks, no threads, no allocation. `publish` validates every topic,
//! so the common case (short ASCII topics) is a single pass over the bytes.

use crate::error::TopicError;

/// The longest topic or pattern accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// Checks that `topic` is a valid topic to publish to: no wildcards.
///
/// [`Broker::publish`](crate::Broker::publish) runs this check itself; call it to validate
/// input up front.
///
/// # Errors
///
/// Returns the first problem found, with its byte position; see [`TopicError`].
///
/// # Examples
///
/// ```
/// use syncmq::{validate_topic, TopicError};
///
/// assert!(validate_topic("sensors.kitchen.temperature").is_ok());
/// assert_eq!(
///     validate_topic("sensors kitchen"),
///     Err(TopicError::InvalidCharacter { character: ' ', position: 7 })
/// );
/// assert_eq!(
///     validate_topic("sensors.*"),
///     Err(TopicError::Wildcard { character: '*', position: 8 })
/// );
/// ```
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    validate(topic, Syntax::Topic)
}

/// Checks that `pattern` is a valid subscription pattern: a topic whose tokens may also be the
/// wildcards `*` (one token) and `>` (one or more trailing tokens, last token only).
///
/// [`Broker::subscribe`](crate::Broker::subscribe) runs this check itself.
///
/// # Errors
///
/// Returns the first problem found, with its byte position; see [`TopicError`].
///
/// # Examples
///
/// ```
/// use syncmq::{validate_pattern, TopicError};
///
/// assert!(validate_pattern("orders.*.eu").is_ok());
/// assert!(validate_pattern("orders.>").is_ok());
/// assert_eq!(validate_pattern("orders.>.eu"), Err(TopicError::WildcardNotLast { position: 7 }));
/// assert_eq!(
///     validate_pattern("orders*"),
///     Err(TopicError::PartialWildcard { character: '*', position: 6 })
/// );
/// ```
pub fn validate_pattern(pattern: &str) -> Result<(), TopicError> {
    validate(pattern, Syntax::Pattern)
}

/// Checks a queue group's name: non-empty and at most [`MAX_TOPIC_LEN`] bytes. Any other
/// character is allowed (a bridge's NATS groups also exclude whitespace: `bridge.rs`).
pub(crate) fn validate_group(group: &str) -> Result<(), TopicError> {
    if group.is_empty() {
        return Err(TopicError::Empty);
    }
    if group.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: group.len() });
    }
    Ok(())
}

/// Whether `topic` matches `pattern`, with NATS semantics.
///
/// Both are assumed valid (see [`validate_topic`] and [`validate_pattern`]); for invalid input
/// the answer is unspecified but this never panics. A pattern without wildcards matches only
/// the identical topic.
///
/// # Examples
///
/// ```
/// use syncmq::pattern_matches;
///
/// assert!(pattern_matches("orders.*", "orders.new"));
/// assert!(!pattern_matches("orders.*", "orders"));
/// assert!(!pattern_matches("orders.*", "orders.new.eu"));
/// assert!(pattern_matches("orders.>", "orders.new.eu"));
/// assert!(!pattern_matches("orders.>", "orders"));
/// ```
pub fn pattern_matches(pattern: &str, topic: &str) -> bool {
    let mut topic_tokens = topic.split('.');
    for pattern_token in pattern.split('.') {
        match (pattern_token, topic_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(token)) if literal == token => {}
            _ => return false,
        }
    }
    topic_tokens.next().is_none()
}

/// Whether a valid pattern contains a wildcard token.
pub(crate) fn has_wildcard(pattern: &str) -> bool {
    pattern.split('.').any(|token| token == "*" || token == ">")
}

/// Which syntax to check against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// A published topic: wildcards are errors.
    Topic,
    /// A subscription pattern: whole-token wildcards allowed.
    Pattern,
}

fn validate(text: &str, syntax: Syntax) -> Result<(), TopicError> {
    if text.is_empty() {
        return Err(TopicError::Empty);
    }
    if text.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: text.len() });
    }
    // Fast path: ASCII only. Non-ASCII characters need a `char` to be classified, so any byte
    // >= 0x80 sends the whole text to the slow path.
    let bytes = text.as_bytes();
    let mut token_start = 0;
    for (position, &byte) in bytes.iter().enumerate() {
        match byte {
            b'.' => {
                end_token(token_start, position)?;
                token_start = position + 1;
            }
            b'*' | b'>' => check_wildcard(bytes, byte as char, position, token_start, syntax)?,
            0x80.. => return validate_unicode(text, syntax),
            _ if byte <= b' ' || byte == 0x7f => {
                return Err(TopicError::InvalidCharacter {
                    character: byte as char,
                    position,
                });
            }
            _ => {}
        }
    }
    end_token(token_start, bytes.len())
}

/// The general case of [`validate`], for text with non-ASCII characters.
#[cold]
fn validate_unicode(text: &str, syntax: Syntax) -> Result<(), TopicError> {
    let bytes = text.as_bytes();
    let mut token_start = 0;
    for (position, character) in text.char_indices() {
        match character {
            '.' => {
                end_token(token_start, position)?;
                token_start = position + 1;
            }
            '*' | '>' => check_wildcard(bytes, character, position, token_start, syntax)?,
            _ if character.is_whitespace()
                || character.is_control()
                || is_format(character)
                || is_noncharacter(character) =>
            {
                return Err(TopicError::InvalidCharacter {
                    character,
                    position,
                });
            }
            _ => {}
        }
    }
    end_token(token_start, text.len())
}

/// Checks the token that starts at byte `token_start` and ends at byte `end` (a `.` or the end
/// of the text): it must not be empty.
fn end_token(token_start: usize, end: usize) -> Result<(), TopicError> {
    if end == token_start {
        return Err(TopicError::EmptyToken { position: end });
    }
    Ok(())
}

/// Whether `character` is an invisible format character: Unicode general category Cf
/// (Unicode 15.1). std has no category API, and the category is small and stable, so it is
/// listed here. Only non-ASCII characters reach this (the fast path handles ASCII).
fn is_format(character: char) -> bool {
    matches!(
        character,
        '\u{AD}'
            | '\u{600}'..='\u{605}'
            | '\u{61C}'
            | '\u{6DD}'
            | '\u{70F}'
            | '\u{890}'..='\u{891}'
            | '\u{8E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// Whether `character` is one of Unicode's 66 noncharacters: U+FDD0..=U+FDEF, and the last
/// two code points of every plane (U+FFFE, U+FFFF, U+1FFFE, ...).
fn is_noncharacter(character: char) -> bool {
    let code = u32::from(character);
    (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE
}

/// Checks a wildcard character at `position`, in the token that starts at `token_start`.
fn check_wildcard(
    bytes: &[u8],
    character: char,
    position: usize,
    token_start: usize,
    syntax: Syntax,
) -> Result<(), TopicError> {
    if syntax == Syntax::Topic {
        return Err(TopicError::Wildcard {
            character,
            position,
        });
    }
    let token_end = position + 1;
    let whole_token =
        position == token_start && bytes.get(token_end).is_none_or(|&next| next == b'.');
    if !whole_token {
        return Err(TopicError::PartialWildcard {
            character,
            position,
        });
    }
    if character == '>' && token_end != bytes.len() {
        return Err(TopicError::WildcardNotLast { position });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! `pattern_matches` is checked against a NATS table in `tests/wildcards.rs`.

    use super::*;

    #[test]
    fn accepts_plain_topics() {
        for topic in [
            "a",
            "orders",
            "orders.created",
            "a.b.c.d",
            "ü.ñ",
            "x-y_z.1:2",
            "#.+",
            "日本.東京",
            "🚀.launch",
            "\u{FFFD}",
        ] {
            assert_eq!(validate_topic(topic), Ok(()), "{topic:?}");
            assert_eq!(validate_pattern(topic), Ok(()), "{topic:?}");
        }
        assert_eq!(validate_topic(&"a".repeat(MAX_TOPIC_LEN)), Ok(()));
    }

    #[test]
    fn rejects_bad_topics_with_position() {
        let cases = [
            ("", TopicError::Empty),
            (".a", TopicError::EmptyToken { position: 0 }),
            ("a.", TopicError::EmptyToken { position: 2 }),
            ("a..b", TopicError::EmptyToken { position: 2 }),
            ("é.", TopicError::EmptyToken { position: 3 }),
            (
                "a b",
                TopicError::InvalidCharacter {
                    character: ' ',
                    position: 1,
                },
            ),
            (
                "a\tb",
                TopicError::InvalidCharacter {
                    character: '\t',
                    position: 1,
                },
            ),
            (
                "é\u{a0}",
                TopicError::InvalidCharacter {
                    character: '\u{a0}',
                    position: 2,
                },
            ),
            (
                "a\u{200B}b",
                TopicError::InvalidCharacter {
                    character: '\u{200B}',
                    position: 1,
                },
            ),
            (
                "\u{FEFF}orders",
                TopicError::InvalidCharacter {
                    character: '\u{FEFF}',
                    position: 0,
                },
            ),
            (
                "a.b\u{E0041}",
                TopicError::InvalidCharacter {
                    character: '\u{E0041}',
                    position: 3,
                },
            ),
            (
                "a\u{AD}b",
                TopicError::InvalidCharacter {
                    character: '\u{AD}',
                    position: 1,
                },
            ),
            (
                "a\u{FFFF}",
                TopicError::InvalidCharacter {
                    character: '\u{FFFF}',
                    position: 1,
                },
            ),
            (
                "\u{10FFFE}",
                TopicError::InvalidCharacter {
                    character: '\u{10FFFE}',
                    position: 0,
                },
            ),
            (
                "a\u{FDD0}",
                TopicError::InvalidCharacter {
                    character: '\u{FDD0}',
                    position: 1,
                },
            ),
            (
                "a.*",
                TopicError::Wildcard {
                    character: '*',
                    position: 2,
                },
            ),
            (
                "é.>",
                TopicError::Wildcard {
                    character: '>',
                    position: 3,
                },
            ),
        ];
        for (topic, expected) in cases {
            assert_eq!(validate_topic(topic), Err(expected), "{topic:?}");
        }
        let long = "a".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(
            validate_topic(&long),
            Err(TopicError::TooLong {
                len: MAX_TOPIC_LEN + 1
            })
        );
    }

    #[test]
    fn whole_token_wildcards_make_valid_patterns() {
        for pattern in ["*", ">", "a.*", "*.b", "a.*.c", "a.>", "*.*.>", "é.*"] {
            assert_eq!(validate_pattern(pattern), Ok(()), "{pattern:?}");
            assert!(has_wildcard(pattern), "{pattern:?}");
        }
        // Invalid patterns, with their reasons: tests/wildcards.rs.
    }

    #[test]
    fn ascii_fast_path_agrees_with_unicode_path() {
        let inputs = [
            "a", "a.b", ".a", "a.", "a..b", "a b", "a.*", "x>y", "a\u{7f}", "a.>", "*.b", "a.>.c",
        ];
        for text in inputs {
            for syntax in [Syntax::Topic, Syntax::Pattern] {
                assert_eq!(
                    validate(text, syntax),
                    validate_unicode(text, syntax),
                    "{text:?}"
                );
            }
        }
    }
}
