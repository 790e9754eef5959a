/*
 * runtime.c: starting and stopping the runtime, the allocator hooks and the
 * statistics.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

rcgc__runtime rcgc__rt = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void *default_alloc(size_t size, void *ctx)
{
    (void)ctx;
    return malloc(size);
}

static void default_free(void *p, size_t size, void *ctx)
{
    (void)size;
    (void)ctx;
    free(p);
}

/*
 * The thread cache and the central pool.  With malloc/free behind them (no
 * hooks), a small object's memory is allocated in blocks of a multiple of
 * 16 bytes, and a freed block goes on the freeing thread's list for its
 * size class, which the thread's next allocation of that class pops: no
 * lock, no atomic, and the block is usually still in cache.
 *
 * A thread keeps at most RCGC__CACHE_BYTES (as tcmalloc's thread caches
 * do).  Past that, a whole class list goes to the central pool as one
 * batch, up to POOL_BYTES in all, and a thread whose list is empty takes a
 * batch from the pool before it calls malloc.  That is how memory freed by
 * the collector, which frees what mutators made, goes back to mutators
 * without glibc: a block that another thread frees lands in a fast bin of
 * the owner's arena, and the owner's next malloc that finds its arena's
 * top used up consolidates every fast bin, milliseconds inside a mutator's
 * call after a big collection.  The pool's lock is only ever tried (busy:
 * malloc or free it is), never waited for, but by the decay below,
 * rcgc_reclaim_wait and shutdown.
 *
 * Decay.  The pool keeps POOL_KEEP for good; what is above it, up to
 * POOL_BYTES, is a big collection's garbage waiting for the mutators'
 * next allocations, and goes back to free() once the pool has gone
 * POOL_DECAY_NS unused (no batch given or taken): on the collector
 * thread, which wakes for it (collector.c, idle_wait), after a collection
 * (rcgc_collect, in manual mode), or at rcgc_reclaim_wait.  So a
 * collection of 10^6 objects frees into the pool, where a collection
 * that met a full pool called free() for every block past it (with a cap
 * of 32 MiB: BM_collect_graph's step 7 34.5 -> 19.8 ms, pairs' 12.9 ->
 * 6.1, ring's 20.2 -> 15.8, step probe), and the blocks go back to the
 * mutators' next allocations, or to free() a second later, off the
 * mutators' threads.  As jemalloc's decay of dirty pages (ten seconds,
 * no cap), the price is memory held: up to POOL_BYTES for a second after
 * the last big collection.
 *
 * Blocks freed by a thread that is not attached (the reclaimer) go to
 * free() at once; a thread's cache goes to free() at detach, the pool at
 * shutdown.  AddressSanitizer builds keep neither, so that it sees every
 * free.
 */
#if defined(__SANITIZE_ADDRESS__)
#define CACHE_ALLOWED false
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CACHE_ALLOWED false
#endif
#endif
#ifndef CACHE_ALLOWED
#define CACHE_ALLOWED true
#endif

#define POOL_KEEP     RCGC__POOL_KEEP
#define POOL_BYTES    RCGC__POOL_BYTES
#define POOL_DECAY_NS ((uint64_t)1000000000)

/* A free block's words: the next block of its list; and in the first
   block of a batch in the pool, the batch's length and the next batch.
   Object blocks have at least 48 bytes. */
#define BLOCK_NEXT(p)   (((void **)(p))[0])
#define BATCH_COUNT(p)  (((uintptr_t *)(p))[1])
#define BATCH_NEXT(p)   (((void **)(p))[2])

static struct {
    pthread_mutex_t lock;
    void           *batches[RCGC__CACHE_CLASSES];
    size_t          bytes;
    uint64_t        used_at;       /* last batch given or taken (CLOCK_MONOTONIC ns) */
    uint64_t        decay_ns;      /* POOL_DECAY_NS; a test may change it */
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .decay_ns = POOL_DECAY_NS };

static inline size_t cache_class(size_t size)
{
    return (size + 15) / 16 - 1;           /* < RCGC__CACHE_CLASSES: cached */
}

static inline size_t class_bytes(size_t c)
{
    return (c + 1) * 16;
}

/* A batch of class c from the pool into th's empty list; false if none
   (or the pool is busy). */
static bool pool_take(rcgc__thread *th, size_t c)
{
    void *b;

    if (__atomic_load_n(&pool.batches[c], __ATOMIC_RELAXED) == NULL ||
        pthread_mutex_trylock(&pool.lock) != 0)
        return false;
    b = pool.batches[c];
    if (b != NULL) {
        __atomic_store_n(&pool.batches[c], BATCH_NEXT(b), __ATOMIC_RELAXED);
        __atomic_store_n(&pool.bytes, pool.bytes - BATCH_COUNT(b) * class_bytes(c),
                         __ATOMIC_RELAXED);
        th->cache[c] = b;           /* under the lock, as in pool_give */
        th->ncached[c] = (uint32_t)BATCH_COUNT(b);
        th->cached += BATCH_COUNT(b) * class_bytes(c);
        __atomic_store_n(&pool.used_at, rcgc__monotonic_ns(), __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&pool.lock);
    return b != NULL;
}

/* th's whole list of class c to the pool; false if the pool is full (or
   busy: nobody waits for its lock). */
static bool pool_give(rcgc__thread *th, size_t c)
{
    void *b = th->cache[c];
    size_t n = th->ncached[c], bytes = n * class_bytes(c);
    bool kept = false;

    if (pthread_mutex_trylock(&pool.lock) != 0)
        return false;
    if (pool.bytes + bytes <= POOL_BYTES) {
        BATCH_COUNT(b) = n;
        BATCH_NEXT(b) = pool.batches[c];
        __atomic_store_n(&pool.batches[c], b, __ATOMIC_RELAXED);
        __atomic_store_n(&pool.bytes, pool.bytes + bytes, __ATOMIC_RELAXED);
        /* Under the lock: a fork (which takes it) never finds the batch
           both in the pool and in our list. */
        th->cache[c] = NULL;
        th->ncached[c] = 0;
        th->cached -= bytes;
        __atomic_store_n(&pool.used_at, rcgc__monotonic_ns(), __ATOMIC_RELAXED);
        kept = true;
    }
    pthread_mutex_unlock(&pool.lock);
    return kept;
}

void *rcgc__mem_alloc(size_t size)
{
    size_t c = cache_class(size);

    if (rcgc__rt.cache && c < RCGC__CACHE_CLASSES) {
        rcgc__thread *th = rcgc__tls_thread;
        void *p;

        if (th != NULL && (th->cache[c] != NULL || pool_take(th, c))) {
            p = th->cache[c];
            th->cache[c] = BLOCK_NEXT(p);
            th->ncached[c]--;
            th->cached -= class_bytes(c);
            return p;
        }
        return malloc(class_bytes(c));
    }
    return rcgc__rt.opts.alloc(size, rcgc__rt.opts.alloc_ctx);
}

void rcgc__mem_release(rcgc__header *h)
{
    uint32_t bits = rcgc__u32_load_relaxed(&h->gc_bits);
    size_t prefix = rcgc__front_bytes(bits);
    size_t size = prefix + sizeof(*h) + rcgc__body_size(h, bits), c = cache_class(size);
    void *p = (char *)h - prefix;

    if (rcgc__rt.cache && c < RCGC__CACHE_CLASSES) {
        rcgc__thread *th = rcgc__tls_thread;

        if (th == NULL) {
            free(p);
            return;
        }
        if (th->cached >= RCGC__CACHE_BYTES) {
            /* Full: the list to the pool if it has room, else this block
               to free() while it is hot. */
            if (th->cache[c] == NULL ||
                __atomic_load_n(&pool.bytes, __ATOMIC_RELAXED) +
                        th->ncached[c] * class_bytes(c) > POOL_BYTES ||
                !pool_give(th, c)) {
                free(p);
                return;
            }
        }
        BLOCK_NEXT(p) = th->cache[c];
        th->cache[c] = p;
        th->ncached[c]++;
        th->cached += class_bytes(c);
        return;
    }
    rcgc__rt.opts.free(p, size, rcgc__rt.opts.alloc_ctx);
}

static void free_list(void *b)
{
    while (b != NULL) {
        void *next = BLOCK_NEXT(b);
        free(b);
        b = next;
    }
}

void rcgc__cache_flush(rcgc__thread *th)
{
    for (size_t c = 0; c < RCGC__CACHE_CLASSES; c++) {
        void *list = th->cache[c];

        /* Off the record first: a fork's child that flushes this cache for
           a thread stopped here frees no block twice. */
        th->cache[c] = NULL;
        th->ncached[c] = 0;
        free_list(list);
    }
    th->cached = 0;
}

/* Gives batches back to free() until the pool holds `keep` bytes at most;
   returns the bytes given back.  The batches leave the pool under its
   lock and are freed after it: a fork's child leaks them, at worst, and
   frees nothing twice. */
static size_t pool_shrink(size_t keep)
{
    void *out = NULL;
    size_t bytes = 0;

    pthread_mutex_lock(&pool.lock);
    for (size_t c = 0; c < RCGC__CACHE_CLASSES && pool.bytes > keep; c++) {
        void *b;

        while ((b = pool.batches[c]) != NULL && pool.bytes > keep) {
            size_t n = BATCH_COUNT(b) * class_bytes(c);

            __atomic_store_n(&pool.batches[c], BATCH_NEXT(b), __ATOMIC_RELAXED);
            __atomic_store_n(&pool.bytes, pool.bytes - n, __ATOMIC_RELAXED);
            BATCH_NEXT(b) = out;
            out = b;
            bytes += n;
        }
    }
    pthread_mutex_unlock(&pool.lock);
    for (void *b = out, *next; b != NULL; b = next) {
        next = BATCH_NEXT(b);
        free_list(b);
    }
    return bytes;
}

/* When the pool's bytes above POOL_KEEP are due back to free()
   (CLOCK_MONOTONIC ns), or 0 if it holds no more than that. */
uint64_t rcgc__mem_pool_due(void)
{
    if (__atomic_load_n(&pool.bytes, __ATOMIC_RELAXED) <= POOL_KEEP)
        return 0;
    return __atomic_load_n(&pool.used_at, __ATOMIC_RELAXED) +
           __atomic_load_n(&pool.decay_ns, __ATOMIC_RELAXED);
}

/* Gives batches back to free() until the pool holds POOL_KEEP at most, if
   they are due (see "Decay"); returns the bytes given back. */
size_t rcgc__mem_pool_decay(void)
{
    uint64_t due = rcgc__mem_pool_due();

    if (due == 0 || rcgc__monotonic_ns() < due)
        return 0;
    return pool_shrink(POOL_KEEP);
}

/* Tests: the pool's bytes; and its decay, if nonzero (returning the one
   before). */
size_t rcgc__test_pool_bytes(uint64_t decay_ns, uint64_t *before)
{
    *before = __atomic_load_n(&pool.decay_ns, __ATOMIC_RELAXED);
    if (decay_ns != 0)
        __atomic_store_n(&pool.decay_ns, decay_ns, __ATOMIC_RELAXED);
    return __atomic_load_n(&pool.bytes, __ATOMIC_RELAXED);
}

static void pool_flush(void)
{
    pool_shrink(0);
}

void rcgc__mem_fork(enum rcgc__fork_step step)
{
    rcgc__fork_lock_stripes(&pool.lock, 1, 0, step);
}

static int init(const rcgc_options *opts)
{
    rcgc_options o;
    bool cache;
    int err;

    if (opts != NULL)
        o = *opts;
    else
        memset(&o, 0, sizeof(o));
    if ((o.alloc == NULL) != (o.free == NULL))
        return EINVAL;
    cache = CACHE_ALLOWED && o.alloc == NULL;
    if (o.alloc == NULL) {
        o.alloc = default_alloc;
        o.free = default_free;
        o.alloc_ctx = NULL;
    }

    pthread_mutex_lock(&rcgc__rt.lock);
    if (rcgc__rt.running) {
        pthread_mutex_unlock(&rcgc__rt.lock);
        return EBUSY;
    }
    err = rcgc__epoch_start();
    if (err != 0) {
        pthread_mutex_unlock(&rcgc__rt.lock);
        return err;
    }
    rcgc__rt.opts = o;
    rcgc__rt.cache = cache;
    rcgc__rt.running = true;
    rcgc__rt.retired_allocated = 0;
    rcgc__rt.retired_freed = 0;
    pthread_mutex_unlock(&rcgc__rt.lock);

    err = rcgc_thread_attach();
    if (err != 0 && err != EBUSY) {
        rcgc_shutdown();
        return err;
    }
    err = rcgc__gc_start(&o);
    if (err != 0) {
        rcgc_shutdown();
        return err;
    }
    rcgc__fork_setup();
    return 0;
}

static void shutdown_runtime(void)
{
    size_t others;
    bool attached = rcgc__tls_thread != NULL;

    pthread_mutex_lock(&rcgc__rt.lock);
    if (!rcgc__rt.running) {
        pthread_mutex_unlock(&rcgc__rt.lock);
        return;
    }
    others = rcgc__rt.nthreads - (attached ? 1 : 0) - rcgc__gc_thread_count();
    pthread_mutex_unlock(&rcgc__rt.lock);
    if (others != 0) {
        /* Tearing down under attached threads would free what they use:
           the runtime stays up for them (daemon threads, PITFALLS 32). */
        rcgc_assert(0, "rcgc_shutdown", "other threads are still attached", NULL);
        fprintf(stderr, "rcgc: rcgc_shutdown: %zu threads still attached; "
                        "the runtime stays up\n", others);
        return;
    }
    /* The collector thread goes first; the last collections run here. */
    rcgc__gc_stop_thread();
    if (!attached && rcgc_thread_attach() != 0)
        return;
    rcgc__gc_shutdown_collect();
    rcgc__registry_flush();
    rcgc_thread_detach();
    rcgc__roots_pool_free();   /* every thread's spares are back in it now */

    pthread_mutex_lock(&rcgc__rt.lock);
    rcgc__rt.running = false;
    pthread_mutex_unlock(&rcgc__rt.lock);

    rcgc__epoch_stop();        /* every unlinked dead object is freed */
    rcgc__quarantine_flush();
    pool_flush();
}

static void reclaim_wait(void)
{
    rcgc__thread *th = rcgc__tls_thread;
    bool was_blocking;

    if (th == NULL) {
        rcgc_assert(0, "rcgc_reclaim_wait", "thread not attached", NULL);
        return;
    }
    /* Objects released while a root buffer named them keep their memory
       until a collection consumes the entry: consume them all. */
    if (!th->in_blocking) {
        rcgc_collect();
        rcgc__registry_flush();    /* dead objects a registry holder left */
    }
    /* Offline while waiting: the grace period must not wait for us. */
    was_blocking = th->in_blocking;
    if (!was_blocking)
        rcgc_blocking_begin();
    rcgc__epoch_wait_reclaimed();
    rcgc__quarantine_flush();
    rcgc__cache_flush(th);         /* and back to malloc: ours, and the pool */
    pool_flush();
    if (!was_blocking)
        rcgc_blocking_end();
}

/*
 * Cancellation.  The calls that wait (rcgc_init for the collector thread
 * to start, rcgc_shutdown for it to end and for the last reclamation,
 * rcgc_reclaim_wait for the reclaimer, rcgc_collect for its collection)
 * are no cancellation points, though the waits inside them are: a thread
 * cancelled there would leave a lock of the runtime held, a count of
 * waiters wrong, or a collection half done, and the next caller would
 * wait forever.  A cancellation pending meanwhile acts at the thread's next
 * cancellation point.
 */
int rcgc_init(const rcgc_options *opts)
{
    int cancel, err;

    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    err = init(opts);
    pthread_setcancelstate(cancel, NULL);
    return err;
}

void rcgc_shutdown(void)
{
    int cancel;

    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    shutdown_runtime();
    pthread_setcancelstate(cancel, NULL);
}

void rcgc_reclaim_wait(void)
{
    int cancel;

    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    reclaim_wait();
    pthread_setcancelstate(cancel, NULL);
}

void rcgc_get_stats(rcgc_stats *out)
{
    uint64_t allocated, freed = 0;
    rcgc__thread *th;

    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&rcgc__rt.lock);
    /* Frees first, then allocations: an object's allocation happens-before
       its free, so with acquire loads in this order live never goes
       negative. */
    freed = rcgc__rt.retired_freed;
    for (th = rcgc__rt.threads; th != NULL; th = th->all_next)
        freed += rcgc__u64_load_acquire(&th->freed);      /* pairs with rcgc__counter_bump */
    allocated = rcgc__rt.retired_allocated;
    for (th = rcgc__rt.threads; th != NULL; th = th->all_next)
        allocated += rcgc__u64_load_acquire(&th->allocated);
    pthread_mutex_unlock(&rcgc__rt.lock);
    rcgc__gc_fill_stats(out);
    out->allocated = allocated;
    out->freed = freed;
    out->live = allocated >= freed ? allocated - freed : 0;
}
