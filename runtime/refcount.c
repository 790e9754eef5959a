/*
 * refcount.c: biased reference counting (Choi, Shull and Torrellas, "Biased
 * Reference Counting", PACT 2018; CPython's free-threaded Include/refcount.h
 * and Python/brc.c are the implementation this follows).  The inline fast
 * paths are in include/rcgc/biased.h; every slow path is here.
 *
 * Theory
 * ======
 *
 * An object's count is split in two.  The thread that created it, its
 * owner, counts in ref_local with a relaxed load and a relaxed store: no
 * read-modify-write, no lock prefix.  Every other thread counts in
 * ref_shared with read-modify-writes.  The true count is
 *
 *     unmerged:  ref_local + shared_count - (QUEUED ? 1 : 0)
 *     merged:    shared_count
 *
 * where shared_count = ref_shared >> RCGC__SHARED_SHIFT (signed).
 *
 * States of ref_shared's low bits and the transitions (who makes them):
 *
 *     UNMERGED --non-owner decrement (fetch_sub) from a
 *                shared_count <= 0-----------------------> OWING
 *     OWING    --the same thread's CAS: count + 1, the
 *                entry carries its reference-------------> QUEUED   (once)
 *     UNMERGED --owner's local reaches 0----------------> MERGED
 *     QUEUED   --owner's local reaches 0----------------> MERGED
 *     QUEUED   --queue entry merged (owner, or a queuer for a blocked or
 *                gone owner)----------------------------> MERGED
 *     any      --shared_count reaches SATURATE----------> +IMMORTAL
 *     MERGED 0 --release runs a finalizer (object.c)----> MERGED|DYING 1,
 *                then DYING 0 (torn down), or DYING cleared (resurrected)
 *
 * OWING is no flag: an unmerged, unqueued word below zero, which lasts from
 * a decrement's fetch_sub to its CAS ("Decrements by fetch_sub" below).
 * MERGED is final: a merged object is never queued again, its owner word is
 * 0 (flags aside) and its ref_local is 0, so every thread counts on the
 * shared word alone.  The object is dead exactly when a read-modify-write on
 * ref_shared produces MERGED with count 0; the thread whose RMW produced it
 * releases the object.  A try-increment (rcgc_ref_load) refuses MERGED 0
 * and anything DYING.  No thread ever frees on the strength of a plain
 * load (Nim RFC #575; PITFALLS 10), with one exception that cannot race:
 * an owner dropping its last local reference to an untracked object that
 * was never overwritten out of a slot, whose shared word reads exactly 0
 * (acquire), is the only holder and no thread can take a new reference
 * (rcgc__decref_owner_last), so it releases without a CAS.
 *
 * Invariants (tests check them through rcgc__test_raw):
 *
 *  I1  Unmerged and the owner attached and not blocked: ref_local >= 1.
 *      The owner merges when its local count would reach 0
 *      (rcgc__decref_owner_last), so an unmerged count can only be "dead"
 *      while queued, and then the queue still owns a reference.
 *  I2  owner == 0 (flags masked) implies merged, once the merging RMW has
 *      happened: every merge clears ref_local and the owner word *before*
 *      its CAS publishes MERGED (CPython gh-119999, gh-121794), so a thread
 *      that sees MERGED never sees a stale owner or local count.
 *  I3  QUEUED implies exactly one queue entry exists, and it holds one
 *      reference (the first non-owner decrement that went below zero is
 *      added back when the entry is made, carried by the entry, and
 *      applied when it merges).  Unmerged, unqueued and not OWING: the
 *      shared count is at least 0.
 *  I4  ref_local is written by the owner only, or by a thread that merges
 *      on behalf of a blocked or gone owner while holding the owner's
 *      bucket lock (thread.c); blocking_begin, blocking_end and detach take
 *      that lock, so the two never overlap.
 *  I5  Tids are never reused (thread.c): a thread that reuses a dead
 *      thread's stack or pthread_t never adopts its objects (mimalloc#956,
 *      CPython gh-144969).  A non-owner that queues to a tid it cannot find
 *      merges the object itself.
 *
 * Orders.  The owner's fast path is relaxed: the owner word it compares is
 * its own tid, which only the owner writes while it is running; another
 * thread changes it only while the owner is blocked or gone, under a lock
 * the owner takes before it runs again.  Non-owner decrements are release
 * (they may be the last access before someone else frees); every RMW that
 * can decide a free is acq_rel, or, for a decrement by fetch_sub, release
 * followed by an acquire load of the word, so the releasing thread
 * happens-after every earlier access of every other holder.  The owner's
 * zero path reads the shared word with acquire (CPython gh-117657) and
 * decides by CAS.
 *
 * The collector's flags (collector.c).  The owner word carries UNBUFFERED
 * (a tracked object not in a root buffer: the owner's inline decrement
 * misses and buffers it first, and a non-owner's takes the CAS path that
 * does; the increment ignores the bit), ZOMBIE (released while buffered)
 * and SCAN (the collector examines it: every owner operation misses and
 * counts on the shared word instead, so ref_local holds still).  The
 * shared word carries SCAN and DIRTY: a count change or merge that sees
 * SCAN sets DIRTY, in the same CAS where it can, and a merge sets it
 * before it touches ref_local (PROTOCOL-REVIEW hole 5); a decrement by
 * fetch_sub sets none (see "Decrements by fetch_sub" for why none is
 * needed).  Both words are changed by fetch_or/fetch_and or CAS only,
 * never by a plain store over a flag (hole 4), and every lookup of a
 * thread masks the flags.
 *
 * Overflow.  ref_local is 32 bits: an owner increment at UINT32_MAX moves
 * RCGC__LOCAL_SPILL (2^31) into the shared count and keeps counting, so the
 * count stays exact.  The shared count is 58 bits: an increment that leaves
 * it at or above RCGC__SHARED_SATURATE (2^56) clamps it there and sets
 * IMMORTAL; an immortal object ignores decrements and is never freed
 * (rcgc_refcount reports SIZE_MAX).  Nothing ever wraps.
 */
#include <errno.h>
#include <sched.h>

#include "internal.h"

static inline intptr_t shared_count(intptr_t shared)
{
    return shared >> RCGC__SHARED_SHIFT;   /* arithmetic shift: gcc, clang */
}

static inline uintptr_t owner_tid(uintptr_t owner)
{
    return owner & ~RCGC__OWNER_FLAGS;
}

/* The flags a count change carries forward: DIRTY joins SCAN (collector.c). */
static inline intptr_t carry_flags(intptr_t s)
{
    return (s & RCGC__SHARED_SCAN) ? RCGC__SHARED_DIRTY : 0;
}

/*
 * Our CAS set QUEUED on an unmerged, unqueued word: the entry, which holds
 * the reference the CAS added, goes to the owner the word names.
 *
 * Or the owner word already reads no owner: a merge has begun (the owner's
 * at its last local reference, or one on its behalf), which clears the
 * owner word before its CAS.  Nothing stops that between our CAS and our
 * read: once our CAS is made, another thread may increment (it need not
 * wait for us) and hand the owner a reference counted on the shared word,
 * which the owner drops from its local count, reaching its last one (the
 * litmus of tests/model/rcgc.pml, -DLITMUS_DEBT, found it).  That merge,
 * made or still to come, counts our entry's reference and clears QUEUED,
 * so there is no queue to push to, and a merge of our own, on behalf of
 * tid 0, would run beside it (I4).  The entry's reference goes as the
 * inline decrement would drop it: a fetch_sub, released if it was the
 * last of a merged word; an unmerged word is left to the merge under way,
 * which reads it after our fetch_sub.  DEFERRED first, as for an entry:
 * a debtor may still be about to read the word (rule 1).  Only an entry
 * made by a decrement can be the last reference here; an increment, a
 * try-increment or a pin still holds the reference it took, so a weak
 * upgrade under its stripe's lock releases nothing.
 */
void rcgc__make_entry(rcgc__header *h)
{
    uintptr_t tid = owner_tid(rcgc__word_load_relaxed(&h->owner));
    intptr_t old;

    if (__builtin_expect(tid != 0, 1)) {
        rcgc__queue_to_owner(h, tid);
        return;
    }
    rcgc__defer_memory(rcgc__body(h));
    old = rcgc__sword_fetch_add_acq_rel(&h->ref_shared, -RCGC__SHARED_ONE);
    if (!rcgc__shared_sub_is_plain(old))
        rcgc__decref_sub_done(rcgc__body(h), old);
}

/* Owner increment at UINT32_MAX: spill half into the shared count. */
void rcgc__incref_owner_spill(void *obj)
{
    rcgc__header *h = rcgc__hdr(obj);
    intptr_t old;

    /* Relaxed: an increment publishes nothing (see rcgc_incref). */
    old = rcgc__sword_fetch_add_relaxed(&h->ref_shared,
                                        (intptr_t)RCGC__LOCAL_SPILL * RCGC__SHARED_ONE);
    rcgc__u32_store_relaxed(&h->ref_local, UINT32_MAX - RCGC__LOCAL_SPILL + 1);
    if (rcgc__shared_owes(old))
        rcgc__settle_debt(h);     /* we lifted a debt */
    if (old + (intptr_t)RCGC__LOCAL_SPILL * RCGC__SHARED_ONE >= RCGC__SHARED_SATURATE)
        rcgc__incref_saturate(obj);
}

/*
 * An increment by fetch_add lifted an OWING word (rcgc__shared_owes): a
 * decrement by fetch_sub had gone below zero and its thread has yet to
 * make the queue entry.  We make it, as a second debtor would ("Decrements
 * by fetch_sub", rule 2): our CAS adds one reference back and sets QUEUED,
 * the entry carries that reference, and the debtor's own CAS, when it
 * comes, finds QUEUED and stands.  Until then our fetch_add has hidden the
 * debt (the word may read 0 or more), so we return only once the entry
 * exists, holding the reference we took.  If the debtor's CAS (or
 * another's) came first, we return at once, and may hand our references
 * to the owner before the debtor reads the owner word: rcgc__make_entry
 * copes with an owner that has begun to merge by then.  No wait: the
 * debtor may be preempted, or gone (a fork copies only the forking
 * thread).
 */
void rcgc__settle_debt(rcgc__header *h)
{
    intptr_t s = rcgc__sword_load_relaxed(&h->ref_shared);

    do {
        if (s & (RCGC__SHARED_QUEUED | RCGC__SHARED_MERGED | RCGC__SHARED_IMMORTAL))
            return;            /* the debtor, or another, made the entry */
    } while (!rcgc__sword_cas_acq_rel(&h->ref_shared, &s,
                                      (s + RCGC__SHARED_ONE) | RCGC__SHARED_QUEUED |
                                          carry_flags(s)));
    rcgc__make_entry(h);
}

/* The shared count reached the saturation bound: clamp it and make the
   object immortal.  Concurrent increments between the fetch_add and this
   CAS are far too few (one per thread) to reach the word's 2^57 limit. */
void rcgc__incref_saturate(void *obj)
{
    rcgc__header *h = rcgc__hdr(obj);
    intptr_t s = rcgc__sword_load_relaxed(&h->ref_shared);
    intptr_t n;

    do {
        n = (RCGC__SHARED_SATURATE & ~RCGC__SHARED_FLAGS) |
            (s & RCGC__SHARED_FLAGS) | RCGC__SHARED_IMMORTAL;
    } while (!rcgc__sword_cas_acq_rel(&h->ref_shared, &s, n));
}

/* An increment by a non-owner found SCAN, the saturation bound or a count
   below zero in the word it returned.  DIRTY comes after the count change
   here; the collector's Delta-test compares the whole word, so it sees
   either.  Below zero is nothing once queued; OWING, we make the entry
   (rcgc__settle_debt), holding the reference we just took. */
void rcgc__incref_flagged(void *obj, intptr_t old)
{
    rcgc__header *h = rcgc__hdr(obj);

    if (old & RCGC__SHARED_SCAN)
        rcgc__sword_fetch_or_acq_rel(&h->ref_shared, RCGC__SHARED_DIRTY);
    if (rcgc__shared_owes(old))
        rcgc__settle_debt(h);
    else if (old >= RCGC__SHARED_SATURATE - RCGC__SHARED_ONE)
        rcgc__incref_saturate(obj);
}

/*
 * Fold ref_local into the shared word and mark it MERGED, adding extra
 * (-1 for a queue entry's reference or the owner's last local one).  The
 * caller is the owner, or holds the owner's bucket lock while the owner is
 * blocked or gone (I4).  Returns the merged count; 0 means the caller must
 * release the object.  In two halves (the tests stop a thread between
 * them); between the two the thread's record names the object and the
 * local count it took, for the child of a fork in which the thread is
 * gone (rcgc__merge_finish_gone).
 */
intptr_t rcgc__merge_counts(rcgc__header *h, intptr_t extra)
{
    intptr_t s;
    uint32_t local = rcgc__merge_begin(h, &s);

    return rcgc__merge_end(h, s, local, extra);
}

/* I2: the owner word and the local count are cleared before MERGED is
   published (gh-119999).  fetch_and keeps the collector's owner flags
   (hole 4); only tracked objects have any, so the others take a plain
   store (no other thread writes their owner word while we may merge).
   Release: the merging thread's record (rcgc__merge_begin) is in memory
   before the owner goes, so a fork's child that copies the one copies the
   other; and a collector that reads local 0 also sees a DIRTY set
   before. */
static void clear_owner_local(rcgc__header *h)
{
    if (rcgc__u32_load_relaxed(&h->gc_bits) & RCGC__GC_TRACKED)
        rcgc__word_fetch_and_acq_rel(&h->owner, RCGC__OWNER_FLAGS);
    else
        rcgc__word_store_release(&h->owner, 0);
    rcgc__u32_store_release(&h->ref_local, 0);
}

/* Clears the owner word and the local count (I2), after DIRTY if the
   collector may be reading them; returns the local count, and the shared
   word read into *sp. */
uint32_t rcgc__merge_begin(rcgc__header *h, intptr_t *sp)
{
    rcgc__thread *th = rcgc__tls_thread;
    uint32_t local = rcgc__u32_load_relaxed(&h->ref_local);
    intptr_t s;

    if (th != NULL) {
        rcgc_assert_internal(th->merging == NULL);
        th->merging = h;
        th->merging_local = local;
    }
    /* Acquire pairs with the release decrements of non-owners (so a free
       below happens after their last access). */
    s = rcgc__sword_load_acquire(&h->ref_shared);
    /* The collector may be reading local + shared: DIRTY first, before
       local moves (PROTOCOL-REVIEW hole 5). */
    if (s & RCGC__SHARED_SCAN)
        s = rcgc__sword_fetch_or_acq_rel(&h->ref_shared, RCGC__SHARED_DIRTY) |
            RCGC__SHARED_DIRTY;

    clear_owner_local(h);
    *sp = s;
    return local;
}

/* Publishes MERGED with the count: the local count that rcgc__merge_begin
   took, the shared word's and extra.  The thread's record goes just
   before each CAS, and comes back if it fails: once MERGED is published
   another thread may free the object, and a fork's child must not then
   write to it.  (A fork between the two leaves the object as before the
   record existed: see fork.c.) */
intptr_t rcgc__merge_end(rcgc__header *h, intptr_t s, uint32_t local, intptr_t extra)
{
    rcgc__thread *th = rcgc__tls_thread;
    intptr_t n, count;
    bool buffered = false;

    for (;;) {
        if (s & RCGC__SHARED_IMMORTAL) {
            n = s | RCGC__SHARED_MERGED;
            count = 1;
        } else {
            if (s & RCGC__SHARED_MERGED) {
                /* The owner merged at zero first (I3: our entry's reference
                   is still in the count); local was already folded in. */
                count = shared_count(s) + extra;
            } else {
                count = shared_count(s) + (intptr_t)local + extra;
            }
            if (count < 0)
                rcgc__fatal("rcgc_decref", "reference count below zero", rcgc__body(h));
            if (count > 0 && extra < 0 && !buffered) {
                /* A decrement that leaves it alive: a candidate root,
                   buffered while the reference we are dropping still
                   holds it. */
                rcgc__maybe_buffer(h, rcgc__body(h));
                buffered = true;
            }
            n = (count << RCGC__SHARED_SHIFT) |
                (s & RCGC__SHARED_FLAGS & ~RCGC__SHARED_QUEUED) | RCGC__SHARED_MERGED |
                carry_flags(s);
        }
        if (th != NULL)
            th->merging = NULL;
        /* acq_rel: release publishes the cleared owner and local count to
           whoever reads MERGED. */
        if (rcgc__sword_cas_acq_rel(&h->ref_shared, &s, n))
            return count;
        if (th != NULL)
            th->merging = h;
    }
}

/*
 * The child of a fork, alone: a gone thread stopped inside a merge of h,
 * having taken `local` (rcgc__merge_begin).  Its owner word and local
 * count may be cleared already, which would leave the count reading low
 * and the word unmerged with no owner (I2), for good.  Finish the merge
 * here, as rcgc__merge_end would, without the gone thread's extra: the
 * reference it was dropping is one no one will drop, like everything it
 * held (extra 0: nothing is buffered).  No collection is running (fork.c
 * took collect_mutex), so no flag needs setting, and ours is the only
 * thread.
 */
void rcgc__merge_finish_gone(rcgc__header *h, uint32_t local)
{
    intptr_t s = rcgc__sword_load_acquire(&h->ref_shared);

    if (s & RCGC__SHARED_MERGED)
        return;                     /* its CAS was made */
    clear_owner_local(h);
    (void)rcgc__merge_end(h, s, local, 0);
}

/* A queue entry is merged: the entry's reference goes with it. */
void rcgc__merge_queued(rcgc__header *h)
{
    if (rcgc__merge_counts(h, -1) == 0)
        rcgc__release(h);
}

/*
 * The owner's decrement found ref_local <= 1: merge at zero.  The owner
 * holds the last local reference; whatever non-owners hold is in the
 * shared word, so the merged count is the shared count alone.
 */
void rcgc__decref_owner_last(void *obj)
{
    rcgc__header *h = rcgc__hdr(obj);

    if (rcgc__u32_load_relaxed(&h->ref_local) == 0) {
        /* Impossible while owned (I1) unless the caller over-released. */
        rcgc_assert(0, "rcgc_decref", "reference count below zero", obj);
        return;
    }
    /* Death without a read-modify-write (CPython's
       _Py_MergeZeroLocalRefcount): shared word exactly 0, no flag, no
       queue entry, so ours is the last reference and no other thread can
       be deciding anything about this object.  Nor can one be taking a
       new reference: that needs a reference already, except for a
       try-increment through a stale slot read, which only an overwrite
       makes possible (DEFERRED), or the collector's through its buffers
       and registry, which hold tracked objects only, or a weak reference's
       (WEAKREFS).  Acquire: non-owner decrements that brought the word to
       0 happen-before the teardown, and so does whatever their threads did
       before, such as setting WEAKREFS, so gc_bits is read after it. */
    if (rcgc__sword_load_acquire(&h->ref_shared) == 0 &&
        !(rcgc__u32_load_relaxed(&h->gc_bits) &
          (RCGC__GC_TRACKED | RCGC__GC_DEFERRED | RCGC__GC_WEAKREFS))) {
        rcgc__word_store_relaxed(&h->owner, 0);              /* I2 */
        rcgc__u32_store_relaxed(&h->ref_local, 0);
        rcgc__sword_store_relaxed(&h->ref_shared, RCGC__SHARED_MERGED);
        rcgc__release(h);
        return;
    }
    if (rcgc__merge_counts(h, -1) == 0)
        rcgc__release(h);
}

/* The owner's decrement of a tracked object not yet in a root buffer. */
void rcgc__decref_owner_unbuffered(void *obj)
{
    rcgc__header *h = rcgc__hdr(obj);
    uint32_t local = rcgc__u32_load_relaxed(&h->ref_local);

    if (local > 1) {
        rcgc__buffer_root(obj);
        rcgc__u32_store_relaxed(&h->ref_local, local - 1);
    } else {
        rcgc__decref_owner_last(obj);
    }
}

/*
 * A non-owner decrement by CAS: the inline path's choice for a merged
 * object not in a root buffer (UNBUFFERED), which becomes a candidate root
 * only if the decrement leaves it alive, and only the CAS's word says so.
 * It decides everything a decrement can meet: a merged object's last
 * reference, an unmerged one's queue entry (in the same CAS as the count:
 * no OWING here), immortality, and DIRTY for a flagged word (SCAN; then even
 * the owner counts on the shared word, so that its local count holds still
 * while the collector reads it).
 */
void rcgc__decref_shared_slow(void *obj)
{
    rcgc__header *h = rcgc__hdr(obj);
    intptr_t s, n;

    rcgc_assert(rcgc__tls_tid != RCGC__TID_DETACHED, "rcgc_decref",
                "thread not attached", obj);

    s = rcgc__sword_load_relaxed(&h->ref_shared);
    for (;;) {
        intptr_t count = shared_count(s);

        if (s & RCGC__SHARED_IMMORTAL)
            return;
        if (s & RCGC__SHARED_MERGED) {
            if (count <= 0) {
                /* Over-release of a dead object; never free twice. */
                rcgc_assert(0, "rcgc_decref", "reference count below zero", obj);
                return;
            }
            if (count > 1)
                rcgc__maybe_buffer(h, obj);
            /* acq_rel: the last decrement decides the free (PITFALLS 10). */
            n = (s - RCGC__SHARED_ONE) | carry_flags(s);
            if (rcgc__sword_cas_acq_rel(&h->ref_shared, &s, n)) {
                /* DYING: its teardown is already decided elsewhere (a
                   finalizer, or the collector); a stray decrement never
                   releases twice. */
                if (count == 1 && !(s & RCGC__SHARED_DYING))
                    rcgc__release(h);
                return;
            }
            continue;
        }
        if (count > 0 || (s & RCGC__SHARED_QUEUED)) {
            /* Unmerged: may go negative once queued (PITFALLS 8); the
               owner's local count keeps it alive. */
            rcgc__maybe_buffer(h, obj);
            n = (s - RCGC__SHARED_ONE) | carry_flags(s);
            if (rcgc__sword_cas_acq_rel(&h->ref_shared, &s, n))
                return;
            continue;
        }
        /* Unmerged, shared count 0, not queued: queue it once; the entry
           carries our reference (I3), so the count is left as it is.  The
           owner may be this thread (it counts here while SCAN is set).  A
           candidate root now: the collector waits for the merge. */
        rcgc__maybe_buffer(h, obj);
        n = s | RCGC__SHARED_QUEUED | carry_flags(s);
        if (rcgc__sword_cas_acq_rel(&h->ref_shared, &s, n)) {
            rcgc__make_entry(h);
            return;
        }
    }
}

/*
 * Decrements by fetch_sub.  A non-owner decrement (and the owner's own
 * while SCAN sends it to the shared word) is one fetch_sub, with no load
 * of the word before it: on this machine a load of a word that a locked
 * RMW has just written waits about 4 ns for that store (a probe: an
 * increment+decrement pair by fetch_add and fetch_sub 10.4 ns, 14.5 with a
 * load of the word before the fetch_sub; BM_pair_atomic_cas is the
 * load-and-CAS shape).  The word it replaced then says whether anything is
 * left to do (rcgc__shared_sub_is_plain), and nothing is, except:
 *
 *   MERGED, count 1   ours was the last reference: release, as a CAS would
 *                     have (DYING: decided elsewhere, nothing to do);
 *   MERGED, <= 0      an over-release: taken back, and a misuse abort;
 *   IMMORTAL          taken back (its count never changes; never freed);
 *   unmerged, count <= 0, not queued
 *                     the word is OWING: below zero, and no queue entry
 *                     will make the owner merge it.  Our CAS makes the
 *                     entry: it adds our reference back and sets QUEUED
 *                     (I3), and we queue the object.  If the word is QUEUED
 *                     or MERGED by then, another thread made the entry, or
 *                     merged with our decrement counted: it stands.
 *
 * A word is OWING for the few instructions between the fetch_sub and the
 * CAS, or longer if the thread is preempted there.  Three rules make that
 * safe (tests/model/rcgc.pml checks the protocol with them and catches a
 * break of rule 1 or 3; tests/test_owing.c checks the entries of rule 2.
 * The first try, in the ninth session, had neither rule 1 nor rule 2 and
 * freed objects under a debtor at once: stress_lastref's gone_local mode,
 * two non-owners dropping references counted in a gone owner's local
 * count).
 *
 *  1. An OWING object is not freed, and a queued one is freed late.  Every
 *     free is decided by an RMW that produces MERGED 0, after a merge, or
 *     by the owner's death without one, which needs the word to be exactly
 *     0.  An OWING word is below zero; no merge comes from a queue entry
 *     while there is none; and the owner at its last local reference holds
 *     a reference of its own, so local 1 + shared >= 1 and the word is not
 *     below zero (nor is a debt hidden in it: rule 2).  Once another
 *     thread queues the object (its decrement went below zero too, or it
 *     incremented: rule 2), the entry's merge may free it while we have yet to
 *     read the word again: every queued object is DEFERRED
 *     (rcgc__queue_to_owner), so its memory waits for a grace period, and we
 *     are inside our read section (no quiescent state in a decrement); we
 *     read MERGED and stop.
 *  2. No increment hides a debt: one that meets an OWING word makes the
 *     entry itself, as a second debtor would, and we find QUEUED at our
 *     CAS.  An increment by fetch_add (the inline path's unsigned compare
 *     catches below zero) makes it before it returns, holding its new
 *     reference (rcgc__settle_debt); one by CAS (rcgc__try_incref,
 *     rcgc__pin_flag) takes its reference and sets QUEUED in one CAS, then
 *     queues the object.  Otherwise an increment could lift the count to
 *     0, its reference go back through the owner's local count, and the
 *     owner free an unflagged 0 at once under us; or a collection could
 *     read a count that looks settled, find the object garbage and free it
 *     while we are still to queue it.  While the incrementing thread is
 *     between its fetch_add and its CAS, its references are counted and
 *     cannot go anywhere, so neither can happen then.  No thread ever
 *     waits for a debtor, which may be preempted, or gone in the child of
 *     a fork (in the thirteenth session increments waited for it, and
 *     a fork inside the window left them waiting forever).
 *  3. The collector counts an OWING member as externally referenced, as it
 *     does a QUEUED one (collector.c, step 4): it decides nothing about
 *     it in this collection.  A debt that starts after step 4 changes the
 *     word, and the Delta-test sees it.
 *
 * No DIRTY, even while SCAN is set: after its fetch_sub the decrementing
 * thread holds nothing, so it must not touch the object again, OWING
 * aside (another holder may release it at once).  The Delta-test does not
 * need it: a thread can decrement only a reference it holds, or a slot's
 * that it overwrites.  A thread holding a reference to a white member held
 * it at step 4, where it was counted (the member is black), or took it
 * since, out of a slot by an exchange or by a try-increment, each of which
 * set DIRTY in its own RMW.  A thread overwriting a slot holds the slot's
 * object: a white member whose word is DIRTY (its component fails, and the
 * slot's target is in it) or a black one (the target is black too).  The
 * owner's fast path is off while SCAN is set, so this covers the owner too.
 */
void rcgc__decref_sub_done(void *obj, intptr_t old)
{
    rcgc__header *h = rcgc__hdr(obj);
    intptr_t count = shared_count(old);
    intptr_t s, n;

    if (old & RCGC__SHARED_IMMORTAL) {
        rcgc__sword_fetch_add_relaxed(&h->ref_shared, RCGC__SHARED_ONE);
        return;
    }
    if (!(old & RCGC__SHARED_MERGED)) {
        /* OWING: make the queue entry (rule 1 keeps the memory ours). */
        rcgc_assert(rcgc__tls_tid != RCGC__TID_DETACHED, "rcgc_decref",
                    "thread not attached", obj);
        s = old - RCGC__SHARED_ONE;
        do {
            if (s & (RCGC__SHARED_QUEUED | RCGC__SHARED_MERGED | RCGC__SHARED_IMMORTAL))
                return;
            /* DYING too: no collection makes an OWING word DYING (rule 3),
               but a finalizer may drop a reference to a member of its own
               garbage component; the collector's check after the
               finalizers then finds the word changed and keeps the
               component. */
            n = (s + RCGC__SHARED_ONE) | RCGC__SHARED_QUEUED | carry_flags(s);
        } while (!rcgc__sword_cas_acq_rel(&h->ref_shared, &s, n));
        rcgc__make_entry(h);
        return;
    }
    if (count <= 0) {
        rcgc__sword_fetch_add_relaxed(&h->ref_shared, RCGC__SHARED_ONE);
        rcgc_assert(0, "rcgc_decref", "reference count below zero", obj);
        return;
    }
    if (count == 1 && !(old & RCGC__SHARED_DYING)) {
        /* Acquire (PITFALLS 10): reading our RMW's word, or a later one,
           synchronizes with every release decrement before ours. */
        (void)rcgc__sword_load_acquire(&h->ref_shared);
        rcgc__release(h);
    }
}

/*
 * The increment of rcgc_ref_load: succeeds unless the object is dead
 * (merged with count 0).  The caller read the pointer from a slot inside
 * an epoch read section, so the memory is still there.  An unmerged object
 * may be at true count zero and waiting for its owner's merge; incrementing
 * it then is sound, because nothing is freed before a CAS produces MERGED
 * with count 0, and that CAS would see this increment.
 */
bool rcgc__try_incref(rcgc__header *h)
{
    intptr_t s;

    if ((rcgc__word_load_relaxed(&h->owner) | RCGC__OWNER_UNBUFFERED) ==
        (rcgc__tls_tid | RCGC__OWNER_UNBUFFERED)) {
        /* Ours and unmerged: I1 says it is alive, and only we can merge it. */
        rcgc_incref(rcgc__body(h));
        return true;
    }
    s = rcgc__sword_load_relaxed(&h->ref_shared);
    for (;;) {
        if ((s & RCGC__SHARED_DYING) || rcgc__shared_is_dead(s))
            return false;
        if (rcgc__shared_owes(s)) {
            /* Never hide a debt ("Decrements by fetch_sub", rule 2): our
               reference and the entry's in one CAS, then the entry (an
               owner blocked or gone is merged for, leaving our
               reference: nothing is freed here). */
            if (rcgc__sword_cas_acq_rel(&h->ref_shared, &s,
                                        (s + 2 * RCGC__SHARED_ONE) | RCGC__SHARED_QUEUED |
                                            carry_flags(s))) {
                rcgc__make_entry(h);
                return true;
            }
            continue;
        }
        /* Acquire: pairs with the release decrements, so what we read of
           the object after this is not older than its holders' writes.
           A new reference to a flagged object makes it DIRTY in the same
           CAS (collector.c). */
        if (rcgc__sword_cas_acquire(&h->ref_shared, &s,
                                    (s + RCGC__SHARED_ONE) | carry_flags(s))) {
            if (s >= RCGC__SHARED_SATURATE - RCGC__SHARED_ONE)
                rcgc__incref_saturate(rcgc__body(h));
            return true;
        }
    }
}

/*
 * The collector's pin and flag in one step (collector.c): a try-increment
 * whose CAS also sets SCAN and clears DIRTY, then SCAN and owner_flags in
 * the owner word.  The pin is never later than the flag (PROTOCOL-REVIEW
 * hole 3).  The object is not flagged yet (one collection at a time, and
 * every survivor is unflagged).
 * quick (rcgc__pin_flag_shared): by the shared word alone, as a thread
 * that is not the owner pins, whoever the caller is: what a helper runs
 * (collector.c, "Help"), which may be the owner, offline, whose objects
 * others merge for meanwhile (so it must not count on local); false also
 * where more is needed (an entry owed to the owner, a count near
 * saturation), with nothing done: the full pin's work, left to the
 * collecting thread.
 */
static inline bool pin_flag(rcgc__header *h, uintptr_t owner_flags, bool quick)
{
    intptr_t s = rcgc__sword_load_relaxed(&h->ref_shared);

    if (!quick && (rcgc__word_load_relaxed(&h->owner) | RCGC__OWNER_UNBUFFERED) ==
                      (rcgc__tls_tid | RCGC__OWNER_UNBUFFERED)) {
        /* Ours and unmerged: alive (I1), and only we count on local. */
        rcgc_incref(rcgc__body(h));
        while (!rcgc__sword_cas_acq_rel(&h->ref_shared, &s,
                                        (s | RCGC__SHARED_SCAN) & ~RCGC__SHARED_DIRTY))
            ;
    } else {
        for (;;) {
            if ((s & RCGC__SHARED_DYING) || rcgc__shared_is_dead(s))
                return false;
            if (quick && (rcgc__shared_owes(s) || s >= RCGC__SHARED_SATURATE - RCGC__SHARED_ONE))
                return false;
            if (rcgc__shared_owes(s)) {
                /* As in rcgc__try_incref: pin, flag and the entry. */
                if (rcgc__sword_cas_acq_rel(&h->ref_shared, &s,
                                            ((s + 2 * RCGC__SHARED_ONE) | RCGC__SHARED_QUEUED |
                                             RCGC__SHARED_SCAN) & ~RCGC__SHARED_DIRTY)) {
                    rcgc__make_entry(h);
                    break;
                }
                continue;
            }
            /* acq_rel: acquire as in rcgc__try_incref; release orders the
               flag before the grace period that publishes it. */
            if (rcgc__sword_cas_acq_rel(&h->ref_shared, &s,
                                        ((s + RCGC__SHARED_ONE) | RCGC__SHARED_SCAN) &
                                            ~RCGC__SHARED_DIRTY))
                break;
        }
        if (s >= RCGC__SHARED_SATURATE - RCGC__SHARED_ONE)
            rcgc__incref_saturate(rcgc__body(h));
    }
    rcgc__word_fetch_or_relaxed(&h->owner, RCGC__OWNER_SCAN | owner_flags);
    return true;
}

bool rcgc__pin_flag(rcgc__header *h, uintptr_t owner_flags)
{
    return pin_flag(h, owner_flags, false);
}

bool rcgc__pin_flag_shared(rcgc__header *h, uintptr_t owner_flags)
{
    return pin_flag(h, owner_flags, true);
}

size_t rcgc_refcount(const void *obj)
{
    const rcgc__header *h;
    intptr_t s, count;

    if (obj == NULL)
        return 0;
    if (RCGC_DEBUG)
        rcgc__debug_check(obj, "rcgc_refcount");
    h = rcgc__hdr(obj);
    for (;;) {
        intptr_t again;
        uint32_t local;
        uintptr_t owner;

        s = rcgc__sword_load_acquire(&h->ref_shared);
        /* Acquire: pairs with a merge's release store of local 0, so a
           merge caught between clearing local and publishing MERGED is
           seen as an owner of 0 on an unmerged word: read again. */
        local = rcgc__u32_load_acquire(&h->ref_local);
        owner = rcgc__word_load_relaxed(&h->owner);
        again = rcgc__sword_load_acquire(&h->ref_shared);
        if (s != again ||
            (!(s & RCGC__SHARED_MERGED) && owner_tid(owner) == 0))
            continue;
        if (s & RCGC__SHARED_IMMORTAL)
            return SIZE_MAX;
        count = shared_count(s);
        if (!(s & RCGC__SHARED_MERGED))
            count += (intptr_t)local - ((s & RCGC__SHARED_QUEUED) ? 1 : 0);
        return count < 0 ? 0 : (size_t)count;
    }
}

void rcgc__test_raw(const void *obj, uintptr_t *owner, uint32_t *local, intptr_t *shared)
{
    const rcgc__header *h = rcgc__hdr(obj);

    if (owner)
        *owner = rcgc__word_load_relaxed(&h->owner);
    if (local)
        *local = rcgc__u32_load_relaxed(&h->ref_local);
    if (shared)
        *shared = rcgc__sword_load_acquire(&h->ref_shared);
}

void rcgc__test_set_counts(void *obj, uint32_t local, intptr_t count)
{
    rcgc__header *h = rcgc__hdr(obj);
    intptr_t s = rcgc__sword_load_relaxed(&h->ref_shared);

    rcgc__u32_store_relaxed(&h->ref_local, local);
    while (!rcgc__sword_cas_acq_rel(&h->ref_shared, &s,
                                    (count << RCGC__SHARED_SHIFT) | (s & RCGC__SHARED_FLAGS)))
        ;
}
