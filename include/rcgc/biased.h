/*
 * rcgc/biased.h: the object header and the inline fast paths of biased
 * reference counting.  Included by <rcgc.h>; never include it directly.
 *
 * Only what must be inline lives here: the owner's increment and decrement
 * cost about a nanosecond, and a call into a shared library costs more than
 * that.  The state machine, its invariants and every slow path are in
 * runtime/refcount.c, whose opening comment is the theory of this file too.
 *
 * Fields are plain integers wrapped in one-member structs and touched only
 * with the __atomic builtins: `h->ref_local.v++` is visible in review, and
 * the header compiles as C++ (no _Atomic in a public header).
 */
#ifndef RCGC_BIASED_H
#define RCGC_BIASED_H

#ifndef RCGC_H
#error "include <rcgc.h>, not <rcgc/biased.h>"
#endif

#ifndef RCGC_DEBUG
#define RCGC_DEBUG 0
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct { uintptr_t v; } rcgc__word;   /* atomic; see runtime/atomic.h */
typedef struct { intptr_t  v; } rcgc__sword;  /* atomic */
typedef struct { uint32_t  v; } rcgc__u32;    /* atomic */

/*
 * The object header, 48 bytes in front of every body (16-byte aligned).
 *
 *   owner       tid of the owning thread | RCGC__OWNER_* flags; 0 once the
 *               counts are merged.  Written by the owner at creation and by
 *               whichever thread merges (always before the merge is
 *               published); read by everyone (relaxed: an owner comparing
 *               its own tid cannot be misled, see refcount.c).
 *   ref_shared  (count << RCGC__SHARED_SHIFT) | RCGC__SHARED_* flags; the
 *               count is signed and may be negative before a merge.  Only
 *               read-modify-writes change it.
 *   type        set at creation, never changes.
 *   link        intrusive list link: the owner's merge queue while QUEUED,
 *               a release list, the registry's doomed stack or a reclaim
 *               list once dead (one at a time).  Never read by a thread
 *               that merely loads the object.
 *   x           an untracked object's body bytes (x.size, for the free
 *               hook); a tracked one's registry shard and collector index
 *               (x.gc, runtime/internal.h), its size being its type's or,
 *               if bigger, in front of its registry link.  Set at creation.
 *   ref_local   the owner's count: relaxed load + relaxed store by the owner
 *               only (or by a merger that holds the owner's bucket lock
 *               while the owner is blocked or gone).
 *   gc_bits     RCGC__GC_* flags (low 16 bits) and a magic (high 16 bits)
 *               that tells a live object from a freed one or a stray pointer.
 */
typedef struct rcgc__header {
    rcgc__word          owner;
    rcgc__sword         ref_shared;
    const rcgc_type    *type;
    struct rcgc__header *link;
    union {
        size_t          size;
        struct rcgc__gcword { uint32_t index, shard; } gc;
    } x;
    rcgc__u32           ref_local;
    rcgc__u32           gc_bits;
} rcgc__header;

#define RCGC__OWNER_SCAN      ((uintptr_t)1)     /* the collector examines it: owner
                                                    counts on the shared word */
#define RCGC__OWNER_UNBUFFERED ((uintptr_t)2)    /* tracked, not in a root buffer: a
                                                    decrement takes the slow path
                                                    that buffers it (clear: buffered,
                                                    or untracked) */
#define RCGC__OWNER_ZOMBIE    ((uintptr_t)4)     /* released while buffered: the
                                                    buffer's consumer frees it */
#define RCGC__OWNER_FLAGS     ((uintptr_t)7)
#define RCGC__TID_SHIFT       3                  /* tids are multiples of 8 */
#define RCGC__TID_DETACHED    (~(uintptr_t)0)    /* rcgc__tls_tid of an unattached thread */

#define RCGC__SHARED_QUEUED   ((intptr_t)1)      /* queued to the owner, once */
#define RCGC__SHARED_MERGED   ((intptr_t)2)      /* local folded in; owner is 0 */
#define RCGC__SHARED_IMMORTAL ((intptr_t)4)      /* saturated: never freed */
#define RCGC__SHARED_DYING    ((intptr_t)8)      /* being torn down: loads fail */
#define RCGC__SHARED_SCAN     ((intptr_t)16)     /* the collector examines it */
#define RCGC__SHARED_DIRTY    ((intptr_t)32)     /* touched while SCAN (Delta-test) */
#define RCGC__SHARED_FLAGS    ((intptr_t)63)
#define RCGC__SHARED_SHIFT    6
#define RCGC__SHARED_ONE      ((intptr_t)1 << RCGC__SHARED_SHIFT)
/* An increment that leaves the shared count at or above this makes the
   object immortal (the count is clamped here and never changes again). */
#define RCGC__SHARED_SATURATE ((intptr_t)1 << 56)

/* gc_bits: a tracked object's type has a traverse and is not
   RCGC_TYPE_ACYCLIC; one that is not in a root buffer (UNBUFFERED in its
   owner word) becomes a candidate cycle root when a decrement leaves it
   alive. */
#define RCGC__GC_TRACKED      (1u << 2)

/* The calling thread's tid, or RCGC__TID_DETACHED.  Initial-exec TLS: two
   loads and no call, also from a shared library. */
extern __thread uintptr_t rcgc__tls_tid __attribute__((tls_model("initial-exec")));

void rcgc__debug_check(const void *obj, const char *fn);
void rcgc__incref_owner_spill(void *obj);
void rcgc__incref_saturate(void *obj);
void rcgc__decref_owner_last(void *obj);
void rcgc__decref_shared_slow(void *obj);
void rcgc__decref_sub_done(void *obj, intptr_t old);
void rcgc__decref_owner_unbuffered(void *obj);
void rcgc__incref_flagged(void *obj, intptr_t old);
void rcgc__buffer_root(void *obj);

/* A decrement that leaves a tracked object alive makes it a candidate root;
   buffered before the decrement, while the caller's reference still holds
   the object (runtime/collector.c). */
static inline void rcgc__maybe_buffer(rcgc__header *h, void *obj)
{
    if (__builtin_expect(__atomic_load_n(&h->owner.v, __ATOMIC_RELAXED) &
                         RCGC__OWNER_UNBUFFERED, 0))
        rcgc__buffer_root(obj);
}

static inline rcgc__header *rcgc__hdr(const void *obj)
{
    return (rcgc__header *)obj - 1;
}

/* A non-owner decrement made by fetch_sub (`shared` is the word before it)
   that leaves nothing to do: the count stays positive, or the word is
   unmerged and either stays at zero or more or is queued already (the
   owner's local count still holds the object, and its merge will decide).
   SCAN asks for nothing (no DIRTY: see refcount.c, "Decrements by
   fetch_sub"). */
static inline int rcgc__shared_sub_is_plain(intptr_t shared)
{
    return !(shared & RCGC__SHARED_IMMORTAL) &&
           (shared >= 2 * RCGC__SHARED_ONE ||
            (!(shared & RCGC__SHARED_MERGED) &&
             (shared >= RCGC__SHARED_ONE || (shared & RCGC__SHARED_QUEUED))));
}

#if defined(__GNUC__)
#define RCGC__ALWAYS_INLINE __attribute__((always_inline))
#else
#define RCGC__ALWAYS_INLINE
#endif

static inline RCGC__ALWAYS_INLINE void *rcgc_incref(void *obj)
{
    rcgc__header *h;
    uintptr_t owner;

    if (obj == NULL)
        return obj;
    if (RCGC_DEBUG)
        rcgc__debug_check(obj, "rcgc_incref");
    h = rcgc__hdr(obj);
    owner = __atomic_load_n(&h->owner.v, __ATOMIC_RELAXED);
    /* The owner counts here whether or not the object is buffered (the
       second test runs only when the first fails). */
    if (__builtin_expect(owner == rcgc__tls_tid, 1) ||
        owner == (rcgc__tls_tid | RCGC__OWNER_UNBUFFERED)) {
        uint32_t local = __atomic_load_n(&h->ref_local.v, __ATOMIC_RELAXED);
        if (__builtin_expect(local == UINT32_MAX, 0))
            rcgc__incref_owner_spill(obj);
        else
            __atomic_store_n(&h->ref_local.v, local + 1, __ATOMIC_RELAXED);
    } else {
        /* Relaxed: an increment publishes nothing; the caller already holds
           a reference, so the object cannot be freed meanwhile. */
        intptr_t old = __atomic_fetch_add(&h->ref_shared.v, RCGC__SHARED_ONE,
                                          __ATOMIC_RELAXED);
        if (__builtin_expect((old & RCGC__SHARED_SCAN) ||
                             (uintptr_t)old >= (uintptr_t)(RCGC__SHARED_SATURATE -
                                                           RCGC__SHARED_ONE), 0))
            rcgc__incref_flagged(obj, old);   /* also below zero (unsigned) */
    }
    return obj;
}

static inline RCGC__ALWAYS_INLINE void rcgc_decref(void *obj)
{
    uintptr_t owner;
    rcgc__header *h;
    intptr_t shared;

    if (obj == NULL)
        return;
    if (RCGC_DEBUG)
        rcgc__debug_check(obj, "rcgc_decref");
    h = rcgc__hdr(obj);
    owner = __atomic_load_n(&h->owner.v, __ATOMIC_RELAXED);
    if (__builtin_expect(owner == rcgc__tls_tid, 1)) {
        uint32_t local = __atomic_load_n(&h->ref_local.v, __ATOMIC_RELAXED);
        if (__builtin_expect(local > 1, 1))
            __atomic_store_n(&h->ref_local.v, local - 1, __ATOMIC_RELAXED);
        else
            rcgc__decref_owner_last(obj);
        return;
    }
    if (owner == (rcgc__tls_tid | RCGC__OWNER_UNBUFFERED)) {
        rcgc__decref_owner_unbuffered(obj);     /* a candidate root first */
        return;
    }
    /* One fetch_sub, and a look at the word it replaced (refcount.c,
       "Decrements by fetch_sub").  A tracked object not in a root buffer
       is buffered first, while our reference still holds it: at once if
       unmerged (no non-owner decrement frees one), and by the CAS path if
       merged, where only the count says whether it stays alive.  Release
       pairs with the acquire of whoever later decides the free. */
    if (__builtin_expect(owner & RCGC__OWNER_UNBUFFERED, 0)) {
        if ((owner & ~RCGC__OWNER_FLAGS) == 0) {
            rcgc__decref_shared_slow(obj);
            return;
        }
        rcgc__buffer_root(obj);
    }
    shared = __atomic_fetch_sub(&h->ref_shared.v, RCGC__SHARED_ONE, __ATOMIC_RELEASE);
    if (__builtin_expect(!rcgc__shared_sub_is_plain(shared), 0))
        rcgc__decref_sub_done(obj, shared);
}

/*
 * The owner's fast paths of two slot functions, inline for the same reason
 * as the counts'; everything else is the library's function (runtime/slot.c
 * argues both).  The macros keep the names: &rcgc_ref_load is still the
 * function.
 */
static inline RCGC__ALWAYS_INLINE void *rcgc__ref_load_inline(rcgc_ref *slot)
{
    rcgc__header *h;
    uintptr_t owner;
    uint32_t local;
    void *obj;

    if (RCGC_DEBUG || slot == NULL)
        return (rcgc_ref_load)(slot);
    obj = __atomic_load_n(&slot->rcgc_private_, __ATOMIC_ACQUIRE);
    if (obj == NULL)
        return NULL;
    /* Ours and unmerged: alive, and only we count on local (refcount.c). */
    h = rcgc__hdr(obj);
    owner = __atomic_load_n(&h->owner.v, __ATOMIC_RELAXED);
    if (__builtin_expect((owner | RCGC__OWNER_UNBUFFERED) ==
                         (rcgc__tls_tid | RCGC__OWNER_UNBUFFERED), 1)) {
        local = __atomic_load_n(&h->ref_local.v, __ATOMIC_RELAXED);
        if (__builtin_expect(local != UINT32_MAX, 1)) {
            __atomic_store_n(&h->ref_local.v, local + 1, __ATOMIC_RELAXED);
            return obj;
        }
    }
    return (rcgc_ref_load)(slot);
}

static inline RCGC__ALWAYS_INLINE void rcgc__ref_init_inline(rcgc_ref *slot, void *obj)
{
    if (RCGC_DEBUG || slot == NULL) {
        (rcgc_ref_init)(slot, obj);
        return;
    }
    rcgc_incref(obj);
    /* Release: pairs with the acquire load of rcgc_ref_load. */
    __atomic_store_n(&slot->rcgc_private_, obj, __ATOMIC_RELEASE);
}

#define rcgc_ref_load(slot)      rcgc__ref_load_inline(slot)
#define rcgc_ref_init(slot, obj) rcgc__ref_init_inline((slot), (obj))

#ifdef __cplusplus
}
#endif

#endif /* RCGC_BIASED_H */
