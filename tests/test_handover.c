/*
 * test_handover.c: a root chunk taken by a collection while the thread
 * that handed it over has yet to count it.
 *
 * A thread's hand_over pushes its chunk on the pending stack, then adds
 * the chunk's entries to the pending count.  Once pushed, the chunk is
 * the collector's: a collection may take it, subtract its entries and
 * rewrite its count as it takes them, before the thread's add.  The add
 * must use the count the thread read before the push; reading the chunk
 * after it (as hand_over did until the twentieth session, a race that
 * ThreadSanitizer caught once in stress_gc_moves) adds what the collection
 * left there, and the pending count stays short by the chunk's entries,
 * for good: rcgc_get_count wraps, and the collector thread, which wakes
 * while that count passes its threshold, never rests again.
 *
 * T drops a garbage self-cycle, which goes to its root chunk, and hands
 * the chunk over at a safepoint; a test hook stops T, offline, between
 * the push and the add.  The main thread hands over a chunk of its own,
 * which wakes the background collector; that collection takes both chunks
 * and frees both cycles (their finalizers say so).  Then T goes on.  After a
 * last collection nothing is pending: rcgc_get_count() is 0.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"
#include "gc_test.h"

typedef struct pair {
    rcgc_ref other;
} pair;

static unsigned finalized;          /* atomic */
static int pushed, go;              /* atomic flags */
static __thread int stops;          /* T's: the hook stops this thread */

static void pair_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((pair *)obj)->other, ctx);
}

static void pair_finalize(void *obj)
{
    (void)obj;
    __atomic_fetch_add(&finalized, 1, __ATOMIC_RELAXED);
}

static const rcgc_type pair_type = { "handover_pair", sizeof(pair), pair_traverse,
                                     pair_finalize, 0 };

/* One candidate: a self-cycle, whose decrement buffers it and completes
   before any hand-over (a chunk filled by a second candidate would be
   handed over inside that decrement, with the object still held: the
   hard build's chunks hold two). */
static void drop_self_cycle(void)
{
    pair *a = rcgc_new(&pair_type);

    if (a == NULL)
        bail_out("rcgc_new failed");
    rcgc_ref_init(&a->other, a);
    rcgc_decref(a);
}

/* In T's hand_over, after the push: offline (the collection's grace
   period must not wait for T) until the main thread says go. */
static void after_push(void *arg)
{
    (void)arg;
    if (!stops)
        return;
    rcgc__epoch_offline();
    __atomic_store_n(&pushed, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
        sched_yield();
    rcgc__epoch_online();
}

/* Two safepoints: the second finds the chunk stopped growing and hands
   it over (rcgc__roots_safepoint). */
static void hand_over_now(void)
{
    rcgc_safepoint();
    rcgc_safepoint();
}

static void *stopper_main(void *arg)
{
    (void)arg;
    if (rcgc_thread_attach() != 0)
        bail_out("rcgc_thread_attach failed");
    stops = 1;
    drop_self_cycle();
    hand_over_now();                /* stops in after_push */
    rcgc_thread_detach();
    return NULL;
}

int main(void)
{
    rcgc_options opts;
    pthread_t t;
    size_t pending;

    alarm(120);
    memset(&opts, 0, sizeof opts);
    opts.threshold = 1;
    TAP_REQUIRE(rcgc_init(&opts) == 0, "rcgc_init (background collector, threshold 1)");
    rcgc__test_after_push(after_push, NULL);
    if (pthread_create(&t, NULL, stopper_main, NULL) != 0)
        bail_out("pthread_create failed");
    rcgc_blocking_begin();
    while (!__atomic_load_n(&pushed, __ATOMIC_ACQUIRE))
        sched_yield();
    rcgc_blocking_end();
    ok(1, "T stopped between its chunk's push and its count's add");

    drop_self_cycle();
    hand_over_now();                /* our add wakes the collector */
    rcgc_blocking_begin();
    while (__atomic_load_n(&finalized, __ATOMIC_RELAXED) < 2)
        usleep(1000);
    rcgc_blocking_end();
    is_int((int)__atomic_load_n(&finalized, __ATOMIC_RELAXED), 2,
           "a background collection took T's chunk, and ours, meanwhile: both cycles freed");

    __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    rcgc_blocking_begin();
    pthread_join(t, NULL);
    rcgc_blocking_end();
    rcgc__test_after_push(NULL, NULL);
    rcgc_collect();
    pending = rcgc_get_count();
    is_size(pending, 0, "nothing pending once T's add is done: the count it added is the one "
                        "it read before the push");
    rcgc_shutdown();
    return done_testing();
}
