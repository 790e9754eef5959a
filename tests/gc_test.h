/*
 * gc_test.h: what the unit tests share beyond TAP (tap.h).  Include after
 * "rcgc.h", "internal.h" and "tap.h".
 */
#ifndef RCGC_GC_TEST_H
#define RCGC_GC_TEST_H

#include <stddef.h>
#include <stdint.h>

/* Sanitizer builds run smaller cases (and cannot replace malloc). */
#define UNDER_SANITIZER (RCGC_TSAN || RCGC_ASAN)

/* Objects created and not yet reclaimed (rcgc_stats.live). */
static inline uint64_t live_now(void)
{
    rcgc_stats st;

    rcgc_get_stats(&st);
    return st.live;
}

/* n garbage 2-cycles of `type`, whose slot at byte offset `slot` each
   points at the other, dropped by this thread (a safepoint every 1024);
   bails out when rcgc_new fails. */
static inline void drop_pairs_of(const rcgc_type *type, size_t slot, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *a = rcgc_new(type), *b = rcgc_new(type);

        if (a == NULL || b == NULL)
            bail_out("out of memory");
        rcgc_ref_init((rcgc_ref *)(a + slot), b);
        rcgc_ref_init((rcgc_ref *)(b + slot), a);
        rcgc_decref(a);
        rcgc_decref(b);
        if (i % 1024 == 0)
            rcgc_safepoint();
    }
}

/* A garbage ring of n objects of `type`, each one's slot at byte offset
   `slot` pointing at the next, dropped by this thread; bails out when
   rcgc_new fails. */
static inline void drop_ring_of(const rcgc_type *type, size_t slot, size_t n)
{
    char *first = rcgc_new(type), *prev = first;

    if (first == NULL)
        bail_out("out of memory");
    for (size_t i = 1; i < n; i++) {
        char *next = rcgc_new(type);

        if (next == NULL)
            bail_out("out of memory");
        rcgc_ref_init((rcgc_ref *)(prev + slot), next);
        if (prev != first)
            rcgc_decref(prev);
        prev = next;
    }
    rcgc_ref_init((rcgc_ref *)(prev + slot), first);
    if (prev != first)
        rcgc_decref(prev);
    rcgc_decref(first);
}

#endif /* RCGC_GC_TEST_H */
