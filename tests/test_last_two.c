/*
 * test_last_two.c: pitfall 10, "two threads dropping the last two references
 * at once free the object exactly once" (who frees must be decided by the
 * result of a read-modify-write, never by a stale load; Nim RFC #575).
 *
 * Workers B and C spin (inside a blocking region) on a generation word; the
 * main thread A bumps it and both drop their reference at once.  Each
 * object's finalizer increments its own slot of fin[]; after every round
 * fin[id] must be exactly 1.  Four ways the last two references can meet:
 *
 *   merged:   A created the object, B and C took shared references, A
 *             dropped its local one (the owner merges: owner word 0), then
 *             B and C drop theirs at once;
 *   owner:    A (owner, local count 1) and B (shared count 1) drop at once:
 *             the owner's last-local path races B's shared decrement;
 *   blocked:  A holds local 2 and gave both to B and C, then blocks
 *             (rcgc_blocking_begin): B and C both push the shared count
 *             negative at once and must merge themselves (pitfall 6), the
 *             object freed exactly once while A is still blocked;
 *   queued:   as blocked but A stays online: B and C both push the shared
 *             count negative at once; the object is queued exactly once
 *             (pitfall 8) and freed exactly once at A's safepoint.
 *
 * Small random delays before each drop spread the two drops over every
 * offset of each other across the rounds.  Under ThreadSanitizer the same
 * rounds check pitfall 2 (the owner check and the zero-local path must
 * carry acquire/release: a plain load there is reported as a race with the
 * finalizer's reads).
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

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

/* Rounds per variant.  TSan makes every spin 10-50x slower; it checks the
   orders instead of hunting for the window. */
#if defined(UNDER_TSAN)
#define ROUNDS 1000
#define SPIN_BUDGET 500
#elif defined(RCGC_TEST_HARD)
#define ROUNDS 2000
#else
#define ROUNDS 10000
#endif
#ifndef SPIN_BUDGET
#define SPIN_BUDGET 20000
#endif

enum { V_MERGED, V_OWNER, V_BLOCKED, V_QUEUED, N_VARIANTS };
static const char *const variant_name[N_VARIANTS] = { "merged", "owner", "blocked", "queued" };
enum { R_PREP, R_RACE };

typedef struct cell { unsigned id; } cell;

static unsigned char fin[N_VARIANTS * ROUNDS];   /* atomic */

static void cell_finalize(void *obj)
{
    cell *c = obj;

    __atomic_fetch_add(&fin[c->id], 1, __ATOMIC_RELAXED);
}

static const rcgc_type cell_type = { "cell", sizeof(cell), NULL, cell_finalize, 0 };

static unsigned fin_of(unsigned id) { return __atomic_load_n(&fin[id], __ATOMIC_RELAXED); }

/* ---- the round protocol ------------------------------------------------- */

static unsigned gen;         /* bumped by A (release) to start a round */
static unsigned done;        /* bumped by each worker when its part is over */
static int      variant;     /* written by A before bumping gen */
static int      round_kind;
static int      quit;
static cell    *obj;

/* Busy-waits a little (so a waiting worker starts within nanoseconds of
   the bump), then yields (2 cores, 3 threads: never starve the bumper). */
static void spin_until(const unsigned *word, unsigned value)
{
    unsigned spins = 0;

    while (__atomic_load_n(word, __ATOMIC_ACQUIRE) < value) {
        if (++spins > SPIN_BUDGET)
            sched_yield();
    }
}

/* A few hundred nanoseconds of jitter, different each round, so that the
   two drops land at every offset of each other over the rounds (without
   it one side nearly always wins by its wake-up latency). */
static void jitter(unsigned *seed)
{
    volatile unsigned sink = 0;
    unsigned i, n;

    *seed = *seed * 1103515245u + 12345u;
    n = (*seed >> 16) % 1024;
    for (i = 0; i < n; i++)
        sink += i;
    (void)sink;
}

static void worker_act(int who, unsigned *seed)
{
    if (round_kind == R_PREP) {
        if (variant == V_MERGED || (variant == V_OWNER && who == 0))
            rcgc_incref(obj);
        return;
    }
    if (variant == V_OWNER && who != 0)
        return;
    jitter(seed);
    rcgc_decref(obj);
}

static void *worker(void *arg)
{
    int who = (int)(intptr_t)arg;
    unsigned g, seed = 17u + 31u * (unsigned)who;

    if (rcgc_thread_attach() != 0)
        abort();
    for (g = 1;; g++) {
        rcgc_blocking_begin();
        spin_until(&gen, g);
        rcgc_blocking_end();
        if (__atomic_load_n(&quit, __ATOMIC_ACQUIRE))
            break;
        worker_act(who, &seed);
        __atomic_fetch_add(&done, 1, __ATOMIC_RELEASE);   /* pairs with spin_until */
    }
    rcgc_thread_detach();
    return NULL;
}

static unsigned round_no;

/* Starts a round; returns the done count that ends it. */
static unsigned round_start(int kind)
{
    round_kind = kind;
    round_no++;
    __atomic_store_n(&gen, round_no, __ATOMIC_RELEASE);   /* pairs with spin_until */
    return 2 * round_no;
}

static void round_wait_blocked(unsigned target)
{
    rcgc_blocking_begin();
    spin_until(&done, target);
    rcgc_blocking_end();
}

int main(void)
{
    unsigned failures[N_VARIANTS] = { 0 }, raw_failures = 0, queue_failures = 0;
    unsigned early_frees = 0;
    uintptr_t owner;
    uint32_t local;
    intptr_t shared;
    pthread_t tb, tc;
    rcgc_stats s0, s1;
    unsigned i, id, target, seed = 5u;
    int v;

    TAP_REQUIRE(rcgc_init(&refcount_only) == 0, "rcgc_init");
    rcgc_get_stats(&s0);
    pthread_create(&tb, NULL, worker, (void *)(intptr_t)0);
    pthread_create(&tc, NULL, worker, (void *)(intptr_t)1);

    for (i = 0; i < ROUNDS; i++) {
        for (v = 0; v < N_VARIANTS; v++) {
            id = (unsigned)v * ROUNDS + i;
            variant = v;
            obj = rcgc_new(&cell_type);
            if (obj == NULL)
                bail_out("rcgc_new failed");
            obj->id = id;
            switch (v) {
            case V_MERGED:
                round_wait_blocked(round_start(R_PREP));        /* B, C incref */
                rcgc_decref(obj);                               /* A's last local */
                rcgc__test_raw(obj, &owner, &local, &shared);
                if (owner != 0 || !(shared & RCGC__SHARED_MERGED) ||
                    shared >> RCGC__SHARED_SHIFT != 2)
                    raw_failures++;
                round_wait_blocked(round_start(R_RACE));        /* B, C decref */
                break;
            case V_OWNER:
                round_wait_blocked(round_start(R_PREP));        /* B increfs */
                target = round_start(R_RACE);
                jitter(&seed);
                rcgc_decref(obj);                               /* races B */
                round_wait_blocked(target);
                rcgc_safepoint();
                break;
            case V_BLOCKED:
                rcgc_incref(obj);
                rcgc_blocking_begin();
                spin_until(&done, round_start(R_RACE));
                if (fin_of(id) != 1)      /* still blocked: must be freed already */
                    early_frees++;
                rcgc_blocking_end();
                break;
            case V_QUEUED:
                rcgc_incref(obj);
                spin_until(&done, round_start(R_RACE));         /* A stays online */
                if (rcgc__test_queue_length() != 1 || fin_of(id) != 0)
                    queue_failures++;
                rcgc_safepoint();
                break;
            }
            if (fin_of(id) != 1) {
                if (failures[v]++ < 5)
                    diag("%s round %u: finalized %u times", variant_name[v], i, fin_of(id));
            }
        }
    }

    __atomic_store_n(&quit, 1, __ATOMIC_RELEASE);
    round_start(R_PREP);
    rcgc_blocking_begin();
    pthread_join(tb, NULL);
    pthread_join(tc, NULL);
    rcgc_blocking_end();

    is_uint(raw_failures, 0,
            "merged: after B, C incref and A's last local decref: owner 0, MERGED, count 2");
    is_uint(failures[V_MERGED], 0,
            "pitfall 10: two non-owners drop the last two references of a merged object: freed once (%u rounds)",
            ROUNDS);
    is_uint(failures[V_OWNER], 0,
            "pitfall 10: owner's last local and a non-owner's last shared reference at once: freed once");
    is_uint(early_frees, 0,
            "pitfall 6: owner blocked: the two non-owners free the object before it unblocks");
    is_uint(failures[V_BLOCKED], 0,
            "pitfall 10: owner blocked, two non-owners race below zero: freed once");
    is_uint(queue_failures, 0,
            "pitfall 8: two non-owners race below zero: queued exactly once, not freed before the merge");
    is_uint(failures[V_QUEUED], 0,
            "pitfall 10: the queued object is freed exactly once by the owner's merge");
    rcgc_get_stats(&s1);
    is_uint(s1.freed - s0.freed, (uint64_t)N_VARIANTS * ROUNDS, "stats: every object freed once");
    is_uint(s1.live, s0.live, "stats: live back to where it was");

    rcgc_shutdown();
    return done_testing();
}
