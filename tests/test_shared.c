/*
 * test_shared.c: the non-owner paths of biased counting, two threads.
 *
 * The main thread A owns every object; thread B counts them.  A waits for B
 * ONLINE (spinning, no safepoint) whenever B may queue an object to it: an
 * owner inside rcgc_blocking_begin would make B merge the object itself,
 * which test_blocked.c covers.  B waits for A inside a blocking region.
 *
 *   B's increments go to the shared word, never to A's local count;
 *   pitfall 8: B's decrement that makes the shared count negative queues the
 *     object to A exactly once (queue length 1, QUEUED set, count -2 after
 *     two such decrements), and local + shared stays the true count;
 *   A merges at rcgc_safepoint: owner word 0, MERGED set (pitfall 1: owner 0
 *     implies merged), the merged count exact; later A counts as a non-owner;
 *   pitfall 3: a decrement of an already merged object just decrements;
 *   an object is freed when its total reaches zero, never earlier: not when
 *     the shared count reaches zero or goes negative while the owner's local
 *     count still holds it, not when the owner's local count reaches zero
 *     while B holds a shared count.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

/* These tests check releases the moment a count reaches zero: no background
   collector, whose examination pins tracked objects for its duration. */
static const rcgc_options refcount_only = { .manual = 1 };

typedef struct cell { int id; } cell;

static unsigned finalized;   /* atomic */

static void cell_finalize(void *obj)
{
    (void)obj;
    __atomic_fetch_add(&finalized, 1, __ATOMIC_RELAXED);
}

static const rcgc_type cell_type = { "cell", sizeof(cell), NULL, cell_finalize, 0 };

static unsigned n_finalized(void) { return __atomic_load_n(&finalized, __ATOMIC_RELAXED); }

/* ---- lock-step between A (main) and B ---------------------------------- */

static int step;

static void step_set(int s) { __atomic_store_n(&step, s, __ATOMIC_RELEASE); }

static void step_wait_online(int s)
{
    while (__atomic_load_n(&step, __ATOMIC_ACQUIRE) < s)
        sched_yield();
}

static void step_wait_blocked(int s)
{
    rcgc_blocking_begin();
    step_wait_online(s);
    rcgc_blocking_end();
}

#define N_MANY 1000

static cell *o1, *o2, *o3, *many[N_MANY];
static uintptr_t b_tid;
static int b_attach_rc = -1;

static void raw(const void *obj, uintptr_t *owner, uint32_t *local, intptr_t *shared)
{
    rcgc__test_raw(obj, owner, local, shared);
}

static intptr_t count_of(intptr_t shared) { return shared >> RCGC__SHARED_SHIFT; }

/* The true count of an unmerged object (refcount.c): the queue entry holds
   the reference of the decrement that queued it. */
static intptr_t true_count(uint32_t local, intptr_t shared)
{
    return (intptr_t)local + count_of(shared) - ((shared & RCGC__SHARED_QUEUED) ? 1 : 0);
}

static void *thread_b(void *arg)
{
    int i;

    (void)arg;
    b_attach_rc = rcgc_thread_attach();
    b_tid = rcgc__test_tid();

    step_wait_blocked(1);            /* scenario 1: shared increments */
    rcgc_incref(o1);
    rcgc_incref(o1);
    rcgc_incref(o1);
    step_set(2);
    step_wait_blocked(3);
    rcgc_decref(o1);
    rcgc_decref(o1);
    rcgc_decref(o1);
    step_set(4);

    step_wait_blocked(5);            /* scenario 2: queue once */
    rcgc_decref(o1);
    step_set(6);
    step_wait_blocked(7);
    rcgc_decref(o1);
    step_set(8);
    step_wait_blocked(9);            /* after A merged and took one more */
    rcgc_decref(o1);
    step_set(10);
    step_wait_blocked(11);
    rcgc_decref(o1);
    step_set(12);

    step_wait_blocked(13);           /* scenario 3: queued with total zero */
    rcgc_decref(o2);
    step_set(14);

    step_wait_blocked(15);           /* scenario 4: owner drops to local 0 */
    rcgc_incref(o3);
    step_set(16);
    step_wait_blocked(17);
    rcgc_decref(o3);
    step_set(18);

    step_wait_blocked(19);           /* scenario 5: many queued */
    for (i = 0; i < N_MANY; i++)
        rcgc_decref(many[i]);
    step_set(20);

    step_wait_blocked(21);
    rcgc_thread_detach();
    return NULL;
}

int main(void)
{
    uintptr_t a_tid, owner;
    uint32_t local;
    intptr_t shared;
    rcgc_stats s0, s1;
    pthread_t tb;
    int i;

    TAP_REQUIRE(rcgc_init(&refcount_only) == 0, "rcgc_init");
    a_tid = rcgc__test_tid();
    o1 = rcgc_new(&cell_type);
    TAP_REQUIRE(o1 != NULL, "A creates o1");
    pthread_create(&tb, NULL, thread_b, NULL);

    /* -- scenario 1: non-owner increments go to the shared word ------------ */
    step_set(1);
    step_wait_online(2);
    is_int(b_attach_rc, 0, "B attached");
    ok(b_tid != a_tid, "B has its own tid");
    raw(o1, &owner, &local, &shared);
    is_uint(owner & ~RCGC__OWNER_FLAGS, a_tid, "o1 still owned by A");
    is_uint(local, 1, "B's increments leave A's local count alone");
    is_int(shared, 3 * RCGC__SHARED_ONE, "B's 3 increments: shared count 3, no flags");
    is_size(rcgc_refcount(o1), 4, "refcount = local + shared = 4");
    step_set(3);
    step_wait_online(4);
    raw(o1, &owner, &local, &shared);
    ok(local == 1 && shared == 0, "B's 3 decrements bring the shared word back to 0");
    is_size(rcgc__test_queue_length(), 0, "nothing queued to A (count never went negative)");
    is_size(rcgc_refcount(o1), 1, "refcount 1");

    /* -- scenario 2: a negative shared count queues once -------------------- */
    rcgc_incref(o1);
    rcgc_incref(o1);                 /* local 3: A holds 3, hands 2 to B */
    step_set(5);
    step_wait_online(6);
    raw(o1, &owner, &local, &shared);
    ok(shared & RCGC__SHARED_QUEUED,
       "pitfall 8: B's decrement that would go below zero sets QUEUED (shared %#lx)",
       (unsigned long)shared);
    is_int(true_count(local, shared), 2, "unmerged true count 3 - 1 = 2 (refcount.c theory)");
    is_size(rcgc__test_queue_length(), 1, "o1 is queued to A");
    is_size(rcgc_refcount(o1), 2, "refcount 3 - 1 = 2");
    step_set(7);
    step_wait_online(8);
    raw(o1, &owner, &local, &shared);
    ok(shared & RCGC__SHARED_QUEUED, "second decrement: still QUEUED");
    ok(count_of(shared) < 0, "pitfall 8: the shared count is negative (%ld)",
       (long)count_of(shared));
    is_int(true_count(local, shared), 1, "unmerged true count 1");
    is_size(rcgc__test_queue_length(), 1, "pitfall 8: queued exactly once");
    is_uint(owner & ~RCGC__OWNER_FLAGS, a_tid, "still owned by A until A merges");
    is_uint(local, 3, "local count untouched");
    is_size(rcgc_refcount(o1), 1, "refcount 1");
    is_uint(n_finalized(), 0, "not freed: local 3 + B's -2 = 1");

    rcgc_safepoint();                /* A merges */
    raw(o1, &owner, &local, &shared);
    is_uint(owner, 0, "after A's safepoint the owner word is 0");
    ok(shared & RCGC__SHARED_MERGED, "pitfall 1: owner 0 implies MERGED (shared %#lx)",
       (unsigned long)shared);
    is_int(count_of(shared), 1, "merged count is local + shared = 1");
    is_size(rcgc__test_queue_length(), 0, "A's queue is empty");
    is_size(rcgc_refcount(o1), 1, "refcount 1 after merge");
    is_uint(n_finalized(), 0, "merging a positive total frees nothing");

    rcgc_incref(o1);                 /* A is no longer the owner */
    raw(o1, &owner, &local, &shared);
    ok(owner == 0 && count_of(shared) == 2,
       "A's increment of a merged object goes to the shared count (%ld)",
       (long)count_of(shared));
    step_set(9);
    step_wait_online(10);
    is_size(rcgc_refcount(o1), 1, "pitfall 3: B's decrement of a merged object just decrements");
    is_uint(n_finalized(), 0, "o1 alive at count 1");
    is_size(rcgc__test_queue_length(), 0, "a merged object is never queued again");
    step_set(11);
    step_wait_online(12);
    is_uint(n_finalized(), 1, "B's last decrement of merged o1 frees it, once");

    /* -- scenario 3: queued with total zero, freed at the merge ------------- */
    __atomic_store_n(&finalized, 0, __ATOMIC_RELAXED);
    o2 = rcgc_new(&cell_type);       /* A hands its only reference to B */
    step_set(13);
    step_wait_online(14);
    raw(o2, &owner, &local, &shared);
    ok(local == 1 && (shared & RCGC__SHARED_QUEUED) && true_count(local, shared) == 0,
       "o2: local 1, QUEUED, true count 0 (shared %#lx)", (unsigned long)shared);
    is_uint(n_finalized(), 0, "total 0 but not freed before the owner merges");
    is_size(rcgc__test_queue_length(), 1, "o2 queued to A");
    rcgc_get_stats(&s0);
    rcgc_safepoint();
    is_uint(n_finalized(), 1, "A's safepoint merges o2 to zero and frees it");
    is_size(rcgc__test_queue_length(), 0, "queue empty");
    rcgc_get_stats(&s1);
    is_uint(s1.freed - s0.freed, 1, "stats: freed +1 at the merge");

    /* -- scenario 4: owner's local count reaches zero first ---------------- */
    __atomic_store_n(&finalized, 0, __ATOMIC_RELAXED);
    o3 = rcgc_new(&cell_type);
    step_set(15);
    step_wait_online(16);
    rcgc_decref(o3);                 /* A's local 1 -> 0 while B holds one */
    is_uint(n_finalized(), 0, "owner's local count at zero: not freed while B holds one");
    is_size(rcgc_refcount(o3), 1, "refcount 1");
    raw(o3, &owner, &local, &shared);
    ok(owner == 0 ? (shared & RCGC__SHARED_MERGED) != 0 : 1,
       "pitfall 1: if the owner word is cleared, MERGED is set");
    step_set(17);
    step_wait_online(18);
    is_uint(n_finalized(), 1, "B's decrement frees o3");

    /* -- scenario 5: many objects queued, all merged at one safepoint ------ */
    __atomic_store_n(&finalized, 0, __ATOMIC_RELAXED);
    for (i = 0; i < N_MANY; i++) {
        many[i] = rcgc_new(&cell_type);
        if (i % 2)
            rcgc_incref(many[i]);    /* odd ones survive the merge */
    }
    step_set(19);
    step_wait_online(20);
    is_size(rcgc__test_queue_length(), N_MANY, "1000 objects queued to A, each once");
    is_uint(n_finalized(), 0, "none freed before the merge");
    rcgc_safepoint();
    is_size(rcgc__test_queue_length(), 0, "one safepoint merges the whole queue");
    is_uint(n_finalized(), N_MANY / 2, "the 500 at total zero are freed");
    for (i = 1; i < N_MANY; i += 2)
        rcgc_decref(many[i]);
    is_uint(n_finalized(), N_MANY, "the other 500 go when A drops its reference");

    step_set(21);
    rcgc_blocking_begin();
    pthread_join(tb, NULL);
    rcgc_blocking_end();
    rcgc_shutdown();
    return done_testing();
}
