/*
 * stress_gc_liveness.c: a garbage cycle that a thread keeps touching is
 * kept; once the thread lets go it is reclaimed within a few collections.
 *
 * Every worker runs rounds.  A round:
 *
 *   build    a ring of 1..6 tracked members (slot[0] the ring, slot[1] an
 *            anchor, slot[2] a chord inside the ring).  The round's target
 *            is, a third of the time each: this ring, published in the
 *            worker's root slot, a member loaded through that slot, and
 *            the slot cleared; this ring as built; or the ring another
 *            worker left in a pool slot (rcgc_ref_exchange puts ours there
 *            and takes theirs), so the toucher is often not the owner.
 *            Now and then the worker detaches and attaches again, so the
 *            owner is gone.  Either way the worker ends up holding one
 *            reference to one member, and nothing else reaches the ring:
 *            it is a garbage cycle but for that reference.
 *   touch    until the collector has completed TOUCH_COLLECTIONS
 *            collections (and at least MIN_TOUCHES touches), once per
 *            epoch -- a touch, then rcgc_safepoint(): an increment held
 *            across the safepoint and dropped; a load of a ring slot; an
 *            exchange of a ring slot with its own value; a compare-exchange
 *            of it with its own value; a load of the anchor.  The ring
 *            must survive this (the group's guard is up: its finalizers
 *            report a violation if they run).
 *   let go   the worker drops its reference and touches nothing more.
 *   check    it calls rcgc_collect() at most LIVENESS_BOUND times; the
 *            ring's finalizers must all have run by then, else a liveness
 *            violation (a few more calls then tell "late" from "never").
 *
 * Beside this, anchors (self-loops in root slots, live all run) are loaded
 * and dropped by everyone, so the collector keeps meeting busy live
 * objects next to the garbage (the Delta-test is per component: a busy
 * neighbour must not hold garbage back), and the background collector
 * runs with threshold THRESHOLD.  At the end everything is dropped and
 * the usual checks run (live == 0, every finalizer exactly once).
 */
#include "gc_torture.h"

#define NANCHOR           4
#define NPOOL             8
#define MAXRING           6
#define THRESHOLD         64
#define TOUCH_COLLECTIONS 2
#define MIN_TOUCHES       8
#define MAX_TOUCH_NS      (50 * 1000000ull)
#define LIVENESS_BOUND    3
#define EXTRA_TRIES       20
#define DRAIN_ROUNDS      8

static rcgc_ref anchors[NANCHOR];
static rcgc_ref pool[NPOOL];
static rcgc_ref *pub;           /* one root slot per worker */

static atomic_ullong total_ops, total_rounds, total_touches, total_foreign, total_published;
static atomic_ullong total_gone_owner, total_late, total_never, total_spanned;
static atomic_ullong total_after[LIVENESS_BOUND + 1];

typedef struct wstate {
    torture_rng rng;
    unsigned    index;
    uint64_t    ops, rounds, touches, foreign, published, gone_owner, late, never;
    uint64_t    spanned;    /* touch phases that spanned TOUCH_COLLECTIONS */
    uint64_t    after[LIVENESS_BOUND + 1];
} wstate;

static uint64_t collections_now(void)
{
    rcgc_stats st;

    rcgc_get_stats(&st);
    return st.collections;
}

static gnode *load_checked(rcgc_ref *slot, const char *where)
{
    gnode *n = rcgc_ref_load(slot);

    if (n != NULL)
        gnode_ok(n, where);
    return n;
}

/* Builds a ring; returns a reference to its first member (the group's
   guard counts it).  Every other creator reference is dropped. */
static gnode *build_ring(wstate *w)
{
    unsigned len = 1 + torture_below(&w->rng, MAXRING);
    uint64_t group = gc_group_new((int)len);
    gnode *m[MAXRING];

    for (unsigned i = 0; i < len; i++)
        m[i] = gnode_new(group, 3, w->index);
    gc_guard(group, 1);
    for (unsigned i = 0; i < len; i++) {
        gnode *a = load_checked(&anchors[torture_below(&w->rng, NANCHOR)],
                                "build: load anchor");
        m[i]->partner = m[(i + 1) % len];
        rcgc_ref_init(&m[i]->slot[0], m[(i + 1) % len]);
        rcgc_ref_init(&m[i]->slot[1], a);
        rcgc_decref(a);
        if (torture_chance(&w->rng, 2))
            rcgc_ref_init(&m[i]->slot[2], m[torture_below(&w->rng, len)]);
    }
    for (unsigned i = 1; i < len; i++)
        rcgc_decref(m[i]);
    w->ops += len;
    return m[0];
}

/* One touch of the ring that h belongs to; the caller then safepoints. */
static void touch(wstate *w, gnode *h)
{
    gnode *m = h, *x, *old;
    unsigned steps = torture_below(&w->rng, MAXRING);
    bool loaded = false;    /* m is a reference of its own (from a load) */

    w->touches++;
    w->ops++;
    /* Walk to some member (each step a load), keeping only m. */
    for (unsigned i = 0; i < steps; i++) {
        x = load_checked(&m->slot[0], "touch: walk ring");
        if (x == NULL) {
            TORTURE_VIOLATION("member id %" PRIu64 ": ring slot is NULL", m->t.id);
            break;
        }
        if (loaded)
            rcgc_decref(m);
        m = x;
        loaded = true;
    }
    switch (torture_below(&w->rng, 5)) {
    case 0:                                 /* a reference across the safepoint */
        rcgc_incref(m);
        rcgc_safepoint();
        gnode_ok(m, "touch: held across a safepoint");
        rcgc_decref(m);
        break;
    case 1:                                 /* load and drop */
        x = load_checked(&m->slot[torture_below(&w->rng, 3)], "touch: load slot");
        rcgc_decref(x);
        break;
    case 2:                                 /* exchange with its own value */
        x = load_checked(&m->slot[0], "touch: load for exchange");
        old = rcgc_ref_exchange(&m->slot[0], x);    /* steals x */
        if (old != x)
            TORTURE_VIOLATION("member id %" PRIu64 ": exchange returned %p, the slot "
                              "held %p and only this thread touches it", m->t.id,
                              (void *)old, (void *)x);
        rcgc_decref(old);
        break;
    case 3:                                 /* compare-exchange, same value */
        x = load_checked(&m->slot[2], "touch: load for compare_exchange");
        if (!rcgc_ref_compare_exchange(&m->slot[2], x, x))
            TORTURE_VIOLATION("member id %" PRIu64 ": compare_exchange with the value "
                              "just loaded failed", m->t.id);
        rcgc_decref(x);
        break;
    default:                                /* the anchor */
        x = load_checked(&m->slot[1], "touch: load anchor");
        rcgc_decref(x);
        break;
    }
    if (loaded)
        rcgc_decref(m);
}

static void one_round(wstate *w)
{
    gnode *h = build_ring(w), *mine = NULL;
    uint64_t group, c0, t0;
    gc_group *g;
    unsigned touches = 0, k;
    int size, fin;
    bool foreign = false;

    unsigned source = torture_below(&w->rng, 3);

    if (source == 0) {
        /* Published first: the ring hangs off our root slot; we load a
           member through it, then clear the slot -- from then on only the
           reference we loaded keeps the ring. */
        gnode *x;
        unsigned steps = torture_below(&w->rng, MAXRING);
        rcgc_ref_store(&pub[w->index], h);
        gc_guard(h->group, -1);
        rcgc_decref(h);
        h = load_checked(&pub[w->index], "published: load ring");
        gc_guard(h->group, 1);
        for (unsigned i = 0; i < steps; i++) {
            x = load_checked(&h->slot[0], "published: walk ring");
            rcgc_decref(h);
            h = x;
        }
        rcgc_ref_store(&pub[w->index], NULL);
        w->ops += 3 + steps;
        w->published++;
    } else if (source == 1) {
        /* Leave ours in the pool, take whatever was there. */
        unsigned p = torture_below(&w->rng, NPOOL);
        gc_guard(h->group, -1);                     /* the pool holds it now */
        mine = rcgc_ref_exchange(&pool[p], h);      /* steals h */
        w->ops++;
        if (mine != NULL) {
            gc_guard(mine->group, 1);
            gnode_ok(mine, "pool: taken ring");
            h = mine;
            foreign = true;
            w->foreign++;
        } else {
            h = build_ring(w);
        }
    }
    if (torture_chance(&w->rng, 8)) {
        /* New identity: the ring we built loses its owner. */
        rcgc_thread_detach();
        torture_attach();
        w->gone_owner++;
    }
    group = h->group;
    g = gc_group_at(group);
    size = atomic_load_explicit(&g->size, memory_order_relaxed);

    /* Touch it once per epoch while the collector works. */
    c0 = collections_now();
    t0 = torture_now_ns();
    for (;;) {
        touch(w, h);
        touches++;
        rcgc_safepoint();
        if (torture_chance(&w->rng, 8)) {
            rcgc_blocking_begin();                  /* let the collector run */
            torture_sleep_us(20);
            rcgc_blocking_end();
        }
        if (touches >= MIN_TOUCHES &&
            (collections_now() >= c0 + TOUCH_COLLECTIONS ||
             torture_now_ns() - t0 > MAX_TOUCH_NS || torture_stopping()))
            break;
    }
    if (collections_now() >= c0 + TOUCH_COLLECTIONS)
        w->spanned++;
    fin = atomic_load_explicit(&g->finalized, memory_order_relaxed);
    if (fin != 0)
        TORTURE_VIOLATION("group %" PRIu64 ": %d of %d members finalized while a thread "
                          "still touched the ring", group, fin, size);

    /* Let go, then the ring must be reclaimed within LIVENESS_BOUND calls. */
    gnode_ok(h, "let go");
    gc_guard(group, -1);
    rcgc_decref(h);
    h = NULL;
    for (k = 1; k <= LIVENESS_BOUND + EXTRA_TRIES; k++) {
        rcgc_safepoint();
        rcgc_collect();
        w->ops++;
        if (atomic_load_explicit(&g->finalized, memory_order_relaxed) == size)
            break;
    }
    fin = atomic_load_explicit(&g->finalized, memory_order_relaxed);
    if (k <= LIVENESS_BOUND) {
        w->after[k]++;
    } else {
        if (fin == size)
            w->late++;
        else
            w->never++;
        TORTURE_VIOLATION("group %" PRIu64 " (%d members, %s): not reclaimed within %d "
                          "rcgc_collect calls after the last touch (%s: %d of %d "
                          "finalized after %d calls)", group, size,
                          foreign ? "taken from the pool" : "own ring",
                          LIVENESS_BOUND, fin == size ? "late" : "never", fin, size,
                          LIVENESS_BOUND + EXTRA_TRIES);
    }
    w->rounds++;
}

static void *worker_main(void *arg)
{
    wstate *w = arg;

    torture_attach();
    while (!torture_stopping()) {
        one_round(w);
        /* Churn an anchor: a live, busy candidate. */
        gnode *a = load_checked(&anchors[torture_below(&w->rng, NANCHOR)], "anchor");
        rcgc_decref(a);
        rcgc_safepoint();
    }
    atomic_fetch_add(&total_ops, w->ops);
    atomic_fetch_add(&total_rounds, w->rounds);
    atomic_fetch_add(&total_touches, w->touches);
    atomic_fetch_add(&total_foreign, w->foreign);
    atomic_fetch_add(&total_published, w->published);
    atomic_fetch_add(&total_gone_owner, w->gone_owner);
    atomic_fetch_add(&total_late, w->late);
    atomic_fetch_add(&total_never, w->never);
    atomic_fetch_add(&total_spanned, w->spanned);
    for (unsigned k = 1; k <= LIVENESS_BOUND; k++)
        atomic_fetch_add(&total_after[k], w->after[k]);
    return NULL;            /* exit detaches */
}

int main(int argc, char **argv)
{
    wstate *ws;
    unsigned i, n;
    uint64_t drained;
    char more[400], extra[700];

    torture_start("stress_gc_liveness", argc, argv, 1);
    gc_setup(THRESHOLD);
    n = (unsigned)torture_o.threads;
    ws = calloc(n, sizeof *ws);
    pub = calloc(n, sizeof *pub);
    if (ws == NULL || pub == NULL)
        abort();
    for (i = 0; i < NANCHOR; i++) {
        gnode *a = gnode_new(0, 1, 0);
        rcgc_ref_init(&a->slot[0], a);
        rcgc_ref_store(&anchors[i], a);
        rcgc_decref(a);
    }

    for (i = 0; i < n; i++) {
        ws[i].rng = torture_rng_make(i + 1);
        ws[i].index = i;
    }
    torture_run_workers(n, worker_main, ws, sizeof *ws);
    free(ws);
    for (i = 0; i < n; i++) {
        gnode *x = rcgc_ref_load(&pub[i]);
        if (x != NULL)
            TORTURE_VIOLATION("worker %u left its root slot set", i);
        rcgc_decref(x);
        rcgc_ref_store(&pub[i], NULL);
    }
    free(pub);

    torture_phase("drop roots");
    for (i = 0; i < NPOOL; i++)
        rcgc_ref_store(&pool[i], NULL);
    for (i = 0; i < NANCHOR; i++)
        rcgc_ref_store(&anchors[i], NULL);
    drained = gc_drain(DRAIN_ROUNDS);
    gc_require_work(1);
    if (atomic_load(&total_rounds) == 0)
        TORTURE_VIOLATION("no round completed");

    snprintf(more, sizeof more,
             "rounds=%llu spanning_collections=%llu touches=%llu published=%llu "
             "foreign_rings=%llu gone_owner=%llu "
             "reclaimed_after_1=%llu after_2=%llu after_3=%llu late=%llu never=%llu "
             "drained=%" PRIu64,
             (unsigned long long)atomic_load(&total_rounds),
             (unsigned long long)atomic_load(&total_spanned),
             (unsigned long long)atomic_load(&total_touches),
             (unsigned long long)atomic_load(&total_published),
             (unsigned long long)atomic_load(&total_foreign),
             (unsigned long long)atomic_load(&total_gone_owner),
             (unsigned long long)atomic_load(&total_after[1]),
             (unsigned long long)atomic_load(&total_after[2]),
             (unsigned long long)atomic_load(&total_after[3]),
             (unsigned long long)atomic_load(&total_late),
             (unsigned long long)atomic_load(&total_never), drained);
    gc_summary(extra, sizeof extra, more);
    i = (unsigned)torture_finish(atomic_load(&total_ops), extra);
    gc_group_free_all();
    return (int)i;
}
