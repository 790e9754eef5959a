/*
 * test_gc_shutdown.c: rcgc_shutdown with cycles still alive and with a
 * thread still attached (PITFALLS 32).
 *
 *   cycles that are garbage at shutdown are collected by it: every
 *     finalizer runs once and a counting allocator balances afterwards;
 *   a cycle still referenced by a global at shutdown is neither finalized
 *     nor freed (it is not garbage), and the allocator shows exactly it;
 *   a daemon thread still attached at shutdown: a debug build aborts with
 *     one line naming rcgc_shutdown; a release build says so on stderr and
 *     keeps the runtime up (the caller stays attached), so the daemon goes
 *     on using its objects, then detaches, and a second rcgc_shutdown
 *     completes.  Run in a re-executed
 *     child (fork + exec of this binary), stderr captured.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

typedef struct node { rcgc_ref next; int magic; } node;

static int finalized;                    /* atomic */

static void node_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((node *)obj)->next, ctx);
}

static void node_finalize(void *obj)
{
    (void)obj;
    __atomic_add_fetch(&finalized, 1, __ATOMIC_RELAXED);
}

static const rcgc_type node_type = { "node", sizeof(node), node_traverse, node_finalize, 0 };

static int64_t outstanding;              /* atomic: allocations not yet freed */

static void *count_alloc(size_t size, void *ctx)
{
    (void)ctx;
    __atomic_add_fetch(&outstanding, 1, __ATOMIC_RELAXED);
    return malloc(size);
}

static void count_free(void *p, size_t size, void *ctx)
{
    (void)size;
    (void)ctx;
    __atomic_sub_fetch(&outstanding, 1, __ATOMIC_RELAXED);
    free(p);
}

/* A ring of n nodes; returns one node, holding the caller's reference. */
static node *ring(int n)
{
    node *first = rcgc_new(&node_type), *prev = first;

    for (int i = 1; i < n; i++) {
        node *x = rcgc_new(&node_type);
        rcgc_ref_store(&prev->next, x);
        rcgc_decref(x);
        prev = x;
    }
    rcgc_ref_store(&prev->next, first);
    return first;
}

static rcgc_ref keeper;                  /* a global slot: not an object */

static void case_cycles_at_shutdown(void)
{
    rcgc_options opts = { 0 };

    opts.alloc = count_alloc;
    opts.free = count_free;
    TAP_REQUIRE(rcgc_init(&opts) == 0, "rcgc_init with a counting allocator");
    for (int i = 0; i < 100; i++)
        rcgc_decref(ring(1 + i % 5));    /* 300 nodes of garbage */
    rcgc_ref_init(&keeper, NULL);
    {
        node *kept = ring(4);
        rcgc_ref_store(&keeper, kept);
        rcgc_decref(kept);
    }
    rcgc_shutdown();
    is_int(__atomic_load_n(&finalized, __ATOMIC_RELAXED), 300,
           "pitfall 32: rcgc_shutdown collected the 300 garbage nodes (each finalized once)");
    is_int((int)__atomic_load_n(&outstanding, __ATOMIC_RELAXED), 4,
           "the allocator holds exactly the 4 nodes still reachable from a global");
}

/* ---- the child: shutdown while a daemon thread is attached ------------- */

static int daemon_step;                  /* atomic */

static void *daemon_main(void *arg)
{
    node *mine;

    (void)arg;
    if (rcgc_thread_attach() != 0)
        abort();
    mine = ring(3);
    __atomic_store_n(&daemon_step, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&daemon_step, __ATOMIC_ACQUIRE) < 2) {
        rcgc_incref(mine);               /* keeps using its objects */
        rcgc_decref(mine);
        rcgc_safepoint();
        sched_yield();
    }
    rcgc_decref(mine);
    rcgc_thread_detach();
    return NULL;
}

static int child_daemon(void)
{
    pthread_t t;

    if (rcgc_init(NULL) != 0)
        return 10;
    pthread_create(&t, NULL, daemon_main, NULL);
    rcgc_blocking_begin();
    while (__atomic_load_n(&daemon_step, __ATOMIC_ACQUIRE) < 1)
        sched_yield();
    rcgc_blocking_end();
    rcgc_shutdown();                     /* debug: aborts here */
    /* release: the runtime stayed up, this thread still attached */
    if (rcgc_init(NULL) != EBUSY)
        return 11;
    __atomic_store_n(&daemon_step, 2, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    if (rcgc_thread_attach() != EBUSY)
        return 12;
    rcgc_shutdown();
    if (__atomic_load_n(&finalized, __ATOMIC_RELAXED) != 3)
        return 13;
    return 0;
}

static void case_daemon(const char *self)
{
    int fds[2], status;
    char err[2048];
    ssize_t n, len = 0;
    pid_t pid;

    TAP_REQUIRE(pipe(fds) == 0, "pipe");
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        execl("/proc/self/exe", self, "daemon", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    while ((n = read(fds[0], err + len, sizeof(err) - 1 - (size_t)len)) > 0)
        len += n;
    err[len] = '\0';
    close(fds[0]);
    waitpid(pid, &status, 0);
    if (RCGC_DEBUG) {
        ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
           "debug build: rcgc_shutdown with a thread attached aborts");
    } else {
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "release build: the runtime stays up for the daemon, which finishes its "
           "work; a later shutdown completes (exit %d)",
           WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    ok(strstr(err, "rcgc_shutdown") != NULL && strstr(err, "still attached") != NULL,
       "the message names rcgc_shutdown and the attached thread: %s", err);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "daemon") == 0)
        return child_daemon();
    alarm(120);
    case_cycles_at_shutdown();
    case_daemon(argv[0]);
    return done_testing();
}
