/*
** size.h — overflow-checked size arithmetic (stb style).
**
** Every size computed from untrusted or user-supplied numbers goes through
** these helpers before it reaches an allocator or a read. Each returns 1 and
** stores the result when it fits, 0 (storing nothing) when it overflows.
*/
#ifndef DORAC_CORE_SIZE_H
#define DORAC_CORE_SIZE_H

#include <stddef.h>
#include <stdint.h>

static inline int dorac_size_mul(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

static inline int dorac_size_add(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

/* a * b * c, for element counts times element sizes. */
static inline int dorac_size_mul3(size_t a, size_t b, size_t c, size_t *out) {
    size_t ab;
    return dorac_size_mul(a, b, &ab) && dorac_size_mul(ab, c, out);
}

/* Non-negative int64 product that stays within int64 (tensor element counts). */
static inline int dorac_i64_mul(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0) return 0;
    if (a != 0 && b > INT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

#endif
