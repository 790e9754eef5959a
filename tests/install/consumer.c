/*
 * consumer.c: the smallest program that uses an installed rcgc, built by
 * .ci/run against the installed package with find_package(rcgc) and with
 * pkg-config, shared and static.  Exits non-zero on any failure.
 *
 * RCGC_EXPECT_DEBUG (0 or 1), when given, is what RCGC_DEBUG must be: the
 * package has to pass a debug library's RCGC_DEBUG=1 on to its users.
 */
#include <rcgc.h>

#include <stdio.h>

typedef struct node {
    rcgc_ref next;
    int      value;
} node;

static void node_traverse(void *obj, rcgc_visit_fn visit, void *ctx)
{
    visit(&((node *)obj)->next, ctx);
}

static const rcgc_type node_type = {
    .name = "node",
    .size = sizeof(node),
    .traverse = node_traverse,
};

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "consumer: FAILED: %s\n", what);
        failures++;
    }
}

int main(void)
{
    rcgc_stats stats;
    node *a, *b, *loaded;

#ifdef RCGC_EXPECT_DEBUG
    check(RCGC_DEBUG == RCGC_EXPECT_DEBUG, "RCGC_DEBUG as the package says");
#endif
    if (rcgc_init(NULL) != 0) {
        fprintf(stderr, "consumer: FAILED: rcgc_init\n");
        return 1;
    }
    a = rcgc_new(&node_type);
    b = rcgc_new(&node_type);
    check(a != NULL && b != NULL, "rcgc_new");
    if (a == NULL || b == NULL)
        return 1;
    check(rcgc_type_of(a) == &node_type, "rcgc_type_of");
    b->value = 42;

    rcgc_ref_store(&a->next, b);    /* the slot takes its own reference */
    check(rcgc_refcount(b) == 2, "refcount 2 after store");
    rcgc_decref(b);                 /* now only a->next holds b */
    loaded = rcgc_ref_load(&a->next);
    check(loaded == b && loaded->value == 42, "load returns what was stored");
    check(rcgc_refcount(b) == 2, "refcount 2 after load");
    rcgc_decref(loaded);

    rcgc_get_stats(&stats);
    check(stats.allocated == 2 && stats.live == 2, "2 allocated and live");

    rcgc_decref(a);                 /* releases a, whose slot releases b */
    rcgc_reclaim_wait();
    rcgc_get_stats(&stats);
    check(stats.live == 0 && stats.freed == 2, "live 0 and freed 2 at the end");
    rcgc_shutdown();

    if (failures == 0)
        printf("consumer: ok (RCGC_DEBUG=%d)\n", RCGC_DEBUG);
    return failures != 0;
}
