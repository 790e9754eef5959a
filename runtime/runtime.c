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
 * The thread cache.  With malloc/free behind it (no hooks), a small object's
 * memory is allocated in blocks of a multiple of 16 bytes, and a freed block
 * goes on the freeing thread's list for its size class, which the thread's
 * next allocation of that class pops: no lock, no atomic, and the block is
 * usually still in cache.  A thread keeps at most RCGC__CACHE_BYTES (as
 * tcmalloc's thread caches do); the rest goes to free(), and so does the whole cache at detach.  Blocks freed
 * by a thread that is not attached (the reclaimer) go to free() at once.
 * AddressSanitizer builds keep no cache, so that it sees every free.
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

static inline size_t cache_class(size_t size)
{
    return (size + 15) / 16 - 1;           /* < RCGC__CACHE_CLASSES: cached */
}

void *rcgc__mem_alloc(size_t size)
{
    size_t c = cache_class(size);

    if (rcgc__rt.cache && c < RCGC__CACHE_CLASSES) {
        rcgc__thread *th = rcgc__tls_thread;
        void *p;

        if (th != NULL && (p = th->cache[c]) != NULL) {
            th->cache[c] = *(void **)p;
            th->cached -= (c + 1) * 16;
            return p;
        }
        return malloc((c + 1) * 16);
    }
    return rcgc__rt.opts.alloc(size, rcgc__rt.opts.alloc_ctx);
}

void rcgc__mem_release(rcgc__header *h)
{
    size_t prefix = (rcgc__u32_load_relaxed(&h->gc_bits) & RCGC__GC_TRACKED)
                        ? sizeof(rcgc__gclink) : 0;
    size_t size = prefix + sizeof(*h) + h->size, c = cache_class(size);
    void *p = (char *)h - prefix;

    if (rcgc__rt.cache && c < RCGC__CACHE_CLASSES) {
        rcgc__thread *th = rcgc__tls_thread;

        if (th != NULL && th->cached < RCGC__CACHE_BYTES) {
            *(void **)p = th->cache[c];
            th->cache[c] = p;
            th->cached += (c + 1) * 16;
        } else {
            free(p);
        }
        return;
    }
    rcgc__rt.opts.free(p, size, rcgc__rt.opts.alloc_ctx);
}

void rcgc__cache_flush(rcgc__thread *th)
{
    for (size_t c = 0; c < RCGC__CACHE_CLASSES; c++) {
        while (th->cache[c] != NULL) {
            void *p = th->cache[c];
            th->cache[c] = *(void **)p;
            free(p);
        }
    }
    th->cached = 0;
}

int rcgc_init(const rcgc_options *opts)
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
    return 0;
}

void rcgc_shutdown(void)
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

    pthread_mutex_lock(&rcgc__rt.lock);
    rcgc__rt.running = false;
    pthread_mutex_unlock(&rcgc__rt.lock);

    rcgc__epoch_stop();        /* every unlinked dead object is freed */
    rcgc__quarantine_flush();
}

void rcgc_reclaim_wait(void)
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
    if (!was_blocking)
        rcgc_blocking_end();
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
