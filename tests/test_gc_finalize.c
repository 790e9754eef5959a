/*
 * test_gc_finalize.c: finalizers of cycle garbage, in manual and in
 * background mode.
 *
 * Every finalizer first checks (pitfall 20) that its node is intact and
 * finalized for the first time, that its slots still hold the nodes they
 * were given (peeking at the slot word) and that each of those nodes is
 * intact with its own slots in place; then it does its case's action:
 *
 *   intact: a 6-ring with chords; each node finalized exactly once;
 *   pitfall 17, 19: a finalizer calls rcgc_collect (returns 0 at once, no
 *     deadlock) and the introspection functions (rcgc_get_stats,
 *     rcgc_get_count, rcgc_foreach_object, rcgc_get_referrers: they run
 *     outside every lock; rcgc_foreach_object sees a live holder);
 *   dropping references: a finalizer clears a slot holding a leaf (the
 *     leaf dies at once) and drops a global reference (that object dies);
 *   pitfall 15, 19: a finalizer clears its slot to another member of the
 *     garbage cycle, or increments and decrements a member: no crash, no
 *     double finalization, everything freed, ASan clean;
 *   pitfall 19, 23: a finalizer creates objects: a new garbage cycle (freed
 *     by a later rcgc_collect) and an object stored in a live holder
 *     (stays valid);
 *   pitfall 18: resurrection: a finalizer stores its node in a live
 *     holder: the cycle is kept (rcgc_collect returns 0 in manual mode,
 *     stats.uncollectable +2), both nodes intact and rcgc_is_finalized;
 *     the holder's slot cleared, the cycle is collected without running
 *     the finalizers again;
 *   last (a hang there hides nothing): a finalizer calls rcgc_ref_load on
 *     its slot to the other member, and rcgc_get_referents on itself: both
 *     return (the member, or nothing while it is dying).
 * A watchdog (SIGALRM, 60 s per case) turns a hang into a "not ok" line.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"
#include "gc_test.h"

#define MAGIC 0xf1a1u
#define NSLOT 4
#define MAX_ID 64

enum {
    ACT_COLLECT    = 1 << 0,   /* rcgc_collect inside the finalizer */
    ACT_INTROSPECT = 1 << 1,   /* stats, count, foreach, referrers */
    ACT_DROP_EXTRA = 1 << 2,   /* clear slot 3 (a leaf held only there) */
    ACT_DROP_GLOBAL = 1 << 3,  /* drop the reference in global_obj */
    ACT_CLEAR_PEER = 1 << 4,   /* clear slot 0 (another member) */
    ACT_TOUCH_PEER = 1 << 5,   /* incref/decref the member in slot 0 */
    ACT_SPAWN      = 1 << 6,   /* create a garbage cycle and a kept object */
    ACT_RESURRECT  = 1 << 7,   /* store itself into holder's slot 0 */
    ACT_LOAD       = 1 << 8,   /* rcgc_ref_load slot 0, rcgc_get_referents */
};

typedef struct fnode {
    rcgc_ref      s[NSLOT];
    struct fnode *raw[NSLOT];  /* what s[] holds (fnodes only), without references */
    unsigned      magic, id, actions;
} fnode;

typedef struct leaf { unsigned magic; } leaf;

static unsigned fin_by_id[MAX_ID];   /* atomic */
static unsigned fin_bad;             /* atomic */
static unsigned leaf_fin;            /* atomic */
static unsigned spawn_fin;           /* atomic */
static unsigned next_id;

/* What the actions saw (atomic). */
static unsigned collect_calls, collect_nonzero;
static unsigned introspect_calls, introspect_bad;
static size_t seen_objs, seen_referrers;   /* by the one introspecting finalizer */
static unsigned load_calls, load_bad;

static fnode *holder;                /* live, main's reference */
static void *global_obj;             /* a reference handed to a finalizer */

static void fnode_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    fnode *n = obj;
    int i;

    for (i = 0; i < NSLOT; i++)
        visit(&n->s[i], ctx);
}

static void fnode_finalize(void *obj);
static void spawn_finalize(void *obj)
{
    (void)obj;
    __atomic_fetch_add(&spawn_fin, 1, __ATOMIC_RELAXED);
}
static void leaf_finalize(void *obj)
{
    leaf *l = obj;

    if (l->magic != MAGIC)
        __atomic_fetch_add(&fin_bad, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&leaf_fin, 1, __ATOMIC_RELAXED);
}

static const rcgc_type fnode_type = { "gc_fin_node", sizeof(fnode), fnode_traverse,
                                      fnode_finalize, 0 };
static const rcgc_type spawn_type = { "gc_fin_spawn", sizeof(fnode), fnode_traverse,
                                      spawn_finalize, 0 };
static const rcgc_type holder_type = { "gc_fin_holder", sizeof(fnode), fnode_traverse,
                                       NULL, 0 };
static const rcgc_type leaf_type = { "gc_fin_leaf", sizeof(leaf), NULL, leaf_finalize, 0 };

static fnode *holder_new(void)
{
    fnode *h = rcgc_new(&holder_type);

    if (h == NULL)
        bail_out("rcgc_new failed");
    h->magic = MAGIC;
    return h;
}

static unsigned fin_of(unsigned id) { return __atomic_load_n(&fin_by_id[id], __ATOMIC_RELAXED); }

static void bad(void) { __atomic_fetch_add(&fin_bad, 1, __ATOMIC_RELAXED); }

/* ---- checking from inside a finalizer ------------------------------------ */

/* The pointer a slot holds, read without taking a reference (the test
   looks inside rcgc_ref, which the runtime accesses atomically). */
static void *slot_peek(rcgc_ref *slot)
{
    return __atomic_load_n(&slot->rcgc_private_, __ATOMIC_ACQUIRE);
}

/* n's slots still hold the fnodes raw[] names. */
static int slots_intact(fnode *n)
{
    int i;

    for (i = 0; i < NSLOT; i++)
        if (n->raw[i] != NULL && slot_peek(&n->s[i]) != n->raw[i])
            return 0;
    return 1;
}

typedef struct referents_seen { fnode *const *raw; int calls, foreign; } referents_seen;

static int referent(void *ref, void *ctx)
{
    referents_seen *r = ctx;
    int i, known = 0;

    for (i = 0; i < NSLOT; i++)
        known |= r->raw[i] == ref;
    r->calls++;
    r->foreign += !known;
    return 0;
}

static int node_ok(const fnode *n)
{
    return n->magic == MAGIC && n->id < MAX_ID && rcgc_type_of(n) == &fnode_type;
}

static int count_obj(void *obj, void *ctx)
{
    (void)obj;
    (*(size_t *)ctx)++;
    return 0;
}

static void spawn(void)
{
    fnode *a = rcgc_new(&spawn_type), *b = rcgc_new(&spawn_type), *k;

    if (a == NULL || b == NULL)
        abort();
    rcgc_ref_store(&a->s[0], b);
    rcgc_ref_store(&b->s[0], a);
    a->magic = b->magic = MAGIC;
    rcgc_decref(a);
    rcgc_decref(b);
    k = rcgc_new(&spawn_type);
    if (k == NULL)
        abort();
    k->magic = MAGIC;
    rcgc_ref_store(&holder->s[1], k);    /* a new object kept alive */
    rcgc_decref(k);
}

static void fnode_finalize(void *obj)
{
    fnode *n = obj;
    int i;

    if (!node_ok(n) || __atomic_fetch_add(&fin_by_id[n->id], 1, __ATOMIC_RELAXED) != 0)
        bad();
    if (!slots_intact(n))
        bad();
    for (i = 0; i < NSLOT; i++)
        if (n->raw[i] != NULL && (!node_ok(n->raw[i]) || !slots_intact(n->raw[i])))
            bad();

    if (n->actions & ACT_COLLECT) {
        __atomic_fetch_add(&collect_calls, 1, __ATOMIC_RELAXED);
        if (rcgc_collect() != 0)
            __atomic_fetch_add(&collect_nonzero, 1, __ATOMIC_RELAXED);
    }
    if (n->actions & ACT_INTROSPECT) {
        rcgc_stats st;
        size_t objs = 0, referrers = 0;

        rcgc_get_stats(&st);
        (void)rcgc_get_count();
        rcgc_foreach_object(count_obj, &objs);
        rcgc_get_referrers(n, count_obj, &referrers);
        __atomic_fetch_add(&introspect_calls, 1, __ATOMIC_RELAXED);
        seen_objs = objs;
        seen_referrers = referrers;
        if (objs < 1 || st.allocated < st.freed)
            __atomic_fetch_add(&introspect_bad, 1, __ATOMIC_RELAXED);
    }
    if (n->actions & ACT_DROP_EXTRA)
        rcgc_ref_store(&n->s[3], NULL);
    if (n->actions & ACT_DROP_GLOBAL) {
        void *g = global_obj;

        global_obj = NULL;
        rcgc_decref(g);
    }
    if (n->actions & ACT_CLEAR_PEER) {
        n->raw[0] = NULL;
        rcgc_ref_store(&n->s[0], NULL);
    }
    if (n->actions & ACT_TOUCH_PEER) {
        fnode *p = n->raw[0];

        rcgc_incref(p);
        rcgc_decref(p);
    }
    if (n->actions & ACT_LOAD) {
        fnode *q = rcgc_ref_load(&n->s[0]);   /* the member, or NULL (dying) */
        referents_seen rs = { n->raw, 0, 0 };

        if (q != NULL && q != n->raw[0])
            __atomic_fetch_add(&load_bad, 1, __ATOMIC_RELAXED);
        rcgc_decref(q);
        rcgc_get_referents(n, referent, &rs);
        if (rs.foreign != 0 || rs.calls > 1)
            __atomic_fetch_add(&load_bad, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&load_calls, 1, __ATOMIC_RELAXED);
    }
    if (n->actions & ACT_SPAWN)
        spawn();
    if (n->actions & ACT_RESURRECT)
        rcgc_ref_store(&holder->s[0], n);
}

/* ---- building ------------------------------------------------------------ */

static fnode *node_new(unsigned actions)
{
    fnode *n = rcgc_new(&fnode_type);

    if (n == NULL)
        bail_out("rcgc_new failed");
    if (next_id >= MAX_ID)
        bail_out("too many nodes");
    n->magic = MAGIC;
    n->id = next_id++;
    n->actions = actions;
    return n;
}

static void link_slot(fnode *a, int i, fnode *b)
{
    rcgc_ref_store(&a->s[i], b);
    a->raw[i] = b;
}

/* A k-ring through slot 0; nodes[] gets the nodes; every node's reference
   is dropped except the caller's to nodes[0], which is returned. */
static fnode *ring(unsigned k, const unsigned *actions, fnode **nodes)
{
    unsigned i;

    for (i = 0; i < k; i++)
        nodes[i] = node_new(actions != NULL ? actions[i] : 0);
    for (i = 0; i < k; i++)
        link_slot(nodes[i], 0, nodes[(i + 1) % k]);
    return nodes[0];
}

static void drop_all_but_first(unsigned k, fnode **nodes)
{
    unsigned i;

    for (i = 1; i < k; i++)
        rcgc_decref(nodes[i]);
}

/* ---- measuring ----------------------------------------------------------- */

static int manual;
static const char *mode;

static void reset_ids(void)
{
    memset(fin_by_id, 0, sizeof fin_by_id);
    next_id = 0;
}

/* Every node created since reset_ids finalized exactly once. */
static int all_once(void)
{
    unsigned i;

    for (i = 0; i < next_id; i++)
        if (fin_of(i) != 1)
            return 0;
    return 1;
}

static unsigned bad_now(void) { return __atomic_load_n(&fin_bad, __ATOMIC_RELAXED); }

/* Collect until a collection finds nothing; returns the total. */
static size_t drain(void)
{
    size_t total = 0, r;
    int i;

    for (i = 0; i < 8; i++) {
        r = rcgc_collect();
        total += r;
        rcgc_reclaim_wait();
        if (r == 0 && i > 0)
            break;
    }
    return total;
}

/* ---- the cases ----------------------------------------------------------- */

static void case_intact(void)
{
    fnode *n[6];
    uint64_t live0 = live_now();
    unsigned b0 = bad_now(), i;
    size_t r;

    reset_ids();
    ring(6, NULL, n);
    for (i = 0; i < 6; i++)
        link_slot(n[i], 1, n[(i + 2) % 6]);      /* chords */
    drop_all_but_first(6, n);
    rcgc_decref(n[0]);
    r = rcgc_collect();
    if (manual)
        is_size(r, 6, "%s: a 6-ring with chords: rcgc_collect returns 6", mode);
    ok(all_once() && bad_now() == b0 && live_now() == live0,
       "%s: pitfall 20: each of the 6 finalized exactly once, its slots and the nodes they "
       "hold intact; all freed", mode);
}

static void case_collect_inside(void)
{
    static const unsigned acts[2] = { ACT_COLLECT | ACT_INTROSPECT, ACT_COLLECT };
    fnode *n[2];
    uint64_t live0 = live_now();
    unsigned b0 = bad_now();
    size_t r;

    holder = holder_new();                       /* a live tracked object */
    live0++;
    reset_ids();
    __atomic_store_n(&collect_calls, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&collect_nonzero, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&introspect_calls, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&introspect_bad, 0, __ATOMIC_RELAXED);
    ring(2, acts, n);
    drop_all_but_first(2, n);
    rcgc_decref(n[0]);
    r = rcgc_collect();                          /* alarm() catches a deadlock */
    if (manual)
        is_size(r, 2, "%s: a 2-cycle whose finalizers call rcgc_collect: returns 2", mode);
    ok(__atomic_load_n(&collect_calls, __ATOMIC_RELAXED) == 2 &&
       __atomic_load_n(&collect_nonzero, __ATOMIC_RELAXED) == 0,
       "%s: pitfall 19: rcgc_collect inside a finalizer returns 0 at once (no deadlock, "
       "no re-entry)", mode);
    if (!ok(__atomic_load_n(&introspect_calls, __ATOMIC_RELAXED) == 1 &&
            __atomic_load_n(&introspect_bad, __ATOMIC_RELAXED) == 0,
            "%s: pitfall 17: a finalizer calls rcgc_get_stats, rcgc_get_count, "
            "rcgc_foreach_object (sees the live holder) and rcgc_get_referrers: no deadlock",
            mode))
        diag("rcgc_foreach_object visited %zu, rcgc_get_referrers %zu", seen_objs,
             seen_referrers);
    ok(all_once() && bad_now() == b0 && live_now() == live0,
       "%s: both finalized once, intact; all freed", mode);
    rcgc_decref(holder);
    holder = NULL;
}

static void case_drop_refs(void)
{
    static const unsigned acts[3] = { ACT_DROP_EXTRA, ACT_DROP_GLOBAL, 0 };
    fnode *n[3];
    leaf *e, *g;
    uint64_t live0 = live_now();
    unsigned b0 = bad_now(), l0 = __atomic_load_n(&leaf_fin, __ATOMIC_RELAXED);
    size_t r;

    reset_ids();
    ring(3, acts, n);
    e = rcgc_new(&leaf_type);
    g = rcgc_new(&leaf_type);
    if (e == NULL || g == NULL)
        bail_out("rcgc_new failed");
    e->magic = g->magic = MAGIC;
    rcgc_ref_store(&n[0]->s[3], e);              /* e held by the cycle only */
    rcgc_decref(e);
    global_obj = g;                              /* main's reference goes to n[1] */
    drop_all_but_first(3, n);
    rcgc_decref(n[0]);
    r = rcgc_collect();
    if (manual)
        is_size(r, 3, "%s: a 3-cycle whose finalizers drop references: returns 3", mode);
    ok(__atomic_load_n(&leaf_fin, __ATOMIC_RELAXED) - l0 == 2 && global_obj == NULL,
       "%s: the leaf in a cleared slot and the globally held object died, once each", mode);
    ok(all_once() && bad_now() == b0 && live_now() == live0,
       "%s: the cycle finalized once, intact; all 5 objects freed", mode);
}

static void case_touch_members(void)
{
    static const unsigned clear_acts[2] = { ACT_CLEAR_PEER, 0 };
    static const unsigned touch_acts[3] = { ACT_TOUCH_PEER, ACT_TOUCH_PEER, ACT_TOUCH_PEER };
    fnode *n[3];
    uint64_t live0 = live_now();
    unsigned b0 = bad_now();
    size_t r;

    reset_ids();
    ring(2, clear_acts, n);
    drop_all_but_first(2, n);
    rcgc_decref(n[0]);
    r = rcgc_collect();
    r += drain();
    diag("%s: clearing a member's slot in a finalizer: %zu collected", mode, r);
    ok(all_once() && bad_now() == b0 && live_now() == live0,
       "%s: pitfall 15, 19: a finalizer clears its slot to the other member: each finalized "
       "once, both freed", mode);

    reset_ids();
    ring(3, touch_acts, n);
    drop_all_but_first(3, n);
    rcgc_decref(n[0]);
    r = rcgc_collect();
    r += drain();
    diag("%s: touching members in finalizers: %zu collected", mode, r);
    ok(all_once() && bad_now() == b0 && live_now() == live0,
       "%s: pitfall 15, 19: finalizers incref and decref other members: each "
       "finalized once, all freed", mode);
}

static void case_spawn(void)
{
    static const unsigned acts[2] = { ACT_SPAWN, 0 };
    fnode *n[2], *k;
    uint64_t live0;
    unsigned b0 = bad_now(), s0;
    size_t r1, r2;

    holder = holder_new();
    live0 = live_now();
    s0 = __atomic_load_n(&spawn_fin, __ATOMIC_RELAXED);
    reset_ids();
    ring(2, acts, n);
    drop_all_but_first(2, n);
    rcgc_decref(n[0]);
    r1 = rcgc_collect();
    k = rcgc_ref_load(&holder->s[1]);
    ok(k != NULL && k->magic == MAGIC && rcgc_type_of(k) == &spawn_type,
       "%s: an object a finalizer created and stored in a live holder is valid", mode);
    rcgc_decref(k);
    r2 = drain();
    if (manual)
        is_size(r1 + r2, 4, "%s: pitfall 19, 23: the garbage cycle a finalizer created is "
                "collected later (2 + 2 in all)", mode);
    ok(__atomic_load_n(&spawn_fin, __ATOMIC_RELAXED) - s0 == 2 && all_once() &&
       bad_now() == b0 && live_now() == live0 + 1,
       "%s: the spawned cycle finalized and freed; only the kept object remains", mode);
    rcgc_ref_store(&holder->s[1], NULL);
    rcgc_decref(holder);
    holder = NULL;
}

static void case_resurrect(void)
{
    static const unsigned acts[2] = { ACT_RESURRECT, 0 };
    fnode *n[2], *a, *b, *in_holder;
    rcgc_stats s0, s1;
    uint64_t live0;
    unsigned b0 = bad_now();
    size_t r;
    int intact;

    reset_ids();
    holder = holder_new();
    live0 = live_now();
    ring(2, acts, n);
    a = n[0];
    b = n[1];
    drop_all_but_first(2, n);
    rcgc_decref(a);
    rcgc_get_stats(&s0);
    r = rcgc_collect();
    rcgc_get_stats(&s1);
    if (manual)
        is_size(r, 0, "%s: pitfall 18: a 2-cycle whose finalizer resurrects it: rcgc_collect "
                "returns 0", mode);
    ok(fin_of(0) == 1 && fin_of(1) == 1 && bad_now() == b0,
       "%s: both finalizers ran once, on intact nodes", mode);
    in_holder = rcgc_ref_load(&holder->s[0]);
    intact = in_holder == a && a->magic == MAGIC && b->magic == MAGIC && a->raw[0] == b &&
             b->raw[0] == a && slots_intact(a) && slots_intact(b);
    rcgc_decref(in_holder);
    ok(intact, "%s: the resurrected cycle is intact and in the holder", mode);
    ok(rcgc_is_finalized(a) == 1 && rcgc_is_finalized(b) == 1,
       "%s: rcgc_is_finalized is 1 for both", mode);
    if (!ok(s1.uncollectable - s0.uncollectable == 2 && s1.collected == s0.collected &&
            live_now() == live0 + 2,
            "%s: stats: uncollectable +2 (resurrected), collected +0, both alive", mode))
        diag("uncollectable +%" PRIu64 ", collected +%" PRIu64, s1.uncollectable -
             s0.uncollectable, s1.collected - s0.collected);
    rcgc_ref_store(&holder->s[0], NULL);
    r = rcgc_collect();
    if (manual)
        is_size(r, 2, "%s: the holder's slot cleared: the cycle is collected", mode);
    else
        drain();
    ok(fin_of(0) == 1 && fin_of(1) == 1 && bad_now() == b0 && live_now() == live0,
       "%s: pitfall 18: its finalizers did not run again; both freed", mode);
    rcgc_decref(holder);
    holder = NULL;
}

static void case_load(void)
{
    static const unsigned acts[2] = { ACT_LOAD, ACT_LOAD };
    fnode *n[2];
    uint64_t live0 = live_now();
    unsigned b0 = bad_now();

    reset_ids();
    __atomic_store_n(&load_calls, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&load_bad, 0, __ATOMIC_RELAXED);
    ring(2, acts, n);
    drop_all_but_first(2, n);
    rcgc_decref(n[0]);
    rcgc_collect();
    drain();
    ok(__atomic_load_n(&load_calls, __ATOMIC_RELAXED) == 2 &&
       __atomic_load_n(&load_bad, __ATOMIC_RELAXED) == 0,
       "%s: a finalizer calls rcgc_ref_load on its slot (to the other member) and "
       "rcgc_get_referents on itself: both return (the member or nothing)", mode);
    ok(all_once() && bad_now() == b0 && live_now() == live0,
       "%s: both finalized once, intact; both freed", mode);
}

/* ---- a watchdog: a hang is reported as a failed test point -------------- */

#define WATCHDOG_S 60
static const char *volatile current_case = "";

static void on_alarm(int sig)
{
    char buf[512];
    int len;

    (void)sig;
    len = snprintf(buf, sizeof buf, "not ok %u - %s: %s: did not finish within %d s (hang)\n",
                   tap_run_ + 1, mode, current_case, WATCHDOG_S);
    if (len > 0)
        (void)!write(1, buf, (size_t)len);
    _exit(1);
}

static void watch(const char *what)
{
    current_case = what;
    alarm(WATCHDOG_S);
}

static void run_mode(int is_manual, int loads)
{
    rcgc_options opts;

    memset(&opts, 0, sizeof opts);
    opts.manual = is_manual;
    manual = is_manual;
    mode = is_manual ? "manual" : "background";
    watch("rcgc_init");
    TAP_REQUIRE(rcgc_init(&opts) == 0, "%s: rcgc_init", mode);
    if (loads) {
        watch("rcgc_ref_load/rcgc_get_referents in a finalizer");
        case_load();
    } else {
        watch("intact");
        case_intact();
        drain();
        watch("rcgc_collect in a finalizer");
        case_collect_inside();
        drain();
        watch("finalizers drop references");
        case_drop_refs();
        drain();
        watch("finalizers touch members");
        case_touch_members();
        drain();
        watch("finalizers create objects");
        case_spawn();
        drain();
        watch("resurrection");
        case_resurrect();
        drain();
    }
    watch("rcgc_shutdown");
    rcgc_shutdown();
}

int main(void)
{
    signal(SIGALRM, on_alarm);
    run_mode(1, 0);
    run_mode(0, 0);
    /* Last, so a hang there hides nothing else. */
    run_mode(1, 1);
    run_mode(0, 1);
    alarm(0);
    return done_testing();
}
