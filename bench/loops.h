/*
 * loops.h: the nanosecond-scale benchmark loops, written in C.
 *
 * A call from the C++ driver into C costs about 2 ns, more than most of
 * the operations measured here, so each function runs a whole batch of n
 * iterations and the driver (bench.cpp) calls it once per
 * State::KeepRunningBatch(n).
 *
 * Every pair loop does one operation, a compiler barrier, the opposite
 * operation, a compiler barrier: the same shape for the plain, atomic and
 * rcgc counters, so the ratios compare the operations and not the loops.
 */
#ifndef RCGC_BENCH_LOOPS_H
#define RCGC_BENCH_LOOPS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Baselines on counters private to loops.c (each on its own cache line).
   The counters return to their starting value after every batch; the
   getters let the driver check that nothing was lost. */
void bench_pair_nonatomic(size_t n);     /* plain int ++ / -- */
void bench_pair_atomic(size_t n);        /* C11 atomic_fetch_add / _sub, seq_cst */
void bench_pair_atomic_cas(size_t n);    /* fetch_add + compare-exchange loop for the
                                            decrement: the shape of rcgc's shared path */
long bench_nonatomic_value(void);
long bench_atomic_value(void);

/* rcgc_incref(obj) + rcgc_decref(obj), n times.  Whether this is the
   owner's path or the shared path depends only on which thread owns obj. */
void bench_pair_rcgc(void *obj, size_t n);

/* The same loop with its head moved by shift bytes (0, 16, 32 or 48)
   within a 64-byte block: shows how much of a timing is code placement.
   0, or EINVAL for another shift. */
int bench_pair_rcgc_shifted(void *obj, size_t n, unsigned shift);

/* rcgc_new(acyclic type) + rcgc_decref, n times.  0, or the errno of a
   failed rcgc_new. */
int bench_new_decref(size_t n);

/* malloc + free of the same number of bytes rcgc_new asks its allocator
   for (header + body), n times.  0, or ENOMEM. */
int bench_malloc_free(size_t n);

/* rcgc_ref_load(slot) + rcgc_decref, n times; slot must hold an object.
   0, or EINVAL if a load returned NULL. */
int bench_ref_load(void *holder, size_t n);

/* rcgc_safepoint(), n times. */
void bench_safepoint(size_t n);

/* Objects for the loops above.  bench_leaf_new: an object of an acyclic
   type with no references (NULL + errno on failure).  bench_holder_new:
   an object with one slot that holds a new reference to target. */
void *bench_leaf_new(void);
void *bench_holder_new(void *target);

/* The shared case: a separate attached thread creates an object (so it
   owns it), hands it over and waits inside rcgc_blocking_begin/_end,
   keeping its reference, until bench_foreign_stop.  The caller must be
   attached; both functions wait only inside a blocking region.  Returns 0
   and the object in *obj, or an errno. */
int  bench_foreign_start(void **obj);
void bench_foreign_stop(void);

/* The merged case: an object of the caller's whose counts are merged (a
   second thread took a reference, then the caller dropped its own: the
   owner's last local reference merges).  The caller holds the one
   reference left and counts as a non-owner.  NULL + errno on failure. */
void *bench_merged_new(void);

#ifdef __cplusplus
}
#endif

#endif /* RCGC_BENCH_LOOPS_H */
