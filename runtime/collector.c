/*
 * collector.c: the cycle collector, concurrent trial deletion beside
 * running mutators (Bacon and Rajan, "Concurrent Cycle Collection in
 * Reference Counted Systems", ECOOP 2001; the Recycler, PLDI 2001), with
 * the fixes of ../shared/spec/PROTOCOL-REVIEW.md; and the gc module's API.
 *
 * Colors (Bacon and Rajan's names; where each lives here)
 * ======
 *   black   in use: not examined, or examined and found externally referenced
 *   purple  a possible cycle root: an entry in a root buffer, and no
 *           RCGC__OWNER_UNBUFFERED in its owner word
 *   gray    being examined: an entry in this collection's member table, pinned,
 *           RCGC__OWNER_SCAN in its owner word and RCGC__SHARED_SCAN in its
 *           shared word
 *   white   examined, every reference to it explained by edges from other
 *           white members: garbage if its component passes the Delta-test
 *   (DYING  white and proven: its teardown has begun; loads refuse it)
 *
 * Candidate roots.  A decrement that leaves a tracked object (a traverse, no
 * RCGC_TYPE_ACYCLIC) alive, and an exchange that stores one, clear
 * UNBUFFERED in its owner word (whoever clears it buffers it: once) and
 * append the object to the calling thread's root chunk (rcgc__buffer_root;
 * the check is inline in <rcgc/biased.h>, on the owner word the count paths
 * load anyway).  A chunk is handed to the collector when full, at safepoints
 * (once it holds RCGC__ROOTS_SEAL_AT, or has stopped growing:
 * rcgc__roots_safepoint), at blocking regions, and at detach or exit;
 * rcgc_collect also takes every thread's partial chunk.  A thread with no
 * memory for a chunk marks the object MISSED instead, and the next
 * collection finds it in the registry (find_missed).  An entry holds no
 * reference: an object released while buffered becomes a ZOMBIE whose memory
 * the entry's consumer returns (both set their bit in the owner word by
 * fetch_or, rcgc__dispose ZOMBIE and the consumer UNBUFFERED, and exactly
 * one sees the other's; PITFALLS 14).  Handing over takes no lock (a
 * lock-free stack and a semaphore; see hand_over), nor does adding to a
 * chunk (its slot is claimed by exchange; see roots_claim), nor anything
 * else a mutator does here: the registry of tracked objects defers to
 * whoever holds its lock (see "the registry"), so no mutator ever waits for
 * the collector.
 *
 * One collection (collect_once), never stopping a mutator (it runs steps
 * 1-8 in rounds of candidates, each a collection of its own: see
 * "Rounds"):
 *  1. roots    each candidate is pinned and flagged (rcgc__pin_flag: the
 *              validated try-increment of rcgc_ref_load, whose CAS also
 *              sets SCAN and clears DIRTY in the shared word; then
 *              fetch_or OWNER_SCAN in the owner word, with UNBUFFERED: the
 *              entry is consumed in the same RMW); dead ones are skipped,
 *              zombies freed.  A big take runs in two parts when a waiting
 *              caller helps (see "Help").
 *  2. mark     from the roots, breadth first with the member table as its
 *              queue (no stack, no recursion), every tracked object
 *              reachable through slots is pinned and flagged the same way
 *              (a level at a time, visited in two parts, when a waiting
 *              caller helps: see "Help").
 *              The pin is never later than the flag: a pinned object cannot
 *              be freed while a thread that has not yet seen the flag drops
 *              its last reference (review hole 3).  Frozen objects are not
 *              entered.  A background collection marks within a budget
 *              ("Bounded marking" below); an object it leaves unexamined
 *              counts as outside.  A candidate whose targets were all
 *              members when it was checked at its take is not visited
 *              again ("Marking at the take"): its visit would find
 *              nothing to enter.
 *  3. grace    one grace period (synchronize_rcu).  Every count operation
 *              that read an unflagged word has finished (the owner's inline
 *              path runs between quiescent states); from here on any count
 *              change goes through the shared word and any move through
 *              rcgc_ref_exchange marks DIRTY.
 *  4. count    each member's shared word (acquire), local count and slots
 *              are read once; that one reading gives both its reference
 *              count and its out-edges into the table (hole 2); in a big
 *              table, half of the members on a thread waiting in
 *              rcgc_collect, if there is one ("Help"), as in step 6.  cyclic
 *              count = count - pin - internal edges pointing at it.  QUEUED
 *              (a queue entry holds a reference), OWING (one is about to:
 *              refcount.c), DIRTY, DYING or IMMORTAL members count as
 *              externally referenced.
 *  5. scan     members with a positive cyclic count are black, and so is
 *              everything reachable from them along the recorded edges;
 *              the rest is white (the Sigma-test: a white member's count is
 *              explained by edges from white members).
 *  6. delta    the white subgraph is split into connected components
 *              (worked out only when a failure needs them: join), and
 *              each component passes the Delta-test on its own (so one
 *              busy object does not starve unrelated garbage): every
 *              member's shared word must still equal what step 4 read, and
 *              the CAS that checks it sets DYING in the same step, so no
 *              later try-increment can succeed.  Any count change, merge
 *              (DIRTY first, hole 5), exchange barrier or new reference
 *              changes the word.  A failing component is un-DYINGed and
 *              its members go back to the candidates.
 *  7. free     for a passing component: the weak references to its members
 *              are cleared (weakref.c; step 4 noted which have any: one
 *              made later needs a strong reference, counted in step 4 (so
 *              the object is black) or taken since (so the Delta-test
 *              fails), or a finalizer, after which they are cleared again);
 *              every member's finalizer runs once (FINALIZED) with
 *              the whole component intact, then the weak references'
 *              callbacks; if any of these ran, the
 *              words are checked again (a finalizer that stored a member somewhere
 *              changed a count: the component is resurrected, kept, and
 *              not finalized again); then every slot is cleared, references
 *              leaving the component are dropped (a member whose references
 *              all stayed in its component, and no finalizer ran, is not
 *              visited: nothing else writes the slots of garbage), and each
 *              member is disposed; its memory goes back at once unless it
 *              was ever overwritten out of a slot (then after a grace
 *              period: object.c explains why no other thread can be
 *              reading it).
 *  8. unflag   survivors lose SCAN/DIRTY (fetch_and, hole 4) and their pin
 *              (a decrement that buffers nothing).
 *
 * Safety: a component is freed only if, over an interval after the grace
 * period, no member's shared word changed, no member's local count could
 * change (the owner fast path is off while SCAN is set; merges set DIRTY
 * before they touch local), and no reference to a member moved (exchange
 * barrier; store and compare-exchange change counts).  So the counts and
 * slots read in step 4 are one consistent snapshot of the component, in
 * which every reference to a member came from a member: no thread and no
 * live object could reach it, and garbage stays garbage.  DYING, set by
 * the same CAS, turns away the one kind of access that needs no reference,
 * a load racing the slot overwrite that made the cycle garbage.
 * (Equal words at the test mean unchanged ones: DIRTY, which only the
 * next flag clears, follows every count change of a flagged word but one,
 * a decrement by fetch_sub, which with an increment could restore the
 * word; but only a holder decrements, and a thread holding a
 * reference to a white member took it by a try-increment or an exchange,
 * each of which set DIRTY: refcount.c, "Decrements by fetch_sub".)
 * Liveness (Paz et al. showed the original algorithm can defer a cycle
 * forever): a component fails the Delta-test only if one of its own
 * members' words changed after step 4 read it, that is, only if a thread
 * touched it; failed components are re-buffered, never dropped, and
 * examined again from a fresh flag (the flag clears DIRTY).  The test is
 * per component, so busy live neighbours do not hold garbage back.  A
 * garbage cycle is touched by no one, so the first collection that
 * examines it after the mutators let go (and, for an object queued to its
 * owner, after that owner's next safepoint, which QSBR requires anyway)
 * frees it: within one collection for rcgc_collect, which marks without a
 * bound, and within O(n / MARK_CREDIT) candidates for a background
 * collection, n the subgraph it sits behind (stress_gc_liveness,
 * test_gc_hub).
 * A collection that runs out of memory before step 7 frees nothing,
 * restores every flag and pin, and re-buffers its roots without
 * allocating; later, no memory only means surplus root chunks unmapped one
 * at a time, or SAVEALL garbage listed by the next collection (PITFALLS 28;
 * see struct collection).
 * Cost: the subgraph reachable from the candidates, not the heap, and for
 * background collections at most MARK_CREDIT members of marking per
 * candidate handed over, so a long-lived hub that keeps becoming a
 * candidate is not rescanned at every collection (PITFALLS 25; "Bounded
 * marking"); frozen objects are never entered (rcgc_freeze).  Each step
 * is one pass over a table of 32-byte member records, prefetching the
 * headers it visits and, in a big table, what they point at ("Prefetching").
 *
 * Types' traverse functions run on the collecting thread, and in steps 1,
 * 2, 4 and 6 on a helper too ("Help").
 * Finalizers and callbacks run on the collecting thread outside every lock
 * but the collection's own (collect_mutex, which nothing they may call
 * waits for); they may call any rcgc function; rcgc_collect from inside
 * returns 0 (in_collection, set for the whole collection).
 */
#define _GNU_SOURCE             /* mremap */
#include <errno.h>
#include <sched.h>
#include <sys/mman.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* ---- the registry of tracked objects ------------------------------------- */

/*
 * A doubly linked list per shard, under the shard's lock; but a mutator never
 * waits for that lock, which the collector or an introspection call may hold
 * for a while (and, on a busy machine, be preempted holding).  A new object
 * is linked at once if the lock is free, else pushed on the shard's
 * lock-free incoming stack; a dead one is unlinked at once if the lock is
 * free, else pushed on the doomed stack.  Whoever
 * takes the lock first splices the incoming stack into the list; whoever
 * lets it go first unlinks the doomed objects and disposes of them (a
 * mutator at most DRAIN_MUTATOR of them, so its own wait stays short).  A
 * pusher tries the lock once more after its push, and a holder checks the
 * doomed stack once more after its unlock, both by seq_cst operations on
 * the stack head: one of the two sees the other, so no dead object waits
 * for a holder that has already left.
 */
#define NSHARDS 16
#define DRAIN_MUTATOR 32

static struct shard {
    pthread_mutex_t lock;
    rcgc__gclink    head;          /* circular, sentinel; under lock */
    rcgc__ptr       incoming;      /* new objects, linked by next */
    rcgc__ptr       doomed;        /* dead objects' headers, linked by link */
} __attribute__((aligned(64))) shards[NSHARDS];
static bool shards_ready;          /* set once, at the first rcgc_init */

rcgc__u64 rcgc__freeze_count;

static void link_object(struct shard *sh, rcgc__gclink *g)
{
    g->next = sh->head.next;
    g->prev = &sh->head;
    sh->head.next->prev = g;
    sh->head.next = g;
}

static bool shard_lock(struct shard *sh, bool try);
static void shard_unlock(struct shard *sh, size_t max);

void rcgc__registry_insert(rcgc__header *h, uintptr_t tid)
{
    rcgc__gclink *g = rcgc__gclink_of(h);
    struct shard *sh = &shards[(tid >> RCGC__TID_SHIFT) % NSHARDS];
    void *top;

    h->x.gc.index = 0;
    h->x.gc.shard = (uint32_t)(sh - shards);
    /* Linked now, while it is in cache, if the lock is free. */
    if (shard_lock(sh, true)) {
        link_object(sh, g);
        shard_unlock(sh, DRAIN_MUTATOR);
        return;
    }
    top = rcgc__ptr_load_relaxed(&sh->incoming);
    do
        g->next = top;
    while (!rcgc__ptr_cas_seq_cst(&sh->incoming, &top, g));
}

static void unlink_object(rcgc__gclink *g)
{
    g->prev->next = g->next;
    g->next->prev = g->prev;
    if (rcgc__u32_load_relaxed(&rcgc__gclink_header(g)->gc_bits) & RCGC__GC_FROZEN)
        rcgc__u64_fetch_add_relaxed(&rcgc__freeze_count, (uint64_t)-1);
}

/* Brings the incoming objects into the list (the lock is held). */
static void shard_splice(struct shard *sh)
{
    rcgc__gclink *g = rcgc__ptr_exchange_seq_cst(&sh->incoming, NULL);

    while (g != NULL) {
        rcgc__gclink *next = g->next;
        link_object(sh, g);
        g = next;
    }
}

/* Takes the lock (waiting for it) or, with try, takes it only if free. */
static bool shard_lock(struct shard *sh, bool try)
{
    if (!try)
        pthread_mutex_lock(&sh->lock);
    else if (pthread_mutex_trylock(&sh->lock) != 0)
        return false;
    shard_splice(sh);
    return true;
}

/* Unlinks and disposes of up to max doomed objects (the lock is held).  The
   holder is the doomed stack's only popper, so popping one entry by CAS
   cannot suffer ABA: pushers only push. */
static void shard_drain(struct shard *sh, size_t max)
{
    rcgc__thread *th = rcgc__tls_thread;

    if (th == NULL)
        return;
    while (max-- > 0) {
        /* Acquire: what the pusher wrote is ours, and so is the object's
           insert, which happened before its death. */
        rcgc__header *h = rcgc__ptr_load_acquire(&sh->doomed);

        if (h == NULL)
            return;
        if (!rcgc__ptr_cas_seq_cst(&sh->doomed, (void **)&h, h->link)) {
            max++;
            continue;
        }
        h->link = NULL;
        /* Inserted while the lock was held: still on the incoming stack. */
        if (rcgc__ptr_load_relaxed(&sh->incoming) != NULL)
            shard_splice(sh);
        unlink_object(rcgc__gclink_of(h));
        rcgc__dispose_unlinked(th, h);
    }
}

static void shard_unlock(struct shard *sh, size_t max)
{
    void *none;

    for (;;) {
        shard_drain(sh, max);
        pthread_mutex_unlock(&sh->lock);
        /* seq_cst against the pusher's push: see above. */
        none = NULL;
        if (rcgc__ptr_cas_seq_cst(&sh->doomed, &none, NULL) || max != SIZE_MAX ||
            !shard_lock(sh, true))
            return;
    }
}

/* Unlinks many objects, keeping a shard's lock across runs of objects of
   that shard (objects made by one thread share one), for at most
   BATCH_HOLD unlinks. */
#define BATCH_HOLD 256

static void registry_remove_batch(rcgc__header **hs, size_t n)
{
    struct shard *held = NULL;
    size_t run = 0;

    for (size_t k = 0; k < n; k++) {
        rcgc__gclink *g = rcgc__gclink_of(hs[k]);
        struct shard *sh = &shards[hs[k]->x.gc.shard];

        if (sh != held || ++run == BATCH_HOLD) {
            if (held != NULL)
                shard_unlock(held, SIZE_MAX);
            held = sh;
            run = 0;
            shard_lock(held, false);
        }
        unlink_object(g);
    }
    if (held != NULL)
        shard_unlock(held, SIZE_MAX);
}

/* A dead object leaves the registry: true if it is out and the caller
   disposes of it; false if it is doomed, and the shard's next holder will. */
bool rcgc__registry_remove(rcgc__header *h)
{
    rcgc__gclink *g = rcgc__gclink_of(h);
    struct shard *sh = &shards[h->x.gc.shard];
    void *top;

    if (shard_lock(sh, true)) {
        unlink_object(g);
        shard_unlock(sh, DRAIN_MUTATOR);
        return true;
    }
    /* Off every list (rcgc__release pops it first): link is free. */
    top = rcgc__ptr_load_relaxed(&sh->doomed);
    do
        h->link = top;
    while (!rcgc__ptr_cas_seq_cst(&sh->doomed, &top, h));
    if (shard_lock(sh, true))
        shard_unlock(sh, DRAIN_MUTATOR);
    return false;
}

/* Every doomed object disposed of (rcgc_reclaim_wait, shutdown). */
void rcgc__registry_flush(void)
{
    for (int i = 0; shards_ready && i < NSHARDS; i++) {
        shard_lock(&shards[i], false);
        shard_unlock(&shards[i], SIZE_MAX);
    }
}

/* Every allocation the collector makes goes through here (never a fast
   path), so a test can make them fail (rcgc__test_collector_fail_after):
   allocations left before they fail; INTPTR_MAX: never. */
static rcgc__sword alloc_budget = { INTPTR_MAX };

/* False when a test made this allocation fail. */
static bool gc_may_allocate(void)
{
    /* Relaxed: a count, set by a test between collections. */
    return rcgc__sword_fetch_add_relaxed(&alloc_budget, -1) > 0;
}

static void *gc_realloc(void *p, size_t size)
{
    return gc_may_allocate() ? realloc(p, size) : NULL;
}

/* Growable arrays; a failed push sets the collection's oom flag.  A
   mapped one (a collection's work vectors) lives in its own pages, never
   in malloc's heap (see "Large frees"). */
typedef struct vec {
    void  *items;
    size_t n, cap, size;
    size_t peak;                   /* the most items since the last trim */
    size_t hold;                   /* bytes a recent trim kept for a big fill */
    uint64_t hold_at;              /* ... when (CLOCK_MONOTONIC ns) */
    bool   mapped;
} vec;

static size_t page_round(size_t bytes)
{
    size_t page = 4096;

    return (bytes + page - 1) & ~(page - 1);
}

/* Huge pages.  A vector of 2 MiB or more (a collection of 10^6 members
   needs 32 MB of member table) lives in a mapping aligned to 2 MiB and
   marked MADV_HUGEPAGE: Linux's transparent huge pages, in the "madvise"
   mode these machines run (in "always" mode they would anyway), then
   fault it in 2 MiB at a time.  With 4 KiB
   pages, the first touch of each page is a fault: 32 MB took 112 ms on
   this project's virtual machines, and faults were a third of
   BM_collect_ring's marking; with huge pages, 2-3 ms.  The advice is a
   hint: where the kernel refuses it, the vector works as before.
   A vector that outgrows HUGE_FROM goes to 2 MiB at once, copied (at
   most HUGE_FROM bytes) into a new aligned mapping: moved there by
   mremap, its 4 KiB pages would fill the first 2 MiB, where the kernel
   then makes no huge page, and growing to 2 MiB in 4 KiB pages is 512
   faults, about 7 ms here, for each of the member, edge and helper's
   edge tables of a big collection whose tables had been given back (see
   the work vectors' decay, work_trim).  Faults in one
   collection of 10^6 objects: about 1500 before, 80-250 after; a step
   probe, medians of 40 collections alternating with the earlier build:
   BM_collect_ring's heap 96.7 -> 79.0 ms, the graph's 130.2 -> 114.2,
   pairs unchanged (its rounds' tables stay below HUGE_FROM).  The price
   is memory: a table past HUGE_FROM holds 2 MiB until it is trimmed. */
#define HUGE_BYTES ((size_t)2 << 20)
#define HUGE_FROM  ((size_t)256 << 10)

/* p is aligned to 2 MiB and bytes at least that. */
static void advise_huge(void *p, size_t bytes)
{
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE);
#else
    (void)p, (void)bytes;
#endif
}

/* A new mapping of `bytes` (page-rounded), aligned to 2 MiB if that big. */
static void *map_new(size_t bytes)
{
    size_t pad = bytes >= HUGE_BYTES ? HUGE_BYTES : 0;
    char *p = mmap(NULL, bytes + pad, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), *a;

    if (p == MAP_FAILED)
        return NULL;
    if (pad == 0)
        return p;
    a = (char *)(((uintptr_t)p + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1));
    if (a > p)
        munmap(p, (size_t)(a - p));
    if (a + bytes < p + bytes + pad)
        munmap(a + bytes, (size_t)(p + bytes + pad - (a + bytes)));
    advise_huge(a, bytes);
    return a;
}

/* The mapped vector's storage becomes `bytes` (page-rounded) long.  A
   vector that reaches 2 MiB from below is copied to an aligned mapping; a
   bigger one grows by moving, page tables and all (mremap), to an aligned
   mapping of its new size (see "Huge pages").  Under
   ThreadSanitizer a new mapping, a copy and munmap instead of mremap:
   gcc 12's runtime does not intercept mremap, so a range that mremap moved
   away from keeps its shadow, and a helper's vector that the kernel later
   places there (see "Help") reports a race with the collecting thread's
   old writes, which the kernel's mapping lock orders. */
static void *map_resize(void *old, size_t old_bytes, size_t bytes)
{
    void *p;

    if (old == NULL || RCGC_TSAN || (old_bytes < HUGE_BYTES && bytes >= HUGE_BYTES)) {
        p = map_new(bytes);
        if (p != NULL && old != NULL) {
            memcpy(p, old, old_bytes < bytes ? old_bytes : bytes);
            munmap(old, old_bytes);
        }
        return p;
    }
    if (bytes < HUGE_BYTES) {
        p = mremap(old, old_bytes, bytes, MREMAP_MAYMOVE);
        return p == MAP_FAILED ? NULL : p;
    }
    /* The destination, reserved aligned; MREMAP_FIXED replaces it. */
    p = map_new(bytes);
    if (p == NULL)
        return NULL;
    if (mremap(old, old_bytes, bytes, MREMAP_MAYMOVE | MREMAP_FIXED, p) == MAP_FAILED) {
        munmap(p, bytes);
        return NULL;
    }
    advise_huge(p, bytes);          /* the moved mapping kept old's advice */
    return p;
}

/* vec_reserve's growth, out of line. */
static bool vec_grow(vec *v, size_t more)
{
    size_t cap;
    void *p;

    cap = v->cap ? v->cap * 2 : 256;
    while (cap < v->n + more)
        cap *= 2;
    if (!v->mapped) {
        p = gc_realloc(v->items, cap * v->size);
    } else {
        size_t bytes = page_round(cap * v->size);

        if (bytes > HUGE_FROM && bytes < HUGE_BYTES)
            bytes = HUGE_BYTES;       /* see "Huge pages" */
        cap = bytes / v->size;
        p = gc_may_allocate()
                ? map_resize(v->items, page_round(v->cap * v->size), cap * v->size)
                : NULL;
    }
    if (p == NULL)
        return false;
    v->items = p;
    v->cap = cap;
    return true;
}

/* Room for `more` items past n.  The test for room is inline: step 4
   pushes every edge (pairs' step 4, its share of the collection, 12
   collections of each build in the step probe, builds alternating:
   22.4-25.4% -> 19.2-22.2% with the test inline). */
static inline bool vec_reserve(vec *v, size_t more)
{
    return __builtin_expect(v->n + more <= v->cap, 1) || vec_grow(v, more);
}

/* Empties the vector, noting how full it was. */
static void vec_clear(vec *v)
{
    v->peak = v->n > v->peak ? v->n : v->peak;
    v->n = 0;
}

/* A mapped vector keeps at most keep bytes of its storage, or (keep not
   0) what it held at its fullest in the trims of the last `decay` ns
   before now (a decaying maximum: a fill kept stays until a trim at least
   decay later, unless a bigger one replaces it), if more. */
static void vec_trim(vec *v, size_t keep, uint64_t now, uint64_t decay)
{
    size_t bytes = page_round(v->cap * v->size), fill;

    vec_clear(v);
    fill = v->peak * v->size;
    v->peak = 0;
    if (keep == 0) {
        v->hold = 0;
    } else {
        if (fill >= v->hold || now - v->hold_at >= decay) {
            v->hold = fill;
            v->hold_at = now;
        }
        if (v->hold > keep)
            keep = v->hold;
    }
    keep = page_round(keep);
    if (v->items == NULL || bytes <= keep)
        return;
    if (!v->mapped || keep == 0) {
        if (v->mapped)
            munmap(v->items, bytes);
        else
            free(v->items);
        v->items = NULL;
        v->cap = 0;
        return;
    }
    /* munmap, not mremap: the kernel zaps the pages holding the address
       space's lock for reading, so mutators' page faults go on. */
    if (munmap((char *)v->items + keep, bytes - keep) == 0)
        v->cap = keep / v->size;
}

static void vec_free(vec *v)
{
    vec_trim(v, 0, 0, 0);
}

#define VEC(type)        { NULL, 0, 0, sizeof(type), 0, 0, 0, false }
#define VEC_MAPPED(type) { NULL, 0, 0, sizeof(type), 0, 0, 0, true }
#define VEC_AT(v, type, i) (((type *)(v)->items)[i])

/* Pins every live tracked object of the registry whose gc_bits have all
   of `bits` (a snapshot); the caller works on them outside every lock,
   then unpins.  (Introspection is safe beside collections: PITFALLS 27.)
   False, with what was pinned so far, if memory ran out. */
static bool snapshot_with(vec *out, uint32_t bits)
{
    for (int i = 0; i < NSHARDS; i++) {
        struct shard *sh = &shards[i];

        shard_lock(sh, false);
        for (rcgc__gclink *g = sh->head.next; g != &sh->head; g = g->next) {
            rcgc__header *h = rcgc__gclink_header(g);

            if ((rcgc__u32_load_relaxed(&h->gc_bits) & bits) != bits)
                continue;
            if (!vec_reserve(out, 1)) {
                shard_unlock(sh, SIZE_MAX);
                return false;
            }
            /* In the list under its lock, so the memory is there. */
            if (rcgc__try_incref(h))
                VEC_AT(out, rcgc__header *, out->n++) = h;
        }
        shard_unlock(sh, SIZE_MAX);
    }
    return true;
}

/* Drops a pin without making the object a candidate root again. */
static void unpin(rcgc__header *h)
{
    rcgc__thread *th = rcgc__tls_thread;
    bool saved = th->no_buffer;

    th->no_buffer = true;
    rcgc_decref(rcgc__body(h));
    th->no_buffer = saved;
}

static void unpin_all(vec *v, size_t from)
{
    for (size_t i = from; i < v->n; i++)
        unpin(VEC_AT(v, rcgc__header *, i));
    v->n = 0;
}

/* ---- the collector's shared state ----------------------------------------- */

typedef struct callback {
    rcgc_callback_fn fn;
    void            *ctx;
} callback;

/*
 * Handing over never takes a lock: a full chunk is pushed on the pending
 * stack, its candidates added to npending, and the collector thread is
 * woken through a semaphore (sem_post never blocks) once npending reaches
 * wake_at.  wake_posted keeps the semaphore from counting up: set by the
 * first waker, cleared by the collector before it looks at its work, so a
 * waker that finds it set knows the collector has yet to look.
 */
static rcgc__ptr pending;          /* chunks handed over, linked by next */
static rcgc__u64 npending;         /* candidates in them */
static rcgc__u64 wake_at;          /* npending that wakes the collector thread:
                                      threshold_eff while it runs and collections
                                      are enabled, else UINT64_MAX (gc.lock) */
static rcgc__u64 pause_max;        /* the longest hand-over, ns */
static rcgc__u32 wake_posted;
static sem_t     wake_sem;

struct part;

static struct {
    pthread_mutex_t lock;          /* protects everything below */
    pthread_cond_t  done;          /* rcgc_collect callers wait for their collection */
    bool            enabled;
    size_t          threshold;     /* the user's (rcgc_set_threshold) */
    size_t          threshold_eff; /* adapted to what collections find */
    unsigned        debug;
    uint64_t        requested;     /* full collections asked for by rcgc_collect */
    uint64_t        completed;     /* ... and done */
    struct result {                /* what the last full collections found: */
        uint64_t    after, upto;   /* requests (after, upto] were served by it */
        size_t      collected;
    } results[8];
    unsigned        nresults;
    bool            has_thread, thread_attached, stop;
    pthread_t       thread;
    uint64_t        collections, collected, uncollectable;
    uint64_t        collect_ns_last, collect_ns_total;
    callback       *callbacks;
    size_t          ncallbacks;
    void          **garbage;       /* SAVEALL: each entry holds a reference */
    size_t          ngarbage, garbage_cap;
    /* Help from rcgc_collect's waiters (see "Help"): */
    pthread_cond_t  helped;        /* the collecting thread waits for its helper */
    unsigned        helpers;       /* rcgc_collect callers waiting, who may help */
    int             help_state;    /* HELP_NONE, HELP_OPEN, HELP_TAKEN, HELP_DONE */
    void          (*help_run)(struct part *);
    struct part    *help_part;
} gc = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .helped = PTHREAD_COND_INITIALIZER,
};

/* One collection at a time, on whichever thread runs it.  Its holder waits
   for grace periods, so a thread that waits for it must be offline
   (lock_collect). */
static pthread_mutex_t collect_mutex = PTHREAD_MUTEX_INITIALIZER;

static void lock_collect(void)
{
    if (pthread_mutex_trylock(&collect_mutex) == 0)
        return;
    rcgc_blocking_begin();
    pthread_mutex_lock(&collect_mutex);
    rcgc_blocking_end();
}

/* Failed Delta-tests and resurrected components, buffered again (their
   UNBUFFERED bit is clear): the next collection's first candidates.
   Protected by collect_mutex. */
static rcgc__roots *retry;
static size_t       retried;       /* members the last collection put back */
static rcgc__u64    nretry;        /* entries in retry, for rcgc_get_count */

/* CLOCK_MONOTONIC for durations; CLOCK_THREAD_CPUTIME_ID for hand_over. */
static uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t rcgc__monotonic_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

static bool should_collect(void)
{
    uint64_t n = rcgc__u64_load_seq_cst(&npending);

    return n > 0 && n >= rcgc__u64_load_seq_cst(&wake_at);
}

static void wake_collector(void)
{
    if (rcgc__u32_exchange_seq_cst(&wake_posted, 1) == 0)
        sem_post(&wake_sem);
}

/* After a change of has_thread, enabled or threshold_eff (gc.lock held). */
static void update_wake_locked(void)
{
    rcgc__u64_store_seq_cst(&wake_at, gc.has_thread && gc.enabled ? gc.threshold_eff
                                                                   : UINT64_MAX);
    if (should_collect())
        wake_collector();
}

/* A test hook: a function a test installs at a point of the protocol,
   with its argument; NULL, nothing. */
typedef struct {
    rcgc__ptr fn;
    void     *arg;
} test_hook;

static void hook_set(test_hook *k, void (*fn)(void *), void *arg)
{
    k->arg = arg;
    rcgc__ptr_store_release(&k->fn, (void *)fn);
}

static inline void hook_run(test_hook *k)
{
    void (*fn)(void *) = (void (*)(void *))rcgc__ptr_load_acquire(&k->fn);

    if (fn != NULL)
        fn(k->arg);
}

/* rcgc__test_after_push: called by a thread's hand_over between the push
   that publishes its chunk and its count's add, so that a test can have a
   collection take the chunk there (test_handover). */
static test_hook after_push;

void rcgc__test_after_push(void (*fn)(void *), void *arg)
{
    hook_set(&after_push, fn, arg);
}

/* Called with the handing thread's chunk slot claimed, from taking the
   chunk until it is in the pending stack: a full collection steals chunks
   from the threads (waiting out claims) before it takes the pending stack,
   so a chunk is always in one of the two places it looks.  The mutator's
   only cost: a push, an add, and at times a sem_post.  It cannot wait for
   the collector (no lock), so what pause_max_ns reports is the CPU time
   it took this thread: the clock of a thread that the scheduler preempted
   here would tell about the machine's load, not about rcgc. */
static void hand_over(rcgc__roots *chunk)
{
    uint64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID), took, max;
    void *top = rcgc__ptr_load_relaxed(&pending);
    size_t n = chunk->n;           /* once pushed, the chunk is the collector's:
                                      its take rewrites n (TSan saw that race) */

    do
        chunk->next = top;
    while (!rcgc__ptr_cas_seq_cst(&pending, &top, chunk));
    hook_run(&after_push);         /* tests only */
    rcgc__u64_fetch_add_seq_cst(&npending, n);
    if (should_collect())
        wake_collector();
    took = clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
    max = rcgc__u64_load_relaxed(&pause_max);
    while (took > max && !rcgc__u64_cas_relaxed(&pause_max, &max, took))
        ;
}

/*
 * Root chunks go round: the collector puts emptied ones on a pool, and a
 * thread that needs a chunk takes up to CHUNK_TAKE of them into its own
 * spares (pool_take) before it maps new ones; a thread that detaches puts
 * its spares back.  A chunk is made by a mutator or by the collecting
 * thread stocking the pool, and emptied by the collector.  Chunks are pages of their own,
 * never malloc's: a chunk is a large block, whose malloc or free makes
 * glibc consolidate every fast bin of the arena first (see "Large
 * frees"), bins that the collector's frees of the mutator's objects fill,
 * under the arena's lock; with chunks from malloc, BM_pause saw single
 * decrements of 0.2 to 2 ms, and none since.  A mutator that maps
 * chunks makes a system call, a few microseconds.
 *
 * The pool's word holds its top chunk's address with the number of chunks
 * in the low bits (chunks are aligned to ROOTS_ALIGN, above CHUNK_POOL_MAX),
 * so that taking the pool tells how many were taken without walking the
 * list: the walk touched a page per chunk, and with the pool full it took
 * a decrement 50-120 us in BM_pause.  A push (chunk_put) reads nothing
 * from the top chunk and its CAS compares the whole word, which describes
 * the whole stack, so it is right whatever happened in between (no ABA);
 * a pop takes the whole stack by exchange, and gives back what is beyond
 * CHUNK_TAKE by a CAS from the empty word (pool_take).
 */
#define CHUNK_POOL_MAX 256
#define CHUNK_POOL_MIN 16

static rcgc__word chunk_pool;      /* top chunk | count; chunks linked by next */
static rcgc__u64 chunk_misses;     /* chunks a mutator had to map */
static rcgc__u64 missed;           /* objects a mutator could not buffer */

/*
 * A thread's chunk slot, th->roots, holds the chunk's address with its
 * entry count in the low bits (chunks are aligned to ROOTS_ALIGN, above
 * the largest count), 0 when there is none, or ROOTS_CLAIMED while its
 * thread adds to it.  The thread claims by exchange and publishes by a
 * release store; rcgc_collect steals a chunk by CAS to 0 and, meeting a
 * claim, yields until it is over (a few instructions, or a chunk_get).
 * Neither the thread nor anyone else ever waits for the collector here,
 * and the statistics read the count without touching the chunk.
 */
#define ROOTS_ALIGN   ((size_t)(RCGC_TEST_HARD ? 16 : 1024))
#define ROOTS_CLAIMED ((uintptr_t)1)

/* The pool's word (see above); the RCGC_TEST_HARD build's tiny chunks
   leave room for a count of 15. */
#define POOL_MAX   (ROOTS_ALIGN - 1 < CHUNK_POOL_MAX ? ROOTS_ALIGN - 1 : CHUNK_POOL_MAX)
#define POOL_MIN   (CHUNK_POOL_MIN < POOL_MAX ? CHUNK_POOL_MIN : POOL_MAX)
#define POOL_TOP(w)   ((rcgc__roots *)((w) & ~(uintptr_t)(ROOTS_ALIGN - 1)))
#define POOL_COUNT(w) ((size_t)((w) & (ROOTS_ALIGN - 1)))
_Static_assert(RCGC__ROOTS_CHUNK < ROOTS_ALIGN, "a count fits below the alignment");
_Static_assert(ROOTS_ALIGN <= 4096, "mmap aligns a chunk to ROOTS_ALIGN");
_Static_assert(sizeof(rcgc__roots) % ROOTS_ALIGN == 0, "aligned_alloc's rule");

/* Pages of their own; the RCGC_TEST_HARD build's chunks of two entries,
   which a test makes by the million, come from malloc. */
#define CHUNK_MAPPED (sizeof(rcgc__roots) >= 4096)

/* Chunks in existence, for a test's leak check (rcgc__test_chunks). */
static rcgc__u64 chunks_live;
static rcgc__u64 chunks_made;      /* chunks mapped (or malloc'd), all time (tests) */

/*
 * Up to n chunks, linked by next (NULL: no memory).  Mapped chunks come
 * CHUNK_BATCH at a time, in one mapping, so that a mutator whose pool ran
 * dry makes one system call for that many chunks: in BM_pause a mutator
 * mapped 22-76 chunks in a run, one call each, a few of them taking 30-70
 * us; 1-5 calls with batches.  Each chunk of a batch is unmapped on its
 * own later (chunk_free), as munmap allows.
 */
#define CHUNK_BATCH (CHUNK_MAPPED ? 16 : 1)

static rcgc__roots *chunk_alloc_batch(size_t n)
{
    rcgc__roots *list = NULL;
    char *p;

    if (n > CHUNK_BATCH)
        n = CHUNK_BATCH;
    if (!CHUNK_MAPPED) {
        list = aligned_alloc(ROOTS_ALIGN, sizeof(rcgc__roots));
        if (list == NULL)
            return NULL;
        list->next = NULL;
        rcgc__u64_fetch_add_relaxed(&chunks_live, 1);
        rcgc__u64_fetch_add_relaxed(&chunks_made, 1);
        return list;
    }
    p = mmap(NULL, n * sizeof(rcgc__roots), PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    for (size_t i = n; i-- > 0;) {
        rcgc__roots *k = (rcgc__roots *)(p + i * sizeof(rcgc__roots));
        k->next = list;
        list = k;
    }
    rcgc__u64_fetch_add_relaxed(&chunks_live, n);
    rcgc__u64_fetch_add_relaxed(&chunks_made, n);
    return list;
}

/* One chunk (the collecting thread's own needs). */
static rcgc__roots *chunk_alloc(void)
{
    return chunk_alloc_batch(1);
}

static void chunk_free(rcgc__roots *k)
{
    rcgc__u64_fetch_add_relaxed(&chunks_live, (uint64_t)-1);
    if (CHUNK_MAPPED)
        munmap(k, sizeof(rcgc__roots));
    else
        free(k);
}

static rcgc__roots *roots_claim(rcgc__thread *th)
{
    uintptr_t w = rcgc__word_exchange_acq_rel(&th->roots, ROOTS_CLAIMED);

    rcgc_assert_internal(w != ROOTS_CLAIMED);      /* one thread: no re-entry */
    return (rcgc__roots *)(w & ~(uintptr_t)(ROOTS_ALIGN - 1));
}

/* Publishes k (its items before its count), or no chunk. */
static void roots_release(rcgc__thread *th, rcgc__roots *k)
{
    rcgc__word_store_release(&th->roots, k != NULL ? (uintptr_t)k | k->n : 0);
}

/* The entries in th's chunk: th's own call, or another's that waits out
   a claim (a claim may be moving the entries to the pending stack). */
static size_t roots_count(rcgc__thread *th)
{
    uintptr_t w;

    while ((w = rcgc__word_load_acquire(&th->roots)) == ROOTS_CLAIMED)
        sched_yield();
    return (size_t)(w & (ROOTS_ALIGN - 1));
}

static rcgc__u32 roots_fail;       /* rcgc__test_roots_fail */

void rcgc__test_roots_fail(bool fail)
{
    rcgc__u32_store_relaxed(&roots_fail, fail);
}

/*
 * At most CHUNK_TAKE chunks from the pool, linked by next (NULL: it was
 * empty).  A thread that took the whole pool kept up to POOL_MAX chunks
 * (2 MiB) of spares until it detached, and every thread that ran dry
 * after it found the pool empty and mapped its own: with the pool full,
 * eight threads that each made one candidate left 256 chunks in one
 * thread's spares and mapped 112 more (test_gc_surplus, "share").  So
 * the taker keeps the first CHUNK_TAKE and gives back the rest, whose
 * count it knows from the word, by a CAS from the empty word: right
 * whatever happened in between, since the empty word describes the whole
 * stack, as a push's does.  The pool refilled meanwhile (the CAS fails, a
 * rare race with a push), it keeps the rest too, as before.  Between the
 * exchange and the CAS another thread that runs dry finds the pool empty
 * and maps a batch, as it would have before.  The cut touches the first
 * line of CHUNK_TAKE - 1 chunks, where the whole pool's walk touched up
 * to 255 (see above).
 */
#define CHUNK_TAKE RCGC__CHUNK_TAKE

static rcgc__u32 pool_race;        /* rcgc__test_pool_race */

void rcgc__test_pool_race(bool race)
{
    rcgc__u32_store_relaxed(&pool_race, race);
}

/* rcgc__test_before_count: called by the collecting thread between a
   round's grace period and its step 4, so a test can change a word there
   (test_owing: an OWING member, rule 3 of refcount.c). */
static test_hook before_count;

void rcgc__test_before_count(void (*fn)(void *), void *arg)
{
    hook_set(&before_count, fn, arg);
}

static void chunk_put(rcgc__roots *k);

static rcgc__roots *pool_take(void)
{
    uintptr_t w = rcgc__word_exchange_seq_cst(&chunk_pool, 0), empty = 0;
    rcgc__roots *k = POOL_TOP(w), *last = k, *rest;
    size_t n = POOL_COUNT(w);

    if (n <= CHUNK_TAKE)
        return k;
    for (size_t i = 1; i < CHUNK_TAKE; i++)
        last = last->next;
    rest = last->next;
    last->next = NULL;
    if (rcgc__u32_load_relaxed(&pool_race)) {
        rcgc__roots *pushed = chunk_alloc();    /* a test's racing push */
        if (pushed != NULL)
            chunk_put(pushed);
    }
    if (!rcgc__word_cas_seq_cst(&chunk_pool, &empty, (uintptr_t)rest | (n - CHUNK_TAKE)))
        last->next = rest;
    return k;
}

static rcgc__roots *chunk_get(rcgc__thread *th)
{
    rcgc__roots *k = th->spare_chunks;

    if (rcgc__u32_load_relaxed(&roots_fail))
        return NULL;

    if (k == NULL && rcgc__word_load_relaxed(&chunk_pool) != 0)
        k = pool_take();
    if (k == NULL) {
        rcgc__u64_fetch_add_relaxed(&chunk_misses, 1);
        if ((k = chunk_alloc_batch(CHUNK_BATCH)) == NULL)
            return NULL;
    }
    th->spare_chunks = k->next;
    return k;
}

static void chunk_put(rcgc__roots *k)
{
    uintptr_t w = rcgc__word_load_relaxed(&chunk_pool);

    do {
        if (POOL_COUNT(w) >= POOL_MAX) {
            chunk_free(k);
            return;
        }
        k->next = POOL_TOP(w);
    } while (!rcgc__word_cas_seq_cst(&chunk_pool, &w, (uintptr_t)k | (POOL_COUNT(w) + 1)));
}

static size_t pool_count(void)
{
    return POOL_COUNT(rcgc__word_load_relaxed(&chunk_pool));
}

/*
 * The collecting thread keeps the pool stocked, at the start of a
 * collection and every so often during one, so that mutators seldom
 * map a chunk themselves (a system call inside a decrement).  The
 * stock doubles, up to POOL_MAX, whenever a mutator found the pool
 * empty since the last look; and it halves, down to POOL_MIN, at the
 * start of a collection when none did since the last one began and that
 * one ended with more chunks than the pool keeps (surplus_release): it
 * mapped chunks that its own candidates' emptied chunks then pushed out.
 * Without the halving, a stock grown once (10^6 candidates made between
 * two collections) stayed at POOL_MAX for good, and every later
 * collection mapped the chunks its mutators had taken, only to unmap as
 * many at its end: 1.3 of BM_livegarbage/1000000's 6.5 ms, where
 * BM_livegarbage/0, whose stock never grew, paid nothing.  Collecting
 * thread only (collect_mutex).
 */
static uint64_t pool_want = POOL_MIN, pool_misses_seen, pool_misses_begun;
static bool     pool_surplus;      /* the last collection unmapped surplus */

static void chunk_pool_tend(void)
{
    uint64_t misses = rcgc__u64_load_relaxed(&chunk_misses);

    if (misses != pool_misses_seen) {
        pool_misses_seen = misses;
        pool_want = pool_want * 2 < POOL_MAX ? pool_want * 2 : POOL_MAX;
    }
    for (size_t n; (n = pool_count()) < pool_want;) {
        rcgc__roots *k = chunk_alloc_batch(pool_want - n);

        if (k == NULL)
            break;
        while (k != NULL) {
            rcgc__roots *next = k->next;
            chunk_put(k);
            k = next;
        }
    }
}

/* ... at the start of a collection (see above). */
static void chunk_pool_tend_begin(void)
{
    uint64_t misses = rcgc__u64_load_relaxed(&chunk_misses);

    if (pool_surplus && misses == pool_misses_begun && pool_want / 2 >= POOL_MIN)
        pool_want /= 2;
    pool_surplus = false;
    pool_misses_begun = misses;
    chunk_pool_tend();
}

/*
 * Large frees.  glibc keeps small freed blocks (every object a collection
 * frees past the thread cache and the pool: runtime.c) in its fast bins,
 * and the first free of a block that coalesces to 64 KiB or more, or the
 * first malloc of 1 KiB or more, walks every block in them
 * (malloc_consolidate): 16 ms after a million objects in 2-cycles, about
 * 50 ms after BM_collect_graph's, whose blocks lie all over the heap.  A
 * program that allocates objects of those sizes again takes them straight
 * from the bins and never needs that walk; so a collection, once it has
 * begun freeing, frees nothing large and allocates nothing large that it
 * can avoid: its work vectors, like the root chunks, live in mappings of
 * their own, which glibc never sees, and stay for the next collection
 * (work_trim).
 */
/* ... called at every 2^16th step of a pass over members. */
static inline void chunk_pool_tend_at(size_t step)
{
    if ((step & 0xffff) == 0xffff)
        chunk_pool_tend();
}

/* A leaving thread's spare chunks go back to the pool, those beyond its
   bound to the system: a thread that took the pool and left would
   otherwise unmap it all (a system call a chunk), and the next thread map
   it again. */
void rcgc__roots_spares_return(rcgc__thread *th)
{
    while (th->spare_chunks != NULL) {
        rcgc__roots *k = th->spare_chunks;
        th->spare_chunks = k->next;
        chunk_put(k);
    }
}

/* The pool's chunks to the system (rcgc_shutdown, once no thread is left
   attached). */
void rcgc__roots_pool_free(void)
{
    for (rcgc__roots *k = POOL_TOP(rcgc__word_exchange_seq_cst(&chunk_pool, 0)), *next;
         k != NULL; k = next) {
        next = k->next;
        chunk_free(k);
    }
}

void rcgc__buffer_root(void *obj)
{
    rcgc__thread *th = rcgc__tls_thread;
    rcgc__header *h = rcgc__hdr(obj);
    rcgc__roots *k;

    if (th == NULL || th->no_buffer)
        return;
    /* Buffered once: by whoever clears UNBUFFERED. */
    if (!(rcgc__word_fetch_and_relaxed(&h->owner, ~RCGC__OWNER_UNBUFFERED) &
          RCGC__OWNER_UNBUFFERED))
        return;
    k = rcgc__roots_add_begin(th, h);
    if (k != NULL)
        rcgc__roots_add_end(th, h, k);
}

/* h leaves the buffers as it entered them, MISSED: for the collector to
   find in the registry should no decrement come to buffer it again. */
static void buffer_missed(rcgc__header *h)
{
    rcgc__u32_fetch_or_relaxed(&h->gc_bits, RCGC__GC_MISSED);
    rcgc__word_fetch_or_relaxed(&h->owner, RCGC__OWNER_UNBUFFERED);
    /* seq_cst, after the flag: a collection that takes the count finds
       the flag. */
    rcgc__u64_fetch_add_seq_cst(&missed, 1);
}

/* The records th->adding and th->adding_chunk name what a fork's child
   must not lose while the slot is claimed (rcgc__roots_orphan): a chunk
   of up to RCGC__ROOTS_CHUNK candidates that is in no other place, and h,
   whose UNBUFFERED we cleared.  Each is written in the instruction after
   the step that makes it ours.  No other thread reads them: the compiler
   alone must keep them in order with the chunk's words (a fork's child
   sees this thread's memory as the thread left it). */
#define record_fence() __atomic_signal_fence(__ATOMIC_SEQ_CST)

rcgc__roots *rcgc__roots_add_begin(rcgc__thread *th, rcgc__header *h)
{
    rcgc__roots *k;

    th->adding = h;
    k = roots_claim(th);
    th->adding_chunk = k;
    record_fence();
    if (k == NULL) {
        k = chunk_get(th);
        if (k == NULL) {
            /* No memory for a chunk: the object stays unbuffered (its next
               decrement tries again) and MISSED. */
            roots_release(th, NULL);
            buffer_missed(h);
            record_fence();
            th->adding = NULL;
            return NULL;
        }
        k->n = 0;
        record_fence();
        th->adding_chunk = k;
        record_fence();
    }
    return k;
}

void rcgc__roots_add_end(rcgc__thread *th, rcgc__header *h, rcgc__roots *k)
{
    k->items[k->n] = h;
    record_fence();                 /* the entry before the count that covers it */
    k->n++;
    if (k->n == RCGC__ROOTS_CHUNK) {
        /* The records go first: once k is pushed, a collection may take
           it, empty it and give it to another thread.  (A fork between
           the two loses k: the residual.) */
        th->adding = NULL;
        th->adding_chunk = NULL;
        record_fence();
        hand_over(k);
        k = NULL;
    }
    roots_release(th, k);
    record_fence();
    th->adding = NULL;
    th->adding_chunk = NULL;
}

/* rcgc_collect's steal: th's chunk, or NULL. */
static rcgc__roots *take_chunk(rcgc__thread *th)
{
    uintptr_t w = rcgc__word_load_acquire(&th->roots);

    for (;;) {
        if (w == ROOTS_CLAIMED) {
            sched_yield();
            w = rcgc__word_load_acquire(&th->roots);
        } else if (w == 0) {
            return NULL;
        } else if (rcgc__word_cas_acq_rel(&th->roots, &w, 0)) {
            return (rcgc__roots *)(w & ~(uintptr_t)(ROOTS_ALIGN - 1));
        }
    }
}

/*
 * At a safepoint a chunk goes to the collector once it holds
 * RCGC__ROOTS_SEAL_AT candidates, or, holding fewer, when it has not
 * grown since the last safepoint: a thread that has stopped making
 * candidates hands them over at its next safepoint but one, and one that
 * keeps making them does not take a fresh chunk (mmap, at worst) for
 * every few of them: BM_pause's mutators, at a safepoint every ~600
 * calls, went through thousands of chunks a second.
 */
void rcgc__roots_safepoint(rcgc__thread *th)
{
    size_t n = roots_count(th);

    if (n > 0 && (n >= RCGC__ROOTS_SEAL_AT || n == th->roots_seen)) {
        rcgc__roots_flush(th);
        n = 0;
    }
    th->roots_seen = n;
}

void rcgc__roots_flush(rcgc__thread *th)
{
    rcgc__roots *k = roots_claim(th);

    if (k != NULL)
        hand_over(k);
    roots_release(th, NULL);
}

/* ---- one collection ----------------------------------------------------- */

enum { WHITE, BLACK };
enum { FATE_LIVE, FATE_RETRY, FATE_FREED, FATE_SAVED };
/* The steps of a collection, timed for RCGC_DEBUG_STATS. */
enum { P_ROOTS, P_MARK, P_GRACE, P_COUNT, P_SCAN, P_DELTA, P_FREE, P_UNFLAG, NPHASES };
static const char *const phase_names[NPHASES] = {
    "roots", "mark", "grace", "count", "scan", "delta", "free", "unflag",
};

/* A member record is 32 bytes: the table is read in full by most steps,
   and at a million members its size is the collector's memory traffic.
   Indices are 32-bit (MEMBER_MAX members and edges per collection; past
   that a collection unwinds as if out of memory).  A count above CRC_MAX
   is kept as CRC_MAX: such a member is black. */
#define MEMBER_MAX ((size_t)UINT32_MAX - 1)
#define CRC_MAX    (INT32_MAX / 2)

enum {                             /* member.flags */
    M_EXTERNAL  = 1,               /* held a reference to a non-member (step 4) */
    M_FINALIZER = 2,               /* its type has a finalizer */
    M_FAILED    = 4,               /* component root: the component is kept */
    M_ROOT      = 8,               /* taken from a root buffer */
    M_WEAKREFS  = 16,              /* weak references name it (step 4) */
    M_INTERNAL  = 32,              /* white, and every edge leads to a white
                                      member (step 6) */
    M_SETTLED   = 64,              /* every target was a member at its take:
                                      marking skips it ("Marking at the take") */
};

typedef struct member {
    rcgc__header *h;
    intptr_t      shared;          /* the word read in step 4 */
    uint32_t      edges;           /* out-edges to members: edge table from
                                      here to the next member's edges */
    uint32_t      parent;          /* union-find over white edges */
    int32_t       crc;             /* cyclic count */
    uint8_t       color, fate, flags;
} member;

_Static_assert(sizeof(member) == 32, "member records stay small");

/*
 * Out of memory (PITFALLS 28).  An allocation that fails sets oom; the
 * collection then frees nothing, unflags and unpins every member, and puts
 * only its roots back among the candidates (every other member was reached
 * from them); candidates it had no room to take stay in their chunks,
 * still buffered.  Putting back never allocates: the chunks the candidates
 * came in stay with the collection, room for every root, and before step 7
 * it reserves room for every member that may yet go back (or, failing,
 * un-DYINGs its garbage and takes the out-of-memory way).
 */
typedef struct collection {
    rcgc__thread *th;
    vec members, edges, stack;
    vec help_edges;                /* step 4's second part's edges (see "Help") */
    vec found[2];                  /* marking's parts' targets to enter ("Help") */
    rcgc__roots *chunks;           /* the candidates' chunks, and room reserved */
    rcgc__roots *fill;             /* where rebuffer looks for room first */
    size_t candidates, delta_failures, sigma_failures;
    size_t collected, uncollectable;
    size_t taken;                  /* members taken from the round's chunks */
    size_t examined;               /* members, all rounds */
    size_t rounds;
    size_t budget;                 /* members marking may reach (PITFALLS 25) */
    unsigned debug;
    bool oom, truncated;           /* truncated: marking stopped at the budget
                                      (background; that round is the last) */
    bool joined;                   /* the white components are known (join) */
    bool all_white;                /* step 5 found no member black */
    size_t helped;                 /* parts a waiting caller ran (see "Help") */
    int phase;                     /* the step at hand */
    uint64_t phase_at;             /* when it began */
    uint64_t phase_ns[NPHASES];    /* time spent in each step (RCGC_DEBUG_STATS) */
} collection;

/* Ends the step at hand and begins step p (NPHASES: none). */
static void phase_next(collection *c, int p)
{
    uint64_t now = clock_ns(CLOCK_MONOTONIC);

    c->phase_ns[c->phase] += now - c->phase_at;
    c->phase_at = now;
    c->phase = p;
}

/*
 * Bounded marking (PITFALLS 25: a long-lived hub that keeps becoming a
 * candidate must not cost its whole subgraph at every collection).  Every
 * candidate handed over earns MARK_CREDIT members of marking beyond the
 * candidates into a balance, and background collections spend from it,
 * never more than it holds: over any run, marking is at most MARK_CREDIT
 * members per candidate.  A collection normally spends half of what its
 * own candidates earned, saving the rest; once the balance reaches
 * next_try it may spend all of it, and if that still is not enough the
 * next such attempt waits for twice as much, so a subgraph of n members
 * is examined in full after O(n / MARK_CREDIT) candidates.  Stopping early is sound: an object left
 * unexamined counts as outside, so the references it holds are external
 * and keep their targets black.  A collection that stopped puts its
 * surviving roots back.  Garbage among the candidates, and what a
 * collection's own earnings reach, is found at once.  rcgc_collect marks
 * without a bound and spends nothing.
 */
#define MARK_CREDIT 16
static size_t mark_balance;        /* protected by collect_mutex */
static size_t mark_next_try;
static size_t last_examined;       /* ... and these: the last collection's */
static size_t last_rounds;
static bool   last_truncated;

/*
 * Prefetching.  Most passes visit members in table order and would miss
 * the cache on each header: they ask for the one PREFETCH_AHEAD places on
 * early (step 6, whose work per member is least, twice as far).  Marking
 * and step 4 also read, for each member, the targets of its slots (their
 * gc_bits and index, on one line), which in a random graph are
 * anywhere: in a table of PREFETCH_DEEP members or more (smaller ones sit
 * in cache, where the extra traverse only costs), they ask for the
 * headers 2 * PREFETCH_AHEAD places on and, through one more traverse
 * (prefetch_visit), for the targets of the member PREFETCH_AHEAD places
 * on, whose header has arrived by then.  Marking breadth first, with the
 * table as its queue, is what gives it members to look ahead at: the next
 * members of a depth-first stack are the targets just found.  Step 6 asks
 * for the member records of the targets whose color it reads.
 * BM_collect_graph: about 290 ms without any of this, 240 ms with it;
 * pairs and ring unchanged.  A prefetch is only a hint: a stale pointer
 * read for one faults nothing.  PREFETCH_AHEAD 16 rather than 8 (step
 * probe, medians of 20-24 collections, builds alternating): graph 97.7 ->
 * 92.6 and 97.3 -> 93.2 ms, ring 61.2 -> 58.7, pairs unchanged; 24 gave
 * back part of it (graph 95.5, ring 59.6, pairs 55.3 -> 58.9).
 */
#define PREFETCH_AHEAD 16
#define PREFETCH_DEEP  16384

static inline void prefetch_object(rcgc__header *h)
{
    __builtin_prefetch(rcgc__gclink_of(h), 1);
    __builtin_prefetch(h, 1);
    __builtin_prefetch((char *)h + 64, 1);
}

/* A traverse visitor that asks for what edge_visit and mark_visit will
   read of each target: its gc_bits and its index; for PREFETCH_SLOTS
   targets of a member at most (*ctx counts down), since a big container's
   targets would only push each other out of the cache. */
#define PREFETCH_SLOTS 16

static void prefetch_visit(rcgc_ref *slot, void *ctx)
{
    unsigned *left = ctx;
    void *obj;

    if (*left == 0)
        return;
    obj = rcgc__slot_load_relaxed(slot);
    if (obj != NULL) {
        --*left;
        __builtin_prefetch(&rcgc__hdr(obj)->x.gc.index, 1);   /* gc_bits's line too */
    }
}

/* Asks for the targets of member h's slots (see prefetch_visit). */
static void prefetch_targets(rcgc__header *h)
{
    unsigned left = PREFETCH_SLOTS;

    h->type->traverse(rcgc__body(h), prefetch_visit, &left);
}

static member *member_at(collection *c, size_t i)
{
    return &VEC_AT(&c->members, member, i);
}

/* Marking's and step 4's look-ahead from member i (see above); marking
   skips the members settled at their take. */
static void prefetch_ahead(collection *c, size_t i, bool marking)
{
    size_t n = c->members.n;
    member *m;

    if (i + 2 * PREFETCH_AHEAD < n) {
        m = member_at(c, i + 2 * PREFETCH_AHEAD);
        if (!marking || !(m->flags & M_SETTLED))
            prefetch_object(m->h);
    }
    if (i + PREFETCH_AHEAD < n && n >= PREFETCH_DEEP) {
        m = member_at(c, i + PREFETCH_AHEAD);
        if (!marking || !(m->flags & M_SETTLED))
            prefetch_targets(m->h);
    }
}

static size_t index_of(rcgc__header *h)
{
    return h->x.gc.index;          /* 1 + member index, 0: none */
}

/* Appends index i to v; false, with *oom set, if there is no room. */
static inline bool push_index(bool *oom, vec *v, size_t i)
{
    if (v->n >= MEMBER_MAX || !vec_reserve(v, 1)) {
        *oom = true;
        return false;
    }
    VEC_AT(v, uint32_t, v->n++) = (uint32_t)i;
    return true;
}

/* The end of member i's range of out-edges. */
static size_t edges_end(collection *c, size_t i)
{
    return i + 1 < c->members.n ? member_at(c, i + 1)->edges : c->edges.n;
}

/* Room for one more member. */
static bool member_room(collection *c)
{
    if (!c->oom && c->members.n < MEMBER_MAX && vec_reserve(&c->members, 1))
        return true;
    c->oom = true;
    return false;
}

/* h is pinned and flagged (rcgc__pin_flag), and member_room said yes:
   enter it, which queues it for marking. */
static void add_member(collection *c, rcgc__header *h, bool root)
{
    VEC_AT(&c->members, member, c->members.n) =
        (member){ .h = h, .flags = root ? M_ROOT : 0 };
    h->x.gc.index = ++c->members.n;
}

/* Whether marking enters h, a slot's target: tracked, not frozen, not a
   member yet. */
static bool to_enter(rcgc__header *h)
{
    return (rcgc__u32_load_relaxed(&h->gc_bits) & (RCGC__GC_TRACKED | RCGC__GC_FROZEN)) ==
               RCGC__GC_TRACKED &&
           index_of(h) == 0;
}

static void mark_visit(rcgc_ref *slot, void *ctx)
{
    collection *c = ctx;
    void *obj = rcgc__slot_load_acquire(slot);
    rcgc__header *h;

    if (obj == NULL || c->oom)
        return;
    h = rcgc__hdr(obj);
    if (!to_enter(h))
        return;
    if (c->members.n >= c->budget) {
        c->truncated = true;
        return;
    }
    /* We are online: the object's memory stays while we try. */
    if (member_room(c) && rcgc__pin_flag(h, 0))
        add_member(c, h, false);
}

/*
 * Help.  A thread waiting in rcgc_collect is idle, and so, on a machine
 * with a core to spare, is its core.  The two steps that are one
 * independent visit per member, 4 (count) and 6 (delta), run in two parts
 * of the member table, and a waiting caller may take the second while the
 * collecting thread runs the first (run_parts).  A part writes only its own
 * members' records and its own results (struct part; step 4 its own edge
 * table, appended to the collection's afterwards), and reads what earlier
 * steps wrote, handed over under gc.lock.  The collecting thread takes the
 * second part back if no one has taken it by the time its own is done, so
 * it never waits for a helper that has not started, only for one that has.
 * Marking, where it has no budget, is helped a level at a time
 * (mark_level): the members its breadth-first order has entered but not
 * yet visited are visited in two parts, each of which only reads (slots,
 * and their targets' gc_bits and index) and lists the targets not yet
 * entered; nothing is entered until both parts are done, so neither the
 * table nor any index changes under a part; then the collecting thread
 * enters the listed targets, first part's first, in the order one visit
 * would have entered them (a target listed twice is entered once), and
 * marking goes on from the next level.
 * The take (step 1) of HELP_MIN entries or more (a round that takes every
 * candidate left: BM_collect_ring's and BM_collect_graph's 10^6 first
 * touches) runs in two parts as well (take_in_parts): the chunks are cut
 * at half their entries, each part has room in the table for all of its
 * own, reserved beforehand so that the table does not move, and enters
 * there each candidate that needs only its pin and flag.  It pins by the
 * shared word, as a non-owner does (rcgc__pin_flag_shared): the helper
 * may be the owner, offline, whose objects others merge for meanwhile.  A
 * candidate marked already, frozen, dead, dying or owing an entry stays
 * in its chunk, and the collecting thread takes those afterwards, as
 * before.  The second part's last members then fill the gap that the
 * first part's leftovers leave in its room, their indices rewritten.  An
 * object has one entry at most, so the parts touch disjoint headers and
 * records; a candidate's memory stays while its entry does (one released
 * meanwhile is a zombie, freed by the collecting thread when it takes
 * the entry).  What moves is only where a few members stand in marking's
 * order, and marking is sound in any order.  Step probe, ring 80.2 ->
 * 70.1 ms, graph 145.9 -> 135.9 ms (medians of 16 collections, builds
 * alternating).
 * A helper runs the types' traverse functions on pinned members and the
 * Delta-test's CAS, as the collecting thread would, and nothing that
 * takes a lock.  The helper is offline (it waits in a blocking region),
 * yet what it reads stays as if it were online: a part also reads a
 * slot's target that is no member (untracked, frozen, or not yet entered),
 * whose memory no pin keeps, and the collecting thread, online and with
 * no quiescent state from before it offers a part until that part is done
 * (it waits for its helper without going offline), holds back every grace
 * period that could free what the part reads, as it does for its own
 * reading (object.c: a target loses its slot's reference only by an
 * overwrite, which defers its memory by a grace period).  Small tables
 * (HELP_MIN) run as one part, and with no caller waiting the collecting
 * thread runs both parts, one after the other (marking and the take: as
 * one, as before).  On two cores:
 * BM_collect_ring 123 -> 104-109 ms, BM_collect_graph 192 -> 161-167 ms;
 * marking in parts, on BM_collect_graph's heap in a step probe, marking
 * 53.2 -> 40.9 ms (its level after the take: 800 000 members), the
 * ring's unchanged (its members are settled at their take).  Not helped,
 * because it did not pay:
 * step 7's frees (two threads freeing into one malloc arena took as long
 * as one; handing the helper only the blocks bound for free(), so that
 * one thread alone frees into the arena, made the graph's step 7 24.2 ->
 * 30.1 ms: the helper's frees missed the cache, and the collecting
 * thread's part slowed from 18-28 to 26-45 ms beside them), and small tables (the 5000-member rounds of BM_collect_pairs,
 * with a helper that lingered between parts: 55 -> 71 ms, each half's
 * records moving between the two cores' caches).
 */
#define HELP_MIN 32768

enum { HELP_NONE, HELP_OPEN, HELP_TAKEN, HELP_DONE };

static rcgc__u64 help_min = { HELP_MIN };   /* a test may lower it */
static uint64_t  help_offered, help_taken;  /* parts, in all (gc.lock) */
static uint64_t  takes_in_parts;            /* takes in parts (collect_mutex) */

/* What step 7 needs to know of the members' fates, summed in step 6's
   pass (and again, after a component failed, in one of its own). */
typedef struct tally {
    size_t back;                   /* members that go back among the candidates */
    size_t freed;
    bool finalizers;               /* a member to free has a finalizer */
    bool release;                  /* ... or a slot to release (see step 7) */
} tally;

/* Adds member m's fate to t. */
static inline void tally_add(collection *c, tally *t, const member *m)
{
    t->back += m->fate == FATE_RETRY ||
               (c->truncated && (m->flags & M_ROOT) && m->fate == FATE_LIVE);
    if (m->fate == FATE_FREED) {
        t->freed++;
        t->finalizers |= (m->flags & M_FINALIZER) != 0;
        t->release |= (m->flags & M_EXTERNAL) || !(m->flags & M_INTERNAL);
    }
}

typedef struct part {
    collection *c;
    size_t from, to;               /* members [from, to) */
    vec *edges;                    /* step 4: where its out-edges go */
    vec *found;                    /* step 2: targets not yet members */
    rcgc__roots *chunks, *stop;    /* step 1: its chunks, from chunks to stop */
    size_t entered;                /* step 1: members it entered, from `from` */
    uint32_t external;             /* edge_visit's count for the member at hand */
    bool collecting;               /* run by the collecting thread */
    bool oom;                      /* step 4: no room for an edge */
    bool weakrefs, finalizers;     /* step 4: some member has them */
    bool failed, overcounted;      /* step 6 */
    size_t sigma_failures;         /* step 6 */
    tally tally;                   /* step 6: its members' fates */
} __attribute__((aligned(64))) part;   /* a line each: both threads write theirs
                                          at every member */

/* Runs fn over p[0] and p[1]: the second offered to a caller waiting to
   help, or run after the first if no one waits. */
static void run_both(collection *c, void (*fn)(part *), part *p)
{
    bool posted = false, taken = false;

    p[0].collecting = true;
    pthread_mutex_lock(&gc.lock);
    if (gc.helpers > 0 && gc.help_state == HELP_NONE) {
        gc.help_run = fn;
        gc.help_part = &p[1];
        gc.help_state = HELP_OPEN;
        pthread_cond_broadcast(&gc.done);
        help_offered++;
        posted = true;
    }
    pthread_mutex_unlock(&gc.lock);
    fn(&p[0]);
    if (posted) {
        pthread_mutex_lock(&gc.lock);
        taken = gc.help_state != HELP_OPEN;
        help_taken += taken;
        while (gc.help_state == HELP_TAKEN)
            pthread_cond_wait(&gc.helped, &gc.lock);
        gc.help_state = HELP_NONE;
        gc.help_part = NULL;
        pthread_mutex_unlock(&gc.lock);
    }
    if (taken) {
        c->helped++;
    } else {
        p[1].collecting = true;
        fn(&p[1]);
    }
}

/* Runs fn over members [from, to): in p[0] alone, or, if the range is big
   enough to be helped, in halves, the second (p[1]) offered to a waiting
   caller (run_both). */
static void run_range(collection *c, void (*fn)(part *), part *p, size_t from, size_t to)
{
    p[0].from = from;
    p[0].to = p[1].from = p[1].to = to;
    if (to - from < rcgc__u64_load_relaxed(&help_min)) {
        p[0].collecting = true;
        fn(&p[0]);
        return;
    }
    p[0].to = p[1].from = from + (to - from) / 2;
    run_both(c, fn, p);
}

/* Runs fn over the whole table (see run_range). */
static void run_parts(collection *c, void (*fn)(part *), part *p)
{
    run_range(c, fn, p, 0, c->members.n);
}

/* Whether a caller waits in rcgc_collect, free to help now. */
static bool helper_waiting(void)
{
    bool waiting;

    pthread_mutex_lock(&gc.lock);
    waiting = gc.helpers > 0 && gc.help_state == HELP_NONE;
    pthread_mutex_unlock(&gc.lock);
    return waiting;
}

/* Marking in parts: mark_visit's reading, where a target it would enter
   goes to the part's found list instead. */
static void found_visit(rcgc_ref *slot, void *ctx)
{
    part *p = ctx;
    void *obj = rcgc__slot_load_acquire(slot);

    if (obj == NULL || p->oom || !to_enter(rcgc__hdr(obj)))
        return;
    if (!vec_reserve(p->found, 1)) {
        p->oom = true;
        return;
    }
    VEC_AT(p->found, rcgc__header *, p->found->n++) = rcgc__hdr(obj);
}

static void mark_part(part *p)
{
    collection *c = p->c;

    for (size_t i = p->from; i < p->to && !p->oom; i++) {
        member *m = member_at(c, i);

        if (p->collecting)
            chunk_pool_tend_at(i);
        if (!(m->flags & M_SETTLED)) {
            prefetch_ahead(c, i, true);
            m->h->type->traverse(rcgc__body(m->h), found_visit, p);
        }
    }
}

/* Marking's visit of members [from, to), one level of the breadth-first
   marking, in two parts if a caller waits to help (an unbounded marking
   only); then the targets found are entered, in the order in which one
   visit would have entered them.  False if no one waits: the caller
   marks on its own. */
static bool mark_level(collection *c, size_t from, size_t to)
{
    part p[2] = { { .c = c, .found = &c->found[0] }, { .c = c, .found = &c->found[1] } };

    if (c->budget != SIZE_MAX || to - from < rcgc__u64_load_relaxed(&help_min) ||
        !helper_waiting())
        return false;
    vec_clear(&c->found[0]);
    vec_clear(&c->found[1]);
    run_range(c, mark_part, p, from, to);
    c->oom |= p[0].oom || p[1].oom;
    for (int k = 0; k < 2; k++) {
        for (size_t j = 0; j < c->found[k].n && !c->oom; j++) {
            rcgc__header *h = VEC_AT(&c->found[k], rcgc__header *, j);

            /* Found twice, or by both parts: entered once.  We have been
               online since either part read the slot: the memory stays. */
            if (to_enter(h) && member_room(c) && rcgc__pin_flag(h, 0))
                add_member(c, h, false);
        }
    }
    return true;
}

/* A waiting rcgc_collect caller's turn (gc.lock held, and held again on
   return): the open part, if there is one. */
static void help_locked(void)
{
    void (*fn)(part *) = gc.help_run;
    part *p = gc.help_part;

    if (gc.help_state != HELP_OPEN)
        return;
    gc.help_state = HELP_TAKEN;
    pthread_mutex_unlock(&gc.lock);
    fn(p);             /* no cancellation (rcgc_collect): the collecting
                          thread waits for this part */
    pthread_mutex_lock(&gc.lock);
    gc.help_state = HELP_DONE;
    pthread_cond_signal(&gc.helped);
}

static void edge_visit(rcgc_ref *slot, void *ctx)
{
    part *p = ctx;
    void *obj = rcgc__slot_load_acquire(slot);
    size_t j;

    if (obj == NULL)
        return;
    j = (rcgc__u32_load_relaxed(&rcgc__hdr(obj)->gc_bits) & RCGC__GC_TRACKED)
            ? index_of(rcgc__hdr(obj)) : 0;
    if (j != 0)
        push_index(&p->oom, p->edges, j - 1);
    else
        p->external++;
}

/* The component of member i (after join). */
static size_t find(collection *c, size_t i)
{
    while (member_at(c, i)->parent != i) {
        member_at(c, i)->parent = member_at(c, member_at(c, i)->parent)->parent;
        i = member_at(c, i)->parent;
    }
    return i;
}

/* Clearing a garbage member's slots: references that stay inside its
   component die with it; the others are dropped. */
typedef struct release_ctx {
    collection *c;
    size_t      comp;
} release_ctx;

static void release_visit(rcgc_ref *slot, void *ctx)
{
    release_ctx *r = ctx;
    void *obj = rcgc__slot_exchange_acq_rel(slot, NULL);
    rcgc__header *h;
    size_t j;

    if (obj == NULL)
        return;
    h = rcgc__hdr(obj);
    j = (rcgc__u32_load_relaxed(&h->gc_bits) & RCGC__GC_TRACKED) ? index_of(h) : 0;
    if (j != 0 && member_at(r->c, j - 1)->fate == FATE_FREED &&
        find(r->c, j - 1) == r->comp)
        return;                    /* dies with the component */
    rcgc_decref(obj);
}

static void debug_line(const char *what, rcgc__header *h)
{
    fprintf(stderr, "rcgc: %s %s %p\n", what,
            h->type->name ? h->type->name : "?", rcgc__body(h));
}

/* One root buffer entry: pinned, flagged and entered, or let go; false
   if there is no room to examine it. */
static bool take_candidate(collection *c, rcgc__header *h)
{
    uint32_t bits = rcgc__u32_load_relaxed(&h->gc_bits);
    size_t marked = index_of(h);   /* marked already: a round that took the
                                      rest (see "Rounds"); our pin holds it */
    bool enter;

    if (!member_room(c))
        return false;
    enter = marked == 0 && !(bits & RCGC__GC_FROZEN);
    /* The entry goes: UNBUFFERED again, in the flag's own RMW for a member
       (a decrement from here on buffers the object anew; this collection
       examines it after that decrement anyway: its counts are read after
       the grace period, or its word changed).  The pin keeps a zombie from
       forming meanwhile.  A marked object's count is left alone (a second
       pin would make it DIRTY). */
    if (marked != 0 ||
        (enter ? rcgc__pin_flag(h, RCGC__OWNER_UNBUFFERED) : rcgc__try_incref(h))) {
        if (!enter)
            rcgc__word_fetch_or_relaxed(&h->owner, RCGC__OWNER_UNBUFFERED);
        if (enter)
            add_member(c, h, true);
        else if (marked != 0)
            member_at(c, marked - 1)->flags |= M_ROOT;  /* an unwinding
                                                            collection buffers it again */
        else
            unpin(h);
        return true;
    }
    /* Dead: the entry goes, and a zombie's memory with it.  acq_rel pairs
       with rcgc__dispose_unlinked: of its ZOMBIE and our UNBUFFERED, set by
       RMWs on the one word, exactly one finds the other's. */
    if (rcgc__word_fetch_or_acq_rel(&h->owner, RCGC__OWNER_UNBUFFERED) & RCGC__OWNER_ZOMBIE)
        rcgc__free_memory(c->th, h);
    return true;
}

/*
 * Marking at the take.  A round takes its candidates in chunk order, and
 * one that takes every candidate left (see "Rounds") takes most of a big
 * subgraph's members at once; marking then visits each of them again, a
 * whole table later, when its lines have long left the cache.  But where
 * a candidate's targets are candidates entered just before or after it
 * (a ring's, a pair's, a list's, a tree's built in order: whatever was
 * buffered in the order it was linked), marking would find nothing to do
 * there.  So each candidate entered has its slots read TAKE_LAG takes
 * later, while its lines are still in cache (check_member): if every
 * target is one of the last 2 * TAKE_LAG candidates entered, members all,
 * marking skips it (M_SETTLED); otherwise marking visits it as before.
 * The check compares pointers and reads no target; where checks keep
 * failing (a graph whose targets are anywhere), only one candidate in
 * TAKE_MISSES is checked, until one settles.
 * It marks nothing, so neither the order of marking nor a budget's count
 * changes; skipping a member is what visiting it at its check would have
 * done.  BM_collect_ring's marking: 45.0 -> 33.4 and 53.6 -> 41.2 ms
 * (medians of 12 collections, alternating builds, two slots of the
 * machine); pairs and graph unchanged, the graph's 57 -> 74 ms without the
 * TAKE_MISSES rule (its checks all fail, at 15-20 ns each).  (Marking
 * from each candidate at its take instead made BM_collect_graph's marking
 * 69 -> 125 ms: its targets are later candidates anywhere in the heap,
 * each then pinned by a locked RMW on a line that missed the cache, where
 * the take's pins go in chunk order with their lines asked for ahead.)
 */
#define TAKE_LAG PREFETCH_AHEAD
#define TAKE_RECENT (2 * TAKE_LAG)

typedef struct take_check {
    rcgc__header *recent[TAKE_RECENT];  /* the last candidates entered */
    size_t lag[TAKE_LAG];               /* ... and their member indices */
    size_t n;                           /* candidates entered */
    size_t at;                          /* the checked one's place in recent */
    bool all;
    size_t missed;                      /* checks failed in a row */
} take_check;

/* Looks for a target among the recent candidates outward from the checked
   one's own place (0, +1, -1, +2, ..., +16): a pair's, a ring's or a
   tree's targets were entered beside it, and are found at the first or
   second look instead of halfway through (step probe, builds alternating:
   the pairs' take 29.5 and 30.0 -> 26.5 and 26.8 ms, the ring's marking
   16.8 -> 15.5). */
static void take_visit(rcgc_ref *slot, void *ctx)
{
    take_check *t = ctx;
    void *obj = rcgc__slot_load_acquire(slot);

    if (obj == NULL || !t->all)
        return;
    for (size_t d = 0; d < TAKE_RECENT; d++) {
        size_t k = (t->at + ((d & 1) ? (d + 1) / 2 : TAKE_RECENT - d / 2)) % TAKE_RECENT;

        if (t->recent[k] == rcgc__hdr(obj))
            return;
    }
    t->all = false;
}

/* Checks member j, entered as the take's number-th candidate. */
static void check_member(collection *c, take_check *t, size_t j, size_t number)
{
    member *m = member_at(c, j);

    t->at = number % TAKE_RECENT;
    t->all = true;
    m->h->type->traverse(rcgc__body(m->h), take_visit, t);
    if (t->all)
        m->flags |= M_SETTLED;
    t->missed = t->all ? 0 : t->missed + 1;
}

/* Whether to check the candidate entered as the n-th: after TAKE_MISSES
   failed checks in a row, only every TAKE_MISSES-th, until one settles. */
#define TAKE_MISSES 32

static bool take_checks(const take_check *t, size_t n)
{
    return t->missed < TAKE_MISSES || n % TAKE_MISSES == 0;
}

/* Candidate h entered as member j: checks the one entered TAKE_LAG
   before it. */
static void take_note(collection *c, take_check *t, rcgc__header *h, size_t j)
{
    t->recent[t->n % TAKE_RECENT] = h;
    if (t->n >= TAKE_LAG && take_checks(t, t->n))
        check_member(c, t, t->lag[t->n % TAKE_LAG], t->n - TAKE_LAG);
    t->lag[t->n % TAKE_LAG] = j;
    t->n++;
}

/* The take is done: checks the last TAKE_LAG entered. */
static void take_note_end(collection *c, take_check *t)
{
    for (size_t k = t->n > TAKE_LAG ? t->n - TAKE_LAG : 0; k < t->n; k++)
        if (take_checks(t, k + TAKE_LAG))
            check_member(c, t, t->lag[k % TAKE_LAG], k);
}

/* The take of chunks [p->chunks, p->stop) into members from p->from, in
   the room reserved for it (see "Help"): each candidate that only needs
   its pin and flag is entered, with the checks of "Marking at the take";
   the others stay in their chunks, for the collecting thread. */
static void take_part(part *p)
{
    collection *c = p->c;
    size_t at = p->from;
    take_check t = { .n = 0, .all = false, .missed = 0 };

    for (rcgc__roots *chunk = p->chunks; chunk != p->stop; chunk = chunk->next) {
        size_t kept = 0;

        for (size_t i = 0; i < chunk->n; i++) {
            rcgc__header *h = chunk->items[i];

            if (i + PREFETCH_AHEAD < chunk->n)
                prefetch_object(chunk->items[i + PREFETCH_AHEAD]);
            /* Marked or frozen, dead, dying or owing: take_candidate's. */
            if ((rcgc__u32_load_relaxed(&h->gc_bits) & RCGC__GC_FROZEN) || index_of(h) != 0 ||
                !rcgc__pin_flag_shared(h, RCGC__OWNER_UNBUFFERED)) {
                chunk->items[kept++] = h;
                continue;
            }
            VEC_AT(&c->members, member, at) = (member){ .h = h, .flags = M_ROOT };
            h->x.gc.index = (uint32_t)(at + 1);
            take_note(c, &t, h, at++);
        }
        chunk->n = kept;
    }
    take_note_end(c, &t);
    p->entered = t.n;
}

/* The take in two parts, if it is big enough and a caller waits to help
   (see "Help"): the first half of the entries, in whole chunks, goes into
   the table from its end, the second from where the first's room ends;
   the members the second entered close the gap left by the entries the
   first left, the last of them moved, their indices with them.  Returns
   the members entered; the entries left stay in the chunks. */
static size_t take_in_parts(collection *c, rcgc__roots *chunks)
{
    part p[2] = { { .c = c }, { .c = c } };
    size_t base = c->members.n, total = 0, half = 0, gap, moved;
    rcgc__roots *k;

    for (k = chunks; k != NULL; k = k->next)
        total += k->n;
    if (total < rcgc__u64_load_relaxed(&help_min) || c->oom || total >= MEMBER_MAX - base ||
        !helper_waiting() || !vec_reserve(&c->members, total))
        return 0;
    for (k = chunks; k != NULL && half < total / 2; k = k->next)
        half += k->n;
    if (k == NULL)
        return 0;                  /* one chunk: no halves */
    p[0].chunks = chunks;
    p[0].stop = p[1].chunks = k;
    p[0].from = base;
    p[1].from = base + half;
    run_both(c, take_part, p);
    gap = half - p[0].entered;
    moved = gap < p[1].entered ? gap : p[1].entered;
    for (size_t i = 0; i < moved; i++) {
        size_t to = base + p[0].entered + i;
        member *m = member_at(c, base + half + p[1].entered - moved + i);

        *member_at(c, to) = *m;
        m->h->x.gc.index = (uint32_t)(to + 1);
    }
    c->members.n = base + p[0].entered + p[1].entered;
    c->candidates += p[0].entered + p[1].entered;
    takes_in_parts++;
    return p[0].entered + p[1].entered;
}

/* Empties the chunks into the member table, in two parts if helped; the
   chunks stay with the collection (c->chunks), holding the entries it had
   no room for.  Returns the members it entered. */
static size_t take_candidates(collection *c, rcgc__roots *chunks)
{
    size_t parted = take_in_parts(c, chunks);
    take_check t = { .n = 0, .all = false, .missed = 0 };

    while (chunks != NULL) {
        rcgc__roots *chunk = chunks;
        size_t kept = 0;

        chunks = chunk->next;
        for (size_t i = 0; i < chunk->n; i++) {
            size_t before = c->members.n;

            if (i + PREFETCH_AHEAD < chunk->n)
                prefetch_object(chunk->items[i + PREFETCH_AHEAD]);
            c->candidates++;
            /* No room to examine it: the entry stays, buffered, for the
               next collection (a zombie's too: its consumer frees). */
            if (!take_candidate(c, chunk->items[i])) {
                chunk->items[kept++] = chunk->items[i];
                continue;
            }
            if (c->members.n != before)
                take_note(c, &t, chunk->items[i], before);
        }
        chunk->n = kept;
        chunk->next = c->chunks;
        c->chunks = chunk;
    }
    take_note_end(c, &t);
    return parted + t.n;
}

/*
 * Objects a mutator could not buffer (no memory for a root chunk; MISSED),
 * found in the registry and made candidates: a walk over every tracked
 * object, made only after such a failure.  Each is pinned under its
 * shard's lock (snapshot_with: a dead one refuses the pin), then buffered
 * as a decrement would have, into chunks that join this collection's
 * candidates, and unpinned (dying then, it is a zombie that the
 * collection frees).  Short of memory for that, the walk is left to the
 * next collection.
 */
static void find_missed(rcgc__roots **chunks)
{
    vec found = VEC(rcgc__header *);
    rcgc__roots *k = NULL;
    bool short_of_memory;

    if (rcgc__u64_load_relaxed(&missed) == 0 ||
        rcgc__u64_exchange_seq_cst(&missed, 0) == 0)
        return;
    short_of_memory = !snapshot_with(&found, RCGC__GC_MISSED);
    for (size_t i = 0; i < found.n; i++) {
        rcgc__header *h = VEC_AT(&found, rcgc__header *, i);

        if (!short_of_memory && (k == NULL || k->n == RCGC__ROOTS_CHUNK)) {
            k = gc_may_allocate() ? chunk_alloc() : NULL;
            if (k != NULL) {
                k->n = 0;
                k->next = *chunks;
                *chunks = k;
            }
            short_of_memory = k == NULL;
        }
        if (!short_of_memory) {
            rcgc__u32_fetch_and_relaxed(&h->gc_bits, ~RCGC__GC_MISSED);
            if (rcgc__word_fetch_and_relaxed(&h->owner, ~RCGC__OWNER_UNBUFFERED) &
                RCGC__OWNER_UNBUFFERED)
                k->items[k->n++] = h;
        }
        unpin(h);
    }
    if (short_of_memory)
        rcgc__u64_fetch_add_seq_cst(&missed, 1);
    vec_free(&found);
}

/* Room in c->chunks for n more entries. */
static bool reserve_room(collection *c, size_t n)
{
    size_t room = 0;

    for (rcgc__roots *k = c->chunks; k != NULL; k = k->next)
        room += RCGC__ROOTS_CHUNK - k->n;
    while (room < n) {
        rcgc__roots *k = gc_may_allocate() ? chunk_alloc() : NULL;
        if (k == NULL)
            return false;
        k->n = 0;
        k->next = c->chunks;
        c->chunks = k;
        room += RCGC__ROOTS_CHUNK;
    }
    return true;
}

/* A candidate again: into the room the collection holds, so it cannot fail. */
static void rebuffer(collection *c, rcgc__header *h)
{
    if (!(rcgc__word_fetch_and_relaxed(&h->owner, ~RCGC__OWNER_UNBUFFERED) &
          RCGC__OWNER_UNBUFFERED))
        return;
    while (c->fill != NULL && c->fill->n == RCGC__ROOTS_CHUNK)
        c->fill = c->fill->next;
    rcgc_assert_internal(c->fill != NULL);
    c->fill->items[c->fill->n++] = h;
}

/* The chunks holding entries become the next collection's first
   candidates; the empty ones go. */
static void chunk_retire(rcgc__roots *k);

static void keep_chunks(collection *c)
{
    while (c->chunks != NULL) {
        rcgc__roots *k = c->chunks;

        c->chunks = k->next;
        if (k->n == 0) {
            chunk_retire(k);
            continue;
        }
        k->next = retry;
        retry = k;
    }
}

static void run_callbacks(rcgc_phase phase, const rcgc_collect_info *info)
{
    callback *copy, one;
    size_t n;

    pthread_mutex_lock(&gc.lock);
    n = gc.ncallbacks;
    copy = n ? gc_realloc(NULL, n * sizeof(*copy)) : NULL;
    if (copy != NULL)
        memcpy(copy, gc.callbacks, n * sizeof(*copy));
    pthread_mutex_unlock(&gc.lock);
    if (copy != NULL) {
        for (size_t i = 0; i < n; i++)
            copy[i].fn(phase, info, copy[i].ctx);
        free(copy);
        return;
    }
    /* No memory for a copy: every callback still runs, each read under
       the lock in turn (one removed meanwhile may make us skip the next),
       so START and STOP stay paired. */
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&gc.lock);
        n = gc.ncallbacks;
        if (i < n)
            one = gc.callbacks[i];
        pthread_mutex_unlock(&gc.lock);
        if (i < n)
            one.fn(phase, info, one.ctx);
    }
}

/* Keeps every white member whose component root is M_FAILED, with the
   given fate: DYING goes from those that had it. */
static void keep_failed(collection *c, uint8_t fate, bool uncollectable)
{
    for (size_t k = 0; k < c->members.n; k++) {
        member *o = member_at(c, k);
        if (o->color != WHITE || o->fate == FATE_LIVE ||
            !(member_at(c, find(c, k))->flags & M_FAILED))
            continue;
        if (o->fate == FATE_FREED)
            rcgc__sword_fetch_and_relaxed(&o->h->ref_shared, ~RCGC__SHARED_DYING);
        if (uncollectable) {
            c->uncollectable++;
            if (c->debug & RCGC_DEBUG_UNCOLLECTABLE)
                debug_line("uncollectable", o->h);
        }
        o->fate = fate;
    }
    for (size_t k = 0; k < c->members.n; k++)
        member_at(c, k)->flags &= (uint8_t)~M_FAILED;
}

/*
 * The white subgraph's connected components, by union-find over the white
 * edges; made only when they matter (a Delta-test failure, an overcount, a
 * finalizer or an edge leaving a component), which in a collection that
 * frees all it finds is never: the union-find's reads are all over the
 * member table.
 */
static void join(collection *c)
{
    if (c->joined)
        return;
    c->joined = true;
    for (size_t i = 0; i < c->members.n; i++) {
        if (member_at(c, i)->color != WHITE)
            continue;
        for (size_t e = member_at(c, i)->edges, end = edges_end(c, i); e < end; e++) {
            size_t j = VEC_AT(&c->edges, uint32_t, e);
            if (member_at(c, j)->color == WHITE) {
                size_t a = find(c, i), b = find(c, j);
                if (a != b)
                    member_at(c, a > b ? a : b)->parent = (uint32_t)(a > b ? b : a);
            }
        }
    }
}

/* Marks the component of member i to be kept; true if it was not yet. */
static bool fail_component(collection *c, size_t i)
{
    member *root;

    join(c);
    root = member_at(c, find(c, i));
    if (root->flags & M_FAILED)
        return false;
    root->flags |= M_FAILED;
    return true;
}

/* Step 4 for the members of one part (see examine). */
static void count_part(part *p)
{
    collection *c = p->c;

    for (size_t i = p->from; i < p->to && !p->oom; i++) {
        member *m = member_at(c, i);
        rcgc__header *h = m->h;
        const rcgc_type *type;
        intptr_t s, count;
        uint32_t local;

        if (p->collecting)
            chunk_pool_tend_at(i);
        prefetch_ahead(c, i, false);
        s = rcgc__sword_load_acquire(&h->ref_shared);   /* pairs with the acq_rel
                                   count RMWs and merges' release of local */
        local = rcgc__u32_load_acquire(&h->ref_local);
        /* Weak references made after this reading need a strong reference
           that keeps the object black, or a finalizer (see step 7). */
        if (rcgc__u32_load_relaxed(&h->gc_bits) & RCGC__GC_WEAKREFS) {
            m->flags |= M_WEAKREFS;
            p->weakrefs = true;
        }
        m->shared = s;
        m->parent = (uint32_t)i;
        if (s & (RCGC__SHARED_IMMORTAL | RCGC__SHARED_DYING)) {
            m->crc = CRC_MAX;
        } else if ((s & (RCGC__SHARED_QUEUED | RCGC__SHARED_DIRTY)) ||
                   rcgc__shared_owes(s)) {
            /* Touched since flagged, or a queue entry pending at a
               safepoint or about to be made (OWING: refcount.c,
               "Decrements by fetch_sub"): not decided now; examined again
               next time. */
            m->crc = CRC_MAX;
            m->fate = FATE_RETRY;
        } else {
            count = (s >> RCGC__SHARED_SHIFT) +
                    ((s & RCGC__SHARED_MERGED) ? 0 : (intptr_t)local) - 1;
            m->crc = count < CRC_MAX ? (int32_t)count : CRC_MAX;
        }
        m->edges = (uint32_t)p->edges->n;
        p->external = 0;
        type = h->type;
        type->traverse(rcgc__body(h), edge_visit, p);
        if (p->external != 0)
            m->flags |= M_EXTERNAL;
        if (type->finalize != NULL) {
            m->flags |= M_FINALIZER;
            p->finalizers = true;
        }
    }
}

/* Step 6 for the members of one part (see examine). */
static void delta_part(part *p)
{
    collection *c = p->c;
    size_t n = c->members.n;

    for (size_t i = p->from; i < p->to; i++) {
        member *m = member_at(c, i);
        /* The word the CAS takes, twice as far ahead as the colors of the
           targets: a line from memory takes longer than this pass's work
           for PREFETCH_AHEAD members (a ring whose blocks malloc handed
           out again in falling order: 12-38 ms at PREFETCH_AHEAD, 9-13 at
           twice that, step probe). */
        if (i + 2 * PREFETCH_AHEAD < n && member_at(c, i + 2 * PREFETCH_AHEAD)->color == WHITE)
            __builtin_prefetch(&member_at(c, i + 2 * PREFETCH_AHEAD)->h->ref_shared, 1);
        if (!c->all_white && i + PREFETCH_AHEAD < n &&
            member_at(c, i + PREFETCH_AHEAD)->color == WHITE) {
            size_t ahead = i + PREFETCH_AHEAD;
            for (size_t e = member_at(c, ahead)->edges, end = edges_end(c, ahead); e < end; e++)
                __builtin_prefetch(member_at(c, VEC_AT(&c->edges, uint32_t, e)), 1);
        }
        if (m->color == WHITE) {
            /* All white: every edge leads to a white member. */
            m->flags |= M_INTERNAL;
            for (size_t e = m->edges, end = edges_end(c, i); !c->all_white && e < end; e++)
                if (member_at(c, VEC_AT(&c->edges, uint32_t, e))->color != WHITE)
                    m->flags &= (uint8_t)~M_INTERNAL;
            if (m->crc < 0) {
                p->sigma_failures++;   /* counts moved under us: the Delta-test decides */
                p->overcounted = true;
            }
            if (rcgc__sword_cas_acq_rel(&m->h->ref_shared, &(intptr_t){ m->shared },
                                        m->shared | RCGC__SHARED_DYING)) {
                m->fate = FATE_FREED;
            } else {
                m->fate = FATE_RETRY;
                p->failed = true;
            }
        }
        tally_add(c, &p->tally, m);
    }
}

/* Steps 4-7 for members [0, n).  Each step is one pass over the member
   table; passes that touch object headers prefetch ahead. */
static void examine(collection *c)
{
    size_t n = c->members.n;
    bool failed = false, overcounted = false, finalizers = false, finalized = false;
    bool weakrefs = false;

    /* 4. count: one reading of each member's counts and slots, perhaps
       in two parts (see "Help"), the second's edges then appended to the
       first's. */
    part p[2] = { { .c = c, .edges = &c->edges }, { .c = c, .edges = &c->help_edges } };
    part q[2] = { { .c = c }, { .c = c } };
    size_t mid = n, base = 0;

    vec_clear(&c->help_edges);
    run_parts(c, count_part, p);
    c->oom |= p[0].oom || p[1].oom;
    if (!c->oom && p[1].from < p[1].to) {
        mid = p[1].from;
        base = c->edges.n;
        if (base + c->help_edges.n >= MEMBER_MAX || !vec_reserve(&c->edges, c->help_edges.n)) {
            c->oom = true;
        } else if (c->help_edges.n > 0) {
            memcpy(&VEC_AT(&c->edges, uint32_t, base), c->help_edges.items,
                   c->help_edges.n * sizeof(uint32_t));
            c->edges.n += c->help_edges.n;
        }
    }
    weakrefs = p[0].weakrefs || p[1].weakrefs;
    finalizers = p[0].finalizers || p[1].finalizers;
    if (c->oom)
        return;
    phase_next(c, P_SCAN);
    /* Each member's internal edges, counted into the stack's storage (4
       bytes a member) before the colors need the stack.  The counts'
       random increments stay in a table an eighth of the member table's
       size, which the caches hold; decrements of each target's record
       fetched and wrote back a line of the member table for each edge,
       and took as long split between two threads as on one (graph's
       step 5 16.0-21.1 -> 6.0-8.4 ms, step probe, builds alternating;
       ring 5.5-7.1 -> 5.2-6.4, pairs 4.2-4.5 -> 3.3-3.6).  Every member
       is pushed on the stack once at most, so its room for n never moves,
       and the colors' pass pushes member i at a place no later than i,
       whose count it has read already. */
    c->stack.n = 0;
    if (!vec_reserve(&c->stack, n)) {
        c->oom = true;
        return;
    }
    uint32_t *internal = c->stack.items;
    const uint32_t *edge = c->edges.items;
    memset(internal, 0, n * sizeof *internal);       /* n > 0: collect_round */
    for (size_t e = 0; e < c->edges.n; e++)
        internal[edge[e]]++;
    c->stack.n = n;
    vec_clear(&c->stack);          /* notes the n counts, for vec_trim's hold;
                                      the pushes start from 0 */

    /* 5. scan: black spreads from the externally referenced. */
    for (size_t i = 0; i < n; i++) {
        member *m = member_at(c, i);
        int64_t crc = (int64_t)m->crc - internal[i];

        m->crc = crc > -CRC_MAX ? (int32_t)crc : -CRC_MAX;
        if (i >= mid)
            m->edges += (uint32_t)base;    /* step 4's second part */
        m->color = m->crc > 0 ? BLACK : WHITE;
        if (m->color == BLACK && !push_index(&c->oom, &c->stack, i))
            return;
    }
    c->all_white = c->stack.n == 0;
    while (c->stack.n > 0) {
        size_t i = VEC_AT(&c->stack, uint32_t, --c->stack.n);
        for (size_t e = member_at(c, i)->edges, end = edges_end(c, i); e < end; e++) {
            member *t = member_at(c, VEC_AT(&c->edges, uint32_t, e));
            if (t->color == WHITE) {
                t->color = BLACK;
                if (!push_index(&c->oom, &c->stack, VEC_AT(&c->edges, uint32_t, e)))
                    return;
            }
        }
    }

    phase_next(c, P_DELTA);
    /* 6. delta: each white member's CAS, which checks its word and sets
       DYING; a failure keeps its whole component (after the pass: join),
       so one busy object does not hold back unrelated garbage.  Perhaps
       in two parts (see "Help"). */
    run_parts(c, delta_part, q);
    c->sigma_failures += q[0].sigma_failures + q[1].sigma_failures;
    failed = q[0].failed || q[1].failed;
    overcounted = q[0].overcounted || q[1].overcounted;
    if (failed) {
        for (size_t i = 0; i < n; i++) {
            member *m = member_at(c, i);
            if (m->color == WHITE && m->fate == FATE_RETRY && fail_component(c, i))
                c->delta_failures++;
        }
        keep_failed(c, FATE_RETRY, false);
    }

    /* A component that passed is a consistent snapshot: a member with
       more internal edges than references means its type's traverse
       reports an edge twice or one that holds no reference (PITFALLS 16;
       a missing edge only leaks, and cannot be seen).  Release builds keep
       the component rather than free what may be live: uncollectable. */
    if (overcounted) {
        bool any = false;
        for (size_t i = 0; i < n; i++) {
            member *m = member_at(c, i);
            if (m->fate != FATE_FREED || m->crc >= 0)
                continue;
            if (RCGC_DEBUG)
                rcgc__fatal("rcgc_collect", "traverse reports more references than the "
                            "object holds", rcgc__body(m->h));
            fail_component(c, i);
            any = true;
        }
        if (any)
            keep_failed(c, FATE_LIVE, true);
    }

    /* The fates, as step 6's parts summed them, or, if a component was
       kept since, summed again. */
    tally t = q[0].tally;
    t.back += q[1].tally.back;
    t.freed += q[1].tally.freed;
    t.finalizers |= q[1].tally.finalizers;
    t.release |= q[1].tally.release;
    if (failed || overcounted) {
        t = (tally){ 0 };
        for (size_t i = 0; i < n; i++)
            tally_add(c, &t, member_at(c, i));
    }
    /* Room to put back the members that failed, and the garbage that a
       finalizer may resurrect or SAVEALL may fail to list; else nothing
       is freed this time. */
    bool may_keep = (c->debug & RCGC_DEBUG_SAVEALL) || t.finalizers;
    if (!reserve_room(c, t.back + (may_keep ? t.freed : 0))) {
        c->oom = true;
        for (size_t i = 0; i < n; i++) {
            member *m = member_at(c, i);
            if (m->fate == FATE_FREED) {
                rcgc__sword_fetch_and_relaxed(&m->h->ref_shared, ~RCGC__SHARED_DYING);
                m->fate = FATE_LIVE;
            }
        }
        return;
    }

    phase_next(c, P_FREE);
    /* 7. free (or keep, with SAVEALL) the components that passed. */
    if (c->debug & (RCGC_DEBUG_COLLECTABLE | RCGC_DEBUG_SAVEALL)) {
        for (size_t i = 0; i < n; i++) {
            member *m = member_at(c, i);
            if (m->fate != FATE_FREED)
                continue;
            if (c->debug & RCGC_DEBUG_COLLECTABLE)
                debug_line("collectable", m->h);
            if (c->debug & RCGC_DEBUG_SAVEALL) {
                m->fate = FATE_SAVED;
                rcgc__sword_fetch_and_relaxed(&m->h->ref_shared, ~RCGC__SHARED_DYING);
            }
        }
    }
    /* Weak references to the garbage are cleared before any finalizer
       runs, and again after them (ones a finalizer made); their callbacks
       run after the finalizers (weakref.c, PITFALLS 21). */
    rcgc_weakref *callbacks = NULL;
    for (size_t i = 0; weakrefs && i < n; i++) {
        member *m = member_at(c, i);
        if (m->fate == FATE_FREED && (m->flags & M_WEAKREFS))
            rcgc__weakrefs_clear(m->h, &callbacks);
    }
    for (size_t i = 0; finalizers && i < n; i++) {
        member *m = member_at(c, i);
        if (m->fate != FATE_FREED || !(m->flags & M_FINALIZER) ||
            (rcgc__u32_fetch_or_relaxed(&m->h->gc_bits, RCGC__GC_FINALIZED) &
             RCGC__GC_FINALIZED))
            continue;
        m->h->type->finalize(rcgc__body(m->h));
        finalized = true;
    }
    for (size_t i = 0; finalized && i < n; i++) {
        member *m = member_at(c, i);
        if (m->fate == FATE_FREED && rcgc__has_weakrefs(m->h))
            rcgc__weakrefs_clear(m->h, &callbacks);
    }
    if (callbacks != NULL) {
        rcgc__weakrefs_run(callbacks);
        finalized = true;          /* user code ran: check the words again */
    }
    /* Only a finalizer (or a weak reference's callback) can touch garbage:
       none ran, no re-check.  One that resurrected (or touched) its
       component keeps all of it; its finalizers have run and will not run
       again. */
    if (finalized) {
        bool any = false;
        for (size_t i = 0; i < n; i++) {
            member *m = member_at(c, i);
            if (m->fate == FATE_FREED &&
                rcgc__sword_load_acquire(&m->h->ref_shared) !=
                    (m->shared | RCGC__SHARED_DYING)) {
                fail_component(c, i);
                any = true;
            }
        }
        if (any)
            keep_failed(c, FATE_RETRY, true);
    }
    /* Slots are cleared and the references leaving the component dropped.
       A member whose every reference, as read in step 4, went to a white
       member, that is to its own component (white members joined by an
       edge are one component, which is freed or kept as a whole), needs no
       visit unless a finalizer ran: nothing else can write the slots of
       garbage. */
    for (size_t i = 0; (finalized || t.release) && i < n; i++) {
        member *m = member_at(c, i);
        release_ctx r = { c, 0 };
        if (m->fate != FATE_FREED ||
            (!finalized && !(m->flags & M_EXTERNAL) && (m->flags & M_INTERNAL)))
            continue;
        join(c);
        r.comp = find(c, i);
        m->h->type->traverse(rcgc__body(m->h), release_visit, &r);
    }
    /* Memory, BATCH_HOLD members at a time: out of the registry under its
       shard locks, then disposed while their headers are still in cache. */
    for (size_t i = 0; i < n;) {
        rcgc__header *batch[BATCH_HOLD];
        size_t nbatch = 0;

        for (; i < n && nbatch < BATCH_HOLD; i++) {
            member *m = member_at(c, i);
            if (i + PREFETCH_AHEAD < n && member_at(c, i + PREFETCH_AHEAD)->fate == FATE_FREED)
                prefetch_object(member_at(c, i + PREFETCH_AHEAD)->h);
            if (m->fate == FATE_FREED)
                batch[nbatch++] = m->h;
        }
        registry_remove_batch(batch, nbatch);
        for (size_t k = 0; k < nbatch; k++) {
            batch[k]->x.gc.index = 0;
            rcgc__dispose_unlinked(c->th, batch[k]);
            c->collected++;
        }
    }
}

/* SAVEALL: the pins of the saved members become the garbage list's
   references; all of them, or (no memory) none, which are examined again. */
static void save_all(collection *c, size_t saved)
{
    bool room;

    pthread_mutex_lock(&gc.lock);
    if (gc.ngarbage + saved > gc.garbage_cap) {
        size_t cap = gc.garbage_cap ? gc.garbage_cap * 2 : 64;
        void **p;

        while (cap < gc.ngarbage + saved)
            cap *= 2;
        p = gc_realloc(gc.garbage, cap * sizeof(*p));
        if (p != NULL) {
            gc.garbage = p;
            gc.garbage_cap = cap;
        }
    }
    room = gc.ngarbage + saved <= gc.garbage_cap;
    for (size_t i = 0; i < c->members.n; i++) {
        member *m = member_at(c, i);

        if (m->fate != FATE_SAVED)
            continue;
        if (room) {
            gc.garbage[gc.ngarbage++] = rcgc__body(m->h);
            c->uncollectable++;
        } else {
            m->fate = FATE_RETRY;
        }
    }
    pthread_mutex_unlock(&gc.lock);
}

/* Step 8 and the bookkeeping, for every member not freed. */
static void unflag_all(collection *c, size_t freed)
{
    size_t saved = 0;

    if (freed == c->members.n)     /* all garbage: nothing to unflag */
        return;

    for (size_t i = 0; i < c->members.n; i++) {
        member *m = member_at(c, i);
        rcgc__header *h = m->h;

        if (m->fate == FATE_FREED)
            continue;
        h->x.gc.index = 0;
        rcgc__word_fetch_and_relaxed(&h->owner, ~RCGC__OWNER_SCAN);
        rcgc__sword_fetch_and_relaxed(&h->ref_shared,
                                      ~(RCGC__SHARED_SCAN | RCGC__SHARED_DIRTY));
        saved += m->fate == FATE_SAVED;
    }
    if (saved > 0)
        save_all(c, saved);
    c->fill = c->chunks;
    for (size_t i = 0; i < c->members.n; i++) {
        member *m = member_at(c, i);

        if (m->fate == FATE_FREED || m->fate == FATE_SAVED)
            continue;
        if (c->oom ? (m->flags & M_ROOT)
                   : m->fate == FATE_RETRY || (c->truncated && (m->flags & M_ROOT))) {
            rebuffer(c, m->h);
            retried++;
        }
        unpin(m->h);
    }
}

/*
 * Rounds.  A collection takes its candidates ROUND_MIN
 * at a time, in whole chunks, and runs steps 1-8 on each round before the
 * next: each round is a collection of its own, sound by the argument
 * above, over the subgraph its roots reach (a member of an earlier round
 * that a later one meets again is simply examined again; one freed by an
 * earlier round is a zombie whose entry the later round frees).  A
 * round's member table and headers stay in cache from pass to pass, where
 * a million members in one table would go to memory at every pass.  Two
 * guards keep rounds from costing more than one big collection.  A round
 * whose marking reaches more than ROUND_REACH members per root (a big
 * subgraph, live or garbage, that later rounds could reach again) takes
 * every candidate left at once, in chunk order, and goes on marking as
 * one collection would have.  A round whose grace period took longer
 * than its work (a thread far from its next safepoint) makes the next
 * round that many times bigger again, so that grace periods stay about
 * half of the call at most.
 * A background collection's marking budget (above) is for the whole
 * collection: each round marks at most what earlier rounds left of it.
 * A round whose marking stops at the budget takes every candidate left
 * and is the last: from there the collection is the one-round collection
 * it would have been, whose candidates all are members, marked no
 * further.  So a candidate is never "outside" to a round because a later
 * round holds it: an earlier round, not stopped, marked all its roots
 * reach, later candidates included, and the stopped one holds every
 * candidate left.  Garbage among the candidates is found at once, as
 * before; what rounds change is the marking counted, a later round's
 * candidate that an earlier round reached counting against the budget.
 * That is at most ROUND_REACH members per root before the take-the-rest
 * guard, and a subgraph that budgets cut short is still examined in full
 * after O(n / MARK_CREDIT) more candidates (next_try keeps doubling).
 */
/* Sanitizer builds, whose speed does not matter, take rounds of 64 so that
   their stress runs collect in many rounds beside the mutators. */
#define ROUND_MIN   (RCGC_TEST_HARD ? 2 : RCGC_TSAN || RCGC_ASAN ? 64 : 4096)
#define ROUND_REACH 4

/* Takes from *chunks whole chunks holding at least want entries. */
static rcgc__roots *split_chunks(rcgc__roots **chunks, size_t want)
{
    rcgc__roots *head = *chunks, *k = head;
    size_t n;

    if (head == NULL)
        return NULL;
    for (n = k->n; k->next != NULL && n < want; k = k->next)
        n += k->next->n;
    *chunks = k->next;
    k->next = NULL;
    return head;
}

/* The round takes every candidate left, which marking does not count
   against its budget. */
static void take_rest(collection *c, rcgc__roots **chunks)
{
    size_t added = take_candidates(c, *chunks);

    *chunks = NULL;
    c->taken += added;
    c->budget = c->budget < SIZE_MAX - added ? c->budget + added : SIZE_MAX;
}

/* Steps 1-8 over the candidates in whole chunks taken from *chunks, at
   least want of them, marking at most spend members beyond those it
   takes. */
static void collect_round(collection *c, rcgc__roots **chunks, size_t want, size_t spend)
{
    size_t collected = c->collected;

    vec_clear(&c->members);
    vec_clear(&c->edges);
    vec_clear(&c->stack);
    c->chunks = c->fill = NULL;
    c->joined = false;
    c->rounds++;
    c->budget = SIZE_MAX;
    c->phase = P_ROOTS;
    c->phase_at = clock_ns(CLOCK_MONOTONIC);
    c->taken = take_candidates(c, split_chunks(chunks, want));   /* 1. roots */
    c->budget = spend < SIZE_MAX - c->taken ? c->taken + spend : SIZE_MAX;
    chunk_pool_tend();
    phase_next(c, P_MARK);
    /* 2. mark: breadth first, the table its own queue ("Prefetching"),
       a level at a time in parts when a caller waits to help ("Help"). */
    for (size_t i = 0, level = 0; i < c->members.n && !c->oom && !c->truncated; i++) {
        member *m = member_at(c, i);

        chunk_pool_tend_at(i);
        if (i == level && (level = c->members.n, mark_level(c, i, level))) {
            i = level - 1;                /* on from the next level */
        } else if (!(m->flags & M_SETTLED)) {
            prefetch_ahead(c, i, true);
            m->h->type->traverse(rcgc__body(m->h), mark_visit, c);
        }
        if (*chunks != NULL && c->members.n / ROUND_REACH > c->taken)
            take_rest(c, chunks);
    }
    /* Marking stopped at the budget: this round takes every candidate
       left and is the collection's last (see "Rounds"). */
    if (c->truncated && *chunks != NULL && !c->oom)
        take_rest(c, chunks);
    if (c->members.n > 0 && !c->oom) {
        chunk_pool_tend();
        phase_next(c, P_GRACE);
        rcgc__epoch_synchronize();                       /* 3. grace */
        phase_next(c, P_COUNT);
        hook_run(&before_count);                         /* tests only */
        examine(c);                                      /* 4-7 */
    }
    phase_next(c, P_UNFLAG);
    unflag_all(c, c->collected - collected);             /* 8 */
    keep_chunks(c);
    phase_next(c, NPHASES);
}

/* The collections' work vectors, kept from one to the next (see "Large
   frees"); collect_mutex protects them.  Each keeps WORK_KEEP bytes, or,
   if more, the most that a collection filled of it in the last
   WORK_DECAY_NS (vec_trim): a program whose collections are big neither
   unmaps nor faults in its tables at every one (back-to-back collections
   of a ring of 10^6: marking 36 instead of 48 ms; with an empty collection
   between them, as rcgc_reclaim_wait makes, the step probe's graph 101.4
   -> 96.0 ms and ring 63.5 -> 61.1 when kept).  A table kept for a big
   collection goes back WORK_DECAY_NS after it: at the end of a later
   collection, or, with a collector thread, when that thread, idle, wakes
   at the deadline (idle_wait).  The callers of collect_once trim, so the
   passes of one rcgc_collect count as one collection.  The price is
   memory: a collection of 10^6 members holds some 50 MB of tables for a
   second after it, 4 MB of them the stack, which step 5 fills with a
   count per member (jemalloc's decay of freed pages is ten). */
#define WORK_KEEP     ((size_t)256 << 10)
#define WORK_DECAY_NS ((uint64_t)1000000000)
static struct {
    vec members, edges, stack, help_edges, found[2];
    vec spare;                     /* surplus_release's sort */
} work = {
    VEC_MAPPED(member), VEC_MAPPED(uint32_t), VEC_MAPPED(uint32_t), VEC_MAPPED(uint32_t),
    { VEC_MAPPED(rcgc__header *), VEC_MAPPED(rcgc__header *) },
    VEC_MAPPED(rcgc__roots *),
};
static rcgc__u64 work_decay_ns = { WORK_DECAY_NS };   /* a test may change it */

#define WORK_VECS(v) \
    vec *v[] = { &work.members, &work.edges, &work.stack, &work.help_edges, \
                 &work.found[0], &work.found[1], &work.spare }

static void work_trim(size_t keep)
{
    uint64_t now = clock_ns(CLOCK_MONOTONIC), decay = rcgc__u64_load_relaxed(&work_decay_ns);
    WORK_VECS(v);

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        vec_trim(v[i], keep, now, decay);
}

/* When a table kept for a big collection is due back (CLOCK_MONOTONIC
   ns), or 0 if none is kept (collect_mutex held). */
static uint64_t work_due(void)
{
    uint64_t due = 0, decay = rcgc__u64_load_relaxed(&work_decay_ns);
    WORK_VECS(v);

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        if (page_round(v[i]->cap * v[i]->size) <= page_round(WORK_KEEP))
            continue;
        if (due == 0 || v[i]->hold_at + decay < due)
            due = v[i]->hold_at + decay;
    }
    return due;
}

/* A mapped chunk emptied beyond the pool's bound waits on surplus until
   the collection ends: one munmap each costs a system call and the other
   CPUs' TLBs (4-5 ms for the 720 or so of BM_collect_pairs), and chunks
   mapped one after another lie side by side, so surplus_release unmaps
   them in runs of adjacent ones.  collect_mutex protects the list. */
static rcgc__roots *surplus;
static size_t       nsurplus;
static size_t       surplus_one_by_one;   /* chunks the fallback unmapped (tests) */
static bool         surplus_sort_fails;   /* a test's injected failure */

static void chunk_retire(rcgc__roots *k)
{
    if (!CHUNK_MAPPED || pool_count() < POOL_MAX) {
        chunk_put(k);
        return;
    }
    k->next = surplus;
    surplus = k;
    nsurplus++;
}

/* Sorts by address, in place: a heapsort, because glibc's qsort mallocs
   its scratch (over 1 KiB of it here), and that malloc would walk the fast
   bins this collection's frees filled (see "Large frees"). */
static void sift_down(rcgc__roots **a, size_t root, size_t n)
{
    for (size_t child; (child = 2 * root + 1) < n; root = child) {
        rcgc__roots *t;

        if (child + 1 < n && (uintptr_t)a[child + 1] > (uintptr_t)a[child])
            child++;
        if ((uintptr_t)a[root] >= (uintptr_t)a[child])
            return;
        t = a[root];
        a[root] = a[child];
        a[child] = t;
    }
}

static void sort_by_address(rcgc__roots **a, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(a, i, n);
    for (size_t end = n; end > 1; end--) {
        rcgc__roots *t = a[0];

        a[0] = a[end - 1];
        a[end - 1] = t;
        sift_down(a, 0, end - 1);
    }
}

static void surplus_release(void)
{
    vec *v = &work.spare;
    size_t n = 0;

    if (surplus == NULL)
        return;
    pool_surplus = true;           /* see chunk_pool_tend */
    if (surplus_sort_fails || !vec_reserve(v, nsurplus)) {   /* no room to sort: one by one */
        surplus_one_by_one += nsurplus;
        while (surplus != NULL) {
            rcgc__roots *k = surplus;
            surplus = k->next;
            chunk_free(k);
        }
        nsurplus = 0;
        return;
    }
    for (rcgc__roots *k = surplus; k != NULL; k = k->next)
        VEC_AT(v, rcgc__roots *, n++) = k;
    surplus = NULL;
    nsurplus = 0;
    sort_by_address(v->items, n);
    for (size_t i = 0, j; i < n; i = j) {
        char *start = (char *)VEC_AT(v, rcgc__roots *, i);

        for (j = i + 1; j < n && (char *)VEC_AT(v, rcgc__roots *, j) ==
                                     start + (j - i) * sizeof(rcgc__roots); j++)
            ;
        munmap(start, (j - i) * sizeof(rcgc__roots));
        rcgc__u64_fetch_add_relaxed(&chunks_live, (uint64_t)-(j - i));
    }
    v->n = 0;
}

/* Armed (n >= 0), it also lets the kept work vectors go, so that the
   collection it arms allocates as the first one did. */
size_t rcgc__test_collector_fail_after(long n)
{
    intptr_t left = rcgc__sword_load_relaxed(&alloc_budget);

    if (n >= 0) {
        lock_collect();
        work_trim(0);
        pthread_mutex_unlock(&collect_mutex);
    }
    rcgc__sword_store_relaxed(&alloc_budget, n < 0 ? INTPTR_MAX : (intptr_t)n);
    return left < 0 ? (size_t)-left : 0;       /* failures since the last call */
}

/* One collection; the caller holds collect_mutex and is attached.  A
   background one (!full) marks at most spend_max members beyond its
   candidates, whatever its budget gives (a test's bound; else SIZE_MAX). */
static size_t collect_once(bool full, size_t spend_max)
{
    collection c = { .th = rcgc__tls_thread };
    rcgc__roots *chunks, *taken, *tail;
    rcgc_collect_info info = { 0, 0 };
    uint64_t t0 = clock_ns(CLOCK_MONOTONIC), dt;
    size_t fresh = 0;              /* candidates handed over since the last */
    size_t earned, spend = 0, used = 0, want;
    bool trying = false;
    rcgc__thread *t;

    c.members = work.members;
    c.edges = work.edges;
    c.stack = work.stack;
    c.help_edges = work.help_edges;
    c.found[0] = work.found[0];
    c.found[1] = work.found[1];

    /* From here to the end, callbacks and finalizers included, this thread
       collects: rcgc_collect returns 0 at once, and nothing waits for a
       collection (the one that would end the wait is ours). */
    c.th->in_collection = true;
    /* What our own decrements queued to us, typically the last
       collection's freeing, which counts on the shared word of the members
       it has yet to unflag: merged now, as a safepoint would, before the
       candidates are gathered (a thread calling rcgc_collect in manual
       mode may reach no other safepoint). */
    rcgc__merge_queue_drain(c.th);

    chunks = NULL;
    if (full) {
        /* rcgc_collect reclaims what any thread buffered: take their
           partial chunks too, before the pending list (hand_over).  A
           thread adding to its chunk takes no lock, so waiting out its
           claim under rcgc__rt.lock cannot deadlock. */
        pthread_mutex_lock(&rcgc__rt.lock);
        for (t = rcgc__rt.threads; t != NULL; t = t->all_next) {
            rcgc__roots *stolen = take_chunk(t);
            if (stolen != NULL) {
                fresh += stolen->n;
                stolen->next = chunks;
                chunks = stolen;
            }
        }
        pthread_mutex_unlock(&rcgc__rt.lock);
    }
    taken = rcgc__ptr_exchange_seq_cst(&pending, NULL);
    if (taken != NULL) {
        size_t n = 0;
        for (tail = taken; ; tail = tail->next) {
            n += tail->n;
            if (tail->next == NULL)
                break;
        }
        rcgc__u64_fetch_add_seq_cst(&npending, -(uint64_t)n);
        fresh += n;
        tail->next = chunks;
        chunks = taken;
    }
    pthread_mutex_lock(&gc.lock);
    c.debug = gc.debug;
    pthread_mutex_unlock(&gc.lock);
    if (retry != NULL) {
        for (tail = retry; tail->next != NULL; tail = tail->next)
            ;
        tail->next = chunks;
        chunks = retry;
        retry = NULL;
        rcgc__u64_store_relaxed(&nretry, 0);
    }
    find_missed(&chunks);

    run_callbacks(RCGC_PHASE_START, &info);
    chunk_pool_tend_begin();

    retried = 0;
    if (!full) {
        earned = fresh < SIZE_MAX / 4 / MARK_CREDIT ? fresh * MARK_CREDIT : SIZE_MAX / 4;
        mark_balance = mark_balance < SIZE_MAX / 4 - earned ? mark_balance + earned
                                                            : SIZE_MAX / 4;
        trying = mark_balance >= mark_next_try;
        spend = trying ? mark_balance : earned / 2 < mark_balance ? earned / 2 : mark_balance;
        spend = spend < spend_max ? spend : spend_max;
    }
    want = ROUND_MIN;              /* see "Rounds" */
    do {
        uint64_t began = clock_ns(CLOCK_THREAD_CPUTIME_ID), grace_before = c.phase_ns[P_GRACE];
        uint64_t grace, busy, grow;

        collect_round(&c, &chunks, want, full ? SIZE_MAX : spend - used);
        used += c.members.n - c.taken;
        c.examined += c.members.n;
        /* Grace periods are slow (a thread far from its next safepoint):
           fewer of them, so that they take about half the time at most.
           The round's work is counted in this thread's CPU time: a
           collector preempted while it works has not worked longer (the
           wall time made a busy machine's rounds stay small). */
        grace = c.phase_ns[P_GRACE] - grace_before;
        busy = clock_ns(CLOCK_THREAD_CPUTIME_ID) - began + 1;
        if (grace > busy) {
            grow = grace / busy < 64 ? 2 * (grace / busy) : 128;
            want = want < SIZE_MAX / grow ? want * grow : SIZE_MAX;
        }
    } while (chunks != NULL && !c.oom);
    if (chunks != NULL) {
        /* Out of memory: the rounds not begun keep their entries, buffered,
           for the next collection. */
        for (tail = chunks; tail->next != NULL; tail = tail->next)
            retried += tail->n;
        retried += tail->n;
        tail->next = retry;
        retry = chunks;
    }
    if (retry != NULL) {
        uint64_t n = 0;
        for (tail = retry; tail != NULL; tail = tail->next)
            n += tail->n;
        rcgc__u64_store_relaxed(&nretry, n);
    }
    if (!full) {
        mark_balance -= used < mark_balance ? used : mark_balance;
        if (!c.truncated)
            mark_next_try = 0;
        else if (trying)
            mark_next_try = spend < SIZE_MAX / 8 ? 2 * spend : SIZE_MAX / 4;
    }
    surplus_release();
    last_examined = c.examined;
    last_rounds = c.rounds;
    last_truncated = c.truncated;
    rcgc__reclaim_flush(c.th);
    dt = clock_ns(CLOCK_MONOTONIC) - t0;

    pthread_mutex_lock(&gc.lock);
    gc.collections++;
    gc.collected += c.collected;
    gc.uncollectable += c.uncollectable;
    gc.collect_ns_last = dt;
    gc.collect_ns_total += dt;
    /* Adapt: a run that frees little waits for more candidates next time,
       one that frees much comes sooner (PHP, Nim); amortized work per
       candidate stays bounded (PITFALLS 23). */
    if (c.examined > 0 && c.collected * 4 < c.examined) {
        if (gc.threshold_eff < gc.threshold * 64)
            gc.threshold_eff *= 2;
    } else if (c.collected * 2 > c.examined && gc.threshold_eff > gc.threshold) {
        gc.threshold_eff /= 2;
    }
    update_wake_locked();
    pthread_mutex_unlock(&gc.lock);

    if (c.debug & RCGC_DEBUG_STATS) {
        char steps[NPHASES * 24], *at = steps;
        for (int p = 0; p < NPHASES; p++)
            at += snprintf(at, sizeof(steps) - (size_t)(at - steps), "%s%s:%.3f",
                           p ? "," : "", phase_names[p], (double)c.phase_ns[p] / 1e6);
        fprintf(stderr, "rcgc: collection: candidates=%zu examined=%zu rounds=%zu "
                        "collected=%zu uncollectable=%zu delta_failures=%zu "
                        "sigma_failures=%zu%s%s helped=%zu duration=%.3fms steps_ms=%s\n",
                c.candidates, c.examined, c.rounds, c.collected, c.uncollectable,
                c.delta_failures, c.sigma_failures, c.oom ? " out_of_memory" : "",
                c.truncated ? " truncated" : "", c.helped, (double)dt / 1e6, steps);
    }
    info.collected = c.collected;
    info.uncollectable = c.uncollectable;
    run_callbacks(RCGC_PHASE_STOP, &info);
    c.th->in_collection = false;
    work.members = c.members;
    work.edges = c.edges;
    work.stack = c.stack;
    work.help_edges = c.help_edges;
    work.found[0] = c.found[0];
    work.found[1] = c.found[1];
    return c.collected;
}

/* A full collection: more passes (at most FULL_PASSES) while members were
   put back, because they were touched during the pass or waited for their
   owner's merge at a safepoint: each pass's grace period lets the owners
   merge, so a cycle that was garbage before the call is decided within a
   pass or two.  Objects touched all the time stay for later collections. */
#define FULL_PASSES 4

static size_t collect_full(void)
{
    size_t n;

    lock_collect();
    n = collect_once(true, SIZE_MAX);
    for (int pass = 1; pass < FULL_PASSES && retried > 0; pass++)
        n += collect_once(true, SIZE_MAX);
    work_trim(WORK_KEEP);
    pthread_mutex_unlock(&collect_mutex);
    return n;
}

/* ---- the collector thread -------------------------------------------------- */

/* The idle collector thread (offline) waits to be woken, or, while it
   keeps a table for a big collection, until that table is due back, which
   it then gives back.  Returns after a wake-up, or early; the caller
   looks again at what there is to do. */
static void idle_wait(void)
{
    struct timespec ts;
    uint64_t due, now, at, pool_due = rcgc__mem_pool_due();

    pthread_mutex_lock(&collect_mutex);
    due = work_due();
    pthread_mutex_unlock(&collect_mutex);
    if (pool_due != 0 && (due == 0 || pool_due < due))
        due = pool_due;            /* the object pool's decay (runtime.c) */
    if (due == 0) {
        if (sem_wait(&wake_sem) == 0)
            rcgc__u32_store_seq_cst(&wake_posted, 0);
        return;                            /* or EINTR */
    }
    /* sem_timedwait's clock is the realtime one: a jump of it only moves
       the trim. */
    now = clock_ns(CLOCK_MONOTONIC);
    at = clock_ns(CLOCK_REALTIME) + (due > now ? due - now : 0);
    ts.tv_sec = (time_t)(at / 1000000000u);
    ts.tv_nsec = (long)(at % 1000000000u);
    if (sem_timedwait(&wake_sem, &ts) == 0) {
        rcgc__u32_store_seq_cst(&wake_posted, 0);
    } else if (errno == ETIMEDOUT) {
        pthread_mutex_lock(&collect_mutex);
        work_trim(WORK_KEEP);              /* gives back what is due */
        pthread_mutex_unlock(&collect_mutex);
        rcgc__mem_pool_decay();
    }
}

static void *collector_main(void *arg)
{
    (void)arg;
    if (rcgc_thread_attach() != 0)
        rcgc__fatal("rcgc_init", "the collector thread cannot attach", NULL);
    pthread_mutex_lock(&gc.lock);
    gc.thread_attached = true;
    pthread_cond_broadcast(&gc.done);
    pthread_mutex_unlock(&gc.lock);

    for (;;) {
        uint64_t request;
        bool stop, full;

        rcgc_blocking_begin();             /* offline while idle */
        pthread_mutex_lock(&gc.lock);
        while (!gc.stop && gc.requested == gc.completed && !should_collect()) {
            pthread_mutex_unlock(&gc.lock);
            idle_wait();
            pthread_mutex_lock(&gc.lock);
        }
        stop = gc.stop;
        request = gc.requested;
        full = request != gc.completed;
        pthread_mutex_unlock(&gc.lock);
        rcgc_blocking_end();
        if (stop)
            break;
        if (full) {
            size_t n = collect_full();
            pthread_mutex_lock(&gc.lock);
            gc.results[gc.nresults++ % 8] = (struct result){ gc.completed, request, n };
            gc.completed = request;
            pthread_cond_broadcast(&gc.done);
            pthread_mutex_unlock(&gc.lock);
        } else {
            lock_collect();
            collect_once(false, SIZE_MAX);
            work_trim(WORK_KEEP);
            pthread_mutex_unlock(&collect_mutex);
        }
        rcgc__mem_pool_decay();            /* if due: an earlier collection's */
        rcgc_safepoint();
    }
    pthread_mutex_lock(&gc.lock);
    gc.thread_attached = false;
    pthread_mutex_unlock(&gc.lock);
    rcgc_thread_detach();
    return NULL;
}

/* The collector thread, if there is to be one; returns once it is
   attached (gc.lock held). */
static int start_thread_locked(void)
{
    int err;

    if (!gc.has_thread)
        return 0;
    err = pthread_create(&gc.thread, NULL, collector_main, NULL);
    if (err != 0) {
        gc.has_thread = false;
        update_wake_locked();
    }
    while (err == 0 && !gc.thread_attached)
        pthread_cond_wait(&gc.done, &gc.lock);
    return err;
}

int rcgc__gc_start(const rcgc_options *opts)
{
    int err = 0;

    if (!shards_ready) {
        for (int i = 0; i < NSHARDS; i++) {
            pthread_mutex_init(&shards[i].lock, NULL);
            shards[i].head.next = shards[i].head.prev = &shards[i].head;
        }
        sem_init(&wake_sem, 0, 0);
        shards_ready = true;
    }
    pthread_mutex_lock(&gc.lock);
    gc.enabled = true;
    gc.threshold = opts->threshold ? opts->threshold : RCGC__THRESHOLD_DEFAULT;
    gc.threshold_eff = gc.threshold;
    gc.debug = opts->debug;
    gc.stop = false;
    gc.requested = gc.completed = 0;
    gc.nresults = 0;
    gc.has_thread = !opts->manual;
    gc.collections = gc.collected = gc.uncollectable = 0;
    gc.collect_ns_last = gc.collect_ns_total = 0;
    rcgc__u64_store_relaxed(&pause_max, 0);
    update_wake_locked();
    err = start_thread_locked();
    pthread_mutex_unlock(&gc.lock);
    return err;
}

size_t rcgc__gc_thread_count(void)
{
    size_t n;

    pthread_mutex_lock(&gc.lock);
    n = gc.thread_attached ? 1 : 0;
    pthread_mutex_unlock(&gc.lock);
    return n;
}

void rcgc__gc_stop_thread(void)
{
    bool joined;

    pthread_mutex_lock(&gc.lock);
    joined = gc.has_thread;
    gc.stop = true;
    wake_collector();
    pthread_mutex_unlock(&gc.lock);
    if (joined) {
        rcgc__thread *th = rcgc__tls_thread;
        if (th != NULL && !th->in_blocking) {
            rcgc_blocking_begin();
            pthread_join(gc.thread, NULL);
            rcgc_blocking_end();
        } else {
            pthread_join(gc.thread, NULL);
        }
    }
    pthread_mutex_lock(&gc.lock);
    gc.has_thread = false;
    update_wake_locked();
    pthread_mutex_unlock(&gc.lock);
}

typedef struct leak_row {
    const rcgc_type *type;
    size_t           count;
} leak_row;

void rcgc__gc_shutdown_collect(void)
{
    unsigned debug;
    vec objs = VEC(rcgc__header *);

    /* Collect until a collection finds nothing (finalizers may free more). */
    for (int round = 0; round < 64; round++)
        if (collect_full() == 0 && retried == 0)
            break;

    pthread_mutex_lock(&gc.lock);
    debug = gc.debug;
    pthread_mutex_unlock(&gc.lock);
    if ((debug & RCGC_DEBUG_LEAK) == RCGC_DEBUG_LEAK && snapshot_with(&objs, 0)) {
        leak_row rows[64];
        size_t nrows = 0, total = objs.n, other = 0;
        rcgc_stats st;

        for (size_t i = 0; i < objs.n; i++) {
            const rcgc_type *type = VEC_AT(&objs, rcgc__header *, i)->type;
            size_t r = 0;
            while (r < nrows && rows[r].type != type)
                r++;
            if (r == nrows && nrows < 64)
                rows[nrows++] = (leak_row){ type, 0 };
            if (r < nrows)
                rows[r].count++;
            else
                other++;
        }
        for (size_t r = 0; r < nrows; r++)
            fprintf(stderr, "rcgc: leak: %zu %s\n", rows[r].count,
                    rows[r].type->name ? rows[r].type->name : "?");
        if (other)
            fprintf(stderr, "rcgc: leak: %zu of other types\n", other);
        unpin_all(&objs, 0);
        rcgc_get_stats(&st);
        fprintf(stderr, "rcgc: leak: %zu tracked objects alive (%llu objects in all)\n",
                total, (unsigned long long)st.live);
    } else {
        unpin_all(&objs, 0);
    }
    vec_free(&objs);
    lock_collect();
    work_trim(0);
    pthread_mutex_unlock(&collect_mutex);
}

/* Candidates in the threads' chunks and the pending stack.  A chunk
   moves from its slot to the stack (npending grows, then the slot is
   released): the sum is taken again while npending moved meanwhile, so
   a chunk on its way is counted once (a few tries at most: the collector
   keeps taking from the stack). */
static uint64_t candidates_now(void)
{
    uint64_t before, buffered;
    int tries = 0;

    pthread_mutex_lock(&rcgc__rt.lock);
    do {
        before = rcgc__u64_load_seq_cst(&npending);
        buffered = 0;
        for (rcgc__thread *t = rcgc__rt.threads; t != NULL; t = t->all_next)
            buffered += roots_count(t);
    } while (rcgc__u64_load_seq_cst(&npending) != before && ++tries < 8);
    pthread_mutex_unlock(&rcgc__rt.lock);
    /* Relaxed: a count; a collection holds them meanwhile. */
    return before + buffered + rcgc__u64_load_relaxed(&nretry);
}

void rcgc__gc_fill_stats(rcgc_stats *out)
{
    uint64_t candidates = candidates_now();

    pthread_mutex_lock(&gc.lock);
    out->collections = gc.collections;
    out->collected = gc.collected;
    out->uncollectable = gc.uncollectable;
    out->candidates = candidates;
    out->pause_max_ns = rcgc__u64_load_relaxed(&pause_max);
    out->collect_ns_last = gc.collect_ns_last;
    out->collect_ns_total = gc.collect_ns_total;
    pthread_mutex_unlock(&gc.lock);
}

/* ---- the gc module ------------------------------------------------------- */

static size_t collect_call(void)
{
    rcgc__thread *th = rcgc__tls_thread;
    uint64_t mine;
    size_t n;
    bool background;

    if (th == NULL) {
        rcgc_assert(0, "rcgc_collect", "thread not attached", NULL);
        return 0;
    }
    if (th->in_collection)
        return 0;           /* from a finalizer or callback: no re-entry */
    pthread_mutex_lock(&gc.lock);
    background = gc.has_thread;
    pthread_mutex_unlock(&gc.lock);
    if (!background) {
        rcgc__roots_flush(th);
        n = collect_full();
        rcgc__mem_pool_decay();    /* if due (no collector thread to wake for it) */
        return n;
    }
    /* Our own chunk goes first, then we wait, offline, for a collection
       that starts after our request (served in order: a thread calling in a
       loop never starves others, gh-151518). */
    rcgc_blocking_begin();
    pthread_mutex_lock(&gc.lock);
    mine = ++gc.requested;
    wake_collector();
    gc.helpers++;
    while (gc.completed < mine && gc.has_thread) {
        if (gc.help_state == HELP_OPEN)
            help_locked();         /* see "Help" */
        else
            pthread_cond_wait(&gc.done, &gc.lock);
    }
    gc.helpers--;
    n = 0;
    for (unsigned i = 0; i < 8 && i < gc.nresults; i++) {
        struct result *r = &gc.results[i];
        if (r->after < mine && mine <= r->upto)
            n = r->collected;
    }
    pthread_mutex_unlock(&gc.lock);
    rcgc_blocking_end();
    return n;
}

/* No cancellation point (runtime.c, "Cancellation"): cancelled in its wait,
   a thread would leave gc.lock held, counted as a helper, in a blocking
   region; in a finalizer, a collection half done. */
size_t rcgc_collect(void)
{
    size_t n;
    int cancel;

    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    n = collect_call();
    pthread_setcancelstate(cancel, NULL);
    return n;
}

void rcgc_enable(void)
{
    pthread_mutex_lock(&gc.lock);
    gc.enabled = true;
    update_wake_locked();
    pthread_mutex_unlock(&gc.lock);
}

void rcgc_disable(void)
{
    pthread_mutex_lock(&gc.lock);
    gc.enabled = false;
    update_wake_locked();
    pthread_mutex_unlock(&gc.lock);
}

int rcgc_isenabled(void)
{
    int on;

    pthread_mutex_lock(&gc.lock);
    on = gc.enabled;
    pthread_mutex_unlock(&gc.lock);
    return on;
}

void rcgc_set_threshold(size_t candidates)
{
    pthread_mutex_lock(&gc.lock);
    gc.threshold = candidates ? candidates : RCGC__THRESHOLD_DEFAULT;
    gc.threshold_eff = gc.threshold;
    update_wake_locked();
    pthread_mutex_unlock(&gc.lock);
}

size_t rcgc_get_threshold(void)
{
    size_t t;

    pthread_mutex_lock(&gc.lock);
    t = gc.threshold;
    pthread_mutex_unlock(&gc.lock);
    return t;
}

size_t rcgc_get_count(void)
{
    rcgc_stats st;

    memset(&st, 0, sizeof(st));
    rcgc__gc_fill_stats(&st);
    return (size_t)st.candidates;
}

void rcgc_set_debug(unsigned flags)
{
    pthread_mutex_lock(&gc.lock);
    gc.debug = flags;
    pthread_mutex_unlock(&gc.lock);
}

unsigned rcgc_get_debug(void)
{
    unsigned flags;

    pthread_mutex_lock(&gc.lock);
    flags = gc.debug;
    pthread_mutex_unlock(&gc.lock);
    return flags;
}

size_t rcgc_foreach_object(int (*fn)(void *obj, void *ctx), void *ctx)
{
    vec objs = VEC(rcgc__header *);
    size_t i, visited = 0;

    if (fn == NULL || rcgc__tls_thread == NULL) {
        rcgc_assert(fn == NULL, "rcgc_foreach_object", "thread not attached", NULL);
        return 0;
    }
    snapshot_with(&objs, 0);
    for (i = 0; i < objs.n; i++) {
        rcgc__header *h = VEC_AT(&objs, rcgc__header *, i);
        visited++;
        if (fn(rcgc__body(h), ctx) != 0) {
            i++;
            unpin(h);
            break;
        }
        unpin(h);
    }
    unpin_all(&objs, i);
    vec_free(&objs);
    return visited;
}

typedef struct referents_ctx {
    int  (*fn)(void *ref, void *ctx);
    void  *ctx;
    bool   stopped;
} referents_ctx;

static void referents_visit(rcgc_ref *slot, void *ctx)
{
    referents_ctx *r = ctx;
    void *obj;

    if (r->stopped)
        return;
    obj = rcgc_ref_load(slot);      /* a reference of our own for the call */
    if (obj != NULL) {
        r->stopped = r->fn(obj, r->ctx) != 0;
        rcgc_decref(obj);
    }
}

void rcgc_get_referents(void *obj, int (*fn)(void *ref, void *ctx), void *ctx)
{
    referents_ctx r = { fn, ctx, false };
    const rcgc_type *type;

    if (obj == NULL || fn == NULL)
        return;
    if (RCGC_DEBUG)
        rcgc__debug_check(obj, "rcgc_get_referents");
    type = rcgc__hdr(obj)->type;
    if (type->traverse != NULL)
        type->traverse(obj, referents_visit, &r);
}

typedef struct referrers_ctx {
    void *target;
    bool  found;
} referrers_ctx;

static void referrers_visit(rcgc_ref *slot, void *ctx)
{
    referrers_ctx *r = ctx;

    if (rcgc__slot_load_acquire(slot) == r->target)
        r->found = true;
}

size_t rcgc_get_referrers(void *obj, int (*fn)(void *referrer, void *ctx), void *ctx)
{
    vec objs = VEC(rcgc__header *);
    size_t i, visited = 0;
    bool stop = false;

    if (obj == NULL || fn == NULL || rcgc__tls_thread == NULL)
        return 0;
    if (RCGC_DEBUG)
        rcgc__debug_check(obj, "rcgc_get_referrers");
    snapshot_with(&objs, 0);
    for (i = 0; i < objs.n && !stop; i++) {
        rcgc__header *h = VEC_AT(&objs, rcgc__header *, i);
        referrers_ctx r = { obj, false };

        h->type->traverse(rcgc__body(h), referrers_visit, &r);
        if (r.found) {
            visited++;
            stop = fn(rcgc__body(h), ctx) != 0;
        }
        unpin(h);
    }
    unpin_all(&objs, i);
    vec_free(&objs);
    return visited;
}

int rcgc_is_tracked(const void *obj)
{
    if (obj == NULL)
        return 0;
    if (RCGC_DEBUG)
        rcgc__debug_check(obj, "rcgc_is_tracked");
    return (rcgc__u32_load_relaxed(&rcgc__hdr(obj)->gc_bits) & RCGC__GC_TRACKED) != 0;
}

int rcgc_is_finalized(const void *obj)
{
    if (obj == NULL)
        return 0;
    if (RCGC_DEBUG)
        rcgc__debug_check(obj, "rcgc_is_finalized");
    return (rcgc__u32_load_relaxed(&rcgc__hdr(obj)->gc_bits) & RCGC__GC_FINALIZED) != 0;
}

int rcgc_callback_add(rcgc_callback_fn fn, void *ctx)
{
    callback *p;

    if (fn == NULL)
        return EINVAL;
    pthread_mutex_lock(&gc.lock);
    p = realloc(gc.callbacks, (gc.ncallbacks + 1) * sizeof(*p));
    if (p == NULL) {
        pthread_mutex_unlock(&gc.lock);
        return ENOMEM;
    }
    gc.callbacks = p;
    gc.callbacks[gc.ncallbacks++] = (callback){ fn, ctx };
    pthread_mutex_unlock(&gc.lock);
    return 0;
}

int rcgc_callback_remove(rcgc_callback_fn fn, void *ctx)
{
    int err = ENOENT;

    pthread_mutex_lock(&gc.lock);
    for (size_t i = 0; i < gc.ncallbacks; i++) {
        if (gc.callbacks[i].fn == fn && gc.callbacks[i].ctx == ctx) {
            memmove(&gc.callbacks[i], &gc.callbacks[i + 1],
                    (gc.ncallbacks - i - 1) * sizeof(gc.callbacks[0]));
            gc.ncallbacks--;
            err = 0;
            break;
        }
    }
    pthread_mutex_unlock(&gc.lock);
    return err;
}

static void set_frozen(bool frozen)
{
    for (int i = 0; i < NSHARDS; i++) {
        struct shard *sh = &shards[i];

        shard_lock(sh, false);
        for (rcgc__gclink *g = sh->head.next; g != &sh->head; g = g->next) {
            rcgc__header *h = rcgc__gclink_header(g);
            uint32_t old = frozen
                ? rcgc__u32_fetch_or_relaxed(&h->gc_bits, RCGC__GC_FROZEN)
                : rcgc__u32_fetch_and_relaxed(&h->gc_bits, ~RCGC__GC_FROZEN);
            if (frozen && !(old & RCGC__GC_FROZEN))
                rcgc__u64_fetch_add_relaxed(&rcgc__freeze_count, 1);
            if (!frozen && (old & RCGC__GC_FROZEN)) {
                rcgc__u64_fetch_add_relaxed(&rcgc__freeze_count, (uint64_t)-1);
                /* Collections skipped it: a candidate root again (in the
                   registry under its lock, so its memory is there). */
                rcgc__buffer_root(rcgc__body(h));
            }
        }
        shard_unlock(sh, SIZE_MAX);
    }
}

void rcgc_freeze(void)
{
    set_frozen(true);
}

void rcgc_unfreeze(void)
{
    set_frozen(false);
}

size_t rcgc_get_freeze_count(void)
{
    return (size_t)rcgc__u64_load_relaxed(&rcgc__freeze_count);
}

size_t rcgc_garbage_foreach(int (*fn)(void *obj, void *ctx), void *ctx)
{
    void **copy;
    size_t n, i, visited = 0;

    if (fn == NULL)
        return 0;
    pthread_mutex_lock(&gc.lock);
    n = gc.ngarbage;
    copy = n ? malloc(n * sizeof(*copy)) : NULL;
    for (i = 0; copy != NULL && i < n; i++)
        copy[i] = rcgc_incref(gc.garbage[i]);
    pthread_mutex_unlock(&gc.lock);
    if (copy == NULL)
        return 0;
    for (i = 0; i < n; i++) {
        visited++;
        if (fn(copy[i], ctx) != 0)
            break;
    }
    for (i = 0; i < n; i++)
        rcgc_decref(copy[i]);
    free(copy);
    return visited;
}

void rcgc_garbage_clear(void)
{
    void **list;
    size_t n;

    pthread_mutex_lock(&gc.lock);
    list = gc.garbage;
    n = gc.ngarbage;
    gc.garbage = NULL;
    gc.ngarbage = gc.garbage_cap = 0;
    pthread_mutex_unlock(&gc.lock);
    for (size_t i = 0; i < n; i++)
        rcgc_decref(list[i]);
    free(list);
}

/* The bytes the work vectors keep between collections. */
size_t rcgc__test_work_kept(void)
{
    size_t bytes = 0;
    WORK_VECS(v);

    lock_collect();
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        bytes += v[i]->cap * v[i]->size;
    pthread_mutex_unlock(&collect_mutex);
    return bytes;
}

/* How long a table kept for a big collection stays (ns); returns the old. */
uint64_t rcgc__test_work_decay(uint64_t ns)
{
    return rcgc__u64_exchange_seq_cst(&work_decay_ns, ns);
}

/* Root chunks in existence (mapped, or from malloc in the hard build), how
   many the surplus fallback has unmapped one by one so far, and the most
   the pool keeps; fail (0 or 1; else unchanged) sets whether the next
   collections find no memory to sort their surplus. */
size_t rcgc__test_chunks(int fail, size_t *one_by_one, size_t *pool_max)
{
    if (pool_max != NULL)
        *pool_max = POOL_MAX;
    lock_collect();
    if (fail == 0 || fail == 1)
        surplus_sort_fails = fail;
    if (one_by_one != NULL)
        *one_by_one = surplus_one_by_one;
    pthread_mutex_unlock(&collect_mutex);
    return (size_t)rcgc__u64_load_relaxed(&chunks_live);
}

/* Root chunks made, all time; *want: the stock the collecting thread
   keeps the pool at (chunk_pool_tend). */
uint64_t rcgc__test_chunks_made(size_t *want)
{
    if (want != NULL) {
        lock_collect();
        *want = (size_t)pool_want;
        pthread_mutex_unlock(&collect_mutex);
    }
    return rcgc__u64_load_relaxed(&chunks_made);
}

/* The pool's count as its word says it; *walked: the chunks its list
   holds (the caller sees to it that no thread takes or puts meanwhile). */
size_t rcgc__test_pool(size_t *walked)
{
    uintptr_t w = rcgc__word_load_acquire(&chunk_pool);
    size_t n = 0;

    for (rcgc__roots *k = POOL_TOP(w); k != NULL; k = k->next)
        n++;
    *walked = n;
    return POOL_COUNT(w);
}

/* Sets the least table whose steps are offered to a waiting caller (0:
   unchanged), returning the one before; and how many parts were offered
   and taken so far (see "Help"). */
size_t rcgc__test_help(size_t min, uint64_t *offered, uint64_t *taken)
{
    size_t before = (size_t)rcgc__u64_load_relaxed(&help_min);

    if (min != 0)
        rcgc__u64_store_relaxed(&help_min, min);
    pthread_mutex_lock(&gc.lock);
    if (offered != NULL)
        *offered = help_offered;
    if (taken != NULL)
        *taken = help_taken;
    pthread_mutex_unlock(&gc.lock);
    return before;
}

/* The takes made in two parts so far (see "Help"). */
uint64_t rcgc__test_takes_in_parts(void)
{
    uint64_t n;

    lock_collect();
    n = takes_in_parts;
    pthread_mutex_unlock(&collect_mutex);
    return n;
}

/* A collection's first round, in candidates (ROUND_MIN). */
size_t rcgc__test_round_min(void)
{
    return ROUND_MIN;
}

/* The last collection's rounds, and the members it examined. */
size_t rcgc__test_last_collection(size_t *examined)
{
    size_t rounds;

    lock_collect();
    rounds = last_rounds;
    if (examined != NULL)
        *examined = last_examined;
    pthread_mutex_unlock(&collect_mutex);
    return rounds;
}

/* One background collection on the calling thread (manual-mode tests):
   the members it examined, and whether marking stopped at its budget. */
size_t rcgc__test_collect_background(bool *truncated)
{
    return rcgc__test_collect_background_spend(SIZE_MAX, truncated);
}

/* ... whose marking spends at most spend members beyond the candidates,
   whatever its budget gives (SIZE_MAX: the budget alone). */
size_t rcgc__test_collect_background_spend(size_t spend, bool *truncated)
{
    size_t n;

    lock_collect();
    collect_once(false, spend);
    work_trim(WORK_KEEP);
    n = last_examined;
    if (truncated != NULL)
        *truncated = last_truncated;
    pthread_mutex_unlock(&collect_mutex);
    return n;
}

/* ---- fork (fork.c) --------------------------------------------------------- */

/* No collection is running while a fork copies the process: its flags and
   pins would stay on objects that no thread would clear. */
void rcgc__collector_fork_outer(enum rcgc__fork_step step)
{
    rcgc__fork_lock_stripes(&collect_mutex, 1, 0, step);
}

void rcgc__collector_fork_inner(enum rcgc__fork_step step)
{
    if (step == RCGC__FORK_PREPARE)
        pthread_mutex_lock(&gc.lock);
    if (shards_ready)
        rcgc__fork_lock_stripes(&shards[0].lock, NSHARDS, sizeof(shards[0]), step);
    if (step == RCGC__FORK_PREPARE)
        return;
    if (step == RCGC__FORK_CHILD) {
        uint64_t n = 0;

        /* The collector thread and rcgc_collect's waiters are gone.  A
           thread that stopped between pushing a chunk and adding its
           count left the count off: it is counted again (the pool's count
           is in its word). */
        pthread_cond_init(&gc.done, NULL);
        pthread_cond_init(&gc.helped, NULL);
        gc.helpers = 0;
        if (shards_ready) {
            sem_destroy(&wake_sem);
            sem_init(&wake_sem, 0, 0);
        }
        rcgc__u32_store_relaxed(&wake_posted, 0);
        gc.thread_attached = false;
        for (rcgc__roots *k = rcgc__ptr_load_relaxed(&pending); k != NULL; k = k->next)
            n += k->n;
        rcgc__u64_store_relaxed(&npending, n);
    }
    pthread_mutex_unlock(&gc.lock);
}

/*
 * A gone thread's chunk goes to the collector, with the candidate it was
 * adding at the instant of the fork, if any (rcgc__roots_add_begin's
 * records).  While its slot is claimed, the chunk it claimed is the
 * recorded one (or none, or a fresh one once chunk_get returned); the
 * records go before a full chunk is pushed (rcgc__roots_add_end).  Outside
 * a claim, a candidate recorded with a chunk went into that chunk, and one
 * recorded alone (the thread stopped before its claim) went nowhere.
 * Residuals: a fork on the instruction between the claim's exchange and
 * its record, or inside the push of a full chunk, or inside a flush's
 * claim (rcgc__roots_flush, a few instructions before its push), loses
 * the chunk (its candidates stay unexamined in the child), and one on the
 * instruction
 * between the fetch_and that clears UNBUFFERED and the record loses that
 * candidate.
 */
void rcgc__roots_orphan(rcgc__thread *th)
{
    uintptr_t w = rcgc__word_exchange_acq_rel(&th->roots, 0);
    rcgc__header *h = th->adding;
    rcgc__roots *k = th->adding_chunk;

    th->adding = NULL;
    th->adding_chunk = NULL;
    if (w == ROOTS_CLAIMED) {
        w = 0;
        if (k != NULL) {
            if (h != NULL && k->n > 0 && k->items[k->n - 1] == h)
                h = NULL;                           /* its count was raised */
            if (h != NULL && k->n < RCGC__ROOTS_CHUNK) {
                k->items[k->n++] = h;
                h = NULL;
            }
            w = (uintptr_t)k | k->n;
        }
    } else if (k != NULL) {
        h = NULL;                                   /* added, and released */
    }
    if (h != NULL)
        buffer_missed(h);
    if (w == 0)
        return;
    k = (rcgc__roots *)(w & ~(uintptr_t)(ROOTS_ALIGN - 1));
    if (k->n > 0)
        hand_over(k);
    else
        chunk_put(k);
}

/* The child's collector thread, if the parent had one. */
int rcgc__gc_restart(void)
{
    int err;

    pthread_mutex_lock(&gc.lock);
    err = start_thread_locked();
    pthread_mutex_unlock(&gc.lock);
    return err;
}
