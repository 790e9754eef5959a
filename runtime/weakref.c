/*
 * weakref.c: weak references (the contract's last section; PITFALLS 21).
 *
 * A weak reference is a handle the caller owns, not an rcgc object: it
 * names its referent without counting it.  Handles live in a table keyed
 * by the referent's address, split into NSTRIPES stripes, each a chained
 * hash table under its own mutex; a handle's stripe is fixed at creation,
 * and every field of a handle but the unlocked first read of referent is
 * written and read under that stripe's lock.  The referent's gc_bits carry
 * RCGC__GC_WEAKREFS while handles may name it, so an object without weak
 * references dies without looking here.
 *
 * Safety of rcgc_weakref_get (no read of reclaimed memory): a referent's
 * handles are cleared, under the stripe lock, on every way to death before
 * its memory can go back: in the release loop before the finalizer (and
 * again after it, for handles the finalizer made), and in the collector
 * between the Delta-test and the finalizers (and again after them).  So a
 * get that finds the referent still set, under the lock, reads memory that
 * is still the object's, and its validated try-increment refuses an object
 * that is dying (merged at zero, or DYING); a refusal for DYING alone is
 * not an answer yet (the collector may take a failed component back), so
 * get waits until the handle is cleared or the object lives again.  A
 * try-increment that wins
 * keeps the object alive: it changes the shared word, so the owner's merge
 * counts it, and a running collection's Delta-test fails.  The one death
 * that reads no word by read-modify-write, the owner's CAS-free path for an
 * untracked object, is not taken by an object with RCGC__GC_WEAKREFS
 * (refcount.c).
 *
 * Callbacks (bpo-38006: only for handles that are themselves alive).  A
 * cleared handle with a callback gets a second hold (refs) and goes on the
 * clearing thread's pending list; rcgc__weakrefs_run calls the callback
 * only if rcgc_weakref_free has not been called by then, outside every
 * lock, and the handle's memory goes when both holds are gone, so a
 * callback may free its own handle, and a free racing a running callback
 * leaves the memory to it.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "internal.h"

#define NSTRIPES RCGC__STRIPES

struct rcgc_weakref {
    struct rcgc_weakref *next, *prev;   /* the bucket's chain, while referent is set */
    struct rcgc_weakref *pending;       /* cleared, its callback not run yet */
    rcgc__ptr            referent;      /* the object's body, or NULL once cleared */
    rcgc_weak_callback   cb;
    void                *ctx;
    uint32_t             stripe;        /* constant */
    uint32_t             refs;          /* the caller's hold, and the callback's */
    bool                 freed;         /* rcgc_weakref_free was called */
};

static struct stripe {
    pthread_mutex_t lock;
    rcgc_weakref  **buckets;
    size_t          nbuckets;           /* 0 or a power of two */
    size_t          count;
} __attribute__((aligned(64))) stripes[NSTRIPES];
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;

static void stripes_init(void)
{
    for (size_t i = 0; i < NSTRIPES; i++)
        pthread_mutex_init(&stripes[i].lock, NULL);
}

static uint64_t hash_of(const void *obj)
{
    uint64_t x = (uint64_t)(uintptr_t)obj >> 4;

    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdu;
    return x ^ (x >> 33);
}

static struct stripe *stripe_of(const void *obj)
{
    return &stripes[hash_of(obj) % NSTRIPES];
}

static rcgc_weakref **bucket_of(struct stripe *st, const void *obj)
{
    return &st->buckets[(hash_of(obj) / NSTRIPES) & (st->nbuckets - 1)];
}

/* Doubles the stripe's table (the lock is held); false if out of memory. */
static bool stripe_grow(struct stripe *st)
{
    size_t n = st->nbuckets ? st->nbuckets * 2 : 16;
    rcgc_weakref **old = st->buckets, **b = calloc(n, sizeof(*b));
    size_t oldn = st->nbuckets;

    if (b == NULL)
        return false;
    st->buckets = b;
    st->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        rcgc_weakref *w = old[i];
        while (w != NULL) {
            rcgc_weakref *next = w->next, **head;
            head = bucket_of(st, rcgc__ptr_load_relaxed(&w->referent));
            w->prev = NULL;
            w->next = *head;
            if (*head != NULL)
                (*head)->prev = w;
            *head = w;
            w = next;
        }
    }
    free(old);
    return true;
}

/* Takes w out of its bucket and clears it (the lock is held). */
static void unlink_weakref(struct stripe *st, rcgc_weakref *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        *bucket_of(st, rcgc__ptr_load_relaxed(&w->referent)) = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
    rcgc__ptr_store_relaxed(&w->referent, NULL);
    st->count--;
}

rcgc_weakref *rcgc_weakref_new(void *obj, rcgc_weak_callback cb, void *ctx)
{
    struct stripe *st;
    rcgc_weakref *w, **head;

    if (obj == NULL) {
        errno = EINVAL;
        return NULL;
    }
    if (RCGC_DEBUG)
        rcgc__debug_check(obj, "rcgc_weakref_new");
    pthread_once(&stripes_once, stripes_init);
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    st = stripe_of(obj);
    w->cb = cb;
    w->ctx = ctx;
    w->stripe = (uint32_t)(st - stripes);
    w->refs = 1;
    pthread_mutex_lock(&st->lock);
    /* A full table grows; if it cannot, chains just get longer, unless
       there is no table at all. */
    if (st->count >= st->nbuckets && !stripe_grow(st) && st->nbuckets == 0) {
        pthread_mutex_unlock(&st->lock);
        free(w);
        errno = ENOMEM;
        return NULL;
    }
    rcgc__ptr_store_relaxed(&w->referent, obj);
    head = bucket_of(st, obj);
    w->next = *head;
    if (*head != NULL)
        (*head)->prev = w;
    *head = w;
    st->count++;
    /* The caller holds a reference, so obj is not dying; its death, which
       follows the drop of every reference (release and acquire count
       operations), sees the bit. */
    rcgc__u32_fetch_or_relaxed(&rcgc__hdr(obj)->gc_bits, RCGC__GC_WEAKREFS);
    pthread_mutex_unlock(&st->lock);
    return w;
}

void *rcgc_weakref_get(rcgc_weakref *w)
{
    rcgc__thread *th = rcgc__tls_thread;
    struct stripe *st;
    void *obj;
    intptr_t s;

    if (w == NULL || rcgc__ptr_load_relaxed(&w->referent) == NULL)
        return NULL;
    rcgc_assert(rcgc__tls_tid != RCGC__TID_DETACHED, "rcgc_weakref_get",
                "thread not attached", NULL);
    st = &stripes[w->stripe];
    for (;;) {
        pthread_mutex_lock(&st->lock);
        obj = rcgc__ptr_load_relaxed(&w->referent);
        /* Set under the lock: the object's memory is still its own
           (clearing precedes every free). */
        if (obj == NULL || rcgc__try_incref(rcgc__hdr(obj))) {
            pthread_mutex_unlock(&st->lock);
            return obj;
        }
        s = rcgc__sword_load_relaxed(&rcgc__hdr(obj)->ref_shared);
        pthread_mutex_unlock(&st->lock);
        /* Refused.  Merged at zero and not DYING: dead, and its release
           clears this handle before any finalizer runs, so NULL now and
           NULL for good.  DYING: the answer is not known yet.  A component
           whose Delta-test passed is cleared by the collector under this
           lock before its finalizers; one whose test failed, or that
           SAVEALL keeps, loses DYING again; a finalizer in the release
           loop (which holds a count) either resurrects or is followed by
           a clearing.  Each comes soon and needs nothing of ours, so wait
           for it: a NULL here would say "dead" of an object that lives on
           (stress_weakref caught it).  But not on a thread that is itself
           running finalizers or callbacks: the answer may be its own to
           give, and it gets NULL, as rcgc_ref_load's "reads as empty".
           Neither (DYING went since the refusal): try again. */
        if (!(s & RCGC__SHARED_DYING)) {
            if (rcgc__shared_is_dead(s))
                return NULL;
            continue;
        }
        if (th == NULL || th->in_collection || th->releasing)
            return NULL;
        sched_yield();
    }
}

/* Drops one hold on w (the lock is held); true if it was the last. */
static bool drop_hold(rcgc_weakref *w)
{
    return --w->refs == 0;
}

void rcgc_weakref_free(rcgc_weakref *w)
{
    struct stripe *st;
    bool last;

    if (w == NULL)
        return;
    st = &stripes[w->stripe];
    pthread_mutex_lock(&st->lock);
    if (rcgc__ptr_load_relaxed(&w->referent) != NULL)
        unlink_weakref(st, w);
    w->freed = true;
    last = drop_hold(w);
    pthread_mutex_unlock(&st->lock);
    if (last)
        free(w);
}

void rcgc__weakrefs_clear(rcgc__header *h, rcgc_weakref **pending)
{
    void *obj = rcgc__body(h);
    struct stripe *st;
    rcgc_weakref *w;

    st = stripe_of(obj);
    pthread_mutex_lock(&st->lock);
    rcgc__u32_fetch_and_relaxed(&h->gc_bits, ~RCGC__GC_WEAKREFS);
    w = st->nbuckets ? *bucket_of(st, obj) : NULL;
    while (w != NULL) {
        rcgc_weakref *next = w->next;
        if (rcgc__ptr_load_relaxed(&w->referent) == obj) {
            unlink_weakref(st, w);
            if (w->cb != NULL) {
                w->refs++;
                w->pending = *pending;
                *pending = w;
            }
        }
        w = next;
    }
    pthread_mutex_unlock(&st->lock);
}

void rcgc__weakrefs_run(rcgc_weakref *pending)
{
    while (pending != NULL) {
        rcgc_weakref *w = pending;
        struct stripe *st = &stripes[w->stripe];
        bool alive, last;

        pending = w->pending;
        pthread_mutex_lock(&st->lock);
        alive = !w->freed;
        pthread_mutex_unlock(&st->lock);
        if (alive)
            w->cb(w, w->ctx);
        pthread_mutex_lock(&st->lock);
        last = drop_hold(w);
        pthread_mutex_unlock(&st->lock);
        if (last)
            free(w);
    }
}

/* ---- fork (fork.c) --------------------------------------------------------- */

void rcgc__weakrefs_fork(enum rcgc__fork_step step)
{
    pthread_once(&stripes_once, stripes_init);
    rcgc__fork_lock_stripes(&stripes[0].lock, NSTRIPES, sizeof(stripes[0]), step);
}
