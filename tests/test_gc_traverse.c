/*
 * test_gc_traverse.c: a type whose traverse reports an edge twice (PITFALLS
 * 16).  With the extra edge the collector would take a live object for
 * garbage; a debug build notices that the member's references are fewer
 * than the edges reported inside a consistent snapshot, and aborts with one
 * line naming rcgc_collect and the type.  The case runs in a re-executed
 * child (fork + exec of this binary), stderr captured.  A release build
 * keeps such a component instead of freeing it.  A correct traverse
 * on the same shape is the control: collected, no message.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

typedef struct pair { rcgc_ref next; } pair;

static void good_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((pair *)obj)->next, ctx);
}

static void twice_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((pair *)obj)->next, ctx);
    visit(&((pair *)obj)->next, ctx);      /* the bug: the same edge again */
}

static const rcgc_type good_type = { "good_pair", sizeof(pair), good_traverse, NULL, 0 };
static const rcgc_type twice_type = { "twice_pair", sizeof(pair), twice_traverse, NULL, 0 };

/* A 2-cycle a <-> b whose b is still held by the caller: not garbage. */
static int child(const rcgc_type *type)
{
    static const rcgc_options manual = { .manual = 1 };
    pair *a, *b;
    size_t n;

    if (rcgc_init(&manual) != 0)
        return 10;
    a = rcgc_new(type);
    b = rcgc_new(type);
    rcgc_ref_store(&a->next, b);
    rcgc_ref_store(&b->next, a);
    rcgc_decref(a);
    rcgc_incref(b);
    rcgc_decref(b);                       /* b is a candidate, and still ours */
    n = rcgc_collect();
    if (n != 0)
        return 11;                        /* a live object was collected */
    rcgc_decref(b);
    n = rcgc_collect();
    rcgc_shutdown();
    return n == 2 ? 0 : 12;
}

static void run_child(const char *self, const char *which, int *status, char *err, size_t cap)
{
    int fds[2];
    ssize_t n, len = 0;
    pid_t pid;

    if (pipe(fds) != 0)
        bail_out("pipe");
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        execl("/proc/self/exe", self, which, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    while ((n = read(fds[0], err + len, cap - 1 - (size_t)len)) > 0)
        len += n;
    err[len] = '\0';
    close(fds[0]);
    waitpid(pid, status, 0);
}

int main(int argc, char **argv)
{
    char err[2048];
    int status;

    if (argc > 1)
        return child(strcmp(argv[1], "twice") == 0 ? &twice_type : &good_type);
    alarm(60);

    run_child(argv[0], "good", &status, err, sizeof err);
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0 && err[0] == '\0',
       "control: a correct traverse: the held cycle is kept, then collected (status %d)",
       WIFEXITED(status) ? WEXITSTATUS(status) : -1);

    run_child(argv[0], "twice", &status, err, sizeof err);
    if (RCGC_DEBUG) {
        ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
           "pitfall 16: a traverse that reports an edge twice aborts the collection");
        ok(strstr(err, "rcgc_collect") && strstr(err, "traverse") &&
           strstr(err, "twice_pair") && strchr(err, '\n') == strrchr(err, '\n'),
           "one stderr line naming rcgc_collect, traverse and the type: %s", err);
    } else {
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 12 && err[0] == '\0',
           "pitfall 16: release build: the cycle with the extra edge is kept, never freed "
           "while held (status %d)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        skip("release build: no message");
    }
    return done_testing();
}
