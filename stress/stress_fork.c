/*
 * stress_fork.c: fork() while mutators rewire a shared graph of cycles
 * and the collector runs (PITFALLS 29).
 *
 * Workers walk paths from NROOT root slots (rcgc_ref_load at every step,
 * holding each node with its `held` marker raised) and rewire what they
 * reach: a new node whose slots point into the path (cycles), a cut, an
 * exchange.  Worker 0 also calls rcgc_collect now and then.  The main
 * thread forks every FORK_EVERY_MS, waits for the child, and forks again,
 * so that forks land in every state a worker (now and then detaching and
 * attaching again), the collector and the reclaimer can be in.
 *
 * The child (its alarm fails it if it hangs):
 *   - walks every root two levels deep: every node it reaches is intact;
 *   - makes a thread that attaches, builds 2-cycles, collects them and
 *     detaches (the runtime's threads run again in the child);
 *   - clears every root and calls rcgc_collect until it reclaims nothing
 *     (at most DRAIN_ROUNDS calls), then rcgc_reclaim_wait;
 *   - meanwhile every finalizer checks its node: a node held by a worker
 *     at the instant of the fork (its marker above zero) is held by a
 *     reference that a gone thread will never drop, so finalizing it is a
 *     premature free; and each node is finalized at most once (the id
 *     table, copied with the process);
 *   - exits with 1 if it counted a violation.
 * What the gone workers held stays alive in the child, so the child does
 * not require live == 0.
 *
 * The parent requires every child to have exited with 0, then finishes as
 * every stress program does: workers stopped, roots cleared, collected,
 * live == 0, every finalizer run once, memory back to the free hook.
 *
 * Under ThreadSanitizer, which cannot start threads in the child of a
 * multithreaded fork, and under AddressSanitizer, whose allocator (gcc
 * 12's) takes no lock around fork, so that a child whose parent had a
 * worker inside malloc's slow path deadlocks in its own first malloc of
 * that size, the main thread runs the fork handlers without forking
 * (their lock order is what TSan checks there); test_fork forks for real
 * under ASan, with its threads parked.
 */
#include "gc_torture.h"

#include <sys/wait.h>

#define NROOT         16
#define MAX_PATH      6
#define LIVE_CAP      4000
#define DRAIN_ROUNDS  8
#define FORK_EVERY_MS 20
#define CHILD_ALARM_S 60
#define FORK_FOR_REAL (!RCGC_TSAN && !RCGC_ASAN)

static rcgc_ref roots[NROOT];

static atomic_ullong total_ops;

typedef struct worker {
    pthread_t thread;
    unsigned  index;
} worker;

typedef struct wstate {
    torture_rng rng;
    gnode      *path[MAX_PATH];
    unsigned    depth;
    uint64_t    ops;
} wstate;

static gnode *make_node(wstate *w)
{
    gnode *n = gnode_new(0, GC_NSLOT, 0);

    for (unsigned s = 0; s < GC_NSLOT; s++) {
        if (torture_chance(&w->rng, 2) || w->depth == 0)
            continue;
        if (torture_chance(&w->rng, 6))
            rcgc_ref_init(&n->slot[s], n);
        else
            rcgc_ref_init(&n->slot[s], w->path[torture_below(&w->rng, w->depth)]);
    }
    return n;
}

static void rewire(wstate *w)
{
    rcgc_ref *slot;
    gnode *v = NULL, *old;

    if (w->depth > 0 && torture_chance(&w->rng, 2))
        slot = &w->path[torture_below(&w->rng, w->depth)]->slot[torture_below(&w->rng,
                                                                              GC_NSLOT)];
    else
        slot = &roots[torture_below(&w->rng, NROOT)];
    if (!gc_over_cap(LIVE_CAP) && torture_chance(&w->rng, 2))
        v = make_node(w);
    else if (w->depth > 0 && torture_chance(&w->rng, 2))
        v = rcgc_incref(w->path[torture_below(&w->rng, w->depth)]);
    if (torture_chance(&w->rng, 2)) {
        rcgc_ref_store(slot, v);
        rcgc_decref(v);
    } else {
        old = rcgc_ref_exchange(slot, v);           /* steals v */
        gc_unhold(gc_hold(old, "rcgc_ref_exchange: the old value"),
                  "the old value, before the drop");
    }
}

static void one_round(worker *me, wstate *w)
{
    gnode *n = gc_hold(rcgc_ref_load(&roots[torture_below(&w->rng, NROOT)]), "load root");
    unsigned len = 1 + torture_below(&w->rng, MAX_PATH);

    w->depth = 0;
    while (n != NULL) {
        w->path[w->depth++] = n;
        if (w->depth == len)
            break;
        n = gc_hold(rcgc_ref_load(&n->slot[torture_below(&w->rng, GC_NSLOT)]), "load slot");
    }
    for (unsigned k = 1 + torture_below(&w->rng, 2); k > 0; k--)
        rewire(w);
    if (me->index == 0 && torture_chance(&w->rng, 256))
        rcgc_collect();
    while (w->depth > 0)
        gc_unhold(w->path[--w->depth], "a path node, before the drop");
    w->ops++;
}

static void *worker_main(void *arg)
{
    worker *me = arg;
    wstate w = { .rng = torture_rng_make(me->index + 1) };
    uint64_t rounds = 0;

    torture_attach();
    while (!torture_stopping()) {
        one_round(me, &w);
        if ((++rounds & 31) == 0)
            rcgc_safepoint();
        if (torture_chance(&w.rng, 2048)) {
            /* A fork may find this thread inside detach or attach. */
            rcgc_thread_detach();
            torture_attach();
        }
    }
    atomic_fetch_add(&total_ops, w.ops);
    rcgc_thread_detach();
    return NULL;
}

/* ---- the child ---------------------------------------------------------- */

static void check_tree(gnode *n, unsigned depth)
{
    if (n == NULL)
        return;
    gnode_ok(n, "child: a node reachable from a root");
    if (depth > 0) {
        for (unsigned s = 0; s < GC_NSLOT; s++) {
            gnode *m = rcgc_ref_load(&n->slot[s]);

            check_tree(m, depth - 1);
            rcgc_decref(m);
        }
    }
}

static void *child_thread(void *arg)
{
    uint64_t *group = arg;

    if (rcgc_thread_attach() != 0)
        return NULL;
    *group = gc_group_new(32);
    for (int i = 0; i < 16; i++) {
        gnode *a = gnode_new(*group, 1, 0), *b = gnode_new(*group, 1, 0);

        rcgc_ref_init(&a->slot[0], b);
        rcgc_ref_init(&b->slot[0], a);
        rcgc_decref(a);
        rcgc_decref(b);
    }
    rcgc_collect();
    rcgc_thread_detach();
    return NULL;
}

static _Noreturn void child_main(void)
{
    unsigned long long before = atomic_load(&torture_violations);
    uint64_t group = 0;
    int fin;
    pthread_t t;
    size_t n = 1;
    unsigned round;

    alarm(CHILD_ALARM_S);
    for (unsigned i = 0; i < NROOT; i++) {
        gnode *r = rcgc_ref_load(&roots[i]);

        check_tree(r, 2);
        rcgc_decref(r);
    }
    rcgc_blocking_begin();
    if (pthread_create(&t, NULL, child_thread, &group) == 0)
        pthread_join(t, NULL);
    rcgc_blocking_end();
    fin = group ? atomic_load(&gc_group_at(group)->finalized) : 0;
    if (fin != 32)
        TORTURE_VIOLATION("child: a new thread's 16 2-cycles: %d of 32 members finalized "
                          "by its rcgc_collect", fin);
    for (unsigned i = 0; i < NROOT; i++)
        rcgc_ref_store(&roots[i], NULL);
    for (round = 0; round < DRAIN_ROUNDS && n != 0; round++)
        n = rcgc_collect();
    if (n != 0)
        TORTURE_VIOLATION("child: rcgc_collect still reclaimed %zu objects at call %u",
                          n, DRAIN_ROUNDS);
    rcgc_reclaim_wait();
    fflush(stdout);
    _exit(atomic_load(&torture_violations) != before ? 1 : 0);
}

/* ---- main ----------------------------------------------------------------- */

int main(int argc, char **argv)
{
    worker *workers;
    unsigned i, n;
    uint64_t forks = 0, failed = 0, drained;
    char more[200], extra[600];

    torture_start("stress_fork", argc, argv, 2);
    gc_setup(64);
    n = (unsigned)torture_o.threads;
    workers = calloc(n, sizeof *workers);
    if (workers == NULL)
        abort();
    rcgc_blocking_begin();
    for (i = 0; i < n; i++) {
        workers[i].index = i;
        torture_spawn(&workers[i].thread, worker_main, &workers[i]);
    }
    rcgc_blocking_end();

    while (!torture_time_up()) {
        rcgc_blocking_begin();
        torture_sleep_us(FORK_EVERY_MS * 1000);
        rcgc_blocking_end();
        if (!FORK_FOR_REAL) {
            rcgc__test_fork_handlers();
            forks++;
            continue;
        }
        pid_t pid = fork();
        if (pid < 0) {
            TORTURE_VIOLATION("fork: %s", strerror(errno));
            break;
        }
        if (pid == 0)
            child_main();
        forks++;
        rcgc_blocking_begin();      /* waiting for the child: offline */
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        rcgc_blocking_end();
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            failed++;
            if (WIFSIGNALED(status))
                TORTURE_VIOLATION("child %" PRIu64 " killed by signal %d%s", forks,
                                  WTERMSIG(status),
                                  WTERMSIG(status) == SIGALRM ? " (its alarm: it hung)" : "");
            else
                TORTURE_VIOLATION("child %" PRIu64 " exited with %d", forks,
                                  WEXITSTATUS(status));
        }
    }
    torture_stop();
    torture_phase("join");
    for (i = 0; i < n; i++)
        torture_join_attached(workers[i].thread);
    free(workers);
    if (forks == 0)
        TORTURE_VIOLATION("no fork happened");

    torture_phase("drop roots");
    for (i = 0; i < NROOT; i++)
        rcgc_ref_store(&roots[i], NULL);
    drained = gc_drain(DRAIN_ROUNDS);
    snprintf(more, sizeof more, "forks=%" PRIu64 "%s children_failed=%" PRIu64
             " drained=%" PRIu64, forks, FORK_FOR_REAL ? "" : " (handlers only: a sanitizer)",
             failed, drained);
    gc_summary(extra, sizeof extra, more);
    return torture_finish(atomic_load(&total_ops), extra);
}
