//! Properties of topic and pattern validation: tokens of allowed characters joined with `.` are
//! valid; a wildcard in a published topic, a wildcard that is not a whole token (or a `>` that
//! is not last) in a pattern, an empty token, whitespace or a control character anywhere is
//! rejected with the right reason and byte position; the length limit; and the broker agrees
//! with `validate_topic` and `validate_pattern` on any input without panicking.

use proptest::prelude::*;
use proptest::sample::{Index, select};
use syncmq::{Broker, Error, MAX_TOPIC_LEN, TopicError, validate_pattern, validate_topic};

mod common;
use common::{is_printable, proptest_config_persisting_to};

/// Characters allowed in a token: printable ASCII but `.`, `*` and `>`, and some non-ASCII
/// letters and symbols of 2, 3 and 4 bytes in UTF-8.
fn allowed_chars() -> Vec<char> {
    ('!'..='~')
        .filter(|c| !matches!(c, '.' | '*' | '>'))
        .chain(['é', 'ü', 'ß', 'Ω', 'ж', '€', '日', '本', '→', '😀', '𝄞'])
        .collect()
}

/// Whitespace, by Unicode's definition (`char::is_whitespace`), ASCII and not.
const WHITESPACE: [char; 17] = [
    ' ', '\t', '\n', '\r', '\u{b}', '\u{c}', '\u{85}', '\u{a0}', '\u{1680}', '\u{2000}',
    '\u{2009}', '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}',
];

/// Control characters that are not whitespace.
const CONTROL: [char; 6] = ['\0', '\u{1}', '\u{1b}', '\u{7f}', '\u{80}', '\u{9f}'];

/// A token of 1 to 7 allowed characters (at most 28 bytes).
fn token() -> impl Strategy<Value = String> {
    prop::collection::vec(select(allowed_chars()), 1..8).prop_map(|cs| cs.into_iter().collect())
}

/// 1 to 8 tokens: joined, at most 8 * 28 + 7 = 231 bytes, so a few bytes can be added.
fn tokens() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(token(), 1..=8)
}

/// The byte positions where a character can be inserted into `s`.
fn boundaries(s: &str) -> Vec<usize> {
    s.char_indices().map(|(i, _)| i).chain([s.len()]).collect()
}

fn insert_at(topic: &str, index: Index, c: char) -> (String, usize) {
    let bounds = boundaries(topic);
    let position = bounds[index.index(bounds.len())];
    let mut bad = topic.to_owned();
    bad.insert(position, c);
    (bad, position)
}

/// Checks what `validate_topic` and `publish` say about `text` (`as_topic`) and what
/// `validate_pattern` and `subscribe` say (`as_pattern`). Invalid input is an
/// `Error::InvalidTopic` naming it and the reason, and nothing is published; a valid pattern is
/// subscribed, and a valid topic reaches the subscription of the same name.
fn assert_verdicts(
    text: &str,
    as_topic: Result<(), TopicError>,
    as_pattern: Result<(), TopicError>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(validate_topic(text), as_topic, "topic {:?}", text);
    prop_assert_eq!(validate_pattern(text), as_pattern, "pattern {:?}", text);
    let invalid = |reason| Error::InvalidTopic {
        topic: text.to_owned(),
        reason,
    };
    let broker = Broker::<u8>::new();
    let sub = match as_pattern {
        Ok(()) => {
            let sub = broker.subscribe(text);
            prop_assert!(sub.is_ok(), "subscribe({:?}): {:?}", text, sub);
            sub.ok()
        }
        Err(reason) => {
            prop_assert_eq!(broker.subscribe(text).unwrap_err(), invalid(reason));
            None
        }
    };
    match (as_topic, sub) {
        (Ok(()), Some(sub)) => {
            prop_assert_eq!(broker.publish(text, 1).unwrap().delivered, 1);
            prop_assert_eq!(sub.try_recv(), Ok(1));
        }
        (Ok(()), None) => prop_assert!(false, "{:?} is a topic but not a pattern", text),
        (Err(reason), _) => {
            prop_assert_eq!(broker.publish(text, 0).unwrap_err(), invalid(reason));
            prop_assert_eq!(broker.stats().published, 0);
        }
    }
    Ok(())
}

/// Checks that `text` is rejected for `reason` both as a topic and as a pattern.
fn assert_rejected(text: &str, reason: TopicError) -> Result<(), TestCaseError> {
    assert_verdicts(text, Err(reason), Err(reason))
}

/// Which rules the naive check applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// A published topic: no wildcard anywhere.
    Topic,
    /// A subscription pattern: `*` and `>` as whole tokens only, `>` only last.
    Pattern,
}

/// A plain restatement of the rules, scanning characters in order and reporting the first
/// problem: the oracle for arbitrary input.
fn naive_validate(text: &str, syntax: Syntax) -> Result<(), TopicError> {
    if text.is_empty() {
        return Err(TopicError::Empty);
    }
    if text.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: text.len() });
    }
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut token_start = 0;
    for (i, &(position, character)) in chars.iter().enumerate() {
        if character == '.' {
            if position == token_start {
                return Err(TopicError::EmptyToken { position });
            }
            token_start = position + 1;
        } else if character == '*' || character == '>' {
            if syntax == Syntax::Topic {
                return Err(TopicError::Wildcard {
                    character,
                    position,
                });
            }
            let next = chars.get(i + 1).map(|&(_, c)| c);
            let alone = position == token_start && matches!(next, None | Some('.'));
            if !alone {
                return Err(TopicError::PartialWildcard {
                    character,
                    position,
                });
            }
            if character == '>' && next.is_some() {
                return Err(TopicError::WildcardNotLast { position });
            }
        } else if !is_printable(character) {
            return Err(TopicError::InvalidCharacter {
                character,
                position,
            });
        }
    }
    if token_start == text.len() {
        return Err(TopicError::EmptyToken {
            position: token_start,
        });
    }
    Ok(())
}

/// Where the proptests of this file keep the failures they found.
fn proptest_config() -> ProptestConfig {
    proptest_config_persisting_to("proptest-regressions/prop_topic.txt")
}

// --- smoke --------------------------------------------------------------------------------

#[test]
fn the_character_sets_are_what_they_claim() {
    for c in allowed_chars() {
        assert!(!c.is_whitespace() && !c.is_control(), "{c:?}");
    }
    assert!(WHITESPACE.iter().all(|c| c.is_whitespace()));
    assert!(CONTROL.iter().all(|c| c.is_control() && !c.is_whitespace()));
    assert_eq!(validate_topic(""), Err(TopicError::Empty));
}

#[test]
fn the_naive_check_knows_the_pattern_rules() {
    let cases = [
        ("a.*.>", Ok(())),
        (">", Ok(())),
        (
            "a*",
            Err(TopicError::PartialWildcard {
                character: '*',
                position: 1,
            }),
        ),
        (
            ">*",
            Err(TopicError::PartialWildcard {
                character: '>',
                position: 0,
            }),
        ),
        ("a.>.b", Err(TopicError::WildcardNotLast { position: 2 })),
        ("a.>.", Err(TopicError::WildcardNotLast { position: 2 })),
        ("*..", Err(TopicError::EmptyToken { position: 2 })),
    ];
    for (text, expected) in cases {
        assert_eq!(naive_validate(text, Syntax::Pattern), expected, "{text:?}");
        assert_eq!(validate_pattern(text), expected, "{text:?}");
        assert!(matches!(
            naive_validate(text, Syntax::Topic),
            Err(TopicError::Wildcard { .. })
        ));
    }
}

// --- properties ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn tokens_of_allowed_characters_joined_with_dots_are_valid(tokens in tokens()) {
        let topic = tokens.join(".");
        prop_assert!(topic.len() <= MAX_TOPIC_LEN);
        prop_assert_eq!(validate_topic(&topic), Ok(()), "{:?}", topic);
        prop_assert_eq!(validate_pattern(&topic), Ok(()), "{:?}", topic);

        // The broker takes it, and a message published to it arrives.
        let broker = Broker::<u8>::new();
        let sub = broker.subscribe(&topic).unwrap();
        prop_assert_eq!(sub.topic(), topic.as_str());
        prop_assert_eq!(broker.publish(&topic, 1).unwrap().delivered, 1);
        prop_assert_eq!(sub.try_recv(), Ok(1));
    }

    #[test]
    fn a_wildcard_inside_a_token_is_rejected_at_its_position(
        tokens in tokens(),
        index in any::<Index>(),
        wildcard in select(vec!['*', '>']),
    ) {
        // Tokens are never empty, so the inserted character always shares its token with
        // another character: in a topic it is a wildcard, in a pattern a partial one.
        let (bad, position) = insert_at(&tokens.join("."), index, wildcard);
        assert_verdicts(
            &bad,
            Err(TopicError::Wildcard { character: wildcard, position }),
            Err(TopicError::PartialWildcard { character: wildcard, position }),
        )?;
    }

    #[test]
    fn a_wildcard_as_a_whole_token_is_rejected_in_a_topic_and_accepted_in_a_pattern(
        tokens in tokens(),
        index in any::<Index>(),
        wildcard in select(vec!["*", ">"]),
    ) {
        let i = index.index(tokens.len());
        let mut pattern_tokens = tokens.clone();
        pattern_tokens[i] = wildcard.to_owned();
        let pattern = pattern_tokens.join(".");
        let position: usize = tokens[..i].iter().map(|t| t.len() + 1).sum();
        let character = wildcard.chars().next().unwrap();
        let last = i + 1 == tokens.len();
        let as_pattern = if character == '>' && !last {
            Err(TopicError::WildcardNotLast { position })
        } else {
            Ok(())
        };
        assert_verdicts(&pattern, Err(TopicError::Wildcard { character, position }), as_pattern)?;

        // A valid pattern receives what is published to the topic it was made from.
        if as_pattern.is_ok() {
            let broker = Broker::<u8>::new();
            let sub = broker.subscribe(&pattern).unwrap();
            prop_assert_eq!(broker.publish(&tokens.join("."), 3).unwrap().delivered, 1);
            prop_assert_eq!(sub.try_recv(), Ok(3));
        }
    }

    #[test]
    fn an_empty_token_anywhere_is_rejected_at_its_position(
        mut tokens in tokens(),
        index in any::<Index>(),
    ) {
        // Before the first token (".a"), between two ("a..b"), or after the last ("a.").
        let i = index.index(tokens.len() + 1);
        tokens.insert(i, String::new());
        let position: usize = tokens[..i].iter().map(|t| t.len() + 1).sum();
        assert_rejected(&tokens.join("."), TopicError::EmptyToken { position })?;
    }

    #[test]
    fn whitespace_anywhere_is_rejected_at_its_position(
        tokens in tokens(),
        index in any::<Index>(),
        character in select(WHITESPACE.to_vec()),
    ) {
        let (bad, position) = insert_at(&tokens.join("."), index, character);
        assert_rejected(&bad, TopicError::InvalidCharacter { character, position })?;
    }

    #[test]
    fn a_control_character_anywhere_is_rejected_at_its_position(
        tokens in tokens(),
        index in any::<Index>(),
        character in select(CONTROL.to_vec()),
    ) {
        let (bad, position) = insert_at(&tokens.join("."), index, character);
        assert_rejected(&bad, TopicError::InvalidCharacter { character, position })?;
    }

    #[test]
    fn a_topic_is_valid_up_to_the_length_limit_and_too_long_after(
        len in 1usize..=MAX_TOPIC_LEN + 40,
        dots in prop::collection::vec(any::<Index>(), 0..10),
    ) {
        // `len` bytes of `x`, with some dots that leave no token empty.
        let mut topic = vec![b'x'; len];
        for dot in dots {
            let i = dot.index(len);
            if i > 0 && i + 1 < len && topic[i - 1] != b'.' && topic[i + 1] != b'.' {
                topic[i] = b'.';
            }
        }
        let topic = String::from_utf8(topic).unwrap();
        if len <= MAX_TOPIC_LEN {
            prop_assert_eq!(validate_topic(&topic), Ok(()), "{:?}", topic);
        } else {
            assert_rejected(&topic, TopicError::TooLong { len })?;
        }
    }

    #[test]
    fn any_string_gets_the_same_verdict_as_a_naive_check(text in any::<String>()) {
        assert_verdicts(
            &text,
            naive_validate(&text, Syntax::Topic),
            naive_validate(&text, Syntax::Pattern),
        )?;
    }

    #[test]
    fn strings_of_tricky_characters_get_the_same_verdict_as_a_naive_check(
        chars in prop::collection::vec(
            select(vec!['a', 'é', '日', '.', '.', '*', '>', ' ', '\t', '\u{a0}', '\u{7f}', '\0']),
            0..24,
        ),
    ) {
        let text: String = chars.into_iter().collect();
        assert_verdicts(
            &text,
            naive_validate(&text, Syntax::Topic),
            naive_validate(&text, Syntax::Pattern),
        )?;
    }

    #[test]
    fn wildcard_heavy_strings_get_the_same_verdict_as_a_naive_check(
        chars in prop::collection::vec(select(vec!['a', 'é', '.', '.', '*', '*', '>', '>']), 1..16),
    ) {
        let text: String = chars.into_iter().collect();
        assert_verdicts(
            &text,
            naive_validate(&text, Syntax::Topic),
            naive_validate(&text, Syntax::Pattern),
        )?;
    }
}
