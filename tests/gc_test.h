/*
 * gc_test.h: what the unit tests share beyond TAP (tap.h).  Include after
 * "rcgc.h" and "internal.h".
 */
#ifndef RCGC_GC_TEST_H
#define RCGC_GC_TEST_H

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

#endif /* RCGC_GC_TEST_H */
