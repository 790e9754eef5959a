/*
 * test_alloc.c: the allocation hooks of rcgc_options.
 *
 *   a counting allocator (alloc/free with ctx) sees every object: after
 *     rcgc_reclaim_wait nothing released is still outstanding (objects
 *     freed at once, published ones freed after a grace period, objects of
 *     another thread that has exited), free gets the size alloc was asked
 *     for, bodies are 16-byte aligned; after rcgc_shutdown it balances;
 *   the bytes in front of a body: 64 for a tracked object, 80 for one made
 *     bigger than its type, 48 for an untracked one; each kind goes back
 *     to the free hook with its size, the tracked ones through a collection;
 *   an allocator that fails on the Nth call: rcgc_new returns NULL with
 *     errno ENOMEM, stats and the allocator show nothing leaked, later
 *     allocations work; absurd sizes fail with ENOMEM;
 *   pitfall 7: while every allocation fails, non-owner decrements still
 *     queue objects to their owner (the queue never allocates) and the
 *     owner's merge frees them;
 *   after shutdown, init without hooks no longer calls them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

typedef struct counting {   /* every field atomic */
    uint64_t calls;          /* alloc calls, failed ones included */
    uint64_t fail_at;        /* the call number that fails; 0: none */
    int      fail_all;
    uint64_t allocs, frees;
    int64_t  bytes;
    uint64_t size_mismatch, misaligned;
    uint64_t last_size;      /* the last size alloc was asked for */
} counting;

#define PREFIX 16            /* keeps the returned memory 16-byte aligned */

static void *count_alloc(size_t size, void *ctx)
{
    counting *c = ctx;
    uint64_t n = __atomic_add_fetch(&c->calls, 1, __ATOMIC_RELAXED);
    char *p;

    if (n == __atomic_load_n(&c->fail_at, __ATOMIC_RELAXED) ||
        __atomic_load_n(&c->fail_all, __ATOMIC_RELAXED))
        return NULL;
    if (size > ((size_t)1 << 40))    /* never ask malloc (or ASan) for that */
        return NULL;
    p = malloc(size + PREFIX);
    if (p == NULL)
        return NULL;
    memcpy(p, &size, sizeof size);
    __atomic_store_n(&c->last_size, size, __ATOMIC_RELAXED);
    if ((uintptr_t)(p + PREFIX) % 16 != 0)
        __atomic_add_fetch(&c->misaligned, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&c->allocs, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&c->bytes, (int64_t)size, __ATOMIC_RELAXED);
    return p + PREFIX;
}

static void count_free(void *p, size_t size, void *ctx)
{
    counting *c = ctx;
    char *base = (char *)p - PREFIX;
    size_t asked;

    memcpy(&asked, base, sizeof asked);
    if (asked != size)
        __atomic_add_fetch(&c->size_mismatch, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&c->frees, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&c->bytes, (int64_t)asked, __ATOMIC_RELAXED);
    free(base);
}

static counting cnt;

static uint64_t outstanding(void)
{
    return __atomic_load_n(&cnt.allocs, __ATOMIC_RELAXED) -
           __atomic_load_n(&cnt.frees, __ATOMIC_RELAXED);
}

static uint64_t calls(void) { return __atomic_load_n(&cnt.calls, __ATOMIC_RELAXED); }

typedef struct item { rcgc_ref next; unsigned char payload[40]; } item;

static void item_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((item *)obj)->next, ctx);
}

static const rcgc_type item_type = { "item", sizeof(item), item_traverse, NULL, 0 };
static const rcgc_type leaf_type = { "leaf", 24, NULL, NULL, 0 };

/* What alloc was asked for by one rcgc_new_sized(type, size), or 0. */
static uint64_t asked_for(const rcgc_type *type, size_t size, void **out)
{
    *out = rcgc_new_sized(type, size);
    return *out != NULL ? __atomic_load_n(&cnt.last_size, __ATOMIC_RELAXED) : 0;
}

/* Another thread creates objects, links them behind `into`'s slot (so they
   are published) and exits while they are alive. */
static item *into;

static void *producer(void *arg)
{
    item *prev = NULL, *it;
    int i, n = (int)(intptr_t)arg;

    if (rcgc_thread_attach() != 0)
        abort();
    for (i = 0; i < n; i++) {
        it = rcgc_new_sized(&item_type, sizeof(item) + (size_t)(i % 7) * 16);
        if (it == NULL)
            abort();
        if (prev != NULL) {
            rcgc_ref_store(&it->next, prev);
            rcgc_decref(prev);
        }
        prev = it;
    }
    rcgc_ref_store(&into->next, prev);
    rcgc_decref(prev);
    rcgc_thread_detach();
    return NULL;
}

/* pitfall 7: a non-owner queues while the allocator fails */
static item *queued_objs[16];
static int q_step;

static void *dropper(void *arg)
{
    int i;

    (void)arg;
    if (rcgc_thread_attach() != 0)
        abort();
    for (i = 0; i < 16; i++)
        rcgc_decref(queued_objs[i]);
    __atomic_store_n(&q_step, 1, __ATOMIC_RELEASE);
    rcgc_blocking_begin();
    while (__atomic_load_n(&q_step, __ATOMIC_ACQUIRE) < 2)
        sched_yield();
    rcgc_blocking_end();
    rcgc_thread_detach();
    return NULL;
}

static void join_blocking(pthread_t t)
{
    rcgc_blocking_begin();
    pthread_join(t, NULL);
    rcgc_blocking_end();
}

int main(void)
{
    rcgc_options opts;
    rcgc_stats s0, s1;
    item *objs[1000], *head, *p;
    pthread_t t;
    uint64_t c0, a0;
    int i, nulls, null_at;

    alarm(120);
    memset(&opts, 0, sizeof opts);
    opts.alloc = count_alloc;
    opts.free = count_free;
    opts.alloc_ctx = &cnt;
    opts.manual = 1;   /* releases are checked at once: no collector pins */
    TAP_REQUIRE(rcgc_init(&opts) == 0, "rcgc_init with a counting allocator");

    /* -- every object comes from the hook ------------------------------------ */
    rcgc_get_stats(&s0);
    for (i = 0; i < 1000; i++) {
        objs[i] = rcgc_new_sized(&item_type, sizeof(item) + (size_t)(i % 5) * 24);
        if (objs[i] == NULL || ((uintptr_t)objs[i] & 15) != 0)
            break;
    }
    is_int(i, 1000, "1000 objects from the hook, 16-byte aligned bodies");
    is_uint(outstanding(), 1000, "the allocator saw 1000 allocations");
    for (i = 0; i < 1000; i += 2)    /* even ones published: chained in slots */
        if (i + 2 < 1000)
            rcgc_ref_store(&objs[i]->next, objs[i + 2]);
    for (i = 0; i < 1000; i++)
        rcgc_decref(objs[i]);
    into = rcgc_new(&item_type);
    pthread_create(&t, NULL, producer, (void *)(intptr_t)300);
    join_blocking(t);
    rcgc_decref(into);               /* the producer's chain dies here */
    rcgc_get_stats(&s1);
    ok(s1.freed - s0.freed == 1301 && s1.live == s0.live, "stats: 1301 objects freed");
    rcgc_reclaim_wait();
    is_uint(outstanding(), 0,
            "after rcgc_reclaim_wait every released object's memory is back in the free hook");
    is_int(__atomic_load_n(&cnt.bytes, __ATOMIC_RELAXED), 0, "bytes balance");
    is_uint(__atomic_load_n(&cnt.size_mismatch, __ATOMIC_RELAXED), 0,
            "free receives the size alloc was asked for");

    /* -- what each kind of object costs in front of its body ------------------ */
    {
        void *a, *b, *c, *d;
        uint64_t tracked = asked_for(&item_type, sizeof(item), &a);
        uint64_t sized = asked_for(&item_type, sizeof(item) + 40, &b);
        uint64_t leaf = asked_for(&leaf_type, 24, &c);
        uint64_t leaf_sized = asked_for(&leaf_type, 1000, &d);

        is_uint(tracked, 64 + sizeof(item),
                "a tracked object: 64 bytes in front of its body (link, header)");
        is_uint(sized, 80 + sizeof(item) + 40,
                "a tracked object bigger than its type: 80 (its size too)");
        is_uint(leaf, 48 + 24, "an untracked object: 48 (its size, header)");
        is_uint(leaf_sized, 48 + 1000, "... of any size");
        ok(a && b && c && d && ((uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d) % 16 == 0,
           "all four bodies 16-byte aligned");
        /* a and b in a cycle, freed by the collector; c and d by counting */
        rcgc_ref_store(&((item *)a)->next, b);
        rcgc_ref_store(&((item *)b)->next, a);
        memset((item *)b + 1, 0xab, 40);      /* the body's tail is the caller's */
        memset(d, 0xcd, 1000);
        rcgc_decref(a);
        rcgc_decref(b);
        rcgc_decref(c);
        rcgc_decref(d);
        is_size(rcgc_collect(), 2, "the cycle of a sized and an unsized object is collected");
        rcgc_reclaim_wait();
        is_uint(outstanding(), 0, "... and every one of the four goes back to the hook");
        is_uint(__atomic_load_n(&cnt.size_mismatch, __ATOMIC_RELAXED), 0,
                "... with the size alloc was asked for");
    }

    /* -- failure on the Nth call --------------------------------------------- */
    rcgc_get_stats(&s0);
    a0 = __atomic_load_n(&cnt.allocs, __ATOMIC_RELAXED);
    __atomic_store_n(&cnt.fail_at, calls() + 1, __ATOMIC_RELAXED);
    errno = 0;
    p = rcgc_new(&item_type);
    ok(p == NULL && errno == ENOMEM, "alloc hook fails: rcgc_new -> NULL + ENOMEM (errno %d)", errno);
    rcgc_get_stats(&s1);
    ok(s1.allocated == s0.allocated && s1.live == s0.live, "stats: a failed rcgc_new counts nothing");
    is_uint(__atomic_load_n(&cnt.allocs, __ATOMIC_RELAXED), a0, "nothing allocated by the failure");
    p = rcgc_new(&item_type);
    ok(p != NULL && rcgc_refcount(p) == 1, "the next rcgc_new works");
    rcgc_decref(p);

    c0 = calls();
    __atomic_store_n(&cnt.fail_at, c0 + 5, __ATOMIC_RELAXED);
    nulls = 0;
    null_at = -1;
    for (i = 0; i < 10; i++) {
        errno = 0;
        objs[i] = rcgc_new(&item_type);
        if (objs[i] == NULL) {
            nulls++;
            null_at = i;
            if (errno != ENOMEM)
                nulls += 100;
        }
    }
    ok(nulls == 1 && null_at == 4,
       "the 5th of 10 allocations fails alone, with ENOMEM (failed: %d, at %d)", nulls, null_at);
    head = rcgc_new(&item_type);
    for (i = 0; i < 10; i++)
        if (objs[i] != NULL) {
            rcgc_ref_store(&head->next, objs[i]);    /* publish some */
            rcgc_decref(objs[i]);
        }
    rcgc_decref(head);

    errno = 0;
    p = rcgc_new_sized(&item_type, SIZE_MAX);
    ok(p == NULL && errno == ENOMEM, "rcgc_new_sized(SIZE_MAX) -> NULL + ENOMEM");
    errno = 0;
    p = rcgc_new_sized(&item_type, (size_t)1 << 50);
    ok(p == NULL && errno == ENOMEM, "rcgc_new_sized(2^50): the hook refuses -> NULL + ENOMEM");
    __atomic_store_n(&cnt.fail_at, 0, __ATOMIC_RELAXED);

    /* -- pitfall 7: queueing needs no memory ---------------------------------- */
    for (i = 0; i < 16; i++)
        queued_objs[i] = rcgc_new(&item_type);
    __atomic_store_n(&cnt.fail_all, 1, __ATOMIC_RELAXED);
    rcgc_get_stats(&s0);
    pthread_create(&t, NULL, dropper, NULL);
    while (__atomic_load_n(&q_step, __ATOMIC_ACQUIRE) < 1)
        sched_yield();                /* online: the dropper queues to us */
    is_size(rcgc__test_queue_length(), 16,
            "pitfall 7: with every allocation failing, 16 objects were still queued");
    rcgc_safepoint();
    rcgc_get_stats(&s1);
    is_uint(s1.freed - s0.freed, 16, "... and the owner's merge freed them");
    __atomic_store_n(&q_step, 2, __ATOMIC_RELEASE);
    join_blocking(t);
    __atomic_store_n(&cnt.fail_all, 0, __ATOMIC_RELAXED);

    rcgc_reclaim_wait();
    is_uint(outstanding(), 0, "after failures and rcgc_reclaim_wait nothing is outstanding");

    /* -- shutdown ------------------------------------------------------------- */
    p = rcgc_new(&item_type);          /* released just before shutdown */
    head = rcgc_new(&item_type);
    rcgc_ref_store(&head->next, p);
    rcgc_decref(p);
    rcgc_decref(head);
    rcgc_shutdown();
    ok(__atomic_load_n(&cnt.allocs, __ATOMIC_RELAXED) == __atomic_load_n(&cnt.frees, __ATOMIC_RELAXED),
       "after rcgc_shutdown allocs == frees (%llu)",
       (unsigned long long)__atomic_load_n(&cnt.allocs, __ATOMIC_RELAXED));
    is_int(__atomic_load_n(&cnt.bytes, __ATOMIC_RELAXED), 0, "bytes balance after shutdown");
    is_uint(__atomic_load_n(&cnt.size_mismatch, __ATOMIC_RELAXED), 0, "no size mismatch");
    is_uint(__atomic_load_n(&cnt.misaligned, __ATOMIC_RELAXED), 0, "no misaligned block");

    /* -- init without hooks does not use the old ones ------------------------- */
    c0 = calls();
    TAP_REQUIRE(rcgc_init(NULL) == 0, "rcgc_init(NULL) after shutdown");
    p = rcgc_new(&item_type);
    ok(p != NULL, "rcgc_new with the default allocator");
    rcgc_decref(p);
    rcgc_shutdown();
    is_uint(calls(), c0, "the old hooks are not called after re-init with defaults");

    return done_testing();
}
