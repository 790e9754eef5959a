/*
 * test_owing.c: an OWING word (refcount.c, "Decrements by fetch_sub"): a
 * non-owner's decrement by fetch_sub found the shared count at zero, so the
 * word is below zero with no queue entry until the same thread's CAS makes
 * one.  The main thread A owns every object; for each case it plays the
 * debtor by hand: the fetch_sub that the inline rcgc_decref would make,
 * then, later, rcgc__decref_sub_done with the word it replaced, which is
 * what the inline path calls next.  In between, other threads meet the
 * word:
 *
 *   inc      thread B's rcgc_incref (a fetch_add) lifts the word to 0 and
 *            must wait, holding its new reference, until the entry is made
 *            (rule 2: no increment hides a debt); then the counts add up,
 *            the object is queued once and DEFERRED (rule 1);
 *   load     B's rcgc_ref_load (a try-increment by CAS) must wait before it
 *            increments;
 *   collect  thread C's rcgc_collect must not pin the OWING member of a
 *            garbage self-cycle (the pin is a try-increment) nor free it
 *            while it is OWING; once the entry is made and merged, the
 *            cycle is collected.
 *
 * Each wait is checked for WAIT_MS while A is off in a blocking region, so
 * a thread that did not wait would have finished.  Elsewhere A waits
 * online where its queue must stay as it is (a blocking region merges it).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

#define WAIT_MS 100

static const rcgc_options manual = { .manual = 1 };

typedef struct node { rcgc_ref next; int id; } node;

static unsigned finalized;   /* atomic */

static void count_finalize(void *obj)
{
    (void)obj;
    __atomic_fetch_add(&finalized, 1, __ATOMIC_RELAXED);
}

static void node_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((node *)obj)->next, ctx);
}

static const rcgc_type cell_type = { "cell", sizeof(int), NULL, count_finalize, 0 };
static const rcgc_type node_type = { "node", sizeof(node), node_traverse, count_finalize, 0 };

static unsigned n_finalized(void) { return __atomic_load_n(&finalized, __ATOMIC_RELAXED); }

/* ---- the other thread, one request at a time ---------------------------- */

enum { REQ_NONE, REQ_INCREF, REQ_DECREF2, REQ_LOAD, REQ_DECREF_LOADED, REQ_COLLECT, REQ_EXIT };

typedef struct peer {
    pthread_t thread;
    int       req;        /* atomic: what to do next */
    int       done;       /* atomic: requests finished */
    void     *obj;        /* REQ_INCREF, REQ_DECREF2 */
    void     *loaded;     /* REQ_LOAD's result */
    size_t    collected;  /* REQ_COLLECT's result */
} peer;

static rcgc_ref global;

static void *peer_main(void *arg)
{
    peer *p = arg;
    int seen = 0;

    if (rcgc_thread_attach() != 0)
        abort();
    for (;;) {
        int req;

        /* Wait offline: A's collections and merges never wait for us. */
        rcgc_blocking_begin();
        while ((req = __atomic_load_n(&p->req, __ATOMIC_ACQUIRE)) == REQ_NONE)
            sched_yield();
        rcgc_blocking_end();
        __atomic_store_n(&p->req, REQ_NONE, __ATOMIC_RELAXED);
        switch (req) {
        case REQ_INCREF:        rcgc_incref(p->obj); break;
        case REQ_DECREF2:       rcgc_decref(p->obj); rcgc_decref(p->obj); break;
        case REQ_LOAD:          p->loaded = rcgc_ref_load(&global); break;
        case REQ_DECREF_LOADED: rcgc_decref(p->loaded); break;
        case REQ_COLLECT:       p->collected = rcgc_collect(); break;
        default:                break;
        }
        __atomic_store_n(&p->done, ++seen, __ATOMIC_RELEASE);
        if (req == REQ_EXIT)
            break;
    }
    rcgc_thread_detach();
    return NULL;
}

static int peer_done(peer *p) { return __atomic_load_n(&p->done, __ATOMIC_ACQUIRE); }

static void peer_ask(peer *p, int req)
{
    __atomic_store_n(&p->req, req, __ATOMIC_RELEASE);
}

/* Waits offline, so that A's grace periods do not hold p up; but a
   blocking region merges A's queue (thread.c). */
static void peer_wait(peer *p, int done)
{
    rcgc_blocking_begin();
    while (peer_done(p) < done)
        sched_yield();
    rcgc_blocking_end();
}

/* Waits online, A's queue left as it is (p must need no grace period). */
static void peer_wait_online(peer *p, int done)
{
    while (peer_done(p) < done)
        sched_yield();
}

/* Sleeps ms offline; true if p finished nothing more meanwhile. */
static bool peer_still_waiting(peer *p, int done_before, long ms)
{
    struct timespec ts = { 0, ms * 1000000L };

    rcgc_blocking_begin();
    nanosleep(&ts, NULL);
    rcgc_blocking_end();
    return peer_done(p) == done_before;
}

/* The debtor's fetch_sub, as the inline rcgc_decref makes it: a tracked
   object not in a root buffer is buffered first. */
static intptr_t debt(void *obj)
{
    if (rcgc__word_load_relaxed(&rcgc__hdr(obj)->owner) & RCGC__OWNER_UNBUFFERED)
        rcgc__buffer_root(obj);
    return __atomic_fetch_sub(&rcgc__hdr(obj)->ref_shared.v, RCGC__SHARED_ONE,
                              __ATOMIC_RELEASE);
}

static intptr_t shared_word(void *obj)
{
    intptr_t shared;

    rcgc__test_raw(obj, NULL, NULL, &shared);
    return shared;
}

static void case_inc(peer *b)
{
    int *c = rcgc_new(&cell_type);
    intptr_t old, s;
    int done;

    TAP_REQUIRE(c != NULL, "rcgc_new");
    rcgc_incref(c);               /* local 2: one for the debtor, one for B */
    old = debt(c);
    s = shared_word(c);
    ok(rcgc__shared_owes(s), "inc: a fetch_sub from shared count 0 leaves the word OWING (%#lx)",
       (unsigned long)s);
    is_size(rcgc_refcount(c), 1, "inc: the count is already right: local 2 + shared -1");

    b->obj = c;
    done = peer_done(b);
    peer_ask(b, REQ_INCREF);
    /* B's fetch_add lands first (a busy machine may be slow to run B). */
    for (int i = 0; i < 5000 && shared_word(c) != 0; i++)
        peer_still_waiting(b, done, 1);
    s = shared_word(c);
    ok(s == 0, "inc: B's fetch_add is in (the word reads 0), no entry yet (%#lx)",
       (unsigned long)s);
    ok(peer_still_waiting(b, done, WAIT_MS), "inc: B's increment waits while the word is OWING");
    is_uint(n_finalized(), 0, "inc: nothing freed");

    rcgc__decref_sub_done(c, old);  /* the debtor makes the entry */
    peer_wait_online(b, done + 1);
    s = shared_word(c);
    ok((s & RCGC__SHARED_QUEUED) && (s >> RCGC__SHARED_SHIFT) == 1,
       "inc: QUEUED, shared count -1 + 1 (B) + 1 (the entry's reference) (%#lx)",
       (unsigned long)s);
    is_size(rcgc_refcount(c), 2, "inc: B holds two references");
    is_size(rcgc__test_queue_length(), 1, "inc: queued to A once");
    ok(rcgc__u32_load_relaxed(&rcgc__hdr(c)->gc_bits) & RCGC__GC_DEFERRED,
       "inc: a queued object's memory waits for a grace period (DEFERRED)");

    peer_ask(b, REQ_DECREF2);
    peer_wait_online(b, done + 2);
    is_uint(n_finalized(), 0, "inc: B's decrements of a queued word free nothing");
    rcgc_safepoint();               /* A merges: 2 + (-1) - 1 = 0 */
    is_uint(n_finalized(), 1, "inc: A's merge frees it, once");
    is_size(rcgc__test_queue_length(), 0, "inc: queue empty");
}

static void case_load(peer *b)
{
    int *c = rcgc_new(&cell_type);
    intptr_t old;
    int done;

    TAP_REQUIRE(c != NULL, "rcgc_new");
    __atomic_store_n(&finalized, 0, __ATOMIC_RELAXED);
    rcgc_ref_store(&global, c);   /* local 2: A's (the debtor's) and the slot's */
    old = debt(c);
    done = peer_done(b);
    peer_ask(b, REQ_LOAD);
    ok(peer_still_waiting(b, done, WAIT_MS), "load: B's rcgc_ref_load waits while the word is OWING");
    ok(rcgc__shared_owes(shared_word(c)), "load: and has not incremented (still OWING)");

    rcgc__decref_sub_done(c, old);
    peer_wait_online(b, done + 1);
    ok(b->loaded == c, "load: B's load returns the object once the entry is made");
    is_size(rcgc_refcount(c), 2, "load: the slot's reference and B's");
    peer_ask(b, REQ_DECREF_LOADED);
    peer_wait_online(b, done + 2);
    rcgc_ref_store(&global, NULL);
    is_uint(n_finalized(), 0, "load: alive until A merges its entry");
    rcgc_safepoint();
    is_uint(n_finalized(), 1, "load: A's merge frees it, once");
}

static void case_collect(peer *cp)
{
    node *n = rcgc_new(&node_type);
    intptr_t old;
    size_t collected;
    int done;

    TAP_REQUIRE(n != NULL, "rcgc_new");
    __atomic_store_n(&finalized, 0, __ATOMIC_RELAXED);
    rcgc_ref_store(&n->next, n);  /* a self-cycle: local 2 */
    old = debt(n);                /* A's reference goes: garbage, but OWING */
    done = peer_done(cp);
    peer_ask(cp, REQ_COLLECT);
    ok(peer_still_waiting(cp, done, WAIT_MS),
       "collect: C's collection waits rather than pin the OWING member");
    is_uint(n_finalized(), 0, "collect: the OWING member is not freed");

    rcgc__decref_sub_done(n, old);
    peer_wait(cp, done + 1);
    /* C found the member QUEUED (external), or, if A's wait above merged
       it first, a merged self-cycle: collected either way by now. */
    rcgc_safepoint();
    collected = cp->collected + rcgc_collect();
    is_size(collected, 1, "collect: the self-cycle is collected once its entry is merged");
    is_uint(n_finalized(), 1, "collect: finalized once");
}

int main(void)
{
    peer b = { 0 }, c = { 0 };

    TAP_REQUIRE(rcgc_init(&manual) == 0, "rcgc_init");
    TAP_REQUIRE(pthread_create(&b.thread, NULL, peer_main, &b) == 0, "thread B");
    TAP_REQUIRE(pthread_create(&c.thread, NULL, peer_main, &c) == 0, "thread C");

    case_inc(&b);
    case_load(&b);
    case_collect(&c);

    peer_ask(&b, REQ_EXIT);
    peer_ask(&c, REQ_EXIT);
    rcgc_blocking_begin();
    pthread_join(b.thread, NULL);
    pthread_join(c.thread, NULL);
    rcgc_blocking_end();
    rcgc_shutdown();
    return done_testing();
}
