/*
 * test_gc_oom.c: PITFALLS 28, out of memory inside the collector: every
 * piece of temporary state is restored, nothing live is freed, nothing is
 * leaked, and no candidate is lost.
 *
 * rcgc__test_collector_fail_after(n) makes the collector's own allocations
 * (member, edge and stack tables, root chunks, the callbacks' copy, the
 * SAVEALL list) fail once n more have succeeded.  Each case sweeps
 * n = 0, 1, 2, ... until a collection makes no allocation that fails; at
 * each point, in manual mode:
 *
 *   world    garbage: 6000 2-cycles (6000 candidates; 300 in the hard build; more than the member
 *            table's first size, so the table grows while candidates are
 *            taken, and more than a round's: rcgc_collect takes them in
 *            two rounds, see collector.c) and a ring of 3000 nodes with
 *            one candidate (the table grows while marking), one of the
 *            2-cycles pointing into the ring (the first round frees the
 *            ring; its candidate, in the second, is a zombie by then);
 *            live: a 3-cycle held by the test and a container held by the
 *            test pointing into a 4-cycle, both candidates as well, one in
 *            each round;
 *   failed   rcgc_collect with the failure injected; then the live nodes
 *            are intact (refcounts as built, slots in place, not
 *            finalized), and every tracked object still alive, garbage
 *            included, is unflagged: no OWNER_SCAN or OWNER_ZOMBIE, no
 *            SCAN/DIRTY/DYING, no member index;
 *   recovery injection off, one more rcgc_collect frees all the garbage
 *            (the two returns add up to it, stats.live back to the live
 *            nodes only; with a finalizer type, each garbage node was
 *            finalized exactly once); the live nodes still intact;
 *   teardown the live nodes dropped and collected: stats.live back to the
 *            start (nothing leaked).
 *
 * And a mutator out of memory: a decrement that finds no memory for a
 * root chunk (rcgc__test_roots_fail) leaves its object MISSED; with the
 * failure gone, the next rcgc_collect finds a 2-cycle and a ring of 1000
 * dropped that way and frees them, and keeps a 2-cycle the test still
 * holds (then frees it once dropped).
 *
 * Cases: a type without finalizer; a type with a finalizer; SAVEALL (a
 * 2-cycle already in the garbage list, so the list has room for a part of
 * the garbage; then all of it ends up in the list, once each, not
 * finalized; cleared and collected, finalized exactly once); a callback
 * registered (START and STOP stay paired in every collection).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

#define MAGIC  0x0e3a28u
/* The hard build's rounds are two candidates, and its chunks hold two:
   fewer pairs span as many rounds there, at far fewer injection points. */
#define NPAIRS (RCGC_TEST_HARD ? 300 : 6000)
#define RING   3000
#define NGARBAGE (2 * NPAIRS + RING)
#define NLIVE  (3 + 1 + 4)
/* A sweep that has not ended by then never will. */
#define MAX_POINTS 10000

typedef struct onode {
    rcgc_ref      next, other;
    struct onode *next_raw, *other_raw;   /* what the slots hold, without references */
    unsigned      magic;
    unsigned      fin;                    /* atomic: finalizer runs on this node */
} onode;

static unsigned fin_total;    /* atomic */
static unsigned fin_bad;      /* atomic: ran twice, or found a damaged node */

static void onode_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    onode *n = obj;

    visit(&n->next, ctx);
    visit(&n->other, ctx);
}

static void onode_finalize(void *obj)
{
    onode *n = obj;

    if (n->magic != MAGIC || __atomic_fetch_add(&n->fin, 1, __ATOMIC_RELAXED) != 0 ||
        (n->next_raw != NULL && n->next_raw->magic != MAGIC))
        __atomic_fetch_add(&fin_bad, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&fin_total, 1, __ATOMIC_RELAXED);
}

static const rcgc_type plain_type = { "oom_node", sizeof(onode), onode_traverse, NULL, 0 };
static const rcgc_type fin_type = { "oom_fin_node", sizeof(onode), onode_traverse,
                                    onode_finalize, 0 };

static const rcgc_type *type;  /* of the running case */

static onode *node_new(void)
{
    onode *n = rcgc_new(type);

    if (n == NULL)
        bail_out("rcgc_new failed");
    n->magic = MAGIC;
    return n;
}

static void link_next(onode *a, onode *b)
{
    rcgc_ref_store(&a->next, b);
    a->next_raw = b;
}

static void link_other(onode *a, onode *b)
{
    rcgc_ref_store(&a->other, b);
    a->other_raw = b;
}

/* A ring of k nodes; the caller's one reference is to node 0, and the
   ring's references are the others' only ones. */
static onode *ring_new(onode **nodes, unsigned k)
{
    for (unsigned i = 0; i < k; i++)
        nodes[i] = node_new();
    for (unsigned i = 0; i < k; i++) {
        link_next(nodes[i], nodes[(i + 1) % k]);
        if (i > 0)
            rcgc_decref(nodes[i]);
    }
    return nodes[0];
}

static void *slot_peek(rcgc_ref *slot)
{
    return __atomic_load_n(&slot->rcgc_private_, __ATOMIC_ACQUIRE);
}

/* ---- the world ----------------------------------------------------------- */

static onode *held[3], *box, *inner[4];      /* live */
static onode *pairs[NPAIRS][2], *ring[RING]; /* garbage, once built */

/* Builds everything, and leaves exactly these candidates buffered: the
   head of each 2-cycle and of the ring (their last outside reference just
   dropped), the held 3-cycle's node 0 and the container. */
static void build(void)
{
    size_t i;

    ring_new(held, 3);
    box = node_new();
    ring_new(inner, 4);
    link_other(box, inner[0]);
    rcgc_decref(inner[0]);
    ring_new(ring, RING);
    for (i = 0; i < NPAIRS; i++)
        ring_new(pairs[i], 2);
    link_other(pairs[NPAIRS / 2][1], ring[RING / 2]);   /* garbage into garbage */
    /* Every candidate of the building examined and found live: none left. */
    rcgc_collect();
    if (rcgc_get_count() != 0)
        bail_out("candidates left after building: %zu", rcgc_get_count());

    for (i = 0; i < NPAIRS; i++) {
        rcgc_decref(pairs[i][0]);
        if (i == NPAIRS / 3) {
            rcgc_incref(held[0]);
            rcgc_decref(held[0]);
        } else if (i == NPAIRS - 10) {
            rcgc_incref(box);
            rcgc_decref(box);
        }
    }
    rcgc_decref(ring[0]);
    if (rcgc_get_count() != NPAIRS + 3)
        bail_out("candidates after dropping the garbage: %zu, not %d",
                 rcgc_get_count(), NPAIRS + 3);
}

static void teardown(void)
{
    rcgc_decref(held[0]);
    rcgc_decref(box);
    rcgc_collect();
}

/* The live nodes as built: counts, slots, magic, never finalized.
   Returns a description of the first problem, or NULL. */
static const char *live_problem(void)
{
    static const struct { onode **n; size_t count; } want[] = {
        { &held[0], 2 }, { &held[1], 1 }, { &held[2], 1 },
        { &box, 1 },
        { &inner[0], 2 }, { &inner[1], 1 }, { &inner[2], 1 }, { &inner[3], 1 },
    };

    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        onode *n = *want[i].n;

        if (n->magic != MAGIC)
            return "a live node was freed or overwritten";
        if (rcgc_refcount(n) != want[i].count)
            return "a live node's count changed";
        if (n->fin != 0 || rcgc_is_finalized(n))
            return "a live node was finalized";
        if (slot_peek(&n->next) != n->next_raw || slot_peek(&n->other) != n->other_raw)
            return "a live node's slot changed";
    }
    return NULL;
}

/* Every tracked object alive, garbage included, is out of the collection:
   counts the objects with a flag or index left over. */
static int count_flagged(void *obj, void *ctx)
{
    rcgc__header *h = rcgc__hdr(obj);
    uintptr_t owner;
    intptr_t shared;
    size_t *bad = ctx;

    rcgc__test_raw(obj, &owner, NULL, &shared);
    if ((owner & RCGC__OWNER_FLAGS & ~RCGC__OWNER_UNBUFFERED) ||
        (shared & (RCGC__SHARED_SCAN | RCGC__SHARED_DIRTY | RCGC__SHARED_DYING)) ||
        h->x.gc.index != 0)
        (*bad)++;
    return 0;
}

/* ---- the sweep ----------------------------------------------------------- */

enum { PLAIN, FINALIZER, SAVEALL, CALLBACK };
static const char *const case_names[] = {
    "a type without finalizer", "a type with a finalizer", "RCGC_DEBUG_SAVEALL",
    "a callback registered",
};

static unsigned starts, stops;     /* atomic: callback phases seen */

static void on_phase(rcgc_phase phase, const rcgc_collect_info *info, void *ctx)
{
    (void)info;
    (void)ctx;
    __atomic_fetch_add(phase == RCGC_PHASE_START ? &starts : &stops, 1, __ATOMIC_RELAXED);
}

typedef struct saved_check {
    size_t n, bad;
} saved_check;

static int check_saved(void *obj, void *ctx)
{
    saved_check *s = ctx;
    onode *n = obj;

    s->n++;
    if (n->magic != MAGIC || n->fin != 0 || rcgc_is_finalized(n))
        s->bad++;
    for (size_t i = 0; i < 3; i++)
        if (n == held[i])
            s->bad++;
    for (size_t i = 0; i < 4; i++)
        if (n == inner[i] || n == box)
            s->bad++;
    return 0;
}

/* The first point where something went wrong, per property. */
typedef struct verdict {
    long live_after_fail, flagged, live_after_recovery, recovered, leaked, callbacks;
    char detail[200];
} verdict;

static void first(long *at, long n, verdict *v, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void first(long *at, long n, verdict *v, const char *fmt, ...)
{
    va_list ap;

    if (*at >= 0)
        return;
    *at = n;
    va_start(ap, fmt);
    vsnprintf(v->detail + strlen(v->detail), sizeof v->detail - strlen(v->detail),
              fmt, ap);
    va_end(ap);
}

static void sweep(int which)
{
    const char *name = case_names[which];
    verdict v = { -1, -1, -1, -1, -1, -1, "" };
    rcgc_stats base, st;
    long n, points = 0, failing = 0;
    size_t failures = 0, garbage = NGARBAGE + (which == SAVEALL ? 2 : 0);

    type = which == PLAIN ? &plain_type : &fin_type;
    if (which == CALLBACK && rcgc_callback_add(on_phase, NULL) != 0)
        bail_out("rcgc_callback_add");
    rcgc_collect();
    rcgc_get_stats(&base);
    for (n = 0; n < MAX_POINTS; n++) {
        unsigned fin0 = __atomic_load_n(&fin_total, __ATOMIC_RELAXED);
        unsigned bad0 = __atomic_load_n(&fin_bad, __ATOMIC_RELAXED);
        size_t got, flagged = 0;
        const char *p;

        if (which == SAVEALL) {
            onode *pair[2];

            rcgc_set_debug(RCGC_DEBUG_SAVEALL);
            rcgc_decref(ring_new(pair, 2));
            rcgc_collect();            /* listed: the list has room for 62 more */
        }
        build();
        starts = stops = 0;

        rcgc__test_collector_fail_after(n);
        got = rcgc_collect();
        failures = rcgc__test_collector_fail_after(-1);
        points++;
        failing += failures > 0;

        if ((p = live_problem()) != NULL)
            first(&v.live_after_fail, n, &v, "[%ld: %s] ", n, p);
        rcgc_foreach_object(count_flagged, &flagged);
        if (flagged > 0)
            first(&v.flagged, n, &v, "[%ld: %zu objects flagged] ", n, flagged);
        if (which == CALLBACK && (starts == 0 || starts != stops))
            first(&v.callbacks, n, &v, "[%ld: %u starts, %u stops] ", n, starts, stops);

        got += rcgc_collect();                       /* recovery */
        rcgc_get_stats(&st);
        if (which == SAVEALL) {
            saved_check s = { 0, 0 };

            rcgc_garbage_foreach(check_saved, &s);
            if (got != 0 || s.n != garbage || s.bad != 0 ||
                st.live != base.live + garbage + NLIVE)
                first(&v.recovered, n, &v, "[%ld: saved %zu of %zu, %zu bad, collected %zu] ",
                      n, s.n, garbage, s.bad, got);
            rcgc_set_debug(0);
            rcgc_garbage_clear();
            got = rcgc_collect();
            rcgc_get_stats(&st);
        }
        if (got != garbage || st.live != base.live + NLIVE ||
            (type == &fin_type &&
             (__atomic_load_n(&fin_total, __ATOMIC_RELAXED) - fin0 != garbage ||
              __atomic_load_n(&fin_bad, __ATOMIC_RELAXED) != bad0)))
            first(&v.recovered, n, &v,
                  "[%ld: collected %zu of %zu, live %llu, want %llu, finalized %u] ", n, got,
                  garbage, (unsigned long long)st.live,
                  (unsigned long long)(base.live + NLIVE),
                  __atomic_load_n(&fin_total, __ATOMIC_RELAXED) - fin0);
        if ((p = live_problem()) != NULL)
            first(&v.live_after_recovery, n, &v, "[%ld: %s] ", n, p);
        if (which == CALLBACK && starts != stops)
            first(&v.callbacks, n, &v, "[%ld: %u starts, %u stops] ", n, starts, stops);

        teardown();
        rcgc_get_stats(&st);
        if (st.live != base.live)
            first(&v.leaked, n, &v, "[%ld: live %llu, want %llu] ", n,
                  (unsigned long long)st.live, (unsigned long long)base.live);
        if (failures == 0)
            break;
    }
    if (which == CALLBACK)
        rcgc_callback_remove(on_phase, NULL);

    diag("%s: %ld injection points, %ld of them failed an allocation", name, points,
         failing);
    if (v.detail[0] != '\0')
        diag("%s: first problems: %s", name, v.detail);
    ok(failing > 0 && failing == points - 1 && failures == 0,
       "pitfall 28: %s: the sweep failed an allocation at every point until a collection "
       "completed without failing (%ld points)", name, points);
    ok(v.live_after_fail < 0,
       "pitfall 28: %s: after each failed collection the live nodes are intact (counts, "
       "slots, not finalized)", name);
    ok(v.flagged < 0,
       "pitfall 28: %s: after each failed collection no object is left flagged (owner SCAN, "
       "or ZOMBIE, shared SCAN/DIRTY/DYING, member index)", name);
    ok(v.recovered < 0,
       which == SAVEALL
           ? "pitfall 28: %s: with memory back, one collection saves all the garbage, once "
             "each, unfinalized; cleared, it is collected and finalized exactly once"
           : "pitfall 28: %s: with memory back, one collection frees all the garbage (no "
             "candidate lost), each finalizer exactly once",
       name);
    ok(v.live_after_recovery < 0, "pitfall 28: %s: the live nodes are intact after the "
       "recovery", name);
    ok(v.leaked < 0, "pitfall 28: %s: the live nodes dropped, nothing is left (no leak)",
       name);
    if (which == CALLBACK)
        ok(v.callbacks < 0, "pitfall 28: %s: every collection runs START and STOP, paired",
           name);
}

static bool missed(const void *obj)
{
    return __atomic_load_n(&rcgc__hdr(obj)->gc_bits.v, __ATOMIC_RELAXED) & RCGC__GC_MISSED;
}

#define MISSED_RING 1000

static void missed_candidates(void)
{
    static onode *nodes[MISSED_RING];
    onode *a, *b, *c, *d, *r;
    rcgc_stats base, st;
    size_t n;

    type = &plain_type;
    rcgc_collect();
    rcgc_get_stats(&base);
    a = node_new();
    b = node_new();
    c = node_new();
    d = node_new();
    link_next(a, b);
    link_next(b, a);
    link_next(c, d);
    link_next(d, c);
    rcgc__test_roots_fail(true);
    rcgc_decref(b);
    rcgc_decref(a);                 /* garbage */
    rcgc_decref(d);                 /* c, held, keeps d */
    r = ring_new(nodes, MISSED_RING);
    rcgc_decref(r);                 /* garbage */
    ok(missed(a) && missed(b) && missed(d) && missed(nodes[0]) &&
       missed(nodes[MISSED_RING - 1]),
       "out of memory for a root chunk: the decremented objects are MISSED");
    rcgc__test_roots_fail(false);
    n = rcgc_collect();
    rcgc_get_stats(&st);
    is_uint(n, 2 + MISSED_RING, "rcgc_collect finds them in the registry and frees the "
            "garbage among them");
    is_uint(st.live, base.live + 2, "... all of it");
    ok(c->magic == MAGIC && d->magic == MAGIC && slot_peek(&c->next) == d &&
       slot_peek(&d->next) == c && !missed(d),
       "... and keeps the held 2-cycle intact, no longer MISSED");
    rcgc_decref(c);
    n = rcgc_collect();
    rcgc_get_stats(&st);
    is_uint(n, 2, "the held 2-cycle, dropped, is collected");
    is_uint(st.live, base.live, "nothing leaked");
}

int main(void)
{
    rcgc_options opts;

    alarm(280);
    memset(&opts, 0, sizeof opts);
    opts.manual = 1;
    TAP_REQUIRE(rcgc_init(&opts) == 0, "rcgc_init, manual");
    missed_candidates();
    sweep(PLAIN);
    sweep(FINALIZER);
    sweep(SAVEALL);
    sweep(CALLBACK);
    rcgc_shutdown();
    return done_testing();
}
