/*
 * stress_lastref.c: the last references to a fresh object, dropped by two
 * (or three) threads at the same instant, again and again.
 *
 * Threads form teams of 2 to 4 that run in lock step on a spin barrier
 * (torture_barrier).  Each iteration one object is built whose true count
 * is exactly the number of droppers, in one of these states:
 *
 *   own_local    owner drops + non-owner drops; both references local
 *                (the owner incremented for its partner)
 *   own_shared   owner drops its local reference; the non-owner counted
 *                its own in the shared word
 *   gone_local   owner exited (made by a short-lived helper thread); both
 *                references in its local count
 *   gone_shared  owner exited; one local, one shared reference
 *   third_local  owner is a live third member; both droppers are
 *                non-owners whose references are in the owner's local count
 *                (the first drop queues the object to the owner)
 *   third_shared both droppers counted themselves; the owner dropped its
 *                own first (merged, shared count 2)
 *   third_mixed  one local, one shared, owner alive
 *   third_queued as third_local, but already queued to the owner (a third
 *                non-owner decrement) when the drop starts
 *   third_inc    as third_local, and a fourth member whose reference is in
 *                the owner's local count too increments the object as the
 *                drop starts, then drops both of its references (teams of
 *                four): its increment may lift a word that a drop has just
 *                left below zero (OWING) and must make the queue entry
 *                itself (refcount.c, "Decrements by fetch_sub", rule 2)
 *   third_load   as third_local, with one more reference in a team slot:
 *                the fourth member loads the object from the slot as the
 *                drop starts (a try-increment, which makes the entry of an
 *                OWING word in its own CAS) and drops what it loaded; the
 *                owner clears the slot after the drop
 *
 * and in teams of four, half the time a third non-owner dropper joins.
 * During the drop the live owner of the third_* modes either spins calling
 * rcgc_safepoint() (it merges while they drop), spins without it (the
 * queue waits), sits in a blocking region (the droppers merge for it), or
 * enters one just as the drop starts (its drain races the drops).
 *
 * Per iteration:  B0 (stop?)  build  B1  self-increments  B2  owner lets go
 * B3  count check: rcgc_refcount == droppers (nobody merges meanwhile: a
 * merge makes rcgc_refcount read low, see the report)  B4 (start line)  drop  B5
 * owner's safepoint  B6  the id table must show exactly one finalizer run.
 * The roles rotate over the members; every member derives the iteration's
 * plan from (seed, team, iteration) so no one has to tell the others.
 */
#include "torture.h"

#define BATCH 256

typedef struct lobj {
    torture_obj t;
} lobj;

static void lobj_finalize(void *obj)
{
    torture_obj_finalize(&((lobj *)obj)->t, "lobj");
}

static const rcgc_type lobj_type = { "lobj", sizeof(lobj), NULL, lobj_finalize, 0 };

enum mode {
    OWN_LOCAL, OWN_SHARED, GONE_LOCAL, GONE_SHARED,     /* any team */
    THIRD_LOCAL, THIRD_SHARED, THIRD_MIXED, THIRD_QUEUED, /* teams of 3 or 4 */
    THIRD_INC, THIRD_LOAD,                                /* teams of 4 */
    NMODES
};
static const char *const mode_name[NMODES] = {
    "own_local", "own_shared", "gone_local", "gone_shared",
    "third_local", "third_shared", "third_mixed", "third_queued", "third_inc",
    "third_load",
};

enum owner_behaviour {
    OWNER_SAFEPOINTS,   /* spins through the drop calling rcgc_safepoint() */
    OWNER_SPINS,        /* spins without it: queued objects wait */
    OWNER_BLOCKED,      /* in a blocking region from before the count check */
    OWNER_GOES_BLOCKED, /* enters the blocking region as the drop starts */
    NBEHAVIOURS
};
static const char *const behaviour_name[NBEHAVIOURS] = {
    "safepointing", "spinning", "blocked", "going blocked",
};

typedef struct team {
    unsigned        index, size;
    unsigned        first_stream;   /* PRNG streams of the helper threads */
    torture_barrier bar;
    _Atomic(lobj *) obj;            /* this iteration's object */
    rcgc_ref        slot;           /* third_load: holds it until after the drop */
    /* Objects of exited owners, for the gone_* modes.  Touched only by the
       iteration's d0, between barriers. */
    lobj           *batch_local2[BATCH];   /* local count 2 */
    lobj           *batch_local1[BATCH];   /* local count 1 */
    unsigned        n_local2, n_local1;
    uint64_t        helpers;
    pthread_t       threads[4];
} team;

typedef struct member {
    team    *tm;
    unsigned index;                 /* in the team */
    uint64_t iterations;
    uint64_t per_mode[NMODES];
} member;

typedef struct plan {
    enum mode            mode;
    enum owner_behaviour behaviour;
    unsigned             rotation;
    bool                 third_dropper;     /* teams of 4 only */
    unsigned             jitter[3];
} plan;

static atomic_ullong total_per_mode[NMODES];
static atomic_ullong total_three_way;
static atomic_ullong total_helpers;

static plan make_plan(const team *tm, uint64_t iter)
{
    uint64_t x = torture_hash(torture_o.seed ^ ((uint64_t)tm->index << 40), iter);
    plan p;

    p.mode = (enum mode)(x % (tm->size == 4 ? NMODES : tm->size == 3 ? THIRD_INC
                                                                      : THIRD_LOCAL));
    x /= NMODES;
    p.behaviour = (enum owner_behaviour)(x % NBEHAVIOURS);
    x /= NBEHAVIOURS;
    p.rotation = (unsigned)(x % tm->size);
    x /= tm->size;
    p.third_dropper = tm->size == 4 && (x & 1) && p.mode < THIRD_INC;
    x >>= 1;
    p.jitter[0] = (unsigned)(x & 15);
    p.jitter[1] = (unsigned)((x >> 4) & 15);
    p.jitter[2] = (unsigned)((x >> 8) & 15);
    return p;
}

/* ---- objects of exited owners ------------------------------------- */

typedef struct helper_arg {
    team    *tm;
    uint64_t stream;
} helper_arg;

static lobj *new_lobj(void)
{
    lobj *o = rcgc_new(&lobj_type);

    if (o == NULL) {
        TORTURE_VIOLATION("rcgc_new failed: %s", strerror(errno));
        abort();
    }
    torture_obj_init(&o->t);
    return o;
}

static void *helper_main(void *arg)
{
    helper_arg *ha = arg;
    team *tm = ha->tm;
    torture_rng rng = torture_rng_make(ha->stream);

    torture_attach();
    while (tm->n_local2 < BATCH) {
        lobj *o = new_lobj();
        rcgc_incref(o);
        tm->batch_local2[tm->n_local2++] = o;
    }
    while (tm->n_local1 < BATCH)
        tm->batch_local1[tm->n_local1++] = new_lobj();
    if (torture_chance(&rng, 2))
        rcgc_thread_detach();
    return NULL;            /* otherwise exit detaches */
}

/* Called by an attached member; the join is a blocking region. */
static void refill(team *tm)
{
    helper_arg ha = { tm, ((uint64_t)tm->first_stream << 32) + tm->helpers++ };
    pthread_t t;

    rcgc_blocking_begin();
    torture_spawn(&t, helper_main, &ha);
    pthread_join(t, NULL);
    rcgc_blocking_end();
    atomic_fetch_add_explicit(&total_helpers, 1, memory_order_relaxed);
}

static lobj *take_gone(team *tm, bool local2)
{
    if (local2 ? tm->n_local2 == 0 : tm->n_local1 == 0)
        refill(tm);
    return local2 ? tm->batch_local2[--tm->n_local2] : tm->batch_local1[--tm->n_local1];
}

/* ---- the iteration ------------------------------------------------- */

static void spin(unsigned n)
{
    while (n--)
        torture_cpu_relax();
}

static void *member_main(void *arg)
{
    member *me = arg;
    team *tm = me->tm;
    unsigned sense = 0;
    uint64_t iter;

    torture_attach();
    for (iter = 0;; iter++) {
        plan p;
        unsigned role;
        bool d0, d1, third, d2, inc, loader, dropper, owner_alive;
        lobj *o = NULL;
        unsigned expected;
        atomic_uchar *entry;
        uint64_t id;

        if (torture_barrier_wait(&tm->bar, &sense, true))                     /* B0 */
            break;
        p = make_plan(tm, iter);
        role = (me->index + p.rotation) % tm->size;
        d0 = role == 0;
        d1 = role == 1;
        third = role == 2;
        d2 = role == 3 && p.third_dropper;
        inc = role == 3 && p.mode == THIRD_INC;
        loader = role == 3 && p.mode == THIRD_LOAD;
        dropper = d0 || d1 || d2;
        expected = 2 + (p.third_dropper || p.mode >= THIRD_INC ? 1 : 0);

        /* Build: the creator makes the object and the references the
           droppers will hold, or takes one made by an exited thread. */
        if ((d0 && p.mode <= GONE_SHARED) || (third && p.mode >= THIRD_LOCAL)) {
            switch (p.mode) {
            case OWN_LOCAL:    o = new_lobj(); rcgc_incref(o); break;
            case OWN_SHARED:   o = new_lobj(); break;
            case GONE_LOCAL:   o = take_gone(tm, true); break;
            case GONE_SHARED:  o = take_gone(tm, false); break;
            case THIRD_LOCAL:  o = new_lobj(); rcgc_incref(o); rcgc_incref(o); break;
            case THIRD_SHARED: o = new_lobj(); break;
            case THIRD_MIXED:  o = new_lobj(); rcgc_incref(o); break;
            case THIRD_QUEUED:
            case THIRD_INC:
                o = new_lobj();
                rcgc_incref(o);
                rcgc_incref(o);
                rcgc_incref(o);
                break;
            case THIRD_LOAD:
                o = new_lobj();
                rcgc_incref(o);
                rcgc_incref(o);
                rcgc_ref_store(&tm->slot, o);
                break;
            default: abort();
            }
            /* Release pairs with the acquire load after B1 (the barrier
               orders it too; this keeps the hand-off explicit). */
            atomic_store_explicit(&tm->obj, o, memory_order_release);
        }
        torture_barrier_wait(&tm->bar, &sense, true);                         /* B1 */
        o = atomic_load_explicit(&tm->obj, memory_order_acquire);
        id = o->t.id;           /* read now: after B4 the body may be gone */
        if ((dropper || inc || loader) && !torture_obj_ok(&o->t, "lastref: fresh object")) {
            TORTURE_VIOLATION("lastref: giving up on this team");
            abort();
        }

        /* Self-increments: these references are counted in the shared word. */
        if ((d1 && (p.mode == OWN_SHARED || p.mode == GONE_SHARED ||
                    p.mode == THIRD_SHARED || p.mode == THIRD_MIXED)) ||
            (d0 && p.mode == THIRD_SHARED) || d2)
            rcgc_incref(o);
        torture_barrier_wait(&tm->bar, &sense, true);                         /* B2 */

        /* The live third owner lets go of its own reference; in
           third_queued d0 also drops one extra, queueing the object. */
        if (third && p.mode >= THIRD_LOCAL)
            rcgc_decref(o);
        if (d0 && p.mode == THIRD_QUEUED)
            rcgc_decref(o);
        if (third && p.behaviour == OWNER_BLOCKED)
            rcgc_blocking_begin();      /* drains its queue before B3 */
        /* No safepoints while waiting: a waiter still inside one when the
           barrier opens would merge during the check. */
        torture_barrier_wait(&tm->bar, &sense, false);                        /* B3 */

        /* Nobody touches the object, safepoints or blocks until B4, so
           nothing merges and the count is exact. */
        if (d0) {
            size_t rc = rcgc_refcount(o);
            if (rc != expected)
                TORTURE_VIOLATION("%s: id %" PRIu64 " has count %zu before the drop, "
                                  "expected %u", mode_name[p.mode], o->t.id, rc,
                                  expected);
        }
        torture_barrier_wait(&tm->bar, &sense, false);                        /* B4 */

        /* The race: every dropper lets go of its last reference now. */
        if (third && p.behaviour == OWNER_GOES_BLOCKED)
            rcgc_blocking_begin();
        if (dropper) {
            spin(p.jitter[d0 ? 0 : d1 ? 1 : 2]);
            rcgc_decref(o);
        }
        if (inc) {
            spin(p.jitter[2]);
            rcgc_incref(o);
            rcgc_decref(o);
            rcgc_decref(o);
        }
        if (loader) {
            lobj *x;

            spin(p.jitter[2]);
            x = rcgc_ref_load(&tm->slot);
            if (x != o)
                TORTURE_VIOLATION("third_load: id %" PRIu64 " loaded as %p, not %p",
                                  id, (void *)x, (void *)o);
            if (x != NULL)
                rcgc_decref(x);
        }
        torture_barrier_wait(&tm->bar, &sense,
                             !(third && p.behaviour != OWNER_SAFEPOINTS));    /* B5 */

        /* A live owner merges what was queued to it. */
        if (third && (p.behaviour == OWNER_BLOCKED || p.behaviour == OWNER_GOES_BLOCKED))
            rcgc_blocking_end();
        if (third && p.mode == THIRD_LOAD)
            rcgc_ref_store(&tm->slot, NULL);
        owner_alive = (d0 && p.mode <= OWN_SHARED) || (third && p.mode >= THIRD_LOCAL);
        if (owner_alive)
            rcgc_safepoint();
        torture_barrier_wait(&tm->bar, &sense, true);                         /* B6 */

        /* Exactly one release, and it has happened. */
        if (d0) {
            unsigned v;

            entry = torture_track_entry(id, false);
            v = entry ? atomic_load_explicit(entry, memory_order_relaxed)
                      : TORTURE_TRACK_DONE;
            if (v != TORTURE_TRACK_DONE)
                TORTURE_VIOLATION("%s%s (owner %s): id %" PRIu64 " finalized %u times "
                                  "after the last drop and the owner's safepoint",
                                  mode_name[p.mode], p.third_dropper ? "+3rd" : "",
                                  behaviour_name[p.behaviour],
                                  id, v & 0x7fu);
            me->iterations++;
            me->per_mode[p.mode]++;
            if (p.third_dropper)
                atomic_fetch_add_explicit(&total_three_way, 1, memory_order_relaxed);
        }
        if ((iter & 15) == 0)
            rcgc_safepoint();
    }
    return NULL;
}

int main(int argc, char **argv)
{
    team *teams;
    member *members;
    unsigned nteams, t, m, left, done;
    uint64_t iterations = 0;
    char extra[400];
    size_t len;

    torture_start("stress_lastref", argc, argv, 2);

    /* Teams of three (a pair if two are left over; a lone thread joins
       the last trio as a third dropper). */
    left = (unsigned)torture_o.threads;
    nteams = left < 3 ? 1 : left / 3 + (left % 3 == 2);
    teams = calloc(nteams, sizeof *teams);
    members = calloc((size_t)torture_o.threads, sizeof *members);
    if (teams == NULL || members == NULL)
        abort();
    for (t = 0, done = 0; t < nteams; t++) {
        unsigned size = left >= 3 ? 3 : left;

        if (t == nteams - 1)
            size = left;        /* 2, 3 or 4 */
        teams[t].index = t;
        teams[t].size = size;
        teams[t].first_stream = 1000 + t;
        torture_barrier_init(&teams[t].bar, size);
        for (m = 0; m < size; m++) {
            members[done + m].tm = &teams[t];
            members[done + m].index = m;
        }
        done += size;
        left -= size;
    }

    rcgc_blocking_begin();
    for (t = 0, done = 0; t < nteams; t++) {
        for (m = 0; m < teams[t].size; m++)
            torture_spawn(&teams[t].threads[m], member_main, &members[done + m]);
        done += teams[t].size;
    }
    rcgc_blocking_end();
    torture_run_timer();
    torture_phase("join");
    rcgc_blocking_begin();
    for (t = 0; t < nteams; t++)
        for (m = 0; m < teams[t].size; m++)
            pthread_join(teams[t].threads[m], NULL);
    rcgc_blocking_end();

    torture_phase("drain");
    for (t = 0; t < nteams; t++) {
        while (teams[t].n_local2 > 0) {
            lobj *o = teams[t].batch_local2[--teams[t].n_local2];
            rcgc_decref(o);
            rcgc_decref(o);
        }
        while (teams[t].n_local1 > 0)
            rcgc_decref(teams[t].batch_local1[--teams[t].n_local1]);
    }
    for (m = 0; m < (unsigned)torture_o.threads; m++) {
        iterations += members[m].iterations;
        for (t = 0; t < NMODES; t++)
            total_per_mode[t] += members[m].per_mode[t];
    }
    len = (size_t)snprintf(extra, sizeof extra, "teams=%u", nteams);
    for (t = 0; t < NMODES; t++)
        len += (size_t)snprintf(extra + len, sizeof extra - len, " %s=%llu", mode_name[t],
                                (unsigned long long)atomic_load(&total_per_mode[t]));
    snprintf(extra + len, sizeof extra - len, " three_way=%llu helpers=%llu",
             (unsigned long long)atomic_load(&total_three_way),
             (unsigned long long)atomic_load(&total_helpers));
    free(members);
    free(teams);
    return torture_finish(iterations, extra);
}
