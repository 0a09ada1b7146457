//! The subscription table: which subscribers and queue groups each topic or pattern has, and
//! which of them a published topic reaches.
//!
//! Every subscription key (a topic, or a pattern with wildcards) maps to an immutable,
//! reference-counted [`Route`]: its plain subscribers, its queue groups and its counters.
//! Subscribing or unsubscribing builds a new route (copy-on-write) under the registry's write
//! lock; a publish clones the `Arc` of the route it needs under the read lock and releases the
//! lock before it sends anything (or upgrades its thread's memo of that `Arc`, without the
//! lock, while the table has not changed: `route_memo.rs`). So a publish never holds a lock
//! while it waits, and a concurrent subscribe or unsubscribe never sees a half-updated list:
//! it lands entirely before or after.
//!
//! # Resolving a published topic
//!
//! - No wildcard subscription anywhere: the route is the exact key's, one hash lookup, as if
//!   wildcards did not exist. (Unless that route holds an export queue that may leave topics
//!   to another: see below.)
//! - Otherwise the exact key's route and those of every matching pattern (found with the
//!   [`PatternTrie`]) are merged into one route, which is cached per published topic. The
//!   cache is emptied by every change to the table, so it never holds a subscriber that has
//!   left. It holds at most [`ROUTE_CACHE_CAPACITY`] topics: when full, it starts over
//!   empty, so a stream of millions of distinct topics costs a trie walk each, and bounded
//!   memory, while a hot topic is back in the cache one miss after each reset. (Evicting one
//!   entry instead, the first the map iterates, kept hitting the same buckets: a hot topic
//!   hashed there missed 97% of its publishes in a test against a stream of cold topics.)
//!
//! A resolved route leaves out the bridge export queues that yield its topic to an earlier
//! export queue of their bridge ([`Subscriber::yields`]), so a publish does not match their
//! patterns again and again. Whether a queue yields a topic depends on nothing but the two
//! (the patterns it yields to are fixed when it subscribes), not on who else is subscribed,
//! so the answer holds for as long as the cached route does. A key's own route keeps every
//! subscriber (removal and counts need them all), so it is published along as it is only
//! when none of them yields the topic: [`Registry::resolve_slow`] checks. With no wildcard
//! subscription, a key's route that holds such a queue ([`Route::yielders`]: a topic exported
//! twice, or an export whose wildcard predecessor has already left) is resolved and cached
//! like a topic with wildcard subscriptions, which costs only the publishes to that key.

use std::collections::HashMap;
use std::collections::hash_map::{DefaultHasher, RandomState};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use parking_lot::RwLock;

use crate::stats::Counters;
use crate::subscriber::Subscriber;
use crate::topic::has_wildcard;
use crate::trie::PatternTrie;

/// The most published topics whose resolved routes are cached at once.
const ROUTE_CACHE_CAPACITY: usize = 4096;

/// Routes by subscription key (a topic or a pattern).
type KeyTable<T> = HashMap<Arc<str>, Arc<Route<T>>, TopicHash>;

/// Resolved routes by published topic. `None` caches "nobody subscribed".
type RouteCache<T> = HashMap<Box<str>, Option<Arc<Route<T>>>, TopicHash>;

/// The hasher of both tables: std's keyed SipHash (`RandomState`), fed each topic's bytes
/// once, without the `0xff` terminator that `str`'s `Hash` adds.
///
/// Why keyed SipHash, although every publish pays for one hash: both tables can hold strings
/// chosen by whoever feeds the broker. `keys` holds subscription patterns, and `cache` holds
/// published topics (those that are resolved, see the module docs); either may come from
/// untrusted input. With an unkeyed hash (FxHash and the like), an attacker can search
/// offline for strings whose hashes agree in the few bits a table uses to place them (about
/// 20 for a few thousand entries: a brute-force search of a million strings), fill a table
/// with them, and make every lookup, made under the registry lock, compare against them all.
/// Seeding FxHash does not help, as some of its collisions hold for every seed (inputs that
/// differ in the top bit of one 8-byte word and in bit 4 of the next). A fast hash saved about
/// 7 ns per publish on the 2-core test machine; not worth that risk.
///
/// Why no terminator: `str` hashes as `write(bytes)` then `write_u8(0xff)`, so that a
/// sequence of strings hashed into one hasher is prefix-free. These tables hash exactly one
/// string per key, whose length SipHash mixes in anyway, so the terminator only costs a
/// second call into the hasher (about 3 ns per publish on the 2-core test machine).
#[derive(Clone, Default)]
pub(crate) struct TopicHash(RandomState);

/// A [`TopicHash`] hasher: SipHash over one string's bytes.
pub(crate) struct TopicHasher(DefaultHasher);

impl BuildHasher for TopicHash {
    type Hasher = TopicHasher;

    #[inline]
    fn build_hasher(&self) -> TopicHasher {
        TopicHasher(self.0.build_hasher())
    }
}

impl Hasher for TopicHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// Drops `str`'s `0xff` terminator (see [`TopicHash`]). Keys of these tables are single
    /// strings, so this is the only `u8` ever written; were another written, equal keys would
    /// still hash equal, which is all a table needs for correctness.
    #[inline]
    fn write_u8(&mut self, _terminator: u8) {}

    #[inline]
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// The subscribers a publish reaches: for one key, or merged for one published topic.
pub(crate) struct Route<T> {
    /// Plain subscribers, each of which gets every message.
    pub(crate) subscribers: Box<[Arc<Subscriber<T>>]>,
    /// Queue groups, each of which gets every message once, in one of its members.
    pub(crate) groups: Box<[Arc<Group<T>>]>,
    /// The counters of every key this route draws from: exactly one for a key's own route.
    /// Shared by every version of a key's route, so they survive copy-on-write.
    pub(crate) counters: Box<[Arc<Counters>]>,
    /// In a key's route: how many of `subscribers` are export queues that leave some topics
    /// to an earlier export queue of their bridge ([`Subscriber::may_yield`]). A key's route
    /// with any is never published along as it is, but resolved, which leaves out those that
    /// yield the topic (see the module docs). 0 in a resolved route.
    yielders: usize,
}

/// A queue group of one key: each message goes to one member.
pub(crate) struct Group<T> {
    /// The group's name, unique within its key.
    pub(crate) name: Arc<str>,
    /// Members in joining order. Never empty: a group without members is removed.
    pub(crate) members: Box<[Arc<Subscriber<T>>]>,
    /// Round-robin cursor: where the next message starts looking for a member with room.
    /// Shared by every version of the group; `Relaxed`, since it only spreads load.
    pub(crate) cursor: Arc<AtomicUsize>,
}

impl<T> Route<T> {
    /// A key's route holding nothing yet, with fresh counters.
    fn empty(counters: Arc<Counters>) -> Self {
        Route {
            subscribers: Box::new([]),
            groups: Box::new([]),
            counters: Box::new([counters]),
            yielders: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.subscribers.is_empty() && self.groups.is_empty()
    }

    /// Subscribers of this route, counting every group member.
    pub(crate) fn subscriber_count(&self) -> usize {
        self.subscribers.len() + self.groups.iter().map(|g| g.members.len()).sum::<usize>()
    }

    /// The counters of a key's own route.
    pub(crate) fn key_counters(&self) -> &Arc<Counters> {
        &self.counters[0]
    }

    /// This route with `subscriber` added, as a plain subscriber or to `group`.
    fn with(&self, subscriber: Arc<Subscriber<T>>, group: Option<&Arc<str>>) -> Self {
        let Some(name) = group else {
            let yielders = self.yielders + usize::from(subscriber.may_yield());
            return Route {
                subscribers: self
                    .subscribers
                    .iter()
                    .cloned()
                    .chain(Some(subscriber))
                    .collect(),
                groups: self.groups.clone(),
                counters: self.counters.clone(),
                yielders,
            };
        };
        let mut joined = false;
        let mut groups: Vec<Arc<Group<T>>> = self
            .groups
            .iter()
            .map(|g| {
                if g.name != *name {
                    return g.clone();
                }
                joined = true;
                Arc::new(Group {
                    name: g.name.clone(),
                    members: g
                        .members
                        .iter()
                        .cloned()
                        .chain(Some(subscriber.clone()))
                        .collect(),
                    cursor: g.cursor.clone(),
                })
            })
            .collect();
        if !joined {
            groups.push(Arc::new(Group {
                name: name.clone(),
                members: Box::new([subscriber]),
                cursor: Arc::default(),
            }));
        }
        Route {
            subscribers: self.subscribers.clone(),
            groups: groups.into(),
            counters: self.counters.clone(),
            yielders: self.yielders,
        }
    }

    /// This route without subscriber `id`, or `None` if it is not here.
    fn without(&self, id: u64) -> Option<Self> {
        if let Some(removed) = self.subscribers.iter().find(|s| s.id == id) {
            return Some(Route {
                subscribers: self
                    .subscribers
                    .iter()
                    .filter(|s| s.id != id)
                    .cloned()
                    .collect(),
                groups: self.groups.clone(),
                counters: self.counters.clone(),
                yielders: self.yielders - usize::from(removed.may_yield()),
            });
        }
        let index = self
            .groups
            .iter()
            .position(|g| g.members.iter().any(|m| m.id == id))?;
        let mut groups = self.groups.to_vec();
        let group = &groups[index];
        if group.members.len() == 1 {
            groups.remove(index);
        } else {
            groups[index] = Arc::new(Group {
                name: group.name.clone(),
                members: group
                    .members
                    .iter()
                    .filter(|m| m.id != id)
                    .cloned()
                    .collect(),
                cursor: group.cursor.clone(),
            });
        }
        Some(Route {
            subscribers: self.subscribers.clone(),
            groups: groups.into(),
            counters: self.counters.clone(),
            yielders: self.yielders,
        })
    }

    /// One route for a publish to `topic`, reaching everything `routes` reach but the export
    /// queues that yield `topic` (see the module docs). It keeps their keys' counters, as the
    /// publish still counts for those keys.
    fn merge(routes: &[&Arc<Route<T>>], topic: &str) -> Self {
        Route {
            subscribers: routes
                .iter()
                .flat_map(|r| r.subscribers.iter())
                .filter(|s| !s.yields(topic))
                .cloned()
                .collect(),
            groups: routes
                .iter()
                .flat_map(|r| r.groups.iter().cloned())
                .collect(),
            counters: routes
                .iter()
                .flat_map(|r| r.counters.iter().cloned())
                .collect(),
            yielders: 0,
        }
    }
}

/// What [`Registry::lookup`] knows about a topic, from one hash lookup under one read lock.
pub(crate) enum Lookup<T> {
    /// The topic is valid and reaches this route (or nothing).
    Found(Option<Arc<Route<T>>>),
    /// The topic is no key, and there is no wildcard subscription: if the topic is valid, it
    /// reaches nothing, so the publish needs no second lock or lookup once it is validated.
    NotFound,
    /// Validate the topic, then [`Registry::resolve`] it: there are wildcard subscriptions
    /// (or the topic's key holds export queues that may yield it, see [`Route::yielders`]),
    /// and the topic is not cached.
    Unresolved,
    /// The broker is closed (the topic still needs validating: an invalid topic is reported
    /// as such even by a closed broker).
    Closed,
}

/// What a change to the table replaced, to be dropped by the caller after it releases the
/// lock: dropping it may drop the last sender of a queue, which wakes that queue's receiver.
pub(crate) struct Retired<T> {
    /// The key's previous route, if the change touched one.
    pub(crate) route: Option<Arc<Route<T>>>,
    /// The emptied route cache.
    #[allow(dead_code, reason = "held only so that it is dropped outside the lock")]
    cache: RouteCache<T>,
}

/// The subscription table. Lives behind `Shared::registry`, an `RwLock`.
///
/// Lock order: the registry lock, then `cache`'s. `cache` is only taken while holding the
/// registry's read lock (with the write lock, `&mut self` reaches it without locking).
pub(crate) struct Registry<T> {
    /// Routes by key (topic or pattern). A key with no subscriber has no entry.
    keys: KeyTable<T>,
    /// The keys that contain wildcards.
    patterns: PatternTrie,
    /// Total number of subscribers over all keys, group members included.
    subscribers: usize,
    /// Resolved routes per published topic: every topic's while wildcard subscriptions exist,
    /// and otherwise only those of keys with [`Route::yielders`].
    cache: RwLock<RouteCache<T>>,
    /// Set once by `close`; never cleared. Checked under the same lock as the table, so a
    /// subscribe either lands before the close (and is then disconnected by it) or fails.
    pub(crate) closed: bool,
}

impl<T> Registry<T> {
    pub(crate) fn new() -> Self {
        Registry {
            keys: HashMap::default(),
            patterns: PatternTrie::default(),
            subscribers: 0,
            cache: RwLock::new(HashMap::default()),
            closed: false,
        }
    }

    /// The route of one key (a topic or pattern as subscribed), if it has subscribers.
    pub(crate) fn key(&self, key: &str) -> Option<&Arc<Route<T>>> {
        self.keys.get(key)
    }

    /// The counters a new subscriber under `key` shares.
    pub(crate) fn counters_for(&self, key: &str) -> Arc<Counters> {
        self.keys
            .get(key)
            .map_or_else(Arc::default, |route| route.key_counters().clone())
    }

    /// The hot path of a publish: what `topic` reaches, as far as one hash lookup tells,
    /// before `topic` is validated. With no wildcard subscription, a topic that is a key is
    /// valid (keys are validated, and none has a wildcard), and any other topic reaches
    /// nothing; with some, or when the key's route must be resolved ([`Route::yielders`]), a
    /// cached topic is valid (only validated topics are resolved). Only `Found` vouches for
    /// the topic: the caller validates it in the other cases (see [`validate_topic`]).
    ///
    /// [`validate_topic`]: crate::validate_topic
    pub(crate) fn lookup(&self, topic: &str) -> Lookup<T> {
        if self.closed {
            return Lookup::Closed;
        }
        if let Some(direct) = self.direct(topic) {
            return match direct {
                Some(route) => Lookup::Found(Some(route.clone())),
                None => Lookup::NotFound,
            };
        }
        match self.cache.read().get(topic) {
            Some(cached) => Lookup::Found(cached.clone()),
            None => Lookup::Unresolved,
        }
    }

    /// Everything a publish to `topic`, which must be a valid topic, reaches, or `None` if
    /// nothing.
    pub(crate) fn resolve(&self, topic: &str) -> Option<Arc<Route<T>>> {
        if let Some(direct) = self.direct(topic) {
            return direct.cloned();
        }
        if let Some(cached) = self.cache.read().get(topic) {
            return cached.clone();
        }
        self.resolve_slow(topic)
    }

    /// What `topic` reaches when the key table alone can tell: with no wildcard subscription,
    /// the route of the key `topic` (`Some(None)`: no such key), unless that route must be
    /// resolved to leave out export queues that yield the topic ([`Route::yielders`]). `None`
    /// means "resolve it".
    #[inline]
    fn direct(&self, topic: &str) -> Option<Option<&Arc<Route<T>>>> {
        if self.patterns.len() != 0 {
            return None;
        }
        match self.keys.get(topic) {
            Some(route) if route.yielders != 0 => None,
            found => Some(found),
        }
    }

    /// A cache miss: merge the matching routes, leaving out the export queues that yield
    /// `topic`, and remember the result.
    #[cold]
    fn resolve_slow(&self, topic: &str) -> Option<Arc<Route<T>>> {
        let mut matching: Vec<&Arc<Route<T>>> = self.keys.get(topic).into_iter().collect();
        self.patterns.for_each_match(topic, |pattern| {
            if let Some(route) = self.keys.get(pattern) {
                matching.push(route);
            }
        });
        let resolved = match matching.as_slice() {
            [] => None,
            // One route that leaves no export queue out: published along as it is.
            [only] if only.yielders == 0 || !only.subscribers.iter().any(|s| s.yields(topic)) => {
                Some(Arc::clone(only))
            }
            // Several routes, or one whose export queues yield `topic`.
            routes => Some(Arc::new(Route::merge(routes, topic))),
        };
        let mut cache = self.cache.write();
        // Full: start over (see the module docs). The old entries are freed after the lock is
        // released; none holds a queue's last sender, as every cached subscriber is in `keys`.
        let forgotten = (cache.len() >= ROUTE_CACHE_CAPACITY).then(|| std::mem::take(&mut *cache));
        cache.insert(topic.into(), resolved.clone());
        drop(cache);
        drop(forgotten);
        resolved
    }

    /// How many published topics the route cache holds.
    #[cfg(test)]
    pub(crate) fn cached_topics(&self) -> usize {
        self.cache.read().len()
    }

    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn subscriber_count(&self) -> usize {
        self.subscribers
    }

    /// Files `subscriber` under its key, as a plain subscriber or as a member of `group`.
    pub(crate) fn insert(
        &mut self,
        subscriber: Arc<Subscriber<T>>,
        group: Option<&Arc<str>>,
    ) -> Retired<T> {
        let key = subscriber.key.clone();
        let new_route = match self.keys.get(&key) {
            Some(old) => old.with(subscriber, group),
            None => {
                if has_wildcard(&key) {
                    self.patterns.insert(key.clone());
                }
                Route::empty(subscriber.counters.clone()).with(subscriber, group)
            }
        };
        self.subscribers += 1;
        Retired {
            route: self.keys.insert(key, Arc::new(new_route)),
            cache: std::mem::take(self.cache.get_mut()),
        }
    }

    /// Removes subscriber `id` from `key`. Returns what it replaced if the subscriber was
    /// there.
    pub(crate) fn remove(&mut self, key: &str, id: u64) -> Option<Retired<T>> {
        let slot = self.keys.get_mut(key)?;
        let new_route = slot.without(id)?;
        self.subscribers -= 1;
        let route = if new_route.is_empty() {
            if has_wildcard(key) {
                self.patterns.remove(key);
            }
            self.keys.remove(key)
        } else {
            Some(std::mem::replace(slot, Arc::new(new_route)))
        };
        Some(Retired {
            route,
            cache: std::mem::take(self.cache.get_mut()),
        })
    }

    /// Empties the table for `close`, handing everything to the caller to drop outside the
    /// lock.
    pub(crate) fn take_all(&mut self) -> (KeyTable<T>, Retired<T>) {
        self.subscribers = 0;
        self.patterns = PatternTrie::default();
        let retired = Retired {
            route: None,
            cache: std::mem::take(self.cache.get_mut()),
        };
        (std::mem::take(&mut self.keys), retired)
    }
}
