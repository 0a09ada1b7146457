//! Properties of topic validation: tokens of allowed characters joined with `.` are valid; a
//! wildcard, an empty token, whitespace or a control character anywhere is rejected with the
//! right reason and byte position; the length limit; and the broker agrees with
//! `validate_topic` on any input without panicking.

use proptest::prelude::*;
use proptest::sample::{Index, select};
use syncmq::{Broker, Error, MAX_TOPIC_LEN, TopicError, validate_topic};

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

/// Checks that `validate_topic`, `subscribe` and `publish` all reject `topic` for `reason`.
fn assert_rejected(topic: &str, reason: TopicError) -> Result<(), TestCaseError> {
    prop_assert_eq!(validate_topic(topic), Err(reason), "{:?}", topic);
    let expected = Error::InvalidTopic {
        topic: topic.to_owned(),
        reason,
    };
    let broker = Broker::<u8>::new();
    prop_assert_eq!(broker.subscribe(topic).unwrap_err(), expected.clone());
    prop_assert_eq!(broker.publish(topic, 0).unwrap_err(), expected);
    prop_assert_eq!(broker.stats().published, 0);
    Ok(())
}

/// A plain restatement of the rules, scanning characters in order and reporting the first
/// problem: the oracle for arbitrary input.
fn naive_validate(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: topic.len() });
    }
    let mut token_start = 0;
    for (position, character) in topic.char_indices() {
        if character == '.' {
            if position == token_start {
                return Err(TopicError::EmptyToken { position });
            }
            token_start = position + 1;
        } else if character == '*' || character == '>' {
            return Err(TopicError::Wildcard {
                character,
                position,
            });
        } else if character.is_whitespace() || character.is_control() {
            return Err(TopicError::InvalidCharacter {
                character,
                position,
            });
        }
    }
    if token_start == topic.len() {
        return Err(TopicError::EmptyToken {
            position: token_start,
        });
    }
    Ok(())
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

// --- properties ---------------------------------------------------------------------------

proptest! {
    #[test]
    fn tokens_of_allowed_characters_joined_with_dots_are_valid(tokens in tokens()) {
        let topic = tokens.join(".");
        prop_assert!(topic.len() <= MAX_TOPIC_LEN);
        prop_assert_eq!(validate_topic(&topic), Ok(()), "{:?}", topic);

        // The broker takes it, and a message published to it arrives.
        let broker = Broker::<u8>::new();
        let sub = broker.subscribe(&topic).unwrap();
        prop_assert_eq!(sub.topic(), topic.as_str());
        prop_assert_eq!(broker.publish(&topic, 1).unwrap().delivered, 1);
        prop_assert_eq!(sub.try_recv(), Ok(1));
    }

    #[test]
    fn a_wildcard_anywhere_is_rejected_at_its_position(
        tokens in tokens(),
        index in any::<Index>(),
        wildcard in select(vec!['*', '>']),
    ) {
        let (bad, position) = insert_at(&tokens.join("."), index, wildcard);
        assert_rejected(&bad, TopicError::Wildcard { character: wildcard, position })?;
    }

    #[test]
    fn a_wildcard_as_a_whole_token_is_rejected_at_its_position(
        mut tokens in tokens(),
        index in any::<Index>(),
        wildcard in select(vec!["*", ">"]),
    ) {
        let i = index.index(tokens.len());
        tokens[i] = wildcard.to_owned();
        let position: usize = tokens[..i].iter().map(|t| t.len() + 1).sum();
        let character = wildcard.chars().next().unwrap();
        assert_rejected(&tokens.join("."), TopicError::Wildcard { character, position })?;
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
    fn any_string_gets_the_same_verdict_as_a_naive_check(topic in any::<String>()) {
        let expected = naive_validate(&topic);
        prop_assert_eq!(validate_topic(&topic), expected, "{:?}", topic);
        match expected {
            Ok(()) => prop_assert!(Broker::<u8>::new().subscribe(&topic).is_ok()),
            Err(reason) => assert_rejected(&topic, reason)?,
        }
    }

    #[test]
    fn strings_of_tricky_characters_get_the_same_verdict_as_a_naive_check(
        chars in prop::collection::vec(
            select(vec!['a', 'é', '日', '.', '.', '*', '>', ' ', '\t', '\u{a0}', '\u{7f}', '\0']),
            0..24,
        ),
    ) {
        let topic: String = chars.into_iter().collect();
        let expected = naive_validate(&topic);
        prop_assert_eq!(validate_topic(&topic), expected, "{:?}", topic);
        if let Err(reason) = expected {
            assert_rejected(&topic, reason)?;
        }
    }
}
