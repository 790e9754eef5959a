/*
 * stress_weakref.c: weak references to a shared graph whose nodes die by
 * their counts and in garbage cycles, while the collector runs beside the
 * threads that upgrade them (PITFALLS 21).
 *
 * Shape: NROOT global root slots hold tracked nodes; a node's first slot
 * may hold the node itself (a self-cycle) and its second a node loaded
 * from another root, so a root store makes both counting garbage and
 * cycle garbage.  Each worker owns NHANDLE weak references (a handle is
 * its caller's, API.md) and, each round, does one of:
 *
 *   watch       load a root and take a weak reference to its node (the
 *               handle it replaces is freed, maybe while its callback runs)
 *   upgrade     rcgc_weakref_get on one of its handles
 *   fresh death a node nobody else can reach, a weak reference to it, the
 *               last decrement: the death is now, on this thread
 *   fresh cycle two nodes pointing at each other, a weak reference to
 *               each, dropped: garbage for the collector
 *   haunt       the same, then 64 upgrades through the two weak references
 *               while the collector examines the cycle (Delta-test
 *               failures, and a member DYING for a moment)
 *   rewire      a new node (self-cycle, edge to another root's node) or
 *               NULL stored into a root
 *
 * Worker 0 also calls rcgc_collect now and then; the background collector
 * runs with a low threshold.  The population is bounded (LIVE_CAP).
 *
 * Oracles:
 *   - an upgrade gives the object the handle was made for, intact (magic,
 *     id, generation, checksum), or NULL; once NULL, always NULL;
 *   - a callback runs at most once per handle, for the handle it was
 *     registered with, and finds it cleared (its upgrade gives NULL);
 *   - a fresh death runs the callback before the last decrement returns
 *     and the handle is cleared;
 *   - a node is never finalized while a thread holds it (gnode's marker);
 *   - at the end every root is cleared and the collector drained: every
 *     handle not freed got exactly one callback and upgrades to NULL;
 *     live is 0 and every finalizer ran once (torture_finish).
 */
#include "gc_torture.h"

#define NROOT        32
#define NHANDLE      16
#define THRESHOLD    64
#define LIVE_CAP     4000
#define DRAIN_ROUNDS 8

static rcgc_ref roots[NROOT];

/* One per handle ever made; kept (and freed) by main after the run, so a
   callback that runs late never reads freed memory. */
typedef struct wrec {
    struct wrec  *all_next;
    rcgc_weakref *w;             /* written before the referent can die */
    uint64_t      id;            /* the referent's torture id */
    atomic_uint   callbacks;
    atomic_int    freed;         /* rcgc_weakref_free was called */
    bool          saw_null;      /* owner only */
} wrec;

static _Atomic(wrec *) all_recs;

static atomic_ullong total_ops, total_watch, total_get_live, total_get_null;
static atomic_ullong total_fresh, total_cycles, total_haunts, total_callbacks;
static atomic_ullong total_collect_calls;

typedef struct worker {
    pthread_t thread;
    unsigned  index;
    wrec     *handles[NHANDLE];  /* read by main after the join */
} worker;

typedef struct wstate {
    torture_rng rng;
    uint64_t    ops, watch, get_live, get_null, fresh, cycles, haunts, collect_calls;
} wstate;

static void weak_cb(rcgc_weakref *w, void *ctx)
{
    wrec *r = ctx;
    void *o;

    if (r->w != w)
        TORTURE_VIOLATION("callback for handle %p got handle %p", (void *)r->w, (void *)w);
    o = rcgc_weakref_get(w);
    if (o != NULL) {
        TORTURE_VIOLATION("callback for id %" PRIu64 ": its handle still upgrades", r->id);
        rcgc_decref(o);
    }
    if (atomic_fetch_add_explicit(&r->callbacks, 1, memory_order_relaxed) != 0)
        TORTURE_VIOLATION("a second callback for the handle of id %" PRIu64, r->id);
    atomic_fetch_add_explicit(&total_callbacks, 1, memory_order_relaxed);
}

/* A handle to n (the caller holds n), with a fresh record. */
static wrec *watch(gnode *n)
{
    wrec *r = calloc(1, sizeof *r);

    if (r == NULL)
        abort();
    r->id = n->t.id;
    r->w = rcgc_weakref_new(n, weak_cb, r);
    if (r->w == NULL) {
        fprintf(stderr, "%s: rcgc_weakref_new: %s\n", torture_o.name, strerror(errno));
        abort();
    }
    r->all_next = atomic_load_explicit(&all_recs, memory_order_relaxed);
    while (!atomic_compare_exchange_weak(&all_recs, &r->all_next, r))
        ;
    return r;
}

static void unwatch(wrec *r)
{
    if (r == NULL)
        return;
    atomic_store_explicit(&r->freed, 1, memory_order_relaxed);
    rcgc_weakref_free(r->w);
}

/* Puts r in a random handle slot, freeing the handle it replaces. */
static void keep(worker *me, wstate *w, wrec *r)
{
    unsigned k = torture_below(&w->rng, NHANDLE);

    unwatch(me->handles[k]);
    me->handles[k] = r;
}

/* One upgrade of r, checked: the right referent, intact, or NULL, and
   NULL for good once NULL.  where names the caller in a violation. */
static void checked_get(wstate *w, wrec *r, const char *where)
{
    gnode *n = rcgc_weakref_get(r->w);

    if (n == NULL) {
        r->saw_null = true;
        w->get_null++;
        return;
    }
    w->get_live++;
    gc_hold(n, where);
    if (n->t.id != r->id)
        TORTURE_VIOLATION("the handle of id %" PRIu64 " upgraded to id %" PRIu64 " (%s)",
                          r->id, n->t.id, where);
    if (r->saw_null)
        TORTURE_VIOLATION("the handle of id %" PRIu64 " upgraded after it gave NULL (%s)",
                          r->id, where);
    gc_unhold(n, "before the decrement");
}

static void upgrade(worker *me, wstate *w)
{
    wrec *r = me->handles[torture_below(&w->rng, NHANDLE)];

    if (r == NULL)
        return;
    torture_maybe_delay(r->id);
    checked_get(w, r, "rcgc_weakref_get");
}

static void fresh_death(wstate *w)
{
    gnode *n = gnode_new(0, 1, 0);
    wrec *r = watch(n);
    void *o;

    rcgc_decref(n);
    if (atomic_load_explicit(&r->callbacks, memory_order_relaxed) != 1)
        TORTURE_VIOLATION("a node's last decrement returned before its weak reference's "
                          "callback ran (%u runs)",
                          atomic_load_explicit(&r->callbacks, memory_order_relaxed));
    o = rcgc_weakref_get(r->w);
    if (o != NULL) {
        TORTURE_VIOLATION("a weak reference upgrades after its referent's last decrement");
        rcgc_decref(o);
    }
    unwatch(r);
    w->fresh++;
}

static void fresh_cycle(worker *me, wstate *w)
{
    gnode *a = gnode_new(0, 2, me->index), *b = gnode_new(0, 2, me->index);

    rcgc_ref_init(&a->slot[0], b);
    rcgc_ref_init(&b->slot[0], a);
    keep(me, w, watch(a));
    keep(me, w, watch(b));
    rcgc_decref(a);
    rcgc_decref(b);
    w->cycles++;
}

/* A 2-cycle dropped and then upgraded over and over through its weak
   references while the collector examines it: each upgrade that lands
   between the Delta-test's CAS on one member and on the other fails the
   component's test, and an upgrade of the first member in that window
   must wait (the cycle lives on), not say NULL. */
static void haunt(worker *me, wstate *w)
{
    gnode *a = gnode_new(0, 2, me->index), *b = gnode_new(0, 2, me->index);
    wrec *ra, *rb;

    rcgc_ref_init(&a->slot[0], b);
    rcgc_ref_init(&b->slot[0], a);
    ra = watch(a);
    rb = watch(b);
    rcgc_decref(a);
    rcgc_decref(b);
    for (int k = 0; k < 64; k++) {
        checked_get(w, (k & 1) ? rb : ra, "haunt: rcgc_weakref_get");
        if ((k & 7) == 7)
            rcgc_safepoint();
    }
    keep(me, w, ra);
    keep(me, w, rb);
    w->haunts++;
}

static void rewire(worker *me, wstate *w)
{
    unsigned i = torture_below(&w->rng, NROOT);
    gnode *n, *m;

    if (gc_over_cap(LIVE_CAP) || torture_chance(&w->rng, 4)) {
        rcgc_ref_store(&roots[i], NULL);
        return;
    }
    n = gnode_new(0, 2, me->index);
    if (torture_chance(&w->rng, 2))
        rcgc_ref_init(&n->slot[0], n);
    m = gc_hold(rcgc_ref_load(&roots[torture_below(&w->rng, NROOT)]), "rcgc_ref_load");
    if (m != NULL && torture_chance(&w->rng, 2))
        rcgc_ref_init(&n->slot[1], m);
    gc_unhold(m, "before the decrement");
    rcgc_ref_store(&roots[i], n);
    rcgc_decref(n);
}

static void one_round(worker *me, wstate *w)
{
    uint32_t r = torture_below(&w->rng, 100);
    gnode *n;

    w->ops++;
    if (r < 30) {
        n = gc_hold(rcgc_ref_load(&roots[torture_below(&w->rng, NROOT)]), "rcgc_ref_load");
        if (n != NULL) {
            keep(me, w, watch(n));
            w->watch++;
            gc_unhold(n, "before the decrement");
            return;
        }
        rewire(me, w);
    } else if (r < 65) {
        upgrade(me, w);
    } else if (r < 70) {
        fresh_death(w);
    } else if (r < 74) {
        fresh_cycle(me, w);
    } else if (r < 76) {
        haunt(me, w);
    } else {
        rewire(me, w);
    }
    if (me->index == 0 && torture_chance(&w->rng, 512)) {
        rcgc_collect();
        w->collect_calls++;
    }
}

static void *worker_main(void *arg)
{
    worker *me = arg;
    wstate w = { .rng = torture_rng_make(me->index + 1) };
    uint64_t rounds = 0;

    torture_attach();
    while (!torture_stopping()) {
        one_round(me, &w);
        if ((++rounds & 31) == 0)
            rcgc_safepoint();
    }
    atomic_fetch_add(&total_ops, w.ops);
    atomic_fetch_add(&total_watch, w.watch);
    atomic_fetch_add(&total_get_live, w.get_live);
    atomic_fetch_add(&total_get_null, w.get_null);
    atomic_fetch_add(&total_fresh, w.fresh);
    atomic_fetch_add(&total_cycles, w.cycles);
    atomic_fetch_add(&total_haunts, w.haunts);
    atomic_fetch_add(&total_collect_calls, w.collect_calls);
    rcgc_thread_detach();
    return NULL;
}

/* Every referent is dead: each handle not freed got one callback and
   upgrades to NULL.  Frees the handles and the records. */
static uint64_t audit(worker *workers, unsigned n)
{
    uint64_t kept = 0;
    wrec *r, *next;

    for (unsigned i = 0; i < n; i++) {
        for (unsigned k = 0; k < NHANDLE; k++) {
            void *o;

            r = workers[i].handles[k];
            if (r == NULL)
                continue;
            kept++;
            if (atomic_load(&r->callbacks) != 1)
                TORTURE_VIOLATION("the handle of id %" PRIu64 " (kept to the end) got %u "
                                  "callbacks for its referent's death", r->id,
                                  atomic_load(&r->callbacks));
            o = rcgc_weakref_get(r->w);
            if (o != NULL) {
                TORTURE_VIOLATION("the handle of id %" PRIu64 " upgrades after the end",
                                  r->id);
                rcgc_decref(o);
            }
            unwatch(r);
        }
    }
    for (r = atomic_exchange(&all_recs, NULL); r != NULL; r = next) {
        next = r->all_next;
        if (atomic_load(&r->callbacks) > 1)
            TORTURE_VIOLATION("id %" PRIu64 ": %u callbacks", r->id,
                              atomic_load(&r->callbacks));
        free(r);
    }
    return kept;
}

int main(int argc, char **argv)
{
    worker *workers;
    unsigned i, n;
    uint64_t drained, kept;
    char more[400], extra[700];

    torture_start("stress_weakref", argc, argv, 2);
    gc_setup(THRESHOLD);
    n = (unsigned)torture_o.threads;
    workers = calloc(n, sizeof *workers);
    if (workers == NULL)
        abort();
    rcgc_blocking_begin();
    for (i = 0; i < n; i++) {
        workers[i].index = i;
        torture_spawn(&workers[i].thread, worker_main, &workers[i]);
    }
    rcgc_blocking_end();
    torture_run_timer();
    torture_phase("join");
    for (i = 0; i < n; i++)
        torture_join_attached(workers[i].thread);

    torture_phase("drop roots");
    for (i = 0; i < NROOT; i++)
        rcgc_ref_store(&roots[i], NULL);
    drained = gc_drain(DRAIN_ROUNDS);
    gc_require_work(1);
    rcgc_reclaim_wait();
    torture_phase("audit");
    kept = audit(workers, n);
    free(workers);
    if (atomic_load(&total_get_live) == 0 || atomic_load(&total_callbacks) == 0)
        TORTURE_VIOLATION("no upgrade succeeded or no callback ran: the run tested nothing");

    snprintf(more, sizeof more,
             "watch=%llu get_live=%llu get_null=%llu fresh_deaths=%llu fresh_cycles=%llu "
             "haunts=%llu callbacks=%llu kept=%" PRIu64 " collect_calls=%llu drained=%" PRIu64,
             (unsigned long long)atomic_load(&total_watch),
             (unsigned long long)atomic_load(&total_get_live),
             (unsigned long long)atomic_load(&total_get_null),
             (unsigned long long)atomic_load(&total_fresh),
             (unsigned long long)atomic_load(&total_cycles),
             (unsigned long long)atomic_load(&total_haunts),
             (unsigned long long)atomic_load(&total_callbacks), kept,
             (unsigned long long)atomic_load(&total_collect_calls), drained);
    gc_summary(extra, sizeof extra, more);
    i = (unsigned)torture_finish(atomic_load(&total_ops), extra);
    return (int)i;
}
