//! A token trie of wildcard patterns: which patterns match a topic.
//!
//! Only patterns with a wildcard live here; exact topics are found by a hash lookup in the
//! registry. A lookup walks the topic's tokens once, following at each level the literal
//! child, the `*` child and any `>` stored there, so its cost grows with the number of tokens
//! and of *matching* branches, not with the number of patterns stored. Pure data: no locks.

use std::collections::HashMap;
use std::sync::Arc;

/// The wildcard patterns of a registry.
#[derive(Debug, Default)]
pub(crate) struct PatternTrie {
    root: Node,
    /// Number of patterns stored.
    len: usize,
}

#[derive(Debug, Default)]
struct Node {
    /// Children by literal token.
    literal: HashMap<Box<str>, Node>,
    /// The child for a `*` token.
    star: Option<Box<Node>>,
    /// The pattern that ends here with `>` (`prefix.>`), matching one or more further tokens.
    rest: Option<Arc<str>>,
    /// The pattern that ends exactly at this node.
    end: Option<Arc<str>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.star.is_none() && self.rest.is_none() && self.end.is_none()
    }
}

impl PatternTrie {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds a valid pattern. Adding one already present changes nothing.
    pub(crate) fn insert(&mut self, pattern: Arc<str>) {
        let mut node = &mut self.root;
        let mut tokens = pattern.split('.').peekable();
        while let Some(token) = tokens.next() {
            if token == ">" {
                // Validation guarantees `>` is the last token.
                if node.rest.is_none() {
                    self.len += 1;
                    node.rest = Some(pattern.clone());
                }
                return;
            }
            node = if token == "*" {
                node.star.get_or_insert_with(Box::default)
            } else {
                node.literal.entry(token.into()).or_default()
            };
            if tokens.peek().is_none() && node.end.is_none() {
                self.len += 1;
                node.end = Some(pattern.clone());
            }
        }
    }

    /// Removes a pattern, pruning the branches it leaves empty. Returns whether it was there.
    pub(crate) fn remove(&mut self, pattern: &str) -> bool {
        let tokens: Vec<&str> = pattern.split('.').collect();
        let removed = remove_in(&mut self.root, &tokens);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `found` with every stored pattern that matches `topic`, each once. Allocates
    /// nothing: the walk clones the token iterator where it branches.
    pub(crate) fn for_each_match<'a>(&'a self, topic: &str, mut found: impl FnMut(&'a Arc<str>)) {
        match_in(&self.root, topic.split('.'), &mut found);
    }
}

fn remove_in(node: &mut Node, tokens: &[&str]) -> bool {
    let Some((&token, rest)) = tokens.split_first() else {
        return node.end.take().is_some();
    };
    if token == ">" {
        return node.rest.take().is_some();
    }
    let removed;
    if token == "*" {
        let Some(child) = node.star.as_deref_mut() else {
            return false;
        };
        removed = remove_in(child, rest);
        if child.is_empty() {
            node.star = None;
        }
    } else {
        let Some(child) = node.literal.get_mut(token) else {
            return false;
        };
        removed = remove_in(child, rest);
        if child.is_empty() {
            node.literal.remove(token);
        }
    }
    removed
}

fn match_in<'a>(
    node: &'a Node,
    mut tokens: std::str::Split<'_, char>,
    found: &mut impl FnMut(&'a Arc<str>),
) {
    let Some(token) = tokens.next() else {
        if let Some(pattern) = &node.end {
            found(pattern);
        }
        return;
    };
    // `prefix.>` matches when at least one token remains, which is the case here.
    if let Some(pattern) = &node.rest {
        found(pattern);
    }
    if let Some(child) = node.literal.get(token) {
        match_in(child, tokens.clone(), found);
    }
    if let Some(child) = &node.star {
        match_in(child, tokens, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::pattern_matches;

    fn matches(trie: &PatternTrie, topic: &str) -> Vec<String> {
        let mut found = Vec::new();
        trie.for_each_match(topic, |p| found.push(p.to_string()));
        found.sort();
        found
    }

    #[test]
    fn finds_exactly_the_matching_patterns() {
        let patterns = ["a.*", "a.>", "*.b", ">", "a.*.c", "*", "x.y.>"];
        let mut trie = PatternTrie::default();
        for p in patterns {
            trie.insert(Arc::from(p));
        }
        assert_eq!(trie.len(), patterns.len());
        for topic in ["a", "a.b", "a.b.c", "b", "x.y", "x.y.z", "q.b", "a.x.c.d"] {
            let mut expected: Vec<String> = patterns
                .iter()
                .filter(|p| pattern_matches(p, topic))
                .map(|p| p.to_string())
                .collect();
            expected.sort();
            assert_eq!(matches(&trie, topic), expected, "{topic}");
        }
    }

    #[test]
    fn remove_prunes_and_keeps_the_others() {
        let mut trie = PatternTrie::default();
        trie.insert(Arc::from("a.*.c"));
        trie.insert(Arc::from("a.>"));
        trie.insert(Arc::from("a.>"));
        assert_eq!(trie.len(), 2);
        assert!(trie.remove("a.*.c"));
        assert!(!trie.remove("a.*.c"));
        assert!(!trie.remove("a.b"));
        assert_eq!(matches(&trie, "a.b.c"), ["a.>"]);
        assert!(trie.remove("a.>"));
        assert_eq!(trie.len(), 0);
        assert!(trie.root.is_empty());
    }
}
