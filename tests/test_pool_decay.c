/*
 * test_pool_decay.c: the object pool holds a big collection's garbage for
 * the mutators' next allocations, up to RCGC__POOL_BYTES, and gives what is
 * above RCGC__POOL_KEEP back to free() once it has gone unused for its
 * decay (runtime/runtime.c, "Decay").
 *
 *   held      a garbage ring of RING blocks of 256 bytes collected, the
 *             decay a minute: the pool holds more than POOL_KEEP, at most
 *             POOL_BYTES, and every object is gone;
 *   reused    this thread's next allocations take their blocks from the
 *             pool (its cache is empty): the pool shrinks;
 *   idle      the decay 200 ms, another ring collected: the collector
 *             thread, idle, wakes when the decay is due and gives the
 *             surplus back (a collector that waited only for work would
 *             hold it until the next collection; the work tables' own
 *             decay, which also wakes it, is made a minute here);
 *   manual    no collector thread: a collection a decay after the last
 *             use of the pool gives the surplus back;
 *   reclaim   rcgc_reclaim_wait empties the pool.
 *
 * Not in the AddressSanitizer builds, which keep no cache or pool.
 */
#define _POSIX_C_SOURCE 200809L    /* nanosleep */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"
#include "gc_test.h"

/* A node fills the largest cached class, 256 bytes with its header. */
#define BLOCK 256
#define BODY  (BLOCK - sizeof(rcgc__gclink) - sizeof(rcgc__header))
/* More than the pool keeps, plus the collecting thread's own cache. */
#define RING  ((RCGC__POOL_KEEP + RCGC__CACHE_BYTES + ((size_t)16 << 20)) / BLOCK)
#define REUSED 20000

typedef struct node {
    rcgc_ref next;
    char     pad[BODY - sizeof(rcgc_ref)];
} node;

static void node_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((node *)obj)->next, ctx);
}

static const rcgc_type node_type = { "pool_node", sizeof(node), node_traverse, NULL, 0 };

static size_t pool_bytes(void)
{
    uint64_t decay;

    return rcgc__test_pool_bytes(0, &decay);
}

static void set_decay(uint64_t ns)
{
    uint64_t before;

    rcgc__test_pool_bytes(ns, &before);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

    rcgc_blocking_begin();
    nanosleep(&ts, NULL);
    rcgc_blocking_end();
}

/* A garbage ring of RING nodes, collected; true if all went. */
static bool collect_ring(void)
{
    uint64_t live = live_now();
    size_t got;

    drop_ring_of(&node_type, offsetof(node, next), RING);
    got = rcgc_collect();
    return got == RING && live_now() == live;
}

int main(void)
{
    rcgc_options opts;
    size_t held, after;
    void *kept[REUSED];
    unsigned waited;
    uint64_t work_decay;

    plan(RCGC_ASAN ? 1 : 13);
    if (RCGC_ASAN) {
        skip("AddressSanitizer builds keep no pool");
        return done_testing();
    }
    _Static_assert(sizeof(rcgc__gclink) + sizeof(rcgc__header) + sizeof(node) == BLOCK,
                   "a node's block is the largest cached class");
    TAP_REQUIRE(rcgc_init(NULL) == 0, "rcgc_init");
    rcgc_disable();    /* each ring goes in one rcgc_collect, its count checked */

    /* held */
    set_decay((uint64_t)60 * 1000000000u);
    ok(collect_ring(), "held: a ring of %zu nodes collected", (size_t)RING);
    held = pool_bytes();
    ok(held > RCGC__POOL_KEEP && held <= RCGC__POOL_BYTES,
       "held: the pool holds %zu bytes, more than %zu kept for good, at most %zu",
       held, RCGC__POOL_KEEP, RCGC__POOL_BYTES);

    /* reused */
    for (size_t i = 0; i < REUSED; i++) {
        kept[i] = rcgc_new(&node_type);
        if (kept[i] == NULL)
            bail_out("out of memory");
    }
    after = pool_bytes();
    ok(after < held, "reused: %d allocations took blocks from the pool (%zu -> %zu bytes)",
       REUSED, held, after);
    for (size_t i = 0; i < REUSED; i++)
        rcgc_decref(kept[i]);

    /* idle: the work tables stay a minute, so that only the pool's decay
       can wake the collector thread */
    work_decay = rcgc__test_work_decay((uint64_t)60 * 1000000000u);
    set_decay((uint64_t)200 * 1000000u);
    TAP_REQUIRE(collect_ring(), "idle: a second ring collected");
    for (waited = 0; pool_bytes() > RCGC__POOL_KEEP && waited < 20000; waited += 10)
        sleep_ms(10);
    ok(pool_bytes() <= RCGC__POOL_KEEP,
       "idle: the collector thread gave the surplus back by itself (%zu bytes left, "
       "%u ms waited)", pool_bytes(), waited);
    rcgc__test_work_decay(work_decay);

    rcgc_shutdown();

    /* manual */
    memset(&opts, 0, sizeof(opts));
    opts.manual = 1;
    TAP_REQUIRE(rcgc_init(&opts) == 0, "rcgc_init, manual");
    set_decay((uint64_t)60 * 1000000000u);
    TAP_REQUIRE(collect_ring(), "manual: a ring collected");
    held = pool_bytes();
    ok(held > RCGC__POOL_KEEP, "manual: the pool holds %zu bytes", held);
    set_decay((uint64_t)20 * 1000000u);
    sleep_ms(50);
    ok(pool_bytes() == held, "manual: nothing gives it back without a collection");
    rcgc_collect();
    ok(pool_bytes() <= RCGC__POOL_KEEP,
       "manual: a collection a decay later gave the surplus back (%zu bytes left)",
       pool_bytes());

    /* reclaim */
    set_decay((uint64_t)60 * 1000000000u);
    TAP_REQUIRE(collect_ring(), "reclaim: a ring collected");
    rcgc_reclaim_wait();
    ok(pool_bytes() == 0, "reclaim: rcgc_reclaim_wait emptied the pool (%zu bytes left)",
       pool_bytes());
    set_decay(1000000000u);
    rcgc_shutdown();
    return done_testing();
}
