/*
** rng.c — the parts of the counter-based generator that are not inline.
*/
#include "core/rng.h"

#include <math.h>

double dorac_rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    /* u1 in (0,1] so that log() is finite */
    double u1 = 1.0 - dorac_rng_uniform_f64(seed, stream, 2 * index);
    double u2 = dorac_rng_uniform_f64(seed, stream, 2 * index + 1);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
