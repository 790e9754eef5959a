/*
 * stress_gc_graph.c: mutators rewire one shared random graph, full of
 * cycles, while the cycle collector runs beside them.
 *
 * Shape: NROOT global root slots; every node is a tracked gnode with 2 to 4
 * slots in use.  Each round a worker loads a root and walks a random path
 * (rcgc_ref_load at every step, holding every node on the path), then
 * rewires what it reached:
 *
 *   back edge   a slot of the last node takes a node from earlier on the
 *               path (the node itself: a self-loop) -- a new cycle
 *   new node    a fresh node whose slots point back into the path goes into
 *               a slot or a root -- more cycles
 *   cut         a slot or root is stored NULL -- cycles become garbage
 *   by every    rcgc_ref_store, rcgc_ref_exchange (the old value checked
 *   operation   and dropped), rcgc_ref_compare_exchange against what was
 *               loaded, on node slots and on root slots
 *
 * Readers (workers with an even index) mostly walk; writers mostly
 * rewire.  The background collector runs with threshold THRESHOLD and the
 * last worker also calls rcgc_collect() now and then while it holds its
 * path; now and then a worker detaches and attaches again (its nodes lose
 * their owner).  The live population is bounded (LIVE_CAP): above it no
 * new nodes are made and cuts are more frequent.
 *
 * Oracles:
 *   - every object a load or an exchange returns is intact (magic, id,
 *     generation, checksum), checked again just before the reference is
 *     dropped: a poisoned one was finalized while reachable or held;
 *   - a node's `held` marker counts the path references threads hold on
 *     it; its finalizer must find zero;
 *   - a finalizer finds every neighbour it can still load intact;
 *   - at the end the roots are cleared, rcgc_collect runs until it finds
 *     nothing (at most DRAIN_ROUNDS calls), then live must be 0 and every
 *     finalizer must have run exactly once (torture_finish), and the
 *     collector must have reclaimed some cycles.
 */
#include "gc_torture.h"

#define NROOT        32
#define MAX_PATH     10
#define THRESHOLD    64
#define LIVE_CAP     5000
#define DRAIN_ROUNDS 8

static rcgc_ref roots[NROOT];

static atomic_ullong total_ops, total_loads, total_stores, total_exchanges;
static atomic_ullong total_cas_ok, total_cas_fail, total_new, total_collect_calls;
static atomic_ullong total_collect_reclaimed;

typedef struct worker {
    unsigned  index;
    bool      writer;
    bool      collects;
} worker;

typedef struct wstate {
    torture_rng rng;
    gnode      *path[MAX_PATH];
    unsigned    depth;
    uint64_t    ops, loads, stores, exchanges, cas_ok, cas_fail, made;
    uint64_t    collect_calls, collect_reclaimed;
} wstate;

static gnode *path_pick(wstate *w)
{
    return w->depth ? w->path[torture_below(&w->rng, w->depth)] : NULL;
}

/* A new node (count 1, the caller's), its slots pointing into the path. */
static gnode *make_node(wstate *w)
{
    unsigned nslots = 2 + torture_below(&w->rng, GC_NSLOT - 1);
    gnode *n = gnode_new(0, nslots, 0);

    w->made++;
    for (unsigned s = 0; s < nslots; s++) {
        if (torture_chance(&w->rng, 3))
            continue;
        if (torture_chance(&w->rng, 8))
            rcgc_ref_init(&n->slot[s], n);          /* self-loop */
        else
            rcgc_ref_init(&n->slot[s], path_pick(w));
    }
    return n;
}

/* What a write stores: a node from the path, NULL, or a new node.  Returns
   a reference the caller owns (or NULL). */
static gnode *pick_value(wstate *w, bool cap)
{
    unsigned k = torture_below(&w->rng, 10);

    if (k < 5 && w->depth > 0)
        return rcgc_incref(path_pick(w));
    if (k < 8 && !cap)
        return make_node(w);
    return NULL;
}

static void write_slot(wstate *w, rcgc_ref *slot, bool cap)
{
    unsigned op = torture_below(&w->rng, 10);
    gnode *v, *old, *cur;

    w->ops++;
    if (cap && torture_chance(&w->rng, 2)) {
        rcgc_ref_store(slot, NULL);
        w->stores++;
        return;
    }
    if (op < 4) {                                   /* store */
        v = pick_value(w, cap);
        rcgc_ref_store(slot, v);
        rcgc_decref(v);
        w->stores++;
    } else if (op < 7) {                            /* exchange */
        v = pick_value(w, cap);
        old = rcgc_ref_exchange(slot, v);           /* steals v */
        w->exchanges++;
        if (old != NULL) {
            gc_hold(old, "exchange: old value");
            gc_unhold(old, "exchange: old value, before drop");
        }
    } else {                                        /* compare_exchange */
        cur = gc_hold(rcgc_ref_load(slot), "load for compare_exchange");
        w->loads++;
        v = pick_value(w, cap);
        if (rcgc_ref_compare_exchange(slot, cur, v))
            w->cas_ok++;
        else
            w->cas_fail++;
        rcgc_decref(v);
        gc_unhold(cur, "compare_exchange: expected, before drop");
    }
}

static void walk(wstate *w, unsigned r, unsigned len)
{
    gnode *n = gc_hold(rcgc_ref_load(&roots[r]), "load root");

    w->ops++;
    w->loads++;
    w->depth = 0;
    while (n != NULL) {
        w->path[w->depth++] = n;
        if (w->depth == len || w->depth == MAX_PATH)
            break;
        if (n->nslots == 0 || n->nslots > GC_NSLOT)
            break;                                  /* reported by gnode_ok */
        n = gc_hold(rcgc_ref_load(&n->slot[torture_below(&w->rng, n->nslots)]),
                 "load slot");
        w->ops++;
        w->loads++;
    }
}

static void drop_path(wstate *w)
{
    while (w->depth > 0)
        gc_unhold(w->path[--w->depth], "path node, before drop");
}

static void one_round(worker *me, wstate *w)
{
    unsigned r = torture_below(&w->rng, NROOT);
    bool cap = gc_over_cap(LIVE_CAP);
    unsigned len = 1 + torture_below(&w->rng, MAX_PATH);

    walk(w, r, len);
    if (me->writer || torture_chance(&w->rng, 8)) {
        unsigned nwrites = 1 + torture_below(&w->rng, 3);
        for (unsigned k = 0; k < nwrites; k++) {
            gnode *target = path_pick(w);
            if (target == NULL || torture_chance(&w->rng, cap ? 3 : 12))
                write_slot(w, &roots[torture_below(&w->rng, NROOT)], cap);
            else if (target->nslots >= 1 && target->nslots <= GC_NSLOT)
                write_slot(w, &target->slot[torture_below(&w->rng, target->nslots)],
                           cap);
        }
    }
    if (me->collects && torture_chance(&w->rng, 256)) {
        /* Collect while holding the path: none of it may be finalized. */
        size_t n = rcgc_collect();
        w->collect_calls++;
        w->collect_reclaimed += n;
        for (unsigned i = 0; i < w->depth; i++)
            gnode_ok(w->path[i], "path node held across rcgc_collect");
    }
    drop_path(w);
}

static void *worker_main(void *arg)
{
    worker *me = arg;
    wstate *w = calloc(1, sizeof *w);
    uint64_t rounds = 0;

    if (w == NULL)
        abort();
    w->rng = torture_rng_make(me->index + 1);
    torture_attach();
    while (!torture_stopping()) {
        one_round(me, w);
        if ((++rounds & 31) == 0)
            rcgc_safepoint();
        torture_pause(&w->rng, 4096, 8192);
    }
    atomic_fetch_add(&total_ops, w->ops);
    atomic_fetch_add(&total_loads, w->loads);
    atomic_fetch_add(&total_stores, w->stores);
    atomic_fetch_add(&total_exchanges, w->exchanges);
    atomic_fetch_add(&total_cas_ok, w->cas_ok);
    atomic_fetch_add(&total_cas_fail, w->cas_fail);
    atomic_fetch_add(&total_new, w->made);
    atomic_fetch_add(&total_collect_calls, w->collect_calls);
    atomic_fetch_add(&total_collect_reclaimed, w->collect_reclaimed);
    free(w);
    if (me->index & 2)
        rcgc_thread_detach();
    return NULL;            /* otherwise exit detaches */
}

int main(int argc, char **argv)
{
    worker *workers;
    unsigned i, n;
    uint64_t drained;
    char more[300], extra[600];

    torture_start("stress_gc_graph", argc, argv, 2);
    gc_setup(THRESHOLD);
    n = (unsigned)torture_o.threads;
    workers = calloc(n, sizeof *workers);
    if (workers == NULL)
        abort();

    for (i = 0; i < n; i++) {
        workers[i].index = i;
        workers[i].writer = (i & 1) != 0 || n == 2;
        workers[i].collects = i == n - 1;
    }
    torture_run_workers(n, worker_main, workers, sizeof *workers);
    free(workers);

    torture_phase("drop roots");
    for (i = 0; i < NROOT; i++)
        rcgc_ref_store(&roots[i], NULL);
    drained = gc_drain(DRAIN_ROUNDS);
    gc_require_work(1);

    snprintf(more, sizeof more,
             "loads=%llu stores=%llu exchanges=%llu cas_ok=%llu cas_fail=%llu "
             "new=%llu collect_calls=%llu collect_reclaimed=%llu drained=%" PRIu64,
             (unsigned long long)atomic_load(&total_loads),
             (unsigned long long)atomic_load(&total_stores),
             (unsigned long long)atomic_load(&total_exchanges),
             (unsigned long long)atomic_load(&total_cas_ok),
             (unsigned long long)atomic_load(&total_cas_fail),
             (unsigned long long)atomic_load(&total_new),
             (unsigned long long)atomic_load(&total_collect_calls),
             (unsigned long long)atomic_load(&total_collect_reclaimed), drained);
    gc_summary(extra, sizeof extra, more);
    i = (unsigned)torture_finish(atomic_load(&total_ops), extra);
    gc_group_free_all();
    return (int)i;
}
