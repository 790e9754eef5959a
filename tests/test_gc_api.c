/*
 * test_gc_api.c: every function of the collector's gc-module API.
 *
 * Manual mode (opts.manual, so nothing collects behind the test's back):
 *   rcgc_get_threshold reports opts.threshold; rcgc_set_threshold sets it,
 *     0 restores the default (1 in RCGC_TEST_HARD builds, else 10000);
 *     rcgc_set_debug/rcgc_get_debug round-trip;
 *   rcgc_get_count: 0 after a collection; a tracked object decremented to
 *     nonzero counts once however often; rcgc_ref_exchange buffers the
 *     tracked object it stores, not a leaf; stats.candidates agrees;
 *     a collection empties it;
 *   rcgc_collect returns 0 with no garbage, the number of nodes of the
 *     cycles otherwise; rcgc_get_stats: collected, freed, allocated grow by
 *     it, live = allocated - freed, collect_ns_last > 0, collect_ns_total
 *     grows;
 *   rcgc_is_tracked (traverse and not ACYCLIC), rcgc_is_finalized (0 for
 *     live objects), rcgc_foreach_object (every live tracked object once,
 *     never leaves or ACYCLIC objects, early stop), rcgc_get_referents
 *     (non-NULL slots in traverse order, early stop, none for a leaf),
 *     rcgc_get_referrers (tracked holders only, early stop);
 *   callbacks: START then STOP per collection on the collecting thread
 *     with the right ctx, STOP's collected = what rcgc_collect returned,
 *     stats.collections grows by the number of STOPs; a callback may call
 *     rcgc_get_stats/rcgc_get_count (outside every lock); removing needs
 *     the same fn and ctx, ENOENT otherwise; a removed callback is not
 *     called;
 *   rcgc_freeze: rcgc_get_freeze_count = the live tracked objects; a
 *     frozen cycle that becomes garbage is kept; a frozen object dying by
 *     its count leaves the freeze count; objects created after the freeze
 *     are collected; rcgc_unfreeze: count 0 and the frozen garbage cycle
 *     is collected;
 *   RCGC_DEBUG_SAVEALL: garbage goes to the garbage list (each node once,
 *     intact, not freed, counted in stats.uncollectable; a second
 *     collection adds no duplicates); rcgc_garbage_foreach stops early;
 *     rcgc_garbage_clear empties it and the next collection frees them,
 *     each finalized once.
 * Background mode (opts.threshold = 8):
 *   rcgc_disable: rcgc_isenabled 0, many candidates and no automatic
 *     collection (stats.collections and the finalizers unchanged, the
 *     candidates stay counted), while rcgc_collect still works;
 *   rcgc_enable: the collector thread frees new garbage by itself;
 *   pitfall 27: rcgc_foreach_object, rcgc_get_referrers and
 *     rcgc_get_referents on another thread while collections run: every
 *     object visited is intact (never poisoned; an object the main thread
 *     is still initialising may show its zeroed body).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

#define MAGIC 0xa91c0deu
#define DEFAULT_THRESHOLD (RCGC_TEST_HARD ? 1u : 10000u)

typedef struct anode {
    rcgc_ref a, b, c;
    unsigned magic;
    unsigned fin;            /* atomic: finalizer runs on this node */
} anode;

typedef struct acyc { rcgc_ref r; } acyc;
typedef struct leaf { unsigned magic; } leaf;

static unsigned fin_total;   /* atomic */
static unsigned fin_bad;     /* atomic: ran twice or on a damaged node */

static void anode_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    anode *n = obj;

    visit(&n->a, ctx);
    visit(&n->b, ctx);
    visit(&n->c, ctx);
}

static void anode_finalize(void *obj)
{
    anode *n = obj;

    if (n->magic != MAGIC || __atomic_fetch_add(&n->fin, 1, __ATOMIC_RELAXED) != 0)
        __atomic_fetch_add(&fin_bad, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&fin_total, 1, __ATOMIC_RELAXED);
}

static void acyc_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((acyc *)obj)->r, ctx);
}

static const rcgc_type anode_type = { "gc_api_node", sizeof(anode), anode_traverse,
                                      anode_finalize, 0 };
static const rcgc_type acyc_type = { "gc_api_acyclic", sizeof(acyc), acyc_traverse, NULL,
                                     RCGC_TYPE_ACYCLIC };
static const rcgc_type leaf_type = { "gc_api_leaf", sizeof(leaf), NULL, NULL, 0 };

static unsigned fin(void) { return __atomic_load_n(&fin_total, __ATOMIC_RELAXED); }
static unsigned bad(void) { return __atomic_load_n(&fin_bad, __ATOMIC_RELAXED); }

static void *must(void *p)
{
    if (p == NULL)
        bail_out("rcgc_new failed");
    return p;
}

static anode *node_new(void)
{
    anode *n = must(rcgc_new(&anode_type));

    /* Atomic: another thread's rcgc_foreach_object may see the object as
       soon as rcgc_new registers it, before this store. */
    __atomic_store_n(&n->magic, MAGIC, __ATOMIC_RELAXED);
    return n;
}

/* A ring of k nodes linked by slot a; out[] (if not NULL) gets them.
   Returns a reference to the first; the rest are held by the ring only. */
static anode *ring_new(unsigned k, anode **out)
{
    anode *first = node_new(), *prev = first, *n;
    unsigned i;

    if (out != NULL)
        out[0] = first;
    for (i = 1; i < k; i++) {
        n = node_new();
        if (out != NULL)
            out[i] = n;
        rcgc_ref_store(&prev->a, n);
        if (prev != first)
            rcgc_decref(prev);
        prev = n;
    }
    rcgc_ref_store(&prev->a, first);
    if (prev != first)
        rcgc_decref(prev);
    return first;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_blocked(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    rcgc_safepoint();
    rcgc_blocking_begin();
    nanosleep(&ts, NULL);
    rcgc_blocking_end();
}

/* ---- visitors ------------------------------------------------------------ */

#define MAX_SEEN 64

typedef struct seen {
    size_t calls;
    size_t stop_after;       /* return nonzero on this call (0: never) */
    size_t bad;              /* an anode with a bad magic, or no type */
    size_t n;
    void  *obj[MAX_SEEN];
} seen;

static int record(void *obj, void *ctx)
{
    seen *s = ctx;
    const rcgc_type *t = rcgc_type_of(obj);

    s->calls++;
    if (t == NULL || (t == &anode_type && ((anode *)obj)->magic != MAGIC))
        s->bad++;
    if (s->n < MAX_SEEN)
        s->obj[s->n++] = obj;
    return s->stop_after != 0 && s->calls == s->stop_after;
}

static size_t times_seen(const seen *s, const void *obj)
{
    size_t i, k = 0;

    for (i = 0; i < s->n; i++)
        k += s->obj[i] == obj;
    return k;
}

/* ---- sections ------------------------------------------------------------ */

static void sec_settings(void)
{
    is_size(rcgc_get_threshold(), 77, "rcgc_get_threshold reports opts.threshold (77)");
    rcgc_set_threshold(123);
    is_size(rcgc_get_threshold(), 123, "rcgc_set_threshold(123) -> rcgc_get_threshold 123");
    rcgc_set_threshold(0);
    is_size(rcgc_get_threshold(), DEFAULT_THRESHOLD,
            "rcgc_set_threshold(0) restores the default (%u)", DEFAULT_THRESHOLD);
    is_uint(rcgc_get_debug(), 0, "rcgc_get_debug is 0 by default");
    rcgc_set_debug(RCGC_DEBUG_STATS | RCGC_DEBUG_SAVEALL);
    is_uint(rcgc_get_debug(), RCGC_DEBUG_STATS | RCGC_DEBUG_SAVEALL,
            "rcgc_set_debug(STATS|SAVEALL) -> rcgc_get_debug returns them");
    rcgc_set_debug(0);
    is_uint(rcgc_get_debug(), 0, "rcgc_set_debug(0) -> 0");
}

static void sec_count(void)
{
    anode *t, *u, *v;
    leaf *l;
    rcgc_stats st;
    int i;

    rcgc_collect();
    is_size(rcgc_get_count(), 0, "rcgc_get_count is 0 after a collection");
    t = node_new();
    for (i = 0; i < 3; i++)
        rcgc_incref(t);
    for (i = 0; i < 3; i++)
        rcgc_decref(t);
    is_size(rcgc_get_count(), 1,
            "a tracked object decremented to nonzero three times is buffered once");
    u = node_new();
    rcgc_incref(u);
    rcgc_decref(u);
    is_size(rcgc_get_count(), 2, "a second tracked object: count 2");
    rcgc_get_stats(&st);
    is_uint(st.candidates, 2, "stats.candidates agrees with rcgc_get_count");
    v = node_new();
    rcgc_decref(rcgc_ref_exchange(&t->b, v));    /* t->b was empty: returns NULL */
    is_size(rcgc_get_count(), 3, "rcgc_ref_exchange buffers the tracked object it stores");
    l = must(rcgc_new(&leaf_type));
    rcgc_decref(rcgc_ref_exchange(&t->c, l));
    is_size(rcgc_get_count(), 3, "rcgc_ref_exchange storing a leaf buffers nothing");
    is_size(rcgc_collect(), 0, "no cycles among them: rcgc_collect returns 0");
    is_size(rcgc_get_count(), 0, "the collection examined every candidate: count 0");
    rcgc_decref(t);          /* frees t, v and l by counting */
    rcgc_decref(u);
    rcgc_collect();
}

static void sec_collect_and_stats(void)
{
    rcgc_stats s0, s1;
    size_t r;

    rcgc_collect();
    is_size(rcgc_collect(), 0, "rcgc_collect with no garbage returns 0");
    rcgc_get_stats(&s0);
    rcgc_decref(ring_new(1, NULL));
    rcgc_decref(ring_new(2, NULL));
    rcgc_decref(ring_new(3, NULL));
    r = rcgc_collect();
    rcgc_get_stats(&s1);
    is_size(r, 6, "rcgc_collect returns 6 for a self-cycle, a 2-cycle and a 3-cycle");
    is_size(rcgc_collect(), 0, "and 0 right after");
    is_uint(s1.collected - s0.collected, 6, "stats.collected +6");
    is_uint(s1.freed - s0.freed, 6, "stats.freed +6 (cycle garbage counts as freed)");
    is_uint(s1.allocated - s0.allocated, 6, "stats.allocated +6");
    ok(s0.live == s0.allocated - s0.freed && s1.live == s1.allocated - s1.freed &&
       s1.live == s0.live, "stats.live = allocated - freed, back to its start");
    ok(s1.collections > s0.collections, "stats.collections grew (%" PRIu64 " -> %" PRIu64 ")",
       s0.collections, s1.collections);
    ok(s1.collect_ns_last > 0, "stats.collect_ns_last > 0 after a collection (%" PRIu64 ")",
       s1.collect_ns_last);
    ok(s1.collect_ns_total >= s0.collect_ns_total + s1.collect_ns_last,
       "stats.collect_ns_total grew by at least collect_ns_last");
    is_uint(s1.candidates, 0, "stats.candidates 0 after the collection");
}

static void sec_introspection(void)
{
    anode *t, *h1, *h2, *h3, *x;
    acyc *ac;
    leaf *l;
    seen s;
    size_t r;

    rcgc_collect();
    t = node_new();
    h1 = node_new();
    h2 = node_new();
    h3 = node_new();
    x = node_new();
    ac = must(rcgc_new(&acyc_type));
    l = must(rcgc_new(&leaf_type));
    rcgc_ref_store(&h1->a, t);
    rcgc_ref_store(&h2->b, t);
    rcgc_ref_store(&h3->b, h2);
    rcgc_ref_store(&x->a, t);
    rcgc_ref_store(&x->b, h1);
    rcgc_ref_store(&x->c, h2);
    rcgc_ref_store(&ac->r, t);

    ok(rcgc_is_tracked(t) == 1 && rcgc_is_tracked(h1) == 1,
       "rcgc_is_tracked: 1 for a type with traverse");
    is_int(rcgc_is_tracked(ac), 0, "rcgc_is_tracked: 0 for an RCGC_TYPE_ACYCLIC type");
    is_int(rcgc_is_tracked(l), 0, "rcgc_is_tracked: 0 for a type without traverse");
    is_int(rcgc_is_tracked(NULL), 0, "rcgc_is_tracked(NULL) is 0");
    ok(rcgc_is_finalized(t) == 0 && rcgc_is_finalized(l) == 0,
       "rcgc_is_finalized: 0 for live objects");

    memset(&s, 0, sizeof s);
    r = rcgc_foreach_object(record, &s);
    ok(r == s.calls && r == 5 && s.bad == 0,
       "rcgc_foreach_object visits the 5 live tracked objects, returns 5 (got %zu, %zu calls)",
       r, s.calls);
    ok(times_seen(&s, t) == 1 && times_seen(&s, h1) == 1 && times_seen(&s, h2) == 1 &&
       times_seen(&s, h3) == 1 && times_seen(&s, x) == 1,
       "rcgc_foreach_object: each tracked object exactly once");
    ok(times_seen(&s, ac) == 0 && times_seen(&s, l) == 0,
       "rcgc_foreach_object: never the ACYCLIC object or the leaf");
    memset(&s, 0, sizeof s);
    s.stop_after = 2;
    r = rcgc_foreach_object(record, &s);
    ok(s.calls == 2 && r == 2, "rcgc_foreach_object stops when fn returns nonzero (2 calls, "
       "returned %zu)", r);

    memset(&s, 0, sizeof s);
    rcgc_get_referents(x, record, &s);
    ok(s.calls == 3 && s.obj[0] == t && s.obj[1] == h1 && s.obj[2] == h2,
       "rcgc_get_referents: every slot value in traverse order (%zu calls)", s.calls);
    memset(&s, 0, sizeof s);
    rcgc_get_referents(h3, record, &s);
    ok(s.calls == 1 && s.obj[0] == h2, "rcgc_get_referents skips NULL slots");
    memset(&s, 0, sizeof s);
    s.stop_after = 1;
    rcgc_get_referents(x, record, &s);
    is_size(s.calls, 1, "rcgc_get_referents stops when fn returns nonzero");
    memset(&s, 0, sizeof s);
    rcgc_get_referents(l, record, &s);
    rcgc_get_referents(NULL, record, &s);
    is_size(s.calls, 0, "rcgc_get_referents: nothing for a leaf or NULL");

    memset(&s, 0, sizeof s);
    r = rcgc_get_referrers(t, record, &s);
    ok(r == 3 && s.calls == 3 && times_seen(&s, h1) == 1 && times_seen(&s, h2) == 1 &&
       times_seen(&s, x) == 1,
       "rcgc_get_referrers: the three tracked holders, once each (returned %zu)", r);
    is_size(times_seen(&s, ac), 0, "rcgc_get_referrers: not the untracked ACYCLIC holder");
    memset(&s, 0, sizeof s);
    s.stop_after = 1;
    r = rcgc_get_referrers(t, record, &s);
    ok(s.calls == 1 && r == 1, "rcgc_get_referrers stops when fn returns nonzero");
    memset(&s, 0, sizeof s);
    r = rcgc_get_referrers(h3, record, &s);
    ok(r == 0 && s.calls == 0, "rcgc_get_referrers: 0 for an unreferenced object");

    rcgc_decref(x);
    rcgc_decref(h3);
    rcgc_decref(h2);
    rcgc_decref(h1);
    rcgc_decref(ac);
    rcgc_decref(t);
    rcgc_decref(l);
    memset(&s, 0, sizeof s);
    r = rcgc_foreach_object(record, &s);
    ok(r == 0 && times_seen(&s, t) == 0, "rcgc_foreach_object: freed objects are gone");
}

/* ---- callbacks ----------------------------------------------------------- */

#define MAX_EV 32

typedef struct cbrec {
    size_t n;
    int    bad_ctx, not_main;
    struct { rcgc_phase phase; size_t collected, uncollectable; } ev[MAX_EV];
} cbrec;

static pthread_t main_thread;
static cbrec rec_a, rec_b;

static void cb_record(rcgc_phase phase, const rcgc_collect_info *info, void *ctx)
{
    cbrec *r = ctx;
    rcgc_stats st;

    if (r != &rec_a && r != &rec_b) {
        rec_a.bad_ctx++;
        return;
    }
    if (!pthread_equal(pthread_self(), main_thread))
        r->not_main++;
    rcgc_get_stats(&st);            /* outside every lock: no deadlock */
    (void)rcgc_get_count();
    if (r->n < MAX_EV) {
        r->ev[r->n].phase = phase;
        r->ev[r->n].collected = info != NULL ? info->collected : (size_t)-1;
        r->ev[r->n].uncollectable = info != NULL ? info->uncollectable : (size_t)-1;
    }
    r->n++;
}

static void cb_other(rcgc_phase phase, const rcgc_collect_info *info, void *ctx)
{
    (void)phase;
    (void)info;
    (void)ctx;
}

/* START/STOP alternate, starting with START; returns the number of STOPs
   (-1 if malformed) and the sum of STOP's collected. */
static long stops(const cbrec *r, size_t *sum)
{
    size_t i;
    long k = 0;

    *sum = 0;
    if (r->n % 2 != 0 || r->n > MAX_EV)
        return -1;
    for (i = 0; i < r->n; i++) {
        if (r->ev[i].phase != (i % 2 == 0 ? RCGC_PHASE_START : RCGC_PHASE_STOP))
            return -1;
        if (i % 2 == 1) {
            k++;
            *sum += r->ev[i].collected;
        }
    }
    return k;
}

static void sec_callbacks(void)
{
    rcgc_stats s0, s1;
    size_t r, sum;
    long k;

    rcgc_collect();
    main_thread = pthread_self();
    is_int(rcgc_callback_add(cb_record, &rec_a), 0, "rcgc_callback_add returns 0");
    rcgc_get_stats(&s0);
    rcgc_decref(ring_new(3, NULL));
    r = rcgc_collect();
    rcgc_get_stats(&s1);
    k = stops(&rec_a, &sum);
    ok(k >= 1, "callback: START then STOP for each collection (%zu events)", rec_a.n);
    ok(k >= 1 && sum == r && r == 3,
       "callback: STOP's info->collected sums to what rcgc_collect returned (%zu, %zu)",
       sum, r);
    ok(k >= 1 && s1.collections - s0.collections == (uint64_t)k,
       "stats.collections grew by the number of STOP callbacks (%ld)", k);
    ok(rec_a.bad_ctx == 0 && rec_a.not_main == 0,
       "callback gets its ctx, on the collecting thread (manual: the caller)");

    is_int(rcgc_callback_add(cb_record, &rec_b), 0, "a second callback (same fn, other ctx)");
    is_int(rcgc_callback_remove(cb_record, (void *)&s0), ENOENT,
           "rcgc_callback_remove with the wrong ctx: ENOENT");
    is_int(rcgc_callback_remove(cb_other, &rec_a), ENOENT,
           "rcgc_callback_remove of a function never added: ENOENT");
    is_int(rcgc_callback_remove(cb_record, &rec_a), 0, "rcgc_callback_remove returns 0");
    memset(&rec_a, 0, sizeof rec_a);
    rcgc_decref(ring_new(2, NULL));
    r = rcgc_collect();
    ok(rec_a.n == 0 && rec_a.bad_ctx == 0, "a removed callback is not called");
    k = stops(&rec_b, &sum);
    ok(k >= 1 && sum == r && r == 2, "the remaining callback still is (collected %zu)", sum);
    is_int(rcgc_callback_remove(cb_record, &rec_a), ENOENT,
           "removing it again: ENOENT");
    is_int(rcgc_callback_remove(cb_record, &rec_b), 0, "remove the second");
    memset(&rec_b, 0, sizeof rec_b);
    rcgc_collect();
    ok(rec_b.n == 0, "no callback left: none called");
}

/* A callback is user code on the collecting thread, as a finalizer is: it
   may call any rcgc function, rcgc_collect included, which returns 0 at
   once (the collection is this thread's own; waiting for another would
   wait for itself).  It makes one garbage 2-cycle, once. */
static struct {
    unsigned calls, made;          /* atomic */
    size_t   inner;                /* atomic: what inner rcgc_collects returned */
} reenter;

static void cb_reenter(rcgc_phase phase, const rcgc_collect_info *info, void *ctx)
{
    (void)info;
    (void)ctx;
    __atomic_fetch_add(&reenter.calls, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&reenter.inner, rcgc_collect(), __ATOMIC_RELAXED);
    if (phase == RCGC_PHASE_STOP && __atomic_exchange_n(&reenter.made, 1, __ATOMIC_RELAXED) == 0)
        rcgc_decref(ring_new(2, NULL));
}

/* Background mode (mode names it): the callbacks run on the collector
   thread. */
static void sec_callback_reentry(const char *mode)
{
    rcgc_stats s0, s1;
    size_t r1, r2;

    rcgc_collect();
    rcgc_get_stats(&s0);
    memset(&reenter, 0, sizeof reenter);
    TAP_REQUIRE(rcgc_callback_add(cb_reenter, NULL) == 0, "rcgc_callback_add (%s)", mode);
    rcgc_decref(ring_new(3, NULL));
    r1 = rcgc_collect();
    r2 = rcgc_collect();
    rcgc_get_stats(&s1);
    rcgc_callback_remove(cb_reenter, NULL);
    ok(__atomic_load_n(&reenter.calls, __ATOMIC_RELAXED) >= 4 &&
           __atomic_load_n(&reenter.inner, __ATOMIC_RELAXED) == 0,
       "%s: pitfall 19: a callback's rcgc_collect returns 0 at once, at START and STOP "
       "(%u calls)", mode,
       __atomic_load_n(&reenter.calls, __ATOMIC_RELAXED));
    /* In background mode a collection of the threshold's may come first. */
    ok(s1.live == s0.live && (strcmp(mode, "manual") != 0 || (r1 == 3 && r2 == 2)),
       "%s: pitfall 19: the collections go on; the 2-cycle a callback made and dropped is "
       "collected by the next (%zu, %zu; live %+lld)", mode, r1, r2, (long long)(s1.live - s0.live));
}

/* ---- freeze -------------------------------------------------------------- */

static int count_visit(void *obj, void *ctx)
{
    (void)obj;
    (*(size_t *)ctx)++;
    return 0;
}

static void sec_freeze(void)
{
    anode *k, *x, *y;
    size_t live_tracked = 0, fc, r;
    unsigned f0;

    rcgc_collect();
    is_size(rcgc_get_freeze_count(), 0, "rcgc_get_freeze_count is 0 before any freeze");
    k = ring_new(3, NULL);
    x = node_new();
    y = node_new();
    rcgc_ref_store(&y->a, x);
    rcgc_foreach_object(count_visit, &live_tracked);
    rcgc_freeze();
    fc = rcgc_get_freeze_count();
    ok(fc == live_tracked && fc == 5,
       "rcgc_freeze: rcgc_get_freeze_count = the live tracked objects (%zu, %zu)", fc,
       live_tracked);
    f0 = fin();
    rcgc_decref(k);                         /* the frozen cycle is garbage now */
    r = rcgc_collect();
    ok(r == 0 && fin() == f0, "a frozen cycle that became garbage is not collected");
    rcgc_decref(y);                         /* y dies by its count, x goes to 1 */
    is_size(rcgc_get_freeze_count(), fc - 1,
            "a frozen object that dies by its count leaves the freeze count");
    rcgc_decref(ring_new(2, NULL));         /* created after the freeze */
    r = rcgc_collect();
    is_size(r, 2, "a cycle created after the freeze is collected");
    rcgc_unfreeze();
    is_size(rcgc_get_freeze_count(), 0, "rcgc_unfreeze: freeze count 0");
    r = rcgc_collect();
    is_size(r, 3, "after rcgc_unfreeze the formerly frozen garbage cycle is collected");
    rcgc_decref(x);
    rcgc_collect();
}

/* ---- SAVEALL and the garbage list ---------------------------------------- */

static void sec_saveall(void)
{
    anode *nodes[5];
    rcgc_stats s0, s1;
    unsigned f0, b0;
    size_t r, i, all;
    seen s;

    rcgc_collect();
    memset(&s, 0, sizeof s);
    is_size(rcgc_garbage_foreach(record, &s), 0, "the garbage list starts empty");
    rcgc_set_debug(RCGC_DEBUG_SAVEALL);
    f0 = fin();
    b0 = bad();
    rcgc_decref(ring_new(2, nodes));
    rcgc_decref(ring_new(3, nodes + 2));
    rcgc_get_stats(&s0);
    r = rcgc_collect();
    rcgc_get_stats(&s1);
    diag("with SAVEALL rcgc_collect returned %zu", r);
    memset(&s, 0, sizeof s);
    all = rcgc_garbage_foreach(record, &s);
    for (i = 0; i < 5; i++)
        if (times_seen(&s, nodes[i]) != 1)
            break;
    ok(all == 5 && s.calls == 5 && i == 5 && s.bad == 0,
       "SAVEALL: the 5 cycle nodes are on the garbage list, once each, intact (%zu)", all);
    is_uint(s1.uncollectable - s0.uncollectable, 5, "SAVEALL: stats.uncollectable +5");
    ok(s1.live == s0.live && s1.freed == s0.freed, "SAVEALL: nothing freed");
    is_uint(s1.collected - s0.collected, r, "stats.collected grew by what rcgc_collect returned");
    rcgc_collect();
    memset(&s, 0, sizeof s);
    all = rcgc_garbage_foreach(record, &s);
    is_size(all, 5, "a second collection adds no duplicates to the garbage list");
    memset(&s, 0, sizeof s);
    s.stop_after = 1;
    all = rcgc_garbage_foreach(record, &s);
    ok(s.calls == 1 && all == 1, "rcgc_garbage_foreach stops when fn returns nonzero");

    rcgc_set_debug(0);
    rcgc_garbage_clear();
    memset(&s, 0, sizeof s);
    is_size(rcgc_garbage_foreach(record, &s), 0, "rcgc_garbage_clear empties the list");
    rcgc_get_stats(&s0);
    r = rcgc_collect();
    rcgc_get_stats(&s1);
    is_size(r, 5, "SAVEALL off: the next collection frees the 5 former garbage nodes");
    ok(fin() - f0 == 5 && bad() == b0, "each of them finalized exactly once in all");
    ok(s1.live == s0.live - 5, "stats.live -5");
    rcgc_garbage_clear();                   /* empty: nothing happens */
}

/* ---- background: disable / enable ---------------------------------------- */

static unsigned want_fin;
static int all_finalized(void) { return fin() >= want_fin; }

static int wait_until(int (*cond)(void), double seconds)
{
    double end = now_s() + seconds;

    while (!cond()) {
        if (now_s() > end)
            return 0;
        sleep_blocked(2);
    }
    return 1;
}

static void sec_enable_disable(void)
{
    enum { RINGS = 100 };
    rcgc_stats s0, s1;
    size_t c0, r;
    unsigned f0;
    int i, done;

    is_size(rcgc_get_threshold(), 8, "background: opts.threshold 8");
    is_int(rcgc_isenabled(), 1, "rcgc_isenabled is 1 by default");
    rcgc_collect();
    rcgc_disable();
    is_int(rcgc_isenabled(), 0, "rcgc_disable -> rcgc_isenabled 0");
    rcgc_get_stats(&s0);
    c0 = rcgc_get_count();
    f0 = fin();
    for (i = 0; i < RINGS; i++) {
        rcgc_decref(ring_new(2, NULL));
        if (i % 10 == 0)
            sleep_blocked(1);
    }
    sleep_blocked(300);
    rcgc_get_stats(&s1);
    ok(s1.collections == s0.collections && fin() == f0,
       "disabled: %d candidates (threshold 8) and no automatic collection in 300 ms", 2 * RINGS);
    is_size(rcgc_get_count(), c0 + 2 * RINGS, "disabled: the candidates stay counted");
    r = rcgc_collect();
    is_size(r, 2 * RINGS, "disabled: rcgc_collect still collects (returns %d)", 2 * RINGS);
    ok(fin() - f0 == 2 * RINGS, "disabled: and the finalizers ran");

    rcgc_enable();
    is_int(rcgc_isenabled(), 1, "rcgc_enable -> rcgc_isenabled 1");
    rcgc_get_stats(&s0);
    f0 = fin();
    for (i = 0; i < RINGS; i++)
        rcgc_decref(ring_new(2, NULL));
    want_fin = f0 + 2 * RINGS;
    done = wait_until(all_finalized, 30);
    ok(done, "enabled: the collector thread frees %d nodes of garbage without rcgc_collect "
       "(%u freed)", 2 * RINGS, fin() - f0);
    /* The finalizers run inside the collection; its statistics are
       published when it ends, a moment later. */
    for (i = 0; i < 5000; i++) {
        rcgc_get_stats(&s1);
        if (s1.collected - s0.collected >= 2 * RINGS)
            break;
        sleep_blocked(1);
    }
    ok(s1.collections > s0.collections && s1.collected - s0.collected == 2 * RINGS,
       "enabled: stats.collections grew (%" PRIu64 ") and stats.collected +%d",
       s1.collections - s0.collections, 2 * RINGS);
}

/* ---- pitfall 27: introspection during collections ------------------------ */

static anode *hub;
static int walker_stop;        /* atomic */
static size_t walker_rounds, walker_bad;

static int check_visit(void *obj, void *ctx)
{
    const rcgc_type *t = rcgc_type_of(obj);

    unsigned magic;

    (void)ctx;
    if (t == &anode_type) {
        /* 0: just created by the main thread, not yet initialised. */
        magic = __atomic_load_n(&((anode *)obj)->magic, __ATOMIC_RELAXED);
        if (magic != MAGIC && magic != 0)
            walker_bad++;
    } else if (t == NULL) {
        walker_bad++;
    }
    return 0;
}

static void *walker(void *arg)
{
    (void)arg;
    if (rcgc_thread_attach() != 0)
        abort();
    while (!__atomic_load_n(&walker_stop, __ATOMIC_ACQUIRE) || walker_rounds < 3) {
        rcgc_foreach_object(check_visit, NULL);
        rcgc_get_referrers(hub, check_visit, NULL);
        rcgc_get_referents(hub, check_visit, NULL);
        walker_rounds++;
        rcgc_safepoint();
    }
    rcgc_thread_detach();
    return NULL;
}

static void sec_concurrent_introspection(void)
{
    int rounds = RCGC_TEST_HARD ? 20 : 200;
    anode *nodes[4];
    pthread_t t;
    int i, j;

    hub = node_new();
    rcgc_ref_store(&hub->a, hub);          /* the hub refers to itself, stays live */
    pthread_create(&t, NULL, walker, NULL);
    for (i = 0; i < rounds; i++) {
        for (j = 0; j < 4; j++) {
            anode *first = ring_new(4, nodes);

            rcgc_ref_store(&nodes[1]->b, hub);   /* garbage that refers to the hub */
            rcgc_decref(first);
        }
        rcgc_collect();
        rcgc_safepoint();
    }
    __atomic_store_n(&walker_stop, 1, __ATOMIC_RELEASE);
    rcgc_blocking_begin();
    pthread_join(t, NULL);
    rcgc_blocking_end();
    ok(walker_bad == 0 && walker_rounds >= 3,
       "pitfall 27: foreach_object/get_referrers/get_referents on another thread during %d "
       "collections: every visited object intact (%zu walks)", rounds, walker_rounds);
    rcgc_ref_store(&hub->a, NULL);
    rcgc_decref(hub);
}

int main(void)
{
    rcgc_options opts;

    alarm(240);
    memset(&opts, 0, sizeof opts);
    opts.manual = 1;
    opts.threshold = 77;
    TAP_REQUIRE(rcgc_init(&opts) == 0, "rcgc_init (manual, threshold 77)");
    sec_settings();
    sec_count();
    sec_collect_and_stats();
    sec_introspection();
    sec_callbacks();
    sec_callback_reentry("manual");
    sec_freeze();
    sec_saveall();
    rcgc_shutdown();

    memset(&opts, 0, sizeof opts);
    opts.threshold = 8;
    TAP_REQUIRE(rcgc_init(&opts) == 0, "rcgc_init (background collector, threshold 8)");
    sec_enable_disable();
    sec_callback_reentry("background");
    sec_concurrent_introspection();
    rcgc_collect();
    rcgc_shutdown();
    return done_testing();
}
