/*
 * test_init.c: starting and stopping the runtime, attaching threads.
 *
 *   rcgc_init twice -> EBUSY (from the same and from another thread);
 *   rcgc_init with only one of alloc/free -> EINVAL and nothing started;
 *   init after shutdown works, many times over;
 *   rcgc_thread_attach twice -> EBUSY, before init / after shutdown -> EINVAL;
 *   rcgc_new from an unattached thread -> NULL + EPERM;
 *   tids are never reused, not even by the same thread attaching again
 *   (pitfall 4: a new thread must never inherit a dead thread's objects).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

typedef struct box { int value; } box;
static const rcgc_type box_type = { "box", sizeof(box), NULL, NULL, 0 };

static void *plain_alloc(size_t size, void *ctx) { (void)ctx; return malloc(size); }
static void plain_free(void *p, size_t size, void *ctx) { (void)size; (void)ctx; free(p); }

static void join_blocking(pthread_t t)
{
    rcgc_blocking_begin();     /* QSBR: never wait while online */
    pthread_join(t, NULL);
    rcgc_blocking_end();
}

/* Runs on a thread that has never attached. */
typedef struct other_result {
    int       init_rc;
    void     *new_obj;
    int       new_errno;
    int       attach_rc;
    int       attach_again_rc;
    uintptr_t tid1;
    uintptr_t main_tid;
    int       reattach_rc;
    uintptr_t tid2;
    int       obj_ok;
} other_result;

static void *other_thread(void *arg)
{
    other_result *r = arg;
    box *b;

    r->init_rc = rcgc_init(NULL);
    if (!RCGC_DEBUG) {          /* debug builds abort instead (test_misuse.c) */
        errno = 0;
        r->new_obj = rcgc_new(&box_type);
        r->new_errno = errno;
    }
    r->attach_rc = rcgc_thread_attach();
    r->attach_again_rc = rcgc_thread_attach();
    r->tid1 = rcgc__test_tid();
    b = rcgc_new(&box_type);
    r->obj_ok = b != NULL && rcgc_refcount(b) == 1;
    rcgc_decref(b);
    rcgc_thread_detach();
    r->reattach_rc = rcgc_thread_attach();
    r->tid2 = rcgc__test_tid();
    rcgc_thread_detach();
    return NULL;
}

static void *attach_detach_thread(void *arg)
{
    int *rc = arg;
    box *b;

    *rc = rcgc_thread_attach();
    if (*rc == 0) {
        b = rcgc_new(&box_type);
        if (b == NULL || rcgc_refcount(b) != 1)
            *rc = -1;
        rcgc_decref(b);
        rcgc_thread_detach();
    }
    return NULL;
}

int main(void)
{
    rcgc_options opts;
    other_result r;
    pthread_t t;
    uintptr_t main_tid;
    box *b;
    int rc, i, failures;

    /* -- before init ------------------------------------------------------ */
    is_int(rcgc_thread_attach(), EINVAL, "attach before rcgc_init -> EINVAL");

    memset(&opts, 0, sizeof opts);
    opts.alloc = plain_alloc;
    is_int(rcgc_init(&opts), EINVAL, "init with alloc but no free -> EINVAL");
    memset(&opts, 0, sizeof opts);
    opts.free = plain_free;
    is_int(rcgc_init(&opts), EINVAL, "init with free but no alloc -> EINVAL");
    is_int(rcgc_thread_attach(), EINVAL, "a failed init starts nothing (attach -> EINVAL)");

    /* -- running ---------------------------------------------------------- */
    TAP_REQUIRE(rcgc_init(NULL) == 0, "rcgc_init(NULL) -> 0");
    is_int(rcgc_init(NULL), EBUSY, "second rcgc_init -> EBUSY");
    is_int(rcgc_thread_attach(), EBUSY, "init attached the caller: attach -> EBUSY");
    main_tid = rcgc__test_tid();
    ok(main_tid != 0 && main_tid != RCGC__TID_DETACHED, "main thread has a tid");

    memset(&r, 0, sizeof r);
    pthread_create(&t, NULL, other_thread, &r);
    join_blocking(t);
    is_int(r.init_rc, EBUSY, "rcgc_init from another thread while running -> EBUSY");
    if (RCGC_DEBUG)
        skip("debug build: rcgc_new from an unattached thread aborts (test_misuse)");
    else
        ok(r.new_obj == NULL && r.new_errno == EPERM,
           "rcgc_new from an unattached thread -> NULL + EPERM (errno %d)", r.new_errno);
    is_int(r.attach_rc, 0, "another thread attaches");
    is_int(r.attach_again_rc, EBUSY, "it attaches again -> EBUSY");
    ok(r.obj_ok, "it creates an object with count 1");
    ok(r.tid1 != main_tid && r.tid1 != 0, "its tid differs from main's");
    is_int(r.reattach_rc, 0, "attach after detach on the same thread -> 0");
    ok(r.tid2 != r.tid1 && r.tid2 != main_tid && r.tid2 != 0,
       "pitfall 4: re-attaching gets a fresh tid, never a reused one");

    b = rcgc_new(&box_type);
    ok(b != NULL && rcgc_refcount(b) == 1, "main creates an object");
    rcgc_decref(b);
    rcgc_shutdown();

    /* -- after shutdown --------------------------------------------------- */
    is_int(rcgc_thread_attach(), EINVAL, "attach after shutdown -> EINVAL");

    opts.alloc = plain_alloc;
    opts.free = plain_free;
    opts.alloc_ctx = NULL;
    failures = 0;
    for (i = 0; i < 20; i++) {
        int thread_rc = -2;

        rc = rcgc_init(i % 2 ? &opts : NULL);
        if (rc != 0) {
            diag("cycle %d: rcgc_init -> %d", i, rc);
            failures++;
            break;
        }
        b = rcgc_new(&box_type);
        if (b == NULL || rcgc_refcount(b) != 1)
            failures++;
        pthread_create(&t, NULL, attach_detach_thread, &thread_rc);
        join_blocking(t);
        if (thread_rc != 0) {
            diag("cycle %d: thread attach/new -> %d", i, thread_rc);
            failures++;
        }
        rcgc_decref(b);
        rcgc_shutdown();
    }
    is_int(failures, 0, "20 init/attach/new/shutdown cycles (half with an allocator)");

    is_int(rcgc_init(NULL), 0, "init once more after the cycles");
    is_int(rcgc_init(NULL), EBUSY, "and EBUSY again while running");
    rcgc_shutdown();

    return done_testing();
}
