/*
 * slot.c: reference slots, the one place where a thread can reach an object
 * it holds no reference to.
 *
 * rcgc_ref_load reads the slot and then increments what it read.  Between
 * the two, another thread may overwrite the slot and drop the last
 * reference to the old value.  Two things keep the load safe:
 *   - memory: the loader is inside a QSBR read section (an attached thread
 *     is one between its quiescent states), and an object overwritten out
 *     of a slot is reclaimed only after a grace period (object.c, epoch.c);
 *   - the count: rcgc__try_incref refuses an object whose merged count is
 *     zero, and every free is decided by the RMW that produced that zero,
 *     so an increment that succeeds was counted before any free decision
 *     (refcount.c).  A failed increment means the slot has moved on: read
 *     it again.
 * Every overwrite marks the value it removes DEFERRED, so that object's
 * memory will wait for a grace period (object.c explains why a value
 * removed by its container's teardown need not).
 *
 * The collector's write barrier.  rcgc_ref_store and compare_exchange
 * change the counts of both values they move, which the collector's
 * Delta-test sees.  rcgc_ref_exchange moves a reference without any count
 * change, so it marks both moved values DIRTY if the collector has flagged
 * them, before the exchange makes the move (PROTOCOL-REVIEW hole 1, the
 * "mark the moved values" fix: a slot has no pointer to its container).
 * It reads the old value first and exchanges by CAS, so the value it marks
 * is the value it removes.
 */
#include <sched.h>

#include "internal.h"

static inline void check_attached(const char *fn)
{
    rcgc_assert(rcgc__tls_thread != NULL && !rcgc__tls_thread->in_blocking, fn,
                "thread not attached", NULL);
}

/* (Parenthesized: the names are also the macros of <rcgc/biased.h>.) */
void (rcgc_ref_init)(rcgc_ref *slot, void *obj)
{
    if (slot == NULL)
        return;
    rcgc_incref(obj);
    /* Release: pairs with the acquire load in rcgc_ref_load. */
    rcgc__slot_store_release(slot, obj);
}

void *(rcgc_ref_load)(rcgc_ref *slot)
{
    if (slot == NULL)
        return NULL;
    if (RCGC_DEBUG)
        check_attached("rcgc_ref_load");
    for (;;) {
        /* Acquire: pairs with the release store/exchange/CAS that put the
           object here, so its header and body are initialised. */
        void *obj = rcgc__slot_load_acquire(slot);

        if (obj == NULL || rcgc__try_incref(rcgc__hdr(obj)))
            return obj;
        /* Dead: a slot that counted it has moved on; read it again.  A slot
           that still holds a DYING object belongs to a component the
           collector marked DYING: either garbage, whose slots only the
           collecting thread can reach (a finalizer reading its own cycle):
           the slot reads as empty, since nothing may take a new reference;
           or a component whose Delta-test failed after some of its members
           were marked, which the collector takes back before it does
           anything else: wait for that.  (An object released by counting
           is in no slot.) */
        if (rcgc__slot_load_acquire(slot) == obj &&
            (rcgc__sword_load_relaxed(&rcgc__hdr(obj)->ref_shared) & RCGC__SHARED_DYING)) {
            if (rcgc__tls_thread->in_collection)
                return NULL;
            sched_yield();
        }
    }
}

void rcgc_ref_store(rcgc_ref *slot, void *obj)
{
    void *old;

    if (slot == NULL)
        return;
    rcgc_incref(obj);                     /* the slot's reference, before it is visible */
    /* acq_rel: release publishes obj (pairs with rcgc_ref_load); acquire
       orders our decrement of old after the store that put it there. */
    old = rcgc__slot_exchange_acq_rel(slot, obj);
    rcgc__defer_memory(old);
    rcgc_decref(old);
}

/* Barrier: a flagged object that a move touches becomes DIRTY.  Release:
   the slot write after it is ordered after DIRTY (the collector reads the
   slot with acquire, then checks the word). */
static inline void barrier(void *obj)
{
    rcgc__header *h;

    if (obj == NULL)
        return;
    h = rcgc__hdr(obj);
    if (rcgc__sword_load_relaxed(&h->ref_shared) & RCGC__SHARED_SCAN)
        rcgc__sword_fetch_or_acq_rel(&h->ref_shared, RCGC__SHARED_DIRTY);
}

void *rcgc_ref_exchange(rcgc_ref *slot, void *obj)
{
    void *old;

    if (slot == NULL)
        return NULL;
    if (RCGC_DEBUG)
        check_attached("rcgc_ref_exchange");
    if (obj != NULL) {
        /* Two exchanges can close a cycle with no decrement: the stored
           object is a candidate root (API.md, "Reference slots"). */
        rcgc__maybe_buffer(rcgc__hdr(obj), obj);
        barrier(obj);
    }
    old = rcgc__slot_load_acquire(slot);
    do {
        barrier(old);       /* old is in the slot: epoch-protected (QSBR) */
    } while (!rcgc__slot_cas_acq_rel(slot, &old, obj));
    rcgc__defer_memory(old);
    return old;
}

int rcgc_ref_compare_exchange(rcgc_ref *slot, void *expected, void *desired)
{
    void *seen = expected;

    if (slot == NULL)
        return 0;
    rcgc_incref(desired);                 /* counted before anyone can load it */
    if (rcgc__slot_cas_acq_rel(slot, &seen, desired)) {
        rcgc__defer_memory(expected);
        rcgc_decref(expected);            /* the slot's old reference */
        return 1;
    }
    rcgc_decref(desired);                 /* the caller still holds one */
    return 0;
}
