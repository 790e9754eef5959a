/*
 * atomic.h: every atomic operation the runtime uses, memory order in the
 * name (mimalloc's habit).  The words are the one-member structs of
 * <rcgc/biased.h>, so a plain `x.v++` stands out in review and nothing here
 * needs _Atomic in a public header.
 *
 * Callers say, at each non-relaxed use, which operation it pairs with.
 * There is no standalone fence here: ThreadSanitizer does not model fences,
 * so every ordering is carried by the access itself.
 */
#ifndef RCGC_ATOMIC_H
#define RCGC_ATOMIC_H

#ifndef RCGC_BUILDING
#error "runtime/atomic.h is internal to rcgc"
#endif

#include <stdbool.h>
#include <stdint.h>

#include "rcgc.h"

/* A generic atomic integer for runtime-private state. */
typedef struct { uint64_t v; } rcgc__u64;

#define RCGC__ATOMIC_OPS(name, type, wtype)                                      \
    static inline type name##_load_relaxed(const wtype *a)                       \
    { return __atomic_load_n(&a->v, __ATOMIC_RELAXED); }                         \
    static inline type name##_load_acquire(const wtype *a)                       \
    { return __atomic_load_n(&a->v, __ATOMIC_ACQUIRE); }                         \
    static inline void name##_store_relaxed(wtype *a, type x)                    \
    { __atomic_store_n(&a->v, x, __ATOMIC_RELAXED); }                            \
    static inline type name##_load_seq_cst(const wtype *a)                       \
    { return __atomic_load_n(&a->v, __ATOMIC_SEQ_CST); }                         \
    static inline void name##_store_seq_cst(wtype *a, type x)                    \
    { __atomic_store_n(&a->v, x, __ATOMIC_SEQ_CST); }                            \
    static inline type name##_fetch_add_seq_cst(wtype *a, type x)                \
    { return __atomic_fetch_add(&a->v, x, __ATOMIC_SEQ_CST); }                   \
    static inline type name##_exchange_seq_cst(wtype *a, type x)                 \
    { return __atomic_exchange_n(&a->v, x, __ATOMIC_SEQ_CST); }                  \
    static inline bool name##_cas_relaxed(wtype *a, type *expected, type desired) \
    {                                                                            \
        return __atomic_compare_exchange_n(&a->v, expected, desired, 0,          \
                                           __ATOMIC_RELAXED, __ATOMIC_RELAXED);  \
    }                                                                            \
    static inline bool name##_cas_seq_cst(wtype *a, type *expected, type desired) \
    {                                                                            \
        return __atomic_compare_exchange_n(&a->v, expected, desired, 0,          \
                                           __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);  \
    }                                                                            \
    static inline void name##_store_release(wtype *a, type x)                    \
    { __atomic_store_n(&a->v, x, __ATOMIC_RELEASE); }                            \
    static inline type name##_fetch_add_relaxed(wtype *a, type x)                \
    { return __atomic_fetch_add(&a->v, x, __ATOMIC_RELAXED); }                   \
    static inline type name##_fetch_add_acq_rel(wtype *a, type x)                \
    { return __atomic_fetch_add(&a->v, x, __ATOMIC_ACQ_REL); }                   \
    static inline type name##_fetch_and_relaxed(wtype *a, type x)                \
    { return __atomic_fetch_and(&a->v, x, __ATOMIC_RELAXED); }                   \
    static inline type name##_fetch_and_acq_rel(wtype *a, type x)                \
    { return __atomic_fetch_and(&a->v, x, __ATOMIC_ACQ_REL); }                   \
    static inline type name##_fetch_or_relaxed(wtype *a, type x)                 \
    { return __atomic_fetch_or(&a->v, x, __ATOMIC_RELAXED); }                    \
    static inline type name##_fetch_or_acq_rel(wtype *a, type x)                 \
    { return __atomic_fetch_or(&a->v, x, __ATOMIC_ACQ_REL); }                    \
    static inline type name##_exchange_acq_rel(wtype *a, type x)                 \
    { return __atomic_exchange_n(&a->v, x, __ATOMIC_ACQ_REL); }                  \
    static inline bool name##_cas_acq_rel(wtype *a, type *expected, type desired) \
    {                                                                            \
        return __atomic_compare_exchange_n(&a->v, expected, desired, 0,          \
                                           __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);  \
    }                                                                            \
    static inline bool name##_cas_acquire(wtype *a, type *expected, type desired) \
    {                                                                            \
        return __atomic_compare_exchange_n(&a->v, expected, desired, 0,          \
                                           __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);  \
    }

RCGC__ATOMIC_OPS(rcgc__word, uintptr_t, rcgc__word)
RCGC__ATOMIC_OPS(rcgc__sword, intptr_t, rcgc__sword)
RCGC__ATOMIC_OPS(rcgc__u32, uint32_t, rcgc__u32)
RCGC__ATOMIC_OPS(rcgc__u64, uint64_t, rcgc__u64)

#undef RCGC__ATOMIC_OPS

/* A slot's pointer, accessed as an atomic pointer. */
static inline void *rcgc__slot_load_acquire(const rcgc_ref *slot)
{ return __atomic_load_n(&slot->rcgc_private_, __ATOMIC_ACQUIRE); }
static inline void *rcgc__slot_load_relaxed(const rcgc_ref *slot)
{ return __atomic_load_n(&slot->rcgc_private_, __ATOMIC_RELAXED); }
static inline void rcgc__slot_store_relaxed(rcgc_ref *slot, void *p)
{ __atomic_store_n(&slot->rcgc_private_, p, __ATOMIC_RELAXED); }
static inline void rcgc__slot_store_release(rcgc_ref *slot, void *p)
{ __atomic_store_n(&slot->rcgc_private_, p, __ATOMIC_RELEASE); }
static inline void *rcgc__slot_exchange_acq_rel(rcgc_ref *slot, void *p)
{ return __atomic_exchange_n(&slot->rcgc_private_, p, __ATOMIC_ACQ_REL); }
static inline bool rcgc__slot_cas_acq_rel(rcgc_ref *slot, void **expected, void *desired)
{
    return __atomic_compare_exchange_n(&slot->rcgc_private_, expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* The head of a lock-free stack (pushes by CAS, pops of the whole stack
   by exchange: no ABA).  seq_cst, so that a push and a lock holder's
   emptiness check on the same head are totally ordered (collector.c). */
typedef struct { void *v; } rcgc__ptr;

static inline void *rcgc__ptr_load_relaxed(const rcgc__ptr *a)
{ return __atomic_load_n(&a->v, __ATOMIC_RELAXED); }
static inline void *rcgc__ptr_load_acquire(const rcgc__ptr *a)
{ return __atomic_load_n(&a->v, __ATOMIC_ACQUIRE); }
static inline void rcgc__ptr_store_relaxed(rcgc__ptr *a, void *p)
{ __atomic_store_n(&a->v, p, __ATOMIC_RELAXED); }
static inline void rcgc__ptr_store_release(rcgc__ptr *a, void *p)
{ __atomic_store_n(&a->v, p, __ATOMIC_RELEASE); }
static inline void *rcgc__ptr_exchange_seq_cst(rcgc__ptr *a, void *p)
{ return __atomic_exchange_n(&a->v, p, __ATOMIC_SEQ_CST); }
static inline bool rcgc__ptr_cas_seq_cst(rcgc__ptr *a, void **expected, void *desired)
{
    return __atomic_compare_exchange_n(&a->v, expected, desired, 0,
                                       __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

#endif /* RCGC_ATOMIC_H */
