/*
** cuda_dora_colsum.cuh — DoRA's element-wise backward as an epilogue of a
** pass over (N,out): what dora_scale_backward does on its own, and what the
** MLP activations' fused backwards (swiglu_backward_dora, gelu_backward_dora)
** do on the gradients they produce, so that no separate pass re-reads them.
**
** For each of K outputs ("sides": the gate and up projections of SwiGLU, or
** one projection) a producer yields, per row i and chunk of columns, the
** upstream gradient d = dL/dy and the projection's forward output y. Then,
** for a DoRA side (g present),
**   zsum[o] += sum_i d[i,o] * z[i,o],  z[i,o] = (y[i,o] - bias[o]) / g[o]
**   dz[i,o]  = g[o] * d[i,o]
** and for any other side dz[i,o] = d[i,o]. As on the CPU, the column sum is
** formed from two plain sums, (sum_i d y - bias sum_i d) / g, so there is no
** per-element division; a column with g == 0 contributes 0.
**
** The pass is bandwidth bound; loads and stores move 16-byte chunks
** (cuda_chunk.cuh) coalesced along the columns, in two kernels and no
** atomics. Each column's sums have a fixed shape for given sizes, so results
** are the same from run to run:
**   1. The rows are cut into n_parts parts of at most PART_ROWS rows.
**      Block (tile, part) has TILE_CHUNKS x PART_THREADS threads: thread
**      (tx, ty) owns one chunk of columns of the block's tile and rows
**      part_start + ty, + ty + PART_THREADS, ... of its part (16 rows). It
**      writes dz and sums d y and d in fp32 over its rows, as the CPU sums
**      runs of 64 rows in fp32. The PART_THREADS sums of a column are then
**      added in double in ty order, giving two doubles per (side, part,
**      column) in a scratch array.
**   2. One thread per column adds its n_parts partials in part order and
**      updates zsum.
** With a single part, pass 1 updates zsum itself and no scratch is used.
** A producer reads all its inputs of a chunk before the chunk's dz is
** written, so dz may alias an input element for element.
*/
#ifndef DORAC_CUDA_DORA_COLSUM_CUH
#define DORAC_CUDA_DORA_COLSUM_CUH

#include "backend/cuda/cuda_chunk.cuh"

enum {
    COLSUM_TILE_CHUNKS = 32,                              /* chunk columns of a block (x) */
    COLSUM_TILE_COLS = COLSUM_TILE_CHUNKS * CUDA_CHUNK,   /* 256: one per thread of the block */
    COLSUM_PART_THREADS = 8,                              /* row threads of a block (y) */
    COLSUM_PART_ROWS = 128                                /* rows of a part: 16 per thread */
};
static_assert(COLSUM_TILE_CHUNKS * COLSUM_PART_THREADS == COLSUM_TILE_COLS,
              "a thread per column finishes a tile");

/* One side: where its gradient goes, and its DoRA terms (dora false: dz = d). */
typedef struct dora_side {
    cuda_view dz, zsum, g, bias;
    bool dora, has_bias;
} dora_side;

template <int K> struct dora_sides {
    dora_side side[K];
};

/* A side for dz alone, or for dz with DoRA's terms when g is a tensor with
** data (bias may be absent). */
static inline dora_side dora_side_of(const dorac_tensor *dz, const dorac_tensor *zsum,
                                     const dorac_tensor *g, const dorac_tensor *bias) {
    cuda_view none = {NULL, DORAC_DTYPE_F32, 0};
    dora_side s;
    s.dz = cuda_view_of(dz);
    s.dora = g && g->data;
    s.has_bias = s.dora && bias && bias->data;
    s.zsum = s.dora ? cuda_view_of(zsum) : none;
    s.g = s.dora ? cuda_view_of(g) : none;
    s.bias = s.has_bias ? cuda_view_of(bias) : none;
    return s;
}

/* Asks L2 for row i's chunk at column c0 of v (a hint: no registers held,
** nothing waited for). */
static __device__ __forceinline__ void prefetch_chunk(cuda_view v, int64_t i, int64_t c0) {
    const char *p = (const char *)v.data + (i * v.ld + c0) * (v.type == DORAC_DTYPE_BF16 ? 2 : 4);
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

/* zsum[o] += (s_dyy - b s_dy) / g, in double as the CPU forms it. */
static __device__ __forceinline__ void dora_zsum_update(const dora_side &s, int64_t o, double s_dyy,
                                                        double s_dy) {
    float gval = ld_at(s.g, 0, o);
    double b = s.has_bias ? (double)ld_at(s.bias, 0, o) : 0.0;
    double sum = gval != 0.0f ? (s_dyy - b * s_dy) / (double)gval : 0.0;
    st_at(s.zsum, 0, o, (float)((double)ld_at(s.zsum, 0, o) + sum));
}

/* Pass 1. Producer: __device__ void operator()(int64_t i, int64_t c0, int64_t out,
** float d[K][CUDA_CHUNK], float y[K][CUDA_CHUNK]) const, loading row i's chunk at
** column c0 (elements past out padded with 0), and __device__ void
** prefetch(int64_t i, int64_t c0) const, asking L2 for the same chunk's
** inputs. partial is (K, 2, n_parts, out) doubles (sums of d y, then of d),
** NULL with one part. Grid: (column tiles, parts). A thread asks L2 for
** its next row while it works on this one (more loads in flight, no
** registers held). Bounded so that 4 (K = 1) or 2 blocks fit an SM.
**
** On the H200 (2 steps of 4 Llama-1B layers, ncu,
** docs/cuda/kernels_ncu_2026-11-29.txt) that prefetch was the best of five
** variants tried: the swiglu pass took 3.49 ms without it, 2.97 with it,
** 2.90-3.20 with more blocks per SM or two rows ahead; the one-side pass
** 1.25, 1.18 and 1.21-2.26 (the plain swiglu_backward kernel: 1.99). */
template <int K, class Producer>
static __global__ void __launch_bounds__(COLSUM_TILE_COLS, K == 1 ? 4 : 2)
dora_colsum_partial_kernel(Producer produce, dora_sides<K> s, double *partial, int64_t N, int64_t out,
                           int64_t rows_per_part, int64_t n_parts) {
    __shared__ double sums[COLSUM_PART_THREADS][COLSUM_TILE_COLS];
    int64_t c0 = ((int64_t)blockIdx.x * COLSUM_TILE_CHUNKS + threadIdx.x) * CUDA_CHUNK;
    int64_t i0 = (int64_t)blockIdx.y * rows_per_part;
    int64_t i1 = i0 + rows_per_part < N ? i0 + rows_per_part : N;
    float acc_dyy[K][CUDA_CHUNK], acc_dy[K][CUDA_CHUNK];
#pragma unroll
    for (int j = 0; j < K; j++)
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) acc_dyy[j][k] = acc_dy[j][k] = 0.0f;
    if (c0 < out) {
        if (i0 + threadIdx.y + COLSUM_PART_THREADS < i1)
            produce.prefetch(i0 + threadIdx.y + COLSUM_PART_THREADS, c0);
        for (int64_t i = i0 + threadIdx.y; i < i1; i += COLSUM_PART_THREADS) {
            if (i + 2 * COLSUM_PART_THREADS < i1) produce.prefetch(i + 2 * COLSUM_PART_THREADS, c0);
            float d[K][CUDA_CHUNK], yv[K][CUDA_CHUNK];
            produce(i, c0, out, d, yv);
#pragma unroll
            for (int j = 0; j < K; j++) {
                float gc[CUDA_CHUNK];
                if (s.side[j].dora) {
                    ld_chunk(gc, s.side[j].g, 0, c0, out, row_aligned16(s.side[j].g, 0), 0.0f);
                } else {
#pragma unroll
                    for (int k = 0; k < CUDA_CHUNK; k++) gc[k] = 1.0f;
                }
#pragma unroll
                for (int k = 0; k < CUDA_CHUNK; k++) {
                    acc_dyy[j][k] += d[j][k] * yv[j][k];
                    acc_dy[j][k] += d[j][k];
                    d[j][k] *= gc[k];
                }
                st_chunk(s.side[j].dz, i, c0, out, row_aligned16(s.side[j].dz, i), d[j]);
            }
        }
    }

    /* each of the block's COLSUM_TILE_COLS threads finishes one of its columns */
    int t = threadIdx.y * COLSUM_TILE_CHUNKS + threadIdx.x;
    int64_t o = (int64_t)blockIdx.x * COLSUM_TILE_COLS + t;
#pragma unroll
    for (int j = 0; j < K; j++) {
        if (!s.side[j].dora) continue; /* uniform over the block */
        double total[2] = {0.0, 0.0};
#pragma unroll
        for (int w = 0; w < 2; w++) {
            __syncthreads();
#pragma unroll
            for (int k = 0; k < CUDA_CHUNK; k++)
                sums[threadIdx.y][threadIdx.x * CUDA_CHUNK + k] = w == 0 ? acc_dyy[j][k] : acc_dy[j][k];
            __syncthreads();
            for (int r = 0; r < COLSUM_PART_THREADS; r++) total[w] += sums[r][t];
        }
        if (o >= out) continue;
        if (partial) {
            partial[((int64_t)(2 * j) * n_parts + blockIdx.y) * out + o] = total[0];
            partial[((int64_t)(2 * j + 1) * n_parts + blockIdx.y) * out + o] = total[1];
        } else {
            dora_zsum_update(s.side[j], o, total[0], total[1]);
        }
    }
}

/* Pass 2. partial (K, 2, n_parts, out) -> each DoRA side's zsum. Block
** (FINISH_COLS, FINISH_SLICES): thread (x, y) adds parts y, y + SLICES, ...
** of column x in order, then thread y = 0 adds the SLICES results in y
** order: a fixed order for given sizes. */
enum { COLSUM_FINISH_COLS = 32, COLSUM_FINISH_SLICES = 8 };
template <int K>
static __global__ void __launch_bounds__(COLSUM_FINISH_COLS * COLSUM_FINISH_SLICES)
dora_colsum_finish_kernel(dora_sides<K> s, const double *partial, int64_t out, int64_t n_parts) {
    __shared__ double slice[2][COLSUM_FINISH_SLICES][COLSUM_FINISH_COLS];
    int64_t o = (int64_t)blockIdx.x * COLSUM_FINISH_COLS + threadIdx.x;
#pragma unroll
    for (int j = 0; j < K; j++) {
        if (!s.side[j].dora) continue; /* uniform over the grid */
        double s_dyy = 0.0, s_dy = 0.0;
        if (o < out)
            for (int64_t p = threadIdx.y; p < n_parts; p += COLSUM_FINISH_SLICES) {
                s_dyy += partial[((int64_t)(2 * j) * n_parts + p) * out + o];
                s_dy += partial[((int64_t)(2 * j + 1) * n_parts + p) * out + o];
            }
        __syncthreads();
        slice[0][threadIdx.y][threadIdx.x] = s_dyy;
        slice[1][threadIdx.y][threadIdx.x] = s_dy;
        __syncthreads();
        if (threadIdx.y == 0 && o < out) {
            s_dyy = s_dy = 0.0;
            for (int y = 0; y < COLSUM_FINISH_SLICES; y++) {
                s_dyy += slice[0][y][threadIdx.x];
                s_dy += slice[1][y][threadIdx.x];
            }
            dora_zsum_update(s.side[j], o, s_dyy, s_dy);
        }
    }
}

/* Runs both passes over (N,out) on be's stream. Parts of at most
** COLSUM_PART_ROWS rows, balanced; only past 65535 parts (8M rows) do they
** grow, and a thread's fp32 sums with them. The shape depends only on
** (N, out). DORAC_E_NOMEM when the partials cannot be allocated. */
template <int K, class Producer>
static int dora_colsum_launch(dorac_backend *be, const Producer &produce, const dora_sides<K> &s,
                              int64_t N, int64_t out, const char *op) {
    if (N == 0 || out == 0) return DORAC_OK; /* zsum += 0 */
    int64_t col_tiles = (out + COLSUM_TILE_COLS - 1) / COLSUM_TILE_COLS;
    int64_t n_parts = (N + COLSUM_PART_ROWS - 1) / COLSUM_PART_ROWS;
    if (n_parts > 65535) n_parts = 65535;
    int64_t rows_per_part = (N + n_parts - 1) / n_parts;
    n_parts = (N + rows_per_part - 1) / rows_per_part;
    bool any_dora = false;
    for (int j = 0; j < K; j++) any_dora = any_dora || s.side[j].dora;

    cudaStream_t stream = cuda_stream(be);
    double *partial = NULL;
    if (n_parts > 1 && any_dora) {
        partial = (double *)be->alloc(be, 2 * (size_t)K * (size_t)n_parts * (size_t)out * sizeof(double));
        if (!partial) return DORAC_E_NOMEM;
    }
    dim3 grid((unsigned)col_tiles, (unsigned)n_parts), block(COLSUM_TILE_CHUNKS, COLSUM_PART_THREADS);
    dora_colsum_partial_kernel<K, Producer><<<grid, block, 0, stream>>>(produce, s, partial, N, out,
                                                                       rows_per_part, n_parts);
    if (partial) {
        dim3 fblock(COLSUM_FINISH_COLS, COLSUM_FINISH_SLICES);
        dora_colsum_finish_kernel<K><<<cuda_blocks(out, COLSUM_FINISH_COLS), fblock, 0, stream>>>(s, partial, out,
                                                                                                 n_parts);
        be->free(be, partial); /* stream-ordered: after the kernels finish */
    }
    return cuda_launch_status(op);
}

#endif
