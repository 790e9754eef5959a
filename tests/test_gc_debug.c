/*
 * test_gc_debug.c: the collector's debug output on stderr.
 *
 * Each case runs in a child process: this program re-executes itself
 * (/proc/self/exe CASE) after fork() from a parent that never started a
 * thread, with stdout and stderr in temporary files.  The child reports
 * what the parent needs to know (the addresses of its garbage, how many
 * collections ran) on stdout; the parent checks stderr line by line.
 *
 *   control: no debug flags: cycles collected, stderr empty;
 *   RCGC_DEBUG_STATS (set with rcgc_set_debug, and with opts.debug): one
 *     "rcgc: collection" line per collection (as many as stats.collections
 *     grew), with candidates=, examined=, collected= and a duration; the
 *     collected= values add up to what rcgc_collect returned; in
 *     background mode too (the collector thread prints);
 *   RCGC_DEBUG_COLLECTABLE: one "rcgc: collectable <type> <address>" line
 *     per garbage object, naming exactly the objects of the garbage
 *     cycles, none for a cycle still referenced; with SAVEALL as well
 *     (the saved objects are found collectable);
 *   RCGC_DEBUG_UNCOLLECTABLE: one "rcgc: uncollectable <type> <address>"
 *     line per object of a cycle that a finalizer resurrected (kept), none
 *     for collected garbage;
 *   RCGC_DEBUG_LEAK (opts.debug): rcgc_shutdown reports the tracked
 *     objects still alive, "rcgc: leak: <count> <type>" per type and a
 *     total line; untracked objects are not listed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

typedef struct dnode { rcgc_ref next, extra; } dnode;

static void dnode_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    dnode *n = obj;

    visit(&n->next, ctx);
    visit(&n->extra, ctx);
}

static dnode *holder;        /* the child's live holder (resurrection) */

static int resurrected;

static void resurrect(void *obj)
{
    if (!resurrected++)
        rcgc_ref_store(&holder->extra, obj);   /* one member saves the cycle */
}

static const rcgc_type pair_type = { "gcdbg_pair", sizeof(dnode), dnode_traverse, NULL, 0 };
static const rcgc_type tri_type = { "gcdbg_tri", sizeof(dnode), dnode_traverse, NULL, 0 };
static const rcgc_type kept_type = { "gcdbg_kept", sizeof(dnode), dnode_traverse, NULL, 0 };
static const rcgc_type res_type = { "gcdbg_res", sizeof(dnode), dnode_traverse, resurrect, 0 };
static const rcgc_type holder_type = { "gcdbg_holder", sizeof(dnode), dnode_traverse, NULL, 0 };
static const rcgc_type leak_type = { "gcdbg_leak", sizeof(dnode), dnode_traverse, NULL, 0 };
static const rcgc_type leaf_type = { "gcdbg_leaf", 16, NULL, NULL, 0 };

/* ---- the child side ------------------------------------------------------ */

static void *must(void *p)
{
    if (p == NULL) {
        fprintf(stderr, "child: rcgc_new failed\n");
        exit(5);
    }
    return p;
}

/* A ring of k objects of type t; prints "obj <type> <address>" for each if
   report; returns a reference to the first. */
static dnode *ring(const rcgc_type *t, unsigned k, int report)
{
    dnode *first = must(rcgc_new(t)), *prev = first, *n;
    unsigned i;

    if (report)
        printf("obj %s %p\n", t->name, (void *)first);
    for (i = 1; i < k; i++) {
        n = must(rcgc_new(t));
        if (report)
            printf("obj %s %p\n", t->name, (void *)n);
        rcgc_ref_store(&prev->next, n);
        if (prev != first)
            rcgc_decref(prev);
        prev = n;
    }
    rcgc_ref_store(&prev->next, first);
    if (prev != first)
        rcgc_decref(prev);
    return first;
}

static int child(const char *name)
{
    rcgc_options opts;
    rcgc_stats s0, s1;
    size_t r1, r2, r3;
    dnode *kept;

    alarm(30);
    memset(&opts, 0, sizeof opts);
    opts.manual = strcmp(name, "stats_background") != 0;
    if (strcmp(name, "stats_opts") == 0)
        opts.debug = RCGC_DEBUG_STATS;
    if (strcmp(name, "leak") == 0)
        opts.debug = RCGC_DEBUG_LEAK;
    if (rcgc_init(&opts) != 0)
        return 3;
    printf("debug %u\n", rcgc_get_debug());

    if (strcmp(name, "control") == 0) {
        rcgc_decref(ring(&pair_type, 2, 0));
        rcgc_decref(ring(&tri_type, 3, 0));
        printf("returns %zu\n", rcgc_collect());
    } else if (strncmp(name, "stats", 5) == 0) {
        if (strcmp(name, "stats_background") == 0)
            rcgc_disable();                   /* only the collections we ask for */
        else if (strcmp(name, "stats") == 0)
            rcgc_set_debug(RCGC_DEBUG_STATS);
        else if (rcgc_get_debug() != RCGC_DEBUG_STATS)
            return 6;
        if (strcmp(name, "stats_background") == 0)
            rcgc_set_debug(RCGC_DEBUG_STATS);
        rcgc_get_stats(&s0);
        rcgc_decref(ring(&pair_type, 2, 0));
        r1 = rcgc_collect();
        rcgc_decref(ring(&tri_type, 3, 0));
        r2 = rcgc_collect();
        r3 = rcgc_collect();
        rcgc_get_stats(&s1);
        rcgc_set_debug(0);                    /* shutdown's collections stay quiet */
        printf("returns %zu %zu %zu\n", r1, r2, r3);
        printf("collections %llu\n", (unsigned long long)(s1.collections - s0.collections));
    } else if (strcmp(name, "collectable") == 0 || strcmp(name, "saveall") == 0) {
        kept = ring(&kept_type, 2, 0);        /* referenced: never collectable */
        rcgc_incref(kept);
        rcgc_decref(kept);
        rcgc_set_debug(RCGC_DEBUG_COLLECTABLE |
                       (strcmp(name, "saveall") == 0 ? RCGC_DEBUG_SAVEALL : 0));
        rcgc_decref(ring(&pair_type, 2, 1));
        if (strcmp(name, "collectable") == 0)
            rcgc_decref(ring(&tri_type, 3, 1));
        printf("returns %zu\n", rcgc_collect());
        rcgc_set_debug(0);
        rcgc_garbage_clear();
        rcgc_collect();
        rcgc_decref(kept);
    } else if (strcmp(name, "uncollectable") == 0) {
        holder = must(rcgc_new(&holder_type));
        rcgc_set_debug(RCGC_DEBUG_UNCOLLECTABLE);
        rcgc_decref(ring(&pair_type, 2, 0)); /* collected: no line */
        rcgc_decref(ring(&res_type, 2, 1));  /* resurrects itself: kept */
        printf("returns %zu\n", rcgc_collect());
        rcgc_set_debug(0);
        rcgc_ref_store(&holder->extra, NULL);
        rcgc_collect();
        rcgc_decref(holder);
    } else if (strcmp(name, "leak") == 0) {
        dnode *a = must(rcgc_new(&leak_type)), *b = must(rcgc_new(&leak_type)),
              *c = must(rcgc_new(&leak_type));
        void *l = must(rcgc_new(&leaf_type));

        rcgc_ref_store(&a->next, b);          /* a chain a -> b -> c, all kept */
        rcgc_ref_store(&b->next, c);
        rcgc_decref(b);
        rcgc_decref(c);
        kept = ring(&kept_type, 2, 0);        /* a cycle still referenced */
        (void)a;
        (void)l;
        rcgc_collect();
    } else {
        return 4;
    }
    fflush(stdout);
    rcgc_shutdown();
    return 0;
}

/* ---- the parent side ----------------------------------------------------- */

#define CAP 65536

typedef struct result {
    int  status;
    char out[CAP], err[CAP];
} result;

static void slurp(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    ssize_t n;

    lseek(fd, 0, SEEK_SET);
    while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(fd);
}

static int temp_fd(void)
{
    char path[] = "/tmp/rcgc_test_gc_debug_XXXXXX";
    int fd = mkstemp(path);

    if (fd < 0)
        bail_out("mkstemp: %s", strerror(errno));
    unlink(path);
    return fd;
}

static void run_child(const char *self, const char *name, result *r)
{
    int ofd = temp_fd(), efd = temp_fd();
    pid_t pid = fork();

    if (pid < 0)
        bail_out("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(efd, 2);
        if (strcmp(name, "leak") == 0)   /* it leaks on purpose */
            setenv("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1", 1);
        execl("/proc/self/exe", self, name, (char *)NULL);
        _exit(127);
    }
    while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR)
        ;
    slurp(ofd, r->out, sizeof r->out);
    slurp(efd, r->err, sizeof r->err);
}

static int exited_ok(const char *name, const result *r)
{
    int good = WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;

    if (!ok(good, "%s: the child exits 0 (status %#x)", name, r->status))
        diag("child stderr:\n%.2000s", r->err);
    return good;
}

/* Calls fn on each line of text (without its newline). */
static void each_line(char *text, void (*fn)(const char *line, void *ctx), void *ctx)
{
    char *p = text, *nl;

    while (*p) {
        nl = strchr(p, '\n');
        if (nl != NULL)
            *nl = '\0';
        fn(p, ctx);
        if (nl == NULL)
            break;
        *nl = '\n';
        p = nl + 1;
    }
}

/* ---- STATS ---- */

typedef struct stats_scan {
    size_t lines, other, malformed, sum;
} stats_scan;

static void stats_line(const char *line, void *ctx)
{
    stats_scan *s = ctx;
    const char *c;

    if (*line == '\0')
        return;
    if (strncmp(line, "rcgc: collection", 16) != 0) {
        s->other++;
        return;
    }
    s->lines++;
    c = strstr(line, "collected=");
    if (c == NULL || strstr(line, "candidates=") == NULL || strstr(line, "examined=") == NULL ||
        (strstr(line, "ms") == NULL && strstr(line, "ns") == NULL && strstr(line, "us") == NULL))
        s->malformed++;
    else
        s->sum += strtoul(c + 10, NULL, 10);
}

static void check_stats(const char *self, const char *name)
{
    static result r;
    stats_scan s = { 0, 0, 0, 0 };
    size_t r1 = 0, r2 = 0, r3 = 0;
    unsigned long long collections = 0;
    const char *p;

    run_child(self, name, &r);
    if (!exited_ok(name, &r)) {
        skip("child failed");
        skip("child failed");
        skip("child failed");
        return;
    }
    p = strstr(r.out, "returns ");
    if (p != NULL)
        sscanf(p, "returns %zu %zu %zu", &r1, &r2, &r3);
    p = strstr(r.out, "collections ");
    if (p != NULL)
        sscanf(p, "collections %llu", &collections);
    each_line(r.err, stats_line, &s);
    if (!ok(s.lines == collections && collections >= 3 && s.other == 0,
            "%s: one \"rcgc: collection\" line per collection (%zu lines, %llu collections), "
            "nothing else", name, s.lines, collections))
        diag("stderr:\n%.2000s", r.err);
    ok(s.malformed == 0 && s.lines > 0,
       "%s: each line has candidates=, examined=, collected= and a duration", name);
    ok(r1 == 2 && r2 == 3 && r3 == 0 && s.sum == 5,
       "%s: the collected= values add up to what rcgc_collect returned (2 + 3 + 0; "
       "lines say %zu)", name, s.sum);
}

/* ---- COLLECTABLE / UNCOLLECTABLE ---- */

#define MAX_OBJ 16

typedef struct objset {
    size_t n;
    char   type[MAX_OBJ][32];
    void  *addr[MAX_OBJ];
} objset;

typedef struct obj_scan {
    const char *what;       /* "collectable" or "uncollectable" */
    objset      found;
    size_t      other;
} obj_scan;

static void obj_line(const char *line, void *ctx)
{
    obj_scan *s = ctx;
    char what[32], type[32];
    void *addr;

    if (*line == '\0')
        return;
    if (sscanf(line, "rcgc: %31s %31s %p", what, type, &addr) != 3 ||
        strcmp(what, s->what) != 0 || s->found.n == MAX_OBJ) {
        s->other++;
        return;
    }
    strcpy(s->found.type[s->found.n], type);
    s->found.addr[s->found.n++] = addr;
}

static void child_objs(char *out, objset *set)
{
    char *p = out, *nl;
    char type[32];
    void *addr;

    set->n = 0;
    while (*p) {
        nl = strchr(p, '\n');
        if (sscanf(p, "obj %31s %p", type, &addr) == 2 && set->n < MAX_OBJ) {
            strcpy(set->type[set->n], type);
            set->addr[set->n++] = addr;
        }
        if (nl == NULL)
            break;
        p = nl + 1;
    }
}

/* Same objects (type and address), each once. */
static int same_set(const objset *a, const objset *b)
{
    size_t i, j, k;

    if (a->n != b->n)
        return 0;
    for (i = 0; i < a->n; i++) {
        for (j = 0, k = 0; j < b->n; j++)
            k += a->addr[i] == b->addr[j] && strcmp(a->type[i], b->type[j]) == 0;
        if (k != 1)
            return 0;
    }
    return 1;
}

static void check_objects(const char *self, const char *name, const char *what,
                          size_t expect_n, const char *desc)
{
    static result r;
    obj_scan s;
    objset want;

    memset(&s, 0, sizeof s);
    s.what = what;
    run_child(self, name, &r);
    if (!exited_ok(name, &r)) {
        skip("child failed");
        return;
    }
    child_objs(r.out, &want);
    each_line(r.err, obj_line, &s);
    if (!ok(want.n == expect_n && s.other == 0 && same_set(&want, &s.found),
            "%s: %s (%zu lines for %zu objects, %zu other lines)", name, desc, s.found.n,
            want.n, s.other))
        diag("stderr:\n%.2000s", r.err);
}

/* ---- LEAK ---- */

static void check_leak(const char *self)
{
    static result r;
    const char *p;
    int total = 0;

    run_child(self, "leak", &r);
    if (!exited_ok("leak", &r)) {
        skip("child failed");
        skip("child failed");
        skip("child failed");
        return;
    }
    p = strstr(r.out, "debug ");
    ok(p != NULL && strtoul(p + 6, NULL, 10) == RCGC_DEBUG_LEAK,
       "leak: opts.debug = RCGC_DEBUG_LEAK: rcgc_get_debug returns it");
    if (!ok(strstr(r.err, "rcgc: leak: 3 gcdbg_leak\n") != NULL &&
            strstr(r.err, "rcgc: leak: 2 gcdbg_kept\n") != NULL,
            "leak: rcgc_shutdown reports \"rcgc: leak: 3 gcdbg_leak\" and \"2 gcdbg_kept\""))
        diag("stderr:\n%.2000s", r.err);
    for (p = r.err; (p = strstr(p, "rcgc: leak: 5 ")) != NULL; p++)
        if (strncmp(p + 14, "gcdbg_", 6) != 0)
            total = 1;
    if (!ok(total && strstr(r.err, "gcdbg_leaf") == NULL,
            "leak: a total line (5 tracked objects); the live leaf (untracked) not listed"))
        diag("stderr:\n%.2000s", r.err);
}

int main(int argc, char **argv)
{
    static result r;

    if (argc > 1)
        return child(argv[1]);
    alarm(240);

    run_child(argv[0], "control", &r);
    exited_ok("control", &r);
    ok(r.err[0] == '\0' && strstr(r.out, "returns 5") != NULL,
       "control: no debug flags: 5 objects collected, stderr empty");
    if (r.err[0])
        diag("stderr:\n%.2000s", r.err);

    check_stats(argv[0], "stats");
    check_stats(argv[0], "stats_opts");
    check_stats(argv[0], "stats_background");

    check_objects(argv[0], "collectable", "collectable", 5,
                  "one \"rcgc: collectable <type> <address>\" line per garbage object, "
                  "exactly the 2-cycle and the 3-cycle, not the referenced cycle");
    check_objects(argv[0], "saveall", "collectable", 2,
                  "with SAVEALL the saved 2-cycle's objects are reported collectable");
    check_objects(argv[0], "uncollectable", "uncollectable", 2,
                  "one \"rcgc: uncollectable <type> <address>\" line per object of the "
                  "resurrected cycle, none for collected garbage");
    check_leak(argv[0]);
    return done_testing();
}
