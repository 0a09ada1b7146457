/*
 * A model of the grace-period protocol in src/grace.rs, checked with Spin (`.ci/run` runs it:
 * `spin -a`, then the generated verifier, which explores every interleaving).
 *
 * Every step the code makes with `SeqCst` (epoch reads and increments, counter increments,
 * the lifecycle loads and stores) is one Promela statement, and Spin interleaves statements
 * of different processes in every possible order: sequential consistency, which is what the
 * code's `SeqCst` operations give. (The `Release` decrement that ends a section is modelled
 * as sequentially consistent too; the proof in grace.rs uses only its release half.) loom
 * cannot check this: it models `SeqCst` accesses as acquire/release, under which the
 * store-then-load pattern this protocol relies on is not ordered.
 *
 * Three threads, each in its own slot:
 * - Publisher: two publishes, each one section offering the message to A and to B.
 * - ReentrantLeaver: in the middle of a publish (a message's `Drop` running inside its
 *   section), drops subscription A, so it waits for sections while holding one; then its
 *   publish goes on and offers to A and B.
 * - Leaver: drops subscription B.
 *
 * Property (the assertions): no send lands in a queue after that queue was drained, i.e.
 * `unsubscribe` returns everything counted as delivered. The one documented exception, a
 * re-entrant leave that finds another thread waiting and does not wait itself, sets
 * `inexactA`. Spin also reports any deadlock ("invalid end state").
 *
 * `spin -DROUNDS=1 -a tests/model/grace.pml` shows why a waiter makes two rounds: with one,
 * the re-entrant leaver's own section escapes the other leaver's wait.
 */

#ifndef ROUNDS
#define ROUNDS 2
#endif

#define SLOTS 3

byte epoch;
byte count[SLOTS * 2];  /* count[slot * 2 + parity]: sections in progress */
bit waiter_lock;
bit shutA, shutB;       /* the subscriptions' lifecycle: shut (unsubscribed) or not */
bit drainedA, drainedB; /* the subscription drained its queue after waiting */
bit inexactA;           /* A's leave skipped its wait (the documented exception) */

/* Section::enter: read the epoch, count in under its parity. */
inline enter_section(slot, e, p) {
    e = epoch;
    p = e % 2;
    count[slot * 2 + p]++
}

inline exit_section(slot, p) {
    count[slot * 2 + p]--
}

/* Subscriber::try_deliver: load the lifecycle, then send (the assertion) if subscribed. */
inline offer_A() {
    if
    :: shutA == 0 -> assert(drainedA == 0 || inexactA)
    :: else -> skip
    fi
}

inline offer_B() {
    if
    :: shutB == 0 -> assert(drainedB == 0)
    :: else -> skip
    fi
}

/* wait_for_sections, lock held: ROUNDS times, move the epoch on and wait until every slot's
   counter of the parity left behind is down to what the waiting thread holds itself. */
inline wait_rounds(own_slot, own0, own1, round, left, slot) {
    round = 0;
    do
    :: round < ROUNDS ->
       atomic { left = epoch % 2; epoch++ };
       slot = 0;
       do
       :: slot < SLOTS ->
          if
          :: slot == own_slot && left == 0 -> (count[slot * 2] == own0)
          :: slot == own_slot && left == 1 -> (count[slot * 2 + 1] == own1)
          :: else -> (count[slot * 2 + left] == 0)
          fi;
          slot++
       :: else -> break
       od;
       round++
    :: else -> break
    od
}

active proctype Publisher() {
    byte e, p, i;
    for (i : 1 .. 2) {
        enter_section(1, e, p);
        offer_A();
        offer_B();
        exit_section(1, p)
    }
}

active proctype ReentrantLeaver() {
    byte e, p, r, q, s, held0, held1;
    bit got;
    enter_section(0, e, p);
    held0 = 1 - p;
    held1 = p;
    /* A message's Drop drops subscription A: SubscriberState::leave. */
    shutA = 1;
    /* Inside a section: only try the waiter lock. */
    atomic {
        if
        :: waiter_lock == 0 -> waiter_lock = 1; got = 1
        :: else -> got = 0
        fi
    };
    if
    :: got == 1 ->
       wait_rounds(0, held0, held1, r, q, s);
       waiter_lock = 0
    :: else -> inexactA = 1
    fi;
    drainedA = 1;
    /* The publish goes on in the same section. */
    offer_A();
    offer_B();
    exit_section(0, p)
}

active proctype Leaver() {
    byte r, q, s;
    shutB = 1;
    atomic { waiter_lock == 0 -> waiter_lock = 1 };
    wait_rounds(2, 0, 0, r, q, s);
    waiter_lock = 0;
    drainedB = 1
}
