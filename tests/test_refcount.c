/*
 * test_refcount.c: the owner's paths of biased counting, on one thread.
 *
 *   rcgc_new: zeroed body, count 1, owned by the caller (owner word = tid,
 *   local 1, shared 0); incref/decref/refcount on the owner's local count;
 *   finalize runs exactly once, when the count reaches zero, and sees the
 *   body intact; stats allocated/freed/live follow; rcgc_new(NULL) and
 *   rcgc_new_sized below type->size fail with EINVAL; every function accepts
 *   NULL objects.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rcgc.h"
#include "internal.h"
#include "tap.h"

/* These tests check releases the moment a count reaches zero: no background
   collector, whose examination pins tracked objects for its duration. */
static const rcgc_options refcount_only = { .manual = 1 };

typedef struct thing {
    unsigned magic;
    unsigned id;
    char     payload[40];
} thing;

#define THING_MAGIC 0x7431u

static unsigned finalized;          /* single-threaded test: plain counters */
static unsigned finalize_bad;       /* finalizer saw a damaged body */
static unsigned last_finalized_id;

static void thing_finalize(void *obj)
{
    thing *t = obj;

    if (t->magic != THING_MAGIC)
        finalize_bad++;
    last_finalized_id = t->id;
    finalized++;
}

static const rcgc_type thing_type = { "thing", sizeof(thing), NULL, thing_finalize, 0 };
static const rcgc_type plain_type = { "plain", 24, NULL, NULL, 0 };

static int all_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    size_t i;

    for (i = 0; i < n; i++)
        if (c[i])
            return 0;
    return 1;
}

int main(void)
{
    rcgc_stats s0, s1;
    uintptr_t owner, tid;
    uint32_t local;
    intptr_t shared;
    thing *t, *many[100];
    void *p;
    size_t i;

    TAP_REQUIRE(rcgc_init(&refcount_only) == 0, "rcgc_init");
    tid = rcgc__test_tid();

    /* -- creation ---------------------------------------------------------- */
    rcgc_get_stats(&s0);
    t = rcgc_new(&thing_type);
    TAP_REQUIRE(t != NULL, "rcgc_new returns an object");
    ok(((uintptr_t)t & 15) == 0, "the body is 16-byte aligned");
    ok(all_zero(t, sizeof *t), "the body is zeroed");
    is_size(rcgc_refcount(t), 1, "a new object has count 1");
    ok(rcgc_type_of(t) == &thing_type, "rcgc_type_of returns its type");
    rcgc__test_raw(t, &owner, &local, &shared);
    is_uint(owner & ~RCGC__OWNER_FLAGS, tid, "it is owned by the creating thread");
    is_uint(local, 1, "local count 1");
    is_int(shared, 0, "shared word 0 (no count, no flags)");
    rcgc_get_stats(&s1);
    is_uint(s1.allocated - s0.allocated, 1, "stats: allocated +1");
    is_uint(s1.live - s0.live, 1, "stats: live +1");
    t->magic = THING_MAGIC;
    t->id = 7;

    /* -- owner increments and decrements ---------------------------------- */
    ok(rcgc_incref(t) == t, "rcgc_incref returns its argument");
    is_size(rcgc_refcount(t), 2, "count 2 after incref");
    for (i = 0; i < 1000; i++)
        rcgc_incref(t);
    is_size(rcgc_refcount(t), 1002, "count 1002 after 1000 more");
    rcgc__test_raw(t, &owner, &local, &shared);
    ok(local == 1002 && shared == 0, "the owner counts in the local word only (local %u, shared %ld)",
       local, (long)shared);
    for (i = 0; i < 1001; i++)
        rcgc_decref(t);
    is_size(rcgc_refcount(t), 1, "back to 1");
    is_uint(finalized, 0, "not finalized while count > 0");
    rcgc_get_stats(&s1);
    is_uint(s1.freed - s0.freed, 0, "stats: nothing freed yet");

    /* -- release at zero --------------------------------------------------- */
    rcgc_decref(t);
    is_uint(finalized, 1, "finalize ran once at zero");
    is_uint(last_finalized_id, 7, "... on this object");
    is_uint(finalize_bad, 0, "... and saw its body intact");
    rcgc_get_stats(&s1);
    is_uint(s1.freed - s0.freed, 1, "stats: freed +1");
    is_uint(s1.live, s0.live, "stats: live back to where it was");

    /* many objects, finalizers each exactly once */
    finalized = 0;
    rcgc_get_stats(&s0);
    for (i = 0; i < 100; i++) {
        many[i] = rcgc_new(&thing_type);
        many[i]->magic = THING_MAGIC;
        many[i]->id = (unsigned)i;
        rcgc_incref(many[i]);
    }
    rcgc_get_stats(&s1);
    ok(s1.allocated - s0.allocated == 100 && s1.live - s0.live == 100,
       "stats: 100 allocated, 100 live");
    for (i = 0; i < 100; i++)
        rcgc_decref(many[i]);
    is_uint(finalized, 0, "dropping one of two references finalizes nothing");
    for (i = 0; i < 100; i++)
        rcgc_decref(many[i]);
    is_uint(finalized, 100, "dropping the second finalizes each exactly once");
    rcgc_get_stats(&s1);
    ok(s1.freed - s0.freed == 100 && s1.live == s0.live,
       "stats: 100 freed, live unchanged overall (freed +%llu)",
       (unsigned long long)(s1.freed - s0.freed));

    /* -- rcgc_new_sized ---------------------------------------------------- */
    errno = 0;
    p = rcgc_new_sized(&thing_type, sizeof(thing) - 1);
    ok(p == NULL && errno == EINVAL, "rcgc_new_sized below type->size -> NULL + EINVAL");
    errno = 0;
    p = rcgc_new_sized(&thing_type, 0);
    ok(p == NULL && errno == EINVAL, "rcgc_new_sized(type, 0) -> NULL + EINVAL");
    errno = 0;
    p = rcgc_new_sized(NULL, 64);
    ok(p == NULL && errno == EINVAL, "rcgc_new_sized(NULL, 64) -> NULL + EINVAL");
    errno = 0;
    p = rcgc_new(NULL);
    ok(p == NULL && errno == EINVAL, "rcgc_new(NULL) -> NULL + EINVAL");

    p = rcgc_new_sized(&thing_type, sizeof(thing));
    ok(p != NULL && rcgc_refcount(p) == 1, "rcgc_new_sized at exactly type->size");
    rcgc_decref(p);
    finalized = 0;
    p = rcgc_new_sized(&thing_type, 1 << 20);
    TAP_REQUIRE(p != NULL, "rcgc_new_sized of 1 MiB");
    ok(all_zero(p, 1 << 20), "the whole 1 MiB body is zeroed");
    memset(p, 0xab, 1 << 20);          /* writable to its end (ASan checks) */
    ((thing *)p)->magic = THING_MAGIC;
    ok(rcgc_type_of(p) == &thing_type, "a sized object keeps its type");
    rcgc_decref(p);
    is_uint(finalized, 1, "a sized object is finalized at zero");

    p = rcgc_new(&plain_type);
    ok(p != NULL && all_zero(p, 24), "a type without finalize or traverse");
    rcgc_decref(p);

    /* -- NULL objects ------------------------------------------------------ */
    ok(rcgc_incref(NULL) == NULL, "rcgc_incref(NULL) returns NULL");
    rcgc_decref(NULL);
    ok(1, "rcgc_decref(NULL) does nothing");
    is_size(rcgc_refcount(NULL), 0, "rcgc_refcount(NULL) is 0");
    ok(rcgc_type_of(NULL) == NULL, "rcgc_type_of(NULL) is NULL");

    rcgc_get_stats(&s1);
    rcgc_shutdown();
    return done_testing();
}
