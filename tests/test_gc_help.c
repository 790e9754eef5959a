/*
 * test_gc_help.c: a thread waiting in rcgc_collect helps the collection it
 * waits for (runtime/collector.c, "Help"): steps 4 (count) and 6 (delta)
 * run in two halves of the member table, the second on the waiting
 * thread, whose edges are appended to the first's; marking visits each
 * level of its breadth-first order in two halves, whose targets the
 * collecting thread enters afterwards; the take enters each half of the
 * candidates' chunks into its own room, leaving the entries that need more
 * than a pin to the collecting thread, and closes the gap they leave.
 * Whichever thread runs a half, the collection must decide exactly as one
 * thread would.
 *
 * The heap, built KINDS times over so that each kind lies in both halves
 * of the member table (members are entered in candidate order, then
 * breadth first):
 *   ring        a garbage 3-ring
 *   pair        a garbage 2-cycle whose members have finalizers; each
 *               checks that its partner is still intact
 *   dependent   a garbage 2-cycle that points at a live 2-cycle (the live
 *               one is kept; the garbage one is freed in the same run)
 *   live        a 2-cycle held by this thread, which is also a candidate
 *   weak        a weak reference to a ring member, and one to a live member
 *   hidden      a garbage 3-ring of which only one member is a candidate:
 *               the other two were examined (and found live) by an earlier
 *               collection and not decremented since, so only marking finds
 *               them; missed, they would keep the ring alive
 *   zombie      a node buffered, then released: dead in its chunk, an
 *               entry the take leaves to the collecting thread, which frees
 *               it (in the first half, a gap in its room)
 * and, built first, the spine: a garbage ring of SPINE_ROUNDS first
 * rounds' worth of nodes, all of them candidates, so that the first
 * round's marking reaches more than ROUND_REACH members per root and the
 * round takes every candidate left at once (collector.c, "Rounds"), the
 * spine's members among them already marked: entries the take leaves to
 * the collecting thread too.
 *
 *   helped      with the threshold lowered (rcgc__test_help), a collection
 *               offers the steps' halves to this thread, which waits in
 *               rcgc_collect; it must take one at least once in TRIES
 *               collections, and take in two parts at least once; each
 *               collection reclaims exactly the garbage,
 *               runs each finalizer once, keeps the live cycles intact,
 *               clears the weak references to garbage and no others;
 *   alone       the same with helping off (the threshold above any table):
 *               nothing offered, no take in parts, the same results;
 *   manual      no collector thread: rcgc_collect collects on the caller,
 *               which never waits, so nothing is offered; same results.
 *   cancel      a thread with a cancellation pending calls rcgc_collect,
 *               which is no cancellation point (cancelled in its wait, the
 *               thread would leave the collector's lock held): it returns,
 *               and then this thread's rcgc_collect returns too (a watchdog
 *               fails the test if it hangs); the same for rcgc_reclaim_wait
 *               (the reclaimer's lock; runtime.c, "Cancellation").
 * At the end the live cycles are dropped and collected: live is back to
 * where it began.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"
#include "gc_test.h"

#define KINDS      2000          /* each kind, this many times */
#define HELP_LOW   (RCGC_TEST_HARD ? 2 : 64)   /* help with tables this big */
#define TRIES      10
#define SPINE_ROUNDS 10          /* the spine, in first rounds (at most
                                    ROUND_MIN and a chunk) */
#define MAGIC      0x68656c70u

typedef struct node {
    rcgc_ref next, other;
    uint32_t magic;
    struct node *partner;        /* raw: must be intact at finalize */
} node;

static void node_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((node *)obj)->next, ctx);
    visit(&((node *)obj)->other, ctx);
}

static size_t finalized, bad_partner;

static void fnode_finalize(void *obj)
{
    node *n = obj;

    finalized++;
    if (n->magic != MAGIC || n->partner == NULL || n->partner->magic != MAGIC)
        bad_partner++;
}

static const rcgc_type node_type = { "help_node", sizeof(node), node_traverse, NULL, 0 };
static const rcgc_type fnode_type = { "help_fnode", sizeof(node), node_traverse,
                                      fnode_finalize, 0 };

static node *make(const rcgc_type *type)
{
    node *n = rcgc_new(type);

    if (n == NULL)
        bail_out("out of memory");
    n->magic = MAGIC;
    return n;
}

/* Two new nodes pointing at each other through `next`; the caller holds
   a reference to each. */
static void link_two(node *a, node *b)
{
    rcgc_ref_init(&a->next, b);
    rcgc_ref_init(&b->next, a);
    a->partner = b;
    b->partner = a;
}

typedef struct heap {
    node *live[KINDS][2];        /* held by this thread */
    rcgc_weakref *weak_dead[KINDS], *weak_live[KINDS];
    node *hidden[KINDS];         /* held until build drops them */
    size_t garbage;              /* objects the collection must reclaim */
    size_t finalizers;           /* ... of which have finalizers */
} heap;

/* The hidden rings, held by this thread through their first member; an
   rcgc_collect then takes the other members' candidate entries, finding
   them live.  Returns what that collection reclaimed. */
static size_t hide(heap *hp)
{
    for (size_t k = 0; k < KINDS; k++) {
        node *h0 = make(&node_type), *h1 = make(&node_type), *h2 = make(&node_type);

        rcgc_ref_init(&h0->next, h1);
        rcgc_ref_init(&h1->next, h2);
        rcgc_ref_init(&h2->next, h0);
        rcgc_decref(h1);
        rcgc_decref(h2);
        hp->hidden[k] = h0;         /* never decremented: no candidate */
    }
    return rcgc_collect();
}

/* The spine (see the top), its members' entries in order: the ring's
   last link is made before any drop, so each drop buffers. */
static size_t spine(void)
{
    size_t n = SPINE_ROUNDS * (rcgc__test_round_min() + RCGC__ROOTS_CHUNK);
    node *first = make(&node_type), *prev = first;

    for (size_t i = 1; i < n; i++) {
        node *next = make(&node_type);

        rcgc_ref_init(&prev->next, next);
        prev = next;
    }
    rcgc_ref_init(&prev->next, first);
    for (node *m = first, *next;; m = next) {
        next = rcgc_ref_load(&m->next);
        rcgc_decref(next);          /* the ring holds it */
        rcgc_decref(m);
        if (next == first)
            break;
    }
    return n;
}

static void build(heap *hp)
{
    hp->garbage = spine();
    hp->finalizers = 0;
    for (size_t k = 0; k < KINDS; k++) {
        node *r0 = make(&node_type), *r1 = make(&node_type), *r2 = make(&node_type);
        node *f0 = make(&fnode_type), *f1 = make(&fnode_type);
        node *d0 = make(&node_type), *d1 = make(&node_type);
        node *l0 = make(&node_type), *l1 = make(&node_type);

        /* ring */
        rcgc_ref_init(&r0->next, r1);
        rcgc_ref_init(&r1->next, r2);
        rcgc_ref_init(&r2->next, r0);
        /* pair, with finalizers */
        link_two(f0, f1);
        /* live, and the dependent garbage that points at it */
        link_two(l0, l1);
        link_two(d0, d1);
        rcgc_ref_init(&d1->other, l1);
        /* weak */
        hp->weak_dead[k] = rcgc_weakref_new(r1, NULL, NULL);
        hp->weak_live[k] = rcgc_weakref_new(l0, NULL, NULL);
        if (hp->weak_dead[k] == NULL || hp->weak_live[k] == NULL)
            bail_out("out of memory");
        hp->live[k][0] = l0;
        hp->live[k][1] = l1;

        /* Drops, which make candidates: the live ones stay held. */
        rcgc_decref(r0);
        rcgc_decref(r1);
        rcgc_decref(r2);
        rcgc_decref(f0);
        rcgc_decref(f1);
        rcgc_decref(d0);
        rcgc_decref(d1);
        rcgc_incref(l0);
        rcgc_decref(l0);
        rcgc_decref(hp->hidden[k]);     /* the hidden ring's one candidate */
        /* zombie */
        node *z = make(&node_type);
        rcgc_incref(z);
        rcgc_decref(z);                 /* buffered */
        rcgc_decref(z);                 /* dead in its chunk */
        hp->garbage += 10;
        hp->finalizers += 2;
        if (k % 256 == 0)
            rcgc_safepoint();
    }
}

/* After a collection: the live cycles intact, weak references right.
   Returns the number of things wrong. */
static size_t check_after(heap *hp)
{
    size_t wrong = 0;

    for (size_t k = 0; k < KINDS; k++) {
        node *l0 = hp->live[k][0], *l1 = hp->live[k][1];
        void *w;

        wrong += l0->magic != MAGIC || l1->magic != MAGIC;
        w = rcgc_ref_load(&l0->next);
        wrong += w != l1;
        rcgc_decref(w);
        w = rcgc_ref_load(&l1->next);
        wrong += w != l0;
        rcgc_decref(w);
        wrong += rcgc_weakref_get(hp->weak_dead[k]) != NULL;
        w = rcgc_weakref_get(hp->weak_live[k]);
        wrong += w != l0;
        rcgc_decref(w);
        rcgc_weakref_free(hp->weak_dead[k]);
        rcgc_weakref_free(hp->weak_live[k]);
    }
    return wrong;
}

static void drop_live(heap *hp)
{
    for (size_t k = 0; k < KINDS; k++) {
        rcgc_decref(hp->live[k][0]);
        rcgc_decref(hp->live[k][1]);
    }
}

/* One collection of a fresh heap; returns the parts this thread took. */
static uint64_t round_of(const char *what, heap *hp, int expect_offers, uint64_t *parted)
{
    uint64_t offered0, taken0, offered, taken, parted0;
    size_t got;

    is_size(hide(hp), 0, "%s: the hidden rings, held, are kept", what);
    build(hp);
    finalized = bad_partner = 0;
    rcgc__test_help(0, &offered0, &taken0);
    parted0 = rcgc__test_takes_in_parts();
    got = rcgc_collect();
    rcgc__test_help(0, &offered, &taken);
    *parted = rcgc__test_takes_in_parts() - parted0;
    is_size(got, hp->garbage, "%s: the collection reclaims exactly the garbage", what);
    ok(finalized == hp->finalizers && bad_partner == 0,
       "%s: each finalizer once, its partner intact (%zu of %zu; %zu bad)", what,
       finalized, hp->finalizers, bad_partner);
    is_size(check_after(hp), 0, "%s: live cycles intact, weak references right", what);
    if (expect_offers)
        ok(offered - offered0 >= 2, "%s: both steps offered a half (%llu)", what,
           (unsigned long long)(offered - offered0));
    else
        ok(offered == offered0 && *parted == 0, "%s: nothing offered, no take in parts (%llu)",
           what, (unsigned long long)*parted);
    drop_live(hp);
    got = rcgc_collect();
    is_size(got, 2 * (size_t)KINDS, "%s: the live cycles, dropped, are reclaimed", what);
    return taken - taken0;
}

static volatile sig_atomic_t cancel_returned;

static void *cancelled_caller(void *arg)
{
    void (*call)(void) = (void (*)(void))arg;

    node *box, *n;

    if (rcgc_thread_attach() != 0)
        return NULL;
    /* Something for the reclaimer to wait for: an object overwritten out
       of a slot waits for a grace period (object.c). */
    box = make(&node_type);
    n = make(&node_type);
    rcgc_ref_store(&box->next, n);
    rcgc_decref(n);
    rcgc_ref_store(&box->next, NULL);
    rcgc_decref(box);
    pthread_cancel(pthread_self());         /* pending: deferred */
    call();
    cancel_returned = 1;
    /* Still pending: it would act at the next cancellation point.  Not
       acted on here: AddressSanitizer (gcc 12) reports a false stack
       underflow when a cancelled thread unwinds through its frames. */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    return (void *)1;                       /* detached on exit */
}

static void on_alarm(int sig)
{
    static const char msg[] = "not ok - cancel: a call hung (a lock of the runtime "
                              "left held by a cancelled thread)\nBail out!\n";
    (void)sig;
    (void)!write(1, msg, sizeof msg - 1);
    _exit(1);
}

static void collect_void(void)
{
    rcgc_collect();
}

static void cancel_case(const char *name, void (*call)(void))
{
    pthread_t t;
    void *ret;

    signal(SIGALRM, on_alarm);
    alarm(60);
    cancel_returned = 0;
    TAP_REQUIRE(pthread_create(&t, NULL, cancelled_caller, (void *)call) == 0,
                "pthread_create");
    /* Online for a while, no quiescent state: its grace period waits for
       us, so its call waits (the point where a cancellation would act);
       then offline, so that it can end. */
    usleep(200 * 1000);
    rcgc_blocking_begin();
    pthread_join(t, &ret);
    rcgc_blocking_end();
    ok(ret == (void *)1 && cancel_returned,
       "cancel: %s returned to a thread with a cancellation pending", name);
    call();
    alarm(0);
    ok(1, "cancel: %s afterwards returns", name);
}

int main(void)
{
    static heap hp;
    rcgc_options opts = { 0 };
    uint64_t taken = 0, parted = 0, parted_now;
    size_t before;
    uint64_t live0;
    int i;

    TAP_REQUIRE(rcgc_init(&opts) == 0, "rcgc_init (collector thread)");
    rcgc_disable();                      /* only our rcgc_collect collects */
    live0 = live_now();
    before = rcgc__test_help(HELP_LOW, NULL, NULL);
    for (i = 0; i < TRIES && (taken == 0 || parted == 0); i++) {
        taken += round_of("helped", &hp, 1, &parted_now);
        parted += parted_now;
    }
    ok(taken >= 1, "helped: this thread took a half (%llu parts, %d collections)",
       (unsigned long long)taken, i);
    ok(parted >= 1, "helped: takes in two parts (%llu, %d collections)",
       (unsigned long long)parted, i);
    rcgc__test_help(SIZE_MAX, NULL, NULL);
    round_of("alone", &hp, 0, &parted_now);
    rcgc__test_help(before, NULL, NULL);
    is_size((size_t)(live_now() - live0), 0, "nothing left alive");
    cancel_case("rcgc_collect", collect_void);
    cancel_case("rcgc_reclaim_wait", rcgc_reclaim_wait);
    rcgc_shutdown();

    opts.manual = 1;
    TAP_REQUIRE(rcgc_init(&opts) == 0, "rcgc_init (manual)");
    rcgc__test_help(HELP_LOW, NULL, NULL);
    round_of("manual", &hp, 0, &parted_now);
    rcgc__test_help(before, NULL, NULL);
    rcgc_shutdown();
    return done_testing();
}
