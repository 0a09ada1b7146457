//! Topic syntax: parsing and validation.
//!
//! A topic is a non-empty sequence of `.`-separated tokens, such as `orders.created.eu`. Every
//! token is non-empty and made of printable, non-whitespace characters; the whole topic is at
//! most [`MAX_TOPIC_LEN`] bytes. `*` and `>` are reserved for wildcards and are rejected.
//!
//! This module is pure: no locks, no threads, no allocation. `publish` validates every topic,
//! so the common case (short ASCII topics) is a single pass over the bytes.

use crate::error::TopicError;

/// The longest topic accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// Checks that `topic` is a valid topic.
///
/// [`Broker::publish`](crate::Broker::publish) and [`Broker::subscribe`](crate::Broker::subscribe)
/// run this check themselves; call it to validate input up front.
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
/// ```
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: topic.len() });
    }
    // Fast path: ASCII only. Non-ASCII characters need a `char` to be classified, so any byte
    // >= 0x80 sends the whole topic to the slow path.
    let bytes = topic.as_bytes();
    let mut token_start = 0;
    for (position, &byte) in bytes.iter().enumerate() {
        match byte {
            b'.' => {
                if position == token_start {
                    return Err(TopicError::EmptyToken { position });
                }
                token_start = position + 1;
            }
            b'*' | b'>' => {
                return Err(TopicError::Wildcard {
                    character: byte as char,
                    position,
                });
            }
            0x80.. => return validate_unicode(topic),
            _ if byte <= b' ' || byte == 0x7f => {
                return Err(TopicError::InvalidCharacter {
                    character: byte as char,
                    position,
                });
            }
            _ => {}
        }
    }
    if token_start == bytes.len() {
        return Err(TopicError::EmptyToken {
            position: token_start,
        });
    }
    Ok(())
}

/// The general case of [`validate_topic`], for topics with non-ASCII characters.
#[cold]
fn validate_unicode(topic: &str) -> Result<(), TopicError> {
    let mut token_start = 0;
    for (position, character) in topic.char_indices() {
        match character {
            '.' => {
                if position == token_start {
                    return Err(TopicError::EmptyToken { position });
                }
                token_start = position + 1;
            }
            '*' | '>' => {
                return Err(TopicError::Wildcard {
                    character,
                    position,
                });
            }
            _ if character.is_whitespace() || character.is_control() => {
                return Err(TopicError::InvalidCharacter {
                    character,
                    position,
                });
            }
            _ => {}
        }
    }
    if token_start == topic.len() {
        return Err(TopicError::EmptyToken {
            position: token_start,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
        ] {
            assert_eq!(validate_topic(topic), Ok(()), "{topic:?}");
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
    fn ascii_fast_path_agrees_with_unicode_path() {
        for topic in [
            "a", "a.b", ".a", "a.", "a..b", "a b", "a.*", "x>y", "a\u{7f}",
        ] {
            assert_eq!(validate_topic(topic), validate_unicode(topic), "{topic:?}");
        }
    }
}
