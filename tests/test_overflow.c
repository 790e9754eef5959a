/*
 * test_overflow.c: pitfall 9, counts saturate, they never wrap.
 *
 * Counts are set near their limits with rcgc__test_set_counts (owner only)
 * and then pushed across them:
 *   - the owner's 32-bit local count at UINT32_MAX spills into the shared
 *     count: rcgc_refcount stays exact past 2^32 and back down;
 *   - the owner's last local decrement merges a huge shared count exactly;
 *   - non-owner increments past RCGC__SHARED_SATURATE make the object
 *     immortal: rcgc_refcount is SIZE_MAX, decrements (owner and
 *     non-owner, any number) are no-ops, it is never finalized;
 *   - an owner spill that reaches the bound makes it immortal too;
 *   - so does an increment of a merged object, whose non-owner decrements
 *     (one fetch_sub each, taken back) leave the count at the bound.
 * Counts are restored with the hook where the object is not immortal, so
 * everything else is freed; immortal objects stay reachable from globals
 * (LeakSanitizer does not count them as leaks).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

/* These tests check releases the moment a count reaches zero: no background
   collector, whose examination pins tracked objects for its duration. */
static const rcgc_options refcount_only = { .manual = 1 };

typedef struct num { long v; } num;

static unsigned fin_count;   /* atomic */

static void num_finalize(void *obj)
{
    (void)obj;
    __atomic_fetch_add(&fin_count, 1, __ATOMIC_RELAXED);
}

static const rcgc_type num_type = { "num", sizeof(num), NULL, num_finalize, 0 };

static unsigned fin(void) { return __atomic_load_n(&fin_count, __ATOMIC_RELAXED); }

#define SAT_COUNT ((intptr_t)(RCGC__SHARED_SATURATE >> RCGC__SHARED_SHIFT))

/* Immortal objects are never freed: keep their blocks (the header is the
   start of the allocation) reachable so LeakSanitizer does not report them. */
void *volatile rcgc_test_immortal_blocks[3];

static intptr_t shared_word(const void *obj)
{
    intptr_t shared;

    rcgc__test_raw(obj, NULL, NULL, &shared);
    return shared;
}

/* ---- the non-owner thread ---------------------------------------------- */

typedef struct b_work {
    num     *obj;
    int      increments_to_immortal;   /* 0: never */
    size_t   refcount_after;
    intptr_t word_min, word_max;        /* over 1000 further increments */
    size_t   refcount_after_decrefs;
} b_work;

static void *thread_b(void *arg)
{
    b_work *w = arg;
    intptr_t s;
    int i;

    if (rcgc_thread_attach() != 0)
        abort();
    for (i = 1; i <= 8; i++) {
        rcgc_incref(w->obj);
        if (shared_word(w->obj) & RCGC__SHARED_IMMORTAL) {
            w->increments_to_immortal = i;
            break;
        }
    }
    w->refcount_after = rcgc_refcount(w->obj);
    w->word_min = INTPTR_MAX;
    w->word_max = INTPTR_MIN;
    for (i = 0; i < 1000; i++) {
        rcgc_incref(w->obj);
        s = shared_word(w->obj);
        if (s < w->word_min)
            w->word_min = s;
        if (s > w->word_max)
            w->word_max = s;
    }
    for (i = 0; i < 5000; i++)         /* more than it ever added */
        rcgc_decref(w->obj);
    w->refcount_after_decrefs = rcgc_refcount(w->obj);
    rcgc_thread_detach();
    return NULL;
}

int main(void)
{
    uintptr_t owner;
    uint32_t local;
    intptr_t shared;
    uint64_t expect;
    pthread_t tb;
    b_work w;
    num *o;
    int i;

    alarm(120);
    TAP_REQUIRE(rcgc_init(&refcount_only) == 0, "rcgc_init");

    /* -- local count spills into the shared count -------------------------- */
    o = rcgc_new(&num_type);
    rcgc__test_set_counts(o, UINT32_MAX - 1, 0);
    expect = UINT32_MAX - 1;
    is_size(rcgc_refcount(o), (size_t)expect, "set_counts: local at UINT32_MAX - 1");
    rcgc_incref(o);
    expect++;
    rcgc__test_raw(o, NULL, &local, &shared);
    ok(local == UINT32_MAX && shared == 0, "one increment reaches UINT32_MAX locally");
    rcgc_incref(o);
    expect++;
    rcgc__test_raw(o, &owner, &local, &shared);
    is_size(rcgc_refcount(o), (size_t)expect,
            "pitfall 9: the increment past UINT32_MAX keeps the count exact (2^32)");
    ok(local < UINT32_MAX && (shared >> RCGC__SHARED_SHIFT) > 0,
       "pitfall 9: part of the local count spilled into the shared count (local %u, shared %ld)",
       local, (long)(shared >> RCGC__SHARED_SHIFT));
    ok((uint64_t)local + (uint64_t)(shared >> RCGC__SHARED_SHIFT) == expect,
       "local + shared = exact count");
    ok(!(shared & (RCGC__SHARED_MERGED | RCGC__SHARED_IMMORTAL | RCGC__SHARED_QUEUED)),
       "spilling sets no flag");
    is_uint(owner & ~RCGC__OWNER_FLAGS, rcgc__test_tid(), "still owned, counted locally");
    for (i = 0; i < 10; i++)
        rcgc_incref(o);
    expect += 10;
    is_size(rcgc_refcount(o), (size_t)expect, "ten more increments, exact");
    for (i = 0; i < 12; i++)
        rcgc_decref(o);
    expect -= 12;
    is_size(rcgc_refcount(o), (size_t)expect, "twelve decrements, exact (UINT32_MAX - 1)");
    is_uint(fin(), 0, "not freed");

    /* the owner's last local decrement merges a huge shared count */
    rcgc__test_set_counts(o, 2, (intptr_t)1 << 31);
    rcgc_decref(o);
    rcgc_decref(o);                  /* local 1 -> 0: merge */
    rcgc__test_raw(o, &owner, &local, &shared);
    ok((owner & ~RCGC__OWNER_FLAGS) == 0 && (shared & RCGC__SHARED_MERGED) &&
       (shared >> RCGC__SHARED_SHIFT) == ((intptr_t)1 << 31),
       "the owner's last local decrement merges a 2^31 shared count exactly");
    is_size(rcgc_refcount(o), (size_t)1 << 31, "refcount 2^31 after the merge");
    rcgc__test_set_counts(o, 0, 1);  /* restore: one (merged) reference */
    rcgc_decref(o);
    is_uint(fin(), 1, "restored to count 1, the object frees normally");

    /* -- non-owner increments saturate the shared count -------------------- */
    o = rcgc_new(&num_type);
    rcgc_test_immortal_blocks[0] = rcgc__hdr(o);
    rcgc__test_set_counts(o, 1, SAT_COUNT - 2);
    is_size(rcgc_refcount(o), (size_t)SAT_COUNT - 1, "set_counts: shared count 2 below the bound");
    w = (b_work){ .obj = o };
    pthread_create(&tb, NULL, thread_b, &w);
    rcgc_blocking_begin();
    pthread_join(tb, NULL);
    rcgc_blocking_end();
    ok(w.increments_to_immortal >= 1 && w.increments_to_immortal <= 3,
       "pitfall 9: non-owner increments across the bound make it immortal (after %d)",
       w.increments_to_immortal);
    is_size(w.refcount_after, SIZE_MAX, "rcgc_refcount of an immortal object is SIZE_MAX");
    ok(w.word_min > 0 && (w.word_min >> RCGC__SHARED_SHIFT) >= SAT_COUNT - 8 &&
       (w.word_max >> RCGC__SHARED_SHIFT) <= SAT_COUNT + 8,
       "pitfall 9: 1000 more increments leave the count clamped at the bound, never wrapped");
    is_size(w.refcount_after_decrefs, SIZE_MAX, "5000 non-owner decrements are no-ops");
    for (i = 0; i < 5000; i++)
        rcgc_decref(o);               /* the owner's local 1 and then some */
    is_size(rcgc_refcount(o), SIZE_MAX, "owner decrements past its own count are no-ops");
    ok(shared_word(o) & RCGC__SHARED_IMMORTAL, "still IMMORTAL");
    is_uint(fin(), 1, "an immortal object is never finalized");

    /* -- the owner's spill reaches the bound ------------------------------- */
    o = rcgc_new(&num_type);
    rcgc_test_immortal_blocks[1] = rcgc__hdr(o);
    rcgc__test_set_counts(o, UINT32_MAX, SAT_COUNT - ((intptr_t)1 << 31));
    rcgc_incref(o);
    ok(shared_word(o) & RCGC__SHARED_IMMORTAL,
       "pitfall 9: an owner spill that reaches the bound makes it immortal");
    is_size(rcgc_refcount(o), SIZE_MAX, "refcount SIZE_MAX");
    rcgc_decref(o);
    rcgc_decref(o);
    is_size(rcgc_refcount(o), SIZE_MAX, "owner decrements leave it immortal");
    is_uint(fin(), 1, "never finalized");

    /* -- a merged object saturates; its non-owners decrement by fetch_sub -- */
    o = rcgc_new(&num_type);
    rcgc_test_immortal_blocks[2] = rcgc__hdr(o);
    rcgc__test_set_counts(o, 1, 5);
    rcgc_decref(o);                   /* the owner's last local reference: merged 5 */
    rcgc__test_set_counts(o, 0, SAT_COUNT - 1);
    rcgc_incref(o);                   /* owner word 0: we count on the shared word */
    ok((shared_word(o) & (RCGC__SHARED_MERGED | RCGC__SHARED_IMMORTAL)) ==
           (RCGC__SHARED_MERGED | RCGC__SHARED_IMMORTAL),
       "pitfall 9: a merged object's increment across the bound makes it immortal");
    for (i = 0; i < 5000; i++)
        rcgc_decref(o);               /* fetch_sub, then taken back */
    ok((shared_word(o) >> RCGC__SHARED_SHIFT) == SAT_COUNT,
       "5000 merged decrements leave the count at the bound (%ld)",
       (long)(shared_word(o) >> RCGC__SHARED_SHIFT));
    is_size(rcgc_refcount(o), SIZE_MAX, "still immortal");
    is_uint(fin(), 1, "never finalized");

    rcgc_shutdown();
    return done_testing();
}
