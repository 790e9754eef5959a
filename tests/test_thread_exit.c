/*
 * test_thread_exit.c: objects outlive the thread that owns them.
 *
 * A worker thread A creates four groups of objects and hands every
 * reference to the main thread M:
 *
 *   X: A's local count 2; M drops one while A is online -> queued to A
 *   Y: A's local count 1; M drops it while A is online -> queued to A at
 *      true count 0
 *   Z: A's local count 1; not queued when A leaves
 *   W: A's local count 2; not queued when A leaves
 *
 * then A leaves in one of three ways: returns from its thread function
 * while attached (the key destructor detaches it), calls
 * rcgc_thread_detach and returns, or returns from inside a blocking region.
 *
 *   pitfall 5: leaving drains the queue: nothing stranded; Y freed by A's
 *     exit, X merged with count 1 (owner word 0, MERGED) and not freed;
 *   pitfall 4: a later non-owner that finds the owner gone merges itself:
 *     M's first decrement of W merges it (owner 0, count 1), its decrement
 *     of Z frees it at once;
 *   pitfall 4: a new thread C (likely on A's recycled stack and pthread_t)
 *     gets a fresh tid, never matches A's owner word, and its counts go to
 *     the shared word;
 *   pitfall 31: objects created on A, handed to M, released after A exited;
 *   pitfall 33: stats count A's objects after A is gone (allocated, live,
 *     freed), and live returns to its starting value.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

/* These tests check releases the moment a count reaches zero: no background
   collector, whose examination pins tracked objects for its duration. */
static const rcgc_options refcount_only = { .manual = 1 };

#define N 64

typedef struct item { unsigned group, index; } item;

static unsigned fin_count;   /* atomic */

static void item_finalize(void *obj)
{
    (void)obj;
    __atomic_fetch_add(&fin_count, 1, __ATOMIC_RELAXED);
}

static const rcgc_type item_type = { "item", sizeof(item), NULL, item_finalize, 0 };

static unsigned fin(void) { return __atomic_load_n(&fin_count, __ATOMIC_RELAXED); }

enum { EXIT_ATTACHED, EXIT_DETACHED, EXIT_BLOCKING, N_MODES };
static const char *const mode_name[N_MODES] = {
    "returns while attached", "detaches and returns", "returns inside a blocking region"
};

static item *X[N], *Y[N], *Z[N], *W[N];
static int step;
static uintptr_t a_tid;
static pthread_t a_self;
static size_t a_queue_before_exit;

static void step_set(int s) { __atomic_store_n(&step, s, __ATOMIC_RELEASE); }
static void step_wait(int s)
{
    while (__atomic_load_n(&step, __ATOMIC_ACQUIRE) < s)
        sched_yield();
}
static void step_wait_blocked(int s)
{
    rcgc_blocking_begin();
    step_wait(s);
    rcgc_blocking_end();
}

static void *thread_a(void *arg)
{
    int mode = (int)(intptr_t)arg;
    int i;

    if (rcgc_thread_attach() != 0)
        abort();
    a_tid = rcgc__test_tid();
    a_self = pthread_self();
    for (i = 0; i < N; i++) {
        X[i] = rcgc_new(&item_type);
        Y[i] = rcgc_new(&item_type);
        Z[i] = rcgc_new(&item_type);
        W[i] = rcgc_new(&item_type);
        rcgc_incref(X[i]);
        rcgc_incref(W[i]);
    }
    step_set(1);
    step_wait(2);                    /* ONLINE: M's decrements queue to us */
    a_queue_before_exit = rcgc__test_queue_length();
    switch (mode) {
    case EXIT_ATTACHED:
        break;                       /* no safepoint, no detach */
    case EXIT_DETACHED:
        rcgc_thread_detach();
        break;
    case EXIT_BLOCKING:
        rcgc_blocking_begin();
        break;
    }
    return NULL;
}

typedef struct c_result {
    uintptr_t tid;
    pthread_t self;
    int       owner_differs;
    uint32_t  local_before, local_after;
    intptr_t  count_before, count_after, count_restored;
} c_result;

static void *thread_c(void *arg)
{
    c_result *r = arg;
    uintptr_t owner;
    intptr_t shared;

    if (rcgc_thread_attach() != 0)
        abort();
    r->tid = rcgc__test_tid();
    r->self = pthread_self();
    rcgc__test_raw(W[0], &owner, &r->local_before, &shared);
    r->owner_differs = (owner & ~RCGC__OWNER_FLAGS) != r->tid;
    r->count_before = shared >> RCGC__SHARED_SHIFT;
    rcgc_incref(W[0]);
    rcgc__test_raw(W[0], NULL, &r->local_after, &shared);
    r->count_after = shared >> RCGC__SHARED_SHIFT;
    rcgc_decref(W[0]);
    rcgc__test_raw(W[0], NULL, NULL, &shared);
    r->count_restored = shared >> RCGC__SHARED_SHIFT;
    rcgc_thread_detach();
    return NULL;
}

static void join_blocking(pthread_t t)
{
    rcgc_blocking_begin();
    pthread_join(t, NULL);
    rcgc_blocking_end();
}

static int all_merged(item **v, size_t want_count)
{
    uintptr_t owner;
    uint32_t local;
    intptr_t shared;
    int i;

    for (i = 0; i < N; i++) {
        rcgc__test_raw(v[i], &owner, &local, &shared);
        if ((owner & ~RCGC__OWNER_FLAGS) != 0 || !(shared & RCGC__SHARED_MERGED) ||
            rcgc_refcount(v[i]) != want_count)
            return 0;
    }
    return 1;
}

static int all_owned_by(item **v, uintptr_t tid)
{
    uintptr_t owner;
    int i;

    for (i = 0; i < N; i++) {
        rcgc__test_raw(v[i], &owner, NULL, NULL);
        if ((owner & ~RCGC__OWNER_FLAGS) != tid)
            return 0;
    }
    return 1;
}

static void run_mode(int mode, uintptr_t *prev_tid)
{
    const char *m = mode_name[mode];
    rcgc_stats s0, s1;
    pthread_t ta, tc;
    c_result cr;
    unsigned f;
    int i;

    __atomic_store_n(&fin_count, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&step, 0, __ATOMIC_RELAXED);
    rcgc_get_stats(&s0);
    pthread_create(&ta, NULL, thread_a, (void *)(intptr_t)mode);
    step_wait_blocked(1);
    ok(a_tid != 0 && a_tid != *prev_tid, "[%s] A has a fresh tid", m);
    *prev_tid = a_tid;

    for (i = 0; i < N; i++) {       /* A is online: these queue to A */
        rcgc_decref(X[i]);
        rcgc_decref(Y[i]);
    }
    is_uint(fin(), 0, "[%s] nothing freed while queued to a live owner", m);
    step_set(2);
    join_blocking(ta);
    is_size(a_queue_before_exit, 2 * N, "[%s] A had %d objects queued when it left", m, 2 * N);

    /* pitfall 5: the queue was drained on the way out */
    is_uint(fin(), N, "[%s] pitfall 5: Y (queued at count 0) freed as A left, nothing stranded", m);
    ok(all_merged(X, 1), "[%s] pitfall 5: X merged by A's exit: owner 0, MERGED, count 1", m);
    ok(all_owned_by(Z, a_tid) && all_owned_by(W, a_tid),
       "[%s] unqueued Z and W still carry A's (dead) tid", m);
    rcgc_get_stats(&s1);
    is_uint(s1.allocated - s0.allocated, 4 * N,
            "[%s] pitfall 33: stats count the objects of the exited thread", m);
    is_uint(s1.live - s0.live, 3 * N, "[%s] pitfall 33: 3 groups still live", m);

    /* pitfall 4: a new thread never adopts the dead thread's objects */
    pthread_create(&tc, NULL, thread_c, &cr);
    join_blocking(tc);
    diag("[%s] new thread %s A's pthread_t", m,
         pthread_equal(cr.self, a_self) ? "reuses" : "does not reuse");
    ok(cr.tid != a_tid && cr.tid != 0, "[%s] pitfall 4: C's tid differs from dead A's", m);
    ok(cr.owner_differs, "[%s] pitfall 4: W's owner word is not C's tid", m);
    ok(cr.count_after == cr.count_before + 1 && cr.local_after == cr.local_before,
       "[%s] pitfall 4: C's increment went to the shared word (%ld -> %ld), local untouched",
       m, (long)cr.count_before, (long)cr.count_after);
    is_int(cr.count_restored, cr.count_before, "[%s] C's decrement undid it", m);

    /* pitfall 4/31: M finds the owner gone and merges itself */
    for (i = 0; i < N; i++)
        rcgc_decref(W[i]);
    ok(all_merged(W, 1), "[%s] pitfall 4: M's decrement with the owner gone merged W (count 1)", m);
    f = fin();
    is_uint(f, N, "[%s] ... and freed none of W", m);
    for (i = 0; i < N; i++)
        rcgc_decref(Z[i]);
    is_uint(fin(), 2 * N, "[%s] pitfall 31: Z (created on A, released by M after A exited) freed", m);
    for (i = 0; i < N; i++) {
        rcgc_decref(W[i]);
        rcgc_decref(X[i]);
    }
    is_uint(fin(), 4 * N, "[%s] every object finalized exactly once", m);
    rcgc_get_stats(&s1);
    is_uint(s1.freed - s0.freed, 4 * N, "[%s] pitfall 33: stats: all freed", m);
    is_uint(s1.live, s0.live, "[%s] pitfall 33: stats: live back to start", m);
}

int main(void)
{
    uintptr_t prev_tid = 0;
    int mode;

    alarm(120);                      /* a hang fails instead of stalling ctest */
    TAP_REQUIRE(rcgc_init(&refcount_only) == 0, "rcgc_init");
    for (mode = 0; mode < N_MODES; mode++)
        run_mode(mode, &prev_tid);
    rcgc_shutdown();
    return done_testing();
}
