/*
** test.h — the project's minimal test harness.
**
** A test program is a main() that calls CHECK* macros and ends with
** `return test_report();`. A failed check prints file:line and the values,
** counts a failure, and carries on, so one run shows every failure. The
** exit status is non-zero when any check failed; CTest reads only that.
*/
#ifndef DORAC_TEST_H
#define DORAC_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "dorac.h"

static int test_failures = 0;
static int test_checks = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        test_checks++;                                                               \
        if (!(cond)) {                                                               \
            test_failures++;                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

/* A library call that must succeed; prints the library's message if not. */
#define CHECK_OK(expr)                                                               \
    do {                                                                             \
        test_checks++;                                                               \
        int check_rc_ = (expr);                                                      \
        if (check_rc_ != DORAC_OK) {                                                 \
            test_failures++;                                                         \
            fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #expr,\
                    dorac_status_name(check_rc_), dorac_last_error());               \
        }                                                                            \
    } while (0)

/* A library call that must fail with status `want`. */
#define CHECK_STATUS(expr, want)                                                     \
    do {                                                                             \
        test_checks++;                                                               \
        int check_rc_ = (expr);                                                      \
        if (check_rc_ != (want)) {                                                   \
            test_failures++;                                                         \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s\n", __FILE__,        \
                    __LINE__, #expr, dorac_status_name(check_rc_),                   \
                    dorac_status_name(want));                                        \
        }                                                                            \
    } while (0)

/* |got - want| <= tol, reporting both values. */
#define CHECK_NEAR(got, want, tol)                                                   \
    do {                                                                             \
        test_checks++;                                                               \
        double g_ = (double)(got), w_ = (double)(want), t_ = (double)(tol);          \
        if (!(fabs(g_ - w_) <= t_)) {                                                \
            test_failures++;                                                         \
            fprintf(stderr, "%s:%d: %s = %.10g, expected %s = %.10g (tol %.3g)\n",    \
                    __FILE__, __LINE__, #got, g_, #want, w_, t_);                    \
        }                                                                            \
    } while (0)

/* value <= limit, for error measures. */
#define CHECK_LE(value, limit)                                                       \
    do {                                                                             \
        test_checks++;                                                               \
        double v_ = (double)(value), l_ = (double)(limit);                           \
        if (!(v_ <= l_)) {                                                           \
            test_failures++;                                                         \
            fprintf(stderr, "%s:%d: %s = %.4g exceeds %.4g\n", __FILE__, __LINE__,   \
                    #value, v_, l_);                                                 \
        }                                                                            \
    } while (0)

/* max(acc, v) that keeps a NaN: fmax(acc, NaN) is acc, so an error measure
** folded over elements with fmax passes when an element is NaN. Folded with
** this, the measure is NaN and CHECK_LE fails. */
static inline double test_worst(double acc, double v) {
    return acc != acc || v != v ? NAN : (v > acc ? v : acc);
}

static inline int test_report(void) {
    if (test_failures)
        fprintf(stderr, "FAILED: %d of %d checks\n", test_failures, test_checks);
    else
        fprintf(stderr, "ok: %d checks\n", test_checks);
    return test_failures ? 1 : 0;
}

/* max_i |a_i - b_i| / max(max_i |b_i|, floor): relative error of a whole
** array against a reference, the measure used for tolerances here. */
static inline double rel_err_f64(const double *a, const double *b, size_t n, double floor) {
    double num = 0.0, den = floor;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (d > num || d != d) num = d != d ? INFINITY : d;
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return num / den;
}

#endif
