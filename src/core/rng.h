/*
** rng.h — counter-based random numbers.
**
** Every random value in dorac is a pure function of (seed, stream, index):
** a dropout mask element, an initial adapter weight, a sampled data index.
** Nothing depends on the order in which threads draw, so results are the
** same for any thread count and on any device, and a resumed run needs to
** store only the seed and a step counter, never a generator's state.
**
** The mixer is SplitMix64's finaliser applied twice, keyed by the seed and
** the stream; it passes the usual avalanche tests and is cheap on a GPU.
*/
#ifndef DORAC_CORE_RNG_H
#define DORAC_CORE_RNG_H

#include <stdint.h>

/* The same functions compile for a GPU: the CUDA backend draws dropout masks
** with them, bit for bit as the CPU does. */
#ifdef __CUDACC__
#define DORAC_RNG_FN static inline __host__ __device__
#else
#define DORAC_RNG_FN static inline
#endif

DORAC_RNG_FN uint64_t dorac_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* 64 random bits for element `index` of stream `stream` under `seed`. */
DORAC_RNG_FN uint64_t dorac_rng_bits(uint64_t seed, uint64_t stream, uint64_t index) {
    return dorac_mix64(dorac_mix64(seed ^ dorac_mix64(stream)) + index);
}

/* Uniform in [0, 1), 24 bits of resolution (exactly representable in float). */
DORAC_RNG_FN float dorac_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    return (float)(dorac_rng_bits(seed, stream, index) >> 40) * (1.0f / 16777216.0f);
}

/* Uniform in [0, 1), 53 bits of resolution. */
DORAC_RNG_FN double dorac_rng_uniform_f64(uint64_t seed, uint64_t stream, uint64_t index) {
    return (double)(dorac_rng_bits(seed, stream, index) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal by Box-Muller on two uniforms of the same (seed, stream). */
double dorac_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);

#endif
