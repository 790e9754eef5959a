/*
 * stress_gc_finalize.c: finalizers that resurrect what they finalize,
 * beside threads that reach the resurrected objects, move them, and let
 * them go again (PITFALLS 18, 19, 20).
 *
 * Garbage: every worker builds rings of 1..MAXRING gnodes (slot[0] the
 * ring, slot[1] now and then a chord) and drops them at once, so that the
 * collector finds them (the background collector at threshold THRESHOLD,
 * and workers calling rcgc_collect).
 *
 * The finalizer (gc_finalize_hook, then gnode_finalize's checks, which
 * count the run without poisoning: gc_finalize_keep) stores, for one
 * member in RESURRECT_ONE_IN, the member itself into a slot of the
 * lost-and-found table `lost` with rcgc_ref_store: a resurrection.  The
 * collector must then keep the member's whole ring, finalized and intact,
 * and never run a finalizer of it again.  The store overwrites whatever
 * the slot held: a ring resurrected earlier, which becomes garbage a
 * second time (a decrement inside a finalizer).
 *
 * The workers, besides building:
 *
 *   walk     load a `lost` slot (rcgc_ref_load; it may meet a member whose
 *            finalizer is storing it there right now: the load waits for
 *            the collector's verdict); the member must be intact and
 *            rcgc_is_finalized (only finalizers put anything in `lost`);
 *            then walk its ring with rcgc_ref_load, holding each member
 *            (the group's guard up), every one intact and finalized, now
 *            and then across a safepoint (a grace period passes under the
 *            hold);
 *   move     take a slot's reference by rcgc_ref_exchange with NULL and put
 *            it in another slot by rcgc_ref_exchange, dropping what that
 *            one held: references moved, no count changed on the way;
 *   clear    rcgc_ref_store NULL into a slot: the ring it held becomes
 *            garbage again, its finalizers already run: the collector
 *            frees it without running them (the second death);
 *   collect  rcgc_collect(): the finalizers run on this worker.
 *
 * Oracles: a finalizer runs exactly once per object (the body's count and
 * the id table), never while a thread holds a member of its ring (the
 * group's guard) or the object itself (its `held` marker); every object
 * reached through `lost` is intact and finalized (a freed one reads as
 * the free hook's fill, or rcgc's debug poison, or trips the sanitizers);
 * at the end `lost` is cleared and drained: live == 0, every block back.
 * The run must have resurrected, walked resurrected rings and cleared
 * some (else the test proved nothing).
 */
#include "gc_torture.h"

#define MAXRING          4
#define NLOST            16
#define RESURRECT_ONE_IN 8
#define THRESHOLD        32
#define LIVE_CAP         4000       /* made and not finalized: above it, no new rings */
#define DRAIN_ROUNDS     8
#define CLEAR_ONE_IN     256        /* of the 1/64 of ops that may clear */

static rcgc_ref lost[NLOST];
static atomic_bool resurrecting = true;   /* off for the final drain */

static atomic_ullong total_ops, total_built, total_resurrected, total_walks;
static atomic_ullong total_walked, total_moves, total_clears, total_collect_calls;
static atomic_ullong total_collect_reclaimed, total_held_safepoints, total_capped;

typedef struct wstate {
    torture_rng rng;
    unsigned    index;
    uint64_t    ops, built, walks, walked, moves, clears, collect_calls;
    uint64_t    collect_reclaimed, held_safepoints, capped;
} wstate;

/* The finalizer's resurrection, for one object in RESURRECT_ONE_IN (a
   hash of its id: the same objects whichever thread finalizes them). */
static void resurrect_hook(gnode *n)
{
    uint64_t x = torture_hash(n->t.id, torture_o.seed ^ 0x5e5e);

    if (x % RESURRECT_ONE_IN != 0 ||
        !atomic_load_explicit(&resurrecting, memory_order_relaxed))
        return;
    rcgc_ref_store(&lost[(x >> 16) % NLOST], n);
    atomic_fetch_add_explicit(&total_resurrected, 1, memory_order_relaxed);
}

/* Builds a ring and drops it: garbage. */
static void build_ring(wstate *w)
{
    unsigned len = 1 + torture_below(&w->rng, MAXRING);
    uint64_t group;
    gnode *m[MAXRING];

    /* Capped before a group is taken: a worker that finds the cap reached
       comes back at once, and one pinned to the collector's CPU did so
       often enough to use up the group table's 2^28 ids in 15 s. */
    if (gc_over_cap(LIVE_CAP)) {
        w->capped++;
        return;
    }
    group = gc_group_new((int)len);
    for (unsigned i = 0; i < len; i++)
        m[i] = gnode_new(group, 2, w->index);
    for (unsigned i = 0; i < len; i++) {
        m[i]->partner = m[(i + 1) % len];
        rcgc_ref_init(&m[i]->slot[0], m[(i + 1) % len]);
        if (torture_chance(&w->rng, 3))
            rcgc_ref_init(&m[i]->slot[1], m[torture_below(&w->rng, len)]);
    }
    for (unsigned i = 0; i < len; i++)
        rcgc_decref(m[i]);
    w->built++;
    w->ops += len;
}

/* A member reached through `lost`: held (checked), and finalized. */
static gnode *reached(gnode *n, const char *where)
{
    if (n == NULL)
        return NULL;
    gc_hold(n, where);
    if (!rcgc_is_finalized(n))
        TORTURE_VIOLATION("%s: gnode id %" PRIu64 " reached through the lost table is "
                          "not finalized (only finalizers put objects there)", where,
                          n->t.id);
    return n;
}

static void walk(wstate *w)
{
    gnode *held[MAXRING];
    unsigned nheld = 0;
    gnode *m = rcgc_ref_load(&lost[torture_below(&w->rng, NLOST)]);
    uint64_t group;

    w->ops++;
    if (m == NULL)
        return;
    group = m->group;
    gc_guard(group, 1);
    held[nheld++] = reached(m, "walk: load from lost");
    w->walks++;
    /* Round the ring: at most MAXRING loads bring us back to m. */
    for (unsigned i = 0; i < MAXRING; i++) {
        gnode *x = rcgc_ref_load(&held[nheld - 1]->slot[0]);

        if (x == NULL) {
            TORTURE_VIOLATION("walk: gnode id %" PRIu64 " of a resurrected ring has an "
                              "empty ring slot", held[nheld - 1]->t.id);
            break;
        }
        if (x == m) {
            rcgc_decref(x);
            break;
        }
        if (x->group != group)
            TORTURE_VIOLATION("walk: the ring of group %" PRIu64 " leads to gnode id %"
                              PRIu64 " of group %" PRIu64, group, x->t.id, x->group);
        if (nheld == MAXRING) {
            TORTURE_VIOLATION("walk: the ring of group %" PRIu64 " is longer than %d",
                              group, MAXRING);
            rcgc_decref(x);
            break;
        }
        held[nheld++] = reached(x, "walk: load of a ring slot");
        w->walked++;
    }
    if (torture_chance(&w->rng, 8)) {
        rcgc_safepoint();                   /* a grace period under the hold */
        w->held_safepoints++;
        for (unsigned i = 0; i < nheld; i++)
            gnode_ok(held[i], "walk: held across a safepoint");
    }
    while (nheld > 0)
        gc_unhold(held[--nheld], "walk: drop");
    gc_guard(group, -1);
}

static void move(wstate *w)
{
    unsigned from = torture_below(&w->rng, NLOST), to = torture_below(&w->rng, NLOST);
    gnode *m = rcgc_ref_exchange(&lost[from], NULL), *old;

    w->ops++;
    if (m == NULL)
        return;
    gnode_ok(m, "move: taken by exchange");
    old = rcgc_ref_exchange(&lost[to], m);     /* our reference moves in */
    if (old != NULL)
        gnode_ok(old, "move: displaced by exchange");
    rcgc_decref(old);
    w->moves++;
}

static void clear(wstate *w)
{
    w->ops++;
    rcgc_ref_store(&lost[torture_below(&w->rng, NLOST)], NULL);
    w->clears++;
}

static void *worker_main(void *arg)
{
    wstate *w = arg;

    torture_attach();
    while (!torture_stopping()) {
        for (int k = 0; k < 32; k++) {
            unsigned op = torture_below(&w->rng, 64);

            if (op < 16)
                build_ring(w);
            else if (op < 56)
                walk(w);
            else if (op < 63)
                move(w);
            else if (op == 63 && torture_chance(&w->rng, CLEAR_ONE_IN))
                clear(w);
            else if (op == 63 && w->index == 0 && torture_chance(&w->rng, 16)) {
                w->collect_reclaimed += rcgc_collect();
                w->collect_calls++;
            }
        }
        rcgc_safepoint();
    }
    atomic_fetch_add(&total_ops, w->ops);
    atomic_fetch_add(&total_built, w->built);
    atomic_fetch_add(&total_walks, w->walks);
    atomic_fetch_add(&total_walked, w->walked);
    atomic_fetch_add(&total_moves, w->moves);
    atomic_fetch_add(&total_clears, w->clears);
    atomic_fetch_add(&total_collect_calls, w->collect_calls);
    atomic_fetch_add(&total_collect_reclaimed, w->collect_reclaimed);
    atomic_fetch_add(&total_held_safepoints, w->held_safepoints);
    atomic_fetch_add(&total_capped, w->capped);
    return NULL;            /* exit detaches */
}

int main(int argc, char **argv)
{
    wstate *ws;
    unsigned i, n;
    uint64_t drained;
    char more[400], extra[700];

    torture_start("stress_gc_finalize", argc, argv, 2);
    gc_finalize_hook = resurrect_hook;
    gc_finalize_keep = true;
    gc_setup(THRESHOLD);
    n = (unsigned)torture_o.threads;
    ws = calloc(n, sizeof *ws);
    if (ws == NULL)
        abort();
    for (i = 0; i < n; i++) {
        ws[i].rng = torture_rng_make(i + 1);
        ws[i].index = i;
    }
    torture_run_workers(n, worker_main, ws, sizeof *ws);
    free(ws);

    /* Draining resurrects no more: the hook is off, and once a collection
       of our own has run, no collection that read it on is left (they run
       one at a time); then the table is cleared. */
    torture_phase("drop lost");
    atomic_store_explicit(&resurrecting, false, memory_order_relaxed);
    rcgc_collect();
    for (i = 0; i < NLOST; i++)
        rcgc_ref_store(&lost[i], NULL);
    drained = gc_drain(DRAIN_ROUNDS);
    gc_require_work(1);
    if (torture_o.seconds >= 1) {
        if (atomic_load(&total_resurrected) == 0)
            TORTURE_VIOLATION("no finalizer resurrected anything");
        if (atomic_load(&total_walks) == 0)
            TORTURE_VIOLATION("no resurrected ring was walked");
        if (atomic_load(&total_clears) == 0)
            TORTURE_VIOLATION("no lost slot was cleared");
    }

    snprintf(more, sizeof more,
             "rings=%llu resurrected=%llu walks=%llu walked=%llu moves=%llu clears=%llu "
             "held_safepoints=%llu collect_calls=%llu collect_reclaimed=%llu capped=%llu "
             "drained=%" PRIu64,
             (unsigned long long)atomic_load(&total_built),
             (unsigned long long)atomic_load(&total_resurrected),
             (unsigned long long)atomic_load(&total_walks),
             (unsigned long long)atomic_load(&total_walked),
             (unsigned long long)atomic_load(&total_moves),
             (unsigned long long)atomic_load(&total_clears),
             (unsigned long long)atomic_load(&total_held_safepoints),
             (unsigned long long)atomic_load(&total_collect_calls),
             (unsigned long long)atomic_load(&total_collect_reclaimed),
             (unsigned long long)atomic_load(&total_capped), drained);
    gc_summary(extra, sizeof extra, more);
    i = (unsigned)torture_finish(atomic_load(&total_ops), extra);
    gc_group_free_all();
    return (int)i;
}
