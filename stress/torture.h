/*
 * torture.h: the frame every stress program shares (rcutorture's habits).
 *
 *   options     --threads N --seconds S --seed X (also --name=value); the
 *               seed is printed first, so any run can be replayed
 *   PRNG        splitmix64 seeds a per-thread xorshift64* stream
 *   violations  torture_violation() counts one and prints the first few;
 *               the program exits nonzero if any was counted
 *   stop flag   workers poll torture_stopping(); main sets it at the deadline
 *   delays      torture_maybe_delay() widens race windows now and then
 *   watchdog    an unattached thread that fails the run if it hangs
 *   test object torture_obj, the first member of every test type's body:
 *               magic, id, generation and a checksum that readers verify;
 *               torture_obj_finalize() checks it, poisons it (magic DEAD,
 *               generation + 1) and records the run in a per-id table
 *   allocator   counting free/alloc hooks (memory returned after shutdown)
 *   verdict     torture_finish(): the leak and exactly-once checks, then
 *               the one verdict line
 *
 *     stress_x: PASS ops=123 violations=0 seed=1 threads=4 seconds=5
 *
 * Test state shared between threads is C11 atomics.  The oracle counters
 * inside object bodies use relaxed order on purpose: the test must not add
 * happens-before edges of its own that would hide a missing one in the
 * runtime from ThreadSanitizer.  The fields a reader checks (magic, id,
 * generation, checksum) are plain: they are written before the object is
 * shared and by the finalizer, so a reader that races with them is a
 * premature free and ThreadSanitizer should say so.
 *
 * Each program is one translation unit, so everything here is static.
 */
#ifndef RCGC_TORTURE_H
#define RCGC_TORTURE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rcgc.h"

/* ---- options -------------------------------------------------------- */

typedef struct torture_opts {
    const char *name;
    int         threads;
    double      seconds;
    uint64_t    seed;
} torture_opts;

static torture_opts torture_o;

static inline uint64_t torture_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void torture_usage(const char *name, int status)
{
    fprintf(status ? stderr : stdout,
            "usage: %s [--threads N] [--seconds S] [--seed X]\n"
            "  --threads N   worker threads (default 4)\n"
            "  --seconds S   how long the workers run (default 5, may be fractional)\n"
            "  --seed X      PRNG seed (default: from the clock; always printed)\n",
            name);
    exit(status);
}

/* Reads "--opt V" or "--opt=V"; returns the value or NULL if arg is not opt. */
static inline const char *torture_optval(int argc, char **argv, int *i, const char *opt)
{
    size_t n = strlen(opt);

    if (strncmp(argv[*i], opt, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s: %s needs a value\n", argv[0], opt);
        exit(2);
    }
    return argv[++*i];
}

/* ---- PRNG ------------------------------------------------------------ */

static inline uint64_t torture_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* A stateless mix, for values several threads must agree on. */
static inline uint64_t torture_hash(uint64_t a, uint64_t b)
{
    uint64_t x = a ^ (b * 0xd6e8feb86659fd93u);

    return torture_splitmix64(&x);
}

typedef struct torture_rng { uint64_t s; } torture_rng;

/* Stream `stream` of the run's seed: distinct streams never share state. */
static inline torture_rng torture_rng_make(uint64_t stream)
{
    uint64_t x = torture_o.seed ^ (stream * 0xa0761d6478bd642fu);
    torture_rng r;

    r.s = torture_splitmix64(&x);
    if (r.s == 0)
        r.s = 0x9e3779b97f4a7c15u;
    return r;
}

static inline uint64_t torture_next(torture_rng *r)   /* xorshift64* */
{
    uint64_t x = r->s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1du;
}

static inline uint32_t torture_below(torture_rng *r, uint32_t n)   /* [0, n) */
{
    return (uint32_t)(((torture_next(r) >> 32) * (uint64_t)n) >> 32);
}

static inline bool torture_chance(torture_rng *r, uint32_t one_in)
{
    return torture_below(r, one_in) == 0;
}

/* ---- violations, phase, stop flag ---------------------------------- */

#define TORTURE_PRINT_MAX 20

static atomic_ullong torture_violations;
static _Atomic(const char *) torture_phase_name = "start";
static atomic_int torture_stop_flag;
static atomic_int torture_done_flag;
static uint64_t   torture_start_ns;   /* written before any thread starts */

static inline void torture_phase(const char *what)
{
    atomic_store_explicit(&torture_phase_name, what, memory_order_relaxed);
}

static inline bool torture_stopping(void)
{
    return atomic_load_explicit(&torture_stop_flag, memory_order_relaxed) != 0;
}

static inline void torture_stop(void)
{
    atomic_store_explicit(&torture_stop_flag, 1, memory_order_relaxed);
}

static inline void torture_violation(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define TORTURE_VIOLATION(...) torture_violation(__FILE__, __LINE__, __VA_ARGS__)

static inline void torture_violation(const char *file, int line, const char *fmt, ...)
{
    unsigned long long n = atomic_fetch_add(&torture_violations, 1) + 1;
    char msg[512];
    va_list ap;

    if (n > TORTURE_PRINT_MAX)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: VIOLATION #%llu at %s:%d (%.3f s, phase %s): %s\n",
            torture_o.name, n, file, line,
            (double)(torture_now_ns() - torture_start_ns) / 1e9,
            atomic_load_explicit(&torture_phase_name, memory_order_relaxed), msg);
    if (n == TORTURE_PRINT_MAX)
        fprintf(stderr, "%s: further violations are counted, not printed\n",
                torture_o.name);
}

static inline void torture_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Sleeps; a caller that is attached must be inside a blocking region. */
static inline void torture_sleep_us(unsigned us)
{
    struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/*
 * Delay injection (rcutorture's habit): stretches a window the runtime must
 * get right whatever its length, chosen by a hash so that a run with the
 * same seed delays the same objects.  One key in 32 spins a few
 * microseconds; one in 1024 also yields the CPU.
 */
static inline void torture_maybe_delay(uint64_t key)
{
    uint64_t x = torture_hash(key, torture_o.seed ^ 0x5bd1e995u);

    if ((x & 31) == 0) {
        unsigned n = 200 + (unsigned)((x >> 8) & 1023);
        while (n--)
            torture_cpu_relax();
        if (((x >> 20) & 31) == 0)
            sched_yield();
    }
}

/* ---- threads ------------------------------------------------------- */

static inline void torture_spawn(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int err, tries = 0;

    /* A thread that just exited may still hold its stack for a moment. */
    while ((err = pthread_create(t, NULL, fn, arg)) == EAGAIN && tries++ < 1000)
        torture_sleep_us(1000);
    if (err != 0) {
        fprintf(stderr, "%s: pthread_create: %s\n", torture_o.name, strerror(err));
        abort();
    }
}

/* pthread_join for an attached caller: the wait is a blocking region. */
static inline void torture_join_attached(pthread_t t)
{
    rcgc_blocking_begin();
    pthread_join(t, NULL);
    rcgc_blocking_end();
}

/* Attaches the calling thread or dies. */
static inline void torture_attach(void)
{
    int err = rcgc_thread_attach();

    if (err != 0) {
        fprintf(stderr, "%s: rcgc_thread_attach: %s\n", torture_o.name, strerror(err));
        abort();
    }
}

/* A mutator's pauses between its rounds, at random: one round in
   `blocking` a yield inside a blocking region (the owner away: others
   merge for it, the collector runs); and one in `rebirth`, if nonzero, a
   detach and a new attach with the references in hand kept, so that what
   the thread owned loses its owner while others keep using it.  True
   after a rebirth. */
static inline bool torture_pause(torture_rng *r, uint32_t blocking, uint32_t rebirth)
{
    if (torture_chance(r, blocking)) {
        rcgc_blocking_begin();
        sched_yield();
        rcgc_blocking_end();
    }
    if (rebirth == 0 || !torture_chance(r, rebirth))
        return false;
    rcgc_thread_detach();
    torture_attach();
    return true;
}

/*
 * A sense-reversing spin barrier for a small team.  The last thread to
 * arrive samples the stop flag and publishes it with the release, so every
 * member leaves the same barrier with the same answer and no one is left
 * waiting for a partner that quit.  Waiters spin a little, then yield (the
 * CI machines have two cores), and call rcgc_safepoint() now and then
 * unless told not to (a spinning thread must not stall grace periods
 * forever, but the lastref test wants an owner that does not merge while
 * its partners drop).
 */
typedef struct torture_barrier {
    atomic_uint arrived;
    atomic_uint sense;
    atomic_int  stop;
    unsigned    size;
} torture_barrier;

static inline void torture_barrier_init(torture_barrier *b, unsigned size)
{
    atomic_init(&b->arrived, 0);
    atomic_init(&b->sense, 0);
    atomic_init(&b->stop, 0);
    b->size = size;
}

/* Returns true if the run is stopping (the same answer for every member). */
static inline bool torture_barrier_wait(torture_barrier *b, unsigned *local_sense,
                                        bool safepoints)
{
    unsigned sense = *local_sense ^ 1u;
    unsigned long spins = 0;

    *local_sense = sense;
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == b->size - 1) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        atomic_store_explicit(&b->stop, torture_stopping(), memory_order_relaxed);
        /* Pairs with the acquire load of the waiters below. */
        atomic_store_explicit(&b->sense, sense, memory_order_release);
    } else {
        while (atomic_load_explicit(&b->sense, memory_order_acquire) != sense) {
            spins++;
            if (spins < 64)
                torture_cpu_relax();
            else
                sched_yield();
            if (safepoints && (spins & 255) == 0)
                rcgc_safepoint();
        }
    }
    return atomic_load_explicit(&b->stop, memory_order_relaxed) != 0;
}

/* ---- per-id record of creation and finalization -------------------- */

/*
 * One byte per object id, in chunks allocated on first use: bit 7 says
 * the object was created, the low bits count its finalizer runs.  At the
 * end every created id must read exactly TORTURE_TRACK_DONE.  The table
 * outlives the objects, so a finalizer that runs twice is caught even if
 * the body was reused in between.
 */
#define TORTURE_TRACK_CREATED 0x80u
#define TORTURE_TRACK_DONE    0x81u
#define TORTURE_TRACK_CHUNK_BITS 20
#define TORTURE_TRACK_CHUNKS  512          /* 2^29 ids; more are counted only */

static _Atomic(atomic_uchar *) torture_track_chunks[TORTURE_TRACK_CHUNKS];
static atomic_ullong torture_next_id = 1;
static atomic_ullong torture_created;
static atomic_ullong torture_finalized;

static inline atomic_uchar *torture_track_entry(uint64_t id, bool create)
{
    uint64_t c = id >> TORTURE_TRACK_CHUNK_BITS;
    atomic_uchar *chunk, *expected = NULL;

    if (c >= TORTURE_TRACK_CHUNKS)
        return NULL;
    /* Acquire pairs with the release CAS below (the chunk's zeroed bytes). */
    chunk = atomic_load_explicit(&torture_track_chunks[c], memory_order_acquire);
    if (chunk == NULL) {
        if (!create)
            return NULL;
        chunk = calloc((size_t)1 << TORTURE_TRACK_CHUNK_BITS, 1);
        if (chunk == NULL) {
            fprintf(stderr, "%s: out of memory for the id table\n", torture_o.name);
            abort();
        }
        if (!atomic_compare_exchange_strong_explicit(&torture_track_chunks[c], &expected,
                                                     chunk, memory_order_release,
                                                     memory_order_acquire)) {
            free(chunk);
            chunk = expected;
        }
    }
    return &chunk[id & (((uint64_t)1 << TORTURE_TRACK_CHUNK_BITS) - 1)];
}

/* Has the finalizer of object `id` run (at least once)? */
static inline bool torture_track_finalized(uint64_t id)
{
    atomic_uchar *e = torture_track_entry(id, false);

    return e != NULL && (atomic_load_explicit(e, memory_order_relaxed) & 0x7fu) != 0;
}

/* Checks every created id; returns how many are not finalized exactly once. */
static inline uint64_t torture_track_audit(void)
{
    uint64_t last = atomic_load(&torture_next_id), id, bad = 0;

    for (id = 1; id < last; id++) {
        atomic_uchar *e = torture_track_entry(id, false);
        unsigned v;

        if (e == NULL)
            continue;   /* beyond the table: only the totals check it */
        v = atomic_load_explicit(e, memory_order_relaxed);
        if (v != TORTURE_TRACK_DONE) {
            bad++;
            if (v == TORTURE_TRACK_CREATED)
                TORTURE_VIOLATION("object id %" PRIu64 " was never finalized (leak)", id);
            else
                TORTURE_VIOLATION("object id %" PRIu64 ": created %s, finalized %u times",
                                  id, (v & TORTURE_TRACK_CREATED) ? "yes" : "no",
                                  v & 0x7fu);
        }
    }
    return bad;
}

/* ---- the test object ----------------------------------------------- */

#define TORTURE_MAGIC_LIVE 0x4c1fe0b1ec7a11feu
#define TORTURE_MAGIC_DEAD 0xdeadbeefdeadbeefu
#define TORTURE_RCGC_POISON 0xdbdbdbdbdbdbdbdbu  /* debug builds fill released bodies */
#define TORTURE_FREED_BYTE  0x6b                  /* torture_free fills freed blocks */
#define TORTURE_FREED_MAGIC 0x6b6b6b6b6b6b6b6bu   /* ... so a freed body's magic reads */

typedef struct torture_obj {
    uint64_t     magic;     /* LIVE from creation to finalize, then DEAD */
    uint64_t     id;        /* unique, from 1 */
    uint64_t     gen;       /* birth generation; the finalizer adds 1 */
    uint64_t     check;     /* torture_obj_sum() of the three above, at birth */
    atomic_uint  fin_runs;  /* finalizer entries: must end at exactly 1 */
} torture_obj;

static inline uint64_t torture_obj_gen(uint64_t id)
{
    return torture_hash(id, torture_o.seed) >> 16;
}

static inline uint64_t torture_obj_sum(uint64_t magic, uint64_t id, uint64_t gen)
{
    return torture_hash(magic ^ gen, id) | 1u;
}

/* Stamps a body that rcgc_new just returned (zeroed, not yet shared). */
static inline void torture_obj_init(torture_obj *o)
{
    uint64_t id = atomic_fetch_add_explicit(&torture_next_id, 1, memory_order_relaxed);
    atomic_uchar *e = torture_track_entry(id, true);
    unsigned old;

    if (o->magic != 0 || o->id != 0 || atomic_load(&o->fin_runs) != 0)
        TORTURE_VIOLATION("rcgc_new returned a body that is not zeroed (%p)", (void *)o);
    o->magic = TORTURE_MAGIC_LIVE;
    o->id = id;
    o->gen = torture_obj_gen(id);
    o->check = torture_obj_sum(o->magic, id, o->gen);
    atomic_store_explicit(&o->fin_runs, 0, memory_order_relaxed);
    if (e != NULL) {
        old = atomic_exchange_explicit(e, TORTURE_TRACK_CREATED, memory_order_relaxed);
        if (old != 0)
            TORTURE_VIOLATION("object id %" PRIu64 " created twice", id);
    }
    atomic_fetch_add_explicit(&torture_created, 1, memory_order_relaxed);
}

/* Checks an object the caller holds a reference to.  `where` names the
   operation that produced it.  Returns false (and counts a violation) if
   the body is poisoned or damaged. */
static inline bool torture_obj_ok(const torture_obj *o, const char *where)
{
    if (o == NULL) {
        TORTURE_VIOLATION("%s: NULL where an object was expected", where);
        return false;
    }
    if (o->magic == TORTURE_MAGIC_LIVE && o->gen == torture_obj_gen(o->id) &&
        o->check == torture_obj_sum(o->magic, o->id, o->gen))
        return true;
    if (o->magic == TORTURE_MAGIC_DEAD)
        TORTURE_VIOLATION("%s: object %p (id %" PRIu64 ") is poisoned: its finalizer "
                          "already ran (premature free, or a dead object handed out "
                          "again)", where, (const void *)o, o->id);
    else if (o->magic == TORTURE_FREED_MAGIC)
        TORTURE_VIOLATION("%s: object %p carries the free hook's fill: its memory was "
                          "already freed (premature free)", where, (const void *)o);
    else if (o->magic == TORTURE_RCGC_POISON)
        TORTURE_VIOLATION("%s: object %p carries rcgc's debug poison: it was already "
                          "released (premature free)", where, (const void *)o);
    else
        TORTURE_VIOLATION("%s: object %p is damaged (magic %#" PRIx64 " id %" PRIu64
                          " gen %#" PRIx64 ")", where, (const void *)o, o->magic, o->id,
                          o->gen);
    return false;
}

/*
 * The common part of every test finalizer: the body must be live and intact
 * (a poisoned one means a second release), the run is counted in the body
 * and in the id table, then the body is poisoned, unless the program may
 * go on using the object (poison false: a finalizer that resurrects it, or
 * one whose cycle another member's finalizer may resurrect).
 */
static inline void torture_obj_finalize_as(torture_obj *o, const char *type, bool poison)
{
    unsigned runs = atomic_fetch_add_explicit(&o->fin_runs, 1, memory_order_relaxed);
    atomic_uchar *e;
    unsigned old;

    if (runs != 0) {
        TORTURE_VIOLATION("%s %p (id %" PRIu64 "): finalizer entered %u times",
                          type, (void *)o, o->id, runs + 1);
        return;
    }
    if (o->magic == TORTURE_MAGIC_DEAD) {
        TORTURE_VIOLATION("%s %p (id %" PRIu64 "): finalizer on a poisoned object "
                          "(double release)", type, (void *)o, o->id);
        return;
    }
    if (!torture_obj_ok(o, "finalize"))
        return;
    e = torture_track_entry(o->id, false);
    if (e != NULL) {
        old = atomic_fetch_add_explicit(e, 1, memory_order_relaxed);
        if (old != TORTURE_TRACK_CREATED)
            TORTURE_VIOLATION("%s id %" PRIu64 ": finalized again (table %#x)", type,
                              o->id, old);
    }
    if (poison) {
        o->magic = TORTURE_MAGIC_DEAD;
        o->gen++;
    }
    atomic_fetch_add_explicit(&torture_finalized, 1, memory_order_relaxed);
}

static inline void torture_obj_finalize(torture_obj *o, const char *type)
{
    torture_obj_finalize_as(o, type, true);
}

/* ---- counting allocator ------------------------------------------- */

static atomic_ullong torture_mem_allocs;
static atomic_ullong torture_mem_frees;
static atomic_llong  torture_mem_bytes;

static void *torture_alloc(size_t size, void *ctx)
{
    void *p = aligned_alloc(16, (size + 15) & ~(size_t)15);

    (void)ctx;
    if (p != NULL) {
        atomic_fetch_add_explicit(&torture_mem_allocs, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&torture_mem_bytes, (long long)size,
                                  memory_order_relaxed);
    }
    return p;
}

/* Freed blocks are filled with TORTURE_FREED_BYTE first, so that a reader
   of a freed object finds it damaged in every build, not only where the
   sanitizers or a debug build's quarantine look. */
static void torture_free(void *p, size_t size, void *ctx)
{
    (void)ctx;
    if (p == NULL)
        return;
    memset(p, TORTURE_FREED_BYTE, size);
    atomic_fetch_add_explicit(&torture_mem_frees, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&torture_mem_bytes, (long long)size, memory_order_relaxed);
    free(p);
}

/* ---- start and finish ---------------------------------------------- */

/*
 * A debug build of rcgc aborts on misuse it detects (a use of a freed
 * object, say), and so do the sanitizers: the verdict line is still the
 * last thing printed.  The line is built in advance; the handler only
 * writes it (async-signal-safe) and lets the signal kill the process.
 */
static char torture_abort_line[256];
static size_t torture_abort_len;

static void torture_on_abort(int sig)
{
    if (!atomic_load_explicit(&torture_done_flag, memory_order_relaxed))
        (void)!write(1, torture_abort_line, torture_abort_len);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void *torture_watchdog(void *arg)
{
    uint64_t limit_ns = (uint64_t)(torture_o.seconds * 3e9) + 120 * 1000000000ull;

    (void)arg;
    while (!atomic_load_explicit(&torture_done_flag, memory_order_relaxed)) {
        if (torture_now_ns() - torture_start_ns > limit_ns) {
            fprintf(stderr, "%s: watchdog: still running after %.0f s (phase %s): "
                    "hang\n", torture_o.name, (double)limit_ns / 1e9,
                    atomic_load_explicit(&torture_phase_name, memory_order_relaxed));
            printf("%s: FAIL ops=0 violations=%llu seed=%" PRIu64 " threads=%d "
                   "seconds=%g (hang in phase %s)\n", torture_o.name,
                   (unsigned long long)atomic_load(&torture_violations) + 1,
                   torture_o.seed, torture_o.threads, torture_o.seconds,
                   atomic_load_explicit(&torture_phase_name, memory_order_relaxed));
            fflush(stdout);
            _exit(1);
        }
        torture_sleep_us(100000);
    }
    return NULL;
}

/*
 * Parses the options, prints the seed, starts the runtime with the counting
 * allocator (the caller is attached) and the watchdog.  min_threads: the
 * fewest workers the program can run with.
 */
static inline void torture_start(const char *name, int argc, char **argv,
                                 int min_threads)
{
    rcgc_options ro;
    pthread_t wd;
    int i, err;

    setvbuf(stdout, NULL, _IOLBF, 0);
    torture_o.name = name;
    torture_o.threads = 4;
    torture_o.seconds = 5;
    torture_o.seed = (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
    for (i = 1; i < argc; i++) {
        const char *v;
        char *end;

        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            torture_usage(name, 0);
        if ((v = torture_optval(argc, argv, &i, "--threads")) != NULL) {
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || n > 1024)
                torture_usage(name, 2);
            torture_o.threads = (int)n;
        } else if ((v = torture_optval(argc, argv, &i, "--seconds")) != NULL) {
            double s = strtod(v, &end);
            if (*end || !(s >= 0 && s <= 86400))
                torture_usage(name, 2);
            torture_o.seconds = s;
        } else if ((v = torture_optval(argc, argv, &i, "--seed")) != NULL) {
            errno = 0;
            torture_o.seed = strtoull(v, &end, 0);
            if (*end || errno)
                torture_usage(name, 2);
        } else {
            fprintf(stderr, "%s: unknown argument '%s'\n", name, argv[i]);
            torture_usage(name, 2);
        }
    }
    if (torture_o.threads < min_threads)
        torture_o.threads = min_threads;
    printf("%s: seed=%" PRIu64 " threads=%d seconds=%g (replay: %s --threads %d "
           "--seconds %g --seed %" PRIu64 ")\n", name, torture_o.seed, torture_o.threads,
           torture_o.seconds, name, torture_o.threads, torture_o.seconds,
           torture_o.seed);

    snprintf(torture_abort_line, sizeof torture_abort_line,
             "%s: FAIL ops=0 violations=1 seed=%" PRIu64 " threads=%d seconds=%g "
             "(aborted: see stderr)\n", name, torture_o.seed, torture_o.threads,
             torture_o.seconds);
    torture_abort_len = strlen(torture_abort_line);
    signal(SIGABRT, torture_on_abort);

    torture_start_ns = torture_now_ns();
    memset(&ro, 0, sizeof ro);
    ro.alloc = torture_alloc;
    ro.free = torture_free;
    err = rcgc_init(&ro);
    if (err != 0) {
        fprintf(stderr, "%s: rcgc_init: %s\n", name, strerror(err));
        exit(1);
    }
    torture_spawn(&wd, torture_watchdog, NULL);
    pthread_detach(wd);
    torture_phase("run");
}

/* Waits (as a blocking region) until the run's time is up, then raises the
   stop flag. */
static inline void torture_run_timer(void)
{
    uint64_t end = torture_start_ns + (uint64_t)(torture_o.seconds * 1e9);
    uint64_t now;

    rcgc_blocking_begin();
    while ((now = torture_now_ns()) < end) {
        uint64_t left_us = (end - now) / 1000;
        torture_sleep_us(left_us > 50000 ? 50000 : (unsigned)left_us + 1);
    }
    torture_stop();
    rcgc_blocking_end();
}

/*
 * Starts n workers, fn(&state i), the states `size` bytes apart from
 * `states` (the caller fills them in first), lets them run for the run's
 * time (torture_run_timer), and joins them; the calling thread waits in
 * blocking regions.
 */
static inline void torture_run_workers(unsigned n, void *(*fn)(void *), void *states,
                                       size_t size)
{
    pthread_t *threads = calloc(n, sizeof *threads);

    if (threads == NULL)
        abort();
    rcgc_blocking_begin();
    for (unsigned i = 0; i < n; i++)
        torture_spawn(&threads[i], fn, (char *)states + i * size);
    rcgc_blocking_end();
    torture_run_timer();
    torture_phase("join");
    rcgc_blocking_begin();
    for (unsigned i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    rcgc_blocking_end();
    free(threads);
}

static inline bool torture_time_up(void)
{
    return torture_now_ns() - torture_start_ns >= (uint64_t)(torture_o.seconds * 1e9);
}

/*
 * Called by main, attached, once every worker has exited and the program has
 * dropped every reference it held; every rcgc object the program created
 * must be a torture object.  Waits for reclamation (the watchdog reports a
 * hang if a grace period never ends), checks the runtime's statistics, the
 * finalizer totals and the per-id table, shuts the runtime down, checks that
 * all memory went back to the free hook, and prints the verdict.  `extra` is
 * printed on the summary line before it.  Returns the exit status.
 */
static inline int torture_finish(uint64_t ops, const char *extra)
{
    uint64_t created, finalized, bad;
    unsigned long long allocs, frees, violations;
    long long bytes;
    rcgc_stats st;

    torture_phase("final reclaim");
    rcgc_safepoint();
    rcgc_reclaim_wait();
    torture_phase("final checks");
    rcgc_get_stats(&st);
    created = atomic_load(&torture_created);
    finalized = atomic_load(&torture_finalized);
    if (st.live != 0)
        TORTURE_VIOLATION("rcgc_get_stats: live=%" PRIu64 " after every reference was "
                          "dropped (allocated=%" PRIu64 " freed=%" PRIu64 ")", st.live,
                          st.allocated, st.freed);
    if (st.allocated != created)
        TORTURE_VIOLATION("rcgc_get_stats: allocated=%" PRIu64 " but the test created %"
                          PRIu64, st.allocated, created);
    if (st.freed != st.allocated)
        TORTURE_VIOLATION("rcgc_get_stats: freed=%" PRIu64 " != allocated=%" PRIu64,
                          st.freed, st.allocated);
    if (finalized != created)
        TORTURE_VIOLATION("%" PRIu64 " objects created, %" PRIu64 " finalizer runs",
                          created, finalized);
    bad = torture_track_audit();

    torture_phase("shutdown");
    rcgc_shutdown();
    allocs = atomic_load(&torture_mem_allocs);
    frees = atomic_load(&torture_mem_frees);
    bytes = atomic_load(&torture_mem_bytes);
    if (allocs != frees || bytes != 0)
        TORTURE_VIOLATION("after rcgc_shutdown the free hook got %llu of %llu blocks "
                          "back (%lld bytes outstanding)", frees, allocs, bytes);
    if (allocs < created)
        TORTURE_VIOLATION("the alloc hook saw %llu allocations for %" PRIu64 " objects",
                          allocs, created);
    atomic_store(&torture_done_flag, 1);

    violations = atomic_load(&torture_violations);
    printf("%s: created=%" PRIu64 " finalized=%" PRIu64 " bad_ids=%" PRIu64
           " mem_blocks=%llu/%llu%s%s\n", torture_o.name, created, finalized, bad, frees,
           allocs, extra && *extra ? " " : "", extra ? extra : "");
    printf("%s: %s ops=%" PRIu64 " violations=%llu seed=%" PRIu64 " threads=%d "
           "seconds=%g\n", torture_o.name, violations ? "FAIL" : "PASS", ops, violations,
           torture_o.seed, torture_o.threads, torture_o.seconds);
    return violations ? 1 : 0;
}

#endif /* RCGC_TORTURE_H */
