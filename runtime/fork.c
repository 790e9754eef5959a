/*
 * fork.c: the runtime across fork() (PITFALLS 29).
 *
 * fork copies the calling thread alone.  Whatever another thread was doing
 * stops where it was: a lock it held stays held, a list it was relinking
 * stays half relinked, a condition variable it waited on keeps it as a
 * waiter, and liburcu keeps it in its registry, online, so that the
 * child's first grace period would wait for it forever.  Three handlers,
 * registered by the first rcgc_init, make the child a process with one
 * attached thread (the forking one, if it was attached) and running
 * collector and reclaimer threads.
 *
 * prepare  the forking thread goes offline, as for a blocking region (a
 *          grace period in progress, which a collection or the reclaimer
 *          may be waiting on while holding what we are about to take,
 *          must not wait for us); then it takes, in this order, which is
 *          the order in which the runtime nests them:
 *            collect_mutex                (no collection is running)
 *            urcu_lock, for writing       (no call into liburcu's locks, and
 *                                          the reclaimer holds no list)
 *            rcgc__rt.lock, gc.lock, the registry's shard locks,
 *            the weak-reference stripes, the thread buckets' locks
 *                                         (an upgrade under its stripe's
 *                                          lock may queue the object to
 *                                          its owner: refcount.c, rule 2),
 *            the reclaimer's lock, the central pool's, the quarantine's.
 *          Every structure of the runtime is then whole, and no thread of
 *          the runtime is inside liburcu's registry or grace-period code.
 * parent   lets them go in the reverse order; the thread comes back online.
 * child    lets them go, makes condition variables and semaphores new (their
 *          waiters are gone), and counts again the candidates a thread
 *          may have left out of their count (collector.c).  Then each other
 *          thread leaves as rcgc_thread_detach would have made it leave,
 *          done on its behalf (thread.c): out of the thread registry, so
 *          that its objects are merged by whoever next meets them (I4, as
 *          for any thread that has left); its candidates to the collector;
 *          its dead objects to the reclaimer; its liburcu reader out of
 *          liburcu's registry (epoch.c).  The reclaimer and the collector
 *          thread start again, the forking thread comes back online, and it
 *          merges the objects that were queued to the gone threads and
 *          releases the ones whose release they had yet to begin, or had
 *          begun and left on their lists, torn, for their memory
 *          (object.c, "Order"; the release finds them finalized and
 *          releases what is left in their slots).
 *
 * What a gone thread held on its stack is a reference no one can drop, in
 * the child as after any thread that dies without detaching: those
 * objects stay alive (and are listed by RCGC_DEBUG_LEAK).  So is an object
 * whose teardown it had begun and not yet brought to its slots (and the
 * weak-reference callbacks that teardown had yet to run: their handles
 * are never freed).  Nothing
 * makes the fork wait for the few instructions of a count's slow path.
 * A thread stopped while adding a candidate to its root chunk (its slot
 * claimed) would take the chunk with it, and every candidate in it: the
 * child hands over the chunk and the candidate its records name
 * (th->adding, adding_chunk; rcgc__roots_orphan), except when the fork
 * falls on the instruction between the claim and its record, or inside
 * the push of a full chunk or a flush's claim (the chunk's candidates
 * then go unexamined in the child), or between the fetch_and that makes
 * the candidate the thread's and its record.  A thread stopped in the
 * middle of merging an object's counts (th->merging) would leave the
 * count reading low, and the word with no owner and not merged: the child
 * finishes that merge, with the gone thread's references in the count.
 * The record goes in the instruction before the merge's CAS (after it,
 * another thread may free the object), so a fork that falls between the
 * two still leaves the object so.  An
 * object whose finalizer a gone thread was running (its release loop's,
 * th->finalizing) would stay DYING, and a load or weak-reference upgrade
 * that met it (the finalizer had stored it into a slot, or made a weak
 * reference to it) would wait forever: the child takes DYING off it.
 * It then lives on with the gone thread's reference, half finalized
 * (FINALIZED: its finalizer never runs again), or is dead if that
 * reference was already given back.
 *
 * fork inside a finalizer or a weak reference's callback run by a
 * collection (the thread holds collect_mutex and is part-way through
 * freeing a garbage set): the handlers do nothing, and the child may only
 * exec or _exit, as POSIX allows for any multithreaded program.  The
 * application's own use of liburcu-qsbr, if any, is not covered.
 */
#include "internal.h"

/* The forking thread's own: two threads may fork at once (the second
   waits in prepare for collect_mutex); the child inherits the copy. */
static __thread struct {
    bool held;                     /* prepare took the locks */
    bool offline;                  /* ... and began a blocking region */
} forking;

static void fork_prepare(void)
{
    rcgc__thread *th = rcgc__tls_thread;

    forking.held = th == NULL || !th->in_collection;
    if (!forking.held)
        return;
    forking.offline = th != NULL && !th->in_blocking;
    if (forking.offline)
        rcgc_blocking_begin();
    rcgc__collector_fork_outer(RCGC__FORK_PREPARE);
    rcgc__epoch_fork_outer(RCGC__FORK_PREPARE);
    pthread_mutex_lock(&rcgc__rt.lock);
    rcgc__collector_fork_inner(RCGC__FORK_PREPARE);
    rcgc__weakrefs_fork(RCGC__FORK_PREPARE);
    rcgc__threads_fork(RCGC__FORK_PREPARE);
    rcgc__epoch_fork_inner(RCGC__FORK_PREPARE);
    rcgc__mem_fork(RCGC__FORK_PREPARE);
    rcgc__quarantine_fork(RCGC__FORK_PREPARE);
}

static void let_go(enum rcgc__fork_step step)
{
    rcgc__quarantine_fork(step);
    rcgc__mem_fork(step);
    rcgc__epoch_fork_inner(step);
    rcgc__threads_fork(step);
    rcgc__weakrefs_fork(step);
    rcgc__collector_fork_inner(step);
    pthread_mutex_unlock(&rcgc__rt.lock);
    rcgc__epoch_fork_outer(step);
    rcgc__collector_fork_outer(step);
}

static void fork_parent(void)
{
    if (!forking.held)
        return;
    let_go(RCGC__FORK_PARENT);
    if (forking.offline)
        rcgc_blocking_end();
}

static void fork_child(void)
{
    rcgc__header *merges = NULL, *releases = NULL;
    rcgc__thread *th;
    bool running, attached, blocking;

    if (!forking.held)
        return;
    running = rcgc__rt.running;    /* rcgc__rt.lock is held */
    let_go(RCGC__FORK_CHILD);
    if (!running)
        return;
    rcgc__threads_forget_others(&merges, &releases);
    if (rcgc__epoch_restart() != 0 || rcgc__gc_restart() != 0)
        rcgc__fatal("fork", "the child cannot start the runtime's threads", NULL);
    if (forking.offline)
        rcgc_blocking_end();
    if (merges == NULL && releases == NULL)
        return;

    /* Count operations need an attached thread outside a blocking region;
       finalizers may run here, as in any decrement. */
    attached = rcgc__tls_thread != NULL;
    if (!attached && rcgc_thread_attach() != 0)
        rcgc__fatal("fork", "the child cannot attach to merge what the gone threads left",
                    NULL);
    th = rcgc__tls_thread;
    blocking = th->in_blocking;
    if (blocking)
        rcgc_blocking_end();
    rcgc__merge_list(merges);
    while (releases != NULL) {
        rcgc__header *h = releases;
        releases = h->link;
        rcgc__release(h);
    }
    if (blocking)
        rcgc_blocking_begin();
    if (!attached)
        rcgc_thread_detach();
}

void rcgc__fork_lock_stripes(pthread_mutex_t *first, size_t n, size_t stride,
                             enum rcgc__fork_step step)
{
    for (size_t i = 0; i < n; i++) {
        size_t k = step == RCGC__FORK_PREPARE ? i : n - 1 - i;
        pthread_mutex_t *lock = (pthread_mutex_t *)((char *)first + k * stride);

        if (step == RCGC__FORK_PREPARE)
            pthread_mutex_lock(lock);
        else
            pthread_mutex_unlock(lock);
    }
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void register_handlers(void)
{
    if (pthread_atfork(fork_prepare, fork_parent, fork_child) != 0)
        rcgc__fatal("rcgc_init", "pthread_atfork failed", NULL);
}

void rcgc__fork_setup(void)
{
    pthread_once(&fork_once, register_handlers);
}

/* The prepare and parent handlers without a fork: ThreadSanitizer builds
   check their lock order this way (it cannot run threads in the child of
   a multithreaded fork). */
void rcgc__test_fork_handlers(void)
{
    fork_prepare();
    fork_parent();
}
