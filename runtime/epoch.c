/*
 * epoch.c: grace periods and deferred reclamation, on liburcu.  The only
 * file that includes liburcu.
 *
 * Flavor: QSBR, for two reasons.
 *  1. Loads cost nothing.  Under QSBR an online thread is inside a read
 *     section everywhere between two quiescent states, so rcgc_ref_load
 *     needs no read lock at all (memb's lock+unlock costs ~1 ns inlined and
 *     ~10 ns through this library's call boundary).
 *  2. The owner's fast path is covered.  The owner's inline incref/decref
 *     (include/rcgc/biased.h) reads the owner word and then stores the
 *     local count; it cannot afford a read lock.  Under QSBR that window is
 *     inside the implicit read section, so after a synchronize_rcu every
 *     such operation that read an old owner word has finished.  The cycle
 *     collector's Delta-test relies on exactly this (flag, grace period,
 *     then read counts); memb would leave the owner's window uncovered.
 * The price is QSBR's contract, which rcgc's API already has: an attached
 * thread announces quiescent states at rcgc_safepoint(), goes offline in
 * rcgc_blocking_begin() and unregisters at detach.  A thread that stays
 * attached and online without ever reaching a safepoint stalls grace
 * periods: memory of released unlinked objects then waits (it is not
 * lost), and rcgc_reclaim_wait() waits with it.
 *
 * Reclamation: threads batch dead unlinked objects (object.c) and seal
 * each batch with the number of a grace period that begins after it; one
 * reclaimer thread runs grace periods on demand, and the thread frees its
 * own batches once their grace period is over (same-thread frees keep
 * malloc's per-thread caches warm).  A thread that blocks or detaches
 * hands its batches here instead, and the reclaimer frees them after a
 * grace period.  Mutators never call synchronize_rcu
 * (it would wait for every other thread's safepoint while the caller may
 * hold a user lock they need).  No call_rcu, so no helper thread of
 * liburcu's and no suppression is needed for it.
 *
 * fork (fork.c): liburcu-qsbr has no fork hooks, and a thread that fork
 * did not copy stays in its registry, online: the child's first grace
 * period would wait for it forever, and glibc hands its stack, where the
 * registry's node for it lives, to the child's next thread.  So every call
 * of ours that takes liburcu's locks (register, unregister, a grace
 * period) holds urcu_lock for reading, a fork's prepare holds it for
 * writing (no liburcu lock is then held by anyone of ours, and the
 * reclaimer is not between taking a list and freeing it), and the child
 * takes each gone thread's reader out of the registry as its own
 * unregistration would (rcgc__epoch_forget).  Callers go offline before
 * they wait for it: a grace period in progress may be waiting for them.
 *
 * ThreadSanitizer: liburcu 0.13's atomics are inline assembly that TSan
 * does not see.  Each thread releases a TSan token before every quiescent
 * state, offline transition and unregistration, and the reclaimer acquires
 * it after each grace period, so every access made before a quiescent
 * state happens-before the frees that follow the grace period.
 */
#define _GNU_SOURCE             /* PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP */
#include <string.h>
#include <time.h>
#include <urcu/urcu-qsbr.h>
#include <urcu/static/urcu-qsbr.h>  /* struct urcu_qsbr_reader, for fork only */

#include "internal.h"

#if RCGC_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static char tsan_grace_token;
#define tsan_quiescent() __tsan_release(&tsan_grace_token)
#define tsan_grace_over() __tsan_acquire(&tsan_grace_token)
#else
#define tsan_quiescent() ((void)0)
#define tsan_grace_over() ((void)0)
#endif

/* The shortest time between two grace periods run for threads' own
   batches (hand-offs are served at once). */
#define GP_PACING_US 200

static struct {
    pthread_mutex_t lock;          /* protects everything below */
    pthread_cond_t  work;          /* signalled when pending grows or stop */
    pthread_cond_t  done;          /* broadcast when a batch is reclaimed */
    rcgc__header   *pending;       /* dead unlinked objects, linked by link */
    uint64_t        handed;        /* hand-offs so far */
    uint64_t        reclaimed;     /* hand-offs whose memory is freed */
    uint64_t        gp_started;    /* grace periods begun */
    uint64_t        gp_wanted;     /* the highest one a thread waits for */
    rcgc__u64       gp_completed;  /* store_release by the reclaimer */
    bool            sleeping;
    bool            stop;
    bool            running;       /* between rcgc__epoch_start and _stop */
    pthread_t       thread;
} reclaimer = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};

#ifdef PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP
/* Writer first: a fork is not held off by grace periods that follow one
   another. */
#define URCU_LOCK_INITIALIZER PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP
#else
#define URCU_LOCK_INITIALIZER PTHREAD_RWLOCK_INITIALIZER
#endif
static pthread_rwlock_t urcu_lock = URCU_LOCK_INITIALIZER;
static const pthread_rwlock_t urcu_lock_init = URCU_LOCK_INITIALIZER;

static void *reclaimer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&reclaimer.lock);
    for (;;) {
        rcgc__header *list;
        uint64_t upto, gp;

        if (reclaimer.pending == NULL && !reclaimer.stop &&
            reclaimer.gp_wanted > reclaimer.gp_started) {
            /* Threads want another grace period for their own batches:
               pace them (GP_PACING_US), so that a thread sealing batches
               fast gets one grace period for many, and nobody wakes us
               meanwhile (we are not "sleeping"). */
            struct timespec until;

            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += GP_PACING_US * 1000;
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&reclaimer.work, &reclaimer.lock, &until);
        }
        while (reclaimer.pending == NULL && !reclaimer.stop &&
               reclaimer.gp_wanted <= reclaimer.gp_started) {
            reclaimer.sleeping = true;
            pthread_cond_wait(&reclaimer.work, &reclaimer.lock);
            reclaimer.sleeping = false;
        }
        if (reclaimer.pending == NULL && reclaimer.gp_wanted <= reclaimer.gp_started)
            break;                      /* stop, and nothing left */
        /* From taking the list to freeing it, a fork waits (urcu_lock). */
        pthread_mutex_unlock(&reclaimer.lock);
        pthread_rwlock_rdlock(&urcu_lock);
        pthread_mutex_lock(&reclaimer.lock);
        list = reclaimer.pending;
        reclaimer.pending = NULL;
        upto = reclaimer.handed;
        gp = ++reclaimer.gp_started;
        pthread_mutex_unlock(&reclaimer.lock);

        /* This thread is not registered: synchronize_rcu waits for every
           registered online thread to pass a quiescent state. */
        urcu_qsbr_synchronize_rcu();
        tsan_grace_over();
        rcgc__quarantine_list(list);
        /* Release: pairs with rcgc__epoch_gp_completed(); a thread that
           sees gp done frees its own batches sealed before it began. */
        rcgc__u64_store_release(&reclaimer.gp_completed, gp);

        pthread_mutex_lock(&reclaimer.lock);
        reclaimer.reclaimed = upto;
        pthread_cond_broadcast(&reclaimer.done);
        pthread_rwlock_unlock(&urcu_lock);
    }
    pthread_mutex_unlock(&reclaimer.lock);
    return NULL;
}

int rcgc__epoch_start(void)
{
    int err;

    reclaimer.stop = false;
    err = pthread_create(&reclaimer.thread, NULL, reclaimer_main, NULL);
    reclaimer.running = err == 0;
    return err;
}

void rcgc__epoch_stop(void)
{
    pthread_mutex_lock(&reclaimer.lock);
    reclaimer.stop = true;
    pthread_cond_signal(&reclaimer.work);
    pthread_mutex_unlock(&reclaimer.lock);
    pthread_join(reclaimer.thread, NULL);   /* drains what is pending first */
    reclaimer.running = false;
}

/* The calling thread's reader record, known before it registers (so a
   fork's child that finds it registered can always find it). */
void *rcgc__epoch_reader(void)
{
    return &URCU_TLS(urcu_qsbr_reader);
}

void rcgc__epoch_register(void)
{
    pthread_rwlock_rdlock(&urcu_lock);
    urcu_qsbr_register_thread();            /* online from here */
    pthread_rwlock_unlock(&urcu_lock);
}

void rcgc__epoch_unregister(void)
{
    tsan_quiescent();
    urcu_qsbr_thread_offline();             /* before waiting: see above */
    pthread_rwlock_rdlock(&urcu_lock);
    urcu_qsbr_unregister_thread();
    pthread_rwlock_unlock(&urcu_lock);
}

void rcgc__epoch_quiescent(void)
{
    tsan_quiescent();
    urcu_qsbr_quiescent_state();
}

void rcgc__epoch_offline(void)
{
    tsan_quiescent();
    urcu_qsbr_thread_offline();
}

void rcgc__epoch_online(void)
{
    urcu_qsbr_thread_online();
}

uint64_t rcgc__epoch_gp_request(void)
{
    uint64_t gp;

    pthread_mutex_lock(&reclaimer.lock);
    gp = reclaimer.gp_started + 1;      /* one that has not begun yet */
    if (gp > reclaimer.gp_wanted)
        reclaimer.gp_wanted = gp;
    if (reclaimer.sleeping)
        pthread_cond_signal(&reclaimer.work);
    pthread_mutex_unlock(&reclaimer.lock);
    return gp;
}

uint64_t rcgc__epoch_gp_completed(void)
{
    return rcgc__u64_load_acquire(&reclaimer.gp_completed);
}

void rcgc__epoch_defer(rcgc__header *list, size_t count)
{
    rcgc__header *tail = list;

    (void)count;
    while (tail->link != NULL)
        tail = tail->link;
    pthread_mutex_lock(&reclaimer.lock);
    tail->link = reclaimer.pending;
    reclaimer.pending = list;
    reclaimer.handed++;
    if (reclaimer.sleeping)
        pthread_cond_signal(&reclaimer.work);
    pthread_mutex_unlock(&reclaimer.lock);
}

/* A grace period from an attached (registered) thread: it goes offline
   for the wait, as synchronize_rcu must not run inside a read section
   (PITFALLS 30).  Everything any thread did before its next quiescent state
   happens-before our return. */
void rcgc__epoch_synchronize(void)
{
    tsan_quiescent();
    urcu_qsbr_thread_offline();
    pthread_rwlock_rdlock(&urcu_lock);
    urcu_qsbr_synchronize_rcu();
    pthread_rwlock_unlock(&urcu_lock);
    urcu_qsbr_thread_online();
    tsan_grace_over();
}

void rcgc__epoch_wait_reclaimed(void)
{
    uint64_t target;

    pthread_mutex_lock(&reclaimer.lock);
    target = reclaimer.handed;
    while (reclaimer.reclaimed < target)
        pthread_cond_wait(&reclaimer.done, &reclaimer.lock);
    pthread_mutex_unlock(&reclaimer.lock);
}

/* ---- fork (fork.c) --------------------------------------------------------- */

void rcgc__epoch_fork_outer(enum rcgc__fork_step step)
{
    if (step == RCGC__FORK_PREPARE) {
        pthread_rwlock_wrlock(&urcu_lock);
    } else if (step == RCGC__FORK_PARENT) {
        pthread_rwlock_unlock(&urcu_lock);
    } else {
        /* Made new: an unlock would hand it to the readers that were
           waiting, threads that are gone. */
        memcpy(&urcu_lock, &urcu_lock_init, sizeof(urcu_lock));
    }
}

void rcgc__epoch_fork_inner(enum rcgc__fork_step step)
{
    if (step == RCGC__FORK_PREPARE) {
        pthread_mutex_lock(&reclaimer.lock);
        return;
    }
    if (step == RCGC__FORK_CHILD) {
        /* Their waiters were threads that are gone. */
        pthread_cond_init(&reclaimer.work, NULL);
        pthread_cond_init(&reclaimer.done, NULL);
        reclaimer.sleeping = false;
    }
    pthread_mutex_unlock(&reclaimer.lock);
}

/* A thread that the fork did not copy: offline, and out of the registry
   (urcu_qsbr_unregister_thread on its behalf; no grace period runs now). */
void rcgc__epoch_forget(void *reader)
{
    struct urcu_qsbr_reader *r = reader;

    if (r == NULL || !r->registered)
        return;
    CMM_STORE_SHARED(r->ctr, 0);
    r->registered = 0;
    cds_list_del(&r->node);
}

/* The child's reclaimer, if the parent had one: what was pending (a whole
   list; prepare saw to it) is freed after the child's first grace period. */
int rcgc__epoch_restart(void)
{
    return reclaimer.running ? rcgc__epoch_start() : 0;
}
