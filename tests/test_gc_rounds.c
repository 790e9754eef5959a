/*
 * test_gc_rounds.c: a full collection in rounds (runtime/collector.c,
 * "Rounds").  rcgc_collect takes its candidates a few thousand at a time
 * and runs every step on each round, so that a round's members stay in
 * cache; these cases check that rounds lose nothing and cost nothing
 * extra, from the outside.  rcgc__test_last_collection gives the last
 * collection's rounds and members examined.  Manual mode.
 *
 *   split    2-cycles whose two members are candidates in different
 *            rounds: every first member is dropped before any second one.
 *            Required: one rcgc_collect frees all of them, in more than
 *            one round, in one pass, and examines each object exactly once
 *            (a round meets the later round's member by marking; that
 *            round then finds it a zombie, not a member to examine again).
 *   hub      garbage 2-cycles, every one pointing into a live ring of HUB
 *            nodes that is far bigger than a round, dropped as in split.
 *            Required: all the garbage freed in one pass, the ring intact,
 *            and the ring examined once, not once per round: the first
 *            round's marking reaches far beyond its roots and takes every
 *            candidate left (those it met already are taken without
 *            touching their counts, which would fail their Delta-tests).
 *            Then the ring, dropped, goes at the next rcgc_collect, though
 *            the frees of the collection before queued its members to
 *            this thread.
 *   kept     2-cycles held by the test, one per round, among garbage:
 *            kept, intact; freed once dropped.
 *   slow     a thread stays online 20 ms between safepoints, so each
 *            round's grace period waits for it: rounds grow in proportion
 *            (at most five rounds for SLOW_PAIRS 2-cycles, where rounds
 *            of the first size would be twenty; in the sanitizer and hard
 *            builds, whose work is slow and first rounds small, a quarter
 *            of the fixed-size count), and all the garbage is freed.
 *
 *   bg_split the split case through a background collection
 *            (rcgc__test_collect_background: marking bounded by the
 *            budget, which does not bind here).  Required: the same.
 *   bg_stop  a background collection whose marking budget (bounded at
 *            BG_SPEND by rcgc__test_collect_background_spend) runs out in
 *            its first round: BG_HOLD live candidates come first, each
 *            pointing into a live ring of BG_RING, then split 2-cycles.
 *            Required: the round that stopped takes every candidate left,
 *            so every 2-cycle is freed in that one collection (each round
 *            after a stop, marking nothing, would see every pair member's
 *            partner as outside); the collection reports that it stopped;
 *            the ring and the held nodes intact; their candidates put
 *            back, and the ring freed once dropped.
 *
 * In the RCGC_TEST_HARD build a round is two candidates; the counts below
 * hold for any round size.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"
#include "gc_test.h"

#define PAIRS 12000              /* 24000 candidates: several rounds */
#define HUB   100000
#define HUB_PAIRS 8000
#define SLOW_PAIRS 40000
#define BG_RING  20000
#define BG_HOLD  50
#define BG_SPEND 100
#define MAGIC 0x520a0dU

typedef struct node {
    rcgc_ref a, b;
    unsigned magic;
} node;

static void node_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    node *n = obj;

    visit(&n->a, ctx);
    visit(&n->b, ctx);
}

static const rcgc_type node_type = { "rounds_node", sizeof(node), node_traverse, NULL, 0 };

static uint64_t collections_now(void)
{
    rcgc_stats st;

    rcgc_get_stats(&st);
    return st.collections;
}

static node *node_new(void)
{
    node *n = rcgc_new(&node_type);

    if (n == NULL)
        bail_out("out of memory");
    n->magic = MAGIC;
    return n;
}

/* A garbage 2-cycle, its two members candidates side by side. */
static void drop_pair(void)
{
    node *a = node_new(), *b = node_new();

    rcgc_ref_init(&a->a, b);
    rcgc_ref_init(&b->a, a);
    rcgc_decref(a);
    rcgc_decref(b);
}

static node *firsts[PAIRS], *seconds[PAIRS];

/* n 2-cycles; all first members are dropped before any second one, so
   their candidates are n entries apart. */
static void make_split_pairs(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        firsts[i] = node_new();
        seconds[i] = node_new();
        rcgc_ref_init(&firsts[i]->a, seconds[i]);
        rcgc_ref_init(&seconds[i]->a, firsts[i]);
    }
    for (size_t i = 0; i < n; i++)
        rcgc_decref(firsts[i]);
    for (size_t i = 0; i < n; i++)
        rcgc_decref(seconds[i]);
}

static void test_split(void)
{
    uint64_t start = live_now();
    size_t got, rounds, examined;
    uint64_t passes;

    make_split_pairs(PAIRS);
    is_uint(rcgc_get_count(), 2 * PAIRS, "split: %d candidates", 2 * PAIRS);

    passes = collections_now();
    got = rcgc_collect();
    passes = collections_now() - passes;
    rounds = rcgc__test_last_collection(&examined);
    is_uint(got, 2 * PAIRS, "split: one rcgc_collect frees every 2-cycle");
    is_uint(live_now(), start, "split: nothing left");
    ok(rounds > 1, "split: in more than one round (%zu)", rounds);
    is_uint(examined, 2 * PAIRS, "split: each object examined exactly once");
    is_uint(passes, 1, "split: in one pass (nothing put back for another)");
}

/* A live ring of n nodes, held by the test through ring[0] and by the
   ring alone otherwise, with no candidate left. */
static node **make_live_ring(size_t n)
{
    node **ring = calloc(n, sizeof(*ring));

    if (ring == NULL)
        bail_out("out of memory");
    for (size_t i = 0; i < n; i++)
        ring[i] = node_new();
    for (size_t i = 0; i < n; i++)
        rcgc_ref_init(&ring[i]->a, ring[(i + 1) % n]);
    for (size_t i = 1; i < n; i++)
        rcgc_decref(ring[i]);
    rcgc_collect();                    /* their candidates: all live */
    return ring;
}

/* A live ring of HUB nodes; HUB_PAIRS garbage 2-cycles, each pointing at
   a ring node. */
static void test_hub(void)
{
    uint64_t start = live_now();
    node **ring = make_live_ring(HUB);
    size_t got, rounds, examined, bad = 0;
    uint64_t passes;

    is_uint(rcgc_get_count(), 0, "hub: a live ring of %d, no candidate", HUB);

    /* First members dropped first: the round that takes the rest finds
       second members it has marked already. */
    for (size_t i = 0; i < HUB_PAIRS; i++) {
        firsts[i] = node_new();
        seconds[i] = node_new();
        rcgc_ref_init(&firsts[i]->a, seconds[i]);
        rcgc_ref_init(&seconds[i]->a, firsts[i]);
        rcgc_ref_init(&firsts[i]->b, ring[(i * 7919) % HUB]);
    }
    for (size_t i = 0; i < HUB_PAIRS; i++)
        rcgc_decref(firsts[i]);
    for (size_t i = 0; i < HUB_PAIRS; i++)
        rcgc_decref(seconds[i]);
    passes = collections_now();
    got = rcgc_collect();
    passes = collections_now() - passes;
    rounds = rcgc__test_last_collection(&examined);
    is_uint(got, 2 * HUB_PAIRS, "hub: every 2-cycle pointing into the live ring is freed");
    is_uint(passes, 1, "hub: in one pass: a candidate that marking met first is taken "
            "without touching its count (nothing put back for another pass)");
    is_uint(live_now(), start + HUB, "hub: the ring is alive");
    for (size_t i = 0; i < HUB; i++)
        bad += ring[i]->magic != MAGIC || rcgc_refcount(ring[i]) != 1 + (i == 0) ||
               rcgc_is_finalized(ring[i]);
    is_uint(bad, 0, "hub: every ring node intact, its count as before");
    ok(examined <= 2 * HUB_PAIRS + HUB,
       "pitfall 25: hub: the ring examined once, not once per round (%zu members in %zu rounds, at most "
       "%d)", examined, rounds, 2 * HUB_PAIRS + HUB);

    rcgc_decref(ring[0]);
    got = rcgc_collect();
    is_uint(got, HUB, "hub: the ring goes once dropped (its members were queued to this "
            "thread by the frees of the collection before, which merges them first)");
    is_uint(live_now(), start, "hub: nothing left");
    free(ring);
}

/* A 2-cycle held by the test in every round's stretch of candidates. */
static void test_kept(void)
{
    enum { STRETCH = 5000, HELD = 6 };
    node *held[HELD][2];
    uint64_t start = live_now();
    size_t got, bad = 0;

    for (int k = 0; k < HELD; k++) {
        for (int i = 0; i < STRETCH; i++)
            drop_pair();
        held[k][0] = node_new();
        held[k][1] = node_new();
        rcgc_ref_init(&held[k][0]->a, held[k][1]);
        rcgc_ref_init(&held[k][1]->a, held[k][0]);
        rcgc_decref(held[k][1]);       /* a candidate, held through [0] */
    }
    got = rcgc_collect();
    is_uint(got, (size_t)HELD * STRETCH * 2, "kept: every dropped 2-cycle freed");
    is_uint(live_now(), start + 2 * HELD, "kept: the held 2-cycles alive");
    for (int k = 0; k < HELD; k++)
        for (int j = 0; j < 2; j++)
            bad += held[k][j]->magic != MAGIC || rcgc_refcount(held[k][j]) != 1 + (j == 0) ||
                   rcgc_is_finalized(held[k][j]);
    is_uint(bad, 0, "kept: intact, counts as before");
    for (int k = 0; k < HELD; k++)
        rcgc_decref(held[k][0]);
    is_uint(rcgc_collect(), 2 * HELD, "kept: freed once dropped");
    is_uint(live_now(), start, "kept: nothing left");
}

/* A background collection takes the chunks handed over: two safepoints
   hand over the thread's chunk (the second finds it no longer growing). */
static void hand_over(void)
{
    rcgc_safepoint();
    rcgc_safepoint();
}

static void test_bg_split(void)
{
    uint64_t start = live_now();
    size_t rounds, examined;
    bool truncated;

    make_split_pairs(PAIRS);
    hand_over();
    examined = rcgc__test_collect_background(&truncated);
    rounds = rcgc__test_last_collection(NULL);
    is_uint(live_now(), start, "bg_split: one background collection frees every 2-cycle");
    ok(rounds > 1, "bg_split: in more than one round (%zu)", rounds);
    is_uint(examined, 2 * PAIRS, "bg_split: each object examined exactly once");
    ok(!truncated, "bg_split: marking not stopped by the budget");
}

static void test_bg_stop(void)
{
    uint64_t start = live_now();
    node **ring = make_live_ring(BG_RING);
    node *held[BG_HOLD];
    size_t examined, bad = 0;
    bool truncated;

    for (size_t i = 0; i < BG_HOLD; i++) {
        held[i] = node_new();
        rcgc_ref_init(&held[i]->a, ring[i * (BG_RING / BG_HOLD)]);
        rcgc_incref(held[i]);
        rcgc_decref(held[i]);          /* a candidate, held by the test */
    }
    make_split_pairs(PAIRS);
    is_uint(rcgc_get_count(), BG_HOLD + 2 * PAIRS, "bg_stop: %d candidates, the held first",
            BG_HOLD + 2 * PAIRS);

    hand_over();
    examined = rcgc__test_collect_background_spend(BG_SPEND, &truncated);
    ok(truncated, "bg_stop: marking stopped at the budget");
    is_uint(live_now(), start + BG_RING + BG_HOLD,
            "bg_stop: every 2-cycle freed in that one collection: the round that stopped "
            "took every candidate left");
    ok(examined <= BG_HOLD + 2 * PAIRS + BG_SPEND,
       "bg_stop: marking went no further than the budget (%zu members, at most %d)", examined,
       BG_HOLD + 2 * PAIRS + BG_SPEND);
    for (size_t i = 0; i < BG_RING; i++)
        bad += ring[i]->magic != MAGIC || rcgc_refcount(ring[i]) != 1u + (i == 0) +
                                                 (size_t)(i % (BG_RING / BG_HOLD) == 0) ||
               rcgc_is_finalized(ring[i]);
    for (size_t i = 0; i < BG_HOLD; i++)
        bad += held[i]->magic != MAGIC || rcgc_refcount(held[i]) != 1 ||
               rcgc_is_finalized(held[i]);
    is_uint(bad, 0, "bg_stop: the ring and the held nodes intact, their counts as before");
    is_uint(rcgc_get_count(), BG_HOLD, "bg_stop: the held candidates put back");

    for (size_t i = 0; i < BG_HOLD; i++)
        rcgc_decref(held[i]);
    rcgc_decref(ring[0]);
    rcgc_collect();
    is_uint(live_now(), start, "bg_stop: the ring and the held nodes go once dropped");
    free(ring);
}

static int busy_started, stop_busy;     /* atomic */

static uint64_t now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Online, and 20 ms between safepoints. */
static void *busy(void *arg)
{
    (void)arg;
    if (rcgc_thread_attach() != 0)
        bail_out("rcgc_thread_attach");
    __atomic_store_n(&busy_started, 1, __ATOMIC_RELAXED);
    while (!__atomic_load_n(&stop_busy, __ATOMIC_RELAXED)) {
        uint64_t until = now_ns() + 20000000u;

        while (now_ns() < until)
            ;
        rcgc_safepoint();
    }
    rcgc_thread_detach();
    return NULL;
}

static void test_slow(void)
{
    /* Rounds grow until grace periods take about half the time: in this
       build's speed, three rounds, or five when the first grace periods
       end early (the busy thread's next safepoint is anywhere from 0 to
       20 ms away when the first one begins), against twenty rounds of the
       first size; in the slow builds (whose first rounds are 2 or 64
       candidates), many more, but a quarter of what rounds of the first
       size would be. */
    size_t first = rcgc__test_round_min();
    size_t bound = first < 4096 ? 2 * SLOW_PAIRS / first / 4 : 5;
    uint64_t start = live_now();
    size_t got, rounds;
    pthread_t t;

    for (size_t i = 0; i < SLOW_PAIRS; i++)
        drop_pair();
    if (pthread_create(&t, NULL, busy, NULL) != 0)
        bail_out("pthread_create");
    while (!__atomic_load_n(&busy_started, __ATOMIC_RELAXED))
        sched_yield();
    got = rcgc_collect();
    rounds = rcgc__test_last_collection(NULL);
    __atomic_store_n(&stop_busy, 1, __ATOMIC_RELAXED);
    pthread_join(t, NULL);
    is_uint(got, 2 * SLOW_PAIRS, "slow: every 2-cycle freed beside a thread 20 ms between "
            "safepoints");
    is_uint(live_now(), start, "slow: nothing left");
    ok(rounds <= bound, "slow: slow grace periods make rounds bigger: %zu rounds (at most "
       "%zu)", rounds, bound);
}

int main(void)
{
    rcgc_options opts = { .manual = 1 };

    if (rcgc_init(&opts) != 0)
        bail_out("rcgc_init failed");
    test_split();
    test_hub();
    test_kept();
    test_bg_split();
    test_bg_stop();
    test_slow();
    rcgc_shutdown();
    return done_testing();
}
