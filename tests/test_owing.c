/*
 * test_owing.c: an OWING word (refcount.c, "Decrements by fetch_sub"): a
 * non-owner's decrement by fetch_sub found the shared count at zero, so the
 * word is below zero with no queue entry until the same thread's CAS makes
 * one.  The main thread A owns every object; for each case it plays the
 * debtor by hand: the fetch_sub that the inline rcgc_decref would make,
 * then, later, rcgc__decref_sub_done with the word it replaced, which is
 * what the inline path calls next.  In between, other threads meet the
 * word, and none may wait for A (rule 2: an increment makes the entry
 * itself, as a second debtor would; A could be preempted for long, or gone
 * in the child of a fork):
 *
 *   inc      thread B's rcgc_incref (a fetch_add) lifts the word to 0: it
 *            returns, holding its new reference, with the entry made (the
 *            word QUEUED, the object queued to A once and DEFERRED: rule
 *            1); A's own CAS then finds QUEUED and stands; the counts add
 *            up, and A's merge frees the object once B lets go;
 *   load     B's rcgc_ref_load (a try-increment by CAS) returns the object,
 *            its reference and the entry's taken in one CAS;
 *   collect  thread C's rcgc_collect meets the OWING member of a garbage
 *            self-cycle: its pin takes its reference and makes the entry
 *            in one CAS, and the member, QUEUED, is examined again (rule
 *            3); once the entry is merged, the cycle is collected, once;
 *   count    a collection reads a member's word after C's drop has left it
 *            OWING (a test hook between the grace period and step 4, on A's
 *            own collection): the member counts as referenced from outside
 *            (rule 3), though its count, read as it is, would make its
 *            self-cycle garbage;
 *   merging  the debtor's entry meets an owner word that the owner's merge
 *            has cleared (B, having lifted the debt, found the debtor's
 *            CAS made and handed A its references): the entry's reference
 *            goes by a decrement, and A's merge alone decides.
 *
 * A hidden debt (an increment that neither waits nor makes the entry)
 * fails the QUEUED checks; an increment that waits for A fails them on
 * the timeout (RETURN_MS), after which A makes its CAS.  A waits online,
 * as a debtor is until its CAS (its read section keeps a queued object's
 * memory: rule 1); offline it would have its queue merged on its behalf.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

#define RETURN_MS 5000           /* a busy machine may be slow to run B */

static const rcgc_options manual = { .manual = 1 };

typedef struct node { rcgc_ref next; int id; } node;

static unsigned finalized;   /* atomic */

static void count_finalize(void *obj)
{
    (void)obj;
    __atomic_fetch_add(&finalized, 1, __ATOMIC_RELAXED);
}

static void node_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((node *)obj)->next, ctx);
}

static const rcgc_type cell_type = { "cell", sizeof(int), NULL, count_finalize, 0 };
static const rcgc_type node_type = { "node", sizeof(node), node_traverse, count_finalize, 0 };

static unsigned n_finalized(void) { return __atomic_load_n(&finalized, __ATOMIC_RELAXED); }

/* ---- the other thread, one request at a time ---------------------------- */

enum { REQ_NONE, REQ_INCREF, REQ_DECREF2, REQ_LOAD, REQ_DECREF_LOADED, REQ_COLLECT, REQ_EXIT };

typedef struct peer {
    pthread_t thread;
    int       req;        /* atomic: what to do next */
    int       done;       /* atomic: requests finished */
    void     *obj;        /* REQ_INCREF, REQ_DECREF2 */
    void     *loaded;     /* REQ_LOAD's result */
    size_t    collected;  /* REQ_COLLECT's result */
} peer;

static rcgc_ref global;

static void *peer_main(void *arg)
{
    peer *p = arg;
    int seen = 0;

    if (rcgc_thread_attach() != 0)
        abort();
    for (;;) {
        int req;

        /* Wait offline: A's collections and merges never wait for us. */
        rcgc_blocking_begin();
        while ((req = __atomic_load_n(&p->req, __ATOMIC_ACQUIRE)) == REQ_NONE)
            sched_yield();
        rcgc_blocking_end();
        __atomic_store_n(&p->req, REQ_NONE, __ATOMIC_RELAXED);
        switch (req) {
        case REQ_INCREF:        rcgc_incref(p->obj); break;
        case REQ_DECREF2:       rcgc_decref(p->obj); rcgc_decref(p->obj); break;
        case REQ_LOAD:          p->loaded = rcgc_ref_load(&global); break;
        case REQ_DECREF_LOADED: rcgc_decref(p->loaded); break;
        case REQ_COLLECT:       p->collected = rcgc_collect(); break;
        default:                break;
        }
        __atomic_store_n(&p->done, ++seen, __ATOMIC_RELEASE);
        if (req == REQ_EXIT)
            break;
    }
    rcgc_thread_detach();
    return NULL;
}

static int peer_done(peer *p) { return __atomic_load_n(&p->done, __ATOMIC_ACQUIRE); }

static void peer_ask(peer *p, int req)
{
    __atomic_store_n(&p->req, req, __ATOMIC_RELEASE);
}

/* Waits offline, so that A's grace periods do not hold p up; but a
   blocking region merges A's queue (thread.c). */
static void peer_wait(peer *p, int done)
{
    rcgc_blocking_begin();
    while (peer_done(p) < done)
        sched_yield();
    rcgc_blocking_end();
}

/* Waits online, A's queue left as it is (p must need no grace period). */
static void peer_wait_online(peer *p, int done)
{
    while (peer_done(p) < done)
        sched_yield();
}

/* Polls cond online for up to RETURN_MS; true if it came true. */
static bool within_return_ms(bool (*cond)(void *, int), void *arg, int n)
{
    struct timespec t0, t, nap = { 0, 100000L };

    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!cond(arg, n)) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000L + (t.tv_nsec - t0.tv_nsec) / 1000000L > RETURN_MS)
            return false;
        nanosleep(&nap, NULL);
    }
    return true;
}

static bool peer_past(void *p, int done) { return peer_done(p) > done; }

/* The debtor's fetch_sub, as the inline rcgc_decref makes it: a tracked
   object not in a root buffer is buffered first. */
static intptr_t debt(void *obj)
{
    if (rcgc__word_load_relaxed(&rcgc__hdr(obj)->owner) & RCGC__OWNER_UNBUFFERED)
        rcgc__buffer_root(obj);
    return __atomic_fetch_sub(&rcgc__hdr(obj)->ref_shared.v, RCGC__SHARED_ONE,
                              __ATOMIC_RELEASE);
}

static intptr_t shared_word(void *obj)
{
    intptr_t shared;

    rcgc__test_raw(obj, NULL, NULL, &shared);
    return shared;
}

static bool is_queued(void *obj, int unused)
{
    (void)unused;
    return shared_word(obj) & RCGC__SHARED_QUEUED;
}

static void case_inc(peer *b)
{
    int *c = rcgc_new(&cell_type);
    intptr_t old, s;
    int done;

    TAP_REQUIRE(c != NULL, "rcgc_new");
    rcgc_incref(c);               /* local 2: one for the debtor, one for B */
    old = debt(c);
    s = shared_word(c);
    ok(rcgc__shared_owes(s), "inc: a fetch_sub from shared count 0 leaves the word OWING (%#lx)",
       (unsigned long)s);
    is_size(rcgc_refcount(c), 1, "inc: the count is already right: local 2 + shared -1");

    /* B queues to A while A waits offline: blocked, A has its queue merged
       on its behalf by the queuer, so A waits online here. */
    b->obj = c;
    done = peer_done(b);
    peer_ask(b, REQ_INCREF);
    (void)within_return_ms(peer_past, b, done);
    ok(peer_done(b) > done, "inc: B's increment returns while A has yet to make the entry");
    s = shared_word(c);
    ok((s & RCGC__SHARED_QUEUED) && (s >> RCGC__SHARED_SHIFT) == 1,
       "inc: B made the entry: QUEUED, shared count -1 + 1 (B) + 1 (the entry's) (%#lx)",
       (unsigned long)s);
    is_size(rcgc__test_queue_length(), 1, "inc: queued to A once");
    ok(rcgc__u32_load_relaxed(&rcgc__hdr(c)->gc_bits) & RCGC__GC_DEFERRED,
       "inc: a queued object's memory waits for a grace period (DEFERRED)");
    is_uint(n_finalized(), 0, "inc: nothing freed");

    rcgc__decref_sub_done(c, old);  /* the debtor's CAS finds QUEUED */
    ok(shared_word(c) == s, "inc: A's late CAS finds the entry made and stands (%#lx)",
       (unsigned long)shared_word(c));
    is_size(rcgc__test_queue_length(), 1, "inc: still queued once");
    is_size(rcgc_refcount(c), 2, "inc: B holds two references");

    peer_ask(b, REQ_DECREF2);
    peer_wait_online(b, done + 2);
    is_uint(n_finalized(), 0, "inc: B's decrements of a queued word free nothing");
    rcgc_safepoint();               /* A merges: 2 + (-1) - 1 = 0 */
    is_uint(n_finalized(), 1, "inc: A's merge frees it, once");
    is_size(rcgc__test_queue_length(), 0, "inc: queue empty");
}

static void case_load(peer *b)
{
    int *c = rcgc_new(&cell_type);
    intptr_t old, s;
    int done;

    TAP_REQUIRE(c != NULL, "rcgc_new");
    __atomic_store_n(&finalized, 0, __ATOMIC_RELAXED);
    rcgc_ref_store(&global, c);   /* local 2: A's (the debtor's) and the slot's */
    old = debt(c);
    done = peer_done(b);
    peer_ask(b, REQ_LOAD);
    (void)within_return_ms(peer_past, b, done);
    ok(peer_done(b) > done && b->loaded == c,
       "load: B's rcgc_ref_load returns the object while A has yet to make the entry");
    s = shared_word(c);
    ok((s & RCGC__SHARED_QUEUED) && (s >> RCGC__SHARED_SHIFT) == 1,
       "load: its CAS took its reference and set QUEUED: -1 + 1 (B) + 1 (the entry's) (%#lx)",
       (unsigned long)s);
    is_size(rcgc__test_queue_length(), 1, "load: queued to A once");

    rcgc__decref_sub_done(c, old);
    ok(shared_word(c) == s, "load: A's late CAS stands");
    is_size(rcgc_refcount(c), 2, "load: the slot's reference and B's");
    peer_ask(b, REQ_DECREF_LOADED);
    peer_wait_online(b, done + 2);
    rcgc_ref_store(&global, NULL);
    is_uint(n_finalized(), 0, "load: alive until A merges its entry");
    rcgc_safepoint();
    is_uint(n_finalized(), 1, "load: A's merge frees it, once");
}

static void case_collect(peer *cp)
{
    node *n = rcgc_new(&node_type);
    intptr_t old, s = 0;
    size_t collected;
    int done;

    TAP_REQUIRE(n != NULL, "rcgc_new");
    __atomic_store_n(&finalized, 0, __ATOMIC_RELAXED);
    rcgc_ref_store(&n->next, n);  /* a self-cycle: local 2 */
    old = debt(n);                /* A's reference goes: garbage, but OWING */
    done = peer_done(cp);
    peer_ask(cp, REQ_COLLECT);
    /* A stays online, as a debtor does until its CAS (rule 1): C's
       collection pins its roots before its grace period, which then waits
       for A. */
    (void)within_return_ms(is_queued, n, 0);
    s = shared_word(n);
    ok((s & RCGC__SHARED_QUEUED) && (s & RCGC__SHARED_SCAN) && (s >> RCGC__SHARED_SHIFT) == 1,
       "collect: C's pin takes its reference and makes the entry, without waiting for A: "
       "-1 + 1 (pin) + 1 (the entry's), QUEUED, SCAN (%#lx)", (unsigned long)s);
    is_uint(n_finalized(), 0, "collect: nothing freed while A has yet to make its CAS");
    rcgc__decref_sub_done(n, old);  /* stands */
    ok(shared_word(n) == s, "collect: A's late CAS stands");

    peer_wait(cp, done + 1);      /* offline: C's grace period goes on */
    /* The member was QUEUED at C's step 4, or merged on A's behalf with
       DIRTY: examined again, and garbage once the entry is merged (in C's
       collection already, or in this one). */
    rcgc_safepoint();
    collected = cp->collected + rcgc_collect();
    is_size(collected, 1, "collect: the self-cycle is collected once its entry is merged");
    is_uint(n_finalized(), 1, "collect: finalized once");
}

/* The hook of case_count: C's drop of its reference, on the collecting
   thread after the round's grace period, just before step 4 reads the
   counts. */
static intptr_t count_old;
static int      count_hooked;

static void drop_before_count(void *obj)
{
    if (count_hooked++ == 0)
        count_old = __atomic_fetch_sub(&rcgc__hdr(obj)->ref_shared.v, RCGC__SHARED_ONE,
                                       __ATOMIC_RELEASE);
}

static void case_count(void)
{
    node *n = rcgc_new(&node_type);
    intptr_t s;

    TAP_REQUIRE(n != NULL, "rcgc_new");
    __atomic_store_n(&finalized, 0, __ATOMIC_RELAXED);
    rcgc_ref_store(&n->next, n);  /* a self-cycle: local 2 */
    rcgc_incref(n);               /* local 3: a reference A gives to C */
    rcgc_decref(n);               /* A lets go (local 2): a candidate root */

    /* A collects (manual: on this thread), so its pin goes to the local
       count and the shared word reads 0 | SCAN when C lets go of the
       reference: -1, OWING, with C's CAS still to come.  Counted as read,
       the member's count would be -1 + 2 + 1 (pin) - 1 (pin) = 1, all of
       it from its own slot: garbage, and the Delta-test would pass and
       free it under C (rule 3). */
    rcgc__test_before_count(drop_before_count, n);
    is_size(rcgc_collect(), 0, "count: a collection that reads an OWING member frees nothing");
    rcgc__test_before_count(NULL, NULL);
    ok(count_hooked >= 1, "count: C's drop came between a grace period and step 4");
    ok((count_old & RCGC__SHARED_SCAN) && (count_old >> RCGC__SHARED_SHIFT) == 0,
       "count: the word C's fetch_sub replaced was 0 | SCAN, unmerged (%#lx)",
       (unsigned long)count_old);
    is_uint(n_finalized(), 0, "count: the OWING member is not finalized");
    s = shared_word(n);
    ok(rcgc__shared_owes(s), "count: still OWING after the collection (%#lx)", (unsigned long)s);

    rcgc__decref_sub_done(n, count_old);  /* C's CAS: the entry */
    s = shared_word(n);
    ok((s & RCGC__SHARED_QUEUED) && (s >> RCGC__SHARED_SHIFT) == 0,
       "count: C's CAS makes the entry (%#lx)", (unsigned long)s);
    rcgc_safepoint();             /* A merges: 2 + 0 - 1 = 1, its slot's */
    is_size(rcgc_collect(), 1, "count: collected once the entry is merged");
    is_uint(n_finalized(), 1, "count: finalized once");
}

/* ---- merging: the entry meets an owner word that a merge has cleared ----

   The debtor (played by A) drops a reference counted in A's local count:
   -1, OWING.  B lifts the word to 0 by its fetch_add, and the debtor's
   CAS, first to the word, makes it 1 | QUEUED, so B's settle_debt finds
   QUEUED and returns, and B may hand A its references (one in A's local
   count, one on the shared word).  A drops all it holds from its local
   count and, at the last, begins its merge (owner word and local count
   cleared), and the debtor's make_entry reads no owner before A's CAS.
   It must drop the entry's reference and leave the rest to A's merge; a
   merge of its own (on behalf of tid 0, as before) would run beside A's
   and count the object twice: A's merge aborts, "below zero" (found by
   tests/model/rcgc.pml's litmus, -DLITMUS_DEBT). */
static void case_merging(void)
{
    void *x = rcgc_new(&cell_type);
    rcgc__header *h;
    rcgc__thread *th = rcgc__tls_thread;
    size_t queued;
    intptr_t s, s0, count;
    uint32_t local;

    TAP_REQUIRE(x != NULL, "rcgc_new");
    h = rcgc__hdr(x);
    __atomic_store_n(&finalized, 0, __ATOMIC_RELAXED);
    rcgc_incref(x);
    rcgc_incref(x);                /* local 3: A's, the debtor's, B's */
    debt(x);                       /* the debtor's fetch_sub */
    ok(rcgc__shared_owes(shared_word(x)), "merging: the word is OWING");
    __atomic_fetch_add(&h->ref_shared.v, RCGC__SHARED_ONE, __ATOMIC_RELAXED);  /* B's */
    s = shared_word(x);
    ok(__atomic_compare_exchange_n(&h->ref_shared.v, &s,
                                   (s + RCGC__SHARED_ONE) | RCGC__SHARED_QUEUED, 0,
                                   __ATOMIC_ACQ_REL, __ATOMIC_RELAXED),
       "merging: the debtor's CAS sets QUEUED");
    rcgc__settle_debt(h);          /* B's: finds QUEUED */
    queued = th->merge_queue_len;
    rcgc_decref(x);
    rcgc_decref(x);                /* A's local count: 1, B's references dropped */
    local = rcgc__merge_begin(h, &s0);
    ok(local == 1 && (rcgc__word_load_relaxed(&h->owner) & ~RCGC__OWNER_FLAGS) == 0,
       "merging: A's merge has cleared the owner word");
    rcgc__make_entry(h);           /* the debtor's, reading no owner */
    s = shared_word(x);
    ok(!(s & RCGC__SHARED_MERGED) && (s >> RCGC__SHARED_SHIFT) == 0 &&
           th->merge_queue_len == queued,
       "merging: the entry's reference went by a decrement; nothing queued (%#lx)",
       (unsigned long)s);
    count = rcgc__merge_end(h, s0, local, -1);   /* its CAS fails once */
    is_int((int)count, 0, "merging: A's merge finds the last reference gone");
    is_uint(n_finalized(), 0, "merging: not finalized before A releases it");
    rcgc__release(h);
    is_uint(n_finalized(), 1, "merging: finalized once");
}

int main(void)
{
    peer b = { 0 }, c = { 0 };

    TAP_REQUIRE(rcgc_init(&manual) == 0, "rcgc_init");
    TAP_REQUIRE(pthread_create(&b.thread, NULL, peer_main, &b) == 0, "thread B");
    TAP_REQUIRE(pthread_create(&c.thread, NULL, peer_main, &c) == 0, "thread C");

    case_inc(&b);
    case_load(&b);
    case_collect(&c);
    case_count();
    case_merging();

    peer_ask(&b, REQ_EXIT);
    peer_ask(&c, REQ_EXIT);
    rcgc_blocking_begin();
    pthread_join(b.thread, NULL);
    pthread_join(c.thread, NULL);
    rcgc_blocking_end();
    rcgc_shutdown();
    return done_testing();
}
