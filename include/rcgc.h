/*
 * rcgc.h: reference counting with cycle collection for multithreaded C.
 *
 * The one header users include.  It compiles as C11 and as C++ (extern "C").
 * The contract is ../shared/spec/API.md; every name here keeps its meaning.
 *
 * Conventions: functions that can fail return 0 or a positive errno value,
 * or NULL with errno set.  Every function that takes an object accepts NULL
 * and does nothing with it.  Misuse that can be detected (an unattached
 * thread, a count that would drop below zero, a freed object, a pointer that
 * is no rcgc object) aborts with a one-line message in debug builds
 * (RCGC_DEBUG defined to 1, as -DRCGC_DEBUG=ON does for the library and for
 * everything that links rcgc::rcgc).
 */
#ifndef RCGC_H
#define RCGC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Runtime and threads --------------------------------------------- */

typedef struct rcgc_options {
    size_t   threshold;   /* candidate roots buffered before the background
                             collector runs; 0 = default */
    int      manual;      /* nonzero: no collector thread, collect only in
                             rcgc_collect(); 0 (the default): a background
                             collector thread runs */
    unsigned debug;       /* RCGC_DEBUG_* flags, as rcgc_set_debug() */
    /* Where object memory comes from (NULL: malloc/free), so a service can
       plug in its allocator and a test can inject failure.  alloc must
       return memory aligned to 16 bytes, or NULL (rcgc_new then fails with
       ENOMEM).  free receives the size that alloc was asked for. */
    void *(*alloc)(size_t size, void *ctx);
    void  (*free)(void *p, size_t size, void *ctx);
    void   *alloc_ctx;
} rcgc_options;

int  rcgc_init(const rcgc_options *opts);  /* NULL = defaults; attaches the caller.
                                              EBUSY if already running; EINVAL if
                                              only one of alloc/free is set */
void rcgc_shutdown(void);                  /* collects until nothing more is found,
                                              reports leaks if RCGC_DEBUG_LEAK,
                                              detaches the caller, reclaims every
                                              released object's memory, stops the
                                              background threads; every other thread
                                              must have detached first */

int  rcgc_thread_attach(void);     /* every thread that touches objects attaches
                                      first; EBUSY if already attached, EINVAL if
                                      the runtime is not running */
void rcgc_thread_detach(void);     /* hands over all per-thread state; nothing is lost */
void rcgc_safepoint(void);         /* a quiescent point: queued counts merged, memory
                                      hand-offs done, epoch acknowledged */
void rcgc_blocking_begin(void);    /* caller will not touch objects until _end and
                                      never delays the runtime meanwhile */
void rcgc_blocking_end(void);

/* fork(): the child has one attached thread, the one that forked (if it was
   attached), and its own collector and reclaimer threads; the other threads'
   objects stay valid, and what those threads held stays alive.  fork waits
   for a collection or a grace period in progress.  From inside a finalizer
   or weak-reference callback run by a collection, the child may only exec
   or _exit.  (README: "fork".) */

/* Waits (as a blocking region) until the memory of every object released
   before the call, by any thread, has been reclaimed: given back to the
   free hook, or with malloc, to malloc, except what other threads keep in
   their caches (at most 8 MiB each, until they detach).  For tests and for
   services that measure their footprint. */
void rcgc_reclaim_wait(void);

/* ---- Types and objects ----------------------------------------------- */

typedef struct rcgc_ref { void *rcgc_private_; } rcgc_ref; /* a strong reference slot
                      inside an object: one pointer wide, zero = NULL; its member is
                      private (the runtime accesses it atomically) */
typedef void (*rcgc_visit_fn)(rcgc_ref *slot, void *ctx);

enum {
    RCGC_TYPE_ACYCLIC = 1u << 0  /* holds references but can never be part of a
                                    cycle, so it is never a candidate root */
};

/* A type stays valid and unchanged while objects made with it exist, and
   until their memory has gone back (freeing a tracked object's memory, up
   to a grace period after its death, reads the type's size): for a type
   that is not static, rcgc_reclaim_wait() after the last object's
   release. */
typedef struct rcgc_type {
    const char *name;   /* shown in debug output and leak reports */
    size_t      size;   /* bytes of the object body, as rcgc_new returns it */
    /* Visits every rcgc_ref slot of obj. NULL: the type holds no references.
       The collector calls it beside running mutators, on its own thread or
       on one waiting in rcgc_collect (which helps): it visits and does
       nothing else (no locks, no rcgc calls). */
    void (*traverse)(void *obj, rcgc_visit_fn visit, void *ctx);
    /* Optional. Runs exactly once per object, before its slots are released;
       the object and everything it references are still intact. */
    void (*finalize)(void *obj);
    unsigned flags;     /* RCGC_TYPE_* */
} rcgc_type;

void *rcgc_new(const rcgc_type *type);               /* zeroed body, count 1 owned by
                                                        the caller; NULL + ENOMEM,
                                                        NULL + EINVAL (no type),
                                                        NULL + EPERM (not attached) */
void *rcgc_new_sized(const rcgc_type *type, size_t size); /* variable-size bodies;
                                                        size >= type->size */
static inline void *rcgc_incref(void *obj);          /* returns obj */
static inline void  rcgc_decref(void *obj);
size_t rcgc_refcount(const void *obj);   /* strong count; exact when no other
                                            thread changes it meanwhile; SIZE_MAX
                                            for an immortal (saturated) object */
const rcgc_type *rcgc_type_of(const void *obj);

/* ---- Reference slots ------------------------------------------------- */

void  rcgc_ref_init(rcgc_ref *slot, void *obj);      /* slot in a new object: takes
                                                        a new reference to obj */
void *rcgc_ref_load(rcgc_ref *slot);                 /* a NEW strong reference, or
                                                        NULL; safe while other threads
                                                        store to the same slot.  Inside
                                                        a finalizer, a slot that points
                                                        into the dying object's own
                                                        cycle reads as NULL */
void  rcgc_ref_store(rcgc_ref *slot, void *obj);     /* slot takes a new reference to
                                                        obj; the old value is released */
void *rcgc_ref_exchange(rcgc_ref *slot, void *obj);  /* steals the caller's reference to
                                                        obj; returns the old value, whose
                                                        reference now belongs to the caller */
int   rcgc_ref_compare_exchange(rcgc_ref *slot, void *expected, void *desired);
                                                     /* 1 if stored (slot takes a new
                                                        reference to desired and releases
                                                        expected), else 0 */

/* ---- Statistics ------------------------------------------------------ */

typedef struct rcgc_stats {
    uint64_t collections;     /* completed cycle collections */
    uint64_t collected;       /* objects reclaimed as cycle garbage, all time */
    uint64_t uncollectable;   /* objects found in cycles but kept */
    uint64_t allocated;       /* objects created, all time */
    uint64_t freed;           /* objects released, all time (counts and cycles) */
    uint64_t live;            /* objects created and not yet released */
    uint64_t candidates;      /* candidate roots buffered now */
    uint64_t pause_max_ns;    /* longest CPU time a mutator spent handing
                                 over its buffers (it never waits: no lock) */
    uint64_t collect_ns_last; /* duration of the last collection */
    uint64_t collect_ns_total;
} rcgc_stats;
void rcgc_get_stats(rcgc_stats *out);     /* gc.get_stats() */

/* ---- The collector (Python's gc module, for C) ----------------------- */

/* Possible cycle roots are objects of tracked types (a traverse function and
   no RCGC_TYPE_ACYCLIC) whose count was decremented to a nonzero value, and
   objects that rcgc_ref_exchange stored. */
size_t rcgc_collect(void);     /* gc.collect(): a full collection that reclaims every
                                  cycle that was garbage before the call, whichever
                                  thread buffered it; waits for it; returns the number
                                  of objects reclaimed as cycle garbage.  Called from a
                                  finalizer or a callback during a collection, returns
                                  0 at once.  While it waits, the calling thread may
                                  run part of the collection (types' traverse).  Not a
                                  cancellation point (nor are rcgc_init, rcgc_shutdown
                                  and rcgc_reclaim_wait). */
void   rcgc_enable(void);       /* gc.enable() */
void   rcgc_disable(void);      /* gc.disable(): no automatic collections */
int    rcgc_isenabled(void);    /* gc.isenabled() */
void   rcgc_set_threshold(size_t candidates);  /* gc.set_threshold(); 0 = default */
size_t rcgc_get_threshold(void);
size_t rcgc_get_count(void);    /* gc.get_count(): candidate roots now buffered */

enum {
    RCGC_DEBUG_STATS         = 1 << 0, /* a line per collection on stderr: counts,
                                          duration, and each step's time (steps_ms) */
    RCGC_DEBUG_COLLECTABLE   = 1 << 1, /* a line per collectable object found */
    RCGC_DEBUG_UNCOLLECTABLE = 1 << 2, /* a line per uncollectable object found */
    RCGC_DEBUG_SAVEALL       = 1 << 5, /* keep garbage in rcgc_garbage instead of freeing */
    RCGC_DEBUG_LEAK = RCGC_DEBUG_COLLECTABLE | RCGC_DEBUG_UNCOLLECTABLE | RCGC_DEBUG_SAVEALL
};
void     rcgc_set_debug(unsigned flags);  /* gc.set_debug() */
unsigned rcgc_get_debug(void);

/* gc.get_objects(): visits every live tracked object with a borrowed reference
   valid during the call; stops early when fn returns nonzero; returns the
   number visited.  An object is visible here from the moment rcgc_new returns
   it, so fn reads a body that another thread may be initialising or changing
   only under that thread's own synchronisation (atomics, locks). */
size_t rcgc_foreach_object(int (*fn)(void *obj, void *ctx), void *ctx);
void   rcgc_get_referents(void *obj, int (*fn)(void *ref, void *ctx), void *ctx);
size_t rcgc_get_referrers(void *obj, int (*fn)(void *referrer, void *ctx), void *ctx);
int    rcgc_is_tracked(const void *obj);   /* gc.is_tracked(): 0 for types without
                                              traverse and RCGC_TYPE_ACYCLIC types,
                                              which the collector never visits */
int    rcgc_is_finalized(const void *obj); /* gc.is_finalized() */

typedef enum { RCGC_PHASE_START, RCGC_PHASE_STOP } rcgc_phase;
typedef struct rcgc_collect_info { size_t collected, uncollectable; } rcgc_collect_info;
typedef void (*rcgc_callback_fn)(rcgc_phase, const rcgc_collect_info *, void *ctx);
int  rcgc_callback_add(rcgc_callback_fn fn, void *ctx);     /* gc.callbacks; ENOMEM */
int  rcgc_callback_remove(rcgc_callback_fn fn, void *ctx);  /* ENOENT if not added */

void   rcgc_freeze(void);           /* gc.freeze(): every live object is ignored by
                                       later collections */
void   rcgc_unfreeze(void);
size_t rcgc_get_freeze_count(void);

/* gc.garbage: with RCGC_DEBUG_SAVEALL, cycles found are kept here (each with a
   reference held by the list) instead of being reclaimed. */
size_t rcgc_garbage_foreach(int (*fn)(void *obj, void *ctx), void *ctx);
void   rcgc_garbage_clear(void);    /* drops the list's references */

/* Weak references (Python's weakref.ref).  A weak reference does not keep
   its referent alive.  It is cleared when the referent's count reaches zero
   (before its finalizer runs), or, for a member of a garbage cycle, before
   any finalizer of that cycle runs; its callback, if any, runs after those
   finalizers, on the thread that reclaims the object, and only if the weak
   reference has not been freed by then.  The handle is the caller's: free
   it with rcgc_weakref_free (also from inside its own callback). */
typedef struct rcgc_weakref rcgc_weakref;
typedef void (*rcgc_weak_callback)(rcgc_weakref *w, void *ctx);
rcgc_weakref *rcgc_weakref_new(void *obj, rcgc_weak_callback cb, void *ctx);
                                           /* obj: a live object the caller holds a
                                              reference to; NULL with errno EINVAL
                                              (obj NULL) or ENOMEM */
void *rcgc_weakref_get(rcgc_weakref *w);   /* a NEW strong reference, or NULL once
                                              the referent is dead */
void  rcgc_weakref_free(rcgc_weakref *w);

#ifdef __cplusplus
}
#endif

#include "rcgc/biased.h"   /* the inline fast paths of rcgc_incref/rcgc_decref */

#endif /* RCGC_H */
