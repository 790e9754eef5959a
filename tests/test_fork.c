/*
 * test_fork.c: the runtime across fork() (PITFALLS 29: locks, the collector
 * thread, liburcu's registry).
 *
 * beside busy threads: the main thread forks while
 *   S, attached and online, is between two safepoints, with objects
 *     queued to it by the main thread (their merge is S's to do) and
 *     objects of its own the main thread holds;
 *   W rewires a shared slot and drops 2-cycles, with safepoints, while the
 *     background collector runs;
 *   B sits in a blocking region.
 * An online reader that is gone would hold up the child's first grace
 * period forever if the child kept it in liburcu's registry.
 * The child must: merge and free what was queued to S (its owner is gone);
 * free S's objects at the main thread's last decrement; collect cycles
 * (the collector thread runs again, grace periods end); reclaim memory;
 * attach a new thread; use weak references; count one thread besides the
 * collector; shut down.  The parent must go on as if nothing happened.
 *
 * under churn: 24 forks while two threads build, share and drop cycles,
 * from an attached thread, from one inside a blocking region, and from a
 * thread that is not attached; each child collects, reclaims and shuts
 * down.
 *
 * inside an OWING window: D has dropped a reference by fetch_sub and not
 * yet made the queue entry its CAS would make; in the child another
 * thread increments the object without waiting for D, which is gone.
 *
 * inside a merge: M has begun a merge of its object's counts (owner word
 * and local count cleared) and not yet made its CAS; the child finishes
 * it, so the count reads right and the word is merged.
 *
 * inside a finalizer: F's finalizer has stored its object into a slot and
 * made a weak reference to it, and has not returned; the child takes
 * DYING off the object, so a load and an upgrade return it.
 *
 * inside a teardown: T's release of a tree has reached the root's slots
 *   (the root waits on T's release list, torn, for its memory, beneath its
 *   left child) and stopped in the right child's finalizer; the child
 *   frees the root without finalizing it again, tears down the left
 *   subtree, and keeps the right one, which T's lost reference holds.
 *
 * inside a candidate's add: A has claimed its root chunk to add a
 * candidate and not yet added it; the child collects that chunk's
 * candidates and the one being added.
 *
 * after shutdown: a child of a process whose runtime was shut down can
 * start its own.
 *
 * What a child collected is told by its finalizers (rcgc_collect's count
 * may be smaller: a background collection, woken by the candidates the
 * gone threads left, can take some first).
 *
 * Under ThreadSanitizer the handlers run without a fork, and under
 * AddressSanitizer the threads that allocate are parked while a thread
 * forks (fork_and_check, park_all).
 *
 * A child reports each check on a pipe as one line, "1 what" or "0 what";
 * the parent turns them into test points.  An alarm kills a child that
 * hangs, and the parent reports how it ended.  Children leave by _exit:
 * what the gone threads held on their stacks stays allocated there, as
 * after any thread that dies without detaching (fork.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"
#include "gc_test.h"

#define CHILD_ALARM_S 60

/* ---- types ------------------------------------------------------------- */

#define MAGIC 0x6b1dfa11u

typedef struct node {
    rcgc_ref a, b;
    unsigned magic;
} node;

static unsigned fin_node, fin_leaf, fin_fresh;     /* atomic */

static void node_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    node *n = obj;

    visit(&n->a, ctx);
    visit(&n->b, ctx);
}

static void node_finalize(void *obj)
{
    node *n = obj;

    if (n->magic != MAGIC)
        abort();
    n->magic = 0;
    __atomic_fetch_add(&fin_node, 1, __ATOMIC_RELAXED);
}

static void fresh_finalize(void *obj)
{
    (void)obj;
    __atomic_fetch_add(&fin_fresh, 1, __ATOMIC_RELAXED);
}

static void leaf_finalize(void *obj)
{
    (void)obj;
    __atomic_fetch_add(&fin_leaf, 1, __ATOMIC_RELAXED);
}

static const rcgc_type node_type = { "fork_node", sizeof(node), node_traverse, node_finalize, 0 };
/* Made in a child only: its finalizer count says what the child collected. */
static const rcgc_type fresh_type = { "fork_fresh", sizeof(node), node_traverse, fresh_finalize,
                                      0 };
static const rcgc_type leaf_type = { "fork_leaf", 16, NULL, leaf_finalize, 0 };

static unsigned count_of(unsigned *c)
{
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

static node *new_node(const rcgc_type *type)
{
    node *n = rcgc_new(type);

    if (n == NULL)
        bail_out("rcgc_new: %s", strerror(errno));
    n->magic = MAGIC;
    return n;
}

/* A 2-cycle, dropped: garbage for the collector. */
static void drop_pair(const rcgc_type *type)
{
    node *x = new_node(type), *y = new_node(type);

    rcgc_ref_init(&x->a, y);
    rcgc_ref_init(&y->a, x);
    rcgc_decref(x);
    rcgc_decref(y);
}

static size_t attached_threads(void)
{
    size_t n;

    pthread_mutex_lock(&rcgc__rt.lock);
    n = rcgc__rt.nthreads;
    pthread_mutex_unlock(&rcgc__rt.lock);
    return n;
}

/* ---- the child's report ------------------------------------------------- */

static int report_fd = -1;
static int child_failed;

__attribute__((format(printf, 2, 3)))
static void report(int cond, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    line[0] = cond ? '1' : '0';
    line[1] = ' ';
    va_start(ap, fmt);
    n = vsnprintf(line + 2, sizeof line - 3, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof line - 4)
        n = (int)sizeof line - 4;
    line[2 + n] = '\n';
    if (write(report_fd, line, (size_t)n + 3) < 0)
        _exit(3);
    if (!cond)
        child_failed = 1;
}

/*
 * AddressSanitizer's allocator (gcc 12's) takes no lock around fork: a
 * child whose parent had a thread inside the allocator's slow path
 * deadlocks in its own first malloc of that size.  Under ASan the threads
 * that allocate park (attached and online, at safepoints) while a thread
 * forks, so the child's logic still runs under ASan; the other builds
 * fork while they allocate.
 */
static int park_req, parked, parkers;

static void maybe_park(void)
{
    if (!RCGC_ASAN || !__atomic_load_n(&park_req, __ATOMIC_ACQUIRE))
        return;
    __atomic_fetch_add(&parked, 1, __ATOMIC_ACQ_REL);
    while (__atomic_load_n(&park_req, __ATOMIC_ACQUIRE)) {
        rcgc_safepoint();
        sched_yield();
    }
    __atomic_fetch_sub(&parked, 1, __ATOMIC_ACQ_REL);
}

static void park_all(bool on)
{
    bool offline;

    if (!RCGC_ASAN)
        return;
    __atomic_store_n(&park_req, on, __ATOMIC_RELEASE);
    offline = rcgc__tls_thread != NULL && !rcgc__tls_thread->in_blocking;
    if (offline)
        rcgc_blocking_begin();
    while (on && __atomic_load_n(&parked, __ATOMIC_ACQUIRE) < __atomic_load_n(&parkers,
                                                                              __ATOMIC_ACQUIRE))
        sched_yield();
    if (offline)
        rcgc_blocking_end();
}

/* Forks; the child runs fn (which reports) and _exits; the parent turns
   the child's lines into test points, expecting `points` of them, and
   checks how the child ended. */
static void fork_and_check(const char *name, void (*fn)(void *), void *arg, int points)
{
    int fds[2], got = 0, status;
    bool offline;
    pid_t pid;
    FILE *in;
    char line[512];

    if (RCGC_TSAN) {
        /* ThreadSanitizer cannot start threads in the child of a
           multithreaded fork ("dup thread with used id": glibc gives the
           child's new threads the gone threads' stacks, and TSan still
           knows them).  The handlers run without a fork, beside the
           same threads: TSan checks their lock order against the
           runtime's. */
        (void)fn;
        (void)arg;
        rcgc__test_fork_handlers();
        skip("%s: %d checks in a child (not under ThreadSanitizer)", name, points);
        return;
    }
    if (pipe(fds) != 0)
        bail_out("pipe: %s", strerror(errno));
    park_all(true);
    pid = fork();
    park_all(false);
    if (pid < 0)
        bail_out("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        report_fd = fds[1];
        alarm(CHILD_ALARM_S);
        fn(arg);
        _exit(child_failed ? 1 : 0);
    }
    close(fds[1]);
    /* Waiting for the child: offline, or our grace periods wait for it. */
    offline = rcgc__tls_thread != NULL && !rcgc__tls_thread->in_blocking;
    if (offline)
        rcgc_blocking_begin();
    in = fdopen(fds[0], "r");
    while (in != NULL && fgets(line, sizeof line, in) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        ok(line[0] == '1', "%s: child: %s", name, line + 2);
        got++;
    }
    if (in != NULL)
        fclose(in);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (offline)
        rcgc_blocking_end();
    if (!ok(got == points, "%s: the child made all its %d checks", name, points))
        diag("it made %d", got);
    if (!ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the child exited with 0", name)) {
        if (WIFSIGNALED(status))
            diag("killed by signal %d%s", WTERMSIG(status),
                 WTERMSIG(status) == SIGALRM ? " (the alarm: it hung)" : "");
        else
            diag("exit status %d", WEXITSTATUS(status));
    }
}

/* ---- beside busy threads ------------------------------------------------ */

#define NQ 200       /* S's objects queued to S by the main thread */
#define ND 100       /* S's objects the main thread holds */

static void *q_objs[NQ], *d_objs[ND];
static int s_ready, s_stop, w_stop, b_stop, w_rounds;
static rcgc_ref shared_slot;        /* rewired by W, loaded by the main thread */

static void flag_set(int *f) { __atomic_store_n(f, 1, __ATOMIC_RELEASE); }
static int flag(int *f) { return __atomic_load_n(f, __ATOMIC_ACQUIRE); }

/* Busy, not flooding: the garbage a child inherits stays within what a
   sanitizer build's collector takes in a moment (a child that collects
   millions of objects under ASan beside other tests runs into its alarm). */
static void pause_offline(void)
{
    rcgc_blocking_begin();
    usleep(1000);
    rcgc_blocking_end();
}

static void *s_main(void *arg)
{
    (void)arg;
    if (rcgc_thread_attach() != 0)
        bail_out("S cannot attach");
    for (int i = 0; i < NQ; i++)
        q_objs[i] = rcgc_new(&leaf_type);      /* the main thread gets the reference */
    for (int i = 0; i < ND; i++)
        d_objs[i] = rcgc_new(&leaf_type);
    flag_set(&s_ready);
    /* Between two safepoints: our merge queue fills and stays full.  We
       let grace periods end (the test reaches into epoch.c for that):
       one that waited for us would hold up the parent's collection, and
       the fork's prepare waits for a collection in progress (fork.c). */
    while (!flag(&s_stop)) {
        rcgc__epoch_quiescent();
        sched_yield();
    }
    rcgc_safepoint();
    rcgc_thread_detach();
    return NULL;
}

static void *w_main(void *arg)
{
    (void)arg;
    if (rcgc_thread_attach() != 0)
        bail_out("W cannot attach");
    while (!flag(&w_stop)) {
        node *n, *m;

        maybe_park();
        n = new_node(&node_type);
        m = new_node(&node_type);

        rcgc_ref_init(&n->a, m);
        rcgc_decref(m);
        rcgc_ref_store(&shared_slot, n);
        rcgc_decref(n);
        drop_pair(&node_type);
        rcgc_safepoint();
        if ((__atomic_add_fetch(&w_rounds, 1, __ATOMIC_RELAXED) & 15) == 0)
            pause_offline();
    }
    rcgc_thread_detach();
    return NULL;
}

static void *b_main(void *arg)
{
    (void)arg;
    if (rcgc_thread_attach() != 0)
        bail_out("B cannot attach");
    rcgc_blocking_begin();
    while (!flag(&b_stop))
        usleep(1000);
    rcgc_blocking_end();
    rcgc_thread_detach();
    return NULL;
}

static void weak_cb(rcgc_weakref *w, void *ctx)
{
    (void)w;
    __atomic_fetch_add((unsigned *)ctx, 1, __ATOMIC_RELAXED);
}

static void *child_thread_main(void *arg)
{
    size_t *collected = arg;

    if (rcgc_thread_attach() != 0)
        return NULL;
    for (int i = 0; i < 50; i++)
        drop_pair(&fresh_type);
    *collected = rcgc_collect();
    rcgc_thread_detach();
    return NULL;
}

static node *loaded;                /* what the main thread loaded from shared_slot */

static void busy_child(void *arg)
{
    unsigned leaf0 = count_of(&fin_leaf), fresh0, called = 0;
    size_t n, collected_there = 0;
    pthread_t t;
    rcgc_weakref *w;
    node *x;

    (void)arg;
    /* The handler merged what was queued to S: each was the last reference. */
    report(leaf0 == NQ, "the %d objects queued to a gone thread were merged and freed (%u)",
           NQ, leaf0);
    report(attached_threads() == 2, "the gone threads left: attached %zu (this one and the "
           "collector)", attached_threads());
    for (int i = 0; i < ND; i++)
        rcgc_decref(d_objs[i]);
    report(count_of(&fin_leaf) == leaf0 + ND,
           "a gone thread's objects are freed at their last decrement (%u of %d)",
           count_of(&fin_leaf) - leaf0, ND);
    report(loaded != NULL && loaded->magic == MAGIC, "what the parent loaded is intact");
    rcgc_decref(loaded);

    for (int i = 0; i < 500; i++)
        drop_pair(&fresh_type);
    n = rcgc_collect();
    report(count_of(&fin_fresh) == 1000,
           "the collector collects (%u of 1000 finalized; rcgc_collect: %zu)",
           count_of(&fin_fresh), n);

    rcgc_reclaim_wait();
    report(1, "rcgc_reclaim_wait returns (grace periods end)");

    fresh0 = count_of(&fin_fresh);
    if (pthread_create(&t, NULL, child_thread_main, &collected_there) == 0) {
        rcgc_blocking_begin();      /* waiting: offline (the thread's grace periods) */
        pthread_join(t, NULL);
        rcgc_blocking_end();
    }
    report(count_of(&fin_fresh) == fresh0 + 100,
           "a new thread attaches, makes cycles, collects them, detaches (%u, %zu)",
           count_of(&fin_fresh) - fresh0, collected_there);

    x = new_node(&fresh_type);
    w = rcgc_weakref_new(x, weak_cb, &called);
    report(w != NULL && rcgc_weakref_get(w) == x, "a weak reference upgrades");
    rcgc_decref(x);                 /* get's reference */
    rcgc_decref(x);
    report(w != NULL && rcgc_weakref_get(w) == NULL && called == 1,
           "... is cleared at the death, its callback run once");
    rcgc_weakref_free(w);

    rcgc_shutdown();
    report(1, "rcgc_shutdown returns");
}

#define BUSY_CHILD_POINTS 10

static void beside_busy_threads(void)
{
    pthread_t s, w, b;
    uint64_t live0;
    unsigned leaf0;

    if (rcgc_init(NULL) != 0)
        bail_out("rcgc_init");
    live0 = live_now();
    leaf0 = count_of(&fin_leaf);
    parkers = 1;                    /* W */
    if (pthread_create(&s, NULL, s_main, NULL) != 0 ||
        pthread_create(&w, NULL, w_main, NULL) != 0 ||
        pthread_create(&b, NULL, b_main, NULL) != 0)
        bail_out("pthread_create");
    while (!flag(&s_ready))
        sched_yield();
    for (int i = 0; i < NQ; i++)
        rcgc_decref(q_objs[i]);     /* S is online: queued to S */
    ok(count_of(&fin_leaf) == leaf0, "objects queued to a thread without safepoints wait");
    while (__atomic_load_n(&w_rounds, __ATOMIC_RELAXED) < 1000)
        rcgc_safepoint();
    loaded = rcgc_ref_load(&shared_slot);

    fork_and_check("beside busy threads", busy_child, NULL, BUSY_CHILD_POINTS);

    /* The parent goes on. */
    ok(loaded != NULL && loaded->magic == MAGIC, "parent: what it loaded is intact");
    rcgc_decref(loaded);
    flag_set(&s_stop);
    pthread_join(s, NULL);
    ok(count_of(&fin_leaf) == leaf0 + NQ, "parent: S merged its queue at its safepoint (%u)",
       count_of(&fin_leaf) - leaf0);
    for (int i = 0; i < ND; i++)
        rcgc_decref(d_objs[i]);
    flag_set(&w_stop);
    flag_set(&b_stop);
    pthread_join(w, NULL);
    pthread_join(b, NULL);
    parkers = 0;
    rcgc_ref_store(&shared_slot, NULL);
    rcgc_collect();
    rcgc_reclaim_wait();
    ok(live_now() == live0, "parent: every object freed (live %llu, was %llu)",
       (unsigned long long)live_now(), (unsigned long long)live0);
    ok(count_of(&fin_leaf) == leaf0 + NQ + ND, "parent: every leaf finalized once");
    rcgc_shutdown();
}

/* ---- under churn --------------------------------------------------------- */

#define FORKS 24

static int churn_stop;
static rcgc_ref churn_slots[8];

static void *churn_main(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;

    if (rcgc_thread_attach() != 0)
        bail_out("churn cannot attach");
    while (!flag(&churn_stop)) {
        node *n, *m;

        maybe_park();
        n = new_node(&node_type);

        seed = seed * 1103515245u + 12345u;
        m = rcgc_ref_load(&churn_slots[(seed >> 16) % 8]);
        if (m != NULL) {
            if (m->magic != MAGIC)
                abort();
            rcgc_ref_init(&n->a, m);
            rcgc_ref_store(&m->a, NULL);        /* no chain back through history */
            rcgc_decref(m);
        }
        rcgc_ref_init(&n->b, n);                /* a self-cycle */
        rcgc_ref_store(&churn_slots[(seed >> 20) % 8], n);
        rcgc_decref(n);
        if ((seed & 15) == 0) {
            rcgc_safepoint();
            pause_offline();
        }
    }
    rcgc_thread_detach();
    return NULL;
}

enum { FROM_ATTACHED, FROM_BLOCKING, FROM_UNATTACHED };

static void churn_child(void *arg)
{
    int from = (int)(intptr_t)arg;
    unsigned fresh0 = count_of(&fin_fresh);
    int attach_err = 0;
    size_t n;

    if (from == FROM_UNATTACHED)
        attach_err = rcgc_thread_attach();
    else if (from == FROM_BLOCKING)
        rcgc_blocking_end();
    report(attach_err == 0, "the forking thread can count (attach: %d)", attach_err);
    for (int i = 0; i < 20; i++)
        drop_pair(&fresh_type);
    n = rcgc_collect();
    report(count_of(&fin_fresh) - fresh0 == 40, "collects (%u of 40; rcgc_collect: %zu)",
           count_of(&fin_fresh) - fresh0, n);
    rcgc_reclaim_wait();
    for (int i = 0; i < 8; i++)
        rcgc_ref_store(&churn_slots[i], NULL);
    rcgc_shutdown();
    report(1, "reclaims and shuts down");
}

#define CHURN_CHILD_POINTS 3

struct fork_from { int from; };

static void *unattached_forker(void *arg)
{
    struct fork_from *f = arg;

    fork_and_check("under churn, from an unattached thread", churn_child,
                   (void *)(intptr_t)f->from, CHURN_CHILD_POINTS);
    return NULL;
}

static void under_churn(void)
{
    pthread_t t[2];
    uint64_t live0;

    if (rcgc_init(NULL) != 0)
        bail_out("rcgc_init");
    live0 = live_now();
    parkers = 2;
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, churn_main, (void *)(uintptr_t)(i + 1)) != 0)
            bail_out("pthread_create");
    for (int k = 0; k < FORKS; k++) {
        int from = k % 3;

        usleep(2000);
        if (from == FROM_UNATTACHED) {
            struct fork_from f = { from };
            pthread_t u;

            rcgc_blocking_begin();      /* we wait for the forker: offline */
            if (pthread_create(&u, NULL, unattached_forker, &f) != 0)
                bail_out("pthread_create");
            pthread_join(u, NULL);
            rcgc_blocking_end();
        } else if (from == FROM_BLOCKING) {
            rcgc_blocking_begin();
            fork_and_check("under churn, from a blocking region", churn_child,
                           (void *)(intptr_t)from, CHURN_CHILD_POINTS);
            rcgc_blocking_end();
        } else {
            fork_and_check("under churn, from an attached thread", churn_child,
                           (void *)(intptr_t)from, CHURN_CHILD_POINTS);
        }
        rcgc_safepoint();
    }
    flag_set(&churn_stop);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    parkers = 0;
    for (int i = 0; i < 8; i++)
        rcgc_ref_store(&churn_slots[i], NULL);
    rcgc_collect();
    rcgc_reclaim_wait();
    ok(live_now() == live0, "under churn: parent: every object freed (live %llu, was %llu)",
       (unsigned long long)live_now(), (unsigned long long)live0);
    rcgc_shutdown();
}

/* ---- inside an OWING window ------------------------------------------------ */

/* ---- a thread stopped part-way --------------------------------------------- */

/* The stopped thread waits offline for *go, so that no grace period waits
   for it (a test's liberty where a real thread would be online). */
static void stop_offline(int *go)
{
    rcgc_blocking_begin();
    while (!flag(go))
        sched_yield();
    rcgc_blocking_end();
}

/* Runs fn on a new thread, waits for it to set *stopped, forks (the child
   runs child and makes `points` checks), then lets the thread go on and
   joins it. */
static void fork_while_stopped(const char *name, void *(*fn)(void *), int *stopped, int *go,
                               void (*child)(void *), int points)
{
    pthread_t t;

    if (pthread_create(&t, NULL, fn, NULL) != 0)
        bail_out("pthread_create");
    while (!flag(stopped))
        sched_yield();
    fork_and_check(name, child, NULL, points);
    flag_set(go);
    rcgc_blocking_begin();
    pthread_join(t, NULL);
    rcgc_blocking_end();
}

/* D drops a reference by the fetch_sub the inline rcgc_decref makes, which
   leaves the word OWING (refcount.c, "Decrements by fetch_sub"), and stops
   before its CAS while the main thread forks.  In the child D is gone:
   another thread's increment must make the entry itself, not wait for D
   (the thirteenth session's increments waited there for ever). */

static unsigned fin_owing;          /* atomic */
static int debt_made, debt_go;
static void *owing_obj;
static intptr_t debt_old;

static void owing_finalize(void *obj)
{
    (void)obj;
    __atomic_fetch_add(&fin_owing, 1, __ATOMIC_RELAXED);
}

static const rcgc_type owing_type = { "fork_owing", 16, NULL, owing_finalize, 0 };

static void *debtor_main(void *arg)
{
    (void)arg;
    if (rcgc_thread_attach() != 0)
        bail_out("rcgc_thread_attach");
    debt_old = __atomic_fetch_sub(&rcgc__hdr(owing_obj)->ref_shared.v, RCGC__SHARED_ONE,
                                  __ATOMIC_RELEASE);
    flag_set(&debt_made);
    stop_offline(&debt_go);         /* no one else queues the object meanwhile */
    rcgc__decref_sub_done(owing_obj, debt_old);     /* the CAS */
    rcgc_thread_detach();
    return NULL;
}

static int inc_done;

static void *incrementer_main(void *arg)
{
    (void)arg;
    if (rcgc_thread_attach() != 0)
        return NULL;
    rcgc_incref(owing_obj);         /* meets the OWING word */
    flag_set(&inc_done);
    rcgc_decref(owing_obj);
    rcgc_thread_detach();
    return NULL;
}

static void owing_child(void *arg)
{
    pthread_t e;
    intptr_t shared;

    (void)arg;
    rcgc__test_raw(owing_obj, NULL, NULL, &shared);
    report(rcgc__shared_owes(shared), "the word is OWING, its debtor gone (%#lx)",
           (unsigned long)shared);
    if (pthread_create(&e, NULL, incrementer_main, NULL) != 0) {
        report(0, "pthread_create");
        return;
    }
    rcgc_blocking_begin();
    pthread_join(e, NULL);          /* the alarm, if the increment waits */
    rcgc_blocking_end();
    report(flag(&inc_done), "another thread's increment returns");
    report(count_of(&fin_owing) == 0, "alive while the main thread holds it");
    rcgc_decref(owing_obj);
    rcgc_safepoint();
    report(count_of(&fin_owing) == 1, "freed at the main thread's last reference (%u)",
           count_of(&fin_owing));
    rcgc_shutdown();
}

static void inside_an_owing_window(void)
{
    if (rcgc_init(NULL) != 0)
        bail_out("rcgc_init");
    owing_obj = rcgc_new(&owing_type);
    if (owing_obj == NULL)
        bail_out("rcgc_new");
    rcgc_incref(owing_obj);         /* local 2: one is D's to drop */
    fork_while_stopped("inside an OWING window", debtor_main, &debt_made, &debt_go,
                       owing_child, 4);
    rcgc_safepoint();               /* D's entry, if it is queued to us */
    ok(count_of(&fin_owing) == 0, "inside an OWING window: parent: alive once D makes its entry");
    rcgc_decref(owing_obj);
    rcgc_safepoint();
    ok(count_of(&fin_owing) == 1, "inside an OWING window: parent: freed at the last reference");
    rcgc_shutdown();
}

/* ---- inside a merge ----------------------------------------------------- */

/* M owns X, with two local references, one of them the main thread's; it
   begins a merge of X's counts (rcgc__merge_begin: owner word and local
   count cleared) and stops before its CAS while the main thread forks.
   In the child M is gone: the child must finish the merge, or X's count
   reads low (the main thread's decrement would find it at zero) and its
   word has neither an owner nor MERGED, for good. */

static unsigned fin_merge;          /* atomic */
static int merge_begun, merge_go;
static void *merge_obj;

static void merge_finalize(void *obj)
{
    (void)obj;
    __atomic_fetch_add(&fin_merge, 1, __ATOMIC_RELAXED);
}

static const rcgc_type merge_type = { "fork_merge", 16, NULL, merge_finalize, 0 };

static void *merging_main(void *arg)
{
    intptr_t s;
    uint32_t local;

    (void)arg;
    if (rcgc_thread_attach() != 0)
        bail_out("rcgc_thread_attach");
    merge_obj = rcgc_new(&merge_type);
    if (merge_obj == NULL)
        bail_out("rcgc_new");
    rcgc_incref(merge_obj);        /* the main thread's, in our local count */
    local = rcgc__merge_begin(rcgc__hdr(merge_obj), &s);
    flag_set(&merge_begun);
    stop_offline(&merge_go);
    rcgc__merge_end(rcgc__hdr(merge_obj), s, local, 0);
    rcgc_decref(merge_obj);        /* ours */
    rcgc_thread_detach();
    return NULL;
}

static void merge_child(void *arg)
{
    size_t count;

    (void)arg;
    count = rcgc_refcount(merge_obj);   /* the alarm, if the word stays ownerless */
    report(count == 2, "the merge is finished: both references counted (%zu)", count);
    rcgc_decref(merge_obj);
    rcgc_safepoint();
    report(count_of(&fin_merge) == 0 && rcgc_refcount(merge_obj) == 1,
           "alive after the main thread's decrement, on the gone thread's reference");
    rcgc_shutdown();
}

static void inside_a_merge(void)
{
    if (rcgc_init(NULL) != 0)
        bail_out("rcgc_init");
    fork_while_stopped("inside a merge", merging_main, &merge_begun, &merge_go, merge_child, 2);
    ok(rcgc_refcount(merge_obj) == 1 && count_of(&fin_merge) == 0,
       "inside a merge: parent: merged by M, alive on the main thread's reference");
    rcgc_decref(merge_obj);
    rcgc_safepoint();
    ok(count_of(&fin_merge) == 1, "inside a merge: parent: freed at the last reference");
    rcgc_shutdown();
}

/* ---- inside a finalizer ------------------------------------------------ */

/* F drops its last reference to X; X's finalizer stores X into a slot and
   makes a weak reference to it (a resurrection), then stops, offline, while
   the main thread forks.  X is DYING while its finalizer runs, and loads
   and upgrades that meet it wait for the finalizer's end.  In the child F
   is gone and that end never comes: the child must take DYING off X (it
   lives on, with F's reference), or they wait for ever. */

static unsigned fin_stopping;       /* atomic: X's finalizer runs */
static int fin_in, fin_go;
static rcgc_ref fin_slot;
static rcgc_weakref *fin_weak;

static void stopping_finalize(void *obj)
{
    __atomic_fetch_add(&fin_stopping, 1, __ATOMIC_RELAXED);
    rcgc_ref_store(&fin_slot, obj);
    fin_weak = rcgc_weakref_new(obj, NULL, NULL);
    flag_set(&fin_in);
    stop_offline(&fin_go);
}

static const rcgc_type stopping_type = { "fork_stopping", 16, NULL, stopping_finalize, 0 };

static void *finalizing_main(void *arg)
{
    (void)arg;
    if (rcgc_thread_attach() != 0)
        bail_out("rcgc_thread_attach");
    void *x = rcgc_new(&stopping_type);
    if (x == NULL)
        bail_out("rcgc_new");
    rcgc_decref(x);                 /* the finalizer runs here, and stops */
    rcgc_thread_detach();
    return NULL;
}

/* X's weak reference upgraded: a new reference, or NULL. */
static void *fin_upgrade(void)
{
    return fin_weak != NULL ? rcgc_weakref_get(fin_weak) : NULL;
}

/* Drops x and y (X, loaded and upgraded) and the slot's reference, then
   upgrades again: X if it lives on. */
static void *fin_let_go(void *x, void *y)
{
    rcgc_decref(y);
    rcgc_decref(x);
    rcgc_ref_store(&fin_slot, NULL);
    rcgc_safepoint();
    return fin_upgrade();
}

static void finalizing_child(void *arg)
{
    void *x, *y;

    (void)arg;
    x = rcgc_ref_load(&fin_slot);  /* the alarm, if it waits for F */
    report(x != NULL, "a load from the slot the finalizer filled returns its object");
    y = fin_upgrade();
    report(y != NULL && y == x, "the weak reference's upgrade returns it");
    y = fin_let_go(x, y);
    report(y != NULL && count_of(&fin_stopping) == 1,
           "alive on the gone thread's reference once the slot lets go; finalized once (%u)",
           count_of(&fin_stopping));
    rcgc_decref(y);
    rcgc_weakref_free(fin_weak);
    rcgc_shutdown();
}

static void inside_a_finalizer(void)
{
    uint64_t live0;
    void *x, *y;

    if (rcgc_init(NULL) != 0)
        bail_out("rcgc_init");
    live0 = live_now();
    fork_while_stopped("inside a finalizer", finalizing_main, &fin_in, &fin_go,
                       finalizing_child, 3);
    x = rcgc_ref_load(&fin_slot);
    y = fin_upgrade();
    ok(x != NULL && y == x, "inside a finalizer: parent: resurrected, in the slot and weakly");
    y = fin_let_go(x, y);
    ok(y == NULL && count_of(&fin_stopping) == 1 && live_now() == live0,
       "inside a finalizer: parent: freed at the slot's release, finalized once (%u)",
       count_of(&fin_stopping));
    rcgc_weakref_free(fin_weak);
    rcgc_shutdown();
}

/* ---- inside a teardown ------------------------------------------------- */

/* A tree of TEAR_NODES, numbered parent first, left to right: the root
   0, its left child 1 (subtree 1-7), its right child 8 (subtree 8-14).
   T drops the root: its finalizer runs, its slots are released and both
   children die, so it goes back on T's list, torn, beneath them
   (object.c, "Order"); the right child's finalizer then stops, offline,
   while the main thread forks.  In the child T is gone, and its list
   (the left child, the torn root) comes to the forking thread. */

#define TEAR_DEPTH 3
#define TEAR_NODES 15
#define TEAR_STOP  8

typedef struct tear {
    rcgc_ref left, right;
    unsigned id;
} tear;

static unsigned tear_fin[TEAR_NODES];   /* atomic: finalizations of each */
static int tear_in, tear_go;
static uint64_t tear_live0;

static void tear_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((tear *)obj)->left, ctx);
    visit(&((tear *)obj)->right, ctx);
}

static void tear_finalize(void *obj)
{
    tear *t = obj;

    __atomic_fetch_add(&tear_fin[t->id], 1, __ATOMIC_RELAXED);
    if (t->id == TEAR_STOP) {
        flag_set(&tear_in);
        stop_offline(&tear_go);
    }
}

static const rcgc_type tear_type = { "fork_tear", sizeof(tear), tear_traverse, tear_finalize,
                                     RCGC_TYPE_ACYCLIC };

static tear *tear_make(int depth, unsigned *id)
{
    tear *t = rcgc_new(&tear_type);

    if (t == NULL)
        bail_out("rcgc_new: %s", strerror(errno));
    t->id = (*id)++;
    if (depth > 0) {
        tear *l = tear_make(depth - 1, id), *r = tear_make(depth - 1, id);

        rcgc_ref_init(&t->left, l);
        rcgc_ref_init(&t->right, r);
        rcgc_decref(l);
        rcgc_decref(r);
    }
    return t;
}

static void *tearing_main(void *arg)
{
    unsigned id = 0;

    (void)arg;
    if (rcgc_thread_attach() != 0)
        bail_out("rcgc_thread_attach");
    rcgc_decref(tear_make(TEAR_DEPTH, &id));   /* stops in node 8's finalizer */
    rcgc_thread_detach();
    return NULL;
}

/* Finalizations in all, and nodes finalized more than once. */
static unsigned tear_finalized(unsigned *twice)
{
    unsigned all = 0;

    *twice = 0;
    for (int i = 0; i < TEAR_NODES; i++) {
        unsigned n = count_of(&tear_fin[i]);

        all += n;
        *twice += n > 1;
    }
    return all;
}

static void tearing_child(void *arg)
{
    unsigned twice, all = tear_finalized(&twice);
    uint64_t live = live_now();

    (void)arg;
    report(all == 9 && twice == 0 && count_of(&tear_fin[1]) == 1,
           "the root finalized once, the left subtree torn down: 9 finalizations (%u), "
           "none twice (%u)", all, twice);
    report(live == tear_live0 + 7 && count_of(&tear_fin[9]) == 0,
           "live: the right subtree, which the gone thread's reference holds (7 more than "
           "before the tree: %llu), so the torn root's memory is back",
           (unsigned long long)(live - tear_live0));
    rcgc_shutdown();
}

static void inside_a_teardown(void)
{
    unsigned twice, all;

    if (rcgc_init(NULL) != 0)
        bail_out("rcgc_init");
    tear_live0 = live_now();
    fork_while_stopped("inside a teardown", tearing_main, &tear_in, &tear_go, tearing_child,
                       2);
    all = tear_finalized(&twice);
    ok(all == TEAR_NODES && twice == 0 && live_now() == tear_live0,
       "inside a teardown: parent: every node finalized once (%u), every one freed", all);
    rcgc_shutdown();
}

/* ---- inside a candidate's add ------------------------------------------- */

/* A drops a 2-cycle, whose decrements put both halves in its root chunk,
   then a self-cycle X.  X's decrement clears its UNBUFFERED and claims
   the chunk (rcgc__roots_add_begin, whose records a fork's child reads);
   A stops before adding X while the main thread forks.  In the child A
   is gone, and with it, before the sixteenth session, the chunk it had
   claimed: neither the pair nor X was ever examined there.  The child
   must collect all three.  Without the pair, X is A's first candidate and
   the chunk a new one (chunk_get), which the child must not lose either. */

static unsigned fin_adding;         /* atomic */
static int add_claimed, add_go;
static bool add_pair;

static void adding_finalize(void *obj)
{
    (void)obj;
    __atomic_fetch_add(&fin_adding, 1, __ATOMIC_RELAXED);
}

static const rcgc_type adding_type = { "fork_adding", sizeof(node), node_traverse,
                                       adding_finalize, 0 };

static void *adding_main(void *arg)
{
    rcgc__thread *th;
    rcgc__header *h;
    rcgc__roots *k;
    node *x;

    (void)arg;
    if (rcgc_thread_attach() != 0)
        bail_out("rcgc_thread_attach");
    th = rcgc__tls_thread;
    if (add_pair)
        drop_pair(&adding_type);
    x = new_node(&adding_type);
    rcgc_ref_init(&x->a, x);
    h = rcgc__hdr(x);
    th->no_buffer = true;           /* our decrement; its buffering by hand */
    rcgc_decref(x);
    th->no_buffer = false;
    if (!(rcgc__word_fetch_and_relaxed(&h->owner, ~RCGC__OWNER_UNBUFFERED) &
          RCGC__OWNER_UNBUFFERED))
        bail_out("X was buffered already");
    k = rcgc__roots_add_begin(th, h);
    if (k == NULL)
        bail_out("no memory for a root chunk");
    flag_set(&add_claimed);
    /* Offline without a blocking region, whose flush would claim the
       chunk again. */
    rcgc__epoch_offline();
    while (!flag(&add_go))
        sched_yield();
    rcgc__epoch_online();
    rcgc__roots_add_end(th, h, k);
    rcgc_thread_detach();
    return NULL;
}

static void adding_child(void *arg)
{
    unsigned want = add_pair ? 3 : 1;

    (void)arg;
    rcgc_collect();
    report(count_of(&fin_adding) == want, "the claimed chunk's candidates and the one being "
           "added are collected (%u of %u)", count_of(&fin_adding), want);
    rcgc_shutdown();
}

static void inside_a_candidates_add(bool pair)
{
    const char *name = pair ? "inside a candidate's add" : "inside a first candidate's add";
    unsigned want = pair ? 3 : 1;

    add_pair = pair;
    __atomic_store_n(&fin_adding, 0, __ATOMIC_RELAXED);
    add_claimed = add_go = 0;
    if (rcgc_init(NULL) != 0)
        bail_out("rcgc_init");
    fork_while_stopped(name, adding_main, &add_claimed, &add_go, adding_child, 1);
    rcgc_collect();
    ok(count_of(&fin_adding) == want, "%s: parent: all collected (%u of %u)", name,
       count_of(&fin_adding), want);
    rcgc_shutdown();
}

/* ---- after shutdown ---------------------------------------------------- */

static void restart_child(void *arg)
{
    unsigned fresh0 = count_of(&fin_fresh);
    int err = rcgc_init(NULL);

    (void)arg;
    report(err == 0, "rcgc_init (%d)", err);
    if (err != 0)
        return;
    for (int i = 0; i < 10; i++)
        drop_pair(&fresh_type);
    rcgc_collect();
    report(count_of(&fin_fresh) - fresh0 == 20, "collects (%u of 20)", count_of(&fin_fresh) - fresh0);
    rcgc_shutdown();
}

int main(void)
{
    beside_busy_threads();
    under_churn();
    inside_an_owing_window();
    inside_a_merge();
    inside_a_finalizer();
    inside_a_teardown();
    inside_a_candidates_add(true);
    inside_a_candidates_add(false);
    fork_and_check("after rcgc_shutdown", restart_child, NULL, 2);
    return done_testing();
}
