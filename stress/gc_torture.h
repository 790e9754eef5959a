/*
 * gc_torture.h: what the collector stress programs share, on top of
 * torture.h (options, seed, PRNG, violations, watchdog, id table, verdict).
 *
 *   gnode       the tracked test node: a torture_obj, GC_NSLOT reference
 *               slots (traverse visits all of them; a program may use
 *               fewer), a group id, a `held` marker the program keeps
 *               above zero while a thread holds or reaches the node, and
 *               an optional raw pointer to a node that must still be
 *               intact when this one is finalized
 *   finalizer   gnode_finalize: `held` and the group's guard must be zero
 *               (else the collector freed something a thread still had),
 *               the raw partner must be intact (members stay valid until
 *               every member is finalized, pitfall 20), every slot that
 *               rcgc_ref_load can still read must give an intact object,
 *               then the common torture_obj_finalize (exactly once, poison;
 *               gc_finalize_keep: no poison, for a program whose
 *               finalizers resurrect)
 *   groups      a table of per-group counters, indexed by a group id from
 *               gc_group_new(): guard (threads holding a member, kept by
 *               the program), finalized (member finalizer runs), size
 *   collecting  gc_setup() lowers the background collector's threshold,
 *               and the size of table at which a thread waiting in
 *               rcgc_collect helps (collector.c, "Help"), so that helpers
 *               run beside the mutators here;
 *               gc_drain() calls rcgc_collect until it finds nothing;
 *               gc_summary() formats the collector's statistics for the
 *               verdict's summary line
 *
 * The markers are relaxed atomics, as the oracle counters of torture.h:
 * the program raises a marker only while it holds a reference and lowers
 * it before it lets the reference go, so a finalizer that reads a nonzero
 * marker ran while a reference was held, and the happens-before that
 * makes the lowering visible to a correct collector is the runtime's own.
 */
#ifndef RCGC_GC_TORTURE_H
#define RCGC_GC_TORTURE_H

#include "torture.h"
#include "internal.h"     /* rcgc__test_raw and the header's bits, for diagnostics */

#define GC_NSLOT 4

typedef struct gnode {
    torture_obj   t;
    uint64_t      group;      /* gc_group id, 0: none (set before sharing) */
    uint32_t      nslots;     /* slots the program uses, <= GC_NSLOT */
    uint32_t      owner;      /* program-defined (worker index) */
    struct gnode *partner;    /* raw, no reference: must be intact at finalize
                                 (a member of the same cycle), or NULL */
    atomic_int    held;       /* > 0: a thread holds or reaches it (program) */
    atomic_int    aux;        /* program-defined */
    rcgc_ref      slot[GC_NSLOT];
} gnode;

/* Called by gnode_finalize before the common checks, if set (before any
   thread starts). */
static void (*gc_finalize_hook)(gnode *n);

/* Set (before any thread starts) by a program whose finalizers may
   resurrect: gnode_finalize then counts the run but leaves the body
   intact, since the object, or the cycle it belongs to, may live on. */
static bool gc_finalize_keep;

/* ---- groups ---------------------------------------------------------- */

typedef struct gc_group {
    atomic_int guard;         /* threads holding a member (program) */
    atomic_int finalized;     /* member finalizer runs */
    atomic_int size;          /* members (program) */
    atomic_int reclaimed_at;  /* program-defined */
} gc_group;

#define GC_GROUP_CHUNK_BITS 16
#define GC_GROUP_CHUNKS     4096           /* 2^28 groups */

static _Atomic(gc_group *) gc_group_chunks[GC_GROUP_CHUNKS];
static atomic_ullong gc_next_group = 1;

static inline gc_group *gc_group_at(uint64_t id)
{
    uint64_t c = id >> GC_GROUP_CHUNK_BITS;
    gc_group *chunk, *expected = NULL;

    if (id == 0 || c >= GC_GROUP_CHUNKS) {
        fprintf(stderr, "%s: group id %" PRIu64 " out of range\n", torture_o.name, id);
        abort();
    }
    /* Acquire pairs with the release CAS below (the chunk's zeroed bytes). */
    chunk = atomic_load_explicit(&gc_group_chunks[c], memory_order_acquire);
    if (chunk == NULL) {
        chunk = calloc((size_t)1 << GC_GROUP_CHUNK_BITS, sizeof(gc_group));
        if (chunk == NULL) {
            fprintf(stderr, "%s: out of memory for the group table\n", torture_o.name);
            abort();
        }
        if (!atomic_compare_exchange_strong_explicit(&gc_group_chunks[c], &expected,
                                                     chunk, memory_order_release,
                                                     memory_order_acquire)) {
            free(chunk);
            chunk = expected;
        }
    }
    return &chunk[id & (((uint64_t)1 << GC_GROUP_CHUNK_BITS) - 1)];
}

static inline uint64_t gc_group_new(int size)
{
    uint64_t id = atomic_fetch_add_explicit(&gc_next_group, 1, memory_order_relaxed);

    atomic_store_explicit(&gc_group_at(id)->size, size, memory_order_relaxed);
    return id;
}

static inline void gc_group_free_all(void)
{
    for (unsigned c = 0; c < GC_GROUP_CHUNKS; c++)
        free(atomic_exchange(&gc_group_chunks[c], NULL));
}

static inline void gc_guard(uint64_t group, int delta)
{
    if (group != 0)
        atomic_fetch_add_explicit(&gc_group_at(group)->guard, delta,
                                  memory_order_relaxed);
}

/* ---- the node -------------------------------------------------------- */

static void gnode_finalize(void *obj);

/*
 * A traverse may take its time: this one now and then spins between two
 * slots (one call in GC_TRAVERSE_DELAY_ONE_IN, 20 to 275 pauses; no
 * yield: a collection traverses thousands of members, and a yield costs a
 * time slice when the workers outnumber the cores).  The collector reads a member's count and
 * slots, then the next member's, and so on: the delays stretch the window
 * in which mutators move references between two of those readings.  A
 * program may define GC_TRAVERSE_DELAY_ONE_IN (0: never) before including
 * this file; the default keeps big collections affordable.
 */
#ifndef GC_TRAVERSE_DELAY_ONE_IN
#define GC_TRAVERSE_DELAY_ONE_IN 64
#endif

static __thread uint64_t gc_traverse_calls;

static void gnode_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    gnode *n = obj;
    uint64_t x = torture_hash(++gc_traverse_calls ^ (uint64_t)(uintptr_t)&gc_traverse_calls,
                              torture_o.seed);
    unsigned delay_at = GC_NSLOT;

    if (GC_TRAVERSE_DELAY_ONE_IN && x % GC_TRAVERSE_DELAY_ONE_IN == 0)
        delay_at = (unsigned)(x >> 8) % GC_NSLOT;
    for (unsigned s = 0; s < GC_NSLOT; s++) {
        if (s == delay_at) {
            unsigned spins = 20 + (unsigned)((x >> 16) & 255);
            while (spins--)
                torture_cpu_relax();
        }
        visit(&n->slot[s], ctx);
    }
}

/* Tracked: a traverse and no RCGC_TYPE_ACYCLIC. */
static const rcgc_type gnode_type = { "gnode", sizeof(gnode), gnode_traverse,
                                      gnode_finalize, 0 };

static atomic_ullong gc_fin_neighbours;   /* slots read back by finalizers */

static inline gnode *gnode_new(uint64_t group, unsigned nslots, unsigned owner)
{
    gnode *n = rcgc_new(&gnode_type);

    if (n == NULL) {
        fprintf(stderr, "%s: rcgc_new(gnode) failed: %s\n", torture_o.name,
                strerror(errno));
        abort();
    }
    torture_obj_init(&n->t);
    n->group = group;
    n->nslots = nslots;
    n->owner = owner;
    if (!rcgc_is_tracked(n))
        TORTURE_VIOLATION("gnode %" PRIu64 " is not tracked", n->t.id);
    return n;
}

/* Checks a node the caller holds a reference to. */
static inline bool gnode_ok(const gnode *n, const char *where)
{
    if (!torture_obj_ok(&n->t, where))
        return false;
    if (n->nslots == 0 || n->nslots > GC_NSLOT) {
        TORTURE_VIOLATION("%s: gnode id %" PRIu64 " has nslots %u", where, n->t.id,
                          n->nslots);
        return false;
    }
    return true;
}

/* The population is above `cap`: nodes made and not yet finalized. */
static inline bool gc_over_cap(uint64_t cap)
{
    uint64_t c = atomic_load_explicit(&torture_created, memory_order_relaxed);
    uint64_t f = atomic_load_explicit(&torture_finalized, memory_order_relaxed);

    return c - f > cap;
}

/* A reference the caller just got (a load, an exchange, an upgrade):
   checked and marked held. */
static inline gnode *gc_hold(gnode *n, const char *where)
{
    if (n == NULL)
        return NULL;
    atomic_fetch_add_explicit(&n->held, 1, memory_order_relaxed);
    gnode_ok(n, where);
    return n;
}

/* Checked again, unmarked, dropped. */
static inline void gc_unhold(gnode *n, const char *where)
{
    if (n == NULL)
        return;
    torture_maybe_delay(n->t.id ^ 0x77);
    gnode_ok(n, where);
    atomic_fetch_sub_explicit(&n->held, 1, memory_order_relaxed);
    rcgc_decref(n);
}

/* A node whose finalizer may already have run in this collection: its
   memory must still be there (magic LIVE or DEAD, never rcgc's poison). */
static inline void gnode_intact(const gnode *n, const gnode *by)
{
    if (n->t.magic != TORTURE_MAGIC_LIVE && n->t.magic != TORTURE_MAGIC_DEAD)
        TORTURE_VIOLATION("finalizing gnode id %" PRIu64 ": its partner %p is no longer "
                          "intact (magic %#" PRIx64 "): a member was released before "
                          "every member was finalized", by->t.id, (const void *)n,
                          n->t.magic);
}

static void gnode_finalize(void *obj)
{
    gnode *n = obj;
    int held = atomic_load_explicit(&n->held, memory_order_relaxed);

    if (held != 0)
        TORTURE_VIOLATION("gnode id %" PRIu64 " finalized while held or reachable by a "
                          "thread (marker %d)", n->t.id, held);
    if (n->group != 0) {
        gc_group *g = gc_group_at(n->group);
        int guard = atomic_load_explicit(&g->guard, memory_order_relaxed);
        if (guard != 0)
            TORTURE_VIOLATION("gnode id %" PRIu64 " (group %" PRIu64 ") finalized while "
                              "%d thread(s) hold a member of its cycle", n->t.id,
                              n->group, guard);
    }
    if (n->partner != NULL)
        gnode_intact(n->partner, n);
    if (gc_finalize_hook != NULL)
        gc_finalize_hook(n);
    /* Slots into this cycle read as NULL; anything else is live (the slot
       still holds it) and must be intact. */
    for (unsigned s = 0; s < GC_NSLOT; s++) {
        gnode *v = rcgc_ref_load(&n->slot[s]);
        if (v != NULL) {
            atomic_fetch_add_explicit(&gc_fin_neighbours, 1, memory_order_relaxed);
            gnode_ok(v, "finalizer: rcgc_ref_load of a slot");
            rcgc_decref(v);
        }
    }
    torture_obj_finalize_as(&n->t, "gnode", !gc_finalize_keep);
    if (n->group != 0)
        atomic_fetch_add_explicit(&gc_group_at(n->group)->finalized, 1,
                                  memory_order_relaxed);
}

/* ---- collecting ------------------------------------------------------ */

/* After torture_start: the background collector wakes at `threshold`
   buffered candidates.  A premature free often ends in a wild pointer:
   the verdict line is printed for SIGSEGV and SIGBUS too (not under the
   sanitizers, whose own handlers report and abort). */
#define GC_HELP_MIN 16

static inline void gc_setup(size_t threshold)
{
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    signal(SIGSEGV, torture_on_abort);
    signal(SIGBUS, torture_on_abort);
#endif
    if (getenv("GC_STRESS_DEBUG_STATS") != NULL)
        rcgc_set_debug(RCGC_DEBUG_STATS);     /* a line per collection on stderr */
    rcgc__test_help(GC_HELP_MIN, NULL, NULL);
    rcgc_set_threshold(threshold);
    if (rcgc_get_threshold() != threshold)
        TORTURE_VIOLATION("rcgc_set_threshold(%zu) -> rcgc_get_threshold %zu", threshold,
                          rcgc_get_threshold());
}

/* ---- leftovers ------------------------------------------------------- */

/*
 * Diagnosis, when objects outlive the final drain: prints the first few
 * (id, counts, flags, referrers), then makes each a candidate root again
 * (an increment and a decrement) and collects once more.  If that reclaims
 * them they were garbage the collector had lost track of (no candidate
 * named them); if not, something still counts a reference to them.
 */
typedef struct gc_left {
    void  **objs;
    size_t  n, cap;
} gc_left;

static int gc_left_fn(void *obj, void *ctx)
{
    gc_left *l = ctx;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        void **p = realloc(l->objs, cap * sizeof(*p));
        if (p == NULL)
            return 1;
        l->objs = p;
        l->cap = cap;
    }
    l->objs[l->n++] = rcgc_incref(obj);
    return 0;
}

static int gc_count_fn(void *obj, void *ctx)
{
    (void)obj;
    ++*(size_t *)ctx;
    return 0;
}

static inline void gc_leftovers(void)
{
    gc_left l = { NULL, 0, 0 };
    rcgc_stats st;
    size_t again;

    rcgc_get_stats(&st);
    if (st.live == 0)
        return;
    rcgc_foreach_object(gc_left_fn, &l);
    fprintf(stderr, "%s: diagnosis: live=%" PRIu64 " after the drain, %zu tracked "
            "objects visible to rcgc_foreach_object\n", torture_o.name, st.live, l.n);
    for (size_t i = 0; i < l.n && i < 8; i++) {
        gnode *n = l.objs[i];
        rcgc__header *h = rcgc__hdr(n);
        uintptr_t owner;
        uint32_t local;
        intptr_t shared;
        size_t referrers = 0;

        rcgc__test_raw(n, &owner, &local, &shared);
        rcgc_get_referrers(n, gc_count_fn, &referrers);
        fprintf(stderr, "%s: diagnosis:   id %" PRIu64 " group %" PRIu64 " refcount %zu "
                "(incl. ours) owner %#" PRIxPTR " local %u shared %" PRIdPTR
                " flags %#" PRIxPTR " gc_bits %#x referrers %zu held %d\n",
                torture_o.name, n->t.id, n->group, rcgc_refcount(n), owner, local,
                shared >> RCGC__SHARED_SHIFT, (uintptr_t)(shared & RCGC__SHARED_FLAGS),
                rcgc__u32_load_relaxed(&h->gc_bits) & RCGC__GC_FLAGS, referrers,
                atomic_load(&n->held));
    }
    for (size_t i = 0; i < l.n; i++) {
        rcgc_incref(l.objs[i]);
        rcgc_decref(l.objs[i]);     /* a candidate root again */
        rcgc_decref(l.objs[i]);     /* ours */
    }
    free(l.objs);
    rcgc_safepoint();
    again = rcgc_collect();
    rcgc_safepoint();
    again += rcgc_collect();
    rcgc_get_stats(&st);
    fprintf(stderr, "%s: diagnosis: made candidates again, two more rcgc_collect "
            "reclaimed %zu; live=%" PRIu64 " now (%s)\n", torture_o.name, again, st.live,
            again ? "garbage that no candidate named: a lost candidate root"
                  : "still referenced");
}

/*
 * Main, attached, every worker gone and every root slot cleared: calls
 * rcgc_collect until a call reclaims nothing (at most max_rounds calls;
 * more is a violation: rcgc_collect reclaims every cycle that was garbage
 * before the call, and the garbage left by finalizers is all that a second
 * call may find).  Returns the objects reclaimed.
 */
static inline uint64_t gc_drain(unsigned max_rounds)
{
    uint64_t total = 0;
    unsigned round;
    size_t n = 1;

    torture_phase("drain collect");
    for (round = 1; round <= max_rounds; round++) {
        rcgc_safepoint();
        n = rcgc_collect();
        total += n;
        if (n == 0)
            break;
    }
    if (n != 0)
        TORTURE_VIOLATION("rcgc_collect still reclaimed %zu objects at call %u of the "
                          "final drain", n, max_rounds);
    rcgc_safepoint();
    rcgc_reclaim_wait();
    {
        rcgc_stats st;
        rcgc_get_stats(&st);
        if (st.live != 0) {
            TORTURE_VIOLATION("live=%" PRIu64 " after the final drain: objects that no "
                              "thread or root can reach were not reclaimed", st.live);
            gc_leftovers();
        }
    }
    return total;
}


/* The collector's statistics, for the summary line. */
static inline void gc_summary(char *buf, size_t size, const char *more)
{
    rcgc_stats st;
    uint64_t offered, taken;

    rcgc_get_stats(&st);
    rcgc__test_help(0, &offered, &taken);
    snprintf(buf, size,
             "collections=%" PRIu64 " collected=%" PRIu64 " uncollectable=%" PRIu64
             " pause_max_us=%.1f collect_ms_total=%.1f helped=%" PRIu64 "/%" PRIu64
             " takes_in_parts=%" PRIu64 " fin_neighbours=%llu%s%s",
             st.collections, st.collected, st.uncollectable,
             (double)st.pause_max_ns / 1e3, (double)st.collect_ns_total / 1e6, taken,
             offered, rcgc__test_takes_in_parts(),
             (unsigned long long)atomic_load(&gc_fin_neighbours),
             more && *more ? " " : "", more ? more : "");
}

/* The run must have exercised the collector: some collections happened
   and some cycle garbage was reclaimed by them. */
static inline void gc_require_work(uint64_t min_collected)
{
    rcgc_stats st;

    rcgc_get_stats(&st);
    if (st.collections == 0)
        TORTURE_VIOLATION("no collection ran");
    if (st.collected < min_collected)
        TORTURE_VIOLATION("the collector reclaimed %" PRIu64 " objects, expected at "
                          "least %" PRIu64, st.collected, min_collected);
}

#endif /* RCGC_GC_TORTURE_H */
