/*
 * test_misuse.c: detectable misuse aborts with one line on stderr naming
 * the function and the object's type (debug builds, RCGC_DEBUG=1).
 *
 * Each case runs in a child process: this program re-executes itself
 * (/proc/self/exe CASE) after fork() from a parent that never started a
 * thread (ThreadSanitizer tolerates that), with stderr on a pipe.  The
 * parent checks that the child died of SIGABRT and that stderr holds
 * exactly one line with the function name, the problem and the type name.
 * A control case that misuses nothing must exit 0 with empty stderr, so
 * the harness itself can fail.  Release builds print "ok N # SKIP".
 *
 * Cases: decrement below zero (of a released object; and a non-owner's
 * over-release found when the owner merges, pitfall 8's invariant
 * local + shared >= 0), use of a freed object (incref, refcount), a thread
 * that never attached (incref, decref, rcgc_new), a pointer that is no
 * rcgc object (into the middle of a zeroed malloc'd buffer).
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
#include <fcntl.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

/* These tests check releases the moment a count reaches zero: no background
   collector, whose examination pins tracked objects for its duration. */
static const rcgc_options refcount_only = { .manual = 1 };

typedef struct mnode { rcgc_ref next; int v; } mnode;

static void mnode_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((mnode *)obj)->next, ctx);
}

static const rcgc_type mnode_type = { "misuse_node", sizeof(mnode), mnode_traverse, NULL, 0 };

/* ---- the child side ------------------------------------------------------ */

static mnode *target;
static int step;

static void *unattached_incref(void *arg) { (void)arg; rcgc_incref(target); return NULL; }
static void *unattached_decref(void *arg) { (void)arg; rcgc_decref(target); return NULL; }
static void *unattached_new(void *arg) { (void)arg; return rcgc_new(&mnode_type); }

static void *overrelease(void *arg)
{
    (void)arg;
    if (rcgc_thread_attach() != 0)
        abort();
    rcgc_decref(target);             /* the reference the owner gave us */
    rcgc_decref(target);             /* one too many: queued count goes negative */
    __atomic_store_n(&step, 1, __ATOMIC_RELEASE);
    rcgc_blocking_begin();
    for (;;)
        pause();                     /* the owner aborts the process */
}

static void run_in_thread(void *(*fn)(void *))
{
    pthread_t t;

    pthread_create(&t, NULL, fn, NULL);
    rcgc_blocking_begin();
    pthread_join(t, NULL);
    rcgc_blocking_end();
}

static int child(const char *name)
{
    mnode *o, *holder;

    alarm(30);                       /* a hang shows as SIGALRM, not SIGABRT */
    if (rcgc_init(&refcount_only) != 0)
        return 3;
    o = rcgc_new(&mnode_type);
    target = o;

    if (strcmp(name, "control") == 0) {
        holder = rcgc_new(&mnode_type);
        rcgc_ref_store(&holder->next, o);
        rcgc_incref(o);
        rcgc_decref(o);
        rcgc_decref(o);
        rcgc_decref(holder);
        rcgc_shutdown();
        return 0;
    }
    if (strcmp(name, "decref_released") == 0) {
        rcgc_decref(o);
        rcgc_decref(o);
    } else if (strcmp(name, "decref_released_published") == 0) {
        holder = rcgc_new(&mnode_type);
        rcgc_ref_store(&holder->next, o);
        rcgc_decref(o);
        rcgc_decref(holder);         /* o dies with the holder */
        rcgc_decref(o);
    } else if (strcmp(name, "overrelease_shared") == 0) {
        pthread_t t;

        pthread_create(&t, NULL, overrelease, NULL);
        while (!__atomic_load_n(&step, __ATOMIC_ACQUIRE))
            sched_yield();           /* online: the decrements queue to us */
        rcgc_safepoint();            /* the merge finds local + shared < 0 */
    } else if (strcmp(name, "incref_freed") == 0) {
        rcgc_decref(o);
        rcgc_incref(o);
    } else if (strcmp(name, "refcount_freed") == 0) {
        rcgc_decref(o);
        (void)rcgc_refcount(o);
    } else if (strcmp(name, "incref_unattached") == 0) {
        run_in_thread(unattached_incref);
    } else if (strcmp(name, "decref_unattached") == 0) {
        run_in_thread(unattached_decref);
    } else if (strcmp(name, "new_unattached") == 0) {
        run_in_thread(unattached_new);
    } else if (strcmp(name, "not_rcgc") == 0) {
        char *buf = calloc(1, 256);

        rcgc_decref(buf + 128);
        free(buf);
    } else if (strcmp(name, "incref_not_rcgc") == 0) {
        char *buf = calloc(1, 256);

        rcgc_incref(buf + 128);
        free(buf);
    } else {
        return 4;                    /* unknown case */
    }
    return 0;                        /* the misuse went unnoticed */
}

/* ---- the parent side ----------------------------------------------------- */

typedef struct misuse_case {
    const char *name;
    const char *fn;          /* must appear in the line */
    const char *problem;     /* must appear in the line */
    const char *type;        /* "(type X" must appear; NULL: not checked */
    const char *pitfall;
} misuse_case;

static const misuse_case cases[] = {
    { "decref_released", "rcgc_decref", "below zero", "misuse_node", "" },
    { "decref_released_published", "rcgc_decref", "below zero", "misuse_node",
      "slot-released object, " },
    { "overrelease_shared", "rcgc_decref", "below zero", "misuse_node",
      "pitfall 8 (local + shared >= 0), " },
    { "incref_freed", "rcgc_incref", "use of a freed object", "misuse_node", "" },
    { "refcount_freed", "rcgc_refcount", "use of a freed object", "misuse_node", "" },
    { "incref_unattached", "rcgc_incref", "not attached", "misuse_node", "" },
    { "decref_unattached", "rcgc_decref", "not attached", "misuse_node", "" },
    { "new_unattached", "rcgc_new", "not attached", NULL, "" },
    { "not_rcgc", "rcgc_decref", "not an rcgc object", "?", "" },
    { "incref_not_rcgc", "rcgc_incref", "not an rcgc object", "?", "" },
};

#define N_CASES (sizeof cases / sizeof cases[0])

/* Runs this program as `self name`; returns the wait status, stderr in err. */
static int run_child(const char *self, const char *name, char *err, size_t cap)
{
    int fds[2], status = -1, devnull;
    size_t len = 0;
    ssize_t n;
    pid_t pid;

    if (pipe(fds) != 0)
        bail_out("pipe: %s", strerror(errno));
    pid = fork();
    if (pid < 0)
        bail_out("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 1);
        execl("/proc/self/exe", self, name, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    while (len + 1 < cap && (n = read(fds[0], err + len, cap - 1 - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        len += (size_t)n;
    }
    err[len] = '\0';
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

static unsigned count_lines(const char *s)
{
    unsigned n = 0;

    for (; *s; s++)
        if (*s == '\n')
            n++;
    return n;
}

static void show(const char *err)
{
    if (*err)
        diag("child stderr:\n%s", err);
}

int main(int argc, char **argv)
{
    char err[8192], want_type[128];
    size_t i;
    int st;

    if (argc > 1)
        return child(argv[1]);
    alarm(240);
    plan(2 + 2 * N_CASES);

    st = run_child(argv[0], "control", err, sizeof err);
    ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "control child (no misuse) exits 0 (status %#x)", st);
    ok(err[0] == '\0', "control child writes nothing to stderr");
    if (err[0])
        show(err);

    for (i = 0; i < N_CASES; i++) {
        const misuse_case *c = &cases[i];
        int one_line;

        if (!RCGC_DEBUG) {
            skip("release build");
            skip("release build");
            continue;
        }
        st = run_child(argv[0], c->name, err, sizeof err);
        ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
           "%s%s: the child aborts (status %#x)", c->pitfall, c->name, st);
        snprintf(want_type, sizeof want_type, "(type %s", c->type ? c->type : "");
        one_line = count_lines(err) == 1 && err[strlen(err) - 1] == '\n';
        if (!ok(one_line && strncmp(err, "rcgc: ", 6) == 0 && strstr(err, c->fn) != NULL &&
                strstr(err, c->problem) != NULL && strstr(err, want_type) != NULL,
                "%s: one stderr line naming %s, '%s' and the type", c->name, c->fn, c->problem))
            show(err);
    }
    return done_testing();
}
