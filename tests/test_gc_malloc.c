/*
 * test_gc_malloc.c: a collection that has begun freeing asks glibc's
 * malloc for nothing large (runtime/collector.c, "Large frees").  The
 * blocks a collection frees past the thread caches and the pool
 * (runtime/runtime.c) wait in glibc's fast bins, and the first malloc of
 * 1 KiB or more, or free of a block that coalesces to 64 KiB, walks every
 * one of them (malloc_consolidate): tens of milliseconds
 * inside the collection after a million objects.  glibc's own functions
 * count: qsort mallocs its scratch once it sorts more than 1 KiB.
 *
 * This program replaces malloc, realloc and free (forwarding to glibc's
 * __libc_ functions) and counts, on the collecting thread, the calls for
 * 1 KiB or more between a collection's first finalizer (run just before
 * the first round's frees) and its STOP callback.  Manual mode: the
 * collecting thread is this one.
 *
 *   pairs  PAIRS garbage 2-cycles: more emptied root chunks than the
 *          chunk pool keeps, so the collection unmaps its surplus, sorted
 *          by address, at its end (in many rounds).
 *   ring   one garbage ring of RING nodes: one round whose tables grow.
 *
 * Required: every object finalized and freed, and no such call.  Not in
 * the sanitizer builds, which replace malloc themselves.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"
#include "gc_test.h"

#define PAIRS 400000             /* 800 000 candidates: some 780 chunks */
#define RING  200000
#define LARGE 1024

/* ---- counting malloc ------------------------------------------------------ */

#if !UNDER_SANITIZER
extern void *__libc_malloc(size_t);
extern void *__libc_realloc(void *, size_t);
extern void  __libc_free(void *);

static __thread int counting;    /* this thread is freeing a collection's garbage */
static size_t large_calls;       /* only the counting thread writes it */
static size_t largest;

static void note(size_t bytes)
{
    if (counting && bytes >= LARGE) {
        large_calls++;
        largest = bytes > largest ? bytes : largest;
    }
}

void *malloc(size_t size)
{
    note(size);
    return __libc_malloc(size);
}

void *realloc(void *p, size_t size)
{
    note(size);
    return __libc_realloc(p, size);
}

void free(void *p)
{
    if (p != NULL)
        note(malloc_usable_size(p));
    __libc_free(p);
}
#endif

/* ---- the objects ---------------------------------------------------------- */

typedef struct node {
    rcgc_ref next;
} node;

static size_t finalized;

static void node_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((node *)obj)->next, ctx);
}

static void node_finalize(void *obj)
{
    (void)obj;
    finalized++;
#if !UNDER_SANITIZER
    counting = 1;
#endif
}

static const rcgc_type node_type = { "malloc_node", sizeof(node), node_traverse,
                                     node_finalize, 0 };

static void on_phase(rcgc_phase phase, const rcgc_collect_info *info, void *ctx)
{
    (void)info;
    (void)ctx;
#if !UNDER_SANITIZER
    if (phase == RCGC_PHASE_STOP)
        counting = 0;
#else
    (void)phase;
#endif
}

static void drop_pairs(size_t n)
{
    drop_pairs_of(&node_type, offsetof(node, next), n);
}

static void drop_ring(size_t n)
{
    drop_ring_of(&node_type, offsetof(node, next), n);
}

static void check(const char *what, void (*drop)(size_t), size_t objects, size_t n)
{
    uint64_t live = live_now();
    size_t fin = finalized, got;

#if !UNDER_SANITIZER
    large_calls = largest = 0;
#endif
    drop(n);
    got = rcgc_collect();
    ok(got == objects && finalized - fin == objects && live_now() == live,
       "%s: %zu objects collected and finalized (got %zu, finalized %zu)", what, objects,
       got, finalized - fin);
#if !UNDER_SANITIZER
    ok(large_calls == 0,
       "%s: no malloc, realloc or free of %d bytes or more once freeing began "
       "(%zu such calls, the largest %zu bytes)", what, LARGE, large_calls, largest);
#else
    skip("%s: the sanitizers replace malloc", what);
#endif
}

int main(void)
{
    rcgc_options opts = { 0 };

    opts.manual = 1;
    TAP_REQUIRE(rcgc_init(&opts) == 0, "rcgc_init (manual)");
    TAP_REQUIRE(rcgc_callback_add(on_phase, NULL) == 0, "rcgc_callback_add");
    check("2-cycles", drop_pairs, 2 * (size_t)PAIRS, PAIRS);
    check("a ring", drop_ring, RING, RING);
    rcgc_shutdown();
    return done_testing();
}
