/*
 * test_gc_ring.c: pitfall 22, the collector walks deep structures in
 * constant stack.
 *
 *   the main thread builds a ring of 10,000,000 nodes (every node but one
 *     a candidate root) and a thread with a 256 KiB stack runs
 *     rcgc_collect (manual mode: the whole collection runs on that thread):
 *     every node is found, finalized once with its next node intact
 *     (pitfall 20), and freed; a recursive mark, scan or free needs a frame
 *     per node and overflows that stack within a few thousand nodes (PHP
 *     #13670 crashed on a 10^6 ring with 8 MB);
 *   a ring of 1,000,000 held by one external reference: the 256 KiB thread
 *     collects nothing (the scan that restores a live ring is deep too),
 *     then, the reference dropped, everything;
 *   a "lollipop": a 1,000,000-node chain ending in a 2-cycle; the chain
 *     dies by its count, the cycle is collected;
 *   the work tables: kept for the next collection of their size, even
 *     past an empty one, until the big one is WORK_DECAY_NS old;
 *   background mode: a smaller ring, built while the collector thread
 *     runs, collected by rcgc_collect from the small-stack thread; then the
 *     idle collector thread gives a big collection's tables back when they
 *     are due, with no collection to trim them.
 *
 * Under ASan/TSan (slow, memory-hungry) the sizes are 10x smaller (still far
 * beyond what 256 KiB allows recursively); RCGC_TEST_RING=n overrides.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"
#include "gc_test.h"

#define SMALL_STACK (256 * 1024)
#define MAGIC 0x5149a11u

typedef struct rnode {
    rcgc_ref      next;
    struct rnode *next_raw;   /* what next holds, without a reference */
    unsigned      magic;
    unsigned      fin;        /* finalizer runs on this node */
} rnode;

static size_t fin_total;      /* atomic */
static size_t fin_bad;        /* atomic: ran twice, or its next node damaged */

static void rnode_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((rnode *)obj)->next, ctx);
}

static void rnode_finalize(void *obj)
{
    rnode *n = obj;

    if (n->magic != MAGIC || n->fin++ != 0 ||
        (n->next_raw != NULL && n->next_raw->magic != MAGIC))
        __atomic_fetch_add(&fin_bad, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&fin_total, 1, __ATOMIC_RELAXED);
}

static const rcgc_type rnode_type = { "gc_ring_node", sizeof(rnode), rnode_traverse,
                                      rnode_finalize, 0 };

static rnode *node_new(void)
{
    rnode *n = rcgc_new(&rnode_type);

    if (n == NULL)
        bail_out("rcgc_new failed");
    n->magic = MAGIC;
    return n;
}

/* A chain of len nodes built tail first, whose last node points to tail
   (NULL: none).  Returns a reference to the head; every other node is held
   by its predecessor's slot only.  *last gets the last node. */
static rnode *chain_new(size_t len, rnode *tail, rnode **last)
{
    rnode *head = NULL, *n;
    size_t i;

    for (i = 0; i < len; i++) {
        n = node_new();
        if (head != NULL) {
            rcgc_ref_init(&n->next, head);
            n->next_raw = head;
            rcgc_decref(head);        /* to 1: a candidate */
        } else {
            *last = n;
            if (tail != NULL) {
                rcgc_ref_init(&n->next, tail);
                n->next_raw = tail;
            }
        }
        head = n;
        if (i % 4096 == 0)
            rcgc_safepoint();
    }
    return head;
}

/* A ring of len nodes; returns a reference to one of them. */
static rnode *ring_new(size_t len)
{
    rnode *last, *head = chain_new(len, NULL, &last);

    rcgc_ref_store(&last->next, head);
    last->next_raw = head;
    return head;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the small-stack collector ------------------------------------------- */

typedef struct job { size_t got; double secs; int attach_rc; } job;

static void *small_collect(void *arg)
{
    job *j = arg;
    double t0;

    j->attach_rc = rcgc_thread_attach();
    if (j->attach_rc != 0)
        return NULL;
    t0 = now_s();
    j->got = rcgc_collect();
    j->secs = now_s() - t0;
    rcgc_thread_detach();
    return NULL;
}

/* Runs rcgc_collect on a 256 KiB stack while main is blocked. */
static size_t collect_small(double *secs)
{
    pthread_attr_t attr;
    pthread_t t;
    job j = { 0, 0, -1 };
    int rc;

    pthread_attr_init(&attr);
    rc = pthread_attr_setstacksize(&attr, SMALL_STACK);
    if (rc != 0)
        bail_out("pthread_attr_setstacksize: %d", rc);
    rc = pthread_create(&t, &attr, small_collect, &j);
    if (rc != 0)
        bail_out("pthread_create: %d", rc);
    pthread_attr_destroy(&attr);
    rcgc_blocking_begin();
    pthread_join(t, NULL);
    rcgc_blocking_end();
    if (j.attach_rc != 0)
        bail_out("the small-stack thread could not attach: %d", j.attach_rc);
    if (secs != NULL)
        *secs = j.secs;
    return j.got;
}

typedef struct snap { rcgc_stats s; size_t fin, bad; } snap;

static void snap_take(snap *p)
{
    rcgc_get_stats(&p->s);
    p->fin = __atomic_load_n(&fin_total, __ATOMIC_RELAXED);
    p->bad = __atomic_load_n(&fin_bad, __ATOMIC_RELAXED);
}

static void expect(const snap *b, size_t got, size_t n, int exact, const char *what)
{
    snap a;

    snap_take(&a);
    if (exact)
        is_size(got, n, "%s: rcgc_collect on a 256 KiB stack returns %zu", what, n);
    else
        ok(got <= n, "%s: rcgc_collect on a 256 KiB stack returns at most %zu (got %zu)",
           what, n, got);
    if (!ok(a.fin - b->fin == n && a.bad == b->bad,
            "%s: %zu finalizers ran, once each, next node intact (pitfall 20)", what, n))
        diag("finalizers %zu, bad %zu", a.fin - b->fin, a.bad - b->bad);
    if (!ok(a.s.collected - b->s.collected == n && a.s.live == b->s.live,
            "%s: stats.collected +%zu, live back to its start", what, n))
        diag("collected +%" PRIu64 ", live %" PRIu64 " -> %" PRIu64,
             a.s.collected - b->s.collected, b->s.live, a.s.live);
}

int main(void)
{
    size_t ring_len = UNDER_SANITIZER ? 1000000 : 10000000;
    const char *env = getenv("RCGC_TEST_RING");
    size_t small_len, bg_len, got;
    rcgc_options opts;
    char what[200];
    rnode *r, *last;
    double t0, build_s, coll_s;
    snap b;

    if (env != NULL && atol(env) > 10)
        ring_len = (size_t)atol(env);
    small_len = ring_len / 10;
    bg_len = RCGC_TEST_HARD ? 2000 : ring_len / 100;
    alarm(240);

    memset(&opts, 0, sizeof opts);
    opts.manual = 1;
    TAP_REQUIRE(rcgc_init(&opts) == 0, "rcgc_init (manual)");

    /* -- the big ring --------------------------------------------------- */
    snap_take(&b);
    t0 = now_s();
    rcgc_decref(ring_new(ring_len));
    build_s = now_s() - t0;
    got = collect_small(&coll_s);
    diag("ring of %zu: built in %.2f s, collected in %.2f s", ring_len, build_s, coll_s);
    snprintf(what, sizeof what, "pitfall 22: a garbage ring of %zu nodes", ring_len);
    expect(&b, got, ring_len, 1, what);
    rcgc_reclaim_wait();

    /* -- a live ring: the scan restores it, in constant stack ------------- */
    snap_take(&b);
    r = ring_new(small_len);
    rcgc_incref(r);
    rcgc_decref(r);
    got = collect_small(&coll_s);
    diag("live ring of %zu scanned in %.2f s", small_len, coll_s);
    is_size(got, 0, "pitfall 22: a ring of %zu held by one reference: nothing collected",
            small_len);
    ok(__atomic_load_n(&fin_total, __ATOMIC_RELAXED) == b.fin && r->magic == MAGIC &&
       r->next_raw->magic == MAGIC && rcgc_refcount(r) == 2,
       "the held ring is intact and no finalizer ran");
    rcgc_decref(r);
    got = collect_small(NULL);
    snprintf(what, sizeof what, "the ring of %zu released", small_len);
    expect(&b, got, small_len, 1, what);

    /* -- a lollipop: a long chain into a 2-cycle -------------------------- */
    r = ring_new(2);
    snap_take(&b);
    b.fin += small_len;                     /* the chain dies by its count */
    {
        rnode *head = chain_new(small_len, r, &last);

        rcgc_decref(r);                     /* only the chain's tail holds the cycle */
        rcgc_decref(head);                  /* the chain goes by counting */
    }
    got = collect_small(NULL);
    {
        snap a;

        snap_take(&a);
        is_size(got, 2, "a %zu-node chain into a 2-cycle: the chain freed by counting, the "
                "cycle collected (returns 2)", small_len);
        ok(a.fin == b.fin + 2 && a.bad == b.bad && a.s.collected - b.s.collected == 2,
           "%zu finalizers, 2 of them by the collector", small_len + 2);
    }

    /* -- the work tables: a collection keeps what it filled, for the next
          one of its size; a smaller one gives the rest back once the big
          one is WORK_DECAY_NS old (here an hour, then none) ------------ */
    rcgc_collect();
    {
        uint64_t decay = rcgc__test_work_decay(3600 * (uint64_t)1000000000);
        size_t idle = rcgc__test_work_kept(), big, again, empty;

        rcgc_decref(ring_new(small_len));
        got = rcgc_collect();
        big = rcgc__test_work_kept();
        rcgc_decref(ring_new(small_len));
        got += rcgc_collect();
        again = rcgc__test_work_kept();
        is_size(got, 2 * small_len, "two garbage rings of %zu, one after the other", small_len);
        ok(big >= small_len * 32 && again == big,
           "the tables of a ring of %zu stay for the next (kept: %zu bytes idle, then %zu, "
           "then %zu)", small_len, idle, big, again);
        rcgc_collect();
        empty = rcgc__test_work_kept();
        ok(empty == big, "an empty collection within the decay keeps them (kept: %zu bytes)",
           empty);
        rcgc__test_work_decay(0);
        rcgc_collect();
        ok(rcgc__test_work_kept() <= idle + (4u << 10) * 5,
           "an empty collection after it gives them back (kept: %zu bytes, %zu before the "
           "rings)", rcgc__test_work_kept(), idle);
        rcgc__test_work_decay(decay);
    }
    rcgc_shutdown();

    /* -- background mode -------------------------------------------------- */
    TAP_REQUIRE(rcgc_init(NULL) == 0, "rcgc_init (background collector)");
    snap_take(&b);
    rcgc_decref(ring_new(bg_len));
    got = collect_small(NULL);
    snprintf(what, sizeof what, "background mode: a garbage ring of %zu", bg_len);
    expect(&b, got, bg_len, 0, what);

    /* -- ... and the idle collector thread gives back a big collection's
          tables when they are due, with no collection to trim them ----- */
    {
        uint64_t decay = rcgc__test_work_decay(0);
        size_t idle, big, kept;
        struct timespec since, now;
        double waited;

        rcgc_collect();                     /* gives back what the last kept */
        idle = rcgc__test_work_kept();
        rcgc__test_work_decay(200 * (uint64_t)1000000);
        rcgc_disable();                     /* no collection but the one asked */
        rcgc_decref(ring_new(small_len));
        got = rcgc_collect();
        clock_gettime(CLOCK_MONOTONIC, &since);
        big = rcgc__test_work_kept();
        do {
            struct timespec ms = { 0, 10 * 1000000 };

            nanosleep(&ms, NULL);
            kept = rcgc__test_work_kept();
            clock_gettime(CLOCK_MONOTONIC, &now);
            waited = (double)(now.tv_sec - since.tv_sec) +
                     (double)(now.tv_nsec - since.tv_nsec) / 1e9;
        } while ((kept > idle + (2u << 20) || kept >= big / 2) && waited < 30);
        is_size(got, small_len, "background mode: a garbage ring of %zu", small_len);
        /* Due 0.2 s after the trim that ends the collection, a little
           before rcgc_collect returns.  Each of the seven tables keeps
           256 KiB (WORK_KEEP), or what it had before if more. */
        ok(big >= small_len * 32 && kept <= idle + (2u << 20) && kept < big / 2 &&
           waited >= 0.15,
           "its tables (%zu bytes) given back by the idle collector thread %.2f s after "
           "the collection (decay 0.2 s; kept %zu, %zu before)", big, waited, kept, idle);
        rcgc_enable();
        rcgc__test_work_decay(decay);
    }
    rcgc_shutdown();
    return done_testing();
}
