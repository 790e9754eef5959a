/*
 * gc_cases.h: the collector benchmarks' workloads, written in C.
 *
 * Builders make garbage of objects of a tracked type with two slots
 * (traverse, no RCGC_TYPE_ACYCLIC), each object made a candidate root by
 * the decrement that drops the builder's own reference; the driver
 * (bench.cpp) then times one rcgc_collect().  Binary trees and the pause
 * measurement run whole here, so the driver only reads their results.
 *
 * Every function needs an attached caller.  Those that return int return
 * 0, or the errno of a failed rcgc_new / malloc / pthread call.
 */
#ifndef RCGC_BENCH_GC_CASES_H
#define RCGC_BENCH_GC_CASES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* n objects (n even) as n/2 garbage 2-cycles: a <-> b. */
int bench_gc_pairs(size_t n);

/* One garbage ring of n objects (n >= 1): each slot a to the next. */
int bench_gc_ring(size_t n);

/* n objects, each with two slots pointing to objects drawn at random
   (splitmix64 from seed; self-edges allowed).  Objects that no other
   object points to die by counting when the builder drops them (about
   e^-2 of them, and what only they reached); the rest is garbage for the
   collector.  *garbage (if not NULL) receives how many objects are left
   alive for it, from the change in rcgc_get_stats().live. */
int bench_gc_graph(size_t n, uint64_t seed, size_t *garbage);

/* BM_collect_pairs_floor: the memory work alone that a concurrent trial
   deletion of bench_gc_pairs(n)'s garbage cannot do without, timed on n
   malloc'd blocks of a tracked object's size (80 bytes: link, header,
   two slots) in 2-cycles, in rounds of 5000 as the collector's own, with
   no protocol, registry, member table or root buffer: per block a flag
   (a CAS on one word and a fetch_or on the next, as rcgc__pin_flag), a
   read of its words and its partner's (step 4), a CAS (the Delta-test)
   and free().  With atomics 0 the same passes by plain loads and stores:
   a single-threaded collector's floor.  *ns receives the time of the
   passes; the blocks are freed by the last.  Needs no rcgc. */
int bench_gc_floor(size_t n, int atomics, uint64_t *ns);

/* Live objects for BM_livegarbage: n objects (n even) in 2-cycles, each
   cycle held by one reference in the returned array (n/2 entries; NULL
   with errno on failure).  Build, then one rcgc_collect() examines them
   once; they are never candidates again while held.  _free drops the
   references (a later rcgc_collect reclaims them) and the array. */
void **bench_gc_live_new(size_t n);
void   bench_gc_live_free(void **live, size_t n);

/* Benchmarks Game binary-trees with max depth `depth` (>= 6): a stretch
   tree of depth+1, a long-lived tree of depth, then for d = 4, 6, ...,
   depth, 2^(depth - d + 4) trees of depth d, each built, checked (nodes
   counted by walking it) and freed.  *checked receives the sum of every
   check, which must equal bench_bintree_expected(depth).
   _rcgc: nodes are rcgc objects of an RCGC_TYPE_ACYCLIC type with two
   slots (children stored with rcgc_ref_init, read with rcgc_ref_load), a
   safepoint after each tree.  _malloc: plain malloc/free nodes of the
   same body size. */
int      bench_bintree_rcgc(int depth, uint64_t *checked);
int      bench_bintree_malloc(int depth, uint64_t *checked);
uint64_t bench_bintree_expected(int depth);

/* BM_pause: with automatic collections off, builds a bench_gc_graph of
   nobjects, starts nmutators attached threads doing counting work
   (incref/decref of an object of their own and of objects another thread
   owns, new + decref of tracked objects, garbage 2-cycles, a safepoint
   every 64 rounds), each call timed with CLOCK_MONOTONIC; then turns
   automatic collections on, calls rcgc_collect() (its wall time is
   collect_ns), stops the mutators and turns automatic collections off
   again.  Mutator timings cover the whole time they run, before, during
   and after the collection. */
typedef struct bench_pause_result {
    uint64_t ops;              /* timed calls, all mutators */
    uint64_t op_max_ns;        /* longest single call */
    int      op_max_kind;      /* BENCH_OP_* of that call */
    uint64_t calm_max_ns;      /* longest single call in a round of ~600
                                  calls during which the mutator suffered no
                                  involuntary context switch (getrusage
                                  ru_nivcsw): not explained by the scheduler
                                  of this machine (a hypervisor's steal time
                                  is invisible here) */
    int      calm_max_kind;
    int      calm_max_slept;   /* 1 if the mutator slept (a voluntary context
                                  switch: a lock, a wait) in that round */
    uint64_t op_p9999_ns;      /* 99.99th percentile of a call (upper end of
                                  its power-of-two bucket) */
    uint64_t ops_over_100us;   /* calls longer than 100 us */
    uint64_t over_100us_kind[16];  /* ... of each BENCH_OP_* */
    /* The control: after every timed call, a call that does nothing is
       timed the same way; as many of them, as exposed to the machine. */
    uint64_t noop_max_ns;      /* longest no-op call */
    uint64_t noop_calm_max_ns; /* ... in the rounds calm_max_ns looks at */
    uint64_t noop_over_100us;  /* no-op calls longer than 100 us */
    uint64_t op_ns, noop_ns;   /* the time spent in calls, and in no-ops,
                                  of up to 100 us: how exposed each kind was
                                  to the machine's stalls (a call twice as
                                  long is twice as likely to suffer one) */
    uint64_t op_ns_kind[16];   /* op_ns of each BENCH_OP_* */
    uint64_t gap_max_ns;       /* longest time between the end of one call
                                  and the start of the next (the loop's own
                                  work: anything above ~1 us is preemption) */
    uint64_t invol_switches;   /* involuntary context switches of the
                                  mutators while they ran */
    uint64_t collect_ns;       /* wall time of the rcgc_collect() */
    size_t   collected;        /* what it returned */
    size_t   garbage;          /* objects of the graph left for it */
    uint64_t stats_pause_before, stats_pause_after;  /* pause_max_ns */
} bench_pause_result;

enum {
    BENCH_OP_INCREF_OWN,       /* incref/decref of the mutator's own object */
    BENCH_OP_DECREF_OWN,       /*   (the decrement makes it a candidate) */
    BENCH_OP_INCREF_SHARED,    /* incref/decref of an object another thread */
    BENCH_OP_DECREF_SHARED,    /*   owns (the shared path; a candidate too) */
    BENCH_OP_NEW,              /* rcgc_new of a tracked object */
    BENCH_OP_DECREF_LAST,      /* the decrement that frees a new object */
    BENCH_OP_STORE,            /* rcgc_ref_init closing a 2-cycle */
    BENCH_OP_DECREF_CYCLE,     /* dropping a 2-cycle member (a candidate) */
    BENCH_OP_SAFEPOINT,
    BENCH_OP_KINDS
};
const char *bench_op_name(int kind);

int bench_pause_run(size_t nobjects, int nmutators, bench_pause_result *out);

#ifdef __cplusplus
}
#endif

#endif /* RCGC_BENCH_GC_CASES_H */
