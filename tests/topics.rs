//! Topic and pattern syntax through the public API: valid and invalid topics in `publish` and
//! `validate_topic`, valid and invalid patterns in `subscribe` and `validate_pattern`, the errors
//! they give, and no panic on any input.

use proptest::prelude::*;
use syncmq::{Broker, Error, MAX_TOPIC_LEN, TopicError, validate_pattern, validate_topic};

mod common;
use common::{assert_lowercase_without_period, is_printable, proptest_config_persisting_to};

/// Which rules a string is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// A published topic: `*` and `>` are rejected anywhere.
    Topic,
    /// A subscription pattern: `*` and `>` are allowed as whole tokens, `>` only last.
    Pattern,
}

/// A naive reference for `validate_topic` and `validate_pattern`, written differently on
/// purpose: it splits on `.` and lists every problem, then reports the one at the lowest byte
/// position. `Empty` and `TooLong` come first, before any per-character problem.
fn reference_validate(text: &str, syntax: Syntax) -> Result<(), TopicError> {
    if text.is_empty() {
        return Err(TopicError::Empty);
    }
    if text.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: text.len() });
    }
    let mut problems: Vec<(usize, TopicError)> = Vec::new();
    let token_count = text.split('.').count();
    let mut token_start = 0;
    for (index, token) in text.split('.').enumerate() {
        if token.is_empty() {
            problems.push((
                token_start,
                TopicError::EmptyToken {
                    position: token_start,
                },
            ));
        }
        if syntax == Syntax::Pattern {
            if token == ">" && index + 1 < token_count {
                problems.push((
                    token_start,
                    TopicError::WildcardNotLast {
                        position: token_start,
                    },
                ));
            } else if token != "*" && token != ">" {
                // A wildcard character that is not a whole token: every one is a problem.
                for (offset, character) in token.char_indices() {
                    if character == '*' || character == '>' {
                        let position = token_start + offset;
                        problems.push((
                            position,
                            TopicError::PartialWildcard {
                                character,
                                position,
                            },
                        ));
                    }
                }
            }
        }
        token_start += token.len() + 1;
    }
    for (position, character) in text.char_indices() {
        if (character == '*' || character == '>') && syntax == Syntax::Topic {
            problems.push((
                position,
                TopicError::Wildcard {
                    character,
                    position,
                },
            ));
        } else if !is_printable(character) {
            problems.push((
                position,
                TopicError::InvalidCharacter {
                    character,
                    position,
                },
            ));
        }
    }
    match problems.into_iter().min_by_key(|(position, _)| *position) {
        Some((_, problem)) => Err(problem),
        None => Ok(()),
    }
}

/// Checks `text` as a topic and as a pattern against the reference.
fn check_against_reference(text: &str) {
    check_topic(
        text,
        reference_validate(text, Syntax::Topic),
        reference_validate(text, Syntax::Pattern),
    );
}

/// Checks `text` through `validate_topic` and `publish` (which must agree with `as_topic`) and
/// through `validate_pattern` and `subscribe` (which must agree with `as_pattern`). An invalid
/// input's error carries the input and the reason and changes nothing; a valid pattern is
/// subscribed; a valid topic routes a message to the subscription of the same name.
fn check_topic(text: &str, as_topic: Result<(), TopicError>, as_pattern: Result<(), TopicError>) {
    assert_eq!(validate_topic(text), as_topic, "validate_topic({text:?})");
    assert_eq!(
        validate_pattern(text),
        as_pattern,
        "validate_pattern({text:?})"
    );
    // A valid topic is a valid pattern: the rules for patterns only add wildcards.
    if as_topic.is_ok() {
        assert_eq!(as_pattern, Ok(()), "{text:?} is a topic but not a pattern");
    }
    let invalid = |reason| Error::InvalidTopic {
        topic: text.to_owned(),
        reason,
    };
    let broker = Broker::<u8>::builder().capacity(1).build();
    let sub = match as_pattern {
        Ok(()) => {
            let sub = broker.subscribe(text).unwrap();
            assert_eq!(sub.topic(), text);
            assert_eq!(broker.subscriber_count(text), 1);
            Some(sub)
        }
        Err(reason) => {
            assert_eq!(
                broker.subscribe(text).unwrap_err(),
                invalid(reason),
                "subscribe({text:?})"
            );
            assert_eq!(broker.subscriber_count(text), 0);
            None
        }
    };
    match as_topic {
        Ok(()) => {
            let sub = sub.expect("a valid topic is a valid pattern");
            assert_eq!(broker.publish(text, 7).unwrap().delivered, 1, "{text:?}");
            assert_eq!(sub.try_recv(), Ok(7), "{text:?}");
        }
        Err(reason) => {
            assert_eq!(
                broker.publish(text, 7).unwrap_err(),
                invalid(reason),
                "publish({text:?})"
            );
            // Nothing was published, and only a valid pattern was subscribed.
            let stats = broker.stats();
            let subscribed = usize::from(as_pattern.is_ok());
            assert_eq!(
                (stats.published, stats.subscribers, stats.topics),
                (0, subscribed, subscribed),
                "{text:?}"
            );
            if let Some(sub) = sub {
                assert!(sub.try_recv().is_err(), "{text:?}");
            }
        }
    }
}

/// Where the proptests of this file keep the failures they found.
fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..proptest_config_persisting_to("proptest-regressions/topics.txt")
    }
}

// ---------------------------------------------------------------------------------------------
// Smoke
// ---------------------------------------------------------------------------------------------

#[test]
fn smoke_dotted_topic_is_valid_and_double_dot_is_not() {
    check_topic("orders.created.eu", Ok(()), Ok(()));
    let reason = TopicError::EmptyToken { position: 7 };
    check_topic("orders..created", Err(reason), Err(reason));
}

// ---------------------------------------------------------------------------------------------
// Single thread
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_topics_are_accepted_everywhere() {
    let max_ascii = "a".repeat(MAX_TOPIC_LEN);
    let max_two_byte = "é".repeat(MAX_TOPIC_LEN / 2);
    let max_dotted = "ab.".repeat(MAX_TOPIC_LEN / 3) + &"c".repeat(MAX_TOPIC_LEN % 3);
    assert_eq!(max_two_byte.len(), MAX_TOPIC_LEN);
    assert_eq!(max_dotted.len(), MAX_TOPIC_LEN);
    let long_ones = [max_ascii.as_str(), &max_two_byte, &max_dotted];
    let cases = [
        "a",
        "orders",
        "orders.created",
        "a.b.c.d.e.f.g",
        "Orders.CREATED",
        "x-y_z.1:2",
        "#.+.$.%.@.!.?",
        "a/b\\c",
        "ü.ñ",
        "日本.東京",
        "🦀.rust",
        "~",
    ];
    for topic in cases.into_iter().chain(long_ones) {
        assert_eq!(
            reference_validate(topic, Syntax::Topic),
            Ok(()),
            "{topic:?}"
        );
        assert_eq!(
            reference_validate(topic, Syntax::Pattern),
            Ok(()),
            "{topic:?}"
        );
        check_topic(topic, Ok(()), Ok(()));
    }
}

#[test]
fn whole_token_wildcards_are_valid_patterns_but_not_topics() {
    let max_star = "*.".repeat(MAX_TOPIC_LEN / 2 - 1) + ">";
    assert_eq!(max_star.len(), MAX_TOPIC_LEN - 1);
    let cases = [
        ("*", '*', 0),
        (">", '>', 0),
        ("a.*", '*', 2),
        ("a.>", '>', 2),
        ("*.b", '*', 0),
        ("orders.*.eu", '*', 7),
        ("*.*.>", '*', 0),
        ("a.*.>", '*', 2),
        ("é.>", '>', 3),
        ("日本.*.🦀", '*', 7),
        (max_star.as_str(), '*', 0),
    ];
    for (text, character, position) in cases {
        let as_topic = Err(TopicError::Wildcard {
            character,
            position,
        });
        assert_eq!(
            reference_validate(text, Syntax::Topic),
            as_topic,
            "{text:?}"
        );
        assert_eq!(
            reference_validate(text, Syntax::Pattern),
            Ok(()),
            "{text:?}"
        );
        check_topic(text, as_topic, Ok(()));
    }
}

#[test]
fn invalid_topics_and_patterns_are_rejected_with_reason() {
    use TopicError::Empty;
    let too_long_by = |extra| TopicError::TooLong {
        len: MAX_TOPIC_LEN + extra,
    };
    let empty_token = |position| TopicError::EmptyToken { position };
    let invalid = |character, position| TopicError::InvalidCharacter {
        character,
        position,
    };
    let wildcard = |character, position| TopicError::Wildcard {
        character,
        position,
    };
    let partial = |character, position| TopicError::PartialWildcard {
        character,
        position,
    };
    let not_last = |position| TopicError::WildcardNotLast { position };
    let too_long = "a".repeat(MAX_TOPIC_LEN + 1);
    let too_long_multibyte = "a".repeat(MAX_TOPIC_LEN - 1) + "é";
    let too_long_and_bad = "a b".repeat(MAX_TOPIC_LEN);
    let too_long_pattern = "*.".repeat(MAX_TOPIC_LEN / 2) + ">";
    // (input, reason as a topic, reason as a pattern); `None` means "the same".
    let cases: Vec<(&str, TopicError, Option<TopicError>)> = vec![
        ("", Empty, None),
        (".", empty_token(0), None),
        ("..", empty_token(0), None),
        (".a", empty_token(0), None),
        ("a.", empty_token(2), None),
        ("a..b", empty_token(2), None),
        ("é..", empty_token(3), None),
        ("a.b.", empty_token(4), None),
        (" ", invalid(' ', 0), None),
        ("a b", invalid(' ', 1), None),
        ("a\tb", invalid('\t', 1), None),
        ("a\n", invalid('\n', 1), None),
        ("a\r", invalid('\r', 1), None),
        ("\0", invalid('\0', 0), None),
        ("a\u{1b}[0m", invalid('\u{1b}', 1), None),
        ("a\u{7f}", invalid('\u{7f}', 1), None),
        ("a\u{85}", invalid('\u{85}', 1), None),
        ("é\u{a0}", invalid('\u{a0}', 2), None),
        ("a\u{3000}b", invalid('\u{3000}', 1), None),
        ("a\u{2028}", invalid('\u{2028}', 1), None),
        // A wildcard inside a token.
        ("a*b", wildcard('*', 1), Some(partial('*', 1))),
        ("a*", wildcard('*', 1), Some(partial('*', 1))),
        ("*a", wildcard('*', 0), Some(partial('*', 0))),
        ("a.**", wildcard('*', 2), Some(partial('*', 2))),
        ("a.b>", wildcard('>', 3), Some(partial('>', 3))),
        ("a.>>", wildcard('>', 2), Some(partial('>', 2))),
        ("*>", wildcard('*', 0), Some(partial('*', 0))),
        (">*", wildcard('>', 0), Some(partial('>', 0))),
        ("é>", wildcard('>', 2), Some(partial('>', 2))),
        (">é", wildcard('>', 0), Some(partial('>', 0))),
        ("a.> ", wildcard('>', 2), Some(partial('>', 2))),
        // `>` before the last token.
        ("a.>.b", wildcard('>', 2), Some(not_last(2))),
        (">.a", wildcard('>', 0), Some(not_last(0))),
        ("a.>.*", wildcard('>', 2), Some(not_last(2))),
        ("é.>.b", wildcard('>', 3), Some(not_last(3))),
        (">.>", wildcard('>', 0), Some(not_last(0))),
        ("a.>.", wildcard('>', 2), Some(not_last(2))),
        // The first problem wins; length is checked before anything else.
        ("a..*", empty_token(2), None),
        ("a.*.", wildcard('*', 2), Some(empty_token(4))),
        ("*..", wildcard('*', 0), Some(empty_token(2))),
        (".>", empty_token(0), None),
        ("a b.", invalid(' ', 1), None),
        ("a. *", invalid(' ', 2), None),
        ("* a", wildcard('*', 0), Some(partial('*', 0))),
        ("*.a b", wildcard('*', 0), Some(invalid(' ', 3))),
        (&too_long, too_long_by(1), None),
        (&too_long_multibyte, too_long_by(1), None),
        (&too_long_and_bad, too_long_by(2 * MAX_TOPIC_LEN), None),
        (&too_long_pattern, too_long_by(1), None),
    ];
    for (text, as_topic, as_pattern) in cases {
        let as_pattern = as_pattern.unwrap_or(as_topic);
        assert_eq!(
            reference_validate(text, Syntax::Topic),
            Err(as_topic),
            "reference topic ({text:?})"
        );
        assert_eq!(
            reference_validate(text, Syntax::Pattern),
            Err(as_pattern),
            "reference pattern ({text:?})"
        );
        check_topic(text, Err(as_topic), Err(as_pattern));
    }
}

/// Every Unicode scalar value, alone as a topic: valid exactly when it is printable by the
/// reference definition (or one of the ASCII characters the syntax reserves).
#[test]
fn every_character_is_classified_like_the_reference() {
    let mut mismatches = Vec::new();
    let mut buffer = [0u8; 4];
    for character in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
        let valid = validate_topic(character.encode_utf8(&mut buffer)).is_ok();
        let expected = is_printable(character) && !".*>".contains(character);
        if valid != expected {
            mismatches.push(character);
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} characters classified unlike the reference, first {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(10)]
    );
}

#[test]
fn invalid_topic_error_names_input_and_reason() {
    let broker = Broker::<u8>::new();
    let cases = [
        (
            broker.publish("orders.*", 0).unwrap_err(),
            "orders.*",
            TopicError::Wildcard {
                character: '*',
                position: 7,
            },
        ),
        (
            broker.subscribe("orders*").unwrap_err(),
            "orders*",
            TopicError::PartialWildcard {
                character: '*',
                position: 6,
            },
        ),
        (
            broker.subscribe("orders.>.eu").unwrap_err(),
            "orders.>.eu",
            TopicError::WildcardNotLast { position: 7 },
        ),
    ];
    for (err, input, expected) in cases {
        let Error::InvalidTopic { topic, reason } = &err else {
            panic!("expected InvalidTopic, got {err:?}");
        };
        assert_eq!(topic, input);
        assert_eq!(*reason, expected);
        let text = err.to_string();
        assert!(text.contains(&format!("{input:?}")), "{text}");
        assert!(text.contains(&reason.to_string()), "{text}");
        let source = std::error::Error::source(&err).expect("InvalidTopic has a source");
        assert_eq!(source.downcast_ref::<TopicError>(), Some(reason));
    }
}

#[test]
fn topic_error_display_texts_are_lowercase_without_period() {
    let reasons = [
        (TopicError::Empty, "topic is empty"),
        (
            TopicError::TooLong { len: 300 },
            "topic is 300 bytes long, the limit is 256",
        ),
        (
            TopicError::EmptyToken { position: 3 },
            "empty token at byte 3",
        ),
        (
            TopicError::InvalidCharacter {
                character: ' ',
                position: 1,
            },
            "character ' ' at byte 1 is whitespace or not printable",
        ),
        (
            TopicError::Wildcard {
                character: '>',
                position: 0,
            },
            "wildcard '>' at byte 0 is not allowed in a published topic",
        ),
        (
            TopicError::PartialWildcard {
                character: '*',
                position: 6,
            },
            "wildcard '*' at byte 6 must be a whole token",
        ),
        (
            TopicError::WildcardNotLast { position: 7 },
            "wildcard '>' at byte 7 must be the last token",
        ),
    ];
    for (reason, text) in reasons {
        assert_eq!(reason.to_string(), text);
        assert_lowercase_without_period(&reason.to_string());
        let err = Error::InvalidTopic {
            topic: "t".into(),
            reason,
        };
        assert_eq!(err.to_string(), format!("invalid topic \"t\": {text}"));
        assert_lowercase_without_period(&err.to_string());
    }
}

#[test]
fn control_characters_in_error_text_are_escaped() {
    // The error message must stay on one line and show invisible input.
    let err = Broker::<u8>::new().publish("a\nb", 0).unwrap_err();
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text:?}");
    assert!(text.contains("\\n"), "{text:?}");
}

#[test]
fn subscriber_count_of_any_input_is_zero_without_subscribers() {
    let broker = Broker::<u8>::new();
    for topic in ["", ".", "a..b", "*", "a b", &"x".repeat(10 * MAX_TOPIC_LEN)] {
        assert_eq!(broker.subscriber_count(topic), 0, "{topic:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// Topic-like strings: tokens from a small alphabet with dots, wildcards, whitespace and
/// multi-byte characters, so that every kind of problem turns up often.
fn topicish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => Just('a'),
            2 => Just('.'),
            1 => Just('*'),
            1 => Just('>'),
            1 => Just(' '),
            1 => Just('\t'),
            1 => Just('é'),
            1 => Just('\u{a0}'),
            1 => Just('\u{7f}'),
            1 => Just('日'),
        ],
        0..24,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// Strings around the length limit, in bytes, with one- to four-byte characters and
/// wildcards.
fn near_limit() -> impl Strategy<Value = String> {
    let pieces: &[&str] = &["a", ".", "é", "日", "🦀", ".*", ".>"];
    proptest::collection::vec(proptest::sample::select(pieces), 60..=MAX_TOPIC_LEN + 4)
        .prop_map(|pieces| pieces.concat())
}

/// Patterns made of whole tokens: literals, `*`, and `>` anywhere (so sometimes not last).
fn patternish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            3 => "[a-z]{1,3}",
            2 => Just("*".to_owned()),
            1 => Just(">".to_owned()),
            // Any printable characters but `.`, wildcards included.
            1 => "\\PC{1,2}".prop_map(|token| token.replace('.', "_")),
        ],
        1..8,
    )
    .prop_map(|tokens| tokens.join("."))
}

proptest! {
    #![proptest_config(proptest_config(1024))]

    #[test]
    fn arbitrary_strings_never_panic_and_agree_with_reference(text in any::<String>()) {
        check_against_reference(&text);
    }

    #[test]
    fn topic_like_strings_agree_with_reference(text in topicish()) {
        check_against_reference(&text);
    }

    #[test]
    fn pattern_like_strings_agree_with_reference(text in patternish()) {
        let as_pattern = reference_validate(&text, Syntax::Pattern);
        let tokens: Vec<&str> = text.split('.').collect();
        let wildcard_only_last = tokens[..tokens.len() - 1].iter().all(|t| *t != ">");
        if text.len() <= MAX_TOPIC_LEN && wildcard_only_last
            && tokens.iter().all(|t| t.chars().all(is_printable)
                && (*t == "*" || *t == ">" || !t.contains(['*', '>'])))
        {
            prop_assert_eq!(as_pattern, Ok(()), "{:?}", text);
        }
        check_topic(&text, reference_validate(&text, Syntax::Topic), as_pattern);
    }

    #[test]
    fn strings_near_length_limit_agree_with_reference(text in near_limit()) {
        let as_topic = reference_validate(&text, Syntax::Topic);
        let as_pattern = reference_validate(&text, Syntax::Pattern);
        if text.len() > MAX_TOPIC_LEN {
            let too_long = Err(TopicError::TooLong { len: text.len() });
            prop_assert_eq!(as_topic, too_long);
            prop_assert_eq!(as_pattern, too_long);
        }
        check_topic(&text, as_topic, as_pattern);
    }

    #[test]
    fn long_arbitrary_strings_are_rejected_as_too_long(text in ".{257,600}") {
        prop_assume!(text.len() > MAX_TOPIC_LEN);
        let too_long = Err(TopicError::TooLong { len: text.len() });
        check_topic(&text, too_long, too_long);
    }

    #[test]
    fn tokens_of_printable_characters_joined_by_dots_are_valid(
        tokens in proptest::collection::vec("[a-zA-Z0-9_#+:-]{1,8}|\\PC{1,3}", 1..8),
    ) {
        let text = tokens.join(".");
        let as_topic = reference_validate(&text, Syntax::Topic);
        let as_pattern = reference_validate(&text, Syntax::Pattern);
        let printable = |c: char| is_printable(c) && !"*>.".contains(c);
        if text.len() <= MAX_TOPIC_LEN && tokens.iter().all(|t| t.chars().all(printable)) {
            prop_assert_eq!(as_topic, Ok(()));
            prop_assert_eq!(as_pattern, Ok(()));
        }
        check_topic(&text, as_topic, as_pattern);
    }
}
