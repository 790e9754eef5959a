/*
 * test_gc_surplus.c: root chunks emptied beyond the chunk pool's bound are
 * unmapped at the collection's end, sorted by address into runs of
 * adjacent chunks, or, when there is no memory to sort them, one by one
 * (runtime/collector.c, surplus_release): either way none is kept and none
 * is leaked.
 *
 *   sorted      PAIRS garbage 2-cycles (more candidates than the pool's
 *               chunks hold) collected: everything freed, and afterwards
 *               at most the pool's bound of chunks exists, plus this
 *               thread's few;
 *   one by one  the same with the sort's memory refused
 *               (rcgc__test_chunks): the fallback unmapped the surplus,
 *               which was not empty, and the same bound holds;
 *   again       the sort works again: a third collection, same bound, and
 *               the fallback not used;
 *   threads     THREADS threads, one after another, attach, make one
 *               candidate (so each takes chunks from the pool as its spares)
 *               and detach: each gives its spares back to the pool, so the
 *               chunks in existence stay as they were (a thread that
 *               unmapped its spares left the next one to map chunks again);
 *   share       THREADS threads, the pool full, one after another make
 *               one candidate and wait, all holding their spares at once:
 *               each took RCGC__CHUNK_TAKE chunks from the pool and none
 *               mapped one (a thread that took the whole pool left the
 *               others to map their own); once they have detached and a
 *               collection has run, the pool is as before;
 *   race        a thread takes from the full pool while a chunk is
 *               pushed between its take and its give-back
 *               (rcgc__test_pool_race): its give-back fails, it keeps the
 *               whole pool as spares and maps nothing, and its detach
 *               fills the pool again (were the rest dropped, the pool
 *               would hold 17 and the shutdown case find chunks left);
 *   steady      after a burst that grew the pool's stock to its bound
 *               (PAIRS garbage 2-cycles, more candidates than the pool
 *               holds), STEADY collections of STEADY_PAIRS each: once the
 *               first has unmapped surplus chunks, the stock halves at each
 *               collection's start until it stays, and the last collections
 *               make no chunk (a stock kept at its bound made, at each
 *               collection's start, the chunks the candidates had taken,
 *               and unmapped as many at its end);
 *   busy        BUSY threads at once, each REPS times: PAIRS_EACH garbage
 *               2-cycles, then rcgc_collect (collections retire chunks
 *               into the pool while the other threads take it): all the
 *               garbage collected, the same bound;
 *   shutdown    after rcgc_shutdown no chunk is left.
 *
 * After every case the pool's count, kept in its word, must equal the
 * length of its list (rcgc__test_pool), and stay within its bound.
 *
 * The hard build's chunks hold two entries and come from malloc, and a
 * collection keeps every one of them in the pool: no surplus, skipped.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"
#include "gc_test.h"

#define PAIRS      200000        /* 400 000 candidates: some 390 chunks */
#define OWN_SLACK  17            /* this thread's chunk and spares (a batch
                                    of 16 is mapped at once) */
#define THREADS    8
#define BUSY       4
#define REPS       5
#define PAIRS_EACH 2000          /* 4000 candidates: about four chunks */
#define STEADY       12
#define STEADY_PAIRS 20000       /* 40 000 candidates: about 40 chunks */

typedef struct node {
    rcgc_ref next;
} node;

static void node_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((node *)obj)->next, ctx);
}

static const rcgc_type node_type = { "surplus_node", sizeof(node), node_traverse, NULL, 0 };

/* The pool's count, in its word, is the length of its list. */
static void pool_consistent(const char *what)
{
    size_t walked, count = rcgc__test_pool(&walked), pool_max;

    (void)rcgc__test_chunks(-1, NULL, &pool_max);
    ok(count == walked && count <= pool_max,
       "%s: the pool's word counts %zu chunks, its list holds %zu (bound %zu)", what, count,
       walked, pool_max);
}

static void round_of(const char *what, int fail, int fallback_expected)
{
    uint64_t live = live_now();
    size_t before, after, chunks, got, pool_max;

    (void)rcgc__test_chunks(fail, &before, &pool_max);
    drop_pairs_of(&node_type, offsetof(node, next), PAIRS);
    got = rcgc_collect();
    chunks = rcgc__test_chunks(0, &after, NULL);
    ok(got == 2 * (size_t)PAIRS && live_now() == live,
       "%s: every 2-cycle collected (%zu of %zu)", what, got, 2 * (size_t)PAIRS);
    if (fallback_expected)
        ok(after > before, "%s: the surplus went one by one (%zu chunks)", what,
           after - before);
    else
        is_size(after - before, 0, "%s: the fallback not used", what);
    ok(chunks <= pool_max + OWN_SLACK,
       "%s: %zu chunks left, at most the pool's %zu and this thread's %d", what, chunks,
       pool_max, OWN_SLACK);
    pool_consistent(what);
}

/* A garbage 2-cycle whose members are candidates: the calling thread
   takes a chunk (and spares) from the pool. */
static void drop_one_cycle(void)
{
    node *a = rcgc_new(&node_type), *b = rcgc_new(&node_type);

    if (a != NULL && b != NULL) {
        rcgc_ref_store(&a->next, b);
        rcgc_ref_store(&b->next, a);
    }
    rcgc_decref(a);
    rcgc_decref(b);
}

static void *one_candidate(void *arg)
{
    if (rcgc_thread_attach() != 0)
        return NULL;
    drop_one_cycle();
    rcgc_thread_detach();              /* the chunk handed over, spares back */
    return arg;
}

static void threads_come_and_go(void)
{
    size_t before, after;
    int started = 0;

    rcgc_collect();                    /* the pool stocked */
    before = rcgc__test_chunks(-1, NULL, NULL);
    for (int i = 0; i < THREADS; i++) {
        pthread_t t;

        if (pthread_create(&t, NULL, one_candidate, NULL) != 0)
            break;
        rcgc_blocking_begin();
        pthread_join(t, NULL);
        rcgc_blocking_end();
        started++;
    }
    after = rcgc__test_chunks(-1, NULL, NULL);
    is_int(started, THREADS, "threads: %d threads came and went", THREADS);
    ok(before > 1, "threads: the pool held chunks (%zu in all)", before);
    ok(after >= before, "threads: their spares went back to the pool "
       "(%zu chunks before, %zu after)", before, after);
    is_size(rcgc_collect(), 2 * (size_t)THREADS, "threads: their cycles collected");
    pool_consistent("threads");
}

/* Each worker takes its chunks while the ones before it hold theirs, one
   after another: a take empties the pool for the few microseconds of its
   cut, and a thread running dry meanwhile maps a batch (pool_take's
   comment), which the busy case meets and this one is not about. */
static sem_t share_took;
static pthread_barrier_t share_go;

static void *share_worker(void *arg)
{
    if (rcgc_thread_attach() != 0) {
        sem_post(&share_took);
        pthread_barrier_wait(&share_go);
        return NULL;
    }
    drop_one_cycle();
    rcgc_blocking_begin();
    sem_post(&share_took);
    pthread_barrier_wait(&share_go);
    rcgc_blocking_end();
    rcgc_thread_detach();
    return arg;
}

static void share(void)
{
    size_t pool_before, chunks_before, pool_held, chunks_held, pool_after, chunks_after, walked;
    pthread_t t[THREADS];
    int started = 0;

    rcgc_collect();                    /* the pool stocked */
    pool_before = rcgc__test_pool(&walked);
    chunks_before = rcgc__test_chunks(-1, NULL, NULL);
    TAP_REQUIRE(sem_init(&share_took, 0, 0) == 0 &&
                pthread_barrier_init(&share_go, NULL, THREADS + 1) == 0, "share: barriers");
    rcgc_blocking_begin();
    for (int i = 0; i < THREADS; i++) {
        TAP_REQUIRE(pthread_create(&t[i], NULL, share_worker, NULL) == 0,
                    "share: thread %d", i);
        while (sem_wait(&share_took) != 0)
            ;
    }
    pool_held = rcgc__test_pool(&walked);
    chunks_held = rcgc__test_chunks(-1, NULL, NULL);
    pthread_barrier_wait(&share_go);
    for (int i = 0; i < THREADS; i++)
        started += pthread_join(t[i], NULL) == 0;
    rcgc_blocking_end();
    is_size(rcgc_collect(), 2 * (size_t)THREADS, "share: their cycles collected");
    pool_after = rcgc__test_pool(&walked);
    chunks_after = rcgc__test_chunks(-1, NULL, NULL);
    sem_destroy(&share_took);
    pthread_barrier_destroy(&share_go);

    is_int(started, THREADS, "share: %d threads held their spares at once", THREADS);
    ok(pool_before >= THREADS * (size_t)RCGC__CHUNK_TAKE,
       "share: the pool held enough for all (%zu chunks)", pool_before);
    is_size(pool_held, pool_before - THREADS * (size_t)RCGC__CHUNK_TAKE,
            "share: each thread took %d chunks from the pool", RCGC__CHUNK_TAKE);
    is_size(chunks_held, chunks_before, "share: no thread mapped a chunk");
    ok(pool_after == pool_before && chunks_after == chunks_before,
       "share: after them the pool is as before (%zu chunks, then %zu; %zu in all, then %zu)",
       pool_before, pool_after, chunks_before, chunks_after);
    pool_consistent("share");
}

static size_t race_pool_held, race_chunks_held;

static void *race_worker(void *arg)
{
    size_t walked;

    if (rcgc_thread_attach() != 0)
        return NULL;
    rcgc__test_pool_race(true);
    drop_one_cycle();                  /* takes from the pool, the push races */
    rcgc__test_pool_race(false);
    race_pool_held = rcgc__test_pool(&walked);
    race_chunks_held = rcgc__test_chunks(-1, NULL, NULL);
    rcgc_thread_detach();
    return arg;
}

static void race(void)
{
    size_t pool_before, chunks_before, pool_after, walked;
    static int token;
    pthread_t t;
    void *got = NULL;

    rcgc_collect();                    /* the pool stocked */
    pool_before = rcgc__test_pool(&walked);
    chunks_before = rcgc__test_chunks(-1, NULL, NULL);
    TAP_REQUIRE(pthread_create(&t, NULL, race_worker, &token) == 0, "race: a thread");
    rcgc_blocking_begin();
    pthread_join(t, &got);
    rcgc_blocking_end();
    is_size(rcgc_collect(), 2, "race: its cycle collected");
    pool_after = rcgc__test_pool(&walked);

    ok(got == &token, "race: the thread attached and detached");
    ok(pool_before > RCGC__CHUNK_TAKE, "race: the pool held more than %d (%zu)",
       RCGC__CHUNK_TAKE, pool_before);
    is_size(race_pool_held, 1, "race: the give-back met the pushed chunk and kept the rest");
    is_size(race_chunks_held, chunks_before + 1, "race: only the racing push mapped a chunk");
    ok(pool_after == pool_before, "race: its detach filled the pool again (%zu, then %zu)",
       pool_before, pool_after);
    pool_consistent("race");
}

static void steady(void)
{
    size_t want_burst, want, pool_max;
    uint64_t made = 0, before;

    (void)rcgc__test_chunks(-1, NULL, &pool_max);
    /* The burst: the thread's takes find the pool empty, so the stock
       doubles (at the collection's tending) up to the bound. */
    for (int i = 0; i < 2; i++) {
        drop_pairs_of(&node_type, offsetof(node, next), PAIRS);
        rcgc_collect();
    }
    (void)rcgc__test_chunks_made(&want_burst);
    for (int i = 0; i < STEADY; i++) {
        before = rcgc__test_chunks_made(NULL);
        drop_pairs_of(&node_type, offsetof(node, next), STEADY_PAIRS);
        rcgc_collect();
        if (i >= STEADY - 4)
            made += rcgc__test_chunks_made(NULL) - before;
    }
    (void)rcgc__test_chunks_made(&want);
    ok(want_burst == pool_max, "steady: the burst grew the stock to the bound (%zu of %zu)",
       want_burst, pool_max);
    ok(want < pool_max && made == 0,
       "steady: the stock went down to %zu, and the last 4 collections of %d candidates made "
       "%" PRIu64 " chunks", want, 2 * STEADY_PAIRS, made);
    pool_consistent("steady");
}

static void *busy_worker(void *arg)
{
    (void)arg;
    if (rcgc_thread_attach() != 0)
        return NULL;
    for (int r = 0; r < REPS; r++) {
        drop_pairs_of(&node_type, offsetof(node, next), PAIRS_EACH);
        rcgc_collect();
    }
    rcgc_thread_detach();
    return arg;
}

static void busy(void)
{
    uint64_t live = live_now();
    pthread_t t[BUSY];
    size_t chunks, pool_max;
    int started = 0;

    for (int i = 0; i < BUSY; i++)
        if (pthread_create(&t[i], NULL, busy_worker, NULL) == 0)
            started++;
    rcgc_blocking_begin();
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    rcgc_blocking_end();
    rcgc_collect();                    /* what the last calls left */
    chunks = rcgc__test_chunks(-1, NULL, &pool_max);
    is_int(started, BUSY, "busy: %d threads at once", BUSY);
    ok(live_now() == live, "busy: all their garbage collected (%" PRIu64 " objects left)",
       live_now() - live);
    ok(chunks <= pool_max + OWN_SLACK,
       "busy: %zu chunks left, at most the pool's %zu and this thread's %d", chunks,
       pool_max, OWN_SLACK);
    pool_consistent("busy");
}

int main(void)
{
    rcgc_options opts = { 0 };

    if (RCGC_TEST_HARD) {
        skip("the hard build's chunks come from malloc and all go to the pool");
        return done_testing();
    }
    opts.manual = 1;
    TAP_REQUIRE(rcgc_init(&opts) == 0, "rcgc_init (manual)");
    round_of("sorted", 0, 0);
    round_of("one by one", 1, 1);
    round_of("again", 0, 0);
    threads_come_and_go();
    share();
    race();
    steady();
    busy();
    rcgc_shutdown();
    is_size(rcgc__test_chunks(-1, NULL, NULL), 0, "shutdown: no root chunk left");
    return done_testing();
}
