/*
 * stress_gc_moves.c: references moved by rcgc_ref_exchange alone, with no
 * count changing, while the collector examines the objects again and again
 * (PITFALLS 11; PROTOCOL-REVIEW hole 1).
 *
 * Each mover owns a private heap of at most KMAX tracked nodes (two slots
 * each) that no other thread can reach, and NHAND hands (strong references
 * or NULL).  A move picks a hand and a slot of a node it can reach and
 * swaps them with one rcgc_ref_exchange: the hand's reference goes into
 * the slot, the slot's comes out into the hand.  Counts never change, yet
 * the graph does: cycles form and break, and a node can go from "in my
 * hand" to "only in a slot of a node in my hand" and back between two
 * reads of the collector.  The hole-1 trail (obj1<->obj2 a cycle, the
 * thread holds obj1 and obj3, swaps obj1.s0 with obj3, then obj2.s1 with
 * obj1) is one of the sequences this produces.  Each exchange also makes
 * the stored node a candidate root, so the collector keeps examining these
 * nodes; the other workers call rcgc_collect() in a loop beside the
 * background collector (threshold THRESHOLD).
 *
 * The mover keeps an exact shadow of its heap (only it touches these
 * slots), so it knows which nodes its hands reach.  Each node's `held`
 * marker is 1 while it is reachable from the hands: a move that will cut
 * nodes off clears their markers first (they are garbage once the exchange
 * is done and may be collected any time after), and nodes never become
 * reachable again.  Most moves keep every node reachable; one in
 * CUT_ONE_IN may cut some off.  New nodes are made (count 1, into an empty
 * hand) when the heap runs low.
 *
 * Oracles:
 *   - a node finalized while its `held` marker is set was freed while the
 *     thread could still reach it (the failure hole 1 describes);
 *   - every exchange returns exactly what the shadow says the slot held
 *     (a lost or duplicated move), and every node touched is intact;
 *   - at the end the movers clear their markers and drop their hands,
 *     rcgc_collect runs until it finds nothing, then live must be 0 and
 *     every finalizer must have run exactly once; the collector must have
 *     reclaimed the garbage the movers cut off.
 */
/* Its heaps are tiny, so collections stay short: delay one traverse in 8
   (gc_torture.h), which widens the windows between the collector's reads
   of two members enough to matter (with one in 64 the mutant without the
   exchange barrier survived most seeds). */
#define GC_TRAVERSE_DELAY_ONE_IN 8
#include "gc_torture.h"

#define KMAX         8          /* nodes per heap, at most */
#define NHAND        3          /* hands, at most */
#define NS           2          /* slots used per node */
#define THRESHOLD    16
#define CUT_ONE_IN   256
#define HEAP_MOVES   (1u << 16) /* moves before a mover starts a new heap */
#define DRAIN_ROUNDS 8

static atomic_ullong total_ops, total_moves, total_cutting_moves, total_cut_off;
static atomic_ullong total_made, total_heaps, total_collect_calls;
static atomic_ullong total_collect_reclaimed;

typedef struct mover {
    torture_rng rng;
    unsigned    index;
    bool        collector;
    int         kmax, kmin, nhand;  /* this heap's shape */
    gnode      *obj[KMAX];      /* the heap: NULL = free entry */
    int         slot[KMAX][NS]; /* shadow: index of the node in obj[k].slot[s], or -1 */
    int         hand[NHAND];    /* index of the node in each hand, or -1 */
    gnode      *hand_ptr[NHAND];
    uint64_t    ops, moves, cutting_moves, cut_off, made, heaps;
} mover;

/* Which heap entries the hands reach, with hand h holding `hv` and
   obj[o].slot[s] holding `sv` instead of their shadow values (o < 0: the
   shadow as it is). */
static unsigned reach(const mover *m, int h, int hv, int o, int s, int sv)
{
    unsigned seen = 0, stack[KMAX], n = 0;

    for (int i = 0; i < m->nhand; i++) {
        int v = i == h ? hv : m->hand[i];
        if (v >= 0 && !(seen & (1u << v))) {
            seen |= 1u << v;
            stack[n++] = (unsigned)v;
        }
    }
    while (n > 0) {
        unsigned k = stack[--n];
        for (int j = 0; j < NS; j++) {
            int v = ((int)k == o && j == s) ? sv : m->slot[k][j];
            if (v >= 0 && !(seen & (1u << v))) {
                seen |= 1u << v;
                stack[n++] = (unsigned)v;
            }
        }
    }
    return seen;
}

static void set_held(gnode *n, int v)
{
    atomic_store_explicit(&n->held, v, memory_order_relaxed);
}

static unsigned live_count(const mover *m)
{
    unsigned n = 0;

    for (int k = 0; k < m->kmax; k++)
        n += m->obj[k] != NULL;
    return n;
}

/* A new node (count 1) into an empty hand, if there is one. */
static void make_node(mover *m)
{
    int k, h;

    for (k = 0; k < m->kmax && m->obj[k] != NULL; k++)
        ;
    for (h = 0; h < m->nhand && m->hand[h] >= 0; h++)
        ;
    if (k == m->kmax || h == m->nhand)
        return;
    m->obj[k] = gnode_new(0, NS, m->index);
    set_held(m->obj[k], 1);
    m->slot[k][0] = m->slot[k][1] = -1;
    m->hand[h] = k;
    m->hand_ptr[h] = m->obj[k];
    m->made++;
    m->ops++;
}

/* A fresh heap of a random shape: 2 to KMAX nodes, 1 to NHAND hands (the
   smallest are the spin model's: 2 or 3 nodes, 2 hands). */
static void new_heap(mover *m)
{
    memset(m->obj, 0, sizeof m->obj);
    m->kmax = 2 + (int)torture_below(&m->rng, KMAX - 1);
    m->nhand = 1 + (int)torture_below(&m->rng, NHAND);
    if (torture_chance(&m->rng, 2)) {
        m->kmax = 2 + (int)torture_below(&m->rng, 2);
        m->nhand = 2;
    }
    m->kmin = m->kmax < m->nhand ? m->kmax : m->nhand;
    for (int h = 0; h < NHAND; h++) {
        m->hand[h] = -1;
        m->hand_ptr[h] = NULL;
    }
    for (int h = 0; h < m->nhand; h++)
        make_node(m);
    m->heaps++;
}

/* Lets the whole heap go: markers first, then the hands' references. */
static void drop_heap(mover *m)
{
    for (int k = 0; k < m->kmax; k++)
        if (m->obj[k] != NULL)
            set_held(m->obj[k], 0);
    for (int h = 0; h < m->nhand; h++) {
        if (m->hand_ptr[h] != NULL)
            gnode_ok(m->hand_ptr[h], "drop heap: hand");
        rcgc_decref(m->hand_ptr[h]);
        m->hand_ptr[h] = NULL;
        m->hand[h] = -1;
    }
    memset(m->obj, 0, sizeof m->obj);
}

static void one_move(mover *m)
{
    unsigned now = reach(m, -1, 0, -1, 0, 0), after, lost;
    int h = (int)torture_below(&m->rng, (uint32_t)m->nhand), o, s;
    int tries = 0, all_tries = 0;
    bool may_cut = torture_chance(&m->rng, CUT_ONE_IN);
    gnode *old, *expect;

    if (now == 0) {
        make_node(m);
        return;
    }
    /* A reachable node and one of its slots; a move that cuts nodes off
       only if may_cut. */
    for (;;) {
        o = (int)torture_below(&m->rng, (uint32_t)m->kmax);
        s = (int)torture_below(&m->rng, NS);
        if (!(now & (1u << o)))
            continue;
        after = reach(m, h, m->slot[o][s], o, s, m->hand[h]);
        if (after == now || may_cut)
            break;
        if (++all_tries == 64)
            return;                     /* every move we tried cuts: skip */
        if (++tries == 8) {
            h = (int)torture_below(&m->rng, (uint32_t)m->nhand);
            tries = 0;
        }
    }
    lost = now & ~after;
    /* Cut-off nodes are garbage once the exchange is done: clear their
       markers while the hands still reach them. */
    for (int k = 0; k < m->kmax; k++)
        if (lost & (1u << k))
            set_held(m->obj[k], 0);

    gnode_ok(m->obj[o], "move: node whose slot is exchanged");
    expect = m->slot[o][s] >= 0 ? m->obj[m->slot[o][s]] : NULL;
    old = rcgc_ref_exchange(&m->obj[o]->slot[s], m->hand_ptr[h]);   /* steals */
    if (old != expect)
        TORTURE_VIOLATION("mover %u: exchange of node id %" PRIu64 " slot %d returned "
                          "%p, the slot held %p", m->index, m->obj[o]->t.id, s,
                          (void *)old, (void *)expect);
    if (old != NULL)
        gnode_ok(old, "move: value taken out");
    {
        int taken = m->slot[o][s];
        m->slot[o][s] = m->hand[h];
        m->hand[h] = taken;
        m->hand_ptr[h] = old;
    }
    m->moves++;
    m->ops++;
    if (lost) {
        m->cutting_moves++;
        for (int k = 0; k < m->kmax; k++) {
            if (lost & (1u << k)) {
                m->obj[k] = NULL;       /* the collector's now */
                m->cut_off++;
            }
        }
    }
    if (live_count(m) < (unsigned)m->kmin)
        make_node(m);
}

static void *worker_main(void *arg)
{
    mover *m = arg;
    uint64_t calls = 0, reclaimed = 0, rounds = 0;

    torture_attach();
    if (!m->collector)
        new_heap(m);
    while (!torture_stopping()) {
        if (m->collector) {
            reclaimed += rcgc_collect();
            calls++;
            rcgc_safepoint();
            continue;
        }
        one_move(m);
        torture_maybe_delay(m->ops ^ ((uint64_t)m->index << 40));
        if ((++rounds & 255) == 0)
            rcgc_safepoint();
        if (rounds % HEAP_MOVES == 0) {
            drop_heap(m);
            new_heap(m);
        }
        torture_pause(&m->rng, 8192, 0);
    }
    if (!m->collector)
        drop_heap(m);
    atomic_fetch_add(&total_ops, m->ops + calls);
    atomic_fetch_add(&total_moves, m->moves);
    atomic_fetch_add(&total_cutting_moves, m->cutting_moves);
    atomic_fetch_add(&total_cut_off, m->cut_off);
    atomic_fetch_add(&total_made, m->made);
    atomic_fetch_add(&total_heaps, m->heaps);
    atomic_fetch_add(&total_collect_calls, calls);
    atomic_fetch_add(&total_collect_reclaimed, reclaimed);
    return NULL;            /* exit detaches */
}

int main(int argc, char **argv)
{
    mover *ms;
    unsigned i, n, ncollect;
    uint64_t drained;
    char more[400], extra[700];

    torture_start("stress_gc_moves", argc, argv, 2);
    gc_setup(THRESHOLD);
    n = (unsigned)torture_o.threads;
    ncollect = n / 4 ? n / 4 : 1;
    ms = calloc(n, sizeof *ms);
    if (ms == NULL)
        abort();

    for (i = 0; i < n; i++) {
        ms[i].rng = torture_rng_make(i + 1);
        ms[i].index = i;
        ms[i].collector = i >= n - ncollect;
    }
    torture_run_workers(n, worker_main, ms, sizeof *ms);
    free(ms);

    drained = gc_drain(DRAIN_ROUNDS);
    gc_require_work(atomic_load(&total_cut_off) > 0 ? 1 : 0);

    snprintf(more, sizeof more,
             "moves=%llu cutting_moves=%llu cut_off=%llu made=%llu heaps=%llu "
             "collect_calls=%llu collect_reclaimed=%llu drained=%" PRIu64,
             (unsigned long long)atomic_load(&total_moves),
             (unsigned long long)atomic_load(&total_cutting_moves),
             (unsigned long long)atomic_load(&total_cut_off),
             (unsigned long long)atomic_load(&total_made),
             (unsigned long long)atomic_load(&total_heaps),
             (unsigned long long)atomic_load(&total_collect_calls),
             (unsigned long long)atomic_load(&total_collect_reclaimed), drained);
    gc_summary(extra, sizeof extra, more);
    i = (unsigned)torture_finish(atomic_load(&total_ops), extra);
    gc_group_free_all();
    return (int)i;
}
