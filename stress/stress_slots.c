/*
 * stress_slots.c: rcgc_ref_load racing rcgc_ref_store / _exchange /
 * _compare_exchange on the same slots.
 *
 * Shape: NROOT global slots (roots[], outside any object) each hold a
 * holder; a holder has NSLOT slots of values; a value has one child slot
 * that holds a leaf or NULL.
 *
 *   roots[r] -> holder -> slot[0 .. MIXED-1]      values, any operation
 *                         slot[MIXED .. NSLOT-1]  values, compare_exchange only
 *                                value -> child -> leaf
 *
 * Every value is made for one slot (its home: holder id and slot index, or
 * parent value id for a leaf) and stored there once, never anywhere else.
 * Writers replace values (store, store NULL, exchange, exchange NULL,
 * compare_exchange against what they loaded), replace leaves, and now and
 * then replace a whole holder in its root (its release tears down its
 * slots while other threads may still hold and use it).  Every replaced
 * value is dropped by the writer, often as its last reference.  Readers
 * load root -> holder -> value -> leaf and check each object before they
 * drop it.
 *
 * Oracles:
 *   - every loaded object: magic, id, generation and checksum intact (a
 *     poisoned one was freed under the reader), the right rcgc type, and
 *     made for the slot it was loaded from;
 *   - an object taken out of its slot (exchange, or a successful
 *     compare_exchange) sets `removed`; a second removal is a violation
 *     (the slot handed out one reference twice);
 *   - compare-exchange-only slots are never NULL; each success stores
 *     version+1 of what it replaced and counts in the holder's cas_done, so
 *     a holder's finalizer finds version == cas_done in every such slot;
 *     a reader's successive loads of one slot never go back in version;
 *     a compare_exchange whose expected value was already removed must
 *     fail;
 *   - a value still in a compare-exchange-only slot (in_slot) may be
 *     finalized only after its holder was;
 *   - the common end checks (torture_finish): each finalizer ran exactly
 *     once, live == 0, all memory back to the free hook.
 *
 * A thread that finds a bad object reports it and still drops the
 * reference the load gave it: an object the runtime handed out after its
 * finalizer ran is then not also reported as a leak, and one that was
 * really freed trips rcgc's debug check or AddressSanitizer right there.
 */
#include "torture.h"

#define NROOT  4
#define NSLOT  8
#define MIXED  4           /* slots [0, MIXED) take every operation */
#define LEAF_SLOT NSLOT    /* the home slot index recorded in a leaf */

typedef struct value {
    torture_obj t;
    uint64_t    home;      /* torture id of the holder (or parent value) */
    uint32_t    slot;      /* home slot index, LEAF_SLOT for a leaf */
    uint64_t    version;   /* compare-exchange-only slots: 0, 1, 2, ... */
    atomic_int  removed;   /* taken out of its slot by exchange or CAS */
    atomic_int  in_slot;   /* CAS-only slots: the slot holds it (oracle) */
    rcgc_ref    child;     /* values: a leaf or NULL; leaves: always NULL */
} value;

typedef struct holder {
    torture_obj   t;
    atomic_ullong cas_done[NSLOT];   /* successful CASes per CAS-only slot */
    rcgc_ref      slot[NSLOT];
} holder;

static void value_finalize(void *obj);
static void holder_finalize(void *obj);

static void value_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((value *)obj)->child, ctx);
}

static void holder_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    holder *h = obj;
    unsigned s;

    for (s = 0; s < NSLOT; s++)
        visit(&h->slot[s], ctx);
}

static const rcgc_type value_type = { "value", sizeof(value), value_traverse,
                                      value_finalize, RCGC_TYPE_ACYCLIC };
static const rcgc_type leaf_type = { "leaf", sizeof(value), NULL, value_finalize, 0 };
static const rcgc_type holder_type = { "holder", sizeof(holder), holder_traverse,
                                       holder_finalize, RCGC_TYPE_ACYCLIC };

static rcgc_ref roots[NROOT];

static atomic_ullong total_ops;
static atomic_ullong total_loads;
static atomic_ullong total_cas_ok;
static atomic_ullong total_cas_fail;
static atomic_ullong total_holders_replaced;

static void value_finalize(void *obj)
{
    value *v = obj;

    if (atomic_load_explicit(&v->in_slot, memory_order_relaxed) &&
        !torture_track_finalized(v->home))
        TORTURE_VIOLATION("value id %" PRIu64 " (version %" PRIu64 ") finalized while "
                          "CAS-only slot %u of live holder %" PRIu64 " still holds it",
                          v->t.id, v->version, v->slot, v->home);
    /* A slow finalizer keeps the object dying for a while: a load that
       read the slot before it was overwritten must still not get it. */
    torture_maybe_delay(v->t.id);
    torture_obj_finalize(&v->t, rcgc_type_of(v) == &leaf_type ? "leaf" : "value");
}

/* Checks an object loaded from (or taken out of) home's slot `slot`. */
static bool value_ok(value *v, const rcgc_type *type, uint64_t home, unsigned slot,
                     const char *where)
{
    if (!torture_obj_ok(&v->t, where))
        return false;
    if (rcgc_type_of(v) != type) {
        TORTURE_VIOLATION("%s: id %" PRIu64 " has type %s, expected %s", where, v->t.id,
                          rcgc_type_of(v)->name, type->name);
        return false;
    }
    if (v->home != home || v->slot != slot) {
        TORTURE_VIOLATION("%s: id %" PRIu64 " was made for %" PRIu64 "/slot %u but came "
                          "from %" PRIu64 "/slot %u", where, v->t.id, v->home, v->slot,
                          home, slot);
        return false;
    }
    return true;
}

static bool holder_ok(holder *h, const char *where)
{
    if (!torture_obj_ok(&h->t, where))
        return false;
    if (rcgc_type_of(h) != &holder_type) {
        TORTURE_VIOLATION("%s: id %" PRIu64 " is not a holder", where, h->t.id);
        return false;
    }
    return true;
}

/* The caller now owns the reference its slot held. */
static void mark_removed(value *v, const char *where)
{
    if (atomic_exchange_explicit(&v->removed, 1, memory_order_relaxed) != 0)
        TORTURE_VIOLATION("%s: id %" PRIu64 " taken out of its slot twice", where,
                          v->t.id);
}

static value *make_value(const rcgc_type *type, uint64_t home, unsigned slot,
                         uint64_t version)
{
    value *v = rcgc_new(type);

    if (v == NULL) {
        TORTURE_VIOLATION("rcgc_new(%s) failed: %s", type->name, strerror(errno));
        abort();
    }
    torture_obj_init(&v->t);
    v->home = home;
    v->slot = slot;
    v->version = version;
    return v;
}

static holder *make_holder(void)
{
    holder *h = rcgc_new(&holder_type);
    unsigned s;

    if (h == NULL) {
        TORTURE_VIOLATION("rcgc_new(holder) failed: %s", strerror(errno));
        abort();
    }
    torture_obj_init(&h->t);
    for (s = 0; s < NSLOT; s++) {
        value *v = make_value(&value_type, h->t.id, s, 0);
        if (s >= MIXED)
            atomic_store_explicit(&v->in_slot, 1, memory_order_relaxed);
        rcgc_ref_init(&h->slot[s], v);
        rcgc_decref(v);
    }
    return h;
}

/*
 * Runs while the holder is intact and unreachable: every CAS-only slot must
 * hold the value whose version counts the successful CASes on it.
 */
static void holder_finalize(void *obj)
{
    holder *h = obj;
    unsigned s;

    if (!holder_ok(h, "holder finalize"))
        return;
    for (s = MIXED; s < NSLOT; s++) {
        value *v = rcgc_ref_load(&h->slot[s]);
        uint64_t done = atomic_load_explicit(&h->cas_done[s], memory_order_relaxed);

        if (v == NULL) {
            TORTURE_VIOLATION("holder %" PRIu64 ": CAS-only slot %u is NULL at "
                              "finalize", h->t.id, s);
            continue;
        }
        if (value_ok(v, &value_type, h->t.id, s, "holder finalize") &&
            v->version != done)
            TORTURE_VIOLATION("holder %" PRIu64 " slot %u: %" PRIu64 " successful CASes "
                              "but the slot holds version %" PRIu64, h->t.id, s, done,
                              v->version);
        rcgc_decref(v);
    }
    torture_obj_finalize(&h->t, "holder");
}

typedef struct worker {
    pthread_t thread;
    unsigned  index;
    bool      writer;
} worker;

typedef struct seen {
    uint64_t holder_id;
    uint64_t version;
} seen;

typedef struct wstate {
    torture_rng rng;
    seen        last[NROOT][NSLOT];
    uint64_t    ops, loads, cas_ok, cas_fail, holders;
} wstate;

static holder *load_root(wstate *w, unsigned r)
{
    holder *h = rcgc_ref_load(&roots[r]);

    w->ops++;
    if (h == NULL) {
        TORTURE_VIOLATION("root %u is NULL while the run is on", r);
        return NULL;
    }
    if (!holder_ok(h, "load root")) {
        rcgc_decref(h);     /* reported; the load still gave us a reference */
        return NULL;
    }
    return h;
}

static void read_slot(wstate *w, unsigned r, holder *h, unsigned s)
{
    value *v = rcgc_ref_load(&h->slot[s]), *leaf;

    w->ops++;
    w->loads++;
    if (v == NULL) {
        if (s >= MIXED)
            TORTURE_VIOLATION("holder %" PRIu64 ": CAS-only slot %u loaded NULL",
                              h->t.id, s);
        return;
    }
    if (!value_ok(v, &value_type, h->t.id, s, "load")) {
        rcgc_decref(v);     /* reported; the load still gave us a reference */
        return;
    }
    if (s >= MIXED) {
        seen *last = &w->last[r][s];
        if (last->holder_id == h->t.id && v->version < last->version)
            TORTURE_VIOLATION("holder %" PRIu64 " slot %u: loaded version %" PRIu64
                              " after version %" PRIu64, h->t.id, s, v->version,
                              last->version);
        last->holder_id = h->t.id;
        last->version = v->version;
    }
    if (torture_chance(&w->rng, 2)) {
        leaf = rcgc_ref_load(&v->child);
        w->ops++;
        w->loads++;
        if (leaf != NULL) {
            value_ok(leaf, &leaf_type, v->t.id, LEAF_SLOT, "load leaf");
            rcgc_decref(leaf);
        }
    }
    rcgc_decref(v);
}

static void write_leaf(wstate *w, value *v)
{
    unsigned op = torture_below(&w->rng, 4);
    value *nl = op == 3 ? NULL : make_value(&leaf_type, v->t.id, LEAF_SLOT, 0), *old;

    w->ops++;
    if (op <= 1) {
        rcgc_ref_store(&v->child, nl);
        rcgc_decref(nl);
    } else {
        old = rcgc_ref_exchange(&v->child, nl);   /* steals nl */
        if (old != NULL) {
            if (value_ok(old, &leaf_type, v->t.id, LEAF_SLOT, "exchange leaf"))
                mark_removed(old, "exchange leaf");
            rcgc_decref(old);
        }
    }
}

static void write_mixed(wstate *w, holder *h, unsigned s)
{
    rcgc_ref *slot = &h->slot[s];
    unsigned op = torture_below(&w->rng, 12);
    value *nv, *old, *cur;

    w->ops++;
    if (op < 3) {                                   /* store new */
        nv = make_value(&value_type, h->t.id, s, 0);
        rcgc_ref_store(slot, nv);
        rcgc_decref(nv);
    } else if (op < 4) {                            /* store NULL */
        rcgc_ref_store(slot, NULL);
    } else if (op < 7) {                            /* exchange, new or NULL */
        nv = op < 6 ? make_value(&value_type, h->t.id, s, 0) : NULL;
        old = rcgc_ref_exchange(slot, nv);          /* steals nv */
        if (old != NULL) {
            if (value_ok(old, &value_type, h->t.id, s, "exchange"))
                mark_removed(old, "exchange");
            rcgc_decref(old);
        }
    } else if (op < 10) {                           /* compare_exchange */
        cur = rcgc_ref_load(slot);
        if (cur != NULL && !value_ok(cur, &value_type, h->t.id, s, "load for CAS")) {
            rcgc_decref(cur);
            return;
        }
        nv = torture_chance(&w->rng, 4) ? NULL : make_value(&value_type, h->t.id, s, 0);
        if (rcgc_ref_compare_exchange(slot, cur, nv)) {
            w->cas_ok++;
            if (cur != NULL)
                mark_removed(cur, "compare_exchange");
        } else {
            w->cas_fail++;
        }
        rcgc_decref(nv);
        rcgc_decref(cur);
    } else {                                        /* the child slot */
        cur = rcgc_ref_load(slot);
        if (cur != NULL) {
            if (value_ok(cur, &value_type, h->t.id, s, "load for leaf"))
                write_leaf(w, cur);
            rcgc_decref(cur);
        }
    }
}

static void write_cas_only(wstate *w, holder *h, unsigned s)
{
    rcgc_ref *slot = &h->slot[s];
    value *cur = rcgc_ref_load(slot), *nv;

    w->ops++;
    if (cur == NULL) {
        TORTURE_VIOLATION("holder %" PRIu64 ": CAS-only slot %u loaded NULL", h->t.id, s);
        return;
    }
    if (!value_ok(cur, &value_type, h->t.id, s, "load for CAS")) {
        rcgc_decref(cur);
        return;
    }
    nv = make_value(&value_type, h->t.id, s, cur->version + 1);
    atomic_store_explicit(&nv->in_slot, 1, memory_order_relaxed);
    if (rcgc_ref_compare_exchange(slot, cur, nv)) {
        w->cas_ok++;
        atomic_fetch_add_explicit(&h->cas_done[s], 1, memory_order_relaxed);
        atomic_store_explicit(&cur->in_slot, 0, memory_order_relaxed);
        mark_removed(cur, "compare_exchange (CAS-only)");
        if (torture_chance(&w->rng, 8)) {
            /* cur left the slot for good: a CAS expecting it must fail. */
            value *other = make_value(&value_type, h->t.id, s, cur->version + 1);
            if (rcgc_ref_compare_exchange(slot, cur, other))
                TORTURE_VIOLATION("holder %" PRIu64 " slot %u: compare_exchange "
                                  "succeeded against a removed value", h->t.id, s);
            rcgc_decref(other);
        }
    } else {
        w->cas_fail++;
        atomic_store_explicit(&nv->in_slot, 0, memory_order_relaxed);
    }
    rcgc_decref(nv);
    rcgc_decref(cur);
}

static void replace_holder(wstate *w, unsigned r)
{
    holder *hn = make_holder(), *old;

    w->ops++;
    w->holders++;
    if (torture_chance(&w->rng, 2)) {
        old = rcgc_ref_exchange(&roots[r], hn);     /* steals hn */
        if (old != NULL)
            holder_ok(old, "exchange root");
        rcgc_decref(old);
    } else {
        rcgc_ref_store(&roots[r], hn);
        rcgc_decref(hn);
    }
}

static void one_round(worker *me, wstate *w)
{
    unsigned r = torture_below(&w->rng, NROOT), k, n;
    holder *h;

    if (me->writer && torture_chance(&w->rng, 256)) {
        replace_holder(w, r);
        return;
    }
    h = load_root(w, r);
    if (h == NULL)
        return;
    n = 1 + torture_below(&w->rng, 4);
    for (k = 0; k < n; k++) {
        unsigned s = torture_below(&w->rng, NSLOT);
        bool write = torture_below(&w->rng, 10) < (me->writer ? 8u : 1u);

        if (!write)
            read_slot(w, r, h, s);
        else if (s < MIXED)
            write_mixed(w, h, s);
        else
            write_cas_only(w, h, s);
    }
    rcgc_decref(h);
}

static void *worker_main(void *arg)
{
    worker *me = arg;
    wstate *w = calloc(1, sizeof *w);
    uint64_t rounds = 0;

    if (w == NULL)
        abort();
    w->rng = torture_rng_make(me->index + 1);
    torture_attach();
    while (!torture_stopping()) {
        one_round(me, w);
        if ((++rounds & 63) == 0)
            rcgc_safepoint();
        /* Other threads keep loading and replacing what a reborn one
           owned. */
        torture_pause(&w->rng, 4096, 16384);
    }
    atomic_fetch_add(&total_ops, w->ops);
    atomic_fetch_add(&total_loads, w->loads);
    atomic_fetch_add(&total_cas_ok, w->cas_ok);
    atomic_fetch_add(&total_cas_fail, w->cas_fail);
    atomic_fetch_add(&total_holders_replaced, w->holders);
    free(w);
    if (me->index & 2)
        rcgc_thread_detach();
    return NULL;            /* otherwise exit detaches */
}

int main(int argc, char **argv)
{
    worker *workers;
    unsigned i, n;
    char extra[200];

    torture_start("stress_slots", argc, argv, 2);
    n = (unsigned)torture_o.threads;
    workers = calloc(n, sizeof *workers);
    if (workers == NULL)
        abort();
    for (i = 0; i < NROOT; i++) {
        holder *h = make_holder();
        rcgc_ref_store(&roots[i], h);
        rcgc_decref(h);
    }

    rcgc_blocking_begin();
    for (i = 0; i < n; i++) {
        workers[i].index = i;
        workers[i].writer = (i & 1) != 0;
        torture_spawn(&workers[i].thread, worker_main, &workers[i]);
    }
    rcgc_blocking_end();
    torture_run_timer();
    torture_phase("join");
    rcgc_blocking_begin();
    for (i = 0; i < n; i++)
        pthread_join(workers[i].thread, NULL);
    rcgc_blocking_end();

    torture_phase("drain");
    for (i = 0; i < NROOT; i++) {
        holder *h = rcgc_ref_exchange(&roots[i], NULL);
        if (h == NULL)
            TORTURE_VIOLATION("root %u is NULL at the end", i);
        else
            holder_ok(h, "drain");
        rcgc_decref(h);         /* its finalizer checks the CAS-only slots */
    }
    free(workers);
    snprintf(extra, sizeof extra,
             "loads=%llu cas_ok=%llu cas_fail=%llu holders_replaced=%llu",
             (unsigned long long)atomic_load(&total_loads),
             (unsigned long long)atomic_load(&total_cas_ok),
             (unsigned long long)atomic_load(&total_cas_fail),
             (unsigned long long)atomic_load(&total_holders_replaced));
    return torture_finish(atomic_load(&total_ops), extra);
}
