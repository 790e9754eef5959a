/*
 * stress_gc_resurrect.c: a cycle hangs off a container's slot; one thread
 * keeps loading it while others cut the edge and put it back, and the
 * collector runs all the time.
 *
 * Shape, per group g (NGROUP of them):
 *
 *   roots[g] -> C  (container; slot[1] -> C, a self-loop, so C is a cycle
 *                   too and a candidate whenever it is decremented)
 *               C.slot[0] -> M0 -> M1 -> ... -> M(L-1) -> M0   (L = 1..4)
 *
 * Each cycle has a group id; its members' slot[0] is the ring, slot[1] now
 * and then points back to C.  The threads:
 *
 *   loader      (worker 0) loads C.slot[0] and walks the whole ring with
 *               rcgc_ref_load, holding every member; sometimes holds them
 *               across a safepoint (the collector's grace period passes
 *               under the hold) and sometimes keeps one member for many
 *               rounds; if it finds C.slot[0] empty while it holds a
 *               member it stores the member back (compare_exchange from
 *               NULL): the race resurrection -- a cycle that had just
 *               become garbage, reached again by a reference obtained
 *               before the cut
 *   cutters     load a member and keep it, cut the edge (rcgc_ref_store
 *               NULL, or rcgc_ref_exchange NULL taking the slot's
 *               reference), store the member back from the reference they
 *               hold, or drop their hold while the edge is cut (the cycle
 *               is garbage unless someone else holds it); when they find
 *               the slot empty they hang a new cycle there
 *   collector   (the last worker) calls rcgc_collect() in a loop, beside
 *               the background collector (threshold THRESHOLD)
 *
 * Oracles:
 *   - the group guard counts the members threads hold; a member finalized
 *     while its group's guard is nonzero was freed while held;
 *   - every member a load returns, and every member along a walk, is
 *     intact (a reachable member that was finalized reads poisoned), and
 *     checked again before the reference is dropped;
 *   - a member's finalizer finds its ring successor still intact (the
 *     whole cycle is torn down together);
 *   - at the end the roots are cleared, rcgc_collect runs until it finds
 *     nothing, then live must be 0 and every finalizer must have run
 *     exactly once; the collector must have reclaimed some cycles.
 */
#include "gc_torture.h"

#define NGROUP       2
#define MAXRING      4
#define THRESHOLD    16
#define NHOLD        4
#define DRAIN_ROUNDS 8
#define LIVE_CAP     4000       /* created and not finalized: above it, no new rings */

static rcgc_ref roots[NGROUP];

static atomic_ullong total_ops, total_loads, total_walks, total_cuts, total_restores;
static atomic_ullong total_loader_restores, total_new_cycles, total_drops_while_cut;
static atomic_ullong total_collect_calls, total_collect_reclaimed, total_safepoint_holds;
static atomic_ullong total_capped;

enum role { LOADER, CUTTER, COLLECTOR };

typedef struct worker {
    unsigned  index;
    enum role role;
} worker;

typedef struct wstate {
    torture_rng rng;
    gnode      *hold[NHOLD];       /* members kept across rounds */
    unsigned    nhold;
    uint64_t    ops, loads, walks, cuts, restores, loader_restores, new_cycles;
    uint64_t    drops_while_cut, safepoint_holds, capped;
} wstate;

/* A member reference the caller just got: counted in its group's guard,
   then checked. */
static gnode *take(gnode *m, const char *where)
{
    if (m == NULL)
        return NULL;
    gc_guard(m->group, 1);
    gnode_ok(m, where);
    return m;
}

static void drop(gnode *m, const char *where)
{
    if (m == NULL)
        return;
    torture_maybe_delay(m->t.id ^ 0x1234);
    gnode_ok(m, where);
    gc_guard(m->group, -1);
    rcgc_decref(m);
}

static gnode *load_container(wstate *w, unsigned g)
{
    gnode *c = rcgc_ref_load(&roots[g]);

    w->ops++;
    w->loads++;
    if (c == NULL) {
        TORTURE_VIOLATION("root %u is NULL while the run is on", g);
        return NULL;
    }
    if (!gnode_ok(c, "load container")) {
        rcgc_decref(c);
        return NULL;
    }
    return c;
}

/* A new ring hung into c->slot[0] if it is still empty.  The creator's
   references are dropped (the ring is then held by the slot, or garbage if
   the slot was taken meanwhile). */
static void new_cycle(wstate *w, gnode *c)
{
    unsigned len = 1 + torture_below(&w->rng, MAXRING);
    uint64_t group;
    gnode *m[MAXRING];

    /* Garbage made faster than the collector takes it (sanitizer builds)
       would only make every collection bigger and rarer. */
    if (atomic_load_explicit(&torture_created, memory_order_relaxed) -
            atomic_load_explicit(&torture_finalized, memory_order_relaxed) > LIVE_CAP) {
        w->capped++;
        return;
    }
    group = gc_group_new((int)len);

    for (unsigned i = 0; i < len; i++)
        m[i] = gnode_new(group, 2, 0);
    for (unsigned i = 0; i < len; i++) {
        m[i]->partner = m[(i + 1) % len];
        rcgc_ref_init(&m[i]->slot[0], m[(i + 1) % len]);
        if (torture_chance(&w->rng, 3))
            rcgc_ref_init(&m[i]->slot[1], c);
    }
    w->ops++;
    w->new_cycles++;
    rcgc_ref_compare_exchange(&c->slot[0], NULL, m[0]);
    for (unsigned i = 0; i < len; i++)
        rcgc_decref(m[i]);      /* not yet taken: no guard to lower */
}

/* Loads the ring from c->slot[0] and walks it, holding every member. */
static void loader_round(wstate *w, gnode *c)
{
    gnode *ring[MAXRING + 1], *m;
    unsigned n = 0;

    m = take(rcgc_ref_load(&c->slot[0]), "loader: load member");
    w->ops++;
    w->loads++;
    if (m == NULL)
        return;
    ring[n++] = m;
    w->walks++;
    while (n <= MAXRING) {
        gnode *next = take(rcgc_ref_load(&ring[n - 1]->slot[0]), "loader: walk ring");
        w->ops++;
        w->loads++;
        if (next == NULL) {
            TORTURE_VIOLATION("member id %" PRIu64 ": ring slot is NULL",
                              ring[n - 1]->t.id);
            break;
        }
        if (next == m) {
            drop(next, "loader: ring closed");
            break;
        }
        if (next->group != m->group)
            TORTURE_VIOLATION("ring of group %" PRIu64 " leads to id %" PRIu64
                              " of group %" PRIu64, m->group, next->t.id, next->group);
        ring[n++] = next;
    }
    if (n > MAXRING)
        TORTURE_VIOLATION("ring of group %" PRIu64 " longer than %d", m->group, MAXRING);
    if (torture_chance(&w->rng, 16)) {
        /* Hold the ring across a quiescent state: the collector's grace
           period passes while we hold it. */
        rcgc_safepoint();
        w->safepoint_holds++;
    }
    if (torture_chance(&w->rng, 2)) {
        /* Put it back if the edge is cut: a reference obtained before the
           cut reaches the cycle again. */
        if (rcgc_ref_compare_exchange(&c->slot[0], NULL, m)) {
            w->restores++;
            w->loader_restores++;
        }
        w->ops++;
    }
    for (unsigned i = 0; i < n; i++)
        gnode_ok(ring[i], "loader: held member");
    if (w->nhold < NHOLD && torture_chance(&w->rng, 8)) {
        w->hold[w->nhold++] = ring[0];      /* keep the entry member a while */
        ring[0] = NULL;
    }
    for (unsigned i = 0; i < n; i++)
        drop(ring[i], "loader: drop member");
}

static void drop_hold(wstate *w, unsigned i, gnode *c)
{
    gnode *m = w->hold[i];

    w->hold[i] = w->hold[--w->nhold];
    if (c != NULL) {
        gnode *cur = rcgc_ref_load(&c->slot[0]);
        if (cur == NULL)
            w->drops_while_cut++;           /* the cycle may be garbage now */
        rcgc_decref(cur);                   /* untaken: not guarded */
    }
    drop(m, "drop hold");
    w->ops++;
}

static void cutter_round(wstate *w, gnode *c)
{
    unsigned op = torture_below(&w->rng, 16);
    gnode *h = w->nhold ? w->hold[torture_below(&w->rng, w->nhold)] : NULL, *old;

    w->ops++;
    if (op < 3) {                                   /* take a hold */
        gnode *m = take(rcgc_ref_load(&c->slot[0]), "cutter: load member");
        w->loads++;
        if (m == NULL)
            new_cycle(w, c);
        else if (w->nhold < NHOLD)
            w->hold[w->nhold++] = m;
        else
            drop(m, "cutter: drop member");
    } else if (op < 9 && h != NULL) {               /* cut, then restore */
        if (torture_chance(&w->rng, 2)) {
            rcgc_ref_store(&c->slot[0], NULL);
        } else {
            old = take(rcgc_ref_exchange(&c->slot[0], NULL), "cutter: exchange out");
            drop(old, "cutter: drop exchanged member");
        }
        w->cuts++;
        torture_maybe_delay(h->t.id ^ w->ops);
        if (torture_chance(&w->rng, 4))
            rcgc_safepoint();                       /* cut across a grace period */
        gnode_ok(h, "cutter: held member after the cut");
        if (torture_chance(&w->rng, 2)) {
            rcgc_ref_store(&c->slot[0], h);
            w->restores++;
        } else if (rcgc_ref_compare_exchange(&c->slot[0], NULL, h)) {
            w->restores++;
        }
    } else if (op < 11 && w->nhold > 0) {           /* drop a hold */
        drop_hold(w, torture_below(&w->rng, w->nhold), c);
    } else if (op < 13) {                           /* cut and keep nothing */
        if (torture_chance(&w->rng, 2)) {
            rcgc_ref_store(&c->slot[0], NULL);
        } else {
            old = take(rcgc_ref_exchange(&c->slot[0], NULL), "cutter: exchange out");
            drop(old, "cutter: drop exchanged member");
        }
        w->cuts++;
    } else if (op < 14 && h != NULL) {              /* hold it through a member */
        gnode *next = take(rcgc_ref_load(&h->slot[0]), "cutter: load ring");
        w->loads++;
        if (next == NULL)
            TORTURE_VIOLATION("held member id %" PRIu64 ": ring slot is NULL", h->t.id);
        drop(next, "cutter: drop ring member");
    } else {                                        /* refill an empty edge */
        gnode *m = rcgc_ref_load(&c->slot[0]);
        w->loads++;
        if (m == NULL)
            new_cycle(w, c);
        else
            rcgc_decref(m);                         /* untaken: not guarded */
    }
}

static void *worker_main(void *arg)
{
    worker *me = arg;
    wstate *w = calloc(1, sizeof *w);
    uint64_t rounds = 0, calls = 0, reclaimed = 0;

    if (w == NULL)
        abort();
    w->rng = torture_rng_make(me->index + 1);
    torture_attach();
    while (!torture_stopping()) {
        if (me->role == COLLECTOR) {
            reclaimed += rcgc_collect();
            calls++;
            rcgc_safepoint();
            continue;
        }
        unsigned g = torture_below(&w->rng, NGROUP);
        gnode *c = load_container(w, g);
        if (c != NULL) {
            if (me->role == LOADER) {
                loader_round(w, c);
                if (w->nhold > 0 && torture_chance(&w->rng, 64))
                    drop_hold(w, torture_below(&w->rng, w->nhold), c);
            } else {
                cutter_round(w, c);
            }
            rcgc_decref(c);
        }
        if ((++rounds & 127) == 0)
            rcgc_safepoint();
        torture_pause(&w->rng, 8192, 0);
    }
    while (w->nhold > 0)
        drop_hold(w, 0, NULL);
    atomic_fetch_add(&total_ops, w->ops + calls);
    atomic_fetch_add(&total_loads, w->loads);
    atomic_fetch_add(&total_walks, w->walks);
    atomic_fetch_add(&total_cuts, w->cuts);
    atomic_fetch_add(&total_restores, w->restores);
    atomic_fetch_add(&total_loader_restores, w->loader_restores);
    atomic_fetch_add(&total_new_cycles, w->new_cycles);
    atomic_fetch_add(&total_drops_while_cut, w->drops_while_cut);
    atomic_fetch_add(&total_safepoint_holds, w->safepoint_holds);
    atomic_fetch_add(&total_capped, w->capped);
    atomic_fetch_add(&total_collect_calls, calls);
    atomic_fetch_add(&total_collect_reclaimed, reclaimed);
    free(w);
    return NULL;            /* exit detaches */
}

int main(int argc, char **argv)
{
    worker *workers;
    unsigned i, n;
    uint64_t drained;
    char more[400], extra[700];

    torture_start("stress_gc_resurrect", argc, argv, 3);
    gc_setup(THRESHOLD);
    n = (unsigned)torture_o.threads;
    workers = calloc(n, sizeof *workers);
    if (workers == NULL)
        abort();
    for (i = 0; i < NGROUP; i++) {
        gnode *c = gnode_new(0, 2, 0);
        rcgc_ref_init(&c->slot[1], c);
        rcgc_ref_store(&roots[i], c);
        new_cycle(&(wstate){ .rng = torture_rng_make(1000 + i) }, c);
        rcgc_decref(c);
    }

    for (i = 0; i < n; i++) {
        workers[i].index = i;
        workers[i].role = i == 0 ? LOADER : i == n - 1 ? COLLECTOR : CUTTER;
    }
    torture_run_workers(n, worker_main, workers, sizeof *workers);
    free(workers);

    torture_phase("drop roots");
    for (i = 0; i < NGROUP; i++)
        rcgc_ref_store(&roots[i], NULL);    /* C and its ring: garbage cycles */
    drained = gc_drain(DRAIN_ROUNDS);
    gc_require_work(1);

    snprintf(more, sizeof more,
             "loads=%llu walks=%llu cuts=%llu restores=%llu loader_restores=%llu "
             "new_cycles=%llu capped=%llu drops_while_cut=%llu safepoint_holds=%llu "
             "collect_calls=%llu collect_reclaimed=%llu drained=%" PRIu64,
             (unsigned long long)atomic_load(&total_loads),
             (unsigned long long)atomic_load(&total_walks),
             (unsigned long long)atomic_load(&total_cuts),
             (unsigned long long)atomic_load(&total_restores),
             (unsigned long long)atomic_load(&total_loader_restores),
             (unsigned long long)atomic_load(&total_new_cycles),
             (unsigned long long)atomic_load(&total_capped),
             (unsigned long long)atomic_load(&total_drops_while_cut),
             (unsigned long long)atomic_load(&total_safepoint_holds),
             (unsigned long long)atomic_load(&total_collect_calls),
             (unsigned long long)atomic_load(&total_collect_reclaimed), drained);
    gc_summary(extra, sizeof extra, more);
    i = (unsigned)torture_finish(atomic_load(&total_ops), extra);
    gc_group_free_all();
    return (int)i;
}
