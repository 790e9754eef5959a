/*
 * test_gc_cycles.c: the cycle collector frees garbage cycles and keeps what
 * is still reachable.  Every case runs twice: with opts.manual (collections
 * only inside rcgc_collect, whose return value is then exact) and with the
 * background collector thread (which may take some garbage itself, so the
 * finalizer count and stats.collected are what is checked there).
 *
 *   a self-cycle, a 2-cycle, a 5-cycle;
 *   pitfall 13: dependent cycles (a garbage cycle pointing into another,
 *     three deep): all freed by one rcgc_collect;
 *   a cycle held by an external reference: kept, finalizers not run; the
 *     reference dropped: collected;
 *   a cycle reachable from a live container (itself a candidate): kept;
 *     the container's slot cleared: collected; the container then dies by
 *     its count;
 *   pitfall 31: a cycle built by one thread (online, passing safepoints)
 *     and dropped by the main thread; a cycle built by main and dropped by
 *     a thread that then exits;
 *   pitfall 5: a thread buffers candidates and exits (returning while
 *     attached, or detaching): rcgc_get_count still counts them and a later
 *     rcgc_collect on another thread frees the cycles;
 *   pitfall 24: decrements of RCGC_TYPE_ACYCLIC and leaf objects never
 *     reach the candidate buffer (rcgc_get_count and stats.candidates stay
 *     put; a tracked decrement, as control, adds one) (manual mode only:
 *     the background collector would empty the buffer);
 *   pitfall 14: objects that die by their count while sitting in a root
 *     buffer (unpublished, published, and in the buffer of a thread that
 *     exited): memory reclaimed, then rcgc_collect neither crashes nor
 *     counts them (ASan checks the stale entries are never read);
 *   pitfall 26: two threads call rcgc_collect at once: together they free
 *     every cycle exactly once;
 *   a random graph of 30 000 nodes, a few held: exactly what the held
 *     nodes do not reach is freed, against an oracle, and what they reach
 *     keeps its counts.
 *
 * Each finalizer checks its node's magic, that it runs once, and that the
 * node its slot points to is still intact (pitfall 20).
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

#define MAGIC 0xc7c1e5u

typedef struct gnode {
    rcgc_ref      next;       /* the cycle's edge */
    rcgc_ref      other;      /* a second edge: into another cycle, or a container's */
    struct gnode *next_raw;   /* what next holds, without a reference */
    unsigned      magic;
    unsigned      fin;        /* atomic: finalizer runs on this node */
} gnode;

typedef struct acyc { rcgc_ref r; unsigned magic; } acyc;
typedef struct leaf { unsigned magic; } leaf;

static unsigned fin_total;    /* atomic: gnode finalizer runs */
static unsigned fin_bad;      /* atomic: a finalizer found damage or ran twice */

static void gnode_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    gnode *n = obj;

    visit(&n->next, ctx);
    visit(&n->other, ctx);
}

static void gnode_finalize(void *obj)
{
    gnode *n = obj;

    if (n->magic != MAGIC || __atomic_fetch_add(&n->fin, 1, __ATOMIC_RELAXED) != 0 ||
        (n->next_raw != NULL && n->next_raw->magic != MAGIC))
        __atomic_fetch_add(&fin_bad, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&fin_total, 1, __ATOMIC_RELAXED);
}

static void acyc_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((acyc *)obj)->r, ctx);
}

static const rcgc_type gnode_type = { "gc_cycle_node", sizeof(gnode), gnode_traverse,
                                      gnode_finalize, 0 };
static const rcgc_type acyc_type = { "gc_acyclic_holder", sizeof(acyc), acyc_traverse, NULL,
                                     RCGC_TYPE_ACYCLIC };
static const rcgc_type leaf_type = { "gc_leaf", sizeof(leaf), NULL, NULL, 0 };

static gnode *node_new(void)
{
    gnode *n = rcgc_new(&gnode_type);

    if (n == NULL)
        bail_out("rcgc_new failed");
    n->magic = MAGIC;
    return n;
}

static void link_next(gnode *a, gnode *b)
{
    rcgc_ref_store(&a->next, b);
    a->next_raw = b;
}

/* A ring of k nodes (k = 1: a self-cycle).  Returns a reference to the
   first node; the others are held only by the ring, and every node but the
   first has been decremented to 1 (a candidate). */
static gnode *ring_new(unsigned k)
{
    gnode *first = node_new(), *prev = first, *n;
    unsigned i;

    for (i = 1; i < k; i++) {
        n = node_new();
        link_next(prev, n);
        if (prev != first)
            rcgc_decref(prev);
        prev = n;
    }
    link_next(prev, first);
    if (prev != first)
        rcgc_decref(prev);
    return first;
}

/* ---- measuring --------------------------------------------------------- */

static int manual;
static const char *mode;

typedef struct snap { rcgc_stats s; unsigned fin, bad; } snap;

static void snap_take(snap *p)
{
    rcgc_get_stats(&p->s);
    p->fin = __atomic_load_n(&fin_total, __ATOMIC_RELAXED);
    p->bad = __atomic_load_n(&fin_bad, __ATOMIC_RELAXED);
}

/* Three points: what rcgc_collect returned, the finalizers, the stats.
   live_extra: objects of the case still alive on purpose. */
static void expect_collected(const snap *b, size_t got, size_t n, uint64_t live_extra,
                             const char *what)
{
    snap a;

    snap_take(&a);
    if (manual)
        is_size(got, n, "%s: %s: rcgc_collect returns %zu", mode, what, n);
    else
        ok(got <= n, "%s: %s: rcgc_collect returns at most %zu (got %zu; the background "
           "collector may take some first)", mode, what, n, got);
    if (!ok(a.fin - b->fin == n && a.bad == b->bad,
            "%s: %s: %zu finalizers ran, once each, their nodes and next nodes intact "
            "(pitfall 20)", mode, what, n))
        diag("finalizers %u, damaged %u", a.fin - b->fin, a.bad - b->bad);
    if (!ok(a.s.collected - b->s.collected == n && a.s.live == b->s.live + live_extra,
            "%s: %s: stats.collected +%zu, live back to its start", mode, what, n))
        diag("collected +%" PRIu64 ", live %" PRIu64 " -> %" PRIu64, a.s.collected -
             b->s.collected, b->s.live, a.s.live);
}

/* Two points: nothing collected, no finalizer ran. */
static void expect_kept(const snap *b, size_t got, const char *what)
{
    snap a;

    snap_take(&a);
    if (manual)
        is_size(got, 0, "%s: %s: rcgc_collect returns 0", mode, what);
    else
        ok(got == 0 && a.s.collected == b->s.collected,
           "%s: %s: rcgc_collect returns 0 and stats.collected unchanged", mode, what);
    ok(a.fin == b->fin && a.bad == b->bad, "%s: %s: no finalizer ran", mode, what);
}

/* After a case whose garbage a collection missed, collect the leftovers so
   the next case starts clean (its checks have been made already). */
static void drain(void)
{
    int i;

    for (i = 0; i < 8; i++) {
        rcgc_reclaim_wait();
        if (rcgc_collect() == 0)
            break;
    }
}

/* ---- threads ------------------------------------------------------------- */

static int step;     /* atomic */

static void step_set(int s) { __atomic_store_n(&step, s, __ATOMIC_RELEASE); }
static int step_get(void) { return __atomic_load_n(&step, __ATOMIC_ACQUIRE); }

static void step_wait_blocked(int s)
{
    rcgc_blocking_begin();
    while (step_get() < s)
        sched_yield();
    rcgc_blocking_end();
}

static void start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int rc = pthread_create(t, NULL, fn, arg);

    if (rc != 0)
        bail_out("pthread_create: %d", rc);
}

static void join_blocked(pthread_t t)
{
    rcgc_blocking_begin();
    pthread_join(t, NULL);
    rcgc_blocking_end();
}

/* Joins within 30 s, or reports a deadlock and stops the program (its
   threads are stuck; nothing after could run). */
static void join_or_bail(pthread_t t, const char *what)
{
    struct timespec until;
    int rc;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    rcgc_blocking_begin();
    rc = pthread_timedjoin_np(t, NULL, &until);
    rcgc_blocking_end();
    if (rc != 0) {
        ok(0, "%s: %s: the threads finish (still running after 30 s: deadlock)", mode, what);
        bail_out("%s: deadlock in %s", mode, what);
    }
}

/* ---- the cases ----------------------------------------------------------- */

static void case_rings(void)
{
    static const unsigned sizes[] = { 1, 2, 5 };
    static const char *const names[] = { "a self-cycle", "a 2-cycle", "a 5-cycle" };
    snap b;
    size_t r;
    unsigned i;

    for (i = 0; i < 3; i++) {
        snap_take(&b);
        rcgc_decref(ring_new(sizes[i]));
        r = rcgc_collect();
        expect_collected(&b, r, sizes[i], 0, names[i]);
    }
}

static void case_dependent(void)
{
    gnode *c1, *c2, *c3;
    snap b;
    size_t r;

    snap_take(&b);
    c1 = ring_new(2);
    c2 = ring_new(3);
    c3 = ring_new(4);
    rcgc_ref_store(&c1->other, c2);
    rcgc_ref_store(&c2->other, c3);
    rcgc_decref(c3);          /* innermost first: its candidates are still reachable */
    rcgc_decref(c2);
    rcgc_decref(c1);
    r = rcgc_collect();
    expect_collected(&b, r, 9, 0,
                     "pitfall 13: dependent cycles (2-cycle -> 3-cycle -> 4-cycle), one collect");
}

static void case_external(void)
{
    gnode *a;
    snap b;
    size_t r;

    snap_take(&b);
    a = ring_new(3);
    rcgc_incref(a);
    rcgc_decref(a);           /* the held node is a candidate too */
    r = rcgc_collect();
    expect_kept(&b, r, "a 3-cycle held by an external reference");
    ok(a->magic == MAGIC && a->next_raw->magic == MAGIC &&
       a->next_raw->next_raw->next_raw == a && rcgc_refcount(a) == 2,
       "%s: the kept cycle is intact (count of the held node still 2)", mode);
    rcgc_decref(a);
    r = rcgc_collect();
    expect_collected(&b, r, 3, 0, "the external reference dropped");
}

static void case_container(void)
{
    gnode *h, *c;
    snap b;
    size_t r;

    snap_take(&b);
    h = node_new();           /* a live container, in no cycle */
    c = ring_new(4);
    rcgc_ref_store(&h->other, c);
    rcgc_decref(c);
    rcgc_incref(h);
    rcgc_decref(h);           /* the container is a candidate as well */
    r = rcgc_collect();
    expect_kept(&b, r, "a 4-cycle reachable from a live container");
    ok(c->magic == MAGIC && rcgc_refcount(c) == 2 && c->next_raw->magic == MAGIC,
       "%s: the cycle under the container is intact", mode);
    rcgc_ref_store(&h->other, NULL);
    r = rcgc_collect();
    expect_collected(&b, r, 4, 1, "the container's slot cleared");
    ok(h->magic == MAGIC && h->fin == 0 && rcgc_refcount(h) == 1,
       "%s: the container itself was neither collected nor finalized", mode);
    rcgc_decref(h);
    {
        snap a;

        snap_take(&a);
        ok(a.fin - b.fin == 5 && a.s.live == b.s.live,
           "%s: the container dies by its count afterwards", mode);
    }
}

/* A thread builds a cycle and hands its one reference to main; then it
   either stays online, passing safepoints (main's decrement is queued to
   it), or waits in a blocking region (main merges on its behalf). */
static gnode *handed;

static void *builder(void *arg)
{
    int blocked = (int)(intptr_t)arg;

    if (rcgc_thread_attach() != 0)
        abort();
    handed = ring_new(3);
    if (blocked)
        rcgc_blocking_begin();
    step_set(1);
    while (step_get() < 2) {
        if (!blocked)
            rcgc_safepoint();
        sched_yield();
    }
    if (blocked)
        rcgc_blocking_end();
    rcgc_thread_detach();
    return NULL;
}

static void *dropper_exits(void *arg)
{
    (void)arg;
    if (rcgc_thread_attach() != 0)
        abort();
    rcgc_decref(handed);       /* a non-owner drop; main is blocked in the join */
    return NULL;               /* exits attached */
}

static void case_cross_thread(void)
{
    static const char *const what[] = {
        "pitfall 31: a 3-cycle built by a thread that stays online (passing safepoints), "
        "dropped by main",
        "pitfall 31: a 3-cycle built by a thread now blocked, dropped by main",
    };
    pthread_t t;
    snap b;
    size_t r;
    int blocked;

    for (blocked = 0; blocked < 2; blocked++) {
        snap_take(&b);
        step_set(0);
        start(&t, builder, (void *)(intptr_t)blocked);
        step_wait_blocked(1);
        rcgc_decref(handed);   /* non-owner decrement of the builder's cycle */
        r = rcgc_collect();    /* the builder is still attached */
        step_set(2);
        join_blocked(t);
        expect_collected(&b, r, 3, 0, what[blocked]);
        drain();
    }

    snap_take(&b);
    handed = ring_new(4);
    start(&t, dropper_exits, NULL);
    join_blocked(t);
    r = rcgc_collect();
    expect_collected(&b, r, 4, 0, "a 4-cycle built by main, dropped by a thread that exited");
}

/* A thread drops a 2-cycle and a 3-cycle (5 candidates) and exits. */
static size_t count_before_exit;

static void *buffers_and_exits(void *arg)
{
    int how = (int)(intptr_t)arg;

    if (rcgc_thread_attach() != 0)
        abort();
    rcgc_decref(ring_new(2));
    rcgc_decref(ring_new(3));
    step_set(1);
    step_wait_blocked(2);
    if (how == 1)
        rcgc_thread_detach();
    return NULL;               /* how 0: exits attached (the key destructor detaches) */
}

static void case_thread_exit(void)
{
    static const char *const how[] = { "returns while attached", "detaches" };
    pthread_t t;
    size_t c0, r;
    snap b;
    int i;

    for (i = 0; i < 2; i++) {
        char what[160];

        snprintf(what, sizeof what, "pitfall 5: candidates of a thread that %s", how[i]);
        snap_take(&b);
        c0 = rcgc_get_count();
        step_set(0);
        start(&t, buffers_and_exits, (void *)(intptr_t)i);
        step_wait_blocked(1);
        count_before_exit = rcgc_get_count();
        step_set(2);
        join_blocked(t);
        if (manual) {
            is_size(count_before_exit, c0 + 5,
                    "%s: rcgc_get_count counts the 5 candidates in the other thread's buffer",
                    mode);
            is_size(rcgc_get_count(), c0 + 5,
                    "%s: %s: still counted after it exited (handed over)", mode, what);
        }
        r = rcgc_collect();
        expect_collected(&b, r, 5, 0, what);
    }
}

static void case_acyclic(void)
{
    enum { N = 200, ROUNDS = 50 };
    static acyc *holders[N];
    static leaf *leaves[N];
    rcgc_stats st;
    gnode *t;
    size_t c0;
    int i, j;

    if (!manual)
        return;
    rcgc_collect();
    c0 = rcgc_get_count();
    for (i = 0; i < N; i++) {
        leaves[i] = rcgc_new(&leaf_type);
        holders[i] = rcgc_new(&acyc_type);
        if (leaves[i] == NULL || holders[i] == NULL)
            bail_out("rcgc_new failed");
        rcgc_ref_init(&holders[i]->r, leaves[i]);     /* leaf count 2 */
    }
    for (j = 0; j < ROUNDS; j++) {
        for (i = 0; i < N; i++) {
            rcgc_incref(holders[i]);
            rcgc_incref(holders[i]);
            rcgc_decref(holders[i]);                  /* decrements to nonzero */
            rcgc_decref(holders[i]);
            rcgc_incref(leaves[i]);
            rcgc_decref(leaves[i]);
            rcgc_decref(rcgc_ref_exchange(&holders[i]->r, rcgc_incref(leaves[i])));
        }
    }
    for (i = 0; i < N; i++)
        rcgc_decref(leaves[i]);                       /* to 1: only the slot holds it */
    rcgc_get_stats(&st);
    is_size(rcgc_get_count(), c0,
            "%s: pitfall 24: %d decrements of ACYCLIC holders and leaves, and exchanges "
            "storing leaves: rcgc_get_count unchanged", mode, N * ROUNDS * 4 + N);
    is_uint(st.candidates, c0, "%s: stats.candidates unchanged", mode);
    ok(!rcgc_is_tracked(holders[0]) && !rcgc_is_tracked(leaves[0]),
       "%s: neither kind is tracked", mode);
    for (i = 0; i < N; i++)
        rcgc_decref(holders[i]);                      /* frees holder and leaf */

    t = node_new();                                   /* control */
    rcgc_incref(t);
    rcgc_decref(t);
    is_size(rcgc_get_count(), c0 + 1,
            "%s: control: one decrement of a tracked object to nonzero counts 1", mode);
    rcgc_decref(t);
    rcgc_collect();
}

static void *buffer_then_die(void *arg)
{
    int i, n = (int)(intptr_t)arg;

    if (rcgc_thread_attach() != 0)
        abort();
    for (i = 0; i < n; i++) {
        gnode *x = node_new();

        rcgc_incref(x);
        rcgc_decref(x);        /* buffered here */
        rcgc_decref(x);        /* freed */
    }
    return NULL;               /* the buffer, dead entries and all, is handed over */
}

static void case_die_buffered(void)
{
    enum { N = 500 };
    gnode *h, *x;
    pthread_t t;
    snap b;
    size_t r;
    int i;

    snap_take(&b);
    h = node_new();
    for (i = 0; i < N; i++) {
        x = node_new();        /* unpublished: memory back at once */
        rcgc_incref(x);
        rcgc_decref(x);
        rcgc_decref(x);
        x = node_new();        /* published: memory back after a grace period */
        rcgc_ref_store(&h->other, x);
        rcgc_decref(x);        /* 1, buffered */
        rcgc_ref_store(&h->other, NULL);      /* 0, freed while buffered */
        if (i % 64 == 0)
            rcgc_safepoint();
    }
    start(&t, buffer_then_die, (void *)(intptr_t)N);
    join_blocked(t);
    rcgc_decref(h);
    rcgc_reclaim_wait();       /* the dead objects' memory is really gone */
    {
        snap a;

        snap_take(&a);
        ok(a.fin - b.fin == 3 * N + 1 && a.bad == b.bad && a.s.live == b.s.live,
           "%s: %d objects died by their count while buffered (3 ways)", mode, 3 * N);
    }
    snap_take(&b);
    rcgc_decref(ring_new(2));  /* plus one real garbage cycle */
    r = rcgc_collect();
    expect_collected(&b, r, 2, 0,
                     "pitfall 14: after buffered objects died and were reclaimed, only the "
                     "real cycle is collected");
}

typedef struct collector_arg { size_t got; } collector_arg;

static void *collect_thread(void *arg)
{
    collector_arg *c = arg;

    if (rcgc_thread_attach() != 0)
        abort();
    __atomic_fetch_add(&step, 1, __ATOMIC_ACQ_REL);
    rcgc_blocking_begin();
    while (step_get() < 2)
        sched_yield();
    rcgc_blocking_end();
    c->got = rcgc_collect();
    rcgc_thread_detach();
    return NULL;
}

static void case_two_collectors(void)
{
    collector_arg c[2] = { { 0 }, { 0 } };
    pthread_t t[2];
    snap b;
    unsigned k;

    snap_take(&b);
    for (k = 1; k <= 4; k++)
        rcgc_decref(ring_new(k));                      /* 10 nodes of garbage */
    step_set(0);
    start(&t[0], collect_thread, &c[0]);
    start(&t[1], collect_thread, &c[1]);
    join_or_bail(t[0], "pitfall 26, 30: two threads in rcgc_collect at once");
    join_or_bail(t[1], "pitfall 26, 30: two threads in rcgc_collect at once");
    diag("%s: the two collectors returned %zu and %zu", mode, c[0].got, c[1].got);
    /* Manual: the collections are serialized, so the returns add up.
       Background: one collection may serve both requests (both told 10). */
    if (manual)
        expect_collected(&b, c[0].got + c[1].got, 10, 0,
                         "pitfall 26: two threads collect at once (sum of the returns)");
    else
        expect_collected(&b, c[0].got > c[1].got ? c[0].got : c[1].got, 10, 0,
                         "pitfall 26: two threads collect at once (larger return)");
}

/* Background mode with automatic collections off: the collection that
   freed the garbage served at least one of the two callers, which must be
   told so (each caller gets the count of a collection it waited for). */
static void case_two_collectors_disabled(void)
{
    collector_arg c[2] = { { 0 }, { 0 } };
    pthread_t t[2];
    unsigned k;
    int round, ok_rounds = 0;
    size_t lo = (size_t)-1;

    if (manual)
        return;
    rcgc_disable();
    for (round = 0; round < 20; round++) {
        for (k = 1; k <= 4; k++)
            rcgc_decref(ring_new(k));
        step_set(0);
        start(&t[0], collect_thread, &c[0]);
        start(&t[1], collect_thread, &c[1]);
        join_or_bail(t[0], "two threads in rcgc_collect at once, automatic collections off");
        join_or_bail(t[1], "two threads in rcgc_collect at once, automatic collections off");
        if ((c[0].got > c[1].got ? c[0].got : c[1].got) == 10)
            ok_rounds++;
        else if (c[0].got + c[1].got < lo)
            lo = c[0].got + c[1].got;
        drain();
    }
    rcgc_enable();
    ok(ok_rounds == 20, "%s, automatic collections off: two threads collect at once, 20 "
       "times: one of them is told the 10 nodes its collection freed (%d of 20 rounds; "
       "worst sum of returns %zu)", mode, ok_rounds, lo == (size_t)-1 ? 10 : lo);
}

/* ---- a random graph against an oracle ------------------------------------ */

/* RGRAPH nodes, each slot pointing to a node drawn at random (one slot in
   eight empty), and one node in RGRAPH / RHELD held by the test.  An
   oracle walks the edges from the held nodes: exactly the nodes it does
   not reach must die, by their counts or by rcgc_collect, and every node
   it reaches must stay intact, unfinalized, its count equal to the edges
   into it from reached nodes plus the test's reference.  Its black
   members stand anywhere in the member table, and black spreads along
   chains of them (step 5's internal-edge counts and its stack, which
   share storage). */
#define RGRAPH 30000
#define RHELD  300

static uint64_t rgraph_next(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void case_random_graph(void)
{
    gnode **node = malloc(RGRAPH * sizeof *node);
    uint32_t *to = malloc(2 * RGRAPH * sizeof *to), *queue = malloc(RGRAPH * sizeof *queue);
    uint32_t *in = calloc(RGRAPH, sizeof *in);
    unsigned char *reached = calloc(RGRAPH, 1);
    uint64_t x = 20261207;
    size_t nreached, head = 0, tail = 0, bad = 0, died, got;
    snap b, a;

    if (node == NULL || to == NULL || queue == NULL || in == NULL || reached == NULL)
        bail_out("malloc failed");
    snap_take(&b);
    for (size_t i = 0; i < RGRAPH; i++)
        node[i] = node_new();
    for (size_t i = 0; i < 2 * RGRAPH; i++) {
        uint64_t r = rgraph_next(&x);
        to[i] = (r & 7) == 0 ? UINT32_MAX : (uint32_t)((r >> 3) % RGRAPH);
    }
    for (size_t i = 0; i < RGRAPH; i++) {
        if (to[2 * i] != UINT32_MAX)
            link_next(node[i], node[to[2 * i]]);
        if (to[2 * i + 1] != UINT32_MAX)
            rcgc_ref_store(&node[i]->other, node[to[2 * i + 1]]);
    }
    /* The oracle, from the held nodes. */
    for (size_t i = 0; i < RGRAPH; i += RGRAPH / RHELD) {
        reached[i] = 1;
        queue[tail++] = (uint32_t)i;
    }
    while (head < tail) {
        uint32_t i = queue[head++];
        for (int k = 0; k < 2; k++) {
            uint32_t j = to[2 * i + k];
            if (j == UINT32_MAX)
                continue;
            in[j]++;
            if (!reached[j]) {
                reached[j] = 1;
                queue[tail++] = j;
            }
        }
    }
    nreached = tail;
    for (size_t i = 0; i < RGRAPH; i++)
        if (i % (RGRAPH / RHELD) != 0)
            rcgc_decref(node[i]);     /* the unreferenced die here, by their counts */
    died = __atomic_load_n(&fin_total, __ATOMIC_RELAXED) - b.fin;
    got = rcgc_collect();
    drain();
    snap_take(&a);
    if (manual)
        is_size(got, RGRAPH - nreached - died,
                "%s: random graph: rcgc_collect returns the unreached nodes that did not "
                "die by their counts (%zu reached of %d)", mode, nreached, RGRAPH);
    if (!ok(a.fin - b.fin == RGRAPH - nreached && a.bad == b.bad &&
                a.s.live == b.s.live + nreached,
            "%s: random graph: exactly the %zu nodes the held ones do not reach are "
            "finalized, once each, and freed", mode, RGRAPH - nreached))
        diag("finalized %u, damaged %u, live %" PRIu64 " -> %" PRIu64, a.fin - b.fin,
             a.bad - b.bad, b.s.live, a.s.live);
    for (size_t i = 0; i < RGRAPH; i++) {
        size_t want = in[i] + (i % (RGRAPH / RHELD) == 0);
        if (reached[i] && (node[i]->magic != MAGIC || node[i]->fin != 0 ||
                           rcgc_refcount(node[i]) != want))
            bad++;
    }
    is_size(bad, 0, "%s: random graph: every reached node intact, unfinalized, its count "
            "its reached in-edges plus the held reference", mode);
    for (size_t i = 0; i < RGRAPH; i += RGRAPH / RHELD)
        rcgc_decref(node[i]);
    rcgc_collect();
    drain();
    snap_take(&a);
    ok(a.fin - b.fin == RGRAPH && a.bad == b.bad && a.s.live == b.s.live,
       "%s: random graph: the held nodes let go, every node is freed", mode);
    free(node);
    free(to);
    free(queue);
    free(in);
    free(reached);
}

static void run_mode(int is_manual)
{
    rcgc_options opts;

    memset(&opts, 0, sizeof opts);
    opts.manual = is_manual;
    manual = is_manual;
    mode = is_manual ? "manual" : "background";
    TAP_REQUIRE(rcgc_init(&opts) == 0, "%s: rcgc_init", mode);
    case_rings();
    drain();
    case_dependent();
    drain();
    case_external();
    drain();
    case_container();
    drain();
    case_cross_thread();
    case_thread_exit();
    drain();
    case_acyclic();
    drain();
    case_die_buffered();
    drain();
    case_two_collectors();
    drain();
    case_two_collectors_disabled();
    drain();
    case_random_graph();
    rcgc_collect();
    rcgc_shutdown();
}

int main(void)
{
    alarm(240);
    run_mode(1);
    run_mode(0);
    return done_testing();
}
