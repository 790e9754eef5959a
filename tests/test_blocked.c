/*
 * test_blocked.c: pitfall 6, an owner that does not reach a safepoint must
 * not retain what other threads released (CPython gh-157838).
 *
 *   blocked owner: thread A creates objects, hands references to the main
 *     thread M, and waits on a condition variable inside
 *     rcgc_blocking_begin/_end.  M drops the last references: the objects
 *     are finalized and stats.live drops while A is still blocked; objects
 *     A still holds a reference to are merged (owner 0) but not freed, and
 *     A's later decrement, as a non-owner, frees them.  rcgc_reclaim_wait
 *     does not wait for the blocked thread.  A's queue is empty when it
 *     wakes.
 *   busy owner: an owner that never calls rcgc_safepoint but keeps calling
 *     rcgc_new merges its queue inside rcgc_new.
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

#define N 100

typedef struct item { rcgc_ref next; unsigned id; } item;

static unsigned fin_count;   /* atomic */

static void item_finalize(void *obj)
{
    (void)obj;
    __atomic_fetch_add(&fin_count, 1, __ATOMIC_RELAXED);
}

static void item_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((item *)obj)->next, ctx);
}

static const rcgc_type item_type = { "item", sizeof(item), item_traverse, item_finalize, 0 };

static unsigned fin(void) { return __atomic_load_n(&fin_count, __ATOMIC_RELAXED); }

static item *given[N];      /* A's objects; M holds one reference to each */
static item *published;     /* referenced only from a slot of given[0] */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int a_ready, a_wake;
static size_t a_queue_after_wake;
static unsigned a_fin_after_own_decrefs;

static void *thread_a(void *arg)
{
    int i;

    (void)arg;
    if (rcgc_thread_attach() != 0)
        abort();
    for (i = 0; i < N; i++) {
        given[i] = rcgc_new(&item_type);
        given[i]->id = (unsigned)i;
        if (i % 2)
            rcgc_incref(given[i]);   /* odd: A keeps a reference too */
    }
    published = rcgc_new(&item_type);
    rcgc_ref_init(&given[0]->next, published);
    rcgc_decref(published);          /* only the slot holds it now */

    rcgc_blocking_begin();
    pthread_mutex_lock(&lock);
    a_ready = 1;
    pthread_cond_signal(&cond);
    while (!a_wake)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    rcgc_blocking_end();

    a_queue_after_wake = rcgc__test_queue_length();
    for (i = 1; i < N; i += 2)
        rcgc_decref(given[i]);       /* A is no longer their owner */
    a_fin_after_own_decrefs = fin();
    rcgc_thread_detach();
    return NULL;
}

/* ---- busy owner: never a safepoint, only rcgc_new ----------------------- */

static int step;
static item *handed;

static void *thread_b(void *arg)
{
    (void)arg;
    if (rcgc_thread_attach() != 0)
        abort();
    rcgc_blocking_begin();
    while (__atomic_load_n(&step, __ATOMIC_ACQUIRE) < 1)
        sched_yield();
    rcgc_blocking_end();
    rcgc_decref(handed);             /* owner M is online: queued to M */
    __atomic_store_n(&step, 2, __ATOMIC_RELEASE);
    rcgc_thread_detach();
    return NULL;
}

int main(void)
{
    rcgc_stats s0, s1;
    pthread_t ta, tb;
    uintptr_t owner;
    intptr_t shared;
    unsigned odd_merged = 0, f;
    int i, news;
    void *p;

    alarm(120);
    TAP_REQUIRE(rcgc_init(&refcount_only) == 0, "rcgc_init");

    /* -- blocked owner ------------------------------------------------------ */
    pthread_create(&ta, NULL, thread_a, NULL);
    rcgc_blocking_begin();
    pthread_mutex_lock(&lock);
    while (!a_ready)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    rcgc_blocking_end();

    rcgc_get_stats(&s0);
    for (i = 0; i < N; i++)
        rcgc_decref(given[i]);       /* A is blocked: M merges each itself */
    f = fin();
    rcgc_get_stats(&s1);
    /* the even ones and published (via given[0]'s slot) are dead */
    is_uint(f, N / 2 + 1, "pitfall 6: objects dropped while their owner is blocked are finalized at once");
    is_uint(s0.live - s1.live, N / 2 + 1, "pitfall 6: stats.live drops while the owner is still blocked");
    for (i = 1; i < N; i += 2) {
        rcgc__test_raw(given[i], &owner, NULL, &shared);
        if ((owner & ~RCGC__OWNER_FLAGS) == 0 && (shared & RCGC__SHARED_MERGED) &&
            rcgc_refcount(given[i]) == 1)
            odd_merged++;
    }
    is_uint(odd_merged, N / 2, "objects A still holds: merged by M (owner 0), count 1, alive");
    rcgc_reclaim_wait();             /* must not wait for blocked A */
    ok(1, "rcgc_reclaim_wait returns while an owner is blocked");

    pthread_mutex_lock(&lock);
    a_wake = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    rcgc_blocking_begin();
    pthread_join(ta, NULL);
    rcgc_blocking_end();
    is_size(a_queue_after_wake, 0, "A's queue is empty when it wakes: nothing was retained for it");
    is_uint(a_fin_after_own_decrefs, N + 1, "A's own decrements free the merged rest");

    /* -- busy owner: merges inside rcgc_new --------------------------------- */
    __atomic_store_n(&fin_count, 0, __ATOMIC_RELAXED);
    handed = rcgc_new(&item_type);   /* M's only reference goes to B */
    pthread_create(&tb, NULL, thread_b, NULL);
    __atomic_store_n(&step, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&step, __ATOMIC_ACQUIRE) < 2)
        sched_yield();               /* ONLINE, no safepoint */
    is_size(rcgc__test_queue_length(), 1, "B's decrement queued the object to busy M");
    is_uint(fin(), 0, "not freed before M merges");
    for (news = 1; news <= 1000; news++) {
        p = rcgc_new(&item_type);
        rcgc_decref(p);
        if (rcgc__test_queue_length() == 0)
            break;
    }
    ok(news <= 1000, "rcgc_new merges the owner's queue (after %d calls)", news);
    is_uint(fin(), 1 + (unsigned)news, "the queued object was freed inside rcgc_new");
    rcgc_blocking_begin();
    pthread_join(tb, NULL);
    rcgc_blocking_end();

    rcgc_shutdown();
    return done_testing();
}
