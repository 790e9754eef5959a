/*
 * thread.c: attach, detach and thread exit; the per-thread record; the
 * registry that maps a tid to its thread; the owners' merge queues;
 * safepoints and blocking regions.
 *
 * A tid is a 64-bit serial number shifted left by RCGC__TID_SHIFT, handed
 * out once and never again (refcount.c, I5).  The calling thread finds its
 * own in initial-exec TLS (rcgc__tls_tid), two loads and no call.
 *
 * The registry is a fixed table of buckets, each with a mutex that guards
 * the threads hashed to it, their merge queues and their `blocked` flags
 * (as CPython's brc.c).  A non-owner that queues an object takes the
 * owner's bucket lock and either pushes the object (an intrusive list
 * through the header's link: it cannot fail for lack of memory, PITFALLS 7)
 * or, when the owner is blocked or gone, merges the object itself under
 * that lock (refcount.c, I4).  The owner drains its queue at safepoints, in
 * rcgc_new, at the start of each collection it runs (collector.c), before
 * blocking and before detaching; the last two drain until
 * the queue is empty under the lock and only then set `blocked` or leave the
 * registry, and make no count operation after that (CPython
 * _Py_brc_remove_thread; PITFALLS 5, 6).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

__thread uintptr_t rcgc__tls_tid __attribute__((tls_model("initial-exec"))) = RCGC__TID_DETACHED;
__thread rcgc__thread *rcgc__tls_thread __attribute__((tls_model("initial-exec")));

#define NBUCKETS RCGC__STRIPES

static struct bucket {
    pthread_mutex_t lock;
    rcgc__thread   *head;
} __attribute__((aligned(64))) buckets[NBUCKETS];

static rcgc__u64 next_serial = { 1 };
static pthread_key_t exit_key;
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

static struct bucket *bucket_of(uintptr_t tid)
{
    uint64_t x = (uint64_t)tid >> RCGC__TID_SHIFT;

    x *= 0x9e3779b97f4a7c15ull;         /* Fibonacci hashing */
    return &buckets[x >> (64 - RCGC__STRIPES_LOG2)];
}

static void on_thread_exit(void *arg)
{
    /* Key destructors run before the thread's TLS is torn down, so the
       record and its buffers are handed over intact (nimskull#747). */
    if (rcgc__tls_thread == arg)
        rcgc_thread_detach();
}

static void setup(void)
{
    for (int i = 0; i < NBUCKETS; i++)
        pthread_mutex_init(&buckets[i].lock, NULL);
    if (pthread_key_create(&exit_key, on_thread_exit) != 0)
        rcgc__fatal("rcgc_thread_attach", "pthread_key_create failed", NULL);
}

int rcgc_thread_attach(void)
{
    rcgc__thread *th;
    struct bucket *b;
    void *mem;

    pthread_once(&setup_once, setup);
    if (rcgc__tls_thread != NULL)
        return EBUSY;
    if (posix_memalign(&mem, 64, sizeof(*th)) != 0)
        return ENOMEM;
    th = mem;
    memset(th, 0, sizeof(*th));
    th->tid = (uintptr_t)rcgc__u64_fetch_add_relaxed(&next_serial, 1) << RCGC__TID_SHIFT;

    pthread_mutex_lock(&rcgc__rt.lock);
    if (!rcgc__rt.running) {
        pthread_mutex_unlock(&rcgc__rt.lock);
        free(th);
        return EINVAL;
    }
    th->all_next = rcgc__rt.threads;
    if (th->all_next)
        th->all_next->all_prev = th;
    rcgc__rt.threads = th;
    rcgc__rt.nthreads++;
    pthread_mutex_unlock(&rcgc__rt.lock);

    b = bucket_of(th->tid);
    pthread_mutex_lock(&b->lock);
    th->bucket_next = b->head;
    b->head = th;
    pthread_mutex_unlock(&b->lock);

    th->urcu_reader = rcgc__epoch_reader();
    rcgc__epoch_register();
    rcgc__tls_thread = th;
    rcgc__tls_tid = th->tid;
    pthread_setspecific(exit_key, th);
    return 0;
}

/* Takes th out of its bucket (whose lock is held), if it is there: a
   fork's child finds a thread stopped inside attach or detach outside. */
static void bucket_unlink(struct bucket *b, rcgc__thread *th)
{
    rcgc__thread **p = &b->head;

    while (*p != NULL && *p != th)
        p = &(*p)->bucket_next;
    if (*p != NULL)
        *p = th->bucket_next;
}

/* Takes th out of the runtime's thread list (rcgc__rt.lock is held) and
   keeps its counters for the statistics. */
static void unlist_locked(rcgc__thread *th)
{
    if (th->all_prev)
        th->all_prev->all_next = th->all_next;
    else
        rcgc__rt.threads = th->all_next;
    if (th->all_next)
        th->all_next->all_prev = th->all_prev;
    rcgc__rt.nthreads--;
    rcgc__rt.retired_allocated += rcgc__u64_load_relaxed(&th->allocated);
    rcgc__rt.retired_freed += rcgc__u64_load_relaxed(&th->freed);
}

/* What a leaving thread hands back besides its candidates: its dead
   objects to the reclaimer, its cache to malloc, its spare root chunks
   to the pool. */
static void give_back(rcgc__thread *th)
{
    rcgc__reclaim_flush(th);
    rcgc__cache_flush(th);
    rcgc__roots_spares_return(th);
}

/* Merges the entries of a merge queue taken off a thread. */
void rcgc__merge_list(rcgc__header *list)
{
    while (list != NULL) {
        rcgc__header *h = list;
        list = h->link;
        h->link = NULL;
        rcgc__merge_queued(h);
    }
}

/* Pops the whole queue; under the bucket lock, when it is empty, sets
   `blocked` (to block) or unlinks the thread (to leave).  Loops because
   merging can release objects whose teardown queues more to us. */
static void drain_then(rcgc__thread *th, bool leave)
{
    struct bucket *b = bucket_of(th->tid);

    for (;;) {
        rcgc__header *list;

        pthread_mutex_lock(&b->lock);
        list = th->merge_queue;
        if (list == NULL) {
            if (leave) {
                bucket_unlink(b, th);
            } else {
                th->blocked = true;
            }
            pthread_mutex_unlock(&b->lock);
            return;
        }
        th->merge_queue = NULL;
        th->merge_queue_len = 0;
        rcgc__u32_store_relaxed(&th->merge_pending, 0);
        pthread_mutex_unlock(&b->lock);
        rcgc__merge_list(list);
    }
}

void rcgc_thread_detach(void)
{
    rcgc__thread *th = rcgc__tls_thread;

    if (th == NULL) {
        rcgc_assert(0, "rcgc_thread_detach", "thread not attached", NULL);
        return;
    }
    if (th->in_blocking)
        rcgc_blocking_end();
    drain_then(th, true);
    /* From here on this thread makes no count operation (PITFALLS 5):
       its objects are merged by whoever next finds the owner gone. */
    rcgc__tls_tid = RCGC__TID_DETACHED;
    rcgc__roots_flush(th);
    give_back(th);
    /* Out of liburcu before out of the thread list: a fork's child takes
       the threads of that list out of liburcu's registry. */
    rcgc__epoch_unregister();

    pthread_mutex_lock(&rcgc__rt.lock);
    unlist_locked(th);
    pthread_mutex_unlock(&rcgc__rt.lock);

    rcgc__tls_thread = NULL;
    pthread_setspecific(exit_key, NULL);
    free(th);
}

/* Called with a QUEUED transition just made by this (non-owner) thread. */
void rcgc__queue_to_owner(rcgc__header *h, uintptr_t owner_tid)
{
    struct bucket *b = bucket_of(owner_tid);
    rcgc__thread *th;
    intptr_t count;

    /* Another non-owner's decrement may have gone below zero before our
       QUEUED and may yet read the word once more: whoever frees the
       object after the entry's merge waits a grace period (refcount.c,
       "Decrements by fetch_sub"). */
    rcgc__defer_memory(rcgc__body(h));
    pthread_mutex_lock(&b->lock);
    for (th = b->head; th != NULL; th = th->bucket_next)
        if (th->tid == owner_tid)
            break;
    if (th != NULL && !th->blocked) {
        h->link = th->merge_queue;
        th->merge_queue = h;
        th->merge_queue_len++;
        rcgc__u32_store_relaxed(&th->merge_pending, 1);
        pthread_mutex_unlock(&b->lock);
        return;
    }
    /* The owner is blocked or gone: merge on its behalf, under its bucket
       lock so a blocked owner cannot resume mid-merge (I4; gh-157838). */
    count = rcgc__merge_counts(h, -1);
    pthread_mutex_unlock(&b->lock);
    if (count == 0)
        rcgc__release(h);       /* finalizers run outside every lock */
}

void rcgc__merge_queue_drain(rcgc__thread *th)
{
    struct bucket *b;
    rcgc__header *list;

    /* Relaxed hint: a push we miss now is seen at the next drain. */
    if (!rcgc__u32_load_relaxed(&th->merge_pending))
        return;
    b = bucket_of(th->tid);
    pthread_mutex_lock(&b->lock);
    list = th->merge_queue;
    th->merge_queue = NULL;
    th->merge_queue_len = 0;
    rcgc__u32_store_relaxed(&th->merge_pending, 0);
    pthread_mutex_unlock(&b->lock);
    rcgc__merge_list(list);
}

/* Frees the sealed batches whose grace period is over, on this thread. */
void rcgc__reclaim_poll(rcgc__thread *th)
{
    uint64_t done = rcgc__epoch_gp_completed();

    while (th->sealed_head != NULL && th->sealed_head->gp <= done) {
        rcgc__sealed *s = th->sealed_head;
        rcgc__header *h = s->list;

        th->sealed_head = s->next;
        if (th->sealed_head == NULL)
            th->sealed_tail = NULL;
        rcgc__quarantine_list(h);
        free(s);
    }
}

void rcgc__reclaim_seal(rcgc__thread *th)
{
    rcgc__sealed *s;

    if (th->reclaim_count != 0) {
        s = malloc(sizeof(*s));
        if (s == NULL) {
            rcgc__reclaim_flush(th);        /* the reclaimer frees them instead */
            return;
        }
        s->next = NULL;
        s->list = th->reclaim_list;
        s->gp = rcgc__epoch_gp_request();
        /* The open batch is emptied before the sealed one is linked (and
           a list handed over below is off the record first): a fork's
           child that flushes a thread stopped in between never hands one
           object to the reclaimer twice. */
        th->reclaim_list = NULL;
        th->reclaim_count = 0;
        if (th->sealed_tail != NULL)
            th->sealed_tail->next = s;
        else
            th->sealed_head = s;
        th->sealed_tail = s;
    }
    rcgc__reclaim_poll(th);
}

void rcgc__reclaim_flush(rcgc__thread *th)
{
    rcgc__header *list;
    size_t count;

    rcgc__reclaim_poll(th);
    while (th->sealed_head != NULL) {
        rcgc__sealed *s = th->sealed_head;

        th->sealed_head = s->next;
        rcgc__epoch_defer(s->list, 0);      /* after a later grace period: safe */
        free(s);
    }
    th->sealed_tail = NULL;
    if (th->reclaim_count == 0)
        return;
    list = th->reclaim_list;
    count = th->reclaim_count;
    th->reclaim_list = NULL;
    th->reclaim_count = 0;
    rcgc__epoch_defer(list, count);
}

void rcgc_safepoint(void)
{
    rcgc__thread *th = rcgc__tls_thread;

    if (th == NULL) {
        rcgc_assert(0, "rcgc_safepoint", "thread not attached", NULL);
        return;
    }
    rcgc_assert(!th->in_blocking, "rcgc_safepoint", "called inside a blocking region", NULL);
    rcgc__merge_queue_drain(th);
    rcgc__roots_safepoint(th);
    /* A small open batch waits to grow (or for blocking, detach or
       rcgc_reclaim_wait); sealed batches that are due are freed now. */
    if (th->reclaim_count >= RCGC__RECLAIM_SEAL_AT)
        rcgc__reclaim_seal(th);
    else
        rcgc__reclaim_poll(th);
    rcgc__epoch_quiescent();
}

void rcgc_blocking_begin(void)
{
    rcgc__thread *th = rcgc__tls_thread;

    if (th == NULL) {
        rcgc_assert(0, "rcgc_blocking_begin", "thread not attached", NULL);
        return;
    }
    if (th->in_blocking) {
        rcgc_assert(0, "rcgc_blocking_begin", "already in a blocking region", NULL);
        return;
    }
    drain_then(th, false);
    th->in_blocking = true;
    rcgc__roots_flush(th);
    rcgc__reclaim_flush(th);
    rcgc__epoch_offline();
}

void rcgc_blocking_end(void)
{
    rcgc__thread *th = rcgc__tls_thread;
    struct bucket *b;

    if (th == NULL || !th->in_blocking) {
        rcgc_assert(0, "rcgc_blocking_end", "not in a blocking region", NULL);
        return;
    }
    rcgc__epoch_online();
    /* Acquire what queuers merged on our behalf (I4). */
    b = bucket_of(th->tid);
    pthread_mutex_lock(&b->lock);
    th->blocked = false;
    pthread_mutex_unlock(&b->lock);
    th->in_blocking = false;
}

size_t rcgc__test_queue_length(void)
{
    rcgc__thread *th = rcgc__tls_thread;
    struct bucket *b;
    size_t n;

    if (th == NULL)
        return 0;
    b = bucket_of(th->tid);
    pthread_mutex_lock(&b->lock);
    n = th->merge_queue_len;
    pthread_mutex_unlock(&b->lock);
    return n;
}

uintptr_t rcgc__test_tid(void)
{
    return rcgc__tls_tid == RCGC__TID_DETACHED ? 0 : rcgc__tls_tid;
}

/* ---- fork (fork.c) --------------------------------------------------------- */

void rcgc__threads_fork(enum rcgc__fork_step step)
{
    rcgc__fork_lock_stripes(&buckets[0].lock, NBUCKETS, sizeof(buckets[0]), step);
}

/*
 * In the child of a fork, every attached thread but the caller is gone.
 * Each leaves as rcgc_thread_detach would have made it leave, done here on
 * its behalf: out of the registry (so whoever next finds it the owner of
 * an object merges that object itself, I4), its merge queue to *merges and
 * the objects its release loop had yet to start to *releases (the caller
 * merges and releases them once the runtime's threads run again), its
 * candidates to the collector, its dead objects to the reclaimer, its
 * thread cache to malloc, its liburcu reader out of liburcu's registry.
 * What it held on its stack, and an object whose teardown it had begun
 * and not yet brought to its slots, are lost with it: a reference nobody
 * can drop.  One that had reached its slots is on its release list, torn,
 * and the caller finishes it.  An object whose finalizer it was running
 * loses DYING, so that no load waits for it.
 */
/* Moves every object of the list *from (linked by link) onto *to.  A
   release list's torn entries lose their tag: released again, such an
   object finds its weak references cleared, its finalizer run (FINALIZED),
   and in its slots what its thread had yet to release, if it stopped in
   the middle (object.c, "Order"). */
static void move_links(rcgc__header **from, rcgc__header **to)
{
    while (*from != NULL) {
        rcgc__header *h = rcgc__release_entry(*from);

        *from = h->link;
        h->link = *to;
        *to = h;
    }
}

void rcgc__threads_forget_others(rcgc__header **merges, rcgc__header **releases)
{
    rcgc__thread *self = rcgc__tls_thread, *gone = NULL, *th, *next;

    pthread_mutex_lock(&rcgc__rt.lock);
    for (th = rcgc__rt.threads; th != NULL; th = next) {
        next = th->all_next;
        if (th == self)
            continue;
        unlist_locked(th);
        th->all_next = gone;
        gone = th;
    }
    pthread_mutex_unlock(&rcgc__rt.lock);

    for (th = gone; th != NULL; th = next) {
        struct bucket *b = bucket_of(th->tid);

        next = th->all_next;
        pthread_mutex_lock(&b->lock);
        bucket_unlink(b, th);
        pthread_mutex_unlock(&b->lock);
        move_links(&th->merge_queue, merges);
        move_links(&th->release_list, releases);
        /* The object whose finalizer it was running is DYING for good,
           which would keep a load or a weak reference's upgrade that met
           it waiting for ever (slot.c, weakref.c).  Without DYING it is
           what it would have become had the finalizer returned: alive,
           holding the gone thread's reference (which no one drops); or,
           its count already given back, dead. */
        /* An object whose counts it was merging: finished here, or its
           count would read low and its word have no owner, for good. */
        if (th->merging != NULL)
            rcgc__merge_finish_gone(th->merging, th->merging_local);
        if (th->finalizing != NULL)
            rcgc__sword_fetch_and_relaxed(&th->finalizing->ref_shared,
                                          ~RCGC__SHARED_DYING);
        rcgc__roots_orphan(th);
        give_back(th);
        rcgc__epoch_forget(th->urcu_reader);
        free(th);
    }
}
