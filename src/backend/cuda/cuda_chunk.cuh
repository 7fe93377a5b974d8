/*
** cuda_chunk.cuh — 16-byte chunks of a row, for the memory-bound kernels.
**
** A chunk is CUDA_CHUNK (8) consecutive elements of one row, starting at a
** multiple of 8 columns: 16 bytes of BF16, 32 of F32. When a row starts on a
** 16-byte boundary, its chunks move as single vector accesses (one 16-byte
** access for BF16, two for F32) instead of eight scalar ones, which is what
** lets a row-wise kernel approach the GPU's copy bandwidth. A row that is
** not aligned (an odd ld, a column view at an odd offset) moves element by
** element instead.
**
** Kernels give each thread the same chunks, in the same order, on either
** path, and the arithmetic on a chunk's floats is the same, so the results
** do not depend on alignment: only the loads and stores differ.
*/
#ifndef DORAC_CUDA_CHUNK_CUH
#define DORAC_CUDA_CHUNK_CUH

#include "backend/cuda/cuda_impl.cuh"

#define CUDA_CHUNK 8

/* Chunks covering n columns. */
static __host__ __device__ __forceinline__ int64_t cuda_chunks(int64_t n) {
    return (n + CUDA_CHUNK - 1) / CUDA_CHUNK;
}

/* True when row i of v starts on a 16-byte boundary, so its chunks can move
** as vectors. */
static __device__ __forceinline__ bool row_aligned16(cuda_view v, int64_t i) {
    int64_t size = v.type == DORAC_DTYPE_BF16 ? 2 : 4;
    return (((uintptr_t)v.data + (uintptr_t)(i * v.ld * size)) & 15) == 0;
}

/* z[k] = v[i, c0 + k] as fp32 for the k with c0 + k < n_cols, pad for the
** rest. c0 is a multiple of CUDA_CHUNK; vec is row_aligned16(v, i). */
static __device__ __forceinline__ void ld_chunk(float z[CUDA_CHUNK], cuda_view v, int64_t i,
                                                int64_t c0, int64_t n_cols, bool vec, float pad) {
    int64_t at = i * v.ld + c0;
    if (vec && c0 + CUDA_CHUNK <= n_cols) {
        if (v.type == DORAC_DTYPE_BF16) {
            uint4 raw = *(const uint4 *)((const __nv_bfloat16 *)v.data + at);
            const __nv_bfloat162 *pairs = (const __nv_bfloat162 *)&raw;
#pragma unroll
            for (int k = 0; k < CUDA_CHUNK / 2; k++) {
                float2 f = __bfloat1622float2(pairs[k]);
                z[2 * k] = f.x;
                z[2 * k + 1] = f.y;
            }
        } else {
            const float4 *p = (const float4 *)((const float *)v.data + at);
            float4 lo = p[0], hi = p[1];
            z[0] = lo.x, z[1] = lo.y, z[2] = lo.z, z[3] = lo.w;
            z[4] = hi.x, z[5] = hi.y, z[6] = hi.z, z[7] = hi.w;
        }
        return;
    }
#pragma unroll
    for (int k = 0; k < CUDA_CHUNK; k++)
        z[k] = c0 + k < n_cols ? ld_elem(v.data, v.type, at + k) : pad;
}

/* Row i's chunk at c0 of a BF16 view as its raw 16 bytes: the 8 values two
** to a word, +0.0 (bits 0) for the k with c0 + k >= n_cols. ld_chunk widens
** to fp32 as it loads, and the widening is a use: the thread waits for the
** load right there, so consecutive ld_chunk calls have one load in flight at
** a time. This only loads; widen_chunk_bf16 widens later, so a thread can
** issue the loads of several chunks before it waits for the first. c0 is a
** multiple of CUDA_CHUNK; vec is row_aligned16(v, i). */
static __device__ __forceinline__ uint4 ld_chunk_bf16(cuda_view v, int64_t i, int64_t c0, int64_t n_cols,
                                                      bool vec) {
    const unsigned short *p = (const unsigned short *)v.data + i * v.ld + c0;
    if (vec && c0 + CUDA_CHUNK <= n_cols) return *(const uint4 *)p;
    unsigned h[CUDA_CHUNK];
#pragma unroll
    for (int k = 0; k < CUDA_CHUNK; k++) h[k] = c0 + k < n_cols ? p[k] : 0u;
    return make_uint4(h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16);
}

/* z = the 8 BF16 values of a chunk from ld_chunk_bf16, as fp32 (exact). */
static __device__ __forceinline__ void widen_chunk_bf16(float z[CUDA_CHUNK], uint4 raw) {
    unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        z[2 * k] = __uint_as_float(w[k] << 16);
        z[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
}

/* Chunk c (columns 8c .. 8c + 7) of row i of a BF16 view that
** cuda_bf16_rows16 accepted, as 16 bytes. */
static __device__ __forceinline__ uint4 *bf16_chunk(cuda_view v, int64_t i, int64_t c) {
    return (uint4 *)v.data + i * (v.ld / CUDA_CHUNK) + c;
}

/* v[i, c0 + k] = z[k] (rounded to v's type) for the k with c0 + k < n_cols.
** c0 is a multiple of CUDA_CHUNK; vec is row_aligned16(v, i). */
static __device__ __forceinline__ void st_chunk(cuda_view v, int64_t i, int64_t c0, int64_t n_cols,
                                                bool vec, const float z[CUDA_CHUNK]) {
    int64_t at = i * v.ld + c0;
    if (vec && c0 + CUDA_CHUNK <= n_cols) {
        if (v.type == DORAC_DTYPE_BF16) {
            uint4 raw;
            __nv_bfloat162 *pairs = (__nv_bfloat162 *)&raw;
#pragma unroll
            for (int k = 0; k < CUDA_CHUNK / 2; k++)
                pairs[k] = __floats2bfloat162_rn(z[2 * k], z[2 * k + 1]);
            *(uint4 *)((__nv_bfloat16 *)v.data + at) = raw;
        } else {
            float4 *p = (float4 *)((float *)v.data + at);
            p[0] = make_float4(z[0], z[1], z[2], z[3]);
            p[1] = make_float4(z[4], z[5], z[6], z[7]);
        }
        return;
    }
#pragma unroll
    for (int k = 0; k < CUDA_CHUNK; k++)
        if (c0 + k < n_cols) st_elem(v.data, v.type, at + k, z[k]);
}

/* Threads for a block that walks one row chunk by chunk: a warp multiple,
** at least 32 and at most max_threads, no more than the row has chunks. */
static inline int cuda_row_threads(int64_t n_cols, int max_threads) {
    int64_t t = (cuda_chunks(n_cols) + 31) / 32 * 32;
    if (t < 32) t = 32;
    return t > max_threads ? max_threads : (int)t;
}

/* A grid with x over `threads`-wide groups of chunks and y over rows;
** kernels stride y by gridDim.y when there are more rows than 65535. */
static inline dim3 cuda_chunk_grid(int64_t n_rows, int64_t n_cols, int threads) {
    unsigned y = (unsigned)(n_rows < 65535 ? (n_rows > 0 ? n_rows : 1) : 65535);
    return dim3(cuda_blocks(cuda_chunks(n_cols), threads), y);
}

/* The same with y over groups of `rows` rows (kernels whose threads each
** hold several rows); at most 65535, kernels stride beyond. */
static inline dim3 cuda_row_group_grid(int64_t n_rows, int64_t n_cols, int rows, int threads) {
    int64_t groups = (n_rows + rows - 1) / rows;
    return dim3(cuda_blocks(cuda_chunks(n_cols), threads), (unsigned)(groups < 65535 ? (groups > 0 ? groups : 1) : 65535));
}

/* The body of an element-wise kernel on BF16 rows, every load of a thread
** in flight at once (the SwiGLU and GELU passes): N_OUT outputs (N, C) from
** N_IN inputs (N, C), all BF16 and accepted by cuda_bf16_rows16, C a
** multiple of 8, on a cuda_row_group_grid(N, C, ROWS, blockDim.x). Block
** x's thread t owns chunk c = x blockDim.x + t of rows i0 .. i0 + ROWS - 1
** (those below N), i0 = y ROWS for grid row y, strided by the grid's rows
** beyond 65535 groups. It issues the raw 16-byte loads of all its rows
** first, then per row widens them (exactly), calls f(x, y) with
** x[N_IN][CUDA_CHUNK] and y[N_OUT][CUDA_CHUNK], and stores y rounded once. */
template <int ROWS, int N_IN, int N_OUT, typename F>
static __device__ __forceinline__ void bf16_rows_map(const cuda_view (&out)[N_OUT], const cuda_view (&in)[N_IN],
                                                     int64_t N, int64_t C, F f) {
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c * CUDA_CHUNK >= C) return;
    for (int64_t i0 = (int64_t)blockIdx.y * ROWS; i0 < N; i0 += (int64_t)gridDim.y * ROWS) {
        uint4 raw[ROWS][N_IN];
#pragma unroll
        for (int r = 0; r < ROWS; r++) { /* every load before the first use */
            const bool live = i0 + r < N;
#pragma unroll
            for (int j = 0; j < N_IN; j++) raw[r][j] = live ? *bf16_chunk(in[j], i0 + r, c) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            if (i0 + r >= N) break;
            float x[N_IN][CUDA_CHUNK], y[N_OUT][CUDA_CHUNK];
#pragma unroll
            for (int j = 0; j < N_IN; j++) widen_chunk_bf16(x[j], raw[r][j]);
            f(x, y);
#pragma unroll
            for (int j = 0; j < N_OUT; j++) st_chunk(out[j], i0 + r, c * CUDA_CHUNK, C, true, y[j]);
        }
    }
}

#endif
