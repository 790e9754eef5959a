/*
 * tap.h: a minimal Test Anything Protocol producer for the unit tests.
 *
 *   plan(n)                 "1..n" up front (or done_testing() prints it last)
 *   ok(cond, fmt, ...)      one test point; returns cond so callers can branch
 *   is_int / is_uint / is_size / is_ptr (got, expected, fmt, ...)
 *                           ok() that also prints both values on failure
 *   diag(fmt, ...)          "# ..." on stdout
 *   skip(fmt, ...)          "ok N # SKIP ..." (a test point that passes)
 *   bail_out(fmt, ...)      "Bail out! ..." and exit 2
 *   return done_testing();  trailing plan if none was given; exit status 1 if
 *                           any point failed or the count differs from the plan
 *
 * ctest judges by the exit status only, so done_testing()'s value must be
 * what main() returns.  Test points may be emitted from any thread (a mutex
 * keeps the numbering and the lines whole); stdout is unbuffered so a crash
 * leaves every line printed before it.
 */
#ifndef RCGC_TAP_H
#define RCGC_TAP_H

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t tap_lock_ = PTHREAD_MUTEX_INITIALIZER;
static unsigned tap_run_;
static unsigned tap_failed_;
static unsigned tap_planned_;    /* 0: no plan yet */
static int      tap_unbuffered_;

static inline void tap_setup_(void)
{
    if (!tap_unbuffered_) {
        setvbuf(stdout, NULL, _IONBF, 0);
        tap_unbuffered_ = 1;
    }
}

static inline void plan(unsigned n)
{
    pthread_mutex_lock(&tap_lock_);
    tap_setup_();
    tap_planned_ = n;
    printf("1..%u\n", n);
    pthread_mutex_unlock(&tap_lock_);
}

static inline void tap_vdiag_(const char *fmt, va_list ap)
{
    char buf[1024];
    const char *p = buf;

    vsnprintf(buf, sizeof buf, fmt, ap);
    /* prefix every line with "# " */
    fputs("# ", stdout);
    for (; *p; p++) {
        fputc(*p, stdout);
        if (*p == '\n' && p[1] != '\0')
            fputs("# ", stdout);
    }
    fputc('\n', stdout);
}

__attribute__((format(printf, 1, 2)))
static inline void diag(const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&tap_lock_);
    tap_setup_();
    va_start(ap, fmt);
    tap_vdiag_(fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&tap_lock_);
}

static inline int tap_vok_(int cond, const char *fmt, va_list ap)
{
    pthread_mutex_lock(&tap_lock_);
    tap_setup_();
    tap_run_++;
    if (!cond)
        tap_failed_++;
    printf("%sok %u - ", cond ? "" : "not ", tap_run_);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    pthread_mutex_unlock(&tap_lock_);
    return cond;
}

__attribute__((format(printf, 2, 3)))
static inline int ok(int cond, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = tap_vok_(cond, fmt, ap);
    va_end(ap);
    return r;
}

#define TAP_IS_(name, T, PRI)                                               \
    __attribute__((format(printf, 3, 4)))                                   \
    static inline int name(T got, T expected, const char *fmt, ...)         \
    {                                                                       \
        va_list ap;                                                         \
        int r;                                                              \
        va_start(ap, fmt);                                                  \
        r = tap_vok_(got == expected, fmt, ap);                             \
        va_end(ap);                                                         \
        if (!r)                                                             \
            diag("     got: %" PRI "\n expected: %" PRI, got, expected);    \
        return r;                                                           \
    }

TAP_IS_(is_int, intmax_t, PRIdMAX)
TAP_IS_(is_uint, uintmax_t, PRIuMAX)
TAP_IS_(is_size, size_t, "zu")
TAP_IS_(is_ptr, const void *, "p")

__attribute__((format(printf, 1, 2)))
static inline void skip(const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&tap_lock_);
    tap_setup_();
    tap_run_++;
    printf("ok %u # SKIP ", tap_run_);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    pthread_mutex_unlock(&tap_lock_);
}

__attribute__((format(printf, 1, 2), noreturn))
static inline void bail_out(const char *fmt, ...)
{
    va_list ap;

    tap_setup_();
    fputs("Bail out! ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    exit(2);
}

/* The exit status for main(): 0 only if every point passed and the count
   matches the plan. */
static inline int done_testing(void)
{
    int status;

    pthread_mutex_lock(&tap_lock_);
    tap_setup_();
    if (tap_planned_ == 0)
        printf("1..%u\n", tap_run_);
    else if (tap_planned_ != tap_run_)
        printf("# planned %u tests but ran %u\n", tap_planned_, tap_run_);
    if (tap_failed_)
        printf("# failed %u of %u tests\n", tap_failed_, tap_run_);
    status = tap_failed_ != 0 || (tap_planned_ != 0 && tap_planned_ != tap_run_)
          || tap_run_ == 0;
    pthread_mutex_unlock(&tap_lock_);
    return status;
}

/* Stops the test program right away when a precondition fails, so later
   points do not crash on a NULL. */
#define TAP_REQUIRE(cond, ...)                                              \
    do {                                                                    \
        if (!ok((cond), __VA_ARGS__))                                       \
            bail_out("required test failed: %s", #cond);                    \
    } while (0)

#endif /* RCGC_TAP_H */
