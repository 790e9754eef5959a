/*
 * test_release.c: pitfall 22, releasing deep structures in constant stack,
 * and pitfall 20, teardown order.
 *
 *   owner chain: a thread with a 256 KiB stack builds a chain of 10,000,000
 *     nodes linked by one slot each and drops the head: every node is
 *     released without recursion (a recursive release needs a frame per
 *     node and overflows that stack within a few thousand nodes);
 *   non-owner chain: the main thread builds a chain (1,000,000 nodes) and
 *     the small-stack thread drops the head while main is blocked: every
 *     slot release is a non-owner decrement that merges on the blocked
 *     owner's behalf, still in constant stack;
 *   order: each node's finalizer loads its slot and finds the next node
 *     intact (not finalized, right id, live magic); nodes are finalized
 *     head first, each exactly once;
 *   memory's order (seen through the free hook; object.c, "Order"): a
 *     binary tree built parent first, left to right, and dropped gives its
 *     memory back in exactly the reverse of the order it was allocated in,
 *     children before their parent, the last child first; a chain built
 *     head first, in the order it was allocated in, parent first.
 *
 * Under ASan/TSan (slow, memory-hungry) the chains are 10x shorter, still
 * far beyond what 256 KiB allows recursively.  RCGC_TEST_CHAIN=n overrides.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"
#include "gc_test.h"

#define SMALL_STACK (256 * 1024)
#define NODE_MAGIC 0x90de5eedu

typedef struct node {
    rcgc_ref next;
    size_t   id;
    unsigned magic;
    unsigned finalized;
} node;

/* Written by the one thread that releases a chain; read after the join. */
static size_t chain_len;
static size_t fin_seq;          /* finalizations so far */
static size_t bad_next;         /* a finalizer found its next node damaged */
static size_t bad_order;        /* finalized out of head-first order */
static size_t bad_thread;       /* finalized on another thread than the releaser */
static pthread_t releaser;
static int main_blocked;        /* atomic: main is inside its blocking region */

static void node_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((node *)obj)->next, ctx);
}

static void node_finalize(void *obj)
{
    node *n = obj;
    node *next = rcgc_ref_load(&n->next);   /* pitfall 20: still intact */

    if (n->id + 1 < chain_len) {
        if (next == NULL || next->magic != NODE_MAGIC || next->finalized ||
            next->id != n->id + 1)
            bad_next++;
    } else if (next != NULL) {
        bad_next++;
    }
    if (n->id != fin_seq || n->magic != NODE_MAGIC || n->finalized)
        bad_order++;
    if (!pthread_equal(pthread_self(), releaser))
        bad_thread++;
    fin_seq++;
    n->finalized = 1;
    rcgc_decref(next);
}

static const rcgc_type node_type = { "node", sizeof(node), node_traverse, node_finalize, 0 };

static node *build_chain(size_t len)
{
    node *head = NULL, *n;
    size_t i;

    for (i = len; i-- > 0;) {
        n = rcgc_new(&node_type);
        if (n == NULL)
            bail_out("rcgc_new failed at node %zu", i);
        n->id = i;
        n->magic = NODE_MAGIC;
        if (head != NULL) {
            rcgc_ref_init(&n->next, head);
            rcgc_decref(head);       /* only the slot holds it now */
        }
        head = n;
        if (i % 4096 == 0)
            rcgc_safepoint();        /* QSBR: long loops pass quiescent points */
    }
    return head;
}

static void reset_counters(size_t len)
{
    chain_len = len;
    fin_seq = 0;
    bad_next = 0;
    bad_order = 0;
    bad_thread = 0;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the order memory goes back in -------------------------------------- */

typedef struct tnode {
    rcgc_ref left, right;
} tnode;

static void tnode_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((tnode *)obj)->left, ctx);
    visit(&((tnode *)obj)->right, ctx);
}

static const rcgc_type tnode_type = { "tnode", sizeof(tnode), tnode_traverse, NULL,
                                      RCGC_TYPE_ACYCLIC };

/* 16383 nodes: more than a debug build's quarantine holds, so that its
   first frees reach the hook before rcgc_reclaim_wait. */
#define ORDER_DEPTH 13
#define ORDER_NODES (((size_t)2 << ORDER_DEPTH) - 1)

/* Blocks in the order the hooks saw them (main thread only; recording is
   on while the tree lives). */
static void  *made[ORDER_NODES], *gone[ORDER_NODES];
static size_t nmade, ngone, nextra;
static bool   recording;

static void *order_alloc(size_t size, void *ctx)
{
    void *p = malloc(size);

    (void)ctx;
    if (p != NULL && recording) {
        if (nmade < ORDER_NODES)
            made[nmade++] = p;
        else
            nextra++;
    }
    return p;
}

static void order_free(void *p, size_t size, void *ctx)
{
    (void)size;
    (void)ctx;
    if (recording) {
        if (ngone < ORDER_NODES)
            gone[ngone++] = p;
        else
            nextra++;
    }
    free(p);
}

static void order_start(void)
{
    nmade = ngone = nextra = 0;
    recording = true;
}

/* Parent first, then the left subtree, then the right. */
static tnode *tree_make(int depth)
{
    tnode *n = rcgc_new(&tnode_type), *l, *r;

    if (n == NULL)
        bail_out("rcgc_new failed at depth %d", depth);
    if (depth > 0) {
        l = tree_make(depth - 1);
        r = tree_make(depth - 1);
        rcgc_ref_init(&n->left, l);
        rcgc_ref_init(&n->right, r);
        rcgc_decref(l);
        rcgc_decref(r);
    }
    return n;
}

/* Head first: each node allocated before the next, which its slot holds. */
static tnode *chain_make(size_t len)
{
    tnode *head = NULL, *tail = NULL;

    for (size_t i = 0; i < len; i++) {
        tnode *n = rcgc_new(&tnode_type);

        if (n == NULL)
            bail_out("rcgc_new failed at node %zu", i);
        if (tail == NULL) {
            head = n;
        } else {
            rcgc_ref_init(&tail->left, n);
            rcgc_decref(n);
        }
        tail = n;
    }
    return head;
}

/* Drops root, lets a debug build's quarantine go, and checks the frees:
   reversed, the reverse of the allocations; else in their order. */
static void order_check(void *root, const char *what, bool reversed)
{
    size_t before_flush, expect, out_of_order = 0;

    rcgc_decref(root);
    before_flush = ngone;
    rcgc_reclaim_wait();
    recording = false;
    /* Debug builds hold the last RCGC__QUARANTINE_SIZE frees back; the
       earlier ones went in the teardown's order. */
    expect = RCGC_DEBUG ? ORDER_NODES - RCGC__QUARANTINE_SIZE : ORDER_NODES;
    is_size(nmade, ORDER_NODES, "%s: %zu nodes allocated through the hook", what,
            ORDER_NODES);
    is_size(before_flush, expect, "%s: %zu freed by the teardown itself", what, expect);
    for (size_t i = 0; i < before_flush && i < nmade; i++)
        out_of_order += gone[i] != made[reversed ? nmade - 1 - i : i];
    is_size(out_of_order, 0,
            reversed ? "%s: memory goes back in the reverse of the build's order, "
                       "children before their parent, the last child first"
                     : "%s: memory goes back in the build's order, parent first",
            what);
    is_size(ngone, ORDER_NODES, "%s: every node freed once the quarantine lets go", what);
    is_size(nextra, 0, "%s: nothing else allocated or freed meanwhile", what);
}

static void test_memory_order(void)
{
    rcgc_options opts = { 0 };

    opts.manual = 1;
    opts.alloc = order_alloc;
    opts.free = order_free;
    TAP_REQUIRE(rcgc_init(&opts) == 0, "rcgc_init (allocation hooks)");
    order_start();
    order_check(tree_make(ORDER_DEPTH), "a binary tree", true);
    order_start();
    order_check(chain_make(ORDER_NODES), "a chain", false);
    rcgc_shutdown();
}

/* ---- the small-stack thread ---------------------------------------------- */

typedef struct job {
    size_t len;
    node  *head;          /* NULL: build the chain here */
    double build_s, release_s;
    int    attach_rc;
} job;

static void *small_stack_thread(void *arg)
{
    job *j = arg;
    double t0;

    j->attach_rc = rcgc_thread_attach();
    if (j->attach_rc != 0)
        return NULL;
    t0 = now_s();
    if (j->head == NULL) {
        reset_counters(j->len);
        j->head = build_chain(j->len);
    }
    j->build_s = now_s() - t0;
    releaser = pthread_self();
    rcgc_blocking_begin();          /* a main-owned chain: wait until main blocks */
    while (!__atomic_load_n(&main_blocked, __ATOMIC_ACQUIRE))
        sched_yield();
    rcgc_blocking_end();
    t0 = now_s();
    rcgc_decref(j->head);           /* the whole chain goes here */
    j->release_s = now_s() - t0;
    rcgc_thread_detach();
    return NULL;
}

static void run_small(job *j)
{
    pthread_attr_t attr;
    pthread_t t;
    int rc;

    pthread_attr_init(&attr);
    rc = pthread_attr_setstacksize(&attr, SMALL_STACK);
    if (rc != 0)
        bail_out("pthread_attr_setstacksize: %d", rc);
    rc = pthread_create(&t, &attr, small_stack_thread, j);
    if (rc != 0)
        bail_out("pthread_create: %d", rc);
    pthread_attr_destroy(&attr);
    rcgc_blocking_begin();
    __atomic_store_n(&main_blocked, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    __atomic_store_n(&main_blocked, 0, __ATOMIC_RELAXED);
    rcgc_blocking_end();
}

int main(void)
{
    size_t owner_len = UNDER_SANITIZER ? 1000000 : 10000000;
    size_t shared_len = UNDER_SANITIZER ? 100000 : 1000000;
    const char *env = getenv("RCGC_TEST_CHAIN");
    rcgc_stats s0, s1;
    rcgc_options opts = { 0 };
    job j;

    if (env != NULL && atol(env) > 1) {
        owner_len = (size_t)atol(env);
        shared_len = owner_len / 10 > 1 ? owner_len / 10 : 2;
    }
    alarm(240);
    /* Manual collection: a background collection that examines chain
       nodes holds a reference to each while it does, so the release would
       finish on the collector thread, after the checks below run. */
    opts.manual = 1;
    TAP_REQUIRE(rcgc_init(&opts) == 0, "rcgc_init (manual collection)");

    /* -- the owner releases a chain on a small stack ------------------------ */
    rcgc_get_stats(&s0);
    j = (job){ .len = owner_len };
    run_small(&j);
    is_int(j.attach_rc, 0, "the 256 KiB thread attaches");
    diag("owner chain of %zu: built in %.2f s, released in %.2f s",
         owner_len, j.build_s, j.release_s);
    is_size(fin_seq, owner_len,
            "pitfall 22: a %zu-node chain released on a 256 KiB stack: every node finalized once",
            owner_len);
    is_size(bad_next, 0, "pitfall 20: each finalizer found its next node intact");
    is_size(bad_order, 0, "nodes finalized head first, each once");
    is_size(bad_thread, 0, "all on the small-stack thread");
    rcgc_get_stats(&s1);
    ok(s1.allocated - s0.allocated == owner_len && s1.freed - s0.freed == owner_len &&
       s1.live == s0.live, "stats: %zu allocated and freed, live back to start", owner_len);
    rcgc_reclaim_wait();

    /* -- a non-owner releases main's chain while main is blocked ------------ */
    rcgc_get_stats(&s0);
    reset_counters(shared_len);
    j = (job){ .len = shared_len };
    j.head = build_chain(shared_len);
    run_small(&j);                   /* main blocked in the join meanwhile */
    diag("non-owner chain of %zu released in %.2f s", shared_len, j.release_s);
    is_size(fin_seq, shared_len,
            "pitfall 22: a non-owner releases a %zu-node chain of a blocked owner on 256 KiB",
            shared_len);
    is_size(bad_next, 0, "pitfall 20: each finalizer found its next node intact");
    is_size(bad_order, 0, "nodes finalized head first, each once");
    is_size(bad_thread, 0, "all on the small-stack thread (main stayed blocked)");
    rcgc_get_stats(&s1);
    ok(s1.freed - s0.freed == shared_len && s1.live == s0.live,
       "stats: %zu freed, live back to start", shared_len);
    rcgc_reclaim_wait();

    rcgc_shutdown();

    test_memory_order();
    return done_testing();
}
