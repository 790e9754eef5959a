/*
 * test_slots.c: rcgc_ref_init/load/store/exchange/compare_exchange.
 *
 * Every operation is checked by the counts it leaves behind:
 *   init      slot takes a new reference (NULL: empty slot)
 *   load      returns a NEW reference (NULL for an empty slot)
 *   store     slot takes a new reference, the old value loses one; storing
 *             the value already there changes nothing; storing NULL empties
 *   exchange  steals the caller's reference; the old value's reference goes
 *             to the caller
 *   compare_exchange  on success the slot takes a new reference to desired
 *             and drops expected's; on failure nothing changes
 * A holder's slots are released when it dies.  Another thread loads from a
 * slot of an object the main thread owns, and loads race stores (memory
 * stays valid: ASan, debug poisoning and the magic check below catch a
 * stale load).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

/* These tests check releases the moment a count reaches zero: no background
   collector, whose examination pins tracked objects for its duration. */
static const rcgc_options refcount_only = { .manual = 1 };

typedef struct holder { rcgc_ref a, b; } holder;
typedef struct leaf { unsigned magic, id; } leaf;

#define LEAF_MAGIC 0x1eafu

static unsigned leaf_fin, holder_fin;   /* atomic */

static void holder_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    holder *h = obj;

    visit(&h->a, ctx);
    visit(&h->b, ctx);
}

static void holder_finalize(void *obj)
{
    (void)obj;
    __atomic_fetch_add(&holder_fin, 1, __ATOMIC_RELAXED);
}

static void leaf_finalize(void *obj)
{
    leaf *l = obj;

    l->magic = 0;
    __atomic_fetch_add(&leaf_fin, 1, __ATOMIC_RELAXED);
}

static const rcgc_type holder_type = { "holder", sizeof(holder), holder_traverse,
                                       holder_finalize, 0 };
static const rcgc_type leaf_type = { "leaf", sizeof(leaf), NULL, leaf_finalize, 0 };

static unsigned leaves_freed(void) { return __atomic_load_n(&leaf_fin, __ATOMIC_RELAXED); }

static leaf *new_leaf(unsigned id)
{
    leaf *l = rcgc_new(&leaf_type);

    if (l == NULL)
        bail_out("rcgc_new failed");
    l->magic = LEAF_MAGIC;
    l->id = id;
    return l;
}

/* ---- another thread loads ------------------------------------------------ */

static holder *shared_holder;
static int racing_stop;

typedef struct loader_result {
    void    *loaded;
    size_t   count_seen;
    unsigned loads, nulls, bad;
    int      done;                 /* atomic: loader_once has returned */
} loader_result;

static void *loader_once(void *arg)
{
    loader_result *r = arg;

    if (rcgc_thread_attach() != 0)
        abort();
    r->loaded = rcgc_ref_load(&shared_holder->a);
    r->count_seen = rcgc_refcount(r->loaded);
    rcgc_decref(r->loaded);
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    rcgc_thread_detach();
    return NULL;
}

static void *loader_racing(void *arg)
{
    loader_result *r = arg;
    leaf *l;

    if (rcgc_thread_attach() != 0)
        abort();
    while (!__atomic_load_n(&racing_stop, __ATOMIC_ACQUIRE)) {
        l = rcgc_ref_load(&shared_holder->a);
        __atomic_store_n(&r->loads, r->loads + 1, __ATOMIC_RELAXED);
        if (l == NULL)
            __atomic_store_n(&r->nulls, r->nulls + 1, __ATOMIC_RELAXED);
        else if (l->magic != LEAF_MAGIC || rcgc_refcount(l) < 1)
            r->bad++;
        rcgc_decref(l);
        if (r->loads % 64 == 0)
            rcgc_safepoint();
    }
    rcgc_thread_detach();
    return NULL;
}

static void join_blocking(pthread_t t)
{
    rcgc_blocking_begin();
    pthread_join(t, NULL);
    rcgc_blocking_end();
}

int main(void)
{
    holder *h;
    leaf *x, *y, *z, *got;
    loader_result lr = { 0 };
    pthread_t t;
    unsigned i;

    alarm(120);
    TAP_REQUIRE(rcgc_init(&refcount_only) == 0, "rcgc_init");
    h = rcgc_new(&holder_type);
    TAP_REQUIRE(h != NULL, "rcgc_new");
    x = new_leaf(1);
    y = new_leaf(2);
    z = new_leaf(3);

    /* -- init / load --------------------------------------------------------- */
    is_ptr(rcgc_ref_load(&h->a), NULL, "a zeroed slot loads NULL");
    rcgc_ref_init(&h->a, x);
    is_size(rcgc_refcount(x), 2, "ref_init takes a new reference (x: 2)");
    rcgc_ref_init(&h->b, NULL);
    is_ptr(rcgc_ref_load(&h->b), NULL, "ref_init with NULL: the slot loads NULL");
    got = rcgc_ref_load(&h->a);
    is_ptr(got, x, "ref_load returns the slot's object");
    is_size(rcgc_refcount(x), 3, "ref_load returns a NEW reference (x: 3)");
    rcgc_decref(got);
    is_size(rcgc_refcount(x), 2, "x: 2");

    /* -- store ---------------------------------------------------------------- */
    rcgc_ref_store(&h->a, y);
    ok(rcgc_refcount(x) == 1 && rcgc_refcount(y) == 2,
       "store: the old value loses the slot's reference, the new one gains one");
    rcgc_ref_store(&h->a, y);
    is_size(rcgc_refcount(y), 2, "storing the value already there changes nothing");
    rcgc_ref_store(&h->a, NULL);
    ok(rcgc_refcount(y) == 1 && rcgc_ref_load(&h->a) == NULL, "storing NULL empties the slot");
    rcgc_ref_store(&h->a, NULL);
    ok(rcgc_ref_load(&h->a) == NULL, "storing NULL into an empty slot");
    rcgc_ref_store(&h->a, x);
    is_size(rcgc_refcount(x), 2, "store into an empty slot: x: 2");

    /* -- exchange -------------------------------------------------------------- */
    rcgc_incref(y);                               /* the reference exchange steals */
    got = rcgc_ref_exchange(&h->a, y);
    is_ptr(got, x, "exchange returns the old value");
    ok(rcgc_refcount(x) == 2 && rcgc_refcount(y) == 2,
       "exchange: no count changes (the caller's y moved in, the slot's x moved out)");
    rcgc_decref(got);                             /* the x reference we now own */
    is_size(rcgc_refcount(x), 1, "x: 1 after dropping what exchange returned");
    got = rcgc_ref_exchange(&h->a, NULL);
    ok(got == y && rcgc_refcount(y) == 2 && rcgc_ref_load(&h->a) == NULL,
       "exchange with NULL empties the slot and hands its reference over");
    rcgc_decref(got);
    got = rcgc_ref_exchange(&h->a, NULL);
    is_ptr(got, NULL, "exchange on an empty slot returns NULL");

    /* -- compare_exchange ------------------------------------------------------- */
    is_int(rcgc_ref_compare_exchange(&h->a, NULL, x), 1, "cas(NULL -> x) on an empty slot succeeds");
    is_size(rcgc_refcount(x), 2, "the slot took a new reference to x");
    is_int(rcgc_ref_compare_exchange(&h->a, y, z), 0, "cas(y -> z) while x is there fails");
    ok(rcgc_refcount(x) == 2 && rcgc_refcount(y) == 1 && rcgc_refcount(z) == 1,
       "a failed cas changes no count (x 2, y 1, z 1)");
    is_int(rcgc_ref_compare_exchange(&h->a, NULL, z), 0, "cas(NULL -> z) on a full slot fails");
    is_size(rcgc_refcount(z), 1, "z unchanged");
    got = rcgc_ref_load(&h->a);
    is_ptr(got, x, "the slot still holds x");
    rcgc_decref(got);
    is_int(rcgc_ref_compare_exchange(&h->a, x, y), 1, "cas(x -> y) succeeds");
    ok(rcgc_refcount(x) == 1 && rcgc_refcount(y) == 2, "x lost the slot's reference, y gained one");
    is_int(rcgc_ref_compare_exchange(&h->a, y, y), 1, "cas(y -> y) succeeds");
    is_size(rcgc_refcount(y), 2, "and leaves y's count as it was");
    is_int(rcgc_ref_compare_exchange(&h->a, y, NULL), 1, "cas(y -> NULL) succeeds");
    ok(rcgc_refcount(y) == 1 && rcgc_ref_load(&h->a) == NULL, "y lost the slot's reference");
    is_int(rcgc_ref_compare_exchange(&h->a, NULL, NULL), 1, "cas(NULL -> NULL) on an empty slot");
    is_uint(leaves_freed(), 0, "no leaf freed so far");

    /* -- a slot may hold the only reference ------------------------------------ */
    rcgc_ref_store(&h->a, z);
    rcgc_decref(z);                               /* only the slot holds z */
    is_uint(leaves_freed(), 0, "z lives on in the slot");
    got = rcgc_ref_load(&h->a);
    ok(got == z && rcgc_refcount(z) == 2 && z->magic == LEAF_MAGIC, "loading z: count 2, intact");
    rcgc_ref_store(&h->a, NULL);
    is_uint(leaves_freed(), 0, "z still held by the loaded reference");
    rcgc_decref(got);
    is_uint(leaves_freed(), 1, "z freed with its last (loaded) reference");

    /* -- another thread loads --------------------------------------------------- */
    rcgc_ref_store(&h->a, x);
    shared_holder = h;
    pthread_create(&t, NULL, loader_once, &lr);
    join_blocking(t);
    ok(lr.loaded == x && lr.count_seen == 3,
       "another thread's ref_load returns a new reference (count %zu there)", lr.count_seen);
    is_size(rcgc_refcount(x), 2, "and its decrement brings x back to 2");

    /* -- the holder's death releases its slots ---------------------------------- */
    rcgc_ref_store(&h->b, y);
    is_size(rcgc_refcount(y), 2, "y: 2 (ours and slot b)");
    rcgc_decref(h);
    is_uint(__atomic_load_n(&holder_fin, __ATOMIC_RELAXED), 1, "holder finalized");
    ok(rcgc_refcount(x) == 1 && rcgc_refcount(y) == 1, "its slots' references were released");
    rcgc_decref(x);
    rcgc_decref(y);
    is_uint(leaves_freed(), 3, "every leaf freed exactly once");

    /* -- loads race stores ------------------------------------------------------- */
    h = rcgc_new(&holder_type);
    shared_holder = h;
    memset(&lr, 0, sizeof lr);
    pthread_create(&t, NULL, loader_racing, &lr);
    /* at least 20000 stores, and until the loader has seen 5000 objects */
    for (i = 0; i < 20000 || (i < 2000000 && __atomic_load_n(&lr.loads, __ATOMIC_RELAXED) -
                                              __atomic_load_n(&lr.nulls, __ATOMIC_RELAXED) < 5000);
         i++) {
        leaf *l = new_leaf(100 + i);

        if (i % 3 == 0)
            rcgc_ref_store(&h->a, l);
        else if (i % 3 == 1)
            rcgc_decref(rcgc_ref_exchange(&h->a, rcgc_incref(l)));
        else
            rcgc_ref_store(&h->a, NULL);
        rcgc_decref(l);
        if (i % 64 == 0)
            rcgc_safepoint();
    }
    __atomic_store_n(&racing_stop, 1, __ATOMIC_RELEASE);
    join_blocking(t);
    diag("racing loader: %u loads, %u NULL, during %u stores", lr.loads, lr.nulls, i);
    ok(lr.loads - lr.nulls >= 5000, "the loader loaded objects while they were being replaced");
    is_uint(lr.bad, 0, "loads racing stores never see a dead object");
    rcgc_decref(h);
    is_uint(leaves_freed(), 3 + i, "every stored leaf freed exactly once");

    /* -- a load that meets DYING in its slot waits ------------------------------ */
    /* The collector marks each member of a white component DYING by the CAS
       of its Delta-test and, if another member's test fails, takes the marks
       back.  A load from a slot that still holds a marked member meanwhile
       must wait, not read NULL (only the collecting thread reads such a slot
       as empty: finalizers reading their own garbage).  Simulated: DYING set
       by hand on a live leaf in a slot. */
    h = rcgc_new(&holder_type);
    TAP_REQUIRE(h != NULL, "rcgc_new");
    x = new_leaf(50);
    rcgc_ref_store(&h->a, x);
    shared_holder = h;
    memset(&lr, 0, sizeof lr);
    rcgc__sword_fetch_or_acq_rel(&rcgc__hdr(x)->ref_shared, RCGC__SHARED_DYING);
    pthread_create(&t, NULL, loader_once, &lr);
    rcgc_blocking_begin();
    usleep(50000);
    rcgc_blocking_end();
    ok(!__atomic_load_n(&lr.done, __ATOMIC_ACQUIRE),
       "a load that meets a DYING object still in its slot waits (50 ms)");
    rcgc__sword_fetch_and_acq_rel(&rcgc__hdr(x)->ref_shared, ~RCGC__SHARED_DYING);
    join_blocking(t);
    ok(lr.loaded == x && lr.count_seen == 3,
       "... and gets the object, a new reference, once DYING is taken back (count %zu)",
       lr.count_seen);
    rcgc_ref_store(&h->a, NULL);
    rcgc_decref(x);
    rcgc_decref(h);
    is_uint(leaves_freed(), 4 + i, "that leaf freed once");
    rcgc_reclaim_wait();

    rcgc_shutdown();
    return done_testing();
}
