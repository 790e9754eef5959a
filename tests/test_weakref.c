/*
 * test_weakref.c: weak references (the API contract's last section;
 * PITFALLS 21), in manual mode and with the background collector.
 *
 *   basic: get gives a new strong reference while the referent lives, NULL
 *     once its last reference is gone; the callback runs once, with its
 *     handle and context; NULL arguments;
 *   pitfall 21, counting death: a finalizer already finds its object's weak
 *     references cleared and their callbacks not run; they run after it;
 *   pitfall 21, cycle: every weak reference to a garbage cycle's members is
 *     cleared before any finalizer of the cycle runs, callbacks after them;
 *   pitfall 21 (bpo-38006): a finalizer frees a weak reference to its peer:
 *     that callback never runs; a callback frees its own handle;
 *   resurrection: the cycle stays, its weak references stay cleared, and
 *     the finalizers do not run again;
 *   a finalizer makes a weak reference to its own dying object: cleared
 *     before the memory goes (ASan would see a read of freed memory);
 *   many weak references (the table grows), many per object;
 *   pitfall 21, racing: a reader thread upgrades weak references to
 *     cycles and leaves while the main thread drops them and collects: each
 *     upgrade gives an intact object or NULL, never freed memory (ASan and
 *     TSan builds run this too), and at the end every one is NULL and every
 *     callback ran once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

#define MAGIC 0x3eafu

typedef struct node {
    rcgc_ref peer;
    unsigned magic;
    int id;
} node;

static void node_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((node *)obj)->peer, ctx);
}

static const rcgc_type node_type = { "wr_node", sizeof(node), node_traverse, NULL, 0 };
static const rcgc_type leaf_type = { "wr_leaf", sizeof(node), NULL, NULL, 0 };

static const char *mode;
static int manual;

/* ---- callbacks and finalizers record what they saw ------------------------ */

#define MAX_W 16
static rcgc_weakref *wr[MAX_W];           /* the handles a case watches */
static int callback_runs[MAX_W];           /* by ctx index */
static int callbacks_before_finalizers;    /* callbacks seen by a finalizer */
static int finalizer_runs;
static int finalizer_saw_live_weakref;     /* a finalizer's rcgc_weakref_get gave an object */
static int finalizer_action;
static rcgc_ref holder;                    /* resurrection target */

enum { FIN_CHECK = 1, FIN_FREE_PEER_WEAKREF = 2, FIN_RESURRECT = 4, FIN_NEW_WEAKREF = 8 };

static int callback_total(void)
{
    int n = 0;

    for (int i = 0; i < MAX_W; i++)
        n += callback_runs[i];
    return n;
}

static void record_callback(rcgc_weakref *w, void *ctx)
{
    intptr_t i = (intptr_t)ctx;

    if (i >= 0 && i < MAX_W) {
        callback_runs[i]++;
        if (wr[i] != w)
            callback_runs[i] += 1000;      /* wrong handle: fails the count */
    }
}

static void free_self_callback(rcgc_weakref *w, void *ctx)
{
    record_callback(w, ctx);
    rcgc_weakref_free(w);
    wr[(intptr_t)ctx] = NULL;
}

static void node_finalize(void *obj)
{
    node *n = obj;

    finalizer_runs++;
    callbacks_before_finalizers += callback_total();
    if (finalizer_action & FIN_CHECK) {
        for (int i = 0; i < MAX_W; i++) {
            void *got = rcgc_weakref_get(wr[i]);
            if (got != NULL) {
                finalizer_saw_live_weakref++;
                rcgc_decref(got);
            }
        }
    }
    if ((finalizer_action & FIN_FREE_PEER_WEAKREF) && n->id == 0 && wr[1] != NULL) {
        rcgc_weakref_free(wr[1]);          /* the peer's: its callback must not run */
        wr[1] = NULL;
    }
    if ((finalizer_action & FIN_RESURRECT) && n->id == 0)
        rcgc_ref_store(&holder, obj);
    if ((finalizer_action & FIN_NEW_WEAKREF) && wr[MAX_W - 1] == NULL)
        wr[MAX_W - 1] = rcgc_weakref_new(obj, record_callback, (void *)(intptr_t)(MAX_W - 1));
}

static const rcgc_type fin_type = { "wr_fin", sizeof(node), node_traverse, node_finalize, 0 };

static void reset(void)
{
    for (int i = 0; i < MAX_W; i++) {
        rcgc_weakref_free(wr[i]);
        wr[i] = NULL;
        callback_runs[i] = 0;
    }
    callbacks_before_finalizers = 0;
    finalizer_runs = 0;
    finalizer_saw_live_weakref = 0;
    finalizer_action = 0;
}

static node *make(const rcgc_type *type, int id)
{
    node *n = rcgc_new(type);

    if (n == NULL)
        bail_out("%s: rcgc_new failed", mode);
    n->magic = MAGIC;
    n->id = id;
    return n;
}

/* Collects until a collection finds nothing (background mode: the
   collector thread may have taken part of it already). */
static size_t collect_all(void)
{
    size_t total = 0, got;

    do {
        got = rcgc_collect();
        total += got;
    } while (got != 0);
    return total;
}

/* ---- the cases -------------------------------------------------------------- */

static void case_basic(void)
{
    node *a = make(&leaf_type, 0);
    node *got;

    reset();
    errno = 0;
    ok(rcgc_weakref_new(NULL, NULL, NULL) == NULL && errno == EINVAL,
       "%s: rcgc_weakref_new(NULL) fails with EINVAL", mode);
    ok(rcgc_weakref_get(NULL) == NULL, "%s: rcgc_weakref_get(NULL) is NULL", mode);
    rcgc_weakref_free(NULL);

    wr[0] = rcgc_weakref_new(a, record_callback, (void *)0);
    wr[1] = rcgc_weakref_new(a, NULL, NULL);
    TAP_REQUIRE(wr[0] != NULL && wr[1] != NULL, "%s: rcgc_weakref_new", mode);
    is_size(rcgc_refcount(a), 1, "%s: a weak reference does not count", mode);
    got = rcgc_weakref_get(wr[0]);
    ok(got == a && rcgc_refcount(a) == 2, "%s: get gives a new strong reference", mode);
    rcgc_decref(got);
    rcgc_decref(a);                        /* the last: a dies now */
    ok(rcgc_weakref_get(wr[0]) == NULL && rcgc_weakref_get(wr[1]) == NULL,
       "%s: pitfall 21: get gives NULL once the referent is dead", mode);
    is_int(callback_runs[0], 1, "%s: the callback ran once, with its handle and context",
           mode);
    reset();
}

static void case_counting_death(void)
{
    node *a = make(&fin_type, 0);

    reset();
    finalizer_action = FIN_CHECK;
    wr[0] = rcgc_weakref_new(a, record_callback, (void *)0);
    wr[1] = rcgc_weakref_new(a, record_callback, (void *)1);
    rcgc_decref(a);
    ok(finalizer_runs == 1 && finalizer_saw_live_weakref == 0,
       "%s: pitfall 21: a finalizer finds its object's weak references cleared", mode);
    ok(callbacks_before_finalizers == 0 && callback_runs[0] == 1 && callback_runs[1] == 1,
       "%s: pitfall 21: their callbacks run after the finalizer, once each", mode);
    reset();
}

static void case_cycle(void)
{
    node *a = make(&fin_type, 0), *b = make(&fin_type, 1);
    size_t got;

    reset();
    finalizer_action = FIN_CHECK;
    rcgc_ref_store(&a->peer, b);
    rcgc_ref_store(&b->peer, a);
    wr[0] = rcgc_weakref_new(a, record_callback, (void *)0);
    wr[1] = rcgc_weakref_new(b, record_callback, (void *)1);
    wr[2] = rcgc_weakref_new(b, record_callback, (void *)2);
    rcgc_decref(a);
    rcgc_decref(b);
    got = collect_all();
    ok((manual ? got == 2 : got <= 2) && finalizer_runs == 2,
       "%s: the cycle is collected (%zu here), both finalized",
       mode, got);
    ok(finalizer_saw_live_weakref == 0,
       "%s: pitfall 21: every weak reference of the cycle is cleared before any "
       "finalizer runs", mode);
    ok(callbacks_before_finalizers == 0 && callback_runs[0] == 1 && callback_runs[1] == 1 &&
           callback_runs[2] == 1,
       "%s: pitfall 21: their callbacks run after the finalizers, once each", mode);
    ok(rcgc_weakref_get(wr[0]) == NULL && rcgc_weakref_get(wr[2]) == NULL,
       "%s: get gives NULL after the collection", mode);
    reset();
}

static void case_dead_handle(void)
{
    node *a = make(&fin_type, 0), *b = make(&fin_type, 1), *c = make(&leaf_type, 2);

    reset();
    finalizer_action = FIN_FREE_PEER_WEAKREF;
    rcgc_ref_store(&a->peer, b);
    rcgc_ref_store(&b->peer, a);
    wr[0] = rcgc_weakref_new(a, free_self_callback, (void *)0);
    wr[1] = rcgc_weakref_new(b, record_callback, (void *)1);
    wr[2] = rcgc_weakref_new(c, free_self_callback, (void *)2);
    rcgc_decref(a);
    rcgc_decref(b);
    collect_all();
    ok(callback_runs[1] == 0,
       "%s: pitfall 21 (bpo-38006): no callback for a weak reference freed by a "
       "finalizer of the cycle", mode);
    ok(callback_runs[0] == 1 && wr[0] == NULL,
       "%s: a callback frees its own handle", mode);
    rcgc_decref(c);
    ok(callback_runs[2] == 1 && wr[2] == NULL,
       "%s: ... also on a counting death", mode);
    reset();
}

static void case_resurrect(void)
{
    node *a = make(&fin_type, 0), *b = make(&fin_type, 1);
    void *back;

    reset();
    finalizer_action = FIN_RESURRECT;
    rcgc_ref_store(&a->peer, b);
    rcgc_ref_store(&b->peer, a);
    wr[0] = rcgc_weakref_new(a, record_callback, (void *)0);
    rcgc_decref(a);
    rcgc_decref(b);
    collect_all();
    back = rcgc_ref_load(&holder);
    ok(back == a && a->magic == MAGIC && finalizer_runs == 2,
       "%s: a finalizer resurrects its cycle: it stays, intact", mode);
    ok(rcgc_weakref_get(wr[0]) == NULL && callback_runs[0] == 1,
       "%s: its weak references stay cleared, the callback ran once", mode);
    rcgc_decref(back);
    finalizer_action = 0;
    rcgc_ref_store(&holder, NULL);
    collect_all();
    is_int(finalizer_runs, 2, "%s: dropped again, collected without finalizing again", mode);
    reset();
}

static void case_weakref_in_finalizer(void)
{
    node *a = make(&fin_type, 0), *b = make(&fin_type, 1), *c = make(&fin_type, 2);

    reset();
    finalizer_action = FIN_NEW_WEAKREF;
    rcgc_ref_store(&a->peer, b);
    rcgc_ref_store(&b->peer, a);
    rcgc_decref(a);
    rcgc_decref(b);
    collect_all();
    ok(wr[MAX_W - 1] != NULL && rcgc_weakref_get(wr[MAX_W - 1]) == NULL &&
           callback_runs[MAX_W - 1] == 1,
       "%s: a weak reference a finalizer makes to its dying cycle is cleared with it", mode);
    rcgc_weakref_free(wr[MAX_W - 1]);
    wr[MAX_W - 1] = NULL;
    callback_runs[MAX_W - 1] = 0;
    rcgc_decref(c);                        /* counting death, same finalizer */
    ok(wr[MAX_W - 1] != NULL && rcgc_weakref_get(wr[MAX_W - 1]) == NULL &&
           callback_runs[MAX_W - 1] == 1,
       "%s: ... and one made to an object dying by counting", mode);
    reset();
}

#define MANY 4000
#define PER  3

static int many_runs;

static void count_callback(rcgc_weakref *w, void *ctx)
{
    (void)w;
    (void)ctx;
    __atomic_fetch_add(&many_runs, 1, __ATOMIC_RELAXED);
}

/* Handles freed before their referent dies: one in 2 * PER, all to
   objects that stay. */
static int freed_early(int i)
{
    return i % (2 * PER) == 1;
}

static void case_many(void)
{
    static node *objs[MANY];
    static rcgc_weakref *ws[MANY * PER];
    size_t live = 0;

    many_runs = 0;
    for (int i = 0; i < MANY; i++)
        objs[i] = make(i % 2 ? &node_type : &leaf_type, i);
    for (int i = 0; i < MANY * PER; i++) {
        ws[i] = rcgc_weakref_new(objs[i % MANY], count_callback, NULL);
        if (ws[i] == NULL)
            bail_out("%s: rcgc_weakref_new failed", mode);
    }
    for (int i = 0; i < MANY * PER; i++) {
        node *n = rcgc_weakref_get(ws[i]);
        live += n == objs[i % MANY] && n->magic == MAGIC;
        rcgc_decref(n);
    }
    is_size(live, (size_t)MANY * PER, "%s: %d weak references to %d objects all upgrade",
            mode, MANY * PER, MANY);
    for (int i = 0; i < MANY; i += 2) {        /* every other object dies */
        rcgc_decref(objs[i]);
        objs[i] = NULL;
    }
    for (int i = 0; i < MANY * PER; i++)
        if (freed_early(i))
            rcgc_weakref_free(ws[i]);
    collect_all();
    live = 0;
    for (int i = 0; i < MANY * PER; i++) {
        node *n;
        if (freed_early(i))
            continue;
        n = rcgc_weakref_get(ws[i]);
        live += n != NULL;
        if (n != NULL && n != objs[i % MANY])
            live += 1000000;
        rcgc_decref(n);
    }
    is_size(live, (size_t)MANY * PER / 2 - (size_t)MANY * PER / (2 * PER),
            "%s: the dead objects' weak references are NULL, the live ones' upgrade", mode);
    for (int i = 1; i < MANY; i += 2)
        rcgc_decref(objs[i]);
    collect_all();
    for (int i = 0; i < MANY * PER; i++)
        if (!freed_early(i))
            rcgc_weakref_free(ws[i]);
    is_int(many_runs, MANY * PER - MANY * PER / (2 * PER),
           "%s: one callback per weak reference not freed before its referent died", mode);
}

/* ---- racing ------------------------------------------------------------- */

#define RACE_OBJS 2000
#define RACE_ROUNDS 6

static rcgc_weakref *race_w[RACE_OBJS];
/* Replaced handles, freed once the reader, which may be inside a get on
   one, has stopped. */
static rcgc_weakref *graveyard[RACE_OBJS * RACE_ROUNDS];
static size_t ngrave;
static int race_stop;
static size_t race_upgrades, race_bad;
static int race_callbacks;

static void race_callback(rcgc_weakref *w, void *ctx)
{
    (void)w;
    (void)ctx;
    __atomic_fetch_add(&race_callbacks, 1, __ATOMIC_RELAXED);
}

static void *race_reader(void *arg)
{
    size_t upgrades = 0, bad = 0, i = 0;

    (void)arg;
    if (rcgc_thread_attach() != 0)
        return NULL;
    while (!__atomic_load_n(&race_stop, __ATOMIC_ACQUIRE)) {
        rcgc_weakref *w = __atomic_load_n(&race_w[i % RACE_OBJS], __ATOMIC_ACQUIRE);
        node *n = rcgc_weakref_get(w);

        if (n != NULL) {
            upgrades++;
            bad += n->magic != MAGIC;
            rcgc_decref(n);
        }
        if (++i % 64 == 0)
            rcgc_safepoint();
    }
    __atomic_store_n(&race_upgrades, upgrades, __ATOMIC_RELAXED);
    __atomic_store_n(&race_bad, bad, __ATOMIC_RELAXED);
    rcgc_thread_detach();
    return NULL;
}

static void case_race(void)
{
    pthread_t reader;
    size_t left = 0;

    race_stop = 0;
    race_callbacks = 0;
    ngrave = 0;
    for (int i = 0; i < RACE_OBJS; i++)
        race_w[i] = NULL;
    TAP_REQUIRE(pthread_create(&reader, NULL, race_reader, NULL) == 0,
                "%s: reader thread", mode);
    for (int round = 0; round < RACE_ROUNDS; round++) {
        static node *objs[RACE_OBJS];

        for (int i = 0; i < RACE_OBJS; i += 2) {
            /* Pairs: a 2-cycle (collected), or two leaves (counting). */
            const rcgc_type *t = (i / 2 + round) % 2 ? &node_type : &leaf_type;
            objs[i] = make(t, i);
            objs[i + 1] = make(t, i + 1);
            if (t == &node_type) {
                rcgc_ref_store(&objs[i]->peer, objs[i + 1]);
                rcgc_ref_store(&objs[i + 1]->peer, objs[i]);
            }
        }
        for (int i = 0; i < RACE_OBJS; i++) {
            rcgc_weakref *old = race_w[i];
            rcgc_weakref *w = rcgc_weakref_new(objs[i], race_callback, NULL);
            if (w == NULL)
                bail_out("%s: rcgc_weakref_new failed", mode);
            __atomic_store_n(&race_w[i], w, __ATOMIC_RELEASE);
            if (old != NULL)
                graveyard[ngrave++] = old;
        }
        for (int i = 0; i < RACE_OBJS; i++) {
            rcgc_decref(objs[i]);
            if (i % 64 == 0)
                rcgc_safepoint();
        }
        collect_all();
    }
    __atomic_store_n(&race_stop, 1, __ATOMIC_RELEASE);
    rcgc_blocking_begin();
    pthread_join(reader, NULL);
    rcgc_blocking_end();
    collect_all();
    for (int i = 0; i < RACE_OBJS; i++) {
        void *n = rcgc_weakref_get(race_w[i]);
        left += n != NULL;
        rcgc_decref(n);
    }
    ok(race_bad == 0, "%s: pitfall 21: %zu upgrades raced with deaths and collections, "
       "every one gave an intact object", mode, race_upgrades);
    ok(left == 0 && race_callbacks == RACE_OBJS * RACE_ROUNDS,
       "%s: at the end every weak reference is NULL (%zu left) and every callback ran "
       "once (%d of %d)", mode, left, race_callbacks, RACE_OBJS * RACE_ROUNDS);
    for (int i = 0; i < RACE_OBJS; i++)
        rcgc_weakref_free(race_w[i]);
    while (ngrave > 0)
        rcgc_weakref_free(graveyard[--ngrave]);
}

/*
 * NULL only for a dead referent.  With RCGC_DEBUG_SAVEALL a garbage ring
 * passes its Delta-test (its members DYING from their CAS on) and is then
 * kept, alive, in the garbage list (DYING cleared again), so the moment a
 * member is DYING and not dead can be waited for: a watcher thread reads
 * a member's shared word (its memory stays: SAVEALL frees nothing) until
 * it sees DYING, then upgrades a weak reference to it.  The upgrade must
 * give the member (it lives on in the garbage list), after waiting for
 * the collector to decide; a NULL would call a live object dead.  The same
 * moment comes, without SAVEALL, for a component whose Delta-test fails
 * after some of its members' CAS (stress_weakref met that one).
 */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define RING_N 20000
#else
#define RING_N 200000
#endif

static node *ring_watched;
static rcgc_weakref *ring_weak;
static int ring_stop;
static int ring_saw_dying;
static node *ring_got;

static void *ring_watcher(void *arg)
{
    intptr_t shared = 0;

    (void)arg;
    if (rcgc_thread_attach() != 0)
        return NULL;
    while (!__atomic_load_n(&ring_stop, __ATOMIC_ACQUIRE)) {
        rcgc__test_raw(ring_watched, NULL, NULL, &shared);
        if (shared & RCGC__SHARED_DYING) {
            ring_saw_dying = 1;
            ring_got = rcgc_weakref_get(ring_weak);
            break;
        }
        rcgc_safepoint();           /* the collection's grace period */
    }
    rcgc_thread_detach();
    return NULL;
}

static void case_dying_not_dead(void)
{
    unsigned debug = rcgc_get_debug();
    node *first, *prev, *n;
    pthread_t g;

    /* Before the ring exists: a collection that began without SAVEALL
       (each takes the flags when it begins) cannot reach it. */
    rcgc_set_debug(debug | RCGC_DEBUG_SAVEALL);
    first = prev = make(&node_type, 0);
    for (int i = 1; i < RING_N; i++) {
        n = make(&node_type, i);
        rcgc_ref_init(&prev->peer, n);
        if (i == 2)
            ring_watched = prev;    /* an early member: DYING for most of step 6 */
        if (prev != first)
            rcgc_decref(prev);
        prev = n;
    }
    rcgc_ref_init(&prev->peer, first);
    ring_weak = rcgc_weakref_new(ring_watched, NULL, NULL);
    rcgc_decref(prev);
    rcgc_decref(first);
    ring_stop = ring_saw_dying = 0;
    ring_got = NULL;
    if (pthread_create(&g, NULL, ring_watcher, NULL) != 0)
        bail_out("%s: pthread_create", mode);
    collect_all();
    __atomic_store_n(&ring_stop, 1, __ATOMIC_RELEASE);
    rcgc_blocking_begin();
    pthread_join(g, NULL);
    rcgc_blocking_end();
    if (!ring_saw_dying)
        skip("%s: pitfall 21: the watcher never saw the member DYING (the collector "
             "was faster than it)", mode);
    else
        ok(ring_got == ring_watched,
           "%s: pitfall 21: an upgrade of a DYING member that lives on (SAVEALL) waits and "
           "gives the member, never NULL", mode);
    if (ring_got != NULL)
        rcgc_decref(ring_got);
    rcgc_set_debug(debug);
    rcgc_garbage_clear();
    collect_all();
    ok(rcgc_weakref_get(ring_weak) == NULL,
       "%s: ... and NULL once the garbage list lets the ring go", mode);
    rcgc_weakref_free(ring_weak);
}

static void run_mode(int is_manual)
{
    rcgc_options opts;

    memset(&opts, 0, sizeof opts);
    opts.manual = is_manual;
    manual = is_manual;
    mode = is_manual ? "manual" : "background";
    TAP_REQUIRE(rcgc_init(&opts) == 0, "%s: rcgc_init", mode);
    case_basic();
    case_counting_death();
    case_cycle();
    case_dead_handle();
    case_resurrect();
    case_weakref_in_finalizer();
    case_many();
    case_race();
    case_dying_not_dead();
    collect_all();
    rcgc_shutdown();
}

int main(void)
{
    alarm(240);
    run_mode(1);
    run_mode(0);
    return done_testing();
}
