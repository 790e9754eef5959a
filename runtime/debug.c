/*
 * debug.c: the failure routine, poisoning and the quarantine.
 *
 * rcgc__fatal writes one line with write(2) and aborts: no allocation, no
 * lock, safe in any state.  Debug builds poison a released object (magic
 * DEAD, body filled with 0xDB) and keep its memory in a FIFO quarantine of
 * RCGC__QUARANTINE_SIZE objects before freeing it, so a stale use is
 * reported as such instead of reading reused memory.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static size_t append(char *buf, size_t len, size_t cap, const char *s)
{
    while (*s && len + 1 < cap)
        buf[len++] = *s++;
    return len;
}

static size_t append_hex(char *buf, size_t len, size_t cap, uintptr_t x)
{
    char tmp[2 + 2 * sizeof(x) + 1];
    int i = (int)sizeof(tmp) - 1;

    tmp[i] = '\0';
    do {
        tmp[--i] = "0123456789abcdef"[x & 15];
        x >>= 4;
    } while (x != 0 && i > 2);
    tmp[--i] = 'x';
    tmp[--i] = '0';
    return append(buf, len, cap, &tmp[i]);
}

static const char *type_name(const void *obj)
{
    const rcgc__header *h;
    uint32_t magic;

    if (obj == NULL)
        return "?";
    h = rcgc__hdr(obj);
    magic = rcgc__u32_load_relaxed(&h->gc_bits) & RCGC__MAGIC_MASK;
    if ((magic != RCGC__MAGIC_LIVE && magic != RCGC__MAGIC_DEAD) ||
        h->type == NULL || h->type->name == NULL)
        return "?";
    return h->type->name;
}

static _Noreturn void fatal_line(const char *fn, const char *problem,
                                 const char *name, const void *obj)
{
    char line[512];
    size_t n = 0;

    n = append(line, n, sizeof(line), "rcgc: ");
    n = append(line, n, sizeof(line), fn);
    n = append(line, n, sizeof(line), ": ");
    n = append(line, n, sizeof(line), problem);
    n = append(line, n, sizeof(line), " (type ");
    n = append(line, n, sizeof(line), name);
    n = append(line, n, sizeof(line), ", object ");
    n = append_hex(line, n, sizeof(line), (uintptr_t)obj);
    n = append(line, n, sizeof(line), ")\n");
    (void)!write(2, line, n);
    abort();
}

_Noreturn void rcgc__fatal(const char *fn, const char *problem, const void *obj)
{
    fatal_line(fn, problem, type_name(obj), obj);
}

_Noreturn void rcgc__fatal_type(const char *fn, const char *problem, const rcgc_type *type)
{
    fatal_line(fn, problem, type != NULL && type->name != NULL ? type->name : "?", NULL);
}

void rcgc__debug_check(const void *obj, const char *fn)
{
    uint32_t magic = rcgc__u32_load_relaxed(&rcgc__hdr(obj)->gc_bits) & RCGC__MAGIC_MASK;

    if (magic == RCGC__MAGIC_DEAD)
        rcgc__fatal(fn, strcmp(fn, "rcgc_decref") == 0
                            ? "reference count below zero (object already released)"
                            : "use of a freed object", obj);
    if (magic != RCGC__MAGIC_LIVE)
        rcgc__fatal(fn, "not an rcgc object", obj);
    if (rcgc__tls_tid == RCGC__TID_DETACHED)
        rcgc__fatal(fn, "thread not attached", obj);
}

void rcgc__poison(rcgc__header *h)
{
    uint32_t bits = rcgc__u32_load_relaxed(&h->gc_bits);
    size_t size = rcgc__body_size(h, bits);

    /* CAS: the collector may set or clear MISSED meanwhile. */
    while (!rcgc__u32_cas_acq_rel(&h->gc_bits, &bits,
                                  (bits & RCGC__GC_FLAGS) | RCGC__MAGIC_DEAD))
        ;
    memset(rcgc__body(h), 0xdb, size);
}

static struct {
    pthread_mutex_t lock;
    rcgc__header   *ring[RCGC__QUARANTINE_SIZE];
    size_t          next;
} quarantine = { .lock = PTHREAD_MUTEX_INITIALIZER };

void rcgc__quarantine(rcgc__header *h)
{
    rcgc__header *evicted;

    if (!RCGC_DEBUG) {
        rcgc__mem_release(h);
        return;
    }
    pthread_mutex_lock(&quarantine.lock);
    evicted = quarantine.ring[quarantine.next];
    quarantine.ring[quarantine.next] = h;
    quarantine.next = (quarantine.next + 1) % RCGC__QUARANTINE_SIZE;
    pthread_mutex_unlock(&quarantine.lock);
    if (evicted != NULL)
        rcgc__mem_release(evicted);
}

void rcgc__quarantine_list(rcgc__header *h)
{
    while (h != NULL) {
        rcgc__header *next = h->link;
        rcgc__quarantine(h);
        h = next;
    }
}

void rcgc__quarantine_flush(void)
{
    pthread_mutex_lock(&quarantine.lock);
    for (size_t i = 0; i < RCGC__QUARANTINE_SIZE; i++) {
        if (quarantine.ring[i] != NULL)
            rcgc__mem_release(quarantine.ring[i]);
        quarantine.ring[i] = NULL;
    }
    quarantine.next = 0;
    pthread_mutex_unlock(&quarantine.lock);
}

void rcgc__quarantine_fork(enum rcgc__fork_step step)
{
    rcgc__fork_lock_stripes(&quarantine.lock, 1, 0, step);
}
