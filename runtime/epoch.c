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
 * ThreadSanitizer: liburcu 0.13's atomics are inline assembly that TSan
 * does not see.  Each thread releases a TSan token before every quiescent
 * state, offline transition and unregistration, and the reclaimer acquires
 * it after each grace period, so every access made before a quiescent
 * state happens-before the frees that follow the grace period.
 */
#define _POSIX_C_SOURCE 200809L
#include <time.h>
#include <urcu/urcu-qsbr.h>

#include "internal.h"

#if defined(__SANITIZE_THREAD__)
#define RCGC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RCGC_TSAN 1
#endif
#endif

#ifdef RCGC_TSAN
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
    pthread_t       thread;
} reclaimer = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};

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
    }
    pthread_mutex_unlock(&reclaimer.lock);
    return NULL;
}

int rcgc__epoch_start(void)
{
    reclaimer.stop = false;
    return pthread_create(&reclaimer.thread, NULL, reclaimer_main, NULL);
}

void rcgc__epoch_stop(void)
{
    pthread_mutex_lock(&reclaimer.lock);
    reclaimer.stop = true;
    pthread_cond_signal(&reclaimer.work);
    pthread_mutex_unlock(&reclaimer.lock);
    pthread_join(reclaimer.thread, NULL);   /* drains what is pending first */
}

void rcgc__epoch_register(void)
{
    urcu_qsbr_register_thread();            /* online from here */
}

void rcgc__epoch_unregister(void)
{
    tsan_quiescent();
    urcu_qsbr_unregister_thread();
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
    urcu_qsbr_synchronize_rcu();
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
