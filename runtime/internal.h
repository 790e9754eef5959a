/*
 * internal.h: declarations shared between the runtime's files, grouped under
 * the file that defines them.  Not installed; tests include it for the
 * rcgc__test_* hooks.
 */
#ifndef RCGC_INTERNAL_H
#define RCGC_INTERNAL_H

#ifndef RCGC_BUILDING
#error "runtime/internal.h is internal to rcgc"
#endif

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rcgc.h"
#include "atomic.h"

#ifndef RCGC_TEST_HARD
#define RCGC_TEST_HARD 0
#endif

#if defined(__SANITIZE_THREAD__)
#define RCGC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RCGC_TSAN 1
#endif
#endif
#ifndef RCGC_TSAN
#define RCGC_TSAN 0
#endif
#if defined(__SANITIZE_ADDRESS__)
#define RCGC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RCGC_ASAN 1
#endif
#endif
#ifndef RCGC_ASAN
#define RCGC_ASAN 0
#endif

/* Locks that stripe a table by hash (the thread registry's buckets, the
   weak references' stripes), as a power of two.  A fork's prepare holds
   every lock of the runtime at once (fork.c), and ThreadSanitizer's
   deadlock detector follows at most 64 locks held by one thread: its
   builds use fewer stripes, which changes no argument, only contention. */
#define RCGC__STRIPES_LOG2 (RCGC_TSAN ? 4 : 6)
#define RCGC__STRIPES      (1 << RCGC__STRIPES_LOG2)

/* Dead objects a thread collects before handing them to the reclaimer. */
#define RCGC__RECLAIM_BATCH (RCGC_TEST_HARD ? 1 : 1024)
/* ... and the smallest open batch a safepoint seals. */
#define RCGC__RECLAIM_SEAL_AT (RCGC_TEST_HARD ? 1 : 128)

/* Candidate roots a thread collects before handing them to the collector.
   Chunks go round through a pool (collector.c): a thread seldom mallocs
   one, and the collector seldom frees one. */
#define RCGC__ROOTS_CHUNK   (RCGC_TEST_HARD ? 2 : 1022)     /* 8 KiB */
/* ... and the fewest a safepoint hands over from a chunk that is still
   growing (one that has not grown since the last safepoint goes whatever
   it holds). */
#define RCGC__ROOTS_SEAL_AT (RCGC__ROOTS_CHUNK / 2)
/* The most chunks a thread takes from the pool at once (collector.c,
   pool_take). */
#define RCGC__CHUNK_TAKE    16
/* Candidates handed over that wake the background collector by default. */
#define RCGC__THRESHOLD_DEFAULT (RCGC_TEST_HARD ? 1 : 10000)

/* gc_bits: low 16 bits are flags, high 16 bits the magic.  TRACKED is in
   <rcgc/biased.h> (bit 2); whether a tracked object is in a root buffer,
   and ZOMBIE, are in its owner word (RCGC__OWNER_UNBUFFERED, _ZOMBIE). */
#define RCGC__GC_DEFERRED    (1u << 0)  /* its memory waits for a grace period:
                                           overwritten out of a slot at least
                                           once (object.c), or queued to its
                                           owner (refcount.c) */
#define RCGC__GC_FINALIZED   (1u << 1)  /* finalize has run */
#define RCGC__GC_SIZED       (1u << 3)  /* tracked, with a body of another size than
                                           its type's: the size is in front of
                                           its link (rcgc__front_bytes) */
#define RCGC__GC_FROZEN      (1u << 4)  /* rcgc_freeze(): collections ignore it */
#define RCGC__GC_MISSED      (1u << 6)  /* a decrement found no memory for a root
                                           chunk: the collector looks for it in
                                           the registry */
#define RCGC__GC_WEAKREFS    (1u << 7)  /* weak references may name it (weakref.c):
                                           its death clears them */
#define RCGC__GC_FLAGS       0xffffu
#define RCGC__MAGIC_LIVE     (0x5c6cu << 16)
#define RCGC__MAGIC_DEAD     (0xdeadu << 16)
#define RCGC__MAGIC_MASK     (0xffffu << 16)

/* Owner's local count moves this much into the shared count when it would
   pass UINT32_MAX. */
#define RCGC__LOCAL_SPILL    ((uint32_t)1 << 31)

static inline void *rcgc__body(rcgc__header *h) { return h + 1; }

/*
 * Tracked objects carry this in front of their header (like CPython's
 * PyGC_Head): the registry that rcgc_foreach_object, rcgc_get_referrers,
 * rcgc_freeze and the leak report walk.  The registry shard and the
 * collector's private index are in the header (x.gc), on the line the
 * collector reads anyway.
 */
typedef struct rcgc__gclink {
    struct rcgc__gclink *prev, *next;   /* registry shard list, under the shard
                                           lock; next alone on the shard's
                                           incoming stack (a dead object on
                                           the doomed stack is linked by its
                                           header's link) */
} rcgc__gclink;

static inline rcgc__gclink *rcgc__gclink_of(rcgc__header *h)
{
    return (rcgc__gclink *)h - 1;
}
static inline rcgc__header *rcgc__gclink_header(rcgc__gclink *g)
{
    return (rcgc__header *)(g + 1);
}

/*
 * What an object's memory holds, from its start:
 *
 *   untracked            header (x.size) | body
 *   tracked              gclink | header | body       (size: type->size)
 *   tracked and SIZED    size_t size, pad | gclink | header | body
 *
 * Each keeps the body 16-byte aligned.  A tracked object whose body is its
 * type's size (all that rcgc_new makes) spends no word on its size.
 */
#define RCGC__SIZED_FRONT 16
_Static_assert(sizeof(rcgc__header) % 16 == 0, "untracked bodies aligned");
_Static_assert(sizeof(rcgc__gclink) % 16 == 0, "tracked bodies aligned");

/* Bytes in front of the header. */
static inline size_t rcgc__front_bytes(uint32_t gc_bits)
{
    if (!(gc_bits & RCGC__GC_TRACKED))
        return 0;
    return sizeof(rcgc__gclink) + ((gc_bits & RCGC__GC_SIZED) ? RCGC__SIZED_FRONT : 0);
}

/* The body's size (for the free hook and the debug build's poison);
   gc_bits as the caller read them. */
static inline size_t rcgc__body_size(rcgc__header *h, uint32_t bits)
{
    if (!(bits & RCGC__GC_TRACKED))
        return h->x.size;
    if (!(bits & RCGC__GC_SIZED))
        return h->type->size;
    return *(size_t *)((char *)h - rcgc__front_bytes(bits));
}

static inline bool rcgc__is_tracked_type(const rcgc_type *type)
{
    return type->traverse != NULL && !(type->flags & RCGC_TYPE_ACYCLIC);
}

/* A batch of dead unlinked objects waiting for grace period `gp`, freed
   by the thread that released them (same-thread frees keep malloc's
   per-thread caches warm). */
typedef struct rcgc__sealed {
    struct rcgc__sealed *next;
    rcgc__header        *list;
    uint64_t             gp;
} rcgc__sealed;

/* A chunk of candidate roots, filled by one thread, handed to the collector. */
typedef struct rcgc__roots {
    struct rcgc__roots *next;
    size_t              n;
    rcgc__header       *items[RCGC__ROOTS_CHUNK];
} rcgc__roots;

/*
 * The per-thread record.  Cache-line aligned: other threads read its
 * counters and push to its queue.
 */
/* The thread cache (runtime.c): freed object memory of up to
   RCGC__CACHE_CLASSES * 16 bytes is kept per thread, by size class, up to
   RCGC__CACHE_BYTES in all, when objects come from malloc; past that, in a
   central pool. */
#define RCGC__CACHE_CLASSES 16
#define RCGC__CACHE_BYTES   ((size_t)8 << 20)
#define RCGC__POOL_KEEP     ((size_t)32 << 20)   /* kept for good */
#define RCGC__POOL_BYTES    ((size_t)128 << 20)  /* held a while (runtime.c, "Decay") */

typedef struct rcgc__thread {
    uintptr_t tid;                  /* never reused; constant */

    /* Written by this thread only. */
    rcgc__header *release_list;     /* objects at zero awaiting finalize/teardown,
                                       linked by link; an entry with
                                       RCGC__RELEASE_TORN awaits only its
                                       memory's (object.c, "Order") */
    bool          releasing;        /* a release loop is running on this thread */
    rcgc__header *finalizing;       /* whose finalizer that loop runs: made DYING by
                                       it, until its weak references are cleared
                                       after (fork.c: a child lets it go) */
    rcgc__header *merging;          /* whose counts this thread merges, between */
    uint32_t      merging_local;    /* rcgc__merge_begin and _end, and the local
                                       count it took (fork.c: a child finishes) */
    bool          in_blocking;      /* between rcgc_blocking_begin and _end */
    rcgc__header *reclaim_list;     /* dead, unlinked: the open batch */
    size_t        reclaim_count;
    rcgc__sealed *sealed_head;      /* sealed batches, oldest first */
    rcgc__sealed *sealed_tail;
    rcgc__u64     allocated;        /* store_release by this thread, load_acquire by stats */
    rcgc__u64     freed;
    bool          no_buffer;        /* collector unpinning: decrements buffer nothing */
    void         *cache[RCGC__CACHE_CLASSES];   /* free blocks of (class + 1) * 16 bytes,
                                                   linked through their first word */
    uint32_t      ncached[RCGC__CACHE_CLASSES]; /* ... how many of each */
    size_t        cached;                       /* ... their bytes */
    bool          in_collection;    /* this thread runs a collection (finalizers) */

    /* Candidate roots: the chunk being filled, with its count in the low
       bits, or a claim while this thread adds to it; the collector steals
       it for rcgc_collect (collector.c, "Root chunks"). */
    rcgc__word      roots;
    rcgc__header   *adding;         /* the candidate rcgc__buffer_root adds, from */
    rcgc__roots    *adding_chunk;   /* its claim to its release, and the chunk it
                                       claimed (fork.c: a child keeps both) */
    rcgc__roots    *spare_chunks;   /* this thread's only (collector.c) */
    size_t          roots_seen;     /* roots->n at the last safepoint; this
                                       thread's only */

    /* Protected by the lock of the bucket this tid hashes to (thread.c). */
    rcgc__header *merge_queue;      /* objects queued by non-owners, linked by link */
    size_t        merge_queue_len;
    bool          blocked;          /* queuers merge on this thread's behalf */
    struct rcgc__thread *bucket_next;
    rcgc__u32     merge_pending;    /* hint for the owner: relaxed, re-checked under lock */

    /* Protected by rcgc__rt.lock. */
    struct rcgc__thread *all_prev, *all_next;

    /* Constant: its liburcu reader record (epoch.c), through which a fork's
       child takes a thread that the fork did not copy out of liburcu's
       registry.  Last, away from the fields above that are used often. */
    void *urcu_reader;
} __attribute__((aligned(64))) rcgc__thread;

extern __thread rcgc__thread *rcgc__tls_thread __attribute__((tls_model("initial-exec")));

/* ---- runtime.c --------------------------------------------------------- */
typedef struct rcgc__runtime {
    pthread_mutex_t lock;           /* protects everything below */
    bool            running;
    rcgc_options    opts;           /* alloc/free hooks, read-only while running */
    bool            cache;          /* malloc/free, no hooks: thread caches on */
    rcgc__thread   *threads;        /* attached threads */
    size_t          nthreads;
    uint64_t        retired_allocated;  /* counters of detached threads */
    uint64_t        retired_freed;
} rcgc__runtime;
extern rcgc__runtime rcgc__rt;

void *rcgc__mem_alloc(size_t size);
void  rcgc__mem_release(rcgc__header *h);   /* to the thread cache or the free hook, now */
void  rcgc__cache_flush(rcgc__thread *th);  /* the thread cache back to free() */
uint64_t rcgc__mem_pool_due(void);          /* when the pool's surplus is due back, or 0 */
size_t   rcgc__mem_pool_decay(void);        /* ... back to free() if due: bytes */
uint64_t rcgc__monotonic_ns(void);          /* CLOCK_MONOTONIC (collector.c) */
static inline void rcgc__counter_bump(rcgc__u64 *c)
{
    /* Only the owning thread writes; release pairs with rcgc_get_stats(). */
    rcgc__u64_store_release(c, rcgc__u64_load_relaxed(c) + 1);
}

/* ---- collector.c ------------------------------------------------------- */
int    rcgc__gc_start(const rcgc_options *opts);   /* at init */
void   rcgc__gc_stop_thread(void);                 /* at shutdown */
void   rcgc__gc_shutdown_collect(void);            /* collect until quiet, leak report */
size_t rcgc__gc_thread_count(void);
void   rcgc__gc_fill_stats(rcgc_stats *out);      /* the collector's fields */                /* 1 while the collector thread is attached */
void   rcgc__roots_flush(rcgc__thread *th);        /* hand the chunk over */
/* rcgc__buffer_root's halves, for h whose UNBUFFERED this thread cleared
   (a test stops a thread between them): the chunk claimed (NULL: no
   memory, h is MISSED), then h added to it. */
rcgc__roots *rcgc__roots_add_begin(rcgc__thread *th, rcgc__header *h);
void   rcgc__roots_add_end(rcgc__thread *th, rcgc__header *h, rcgc__roots *k);
void   rcgc__roots_safepoint(rcgc__thread *th);    /* ... if it is due */
void   rcgc__registry_insert(rcgc__header *h, uintptr_t tid);
bool   rcgc__registry_remove(rcgc__header *h);
void   rcgc__registry_flush(void);
void   rcgc__roots_spares_return(rcgc__thread *th);   /* at detach: to the pool */
void   rcgc__roots_pool_free(void);                    /* rcgc_shutdown, last */
extern rcgc__u64 rcgc__freeze_count;

/* ---- refcount.c -------------------------------------------------------- */
/* Dead for good: merged at count zero (or below), and not immortal.  DYING
   is the other refusal of a try-increment, and not always final. */
static inline bool rcgc__shared_is_dead(intptr_t s)
{
    return (s & (RCGC__SHARED_MERGED | RCGC__SHARED_IMMORTAL)) == RCGC__SHARED_MERGED &&
           (s >> RCGC__SHARED_SHIFT) <= 0;
}
/* Unmerged, not queued, not immortal, and below zero: a non-owner's
   decrement by fetch_sub found the count at zero or less and has yet to
   queue the object (refcount.c, "Decrements by fetch_sub").  An increment
   must not hide this (it makes the entry itself: rcgc__settle_debt), and
   the collector counts such a member as externally referenced. */
static inline bool rcgc__shared_owes(intptr_t s)
{
    return !(s & (RCGC__SHARED_QUEUED | RCGC__SHARED_MERGED | RCGC__SHARED_IMMORTAL)) &&
           s < 0;
}
void     rcgc__settle_debt(rcgc__header *h);
void     rcgc__make_entry(rcgc__header *h);   /* after a CAS that set QUEUED */
intptr_t rcgc__merge_counts(rcgc__header *h, intptr_t extra);
uint32_t rcgc__merge_begin(rcgc__header *h, intptr_t *sp);
intptr_t rcgc__merge_end(rcgc__header *h, intptr_t s, uint32_t local, intptr_t extra);
void     rcgc__merge_finish_gone(rcgc__header *h, uint32_t local);
void     rcgc__merge_queued(rcgc__header *h);
bool     rcgc__try_incref(rcgc__header *h);
bool     rcgc__pin_flag(rcgc__header *h, uintptr_t owner_flags);
bool     rcgc__pin_flag_shared(rcgc__header *h, uintptr_t owner_flags);

/* ---- object.c ---------------------------------------------------------- */
void rcgc__release(rcgc__header *h);         /* count reached zero: finalize, tear down */
void rcgc__dispose(rcgc__thread *th, rcgc__header *h);  /* torn down: account, free */
void rcgc__dispose_unlinked(rcgc__thread *th, rcgc__header *h);  /* ... once out of the registry */
void rcgc__free_memory(rcgc__thread *th, rcgc__header *h);  /* now or after a grace period */

/* A release list's entry (or link) is an object's address, tagged with
   RCGC__RELEASE_TORN (headers are 16-byte aligned) once its slots are
   released and only its memory's teardown is left. */
#define RCGC__RELEASE_TORN ((uintptr_t)1)

static inline rcgc__header *rcgc__release_entry(rcgc__header *entry)
{
    return (rcgc__header *)((uintptr_t)entry & ~RCGC__RELEASE_TORN);
}

void rcgc__defer_memory(void *obj);   /* DEFERRED: freed after a grace period; NULL: nothing */

/* ---- weakref.c --------------------------------------------------------- */
/* h is dying (count zero, or DYING garbage) and rcgc__has_weakrefs (the
   caller checks: no call for the objects that have none): its weak
   references are cleared, and those with a callback are added to *pending
   (each holds the handle until rcgc__weakrefs_run). */
void rcgc__weakrefs_clear(rcgc__header *h, rcgc_weakref **pending);
void rcgc__weakrefs_run(rcgc_weakref *pending);     /* callbacks, outside every lock */
static inline bool rcgc__has_weakrefs(rcgc__header *h)
{
    return rcgc__u32_load_relaxed(&h->gc_bits) & RCGC__GC_WEAKREFS;
}

/* ---- thread.c ---------------------------------------------------------- */
void rcgc__queue_to_owner(rcgc__header *h, uintptr_t owner_tid);
void rcgc__merge_queue_drain(rcgc__thread *th);
void rcgc__merge_list(rcgc__header *list);   /* entries taken off a merge queue, linked by link */
void rcgc__reclaim_flush(rcgc__thread *th);    /* hand every batch to the reclaimer */
void rcgc__reclaim_seal(rcgc__thread *th);     /* seal the open batch; free what is due */
void rcgc__reclaim_poll(rcgc__thread *th);     /* free what is due */

/* ---- epoch.c (the only file that includes liburcu) --------------------- */
int  rcgc__epoch_start(void);
void rcgc__epoch_stop(void);
void *rcgc__epoch_reader(void);             /* the caller's reader record */
void rcgc__epoch_register(void);
void rcgc__epoch_unregister(void);
void rcgc__epoch_quiescent(void);
void rcgc__epoch_offline(void);
void rcgc__epoch_online(void);
void rcgc__epoch_defer(rcgc__header *list, size_t count);
void rcgc__epoch_wait_reclaimed(void);
void rcgc__epoch_synchronize(void);         /* a grace period, from an attached thread */
uint64_t rcgc__epoch_gp_request(void);      /* a grace period that starts from now */
uint64_t rcgc__epoch_gp_completed(void);

/* ---- fork.c ------------------------------------------------------------ */
/*
 * pthread_atfork's three steps.  Each file with locks has one hook per
 * step, called with RCGC__FORK_PREPARE in the lock order of fork.c (it
 * takes its locks) and with _PARENT or _CHILD in the reverse order (it
 * lets them go; in the child it also makes its condition variables and
 * semaphores new, and its state fit for one thread).
 */
enum rcgc__fork_step { RCGC__FORK_PREPARE, RCGC__FORK_PARENT, RCGC__FORK_CHILD };
void rcgc__fork_setup(void);                        /* once, at the first rcgc_init */
/* n locks, `stride` bytes apart from `first` (a striped table's, or one
   lock): taken in order (PREPARE), let go in reverse (the others). */
void rcgc__fork_lock_stripes(pthread_mutex_t *first, size_t n, size_t stride,
                             enum rcgc__fork_step step);
void rcgc__collector_fork_outer(enum rcgc__fork_step step);  /* collect_mutex */
void rcgc__collector_fork_inner(enum rcgc__fork_step step);  /* gc.lock, shard locks */
void rcgc__epoch_fork_outer(enum rcgc__fork_step step);      /* liburcu's calls */
void rcgc__epoch_fork_inner(enum rcgc__fork_step step);      /* the reclaimer */
void rcgc__threads_fork(enum rcgc__fork_step step);          /* bucket locks */
void rcgc__weakrefs_fork(enum rcgc__fork_step step);         /* stripe locks */
void rcgc__mem_fork(enum rcgc__fork_step step);              /* the central pool */
void rcgc__quarantine_fork(enum rcgc__fork_step step);
/* In the child, once every lock is free: */
void rcgc__threads_forget_others(rcgc__header **merges, rcgc__header **releases);
void rcgc__roots_orphan(rcgc__thread *th);          /* a gone thread's chunk */
void rcgc__epoch_forget(void *reader);              /* a gone thread's reader */
int  rcgc__epoch_restart(void);                     /* the reclaimer, if it ran */
int  rcgc__gc_restart(void);                        /* the collector thread, if it ran */

/* ---- debug.c ----------------------------------------------------------- */
_Noreturn void rcgc__fatal(const char *fn, const char *problem, const void *obj);
_Noreturn void rcgc__fatal_type(const char *fn, const char *problem, const rcgc_type *type);
void rcgc__poison(rcgc__header *h);
/* Debug builds hold the last RCGC__QUARANTINE_SIZE objects freed, first in
   first out, before their memory goes (debug.c). */
#define RCGC__QUARANTINE_SIZE 4096
void rcgc__quarantine(rcgc__header *h);     /* debug builds: delays the real free */
void rcgc__quarantine_list(rcgc__header *h); /* ... every object of a link list */
void rcgc__quarantine_flush(void);

#if RCGC_DEBUG
#define rcgc_assert(cond, fn, problem, obj) \
    do { if (!(cond)) rcgc__fatal((fn), (problem), (obj)); } while (0)
#define rcgc_assert_internal(cond) \
    do { if (!(cond)) rcgc__fatal(__func__, "internal error: " #cond, NULL); } while (0)
#else
#define rcgc_assert(cond, fn, problem, obj) \
    ((void)sizeof(!(cond)), (void)(fn), (void)(problem), (void)(obj))
#define rcgc_assert_internal(cond) ((void)sizeof(!(cond)))
#endif

/* ---- test hooks (exported; tests only) --------------------------------- */
void      rcgc__test_raw(const void *obj, uintptr_t *owner, uint32_t *local, intptr_t *shared);
void      rcgc__test_set_counts(void *obj, uint32_t local, intptr_t shared_count);
size_t    rcgc__test_queue_length(void);
uintptr_t rcgc__test_tid(void);
/* The collector's allocations fail once n more have succeeded (n < 0:
   never again); returns how many failed since the previous call. */
size_t    rcgc__test_collector_fail_after(long n);
size_t    rcgc__test_collect_background(bool *truncated);
size_t    rcgc__test_collect_background_spend(size_t spend, bool *truncated);
size_t    rcgc__test_last_collection(size_t *examined);   /* rounds; examined */
size_t    rcgc__test_round_min(void);   /* a collection's first round, in candidates */
size_t    rcgc__test_work_kept(void);   /* bytes of work tables kept between collections */
uint64_t  rcgc__test_work_decay(uint64_t ns);   /* how long a big one stays; returns the old */
/* The least member table whose steps a waiting rcgc_collect caller may
   help with (min 0: unchanged; returns the old); parts offered and taken. */
size_t    rcgc__test_help(size_t min, uint64_t *offered, uint64_t *taken);
uint64_t  rcgc__test_takes_in_parts(void);
/* Root chunks in existence; fail 0 or 1: whether collections find no memory
   to sort their surplus chunks (-1: as before). */
size_t    rcgc__test_chunks(int fail, size_t *one_by_one, size_t *pool_max);
/* Root chunks made, all time; *want: the stock the pool is kept at. */
uint64_t  rcgc__test_chunks_made(size_t *want);
/* The root-chunk pool's count (its word's low bits); *walked: its list's
   length, walked (no thread may take or put meanwhile). */
size_t    rcgc__test_pool(size_t *walked);
/* The object pool's bytes (runtime.c, "Decay"); a nonzero decay_ns sets
   its decay, *before the one it replaces. */
size_t    rcgc__test_pool_bytes(uint64_t decay_ns, uint64_t *before);
/* While set, a thread that needs a new root chunk gets none (as if out of
   memory). */
void      rcgc__test_roots_fail(bool fail);
/* While set, a thread that takes part of the chunk pool finds a chunk
   pushed between its take and its give-back (collector.c, pool_take). */
void      rcgc__test_pool_race(bool race);
/* fn(arg), or nothing (fn NULL), on the collecting thread between each
   round's grace period and its step 4 (reading the counts). */
void      rcgc__test_before_count(void (*fn)(void *), void *arg);
void      rcgc__test_after_push(void (*fn)(void *), void *arg);
/* fork's prepare and parent handlers, without a fork. */
void      rcgc__test_fork_handlers(void);

#endif /* RCGC_INTERNAL_H */
