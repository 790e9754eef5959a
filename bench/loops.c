/*
 * loops.c: the benchmark loops (see loops.h).
 *
 * Fairness: each pair loop is "op; BARRIER; inverse op; BARRIER".  The
 * barrier is an empty asm with a memory clobber, so the compiler must do
 * each operation on memory and in order, and may neither fold the pair
 * away nor merge iterations; it emits no instruction.  Counters are
 * objects with external linkage, so the clobber covers them.
 */
#include "loops.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include <rcgc.h>

#define BARRIER() __asm__ __volatile__("" ::: "memory")

/* Every timed loop function starts on a 64-byte boundary, so where its
   loop falls in the 64-byte fetch blocks depends only on its own code,
   not on what the linker put before it.  It matters: on this project's
   Zen 5 machines the same owner loop takes from 0.5 to 1.2 ns per pair
   depending on its offset within a block (see bench_pair_rcgc_shifted). */
#define LOOP_FN __attribute__((aligned(64)))

/* Makes the compiler believe p is used (so malloc/free or new/decref pairs
   cannot be elided) without emitting anything. */
#define ESCAPE(p) __asm__ __volatile__("" : : "r"(p) : "memory")

/* ---- Baselines ---------------------------------------------------------- */

/* Each counter alone on its cache line, as an rcgc object's header is
   alone on its line in the rcgc loops. */
struct bench_plain_counter { _Alignas(64) int v; };
struct bench_atomic_counter { _Alignas(64) atomic_long v; };

struct bench_plain_counter  bench_plain_counter;
struct bench_atomic_counter bench_atomic_counter;

LOOP_FN void bench_pair_nonatomic(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bench_plain_counter.v++;
        BARRIER();
        bench_plain_counter.v--;
        BARRIER();
    }
}

LOOP_FN void bench_pair_atomic(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        atomic_fetch_add(&bench_atomic_counter.v, 1);   /* seq_cst, as the brief asks */
        BARRIER();
        atomic_fetch_sub(&bench_atomic_counter.v, 1);
        BARRIER();
    }
}

LOOP_FN void bench_pair_atomic_cas(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        long old;

        atomic_fetch_add_explicit(&bench_atomic_counter.v, 1, memory_order_relaxed);
        BARRIER();
        old = atomic_load_explicit(&bench_atomic_counter.v, memory_order_relaxed);
        while (!atomic_compare_exchange_weak_explicit(&bench_atomic_counter.v, &old,
                                                      old - 1, memory_order_release,
                                                      memory_order_relaxed))
            ;
        BARRIER();
    }
}

long bench_nonatomic_value(void)
{
    return bench_plain_counter.v;
}

long bench_atomic_value(void)
{
    return atomic_load(&bench_atomic_counter.v);
}

/* ---- rcgc --------------------------------------------------------------- */

LOOP_FN void bench_pair_rcgc(void *obj, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rcgc_incref(obj);
        BARRIER();
        rcgc_decref(obj);
        BARRIER();
    }
}

/*
 * The owner loop again, moved by 0, 16, 32 or 48 bytes: the asm aligns
 * and pads (nops run once per call, before the loop), so the loop head
 * lands in each 16-byte phase of a 64-byte block.  Timings that differ
 * across the four are code placement, not the counting; a change to the
 * inline path that moves BM_pair_owner but not the range of these four
 * moved only the placement.
 */
#define PAIR_RCGC_SHIFTED(K)                                                \
    LOOP_FN __attribute__((noinline)) static void                           \
    pair_rcgc_shift_##K(void *obj, size_t n)                                \
    {                                                                       \
        __asm__ __volatile__(".p2align 6\n\t.if " #K "\n\t"                 \
                             ".skip " #K ", 0x90\n\t.endif");               \
        for (size_t i = 0; i < n; i++) {                                    \
            rcgc_incref(obj);                                               \
            BARRIER();                                                      \
            rcgc_decref(obj);                                               \
            BARRIER();                                                      \
        }                                                                   \
    }

PAIR_RCGC_SHIFTED(0)
PAIR_RCGC_SHIFTED(16)
PAIR_RCGC_SHIFTED(32)
PAIR_RCGC_SHIFTED(48)

int bench_pair_rcgc_shifted(void *obj, size_t n, unsigned shift)
{
    switch (shift) {
    case 0:  pair_rcgc_shift_0(obj, n);  return 0;
    case 16: pair_rcgc_shift_16(obj, n); return 0;
    case 32: pair_rcgc_shift_32(obj, n); return 0;
    case 48: pair_rcgc_shift_48(obj, n); return 0;
    }
    return EINVAL;
}

#define LEAF_SIZE 16

static const rcgc_type leaf_type = {
    .name = "bench_leaf",
    .size = LEAF_SIZE,
};

struct holder {
    rcgc_ref slot;
};

static void holder_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((struct holder *)obj)->slot, ctx);
}

static const rcgc_type holder_type = {
    .name = "bench_holder",
    .size = sizeof(struct holder),
    .traverse = holder_traverse,
    .flags = RCGC_TYPE_ACYCLIC,
};

void *bench_leaf_new(void)
{
    return rcgc_new(&leaf_type);
}

void *bench_holder_new(void *target)
{
    struct holder *holder = rcgc_new(&holder_type);

    if (holder != NULL)
        rcgc_ref_init(&holder->slot, target);
    return holder;
}

LOOP_FN int bench_new_decref(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        void *obj = rcgc_new(&leaf_type);

        if (obj == NULL)
            return errno ? errno : ENOMEM;
        ESCAPE(obj);
        rcgc_decref(obj);
        BARRIER();
    }
    return 0;
}

LOOP_FN int bench_malloc_free(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        void *p = malloc(sizeof(rcgc__header) + LEAF_SIZE);

        if (p == NULL)
            return ENOMEM;
        ESCAPE(p);
        free(p);
        BARRIER();
    }
    return 0;
}

LOOP_FN int bench_ref_load(void *holder, size_t n)
{
    rcgc_ref *slot = &((struct holder *)holder)->slot;

    for (size_t i = 0; i < n; i++) {
        void *obj = rcgc_ref_load(slot);

        if (obj == NULL)
            return EINVAL;
        BARRIER();
        rcgc_decref(obj);
        BARRIER();
    }
    return 0;
}

LOOP_FN void bench_safepoint(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rcgc_safepoint();
        BARRIER();
    }
}

/* ---- The foreign owner -------------------------------------------------- */

/* One foreign owner at a time (benchmarks run one after another). */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t  cond;       /* signals ready and stop */
    pthread_t       thread;
    void           *obj;        /* written by the owner before ready */
    int             ready;      /* owner -> benchmark thread: obj or error set */
    int             error;
    int             stop;       /* benchmark thread -> owner */
} foreign = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .cond = PTHREAD_COND_INITIALIZER,
};

static void *foreign_owner_main(void *arg)
{
    void *obj = NULL;
    int attached, error;

    (void)arg;
    error = rcgc_thread_attach();
    attached = error == 0;
    if (attached) {
        obj = rcgc_new(&leaf_type);
        if (obj == NULL)
            error = errno ? errno : ENOMEM;
    }

    pthread_mutex_lock(&foreign.lock);
    foreign.obj = obj;
    foreign.error = error;
    foreign.ready = 1;
    pthread_cond_broadcast(&foreign.cond);
    pthread_mutex_unlock(&foreign.lock);
    if (error != 0) {
        if (attached)
            rcgc_thread_detach();
        return NULL;
    }

    /* Keep the reference, touch nothing, delay no grace period. */
    rcgc_blocking_begin();
    pthread_mutex_lock(&foreign.lock);
    while (!foreign.stop)
        pthread_cond_wait(&foreign.cond, &foreign.lock);
    pthread_mutex_unlock(&foreign.lock);
    rcgc_blocking_end();

    rcgc_decref(obj);
    rcgc_thread_detach();
    return NULL;
}

static void *merged_taker_main(void *obj)
{
    if (rcgc_thread_attach() != 0)
        return NULL;
    rcgc_incref(obj);           /* on the shared word: not its owner */
    rcgc_thread_detach();
    return obj;
}

void *bench_merged_new(void)
{
    void *obj = bench_leaf_new(), *took = NULL;
    pthread_t t;
    int error;

    if (obj == NULL)
        return NULL;
    rcgc_blocking_begin();
    error = pthread_create(&t, NULL, merged_taker_main, obj);
    if (error == 0)
        pthread_join(t, &took);
    rcgc_blocking_end();
    if (took == NULL) {
        rcgc_decref(obj);
        errno = error ? error : EAGAIN;
        return NULL;
    }
    rcgc_decref(obj);           /* our local reference, the last: merged */
    return obj;
}

int bench_foreign_start(void **obj)
{
    int error;

    foreign.obj = NULL;
    foreign.ready = 0;
    foreign.error = 0;
    foreign.stop = 0;
    error = pthread_create(&foreign.thread, NULL, foreign_owner_main, NULL);
    if (error != 0)
        return error;

    rcgc_blocking_begin();
    pthread_mutex_lock(&foreign.lock);
    while (!foreign.ready)
        pthread_cond_wait(&foreign.cond, &foreign.lock);
    error = foreign.error;
    *obj = foreign.obj;
    pthread_mutex_unlock(&foreign.lock);
    if (error != 0)
        pthread_join(foreign.thread, NULL);
    rcgc_blocking_end();
    return error;
}

void bench_foreign_stop(void)
{
    pthread_mutex_lock(&foreign.lock);
    foreign.stop = 1;
    pthread_cond_broadcast(&foreign.cond);
    pthread_mutex_unlock(&foreign.lock);

    rcgc_blocking_begin();
    pthread_join(foreign.thread, NULL);
    rcgc_blocking_end();
}
