/*
 * gc_cases.c: the collector benchmarks' workloads (see gc_cases.h).
 *
 * Garbage builders give each object its slots with rcgc_ref_init (the
 * object is new, its slots empty) and then drop the builder's reference:
 * a decrement that leaves a tracked object alive makes it a candidate
 * root, so every member of the garbage is one.  Building is never timed.
 */
#define _GNU_SOURCE             /* RUSAGE_THREAD */
#include "gc_cases.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <rcgc.h>

/* ---- The tracked node --------------------------------------------------- */

struct gc_node {
    rcgc_ref a, b;
};

static void gc_node_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    struct gc_node *n = obj;

    visit(&n->a, ctx);
    visit(&n->b, ctx);
}

static const rcgc_type gc_node_type = {
    .name = "bench_gc_node",
    .size = sizeof(struct gc_node),
    .traverse = gc_node_traverse,
};

static int new_error(void)
{
    return errno ? errno : ENOMEM;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t live_objects(void)
{
    rcgc_stats st;

    rcgc_get_stats(&st);
    return st.live;
}

/* Each 1024 objects, a quiescent point: builders run for many
   milliseconds, and the reclaimer's grace periods wait for them. */
#define SAFEPOINT_EVERY 1024

/* ---- Garbage ------------------------------------------------------------ */

int bench_gc_pairs(size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2) {
        struct gc_node *a = rcgc_new(&gc_node_type), *b;

        if (a == NULL)
            return new_error();
        b = rcgc_new(&gc_node_type);
        if (b == NULL) {
            int error = new_error();
            rcgc_decref(a);
            return error;
        }
        rcgc_ref_init(&a->a, b);
        rcgc_ref_init(&b->a, a);
        rcgc_decref(a);
        rcgc_decref(b);
        if (i % SAFEPOINT_EVERY == 0)
            rcgc_safepoint();
    }
    return 0;
}

int bench_gc_ring(size_t n)
{
    struct gc_node *first, *prev;

    if (n == 0)
        return 0;
    first = rcgc_new(&gc_node_type);
    if (first == NULL)
        return new_error();
    prev = first;
    for (size_t i = 1; i < n; i++) {
        struct gc_node *next = rcgc_new(&gc_node_type);

        if (next == NULL) {
            int error = new_error();
            if (prev != first)
                rcgc_decref(prev);
            rcgc_decref(first);        /* the chain dies by counting */
            return error;
        }
        rcgc_ref_init(&prev->a, next);
        if (prev != first)
            rcgc_decref(prev);
        prev = next;
        if (i % SAFEPOINT_EVERY == 0)
            rcgc_safepoint();
    }
    rcgc_ref_init(&prev->a, first);    /* close the ring */
    if (prev != first)
        rcgc_decref(prev);
    rcgc_decref(first);
    return 0;
}

int bench_gc_graph(size_t n, uint64_t seed, size_t *garbage)
{
    struct gc_node **nodes;
    uint64_t live_before = live_objects();
    uint64_t rng = seed;
    int error = 0;
    size_t made = 0;

    if (garbage != NULL)
        *garbage = 0;
    if (n == 0)
        return 0;
    nodes = malloc(n * sizeof(*nodes));
    if (nodes == NULL)
        return ENOMEM;
    for (; made < n; made++) {
        nodes[made] = rcgc_new(&gc_node_type);
        if (nodes[made] == NULL) {
            error = new_error();
            break;
        }
    }
    /* Edges only among what was made: on failure the partial graph is
       still garbage, and the caller's next collection takes it. */
    for (size_t i = 0; i < made; i++) {
        rcgc_ref_init(&nodes[i]->a, nodes[splitmix64(&rng) % made]);
        rcgc_ref_init(&nodes[i]->b, nodes[splitmix64(&rng) % made]);
        if (i % SAFEPOINT_EVERY == 0)
            rcgc_safepoint();
    }
    for (size_t i = 0; i < made; i++) {
        rcgc_decref(nodes[i]);
        if (i % SAFEPOINT_EVERY == 0)
            rcgc_safepoint();
    }
    free(nodes);
    if (garbage != NULL) {
        uint64_t live_after = live_objects();
        *garbage = live_after > live_before ? (size_t)(live_after - live_before) : 0;
    }
    return error;
}

void **bench_gc_live_new(size_t n)
{
    void **live = malloc((n / 2 ? n / 2 : 1) * sizeof(*live));
    size_t held = 0;

    if (live == NULL)
        return NULL;
    for (; held < n / 2; held++) {
        struct gc_node *a = rcgc_new(&gc_node_type), *b;

        if (a == NULL)
            break;
        b = rcgc_new(&gc_node_type);
        if (b == NULL) {
            rcgc_decref(a);
            break;
        }
        rcgc_ref_init(&a->a, b);
        rcgc_ref_init(&b->a, a);
        rcgc_decref(b);            /* a holds it; our reference to a stays */
        live[held] = a;
        if (held % SAFEPOINT_EVERY == 0)
            rcgc_safepoint();
    }
    if (held < n / 2) {
        int error = new_error();
        bench_gc_live_free(live, held * 2);
        errno = error;
        return NULL;
    }
    return live;
}

void bench_gc_live_free(void **live, size_t n)
{
    if (live == NULL)
        return;
    for (size_t i = 0; i < n / 2; i++)
        rcgc_decref(live[i]);
    free(live);
}

/* ---- Binary trees ------------------------------------------------------- */

struct bt_node {
    rcgc_ref left, right;
};

static void bt_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    struct bt_node *n = obj;

    visit(&n->left, ctx);
    visit(&n->right, ctx);
}

static const rcgc_type bt_type = {
    .name = "bench_bintree",
    .size = sizeof(struct bt_node),
    .traverse = bt_traverse,
    .flags = RCGC_TYPE_ACYCLIC,
};

/* A tree of depth d (2^(d+1) - 1 nodes), or NULL (errno) with nothing
   leaked. */
static struct bt_node *bt_make(int d)
{
    struct bt_node *n = rcgc_new(&bt_type), *l, *r;

    if (n == NULL || d == 0)
        return n;
    l = bt_make(d - 1);
    r = l != NULL ? bt_make(d - 1) : NULL;
    if (r == NULL) {
        int error = new_error();
        rcgc_decref(l);
        rcgc_decref(n);
        errno = error;
        return NULL;
    }
    rcgc_ref_init(&n->left, l);
    rcgc_ref_init(&n->right, r);
    rcgc_decref(l);
    rcgc_decref(r);
    return n;
}

static uint64_t bt_check(struct bt_node *n)
{
    struct bt_node *l = rcgc_ref_load(&n->left);
    uint64_t count = 1;

    if (l != NULL) {
        struct bt_node *r = rcgc_ref_load(&n->right);
        count += bt_check(l) + bt_check(r);
        rcgc_decref(r);
        rcgc_decref(l);
    }
    return count;
}

struct mt_node {
    struct mt_node *left, *right;
};

/* The same body size as bt_node (two pointers). */
_Static_assert(sizeof(struct mt_node) == sizeof(struct bt_node), "same node size");

static void mt_free(struct mt_node *n)
{
    if (n == NULL)
        return;
    mt_free(n->left);
    mt_free(n->right);
    free(n);
}

static struct mt_node *mt_make(int d)
{
    struct mt_node *n = malloc(sizeof(*n));

    if (n == NULL)
        return NULL;
    n->left = n->right = NULL;
    if (d > 0) {
        n->left = mt_make(d - 1);
        n->right = n->left != NULL ? mt_make(d - 1) : NULL;
        if (n->right == NULL) {
            mt_free(n);
            return NULL;
        }
    }
    return n;
}

static uint64_t mt_check(const struct mt_node *n)
{
    return 1 + (n->left != NULL ? mt_check(n->left) + mt_check(n->right) : 0);
}

#define BT_MIN_DEPTH 4

static int bt_max_depth(int depth)
{
    return depth < BT_MIN_DEPTH + 2 ? BT_MIN_DEPTH + 2 : depth;
}

uint64_t bench_bintree_expected(int depth)
{
    int max = bt_max_depth(depth);
    uint64_t sum = ((uint64_t)1 << (max + 2)) - 1 + ((uint64_t)1 << (max + 1)) - 1;

    for (int d = BT_MIN_DEPTH; d <= max; d += 2)
        sum += ((uint64_t)1 << (max - d + BT_MIN_DEPTH)) * (((uint64_t)1 << (d + 1)) - 1);
    return sum;
}

int bench_bintree_rcgc(int depth, uint64_t *checked)
{
    int max = bt_max_depth(depth);
    struct bt_node *tree, *long_lived;
    uint64_t sum = 0;

    tree = bt_make(max + 1);                   /* stretch */
    if (tree == NULL)
        return new_error();
    sum += bt_check(tree);
    rcgc_decref(tree);
    rcgc_safepoint();

    long_lived = bt_make(max);
    if (long_lived == NULL)
        return new_error();
    for (int d = BT_MIN_DEPTH; d <= max; d += 2) {
        uint64_t iterations = (uint64_t)1 << (max - d + BT_MIN_DEPTH);

        for (uint64_t i = 0; i < iterations; i++) {
            tree = bt_make(d);
            if (tree == NULL) {
                int error = new_error();
                rcgc_decref(long_lived);
                return error;
            }
            sum += bt_check(tree);
            rcgc_decref(tree);
            rcgc_safepoint();
        }
    }
    sum += bt_check(long_lived);
    rcgc_decref(long_lived);
    rcgc_safepoint();
    *checked = sum;
    return 0;
}

int bench_bintree_malloc(int depth, uint64_t *checked)
{
    int max = bt_max_depth(depth);
    struct mt_node *tree, *long_lived;
    uint64_t sum = 0;

    tree = mt_make(max + 1);
    if (tree == NULL)
        return ENOMEM;
    sum += mt_check(tree);
    mt_free(tree);

    long_lived = mt_make(max);
    if (long_lived == NULL)
        return ENOMEM;
    for (int d = BT_MIN_DEPTH; d <= max; d += 2) {
        uint64_t iterations = (uint64_t)1 << (max - d + BT_MIN_DEPTH);

        for (uint64_t i = 0; i < iterations; i++) {
            tree = mt_make(d);
            if (tree == NULL) {
                mt_free(long_lived);
                return ENOMEM;
            }
            sum += mt_check(tree);
            mt_free(tree);
        }
    }
    sum += mt_check(long_lived);
    mt_free(long_lived);
    *checked = sum;
    return 0;
}

/* ---- Pauses ------------------------------------------------------------- */

const char *bench_op_name(int kind)
{
    static const char *const names[BENCH_OP_KINDS] = {
        [BENCH_OP_INCREF_OWN] = "incref(own)",
        [BENCH_OP_DECREF_OWN] = "decref(own)",
        [BENCH_OP_INCREF_SHARED] = "incref(shared)",
        [BENCH_OP_DECREF_SHARED] = "decref(shared)",
        [BENCH_OP_NEW] = "new",
        [BENCH_OP_DECREF_LAST] = "decref(last)",
        [BENCH_OP_STORE] = "ref_init",
        [BENCH_OP_DECREF_CYCLE] = "decref(cycle)",
        [BENCH_OP_SAFEPOINT] = "safepoint",
    };

    return kind >= 0 && kind < BENCH_OP_KINDS ? names[kind] : "?";
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define PAUSE_SHARED 64            /* objects the bench thread owns, shared */
#define HIST_BUCKETS 64            /* bucket k: calls of [2^(k-1), 2^k) ns */

_Static_assert(BENCH_OP_KINDS <= 16, "bench_pause_result.over_100us_kind has room");

typedef struct mutator {
    pthread_t thread;
    struct pause_run *run;
    uint64_t seed;
    int error;
    /* written by the mutator, read after join */
    uint64_t ops, op_max_ns, gap_max_ns, over_100us, invol_switches;
    uint64_t over_100us_kind[BENCH_OP_KINDS];
    uint64_t calm_max_ns, round_max_ns;
    uint64_t noop_max_ns, noop_over_100us, noop_calm_max_ns, round_noop_max_ns;
    uint64_t op_ns, noop_ns, op_ns_kind[BENCH_OP_KINDS];
    int op_max_kind, calm_max_kind, round_max_kind;
    bool calm_max_slept;
    uint64_t hist[HIST_BUCKETS];
} mutator;

typedef struct pause_run {
    void **shared;                 /* PAUSE_SHARED objects, owned by the bench thread */
    atomic_int started;            /* mutators that are timing */
    atomic_int stop;
} pause_run;

typedef struct timer {
    mutator *m;
    uint64_t last_end;
} timer;

static inline void timer_record(timer *t, uint64_t start, uint64_t end, int kind)
{
    mutator *m = t->m;
    uint64_t d = end - start, gap = start - t->last_end;
    int bucket = d ? 64 - __builtin_clzll(d) : 0;

    m->ops++;
    m->hist[bucket < HIST_BUCKETS ? bucket : HIST_BUCKETS - 1]++;
    if (d > m->op_max_ns) {
        m->op_max_ns = d;
        m->op_max_kind = kind;
    }
    if (d > m->round_max_ns) {
        m->round_max_ns = d;
        m->round_max_kind = kind;
    }
    if (d > 100000) {
        m->over_100us++;
        m->over_100us_kind[kind]++;
    } else {
        m->op_ns += d;
        m->op_ns_kind[kind] += d;
    }
    if (gap > m->gap_max_ns)
        m->gap_max_ns = gap;
    t->last_end = end;
}

/* The control: a call that does nothing, timed the same way.  What it
   suffers (interrupts, a hypervisor taking the CPU) is the machine's, not
   the runtime's. */
__attribute__((noinline)) static void noop_call(void)
{
    __asm__ volatile("" ::: "memory");
}

static inline void timer_record_noop(timer *t, uint64_t start, uint64_t end)
{
    mutator *m = t->m;
    uint64_t d = end - start;

    if (d > m->noop_max_ns)
        m->noop_max_ns = d;
    if (d > m->round_noop_max_ns)
        m->round_noop_max_ns = d;
    if (d > 100000)
        m->noop_over_100us++;
    else
        m->noop_ns += d;
    t->last_end = end;
}

/* Times one call, TIMED(timer, kind, statement), then the control right
   after it, so both are exposed to the machine's noise alike. */
#define TIMED(t, kind, stmt)                                        \
    do {                                                            \
        uint64_t start_ = now_ns(), noop_;                          \
        stmt;                                                       \
        timer_record((t), start_, now_ns(), (kind));                \
        noop_ = now_ns();                                           \
        noop_call();                                                \
        timer_record_noop((t), noop_, now_ns());                    \
    } while (0)

/* The calling thread's context switches: involuntary (the scheduler gave
   the CPU to another thread) and voluntary (it slept: a lock, a wait). */
typedef struct switches {
    long invol, vol;
} switches;

static switches thread_switches(void)
{
    struct rusage ru;
    switches sw = { -1, -1 };

    if (getrusage(RUSAGE_THREAD, &ru) == 0) {
        sw.invol = ru.ru_nivcsw;
        sw.vol = ru.ru_nvcsw;
    }
    return sw;
}

static void *mutator_main(void *arg)
{
    mutator *m = arg;
    pause_run *run = m->run;
    timer t = { m, 0 };
    uint64_t rng = m->seed;
    struct gc_node *own;
    switches at_start;

    m->error = rcgc_thread_attach();
    if (m->error != 0) {
        atomic_fetch_add(&run->started, 1);
        return NULL;
    }
    own = rcgc_new(&gc_node_type);
    if (own == NULL) {
        m->error = new_error();
        atomic_fetch_add(&run->started, 1);
        rcgc_thread_detach();
        return NULL;
    }
    at_start = thread_switches();
    t.last_end = now_ns();
    atomic_fetch_add(&run->started, 1);
    while (!atomic_load_explicit(&run->stop, memory_order_relaxed)) {
        /* A round: about 600 calls.  Its longest call counts as calm if
           the scheduler took the CPU away from us at no time during it
           (the round's involuntary context switches; the getrusage calls
           are outside every timed call). */
        switches round_start = thread_switches(), round_end;

        m->round_max_ns = 0;
        m->round_noop_max_ns = 0;
        for (int k = 0; k < 64; k++) {
            void *shared = run->shared[splitmix64(&rng) % PAUSE_SHARED];
            struct gc_node *x;

            TIMED(&t, BENCH_OP_INCREF_OWN, rcgc_incref(own));
            TIMED(&t, BENCH_OP_DECREF_OWN, rcgc_decref(own));
            TIMED(&t, BENCH_OP_INCREF_SHARED, rcgc_incref(shared));
            TIMED(&t, BENCH_OP_DECREF_SHARED, rcgc_decref(shared));
            TIMED(&t, BENCH_OP_NEW, x = rcgc_new(&gc_node_type));
            if (x == NULL) {
                m->error = new_error();
                goto out;
            }
            TIMED(&t, BENCH_OP_DECREF_LAST, rcgc_decref(x));
            if (k % 4 == 0) {                                 /* a garbage 2-cycle */
                struct gc_node *a, *b;

                TIMED(&t, BENCH_OP_NEW, a = rcgc_new(&gc_node_type));
                TIMED(&t, BENCH_OP_NEW, b = rcgc_new(&gc_node_type));
                if (a == NULL || b == NULL) {
                    m->error = new_error();
                    rcgc_decref(a);
                    rcgc_decref(b);
                    goto out;
                }
                TIMED(&t, BENCH_OP_STORE, rcgc_ref_init(&a->a, b));
                TIMED(&t, BENCH_OP_STORE, rcgc_ref_init(&b->a, a));
                TIMED(&t, BENCH_OP_DECREF_CYCLE, rcgc_decref(a));
                TIMED(&t, BENCH_OP_DECREF_CYCLE, rcgc_decref(b));
            }
        }
        TIMED(&t, BENCH_OP_SAFEPOINT, rcgc_safepoint());
        round_end = thread_switches();
        if (round_end.invol == round_start.invol && round_end.invol >= 0) {
            if (m->round_max_ns > m->calm_max_ns) {
                m->calm_max_ns = m->round_max_ns;
                m->calm_max_kind = m->round_max_kind;
                m->calm_max_slept = round_end.vol != round_start.vol;
            }
            if (m->round_noop_max_ns > m->noop_calm_max_ns)
                m->noop_calm_max_ns = m->round_noop_max_ns;
        }
        t.last_end = now_ns();     /* the getrusage is no gap */
    }
out:
    m->invol_switches = (uint64_t)(thread_switches().invol - at_start.invol);
    rcgc_decref(own);
    rcgc_thread_detach();
    return NULL;
}

static void wait_started(pause_run *run, int n)
{
    struct timespec ms = { 0, 1000000 };

    rcgc_blocking_begin();
    while (atomic_load(&run->started) < n)
        nanosleep(&ms, NULL);
    rcgc_blocking_end();
}

int bench_pause_run(size_t nobjects, int nmutators, bench_pause_result *out)
{
    void *shared[PAUSE_SHARED] = { 0 };
    pause_run run = { .shared = shared };
    mutator *ms;
    rcgc_stats st;
    uint64_t t0;
    int error = 0, started = 0;

    memset(out, 0, sizeof(*out));
    if (nmutators < 1)
        return EINVAL;
    ms = calloc((size_t)nmutators, sizeof(*ms));
    if (ms == NULL)
        return ENOMEM;
    for (int i = 0; i < PAUSE_SHARED; i++) {
        shared[i] = rcgc_new(&gc_node_type);
        if (shared[i] == NULL) {
            error = new_error();
            goto done;
        }
    }
    rcgc_disable();
    error = bench_gc_graph(nobjects, 0x5eedu, &out->garbage);
    if (error != 0)
        goto done;

    atomic_init(&run.started, 0);
    atomic_init(&run.stop, 0);
    for (; started < nmutators; started++) {
        ms[started].run = &run;
        ms[started].seed = 0x1234u + (uint64_t)started;
        error = pthread_create(&ms[started].thread, NULL, mutator_main, &ms[started]);
        if (error != 0)
            break;
    }
    wait_started(&run, started);
    if (error == 0) {
        /* Let them run a little before the collection, and after. */
        struct timespec settle = { 0, 20000000 };

        rcgc_blocking_begin();
        nanosleep(&settle, NULL);
        rcgc_blocking_end();
        rcgc_get_stats(&st);
        out->stats_pause_before = st.pause_max_ns;
        rcgc_enable();
        t0 = now_ns();
        out->collected = rcgc_collect();
        out->collect_ns = now_ns() - t0;
        rcgc_blocking_begin();
        nanosleep(&settle, NULL);
        rcgc_blocking_end();
    }
    atomic_store(&run.stop, 1);
    rcgc_blocking_begin();
    for (int i = 0; i < started; i++)
        pthread_join(ms[i].thread, NULL);
    rcgc_blocking_end();
    rcgc_get_stats(&st);
    out->stats_pause_after = st.pause_max_ns;

    {
        uint64_t hist[HIST_BUCKETS] = { 0 };
        uint64_t seen = 0;

        for (int i = 0; i < started; i++) {
            mutator *m = &ms[i];
            if (error == 0 && m->error != 0)
                error = m->error;
            out->ops += m->ops;
            out->ops_over_100us += m->over_100us;
            for (int k = 0; k < BENCH_OP_KINDS; k++) {
                out->over_100us_kind[k] += m->over_100us_kind[k];
                out->op_ns_kind[k] += m->op_ns_kind[k];
            }
            out->noop_over_100us += m->noop_over_100us;
            out->op_ns += m->op_ns;
            out->noop_ns += m->noop_ns;
            out->invol_switches += m->invol_switches;
            if (m->noop_max_ns > out->noop_max_ns)
                out->noop_max_ns = m->noop_max_ns;
            if (m->noop_calm_max_ns > out->noop_calm_max_ns)
                out->noop_calm_max_ns = m->noop_calm_max_ns;
            if (m->op_max_ns >= out->op_max_ns) {
                out->op_max_ns = m->op_max_ns;
                out->op_max_kind = m->op_max_kind;
            }
            if (m->calm_max_ns >= out->calm_max_ns) {
                out->calm_max_ns = m->calm_max_ns;
                out->calm_max_kind = m->calm_max_kind;
                out->calm_max_slept = m->calm_max_slept;
            }
            if (m->gap_max_ns > out->gap_max_ns)
                out->gap_max_ns = m->gap_max_ns;
            for (int k = 0; k < HIST_BUCKETS; k++)
                hist[k] += m->hist[k];
        }
        for (int k = 0; k < HIST_BUCKETS && out->ops > 0; k++) {
            seen += hist[k];
            if (seen * 10000 >= out->ops * 9999) {
                out->op_p9999_ns = k ? (uint64_t)1 << k : 1;
                break;
            }
        }
    }
done:
    for (int i = 0; i < PAUSE_SHARED; i++)
        rcgc_decref(shared[i]);
    free(ms);
    rcgc_disable();
    return error;
}

/* ---- The floor of a collection of pairs (see gc_cases.h) ----------------- */

struct floor_block {
    uintptr_t owner;
    intptr_t shared;
    struct floor_block *partner;
    char rest[80 - 2 * sizeof(uintptr_t) - sizeof(void *)];   /* link 16, header 48, slots 16 */
};

#define FLOOR_ROUND 5000        /* the flags and counts are biased.h's */

int bench_gc_floor(size_t n, int atomics, uint64_t *ns)
{
    struct floor_block **b = malloc(n * sizeof(*b));
    uint64_t t0;
    intptr_t sum = 0;

    if (b == NULL)
        return new_error();
    for (size_t i = 0; i < n; i++) {
        b[i] = malloc(sizeof(struct floor_block));
        if (b[i] == NULL) {
            int error = new_error();
            while (i-- > 0)
                free(b[i]);
            free(b);
            return error;
        }
        b[i]->owner = (uintptr_t)1 << RCGC__TID_SHIFT;     /* a tid */
        b[i]->shared = RCGC__SHARED_ONE;
    }
    for (size_t i = 0; i + 1 < n; i += 2) {
        b[i]->partner = b[i + 1];
        b[i + 1]->partner = b[i];
    }
    if (n % 2)
        b[n - 1]->partner = b[n - 1];
    t0 = now_ns();
    for (size_t r = 0; r < n; r += FLOOR_ROUND) {
        size_t end = r + FLOOR_ROUND < n ? r + FLOOR_ROUND : n;

        for (size_t i = r; i < end; i++) {        /* flag: pin_flag */
            struct floor_block *x = b[i];
            intptr_t w = __atomic_load_n(&x->shared, __ATOMIC_RELAXED);
            if (atomics) {
                while (!__atomic_compare_exchange_n(&x->shared, &w,
                                                    (w + RCGC__SHARED_ONE) | RCGC__SHARED_SCAN,
                                                    0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
                    ;
                __atomic_fetch_or(&x->owner, RCGC__OWNER_SCAN, __ATOMIC_RELAXED);
            } else {
                x->shared = (w + RCGC__SHARED_ONE) | RCGC__SHARED_SCAN;
                x->owner |= RCGC__OWNER_SCAN;
            }
        }
        for (size_t i = r; i < end; i++)          /* count: step 4 */
            sum += __atomic_load_n(&b[i]->shared, __ATOMIC_ACQUIRE) +
                   (intptr_t)__atomic_load_n(&b[i]->partner->owner, __ATOMIC_RELAXED);
        for (size_t i = r; i < end; i++) {        /* the Delta-test */
            struct floor_block *x = b[i];
            intptr_t w = __atomic_load_n(&x->shared, __ATOMIC_RELAXED);
            if (atomics)
                __atomic_compare_exchange_n(&x->shared, &w, w | RCGC__SHARED_DYING, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
            else
                x->shared = w | RCGC__SHARED_DYING;
        }
        for (size_t i = r; i < end; i++)          /* free */
            free(b[i]);
    }
    *ns = now_ns() - t0;
    free(b);
    /* The reads are used: a sum of positive words is never 0. */
    return sum == 0 ? EINVAL : 0;
}
