//! Topic syntax through the public API: valid and invalid topics in `subscribe`, `publish` and
//! `validate_topic`, the errors they give, and no panic on any input.

use proptest::prelude::*;
use syncmq::{Broker, Error, MAX_TOPIC_LEN, TopicError, validate_topic};

/// A naive reference for `validate_topic`, written differently on purpose: it splits on `.`
/// and lists every problem, then reports the one at the lowest byte position. `Empty` and
/// `TooLong` come first, before any per-character problem.
fn reference_validate(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: topic.len() });
    }
    let mut problems: Vec<(usize, TopicError)> = Vec::new();
    let mut token_start = 0;
    for token in topic.split('.') {
        if token.is_empty() {
            problems.push((
                token_start,
                TopicError::EmptyToken {
                    position: token_start,
                },
            ));
        }
        token_start += token.len() + 1;
    }
    for (position, character) in topic.char_indices() {
        if character == '*' || character == '>' {
            problems.push((
                position,
                TopicError::Wildcard {
                    character,
                    position,
                },
            ));
        } else if character.is_whitespace() || character.is_control() {
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

/// Checks `topic` through `validate_topic`, `subscribe` and `publish`: all three agree with
/// `expected`, an invalid topic's error carries the input and the reason, and a valid one
/// routes a message to its subscriber.
fn check_topic(topic: &str, expected: Result<(), TopicError>) {
    assert_eq!(validate_topic(topic), expected, "validate_topic({topic:?})");
    let broker = Broker::<u8>::builder().capacity(1).build();
    match expected {
        Ok(()) => {
            let sub = broker.subscribe(topic).unwrap();
            assert_eq!(sub.topic(), topic);
            assert_eq!(broker.subscriber_count(topic), 1);
            assert_eq!(broker.publish(topic, 7).unwrap().delivered, 1, "{topic:?}");
            assert_eq!(sub.try_recv(), Ok(7), "{topic:?}");
        }
        Err(reason) => {
            let expected_err = Error::InvalidTopic {
                topic: topic.to_owned(),
                reason,
            };
            assert_eq!(
                broker.subscribe(topic).unwrap_err(),
                expected_err,
                "subscribe({topic:?})"
            );
            assert_eq!(
                broker.publish(topic, 7).unwrap_err(),
                expected_err,
                "publish({topic:?})"
            );
            assert_eq!(broker.subscriber_count(topic), 0);
            // Nothing was subscribed or published.
            let stats = broker.stats();
            assert_eq!(
                (stats.published, stats.subscribers, stats.topics),
                (0, 0, 0)
            );
        }
    }
}

fn assert_lowercase_without_period(text: &str) {
    let first = text.chars().next().expect("empty message");
    assert!(!first.is_uppercase(), "starts uppercase: {text:?}");
    assert!(!text.ends_with('.'), "ends with a period: {text:?}");
}

// ---------------------------------------------------------------------------------------------
// Smoke
// ---------------------------------------------------------------------------------------------

#[test]
fn smoke_dotted_topic_is_valid_and_double_dot_is_not() {
    check_topic("orders.created.eu", Ok(()));
    check_topic(
        "orders..created",
        Err(TopicError::EmptyToken { position: 7 }),
    );
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
        check_topic(topic, Ok(()));
    }
}

#[test]
fn invalid_topics_are_rejected_with_reason() {
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
    let too_long = "a".repeat(MAX_TOPIC_LEN + 1);
    let too_long_multibyte = "a".repeat(MAX_TOPIC_LEN - 1) + "é";
    let too_long_and_bad = "a b".repeat(MAX_TOPIC_LEN);
    let cases: Vec<(&str, TopicError)> = vec![
        ("", Empty),
        (".", empty_token(0)),
        ("..", empty_token(0)),
        (".a", empty_token(0)),
        ("a.", empty_token(2)),
        ("a..b", empty_token(2)),
        ("é..", empty_token(3)),
        ("a.b.", empty_token(4)),
        (" ", invalid(' ', 0)),
        ("a b", invalid(' ', 1)),
        ("a\tb", invalid('\t', 1)),
        ("a\n", invalid('\n', 1)),
        ("a\r", invalid('\r', 1)),
        ("\0", invalid('\0', 0)),
        ("a\u{1b}[0m", invalid('\u{1b}', 1)),
        ("a\u{7f}", invalid('\u{7f}', 1)),
        ("a\u{85}", invalid('\u{85}', 1)),
        ("é\u{a0}", invalid('\u{a0}', 2)),
        ("a\u{3000}b", invalid('\u{3000}', 1)),
        ("a\u{2028}", invalid('\u{2028}', 1)),
        ("*", wildcard('*', 0)),
        (">", wildcard('>', 0)),
        ("a.*", wildcard('*', 2)),
        ("a.>", wildcard('>', 2)),
        ("orders.*.eu", wildcard('*', 7)),
        ("a*b", wildcard('*', 1)),
        ("é.>", wildcard('>', 3)),
        // The first problem wins; length is checked before anything else.
        ("a..*", empty_token(2)),
        ("*..", wildcard('*', 0)),
        ("a b.", invalid(' ', 1)),
        (&too_long, too_long_by(1)),
        (&too_long_multibyte, too_long_by(1)),
        (&too_long_and_bad, too_long_by(2 * MAX_TOPIC_LEN)),
    ];
    for (topic, reason) in cases {
        assert_eq!(
            reference_validate(topic),
            Err(reason),
            "reference({topic:?})"
        );
        check_topic(topic, Err(reason));
    }
}

#[test]
fn invalid_topic_error_names_input_and_reason() {
    let broker = Broker::<u8>::new();
    let err = broker.subscribe("orders.*").unwrap_err();
    let Error::InvalidTopic { topic, reason } = &err else {
        panic!("expected InvalidTopic, got {err:?}");
    };
    assert_eq!(topic, "orders.*");
    assert_eq!(
        *reason,
        TopicError::Wildcard {
            character: '*',
            position: 7
        }
    );
    let text = err.to_string();
    assert!(text.contains("\"orders.*\""), "{text}");
    assert!(text.contains(&reason.to_string()), "{text}");
    let source = std::error::Error::source(&err).expect("InvalidTopic has a source");
    assert_eq!(source.downcast_ref::<TopicError>(), Some(reason));
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
            "character ' ' at byte 1 is whitespace or a control character",
        ),
        (
            TopicError::Wildcard {
                character: '>',
                position: 0,
            },
            "wildcard '>' at byte 0 is reserved and not allowed here",
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

/// Strings around the length limit, in bytes, with one- to four-byte characters.
fn near_limit() -> impl Strategy<Value = String> {
    let pieces: &[&str] = &["a", ".", "é", "日", "🦀"];
    proptest::collection::vec(proptest::sample::select(pieces), 60..=MAX_TOPIC_LEN + 4)
        .prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_strings_never_panic_and_agree_with_reference(topic in any::<String>()) {
        check_topic(&topic, reference_validate(&topic));
    }

    #[test]
    fn topic_like_strings_agree_with_reference(topic in topicish()) {
        check_topic(&topic, reference_validate(&topic));
    }

    #[test]
    fn strings_near_length_limit_agree_with_reference(topic in near_limit()) {
        let expected = reference_validate(&topic);
        if topic.len() > MAX_TOPIC_LEN {
            prop_assert_eq!(expected, Err(TopicError::TooLong { len: topic.len() }));
        }
        check_topic(&topic, expected);
    }

    #[test]
    fn long_arbitrary_strings_are_rejected_as_too_long(topic in ".{257,600}") {
        prop_assume!(topic.len() > MAX_TOPIC_LEN);
        check_topic(&topic, Err(TopicError::TooLong { len: topic.len() }));
    }

    #[test]
    fn tokens_of_printable_characters_joined_by_dots_are_valid(
        tokens in proptest::collection::vec("[a-zA-Z0-9_#+:-]{1,8}|\\PC{1,3}", 1..8),
    ) {
        let topic = tokens.join(".");
        let expected = reference_validate(&topic);
        let printable = |c: char| !c.is_whitespace() && !c.is_control() && !"*>.".contains(c);
        if topic.len() <= MAX_TOPIC_LEN && tokens.iter().all(|t| t.chars().all(printable)) {
            prop_assert_eq!(expected, Ok(()));
        }
        check_topic(&topic, expected);
    }
}
