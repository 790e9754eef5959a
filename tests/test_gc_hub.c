/*
 * test_gc_hub.c: PITFALLS 25, a long-lived hub rescanned at every
 * collection (php-src #17131).  A background collection marks at most
 * MARK_CREDIT members beyond its candidates per candidate handed over
 * (runtime/collector.c, "Bounded marking"); these tests check that bound
 * from the outside, and that the bound costs no garbage: what the
 * candidates themselves reach is still collected at once, and garbage
 * behind a big subgraph within a bounded number of collections.
 *
 * Manual mode; hand_over() hands the round's candidates over (two
 * safepoints: the second finds the chunk no longer growing) and
 * rcgc__test_collect_background runs one background collection (bounded)
 * on the test thread; rcgc_collect runs a full one (unbounded).
 *
 *   hub      a hub object with HUB_CHILDREN slots, each holding a live
 *            tracked child (the children point at each other in pairs, so
 *            they are not trivially acyclic).  Each round the hub is
 *            touched (incref, decref: a candidate again) and GARBAGE
 *            2-cycles are made and dropped; one background collection
 *            follows.  Required: every round collects exactly the
 *            2-cycles; after every round the members examined so far
 *            stay within (MARK_CREDIT + 1) x the candidates so far (the
 *            hub's subgraph is 200 times a round's); and the hub's subgraph is
 *            examined in full now and then (some rounds are not
 *            truncated): its garbage would be found.
 *   behind   a garbage ring of RING nodes reached from a single candidate
 *            (built with rcgc_ref_init, then one decrement): background
 *            collections fed by GARBAGE 2-cycles a round collect it within
 *            8 * RING / (MARK_CREDIT * candidates per round) + 2 rounds
 *            (half of the credit is saved for attempts at big subgraphs,
 *            and those double: at most as much again is spent on attempts
 *            that fail).
 *   full     the same ring: one rcgc_collect takes it at once.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"
#include "gc_test.h"

#define HUB_CHILDREN 20000
#define GARBAGE      50        /* 2-cycles a round: 100 candidates */
#define ROUNDS       100
#define RING         8000
#define CREDIT       16        /* MARK_CREDIT in runtime/collector.c */

typedef struct node {
    rcgc_ref a, b;
} node;

static void node_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    node *n = obj;

    visit(&n->a, ctx);
    visit(&n->b, ctx);
}

static const rcgc_type node_type = { "hub_node", sizeof(node), node_traverse, NULL, 0 };

typedef struct hub {
    size_t   n;
    rcgc_ref slots[];
} hub;

static void hub_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    hub *h = obj;

    for (size_t i = 0; i < h->n; i++)
        visit(&h->slots[i], ctx);
}

static const rcgc_type hub_type = { "hub", sizeof(hub), hub_traverse, NULL, 0 };

/* GARBAGE 2-cycles, dropped: 2 * GARBAGE candidates. */
/* A safepoint hands over a chunk that is full enough or has stopped
   growing since the last one: the second of two does, whatever it holds. */
static void hand_over(void)
{
    rcgc_safepoint();
    rcgc_safepoint();
}

static void make_garbage(void)
{
    for (int i = 0; i < GARBAGE; i++) {
        node *a = rcgc_new(&node_type), *b = rcgc_new(&node_type);

        if (a == NULL || b == NULL)
            bail_out("out of memory");
        rcgc_ref_init(&a->a, b);
        rcgc_ref_init(&b->a, a);
        rcgc_decref(a);
        rcgc_decref(b);
    }
}

/* A garbage ring of n nodes of which only the first is a candidate. */
static void make_ring(size_t n)
{
    node *first = rcgc_new(&node_type), *prev = first;

    if (first == NULL)
        bail_out("out of memory");
    for (size_t i = 1; i < n; i++) {
        node *next = rcgc_new(&node_type);
        if (next == NULL)
            bail_out("out of memory");
        /* ref_init moves no count through a decrement: no candidate */
        rcgc_ref_init(&prev->a, next);
        if (prev != first)
            rcgc__test_set_counts(prev, 1, 0);   /* drop the builder's hold */
        prev = next;
    }
    rcgc_ref_init(&prev->a, first);
    if (prev != first)
        rcgc__test_set_counts(prev, 1, 0);
    rcgc_decref(first);                          /* the one candidate */
}

static void test_hub(void)
{
    hub *h = rcgc_new_sized(&hub_type, sizeof(hub) + HUB_CHILDREN * sizeof(rcgc_ref));
    uint64_t base;
    size_t examined_total = 0, candidates_total = 0;
    int full_rounds = 0, bad_collected = 0, overspent = 0;

    if (h == NULL)
        bail_out("out of memory");
    h->n = HUB_CHILDREN;
    for (size_t i = 0; i < HUB_CHILDREN; i += 2) {
        node *x = rcgc_new(&node_type), *y = rcgc_new(&node_type);
        if (x == NULL || y == NULL)
            bail_out("out of memory");
        rcgc_ref_init(&x->a, y);
        rcgc_ref_init(&y->a, x);
        rcgc_ref_store(&h->slots[i], x);
        rcgc_ref_store(&h->slots[i + 1], y);
        rcgc_decref(x);
        rcgc_decref(y);
    }
    rcgc_collect();                 /* the children's candidates: all live */
    base = live_now();

    for (int r = 0; r < ROUNDS; r++) {
        uint64_t before = live_now();
        size_t examined, cands = 2 * GARBAGE + 1;
        bool truncated;

        rcgc_incref(h);
        rcgc_decref(h);             /* the hub: a candidate again */
        make_garbage();
        hand_over();
        examined = rcgc__test_collect_background(&truncated);
        if (live_now() != before)
            bad_collected++;
        if (!truncated)
            full_rounds++;
        examined_total += examined;
        candidates_total += cands;
        if (examined_total > (CREDIT + 1) * candidates_total)
            overspent++;
    }
    is_int(bad_collected, 0, "pitfall 25: every round collects exactly its %d 2-cycles "
           "beside the hub", GARBAGE);
    is_int(overspent, 0, "pitfall 25: after every round, the members examined so far are "
           "within (credit + 1) x the candidates so far");
    diag("%zu members examined over %d rounds for %zu candidates; the hub's subgraph "
         "is %d", examined_total, ROUNDS, candidates_total, HUB_CHILDREN + 1);
    ok(full_rounds > 0, "pitfall 25: the hub's subgraph is examined in full now and then "
       "(%d of %d rounds)", full_rounds, ROUNDS);
    ok(full_rounds < ROUNDS / 2, "pitfall 25: ... but not at every round (%d of %d)",
       full_rounds, ROUNDS);
    is_uint(live_now(), base, "pitfall 25: the hub and its children are all alive");

    rcgc_decref(h);
    rcgc_collect();
    is_uint(live_now(), base - HUB_CHILDREN - 1, "pitfall 25: the hub and its children "
            "go once dropped");
}

static void test_behind(void)
{
    uint64_t start = live_now();
    int rounds = 0, bound = 8 * RING / (CREDIT * 2 * GARBAGE) + 2;

    make_ring(RING);
    is_uint(live_now(), start + RING, "pitfall 25: a garbage ring of %d with one candidate",
            RING);
    while (live_now() > start && rounds < 10 * bound) {
        make_garbage();
        hand_over();
        rcgc__test_collect_background(NULL);
        rounds++;
    }
    is_uint(live_now(), start, "pitfall 25: background collections reach the ring");
    ok(rounds <= bound, "pitfall 25: ... within %d rounds (took %d)", bound, rounds);
}

static void test_full(void)
{
    uint64_t start = live_now();
    size_t n;

    make_ring(RING);
    n = rcgc_collect();
    is_size(n, RING, "pitfall 25: rcgc_collect marks without a bound: the ring at once");
    is_uint(live_now(), start, "pitfall 25: ... and nothing is left");
}

int main(void)
{
    rcgc_options opts = { .manual = 1 };

    if (rcgc_init(&opts) != 0)
        bail_out("rcgc_init failed");
    test_hub();
    test_behind();
    test_full();
    rcgc_shutdown();
    return done_testing();
}
