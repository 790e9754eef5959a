/*
 * object.c: creating objects, and tearing them down once their count
 * reaches zero.
 *
 * Teardown runs in a loop, never by recursion: rcgc__release() pushes the
 * dead object on the calling thread's release list, and only the outermost
 * call drains it.  Releasing a slot whose target reaches zero pushes that
 * target, so a chain of any length uses constant stack (PITFALLS 22), and a
 * finalizer that drops references only adds to the list.
 *
 * Per object:  weak references cleared  ->  finalize (once; FINALIZED)  ->
 * weak references' callbacks  ->  slots released  ->  (the teardown of the
 * children that died)  ->  memory.
 * While its finalizer runs the object holds a count of one, taken by the
 * releasing thread, so rcgc_incref/rcgc_decref inside the finalizer are
 * ordinary; if the finalizer stored a new reference (resurrection), the
 * teardown stops there and the next time the count reaches zero the
 * finalizer does not run again.
 *
 * Order.  Before its slots are released, the object goes back on the
 * release list, tagged RCGC__RELEASE_TORN, beneath the children that die
 * then.  If two or more die, its memory goes when the list comes back down
 * to it; if one or none, at once.  So a tree whose every inner node has
 * two children or more gives its memory back children first, the last
 * slot's child first: the exact reverse of the order in which a builder
 * that makes each parent before its children, left to right, allocated
 * it.  The thread cache hands blocks out last in first out (runtime.c),
 * so the next tree built that way gets the same blocks in the same order,
 * in address order if the first one's were, and walks them as a stream.
 * Parent first, the next tree got the old one's blocks in post-order: a
 * scattering that compounded from tree to tree (in BM_bintree/18, three
 * quarters of rcgc__mem_alloc's samples, a fifth of the run, were misses
 * on the popped block).  BM_bintree/18 against malloc, four runs of the
 * trees alone alternating with the build before: 1.15, 1.78 (a slow
 * spell), 0.93 and 1.08x, against 1.51, 1.67, 1.61 and 1.52x (medians of
 * five).  A chain (one child each) keeps parent first: its blocks come
 * back reversed, still a stream, and its nodes' headers are not read a
 * second time, a miss each on a long chain (a chain of 10^7, eight
 * releases: 164-178 ms, one 271, with every parent after its child;
 * 149-163 parent first).  test_release checks both orders through the
 * free hook.
 *
 * Memory: a thread inside rcgc_ref_load may have read an object's pointer
 * from a slot and not yet incremented it.  That load holds a reference to
 * the slot's container (or the slot is a global), so the container is
 * alive; the object can lose that slot's reference only by an overwrite
 * (rcgc_ref_store, _exchange, _compare_exchange), never by the container's
 * teardown.  Overwrites mark the removed object DEFERRED (slot.c).  So
 * does a queue entry (thread.c, rcgc__queue_to_owner): a non-owner whose
 * decrement went below zero may still be about to look at the word once
 * more after another thread's entry has been merged and the object freed
 * (refcount.c, "Decrements by fetch_sub").  An object that was neither,
 * whatever slots held it, can be in no thread's hands without a reference
 * when it dies, so its memory goes back at once, hot, as with malloc/free
 * (a binary tree torn down from its root never waits).  A DEFERRED object
 * waits on this thread's reclaim list, sealed in batches of
 * RCGC__RECLAIM_BATCH, and is freed after a grace period (epoch.c).
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

_Static_assert(sizeof(rcgc__header) == 48, "object header layout");
_Static_assert(sizeof(rcgc__gclink) == 16, "a tracked object's link");

void *rcgc_new_sized(const rcgc_type *type, size_t size)
{
    rcgc__thread *th = rcgc__tls_thread;
    rcgc__header *h;
    size_t prefix;
    char *mem;
    uint32_t kind;                 /* its TRACKED and SIZED gc_bits */
    bool tracked;

    if (type == NULL || size < type->size) {
        errno = EINVAL;
        return NULL;
    }
    if (th == NULL) {
        if (RCGC_DEBUG)
            rcgc__fatal_type("rcgc_new", "thread not attached", type);
        errno = EPERM;
        return NULL;
    }
    tracked = rcgc__is_tracked_type(type);
    kind = !tracked ? 0 : size == type->size ? RCGC__GC_TRACKED
                                             : RCGC__GC_TRACKED | RCGC__GC_SIZED;
    prefix = rcgc__front_bytes(kind);
    if (size > SIZE_MAX - sizeof(*h) - prefix) {
        errno = ENOMEM;
        return NULL;
    }
    /* An owner that never reaches a safepoint still merges what others
       queued to it whenever it allocates (gh-157838). */
    rcgc__merge_queue_drain(th);

    mem = rcgc__mem_alloc(prefix + sizeof(*h) + size);
    if (mem == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    h = (rcgc__header *)(mem + prefix);
    /* Relaxed: the object reaches other threads only through a release
       (a slot store, or the user's own synchronisation). */
    rcgc__word_store_relaxed(&h->owner, th->tid | (tracked ? RCGC__OWNER_UNBUFFERED : 0));
    rcgc__sword_store_relaxed(&h->ref_shared, 0);
    h->type = type;
    h->link = NULL;
    if (!tracked)
        h->x.size = size;
    else if (kind & RCGC__GC_SIZED)
        *(size_t *)mem = size;          /* see rcgc__front_bytes */
    rcgc__u32_store_relaxed(&h->ref_local, 1);
    rcgc__u32_store_relaxed(&h->gc_bits, RCGC__MAGIC_LIVE | kind);
    memset(rcgc__body(h), 0, size);
    if (tracked)
        rcgc__registry_insert(h, th->tid);
    rcgc__counter_bump(&th->allocated);
    return rcgc__body(h);
}

void *rcgc_new(const rcgc_type *type)
{
    if (type == NULL) {
        errno = EINVAL;
        return NULL;
    }
    return rcgc_new_sized(type, type->size);
}

const rcgc_type *rcgc_type_of(const void *obj)
{
    if (obj == NULL)
        return NULL;
    if (RCGC_DEBUG)
        rcgc__debug_check(obj, "rcgc_type_of");
    return rcgc__hdr(obj)->type;
}

void rcgc__defer_memory(void *obj)
{
    rcgc__header *h;

    if (obj == NULL)
        return;
    h = rcgc__hdr(obj);
    /* Relaxed: the caller holds a reference (the one a slot gave up, or
       the one a queue entry carries), and whoever later decides the free
       happens-after this, through the acq_rel count operations every
       reference drop goes through. */
    if (!(rcgc__u32_load_relaxed(&h->gc_bits) & RCGC__GC_DEFERRED))
        rcgc__u32_fetch_or_relaxed(&h->gc_bits, RCGC__GC_DEFERRED);
}

static void release_slot(rcgc_ref *slot, void *ctx)
{
    /* The object is dead: no other thread reaches its slots any more (the
       collector only reads the slots of objects it holds), so a plain
       atomic read and clear will do; acquire pairs with the store that
       put the child here. */
    void *child = rcgc__slot_load_acquire(slot);

    rcgc__slot_store_relaxed(slot, NULL);
    (void)ctx;
    rcgc_decref(child);      /* at zero: pushed on our release list */
}

/*
 * Runs h's finalizer; returns true if it resurrected the object.  From
 * before DYING is set until the object is resurrected, or (not) until the
 * caller has cleared its weak references, th->finalizing names it: the
 * child of a fork in which this thread is gone takes DYING off it (fork.c).
 * The record goes before anything lets another thread free the object, or
 * that child would write to freed memory.
 */
static bool finalize(rcgc__thread *th, rcgc__header *h)
{
    intptr_t s, n;

    rcgc__u32_fetch_or_relaxed(&h->gc_bits, RCGC__GC_FINALIZED);
    th->finalizing = h;
    /* Merged with count 0: no other thread can change the count now (a
       try-increment refuses it), so this thread takes one reference for
       the finalizer's duration.  DYING keeps refusing loads meanwhile: a
       thread that read this object from a slot just before the slot was
       overwritten must not get it back from under its finalizer.  Release:
       the record is in memory first, so the child of a fork that copies
       DYING copies the record too. */
    rcgc__sword_store_release(&h->ref_shared,
                              RCGC__SHARED_MERGED | RCGC__SHARED_DYING | RCGC__SHARED_ONE);
    h->type->finalize(rcgc__body(h));
    /* acq_rel: if the finalizer handed the object to another thread, its
       later decrements are ordered before our teardown.  Not resurrected:
       our reference goes, and the object stays DYING at 0, ours to tear
       down.  Resurrected: DYING goes first, with our reference kept, so
       no other thread can release the object before the record is gone;
       then our reference goes as any decrement's (at zero the object is
       released again, and FINALIZED keeps the finalizer from running
       twice). */
    s = rcgc__sword_load_relaxed(&h->ref_shared);
    do {
        n = s - RCGC__SHARED_ONE;
        if ((n >> RCGC__SHARED_SHIFT) > 0 || (n & RCGC__SHARED_IMMORTAL))
            n = s & ~RCGC__SHARED_DYING;
    } while (!rcgc__sword_cas_acq_rel(&h->ref_shared, &s, n));
    if (n & RCGC__SHARED_DYING)
        return false;
    th->finalizing = NULL;
    rcgc_decref(rcgc__body(h));
    return true;
}

/* The object is torn down: account for it and let its memory go, unless a
   root buffer still names it (then the buffer's consumer frees it:
   PITFALLS 14). */
void rcgc__dispose(rcgc__thread *th, rcgc__header *h)
{
    if ((rcgc__u32_load_relaxed(&h->gc_bits) & RCGC__GC_TRACKED) &&
        !rcgc__registry_remove(h))
        return;                    /* doomed: the registry disposes of it */
    rcgc__dispose_unlinked(th, h);
}

/* rcgc__dispose for an object already out of the registry. */
void rcgc__dispose_unlinked(rcgc__thread *th, rcgc__header *h)
{
    rcgc__counter_bump(&th->freed);
    if (RCGC_DEBUG)
        rcgc__poison(h);
    /* A tracked object is buffered while its owner word lacks UNBUFFERED.
       acq_rel: pairs with the entry's consumer's fetch_or of UNBUFFERED
       (collector.c, take_candidate); exactly one of the two sees the
       other's bit and frees.  Nobody buffers a dead object: UNBUFFERED
       seen set (acquire: after the consumer's last access) stays set. */
    if ((rcgc__u32_load_relaxed(&h->gc_bits) & RCGC__GC_TRACKED) &&
        !(rcgc__word_load_acquire(&h->owner) & RCGC__OWNER_UNBUFFERED) &&
        !(rcgc__word_fetch_or_acq_rel(&h->owner, RCGC__OWNER_ZOMBIE) & RCGC__OWNER_UNBUFFERED))
        return;
    rcgc__free_memory(th, h);
}

void rcgc__free_memory(rcgc__thread *th, rcgc__header *h)
{
    if (!(rcgc__u32_load_relaxed(&h->gc_bits) & RCGC__GC_DEFERRED)) {
        rcgc__quarantine(h);
        return;
    }
    h->link = th->reclaim_list;
    th->reclaim_list = h;
    if (++th->reclaim_count >= RCGC__RECLAIM_BATCH)
        rcgc__reclaim_seal(th);
}

void rcgc__release(rcgc__header *h)
{
    rcgc__thread *th = rcgc__tls_thread;
    rcgc__header *entry;
    bool no_buffer;

    rcgc_assert_internal(th != NULL);
    h->link = th->release_list;
    th->release_list = h;
    if (th->releasing)
        return;
    th->releasing = true;
    /* The collector drops its pins without making candidates; the
       decrements a teardown makes are real ones and buffer as usual. */
    no_buffer = th->no_buffer;
    th->no_buffer = false;
    while ((entry = th->release_list) != NULL) {
        const rcgc_type *type;
        rcgc_weakref *pending = NULL;
        bool resurrected = false;

        h = rcgc__release_entry(entry);
        th->release_list = h->link;
        h->link = NULL;
        if (entry != h) {              /* torn: its memory is all that is left */
            rcgc__dispose(th, h);
            continue;
        }
        type = h->type;
        /* Weak references go before the finalizer, and again after it
           (one it made); their callbacks run after it (weakref.c). */
        if (rcgc__has_weakrefs(h))
            rcgc__weakrefs_clear(h, &pending);
        if (type->finalize != NULL &&
            !(rcgc__u32_load_relaxed(&h->gc_bits) & RCGC__GC_FINALIZED)) {
            resurrected = finalize(th, h);
            if (!resurrected && rcgc__has_weakrefs(h))
                rcgc__weakrefs_clear(h, &pending);
            th->finalizing = NULL;      /* (finalize) */
        }
        if (pending != NULL)
            rcgc__weakrefs_run(pending);
        if (resurrected)
            continue;
        if (type->traverse != NULL) {
            rcgc__header *torn = (rcgc__header *)((uintptr_t)h | RCGC__RELEASE_TORN), *top;

            /* Back on the list, torn, beneath the children that die now:
               if two or more do, their teardown first, then our memory
               (see "Order"). */
            h->link = th->release_list;
            th->release_list = torn;
            type->traverse(rcgc__body(h), release_slot, NULL);
            top = th->release_list;
            if (top != torn && top->link != torn)
                continue;
            if (top == torn)
                th->release_list = h->link;    /* none died */
            else
                top->link = h->link;           /* one: our memory first */
            h->link = NULL;
        }
        rcgc__dispose(th, h);
    }
    th->no_buffer = no_buffer;
    th->releasing = false;
}
