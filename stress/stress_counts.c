/*
 * stress_counts.c: cross-thread incref/decref storms under thread churn.
 *
 * A table of TABLE_SIZE atomic pointers, each holding one counted reference
 * or NULL, is the only thing threads share.  Workers are short-lived: each
 * attaches, runs a random budget of operations and exits, and main starts a
 * replacement at once, so objects keep being counted long after the thread
 * that created (owns) them is gone.  A worker holds up to HAND_MAX
 * references in its "hand" and, at random:
 *
 *   new     creates an object (it becomes the owner)
 *   take    exchanges a table entry with NULL: the entry's reference is its
 *   put     moves a reference from the hand into an empty entry
 *   swap    exchanges a hand reference with a table entry
 *   dup     increments a held object and keeps both references
 *   drop    decrements (possibly the last reference, possibly a non-owner)
 *   storm   n increments then n decrements of one held object (n <= 48)
 *
 * Half the table choices go to HOT_SIZE hot entries so several threads count
 * the same objects at once.  A worker sometimes detaches and re-attaches in
 * the middle of its life (its objects lose their owner while it still holds
 * them), and sometimes sits in a blocking region (queuers then merge for it).
 * When its budget is spent it leaves its references in the table or drops
 * them, and then either detaches or just returns while attached.
 *
 * The oracle: every object carries `expected`, the number of references the
 * test believes exist, raised before each increment and lowered before each
 * decrement.  The finalizer must see 0 (anything else: released while
 * referenced), its magic must be live (else a second release), and the id
 * table must record exactly one finalizer run per object.  At the end, with
 * every worker gone, each object left in the table must have
 * rcgc_refcount() == expected == the number of table entries holding it;
 * then main drops them all and torture_finish() checks that nothing leaked.
 */
#include "torture.h"

#define TABLE_SIZE 64
#define HOT_SIZE   8
#define HAND_MAX   8

typedef struct cobj {
    torture_obj t;
    atomic_long expected;   /* references the test believes exist (relaxed) */
} cobj;

static void cobj_finalize(void *p)
{
    cobj *o = p;
    long refs = atomic_load_explicit(&o->expected, memory_order_relaxed);

    if (refs != 0)
        TORTURE_VIOLATION("cobj id %" PRIu64 " finalized while the test holds %ld "
                          "reference(s) (premature release)", o->t.id, refs);
    torture_maybe_delay(o->t.id);
    torture_obj_finalize(&o->t, "cobj");
}

static const rcgc_type cobj_type = { "cobj", sizeof(cobj), NULL, cobj_finalize, 0 };

/* Each non-NULL entry owns one reference.  Moves are acq_rel exchanges: a
   reference handed over carries the giver's writes with it. */
static _Atomic(cobj *) table[TABLE_SIZE];

typedef struct worker {
    pthread_t  thread;
    uint64_t   serial;      /* PRNG stream; set by main before the spawn */
    atomic_int done;        /* set by the worker as its last act */
} worker;

static atomic_ullong total_ops;
static atomic_ullong total_rebirths;
static atomic_ullong total_detached;     /* workers that detached explicitly */
static atomic_ullong total_attached_exit;

static void ref_dup(cobj *o)
{
    atomic_fetch_add_explicit(&o->expected, 1, memory_order_relaxed);
    rcgc_incref(o);
}

static void ref_drop(cobj *o, const char *where)
{
    long old;

    if (!torture_obj_ok(&o->t, where))
        return;     /* do not touch a dead object again */
    old = atomic_fetch_sub_explicit(&o->expected, 1, memory_order_relaxed);
    if (old <= 0)
        TORTURE_VIOLATION("%s: test bug: dropping a reference to id %" PRIu64
                          " that expected=%ld says does not exist", where, o->t.id, old);
    rcgc_decref(o);
}

static unsigned pick_index(torture_rng *rng)
{
    return torture_chance(rng, 2) ? torture_below(rng, HOT_SIZE)
                                  : torture_below(rng, TABLE_SIZE);
}

/* Leaves a reference in the first empty entry from a random start; drops
   it if the table is full. */
static void deposit_or_drop(cobj *o, torture_rng *rng)
{
    unsigned start = torture_below(rng, TABLE_SIZE), k;

    for (k = 0; k < TABLE_SIZE; k++) {
        cobj *expected = NULL;
        if (atomic_compare_exchange_strong_explicit(&table[(start + k) % TABLE_SIZE],
                                                    &expected, o, memory_order_acq_rel,
                                                    memory_order_relaxed))
            return;
    }
    ref_drop(o, "deposit (table full)");
}

static void one_op(torture_rng *rng, cobj **hand, unsigned *nh)
{
    unsigned r = torture_below(rng, 100), i = pick_index(rng);
    unsigned j = *nh ? torture_below(rng, *nh) : 0;
    cobj *o, *expected;

    if (*nh != 0 && !torture_obj_ok(&hand[j]->t, "hand")) {
        hand[j] = hand[--*nh];     /* counted; never touch it again */
        return;
    }
    if (r < 12) {                                   /* new */
        if (*nh == HAND_MAX)
            return;
        o = rcgc_new(&cobj_type);
        if (o == NULL) {
            TORTURE_VIOLATION("rcgc_new failed: %s", strerror(errno));
            return;
        }
        torture_obj_init(&o->t);
        atomic_store_explicit(&o->expected, 1, memory_order_relaxed);
        hand[(*nh)++] = o;
    } else if (r < 32) {                            /* take */
        o = atomic_exchange_explicit(&table[i], NULL, memory_order_acq_rel);
        if (o == NULL || !torture_obj_ok(&o->t, "take"))
            return;
        if (*nh < HAND_MAX)
            hand[(*nh)++] = o;
        else
            ref_drop(o, "take (hand full)");
    } else if (r < 50) {                            /* put */
        if (*nh == 0)
            return;
        expected = NULL;
        if (atomic_compare_exchange_strong_explicit(&table[i], &expected, hand[j],
                                                    memory_order_acq_rel,
                                                    memory_order_relaxed))
            hand[j] = hand[--*nh];
    } else if (r < 60) {                            /* swap */
        if (*nh == 0)
            return;
        o = atomic_exchange_explicit(&table[i], hand[j], memory_order_acq_rel);
        if (o != NULL && torture_obj_ok(&o->t, "swap"))
            hand[j] = o;
        else
            hand[j] = hand[--*nh];
    } else if (r < 72) {                            /* dup */
        if (*nh == 0 || *nh == HAND_MAX)
            return;
        ref_dup(hand[j]);
        hand[(*nh)++] = hand[j];
    } else if (r < 86) {                            /* drop */
        if (*nh == 0)
            return;
        o = hand[j];
        hand[j] = hand[--*nh];
        ref_drop(o, "drop");
    } else if (r < 96) {                            /* storm */
        unsigned n, k;

        if (*nh == 0)
            return;
        o = hand[j];
        n = 1 + torture_below(rng, 48);
        atomic_fetch_add_explicit(&o->expected, (long)n, memory_order_relaxed);
        for (k = 0; k < n; k++)
            rcgc_incref(o);
        if (!torture_obj_ok(&o->t, "storm"))
            return;
        atomic_fetch_sub_explicit(&o->expected, (long)n, memory_order_relaxed);
        for (k = 0; k < n; k++)
            rcgc_decref(o);
    } else {                                        /* peek */
        if (*nh == 0)
            return;
        o = hand[j];
        if (rcgc_type_of(o) != &cobj_type)
            TORTURE_VIOLATION("rcgc_type_of(id %" PRIu64 ") is not cobj", o->t.id);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    torture_rng rng = torture_rng_make(w->serial);
    cobj *hand[HAND_MAX];
    unsigned nh = 0, k;
    uint64_t ops = 0, budget = 64 + torture_below(&rng, 4096);

    torture_attach();
    while (ops < budget && !torture_stopping()) {
        one_op(&rng, hand, &nh);
        ops++;
        if ((ops & 255) == 0)
            rcgc_safepoint();
        if (torture_pause(&rng, 2048, 1024))
            atomic_fetch_add_explicit(&total_rebirths, 1, memory_order_relaxed);
    }
    for (k = 0; k < nh; k++) {
        if (torture_below(&rng, 10) < 7)
            deposit_or_drop(hand[k], &rng);
        else
            ref_drop(hand[k], "exit drop");
    }
    atomic_fetch_add_explicit(&total_ops, ops, memory_order_relaxed);
    if (torture_chance(&rng, 2)) {
        rcgc_thread_detach();
        atomic_fetch_add_explicit(&total_detached, 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&total_attached_exit, 1, memory_order_relaxed);
    }
    /* Release: main may join as soon as it sees this. */
    atomic_store_explicit(&w->done, 1, memory_order_release);
    return NULL;   /* still attached in half the cases: exit detaches */
}

/* With every worker gone nobody changes a count: they must be exact. */
static void audit_table(void)
{
    unsigned i, k;

    for (i = 0; i < TABLE_SIZE; i++) {
        cobj *o = atomic_load_explicit(&table[i], memory_order_acquire);
        long expected, in_table = 0;
        size_t rc;

        if (o == NULL)
            continue;
        for (k = 0; k < i; k++)
            if (atomic_load_explicit(&table[k], memory_order_relaxed) == o)
                break;
        if (k < i)
            continue;   /* audited at its first entry */
        if (!torture_obj_ok(&o->t, "final audit"))
            continue;
        for (k = i; k < TABLE_SIZE; k++)
            in_table += atomic_load_explicit(&table[k], memory_order_relaxed) == o;
        expected = atomic_load_explicit(&o->expected, memory_order_relaxed);
        rc = rcgc_refcount(o);
        if (expected != in_table || rc != (size_t)in_table)
            TORTURE_VIOLATION("id %" PRIu64 ": in %ld table entries, expected=%ld, "
                              "rcgc_refcount=%zu", o->t.id, in_table, expected, rc);
    }
}

int main(int argc, char **argv)
{
    worker *workers;
    uint64_t serial = 1, spawned = 0;
    unsigned i;
    char extra[160];

    torture_start("stress_counts", argc, argv, 2);
    workers = calloc((size_t)torture_o.threads, sizeof *workers);
    if (workers == NULL)
        abort();

    /* Main touches no object while workers run: one long blocking region. */
    rcgc_blocking_begin();
    for (i = 0; i < (unsigned)torture_o.threads; i++) {
        workers[i].serial = serial++;
        torture_spawn(&workers[i].thread, worker_main, &workers[i]);
        spawned++;
    }
    while (!torture_time_up()) {
        for (i = 0; i < (unsigned)torture_o.threads; i++) {
            /* Acquire pairs with the worker's release store of done. */
            if (!atomic_load_explicit(&workers[i].done, memory_order_acquire))
                continue;
            pthread_join(workers[i].thread, NULL);
            atomic_store_explicit(&workers[i].done, 0, memory_order_relaxed);
            workers[i].serial = serial++;
            torture_spawn(&workers[i].thread, worker_main, &workers[i]);
            spawned++;
        }
        torture_sleep_us(200);
    }
    torture_stop();
    torture_phase("join");
    for (i = 0; i < (unsigned)torture_o.threads; i++)
        pthread_join(workers[i].thread, NULL);
    rcgc_blocking_end();

    torture_phase("audit");
    rcgc_safepoint();
    audit_table();
    torture_phase("drain");
    for (i = 0; i < TABLE_SIZE; i++) {
        cobj *o = atomic_exchange_explicit(&table[i], NULL, memory_order_acq_rel);
        if (o != NULL)
            ref_drop(o, "drain");
    }
    free(workers);
    snprintf(extra, sizeof extra,
             "threads_spawned=%" PRIu64 " detached=%llu exited_attached=%llu "
             "rebirths=%llu", spawned, (unsigned long long)atomic_load(&total_detached),
             (unsigned long long)atomic_load(&total_attached_exit),
             (unsigned long long)atomic_load(&total_rebirths));
    return torture_finish(atomic_load(&total_ops), extra);
}
