/*
 * collector.c: the cycle collector, concurrent trial deletion beside
 * running mutators (Bacon and Rajan, "Concurrent Cycle Collection in
 * Reference Counted Systems", ECOOP 2001; the Recycler, PLDI 2001), with
 * the fixes of ../shared/spec/PROTOCOL-REVIEW.md; and the gc module's API.
 *
 * Colors (Bacon and Rajan's names; where each lives here)
 * ======
 *   black   in use: not examined, or examined and found externally referenced
 *   purple  a possible cycle root: RCGC__GC_BUFFERED, an entry in a root buffer
 *   gray    being examined: an entry in this collection's member table, pinned,
 *           RCGC__OWNER_SCAN in its owner word and RCGC__SHARED_SCAN in its
 *           shared word
 *   white   examined, every reference to it explained by edges from other
 *           white members: garbage if its component passes the Delta-test
 *   (DYING  white and proven: its teardown has begun; loads refuse it)
 *
 * Candidate roots.  A decrement that leaves a tracked object (a traverse, no
 * RCGC_TYPE_ACYCLIC) alive, and an exchange that stores one, set BUFFERED
 * once and append the object to the calling thread's root chunk
 * (rcgc__buffer_root; the check is inline in <rcgc/biased.h>).  A chunk is
 * handed to the collector when full, at safepoints, at blocking regions,
 * and at detach or exit; rcgc_collect also takes every thread's partial
 * chunk.  An entry holds no reference: an object released while BUFFERED
 * becomes a ZOMBIE whose memory the entry's consumer returns (exactly one
 * of rcgc__dispose's fetch_or and the consumer's fetch_and sees the other's
 * bit; PITFALLS 14).
 *
 * One collection (collect_once), never stopping a mutator:
 *  1. roots    each candidate is pinned with the validated try-increment of
 *              rcgc_ref_load (dead ones are skipped, zombies freed), and
 *              its BUFFERED bit cleared.
 *  2. mark     from the roots, with an explicit stack, every tracked object
 *              reachable through slots is pinned, then flagged (owner word:
 *              fetch_or OWNER_SCAN; shared word: SCAN set, DIRTY cleared).
 *              Pin before flag: a pinned object cannot be freed while a
 *              thread that has not yet seen the flag drops its last
 *              reference (review hole 3).  Frozen objects are not entered.
 *  3. grace    one grace period (synchronize_rcu).  Every count operation
 *              that read an unflagged word has finished (the owner's inline
 *              path runs between quiescent states); from here on any count
 *              change goes through the shared word and any move through
 *              rcgc_ref_exchange marks DIRTY.
 *  4. count    each member's shared word (acquire), local count and slots
 *              are read once; that one reading gives both its reference
 *              count and its out-edges into the table (hole 2).  cyclic
 *              count = count - pin - internal edges pointing at it.  QUEUED
 *              (a queue entry holds a reference), DIRTY, DYING or IMMORTAL
 *              members count as externally referenced.
 *  5. scan     members with a positive cyclic count are black, and so is
 *              everything reachable from them along the recorded edges;
 *              the rest is white (the Sigma-test: a white member's count is
 *              explained by edges from white members).
 *  6. delta    the white subgraph is split into connected components, and
 *              each component passes the Delta-test on its own (so one
 *              busy object does not starve unrelated garbage): every
 *              member's shared word must still equal what step 4 read, and
 *              the CAS that checks it sets DYING in the same step, so no
 *              later try-increment can succeed.  Any count change, merge
 *              (DIRTY first, hole 5), exchange barrier or new reference
 *              changes the word.  A failing component is un-DYINGed and
 *              its members go back to the candidates.
 *  7. free     for a passing component: every member's finalizer runs once
 *              (FINALIZED) with the whole component intact; if any ran, the
 *              words are checked again (a finalizer that stored a member somewhere
 *              changed a count: the component is resurrected, kept, and
 *              not finalized again); then every slot is cleared, references
 *              leaving the component are dropped, and each member is
 *              disposed; its memory goes back at once unless it was ever
 *              overwritten out of a slot (then after a grace period:
 *              object.c explains why no other thread can be reading it).
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
 * Liveness: a garbage cycle is not touched by anyone, so once every
 * candidate that names it is examined after mutators stopped touching it,
 * its component passes; failed components are re-buffered, never dropped;
 * the Delta-test is per component, so live neighbours do not hold it back.
 * A collection that runs out of memory before step 7 frees nothing,
 * restores every flag and pin, and re-buffers its roots without
 * allocating; later, no memory only means no batching, or SAVEALL garbage
 * listed by the next collection (PITFALLS 28; see struct collection).
 * Cost: the subgraph reachable from the candidates, not the heap; frozen
 * objects bound it (rcgc_freeze).  A long-lived hub that keeps becoming a
 * candidate still costs its reachable subgraph each time (PITFALLS 25 is
 * only mitigated by freezing).
 *
 * Finalizers and callbacks run on the collecting thread outside every lock;
 * they may call any rcgc function; rcgc_collect from inside returns 0.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* ---- the registry of tracked objects ------------------------------------- */

#define NSHARDS 16

static struct shard {
    pthread_mutex_t lock;
    rcgc__gclink    head;          /* circular, sentinel */
} __attribute__((aligned(64))) shards[NSHARDS];
static bool shards_ready;          /* set once, at the first rcgc_init */

rcgc__u64 rcgc__freeze_count;

void rcgc__registry_insert(rcgc__header *h, uintptr_t tid)
{
    rcgc__gclink *g = rcgc__gclink_of(h);
    struct shard *sh = &shards[(tid >> RCGC__TID_SHIFT) % NSHARDS];

    g->index = 0;
    g->shard = (uint32_t)(sh - shards);
    pthread_mutex_lock(&sh->lock);
    g->next = sh->head.next;
    g->prev = &sh->head;
    sh->head.next->prev = g;
    sh->head.next = g;
    pthread_mutex_unlock(&sh->lock);
}

/* Unlinks many objects, keeping a shard's lock across runs of objects of
   that shard (objects made by one thread share one), for at most
   BATCH_HOLD unlinks, so an allocating thread never waits long. */
#define BATCH_HOLD 256

static void registry_remove_batch(rcgc__header **hs, size_t n)
{
    struct shard *held = NULL;
    size_t run = 0;

    for (size_t k = 0; k < n; k++) {
        rcgc__gclink *g = rcgc__gclink_of(hs[k]);
        struct shard *sh = &shards[g->shard];

        if (sh != held || ++run == BATCH_HOLD) {
            if (held != NULL)
                pthread_mutex_unlock(&held->lock);
            held = sh;
            run = 0;
            pthread_mutex_lock(&held->lock);
        }
        g->prev->next = g->next;
        g->next->prev = g->prev;
        if (rcgc__u32_load_relaxed(&hs[k]->gc_bits) & RCGC__GC_FROZEN)
            rcgc__u64_fetch_add_relaxed(&rcgc__freeze_count, (uint64_t)-1);
    }
    if (held != NULL)
        pthread_mutex_unlock(&held->lock);
}

void rcgc__registry_remove(rcgc__header *h)
{
    rcgc__gclink *g = rcgc__gclink_of(h);
    struct shard *sh = &shards[g->shard];
    bool frozen;

    pthread_mutex_lock(&sh->lock);
    g->prev->next = g->next;
    g->next->prev = g->prev;
    frozen = rcgc__u32_load_relaxed(&h->gc_bits) & RCGC__GC_FROZEN;
    if (frozen)
        rcgc__u64_fetch_add_relaxed(&rcgc__freeze_count, (uint64_t)-1);
    pthread_mutex_unlock(&sh->lock);
}

/* Every allocation the collector makes goes through here (never a fast
   path), so a test can make them fail (rcgc__test_collector_fail_after):
   allocations left before they fail; INTPTR_MAX: never. */
static rcgc__sword alloc_budget = { INTPTR_MAX };

static void *gc_realloc(void *p, size_t size)
{
    /* Relaxed: a count, set by a test between collections. */
    if (rcgc__sword_fetch_add_relaxed(&alloc_budget, -1) <= 0)
        return NULL;
    return realloc(p, size);
}

size_t rcgc__test_collector_fail_after(long n)
{
    intptr_t left = rcgc__sword_load_relaxed(&alloc_budget);

    rcgc__sword_store_relaxed(&alloc_budget, n < 0 ? INTPTR_MAX : (intptr_t)n);
    return left < 0 ? (size_t)-left : 0;       /* failures since the last call */
}

/* Growable arrays; a failed push sets the collection's oom flag. */
typedef struct vec {
    void  *items;
    size_t n, cap, size;
} vec;

static bool vec_reserve(vec *v, size_t more)
{
    size_t cap;
    void *p;

    if (v->n + more <= v->cap)
        return true;
    cap = v->cap ? v->cap * 2 : 256;
    while (cap < v->n + more)
        cap *= 2;
    p = gc_realloc(v->items, cap * v->size);
    if (p == NULL)
        return false;
    v->items = p;
    v->cap = cap;
    return true;
}

static void vec_free(vec *v)
{
    free(v->items);
    v->items = NULL;
    v->n = v->cap = 0;
}

#define VEC(type) { NULL, 0, 0, sizeof(type) }
#define VEC_AT(v, type, i) (((type *)(v)->items)[i])

/* Pins every live tracked object of the registry (a snapshot); the caller
   calls fn on them outside every lock, then unpins.  (Introspection is
   safe beside collections: PITFALLS 27.) */
static bool snapshot_objects(vec *out)
{
    for (int i = 0; i < NSHARDS; i++) {
        struct shard *sh = &shards[i];

        pthread_mutex_lock(&sh->lock);
        for (rcgc__gclink *g = sh->head.next; g != &sh->head; g = g->next) {
            rcgc__header *h = rcgc__gclink_header(g);
            if (!vec_reserve(out, 1)) {
                pthread_mutex_unlock(&sh->lock);
                return false;
            }
            /* In the list under its lock, so the memory is there. */
            if (rcgc__try_incref(h))
                VEC_AT(out, rcgc__header *, out->n++) = h;
        }
        pthread_mutex_unlock(&sh->lock);
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

static struct {
    pthread_mutex_t lock;          /* protects everything below */
    pthread_cond_t  wake;          /* the collector thread waits for work */
    pthread_cond_t  done;          /* rcgc_collect callers wait for their collection */
    rcgc__roots    *pending;       /* chunks handed over */
    size_t          npending;      /* candidates in them */
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
    uint64_t        pause_max_ns, collect_ns_last, collect_ns_total;
    callback       *callbacks;
    size_t          ncallbacks;
    void          **garbage;       /* SAVEALL: each entry holds a reference */
    size_t          ngarbage, garbage_cap;
} gc = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
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
   BUFFERED bit is set): the next collection's first candidates.
   Protected by collect_mutex. */
static rcgc__roots *retry;
static size_t       retried;       /* members the last collection put back */

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool should_collect_locked(void)
{
    return gc.has_thread && gc.enabled && gc.npending > 0 &&
           gc.npending >= gc.threshold_eff;
}

/* Called with the handing thread's roots_lock held, from taking the chunk
   until it is in the pending list: a full collection steals chunks from
   the threads before it takes the pending list, so a chunk is always in
   one of the two places it looks (lock order: roots_lock, gc.lock). */
static void hand_over(rcgc__roots *chunk)
{
    uint64_t t0 = now_ns(), waited;

    pthread_mutex_lock(&gc.lock);
    /* The only time a mutator waits on the collector: this lock. */
    waited = now_ns() - t0;
    if (waited > gc.pause_max_ns)
        gc.pause_max_ns = waited;
    chunk->next = gc.pending;
    gc.pending = chunk;
    gc.npending += chunk->n;
    if (should_collect_locked())
        pthread_cond_signal(&gc.wake);
    pthread_mutex_unlock(&gc.lock);
}

void rcgc__buffer_root(void *obj)
{
    rcgc__thread *th = rcgc__tls_thread;
    rcgc__header *h = rcgc__hdr(obj);
    rcgc__roots *full = NULL;

    if (th == NULL || th->no_buffer)
        return;
    if (rcgc__u32_fetch_or_relaxed(&h->gc_bits, RCGC__GC_BUFFERED) & RCGC__GC_BUFFERED)
        return;
    rcgc__word_fetch_and_relaxed(&h->owner, ~RCGC__OWNER_UNBUFFERED);
    pthread_mutex_lock(&th->roots_lock);
    if (th->roots == NULL) {
        th->roots = malloc(sizeof(*th->roots));
        if (th->roots == NULL) {
            /* No memory for a chunk: the object stays unbuffered and
               becomes a candidate at its next decrement (PITFALLS 28). */
            pthread_mutex_unlock(&th->roots_lock);
            rcgc__word_fetch_or_relaxed(&h->owner, RCGC__OWNER_UNBUFFERED);
            rcgc__u32_fetch_and_relaxed(&h->gc_bits, ~RCGC__GC_BUFFERED);
            return;
        }
        th->roots->n = 0;
    }
    th->roots->items[th->roots->n++] = h;
    if (th->roots->n == RCGC__ROOTS_CHUNK) {
        full = th->roots;
        th->roots = NULL;
        hand_over(full);
    }
    pthread_mutex_unlock(&th->roots_lock);
}

static rcgc__roots *take_chunk(rcgc__thread *th)
{
    rcgc__roots *c = NULL;

    pthread_mutex_lock(&th->roots_lock);
    if (th->roots != NULL && th->roots->n > 0) {
        c = th->roots;
        th->roots = NULL;
    }
    pthread_mutex_unlock(&th->roots_lock);
    return c;
}

void rcgc__roots_flush(rcgc__thread *th)
{
    pthread_mutex_lock(&th->roots_lock);
    if (th->roots != NULL && th->roots->n > 0) {
        hand_over(th->roots);
        th->roots = NULL;
    }
    pthread_mutex_unlock(&th->roots_lock);
}

/* ---- one collection ----------------------------------------------------- */

enum { WHITE, BLACK };
enum { FATE_LIVE, FATE_RETRY, FATE_FREED, FATE_SAVED };

typedef struct member {
    rcgc__header *h;
    intptr_t      shared;          /* the word read in step 4 */
    intptr_t      crc;             /* cyclic count */
    size_t        edges, nedges;   /* out-edges: a range of the edge table */
    size_t        parent;          /* union-find over white edges */
    uint8_t       color, fate;
    bool          root;            /* taken from a root buffer */
} member;

/*
 * Out of memory (PITFALLS 28).  An allocation that fails sets oom; the
 * collection then frees nothing, unflags and unpins every member, and puts
 * only its roots back among the candidates (every other member was reached
 * from them); candidates it had no room to take stay in their chunks,
 * still BUFFERED.  Putting back never allocates: the chunks the candidates
 * came in stay with the collection, room for every root, and before step 7
 * it reserves room for every member that may yet go back (or, failing,
 * un-DYINGs its garbage and takes the out-of-memory way).
 */
typedef struct collection {
    rcgc__thread *th;
    vec members, edges, stack, extra;
    rcgc__roots *chunks;           /* the candidates' chunks, and room reserved */
    rcgc__roots *fill;             /* where rebuffer looks for room first */
    size_t candidates, delta_failures, sigma_failures;
    size_t collected, uncollectable;
    unsigned debug;
    bool oom;
} collection;

static member *member_at(collection *c, size_t i)
{
    return &VEC_AT(&c->members, member, i);
}

static size_t index_of(rcgc__header *h)
{
    return rcgc__gclink_of(h)->index;      /* 1 + member index, 0: none */
}

static bool push_index(collection *c, vec *v, size_t i)
{
    if (!vec_reserve(v, 1)) {
        c->oom = true;
        return false;
    }
    VEC_AT(v, size_t, v->n++) = i;
    return true;
}

/* Takes over the caller's pin on h, flags h, queues it for marking. */
static void add_member(collection *c, rcgc__header *h, bool root)
{
    member m = { .h = h, .root = root };
    intptr_t s;

    if (!vec_reserve(&c->members, 1) || !vec_reserve(&c->stack, 1)) {
        c->oom = true;
        unpin(h);
        return;
    }
    VEC_AT(&c->members, member, c->members.n) = m;
    rcgc__gclink_of(h)->index = ++c->members.n;
    rcgc__word_fetch_or_relaxed(&h->owner, RCGC__OWNER_SCAN);
    s = rcgc__sword_load_relaxed(&h->ref_shared);
    while (!rcgc__sword_cas_acq_rel(&h->ref_shared, &s,
                                    (s | RCGC__SHARED_SCAN) & ~RCGC__SHARED_DIRTY))
        ;
    VEC_AT(&c->stack, size_t, c->stack.n++) = c->members.n - 1;
}

static void mark_visit(rcgc_ref *slot, void *ctx)
{
    collection *c = ctx;
    void *obj = rcgc__slot_load_acquire(slot);
    rcgc__header *h;
    uint32_t bits;

    if (obj == NULL || c->oom)
        return;
    h = rcgc__hdr(obj);
    bits = rcgc__u32_load_relaxed(&h->gc_bits);
    if ((bits & (RCGC__GC_TRACKED | RCGC__GC_FROZEN)) != RCGC__GC_TRACKED ||
        index_of(h) != 0)
        return;
    /* We are online: the object's memory stays while we try. */
    if (rcgc__try_incref(h))
        add_member(c, h, false);
}

static void edge_visit(rcgc_ref *slot, void *ctx)
{
    collection *c = ctx;
    void *obj = rcgc__slot_load_acquire(slot);
    size_t j;

    if (obj == NULL)
        return;
    j = (rcgc__u32_load_relaxed(&rcgc__hdr(obj)->gc_bits) & RCGC__GC_TRACKED)
            ? index_of(rcgc__hdr(obj)) : 0;
    if (j != 0)
        push_index(c, &c->edges, j - 1);
}

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
        return;
    rcgc_decref(obj);
}

static void debug_line(const char *what, rcgc__header *h)
{
    fprintf(stderr, "rcgc: %s %s %p\n", what,
            h->type->name ? h->type->name : "?", rcgc__body(h));
}

/* Empties the chunks into the member table; the chunks stay with the
   collection (c->chunks), holding the entries it had no room for. */
static void take_candidates(collection *c, rcgc__roots *chunks)
{
    while (chunks != NULL) {
        rcgc__roots *chunk = chunks;
        size_t kept = 0;

        chunks = chunk->next;
        for (size_t i = 0; i < chunk->n; i++) {
            rcgc__header *h = chunk->items[i];
            uint32_t bits;

            c->candidates++;
            if (!c->oom && (!vec_reserve(&c->members, 1) || !vec_reserve(&c->stack, 1)))
                c->oom = true;
            if (c->oom) {
                /* No room to examine it: the entry stays, BUFFERED, for
                   the next collection (a zombie's too: its consumer frees). */
                chunk->items[kept++] = h;
                continue;
            }
            if (!rcgc__try_incref(h)) {
                /* Dead: the entry goes; a zombie's memory with it.
                   acq_rel pairs with rcgc__dispose. */
                bits = rcgc__u32_fetch_and_acq_rel(&h->gc_bits, ~RCGC__GC_BUFFERED);
                if (bits & RCGC__GC_ZOMBIE)
                    rcgc__free_memory(c->th, h);
                continue;
            }
            /* UNBUFFERED before BUFFERED goes: an owner decrement between
               the two buffers nothing, but this collection examines the
               object after it anyway (its counts are read after the grace
               period, or its word changed). */
            rcgc__word_fetch_or_relaxed(&h->owner, RCGC__OWNER_UNBUFFERED);
            rcgc__u32_fetch_and_acq_rel(&h->gc_bits, ~RCGC__GC_BUFFERED);
            bits = rcgc__u32_load_relaxed(&h->gc_bits);
            if ((bits & RCGC__GC_FROZEN) || index_of(h) != 0)
                unpin(h);
            else
                add_member(c, h, true);
        }
        chunk->n = kept;
        chunk->next = c->chunks;
        c->chunks = chunk;
    }
}

/* Room in c->chunks for n more entries. */
static bool reserve_room(collection *c, size_t n)
{
    size_t room = 0;

    for (rcgc__roots *k = c->chunks; k != NULL; k = k->next)
        room += RCGC__ROOTS_CHUNK - k->n;
    while (room < n) {
        rcgc__roots *k = gc_realloc(NULL, sizeof(*k));
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
    if (rcgc__u32_fetch_or_relaxed(&h->gc_bits, RCGC__GC_BUFFERED) & RCGC__GC_BUFFERED)
        return;
    rcgc__word_fetch_and_relaxed(&h->owner, ~RCGC__OWNER_UNBUFFERED);
    while (c->fill != NULL && c->fill->n == RCGC__ROOTS_CHUNK)
        c->fill = c->fill->next;
    rcgc_assert_internal(c->fill != NULL);
    c->fill->items[c->fill->n++] = h;
}

/* The chunks holding entries become the next collection's first
   candidates; the empty ones go. */
static void keep_chunks(collection *c)
{
    while (c->chunks != NULL) {
        rcgc__roots *k = c->chunks;

        c->chunks = k->next;
        if (k->n == 0) {
            free(k);
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

/* Steps 4-8 for members [0, n). */
static void examine(collection *c)
{
    size_t n = c->members.n;

    /* 4. count: one reading of each member's counts and slots. */
    for (size_t i = 0; i < n && !c->oom; i++) {
        member *m = member_at(c, i);
        rcgc__header *h = m->h;
        intptr_t s = rcgc__sword_load_acquire(&h->ref_shared);   /* pairs with the
                                   acq_rel count RMWs and merges' release of local */
        uint32_t local = rcgc__u32_load_acquire(&h->ref_local);

        m->shared = s;
        m->parent = i;
        if (s & (RCGC__SHARED_IMMORTAL | RCGC__SHARED_DYING)) {
            m->crc = INTPTR_MAX / 2;
        } else if (s & (RCGC__SHARED_QUEUED | RCGC__SHARED_DIRTY)) {
            /* Touched since flagged, or a queue entry pending at a
               safepoint: not decided now; examined again next time. */
            m->crc = INTPTR_MAX / 2;
            m->fate = FATE_RETRY;
        }
        else
            m->crc = (s >> RCGC__SHARED_SHIFT) +
                     ((s & RCGC__SHARED_MERGED) ? 0 : (intptr_t)local) - 1;
        m->edges = c->edges.n;
        h->type->traverse(rcgc__body(h), edge_visit, c);
        member_at(c, i)->nedges = c->edges.n - member_at(c, i)->edges;
    }
    if (c->oom)
        return;
    for (size_t e = 0; e < c->edges.n; e++)
        member_at(c, VEC_AT(&c->edges, size_t, e))->crc--;

    /* 5. scan: black spreads from the externally referenced. */
    c->stack.n = 0;
    for (size_t i = 0; i < n; i++) {
        member *m = member_at(c, i);
        m->color = m->crc > 0 ? BLACK : WHITE;
        if (m->color == BLACK && !push_index(c, &c->stack, i))
            return;
    }
    while (c->stack.n > 0) {
        member *m = member_at(c, VEC_AT(&c->stack, size_t, --c->stack.n));
        for (size_t e = m->edges; e < m->edges + m->nedges; e++) {
            size_t j = VEC_AT(&c->edges, size_t, e);
            if (member_at(c, j)->color == WHITE) {
                member_at(c, j)->color = BLACK;
                if (!push_index(c, &c->stack, j))
                    return;
            }
        }
    }

    /* 6. delta, per connected component of the white subgraph. */
    for (size_t i = 0; i < n; i++) {
        member *m = member_at(c, i);
        if (m->color != WHITE)
            continue;
        for (size_t e = m->edges; e < m->edges + m->nedges; e++) {
            size_t j = VEC_AT(&c->edges, size_t, e);
            if (member_at(c, j)->color == WHITE) {
                size_t a = find(c, i), b = find(c, j);
                if (a != b)
                    member_at(c, a > b ? a : b)->parent = a > b ? b : a;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        member *m = member_at(c, i);
        if (m->color != WHITE)
            continue;
        m->fate = FATE_FREED;      /* until its component fails */
        if (m->crc < 0)
            c->sigma_failures++;   /* counts moved under us: the Delta-test decides */
    }
    for (size_t i = 0; i < n; i++) {
        member *m = member_at(c, i);
        if (m->color == WHITE && m->fate == FATE_FREED &&
            !rcgc__sword_cas_acq_rel(&m->h->ref_shared, &(intptr_t){ m->shared },
                                     m->shared | RCGC__SHARED_DYING)) {
            size_t root = find(c, i);
            c->delta_failures++;
            for (size_t k = 0; k < n; k++) {
                member *o = member_at(c, k);
                if (o->color == WHITE && find(c, k) == root) {
                    if (o->fate == FATE_FREED && k < i)
                        rcgc__sword_fetch_and_relaxed(&o->h->ref_shared,
                                                      ~RCGC__SHARED_DYING);
                    o->fate = FATE_RETRY;
                }
            }
        }
    }

    /* A component that passed is a consistent snapshot: a member with
       more internal edges than references means its type's traverse
       reports an edge twice or one that holds no reference (PITFALLS 16;
       a missing edge only leaks, and cannot be seen). */
    for (size_t i = 0; i < n; i++) {
        member *m = member_at(c, i);
        if (m->fate != FATE_FREED || m->crc >= 0)
            continue;
        if (RCGC_DEBUG)
            rcgc__fatal("rcgc_collect", "traverse reports more references than the "
                        "object holds", rcgc__body(m->h));
        /* Release builds keep the component rather than free what may be
           live: it stays uncollectable. */
        size_t root = find(c, i);
        for (size_t k = 0; k < n; k++) {
            member *o = member_at(c, k);
            if (o->fate == FATE_FREED && find(c, k) == root) {
                rcgc__sword_fetch_and_relaxed(&o->h->ref_shared, ~RCGC__SHARED_DYING);
                o->fate = FATE_LIVE;
                c->uncollectable++;
            }
        }
    }

    /* Room to put back the members that failed, and the garbage that a
       finalizer may resurrect or SAVEALL may fail to list; else nothing
       is freed this time. */
    size_t back = 0, freed = 0;
    bool may_keep = c->debug & RCGC_DEBUG_SAVEALL;
    for (size_t i = 0; i < n; i++) {
        member *m = member_at(c, i);
        back += m->fate == FATE_RETRY;
        freed += m->fate == FATE_FREED;
        may_keep |= m->fate == FATE_FREED && m->h->type->finalize != NULL;
    }
    if (!reserve_room(c, back + (may_keep ? freed : 0))) {
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

    /* 7. free (or keep, with SAVEALL) the components that passed. */
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
    bool finalized = false;
    for (size_t i = 0; i < n; i++) {
        member *m = member_at(c, i);
        const rcgc_type *type = m->h->type;
        if (m->fate != FATE_FREED || type->finalize == NULL ||
            (rcgc__u32_fetch_or_relaxed(&m->h->gc_bits, RCGC__GC_FINALIZED) &
             RCGC__GC_FINALIZED))
            continue;
        type->finalize(rcgc__body(m->h));
        finalized = true;
    }
    /* Only a finalizer can touch garbage: no finalizer, no re-check. */
    for (size_t i = 0; finalized && i < n; i++) {
        member *m = member_at(c, i);
        if (m->fate == FATE_FREED &&
            rcgc__sword_load_acquire(&m->h->ref_shared) != (m->shared | RCGC__SHARED_DYING)) {
            /* A finalizer resurrected (or touched) the component: keep all
               of it; its finalizers have run and will not run again. */
            size_t root = find(c, i);
            for (size_t k = 0; k < n; k++) {
                member *o = member_at(c, k);
                if (o->fate == FATE_FREED && find(c, k) == root) {
                    rcgc__sword_fetch_and_relaxed(&o->h->ref_shared, ~RCGC__SHARED_DYING);
                    o->fate = FATE_RETRY;
                    c->uncollectable++;
                    if (c->debug & RCGC_DEBUG_UNCOLLECTABLE)
                        debug_line("uncollectable", o->h);
                }
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        member *m = member_at(c, i);
        release_ctx r = { c, 0 };
        if (m->fate != FATE_FREED)
            continue;
        r.comp = find(c, i);
        m->h->type->traverse(rcgc__body(m->h), release_visit, &r);
    }
    c->extra.n = 0;
    for (size_t i = 0; i < n; i++) {
        member *m = member_at(c, i);
        if (m->fate != FATE_FREED)
            continue;
        if (!vec_reserve(&c->extra, 1)) {
            rcgc__gclink_of(m->h)->index = 0;       /* no room to batch */
            rcgc__dispose(c->th, m->h);
            c->collected++;
            continue;
        }
        VEC_AT(&c->extra, rcgc__header *, c->extra.n++) = m->h;
    }
    registry_remove_batch(&VEC_AT(&c->extra, rcgc__header *, 0), c->extra.n);
    for (size_t k = 0; k < c->extra.n; k++) {
        rcgc__header *h = VEC_AT(&c->extra, rcgc__header *, k);
        rcgc__gclink_of(h)->index = 0;
        rcgc__dispose_unlinked(c->th, h);
        c->collected++;
    }
    c->extra.n = 0;
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
static void unflag_all(collection *c)
{
    size_t saved = 0;

    for (size_t i = 0; i < c->members.n; i++) {
        member *m = member_at(c, i);
        rcgc__header *h = m->h;

        if (m->fate == FATE_FREED)
            continue;
        rcgc__gclink_of(h)->index = 0;
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
        if (c->oom ? m->root : m->fate == FATE_RETRY) {
            rebuffer(c, m->h);
            retried++;
        }
        unpin(m->h);
    }
}

/* One collection; the caller holds collect_mutex and is attached. */
static size_t collect_once(bool full)
{
    collection c = { .th = rcgc__tls_thread };
    rcgc__roots *chunks, *tail;
    rcgc_collect_info info = { 0, 0 };
    uint64_t t0 = now_ns(), dt;
    rcgc__thread *t;

    c.members = (vec)VEC(member);
    c.edges = (vec)VEC(size_t);
    c.stack = (vec)VEC(size_t);
    c.extra = (vec)VEC(rcgc__header *);

    chunks = NULL;
    if (full) {
        /* rcgc_collect reclaims what any thread buffered: take their
           partial chunks too, before the pending list (hand_over).  Lock
           order: rcgc__rt.lock, roots_lock. */
        pthread_mutex_lock(&rcgc__rt.lock);
        for (t = rcgc__rt.threads; t != NULL; t = t->all_next) {
            rcgc__roots *taken = take_chunk(t);
            if (taken != NULL) {
                taken->next = chunks;
                chunks = taken;
            }
        }
        pthread_mutex_unlock(&rcgc__rt.lock);
    }
    pthread_mutex_lock(&gc.lock);
    if (gc.pending != NULL) {
        for (tail = gc.pending; tail->next != NULL; tail = tail->next)
            ;
        tail->next = chunks;
        chunks = gc.pending;
    }
    gc.pending = NULL;
    gc.npending = 0;
    c.debug = gc.debug;
    pthread_mutex_unlock(&gc.lock);
    if (retry != NULL) {
        for (tail = retry; tail->next != NULL; tail = tail->next)
            ;
        tail->next = chunks;
        chunks = retry;
        retry = NULL;
    }

    run_callbacks(RCGC_PHASE_START, &info);
    c.th->in_collection = true;

    retried = 0;
    take_candidates(&c, chunks);                         /* 1. roots */
    while (c.stack.n > 0 && !c.oom) {                    /* 2. mark */
        member *m = member_at(&c, VEC_AT(&c.stack, size_t, --c.stack.n));
        m->h->type->traverse(rcgc__body(m->h), mark_visit, &c);
    }
    if (c.members.n > 0 && !c.oom) {
        rcgc__epoch_synchronize();                       /* 3. grace */
        examine(&c);                                     /* 4-7 */
    }
    unflag_all(&c);                                      /* 8 */
    keep_chunks(&c);
    rcgc__reclaim_flush(c.th);

    c.th->in_collection = false;
    dt = now_ns() - t0;

    pthread_mutex_lock(&gc.lock);
    gc.collections++;
    gc.collected += c.collected;
    gc.uncollectable += c.uncollectable;
    gc.collect_ns_last = dt;
    gc.collect_ns_total += dt;
    /* Adapt: a run that frees little waits for more candidates next time,
       one that frees much comes sooner (PHP, Nim); amortized work per
       candidate stays bounded (PITFALLS 23). */
    if (c.members.n > 0 && c.collected * 4 < c.members.n) {
        if (gc.threshold_eff < gc.threshold * 64)
            gc.threshold_eff *= 2;
    } else if (c.collected * 2 > c.members.n && gc.threshold_eff > gc.threshold) {
        gc.threshold_eff /= 2;
    }
    pthread_mutex_unlock(&gc.lock);

    if (c.debug & RCGC_DEBUG_STATS)
        fprintf(stderr, "rcgc: collection: candidates=%zu examined=%zu collected=%zu "
                        "uncollectable=%zu delta_failures=%zu sigma_failures=%zu%s "
                        "duration=%.3fms\n",
                c.candidates, c.members.n, c.collected, c.uncollectable,
                c.delta_failures, c.sigma_failures, c.oom ? " out_of_memory" : "",
                (double)dt / 1e6);
    info.collected = c.collected;
    info.uncollectable = c.uncollectable;
    run_callbacks(RCGC_PHASE_STOP, &info);
    vec_free(&c.members);
    vec_free(&c.edges);
    vec_free(&c.stack);
    vec_free(&c.extra);
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
    n = collect_once(true);
    for (int pass = 1; pass < FULL_PASSES && retried > 0; pass++)
        n += collect_once(true);
    pthread_mutex_unlock(&collect_mutex);
    return n;
}

/* ---- the collector thread -------------------------------------------------- */

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
        while (!gc.stop && gc.requested == gc.completed && !should_collect_locked())
            pthread_cond_wait(&gc.wake, &gc.lock);
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
            collect_once(false);
            pthread_mutex_unlock(&collect_mutex);
        }
        rcgc_safepoint();
    }
    pthread_mutex_lock(&gc.lock);
    gc.thread_attached = false;
    pthread_mutex_unlock(&gc.lock);
    rcgc_thread_detach();
    return NULL;
}

int rcgc__gc_start(const rcgc_options *opts)
{
    int err = 0;

    if (!shards_ready) {
        for (int i = 0; i < NSHARDS; i++) {
            pthread_mutex_init(&shards[i].lock, NULL);
            shards[i].head.next = shards[i].head.prev = &shards[i].head;
        }
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
    gc.pause_max_ns = gc.collect_ns_last = gc.collect_ns_total = 0;
    if (gc.has_thread) {
        err = pthread_create(&gc.thread, NULL, collector_main, NULL);
        if (err != 0)
            gc.has_thread = false;
        while (err == 0 && !gc.thread_attached)
            pthread_cond_wait(&gc.done, &gc.lock);
    }
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
    pthread_cond_signal(&gc.wake);
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
    if ((debug & RCGC_DEBUG_LEAK) == RCGC_DEBUG_LEAK && snapshot_objects(&objs)) {
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
}

void rcgc__gc_fill_stats(rcgc_stats *out)
{
    size_t buffered = 0;

    pthread_mutex_lock(&rcgc__rt.lock);
    for (rcgc__thread *t = rcgc__rt.threads; t != NULL; t = t->all_next) {
        pthread_mutex_lock(&t->roots_lock);
        buffered += t->roots ? t->roots->n : 0;
        pthread_mutex_unlock(&t->roots_lock);
    }
    pthread_mutex_unlock(&rcgc__rt.lock);
    pthread_mutex_lock(&gc.lock);
    out->collections = gc.collections;
    out->collected = gc.collected;
    out->uncollectable = gc.uncollectable;
    out->candidates = gc.npending + buffered;
    out->pause_max_ns = gc.pause_max_ns;
    out->collect_ns_last = gc.collect_ns_last;
    out->collect_ns_total = gc.collect_ns_total;
    pthread_mutex_unlock(&gc.lock);
}

/* ---- the gc module ------------------------------------------------------- */

size_t rcgc_collect(void)
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
        return collect_full();
    }
    /* Our own chunk goes first, then we wait, offline, for a collection
       that starts after our request (served in order: a thread calling in a
       loop never starves others, gh-151518). */
    rcgc_blocking_begin();
    pthread_mutex_lock(&gc.lock);
    mine = ++gc.requested;
    pthread_cond_signal(&gc.wake);
    while (gc.completed < mine && gc.has_thread)
        pthread_cond_wait(&gc.done, &gc.lock);
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

void rcgc_enable(void)
{
    pthread_mutex_lock(&gc.lock);
    gc.enabled = true;
    if (should_collect_locked())
        pthread_cond_signal(&gc.wake);
    pthread_mutex_unlock(&gc.lock);
}

void rcgc_disable(void)
{
    pthread_mutex_lock(&gc.lock);
    gc.enabled = false;
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
    if (should_collect_locked())
        pthread_cond_signal(&gc.wake);
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
    snapshot_objects(&objs);
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
    snapshot_objects(&objs);
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

        pthread_mutex_lock(&sh->lock);
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
        pthread_mutex_unlock(&sh->lock);
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
