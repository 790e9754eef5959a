/*
 * slot.c: reference slots, the one place where a thread can reach an object
 * it holds no reference to.
 *
 * rcgc_ref_load reads the slot and then increments what it read.  Between
 * the two, another thread may overwrite the slot and drop the last
 * reference to the old value.  Two things keep the load safe:
 *   - memory: the loader is inside a QSBR read section (an attached thread
 *     is one between its quiescent states), and a published object's
 *     memory is reclaimed only after a grace period (object.c, epoch.c);
 *   - the count: rcgc__try_incref refuses an object whose merged count is
 *     zero, and every free is decided by the RMW that produced that zero,
 *     so an increment that succeeds was counted before any free decision
 *     (refcount.c).  A failed increment means the slot has moved on: read
 *     it again.
 * Every store publishes (RCGC__GC_PUBLISHED) the object before the release
 * store that makes it reachable, so its memory will wait for a grace period.
 */
#include "internal.h"

static inline void check_attached(const char *fn)
{
    rcgc_assert(rcgc__tls_thread != NULL && !rcgc__tls_thread->in_blocking, fn,
                "thread not attached", NULL);
}

void rcgc_ref_init(rcgc_ref *slot, void *obj)
{
    if (slot == NULL)
        return;
    if (obj != NULL) {
        rcgc_incref(obj);
        rcgc__mark_published(rcgc__hdr(obj));
    }
    /* Release: pairs with the acquire load in rcgc_ref_load. */
    rcgc__slot_store_release(slot, obj);
}

void *rcgc_ref_load(rcgc_ref *slot)
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
    }
}

void rcgc_ref_store(rcgc_ref *slot, void *obj)
{
    void *old;

    if (slot == NULL)
        return;
    if (obj != NULL) {
        rcgc_incref(obj);                 /* the slot's reference, before it is visible */
        rcgc__mark_published(rcgc__hdr(obj));
    }
    /* acq_rel: release publishes obj (pairs with rcgc_ref_load); acquire
       orders our decrement of old after the store that put it there. */
    old = rcgc__slot_exchange_acq_rel(slot, obj);
    rcgc_decref(old);
}

void *rcgc_ref_exchange(rcgc_ref *slot, void *obj)
{
    if (slot == NULL)
        return NULL;
    if (obj != NULL)
        rcgc__mark_published(rcgc__hdr(obj));
    return rcgc__slot_exchange_acq_rel(slot, obj);
}

int rcgc_ref_compare_exchange(rcgc_ref *slot, void *expected, void *desired)
{
    void *seen = expected;

    if (slot == NULL)
        return 0;
    if (desired != NULL) {
        rcgc_incref(desired);             /* counted before anyone can load it */
        rcgc__mark_published(rcgc__hdr(desired));
    }
    if (rcgc__slot_cas_acq_rel(slot, &seen, desired)) {
        rcgc_decref(expected);            /* the slot's old reference */
        return 1;
    }
    rcgc_decref(desired);                 /* the caller still holds one */
    return 0;
}
