/*
** cuda_dora_scale_backward.cu — the element-wise half of DoRA's backward on
** the GPU (backend.h's dora_scale_backward; the CPU twin is in
** cpu_ops_dora.c), one pass over (N,out):
**   dz[i,o]  = g[o] * dy[i,o]
**   zsum[o] += sum_i dy[i,o] * z[i,o],  z[i,o] = (y[i,o] - bias[o]) / g[o]
** As on the CPU, the column sum is formed from two plain sums,
**   sum_i dy z = (sum_i dy y - bias sum_i dy) / g,
** so there is no per-element division; a column with g == 0 contributes 0.
**
** Size letters: N rows (B*T), out columns (the layer's output features).
**
** The pass is bandwidth bound (N of 8192 and more, out of 2048 to 8192): it
** reads dy and y once and writes dz once, in 16-byte chunks (cuda_chunk.cuh)
** coalesced along the columns, in two kernels and no atomics. Each column's
** sums have a fixed shape for given sizes, so results are the same from run
** to run:
**   1. The rows are cut into n_parts parts of at most PART_ROWS rows.
**      Block (tile, part) has TILE_CHUNKS x PART_THREADS threads: thread
**      (tx, ty) owns one chunk of columns of the block's tile and rows
**      part_start + ty, + ty + PART_THREADS, ... of its part (16 rows). It
**      writes dz and sums dy y and dy in fp32 over its rows, as the CPU
**      sums runs of 64 rows in fp32. The PART_THREADS sums of a column are
**      then added in double in ty order, giving two doubles per (part,
**      column) in a scratch array.
**   2. One thread per column adds its n_parts partials in part order and
**      updates zsum.
** With a single part, pass 1 updates zsum itself and no scratch is used.
** dz may alias dy: each thread reads a chunk before it writes it.
*/
#include "backend/cuda/cuda_chunk.cuh"

enum {
    TILE_CHUNKS = 32,                     /* chunk columns of a block (x) */
    TILE_COLS = TILE_CHUNKS * CUDA_CHUNK, /* 256 columns: one per thread of the block */
    PART_THREADS = 8,                     /* row threads of a block (y) */
    PART_ROWS = 128,                      /* rows of a part: 16 per thread, summed in fp32 */
    FINISH_THREADS = 256
};
static_assert(TILE_CHUNKS * PART_THREADS == TILE_COLS, "a thread per column finishes a tile");

/* zsum[o] += (s_dyy - b s_dy) / g, in double as the CPU forms it. */
static __device__ __forceinline__ void zsum_update(cuda_view zsum, cuda_view g, cuda_view bias,
                                                   bool has_bias, int64_t o, double s_dyy,
                                                   double s_dy) {
    float gval = ld_at(g, 0, o);
    double b = has_bias ? (double)ld_at(bias, 0, o) : 0.0;
    double sum = gval != 0.0f ? (s_dyy - b * s_dy) / (double)gval : 0.0;
    st_at(zsum, 0, o, (float)((double)ld_at(zsum, 0, o) + sum));
}

/* Pass 1. dz, dy, y (N,out); g, bias, zsum (1,out). partial is
** (2, n_parts, out) doubles, sums of dy*y then sums of dy; NULL when there
** is one part and zsum is updated directly. Grid: (column tiles, parts);
** bounded to 64 registers so that 4 blocks fit an SM. */
static __global__ void __launch_bounds__(TILE_CHUNKS * PART_THREADS, 4)
dora_scale_backward_partial_kernel(double *partial, cuda_view dz, cuda_view zsum, cuda_view dy,
                                   cuda_view y, cuda_view g, cuda_view bias, bool has_bias,
                                   int64_t N, int64_t out, int64_t rows_per_part, int64_t n_parts) {
    __shared__ double sums[PART_THREADS][TILE_COLS];
    int64_t c0 = ((int64_t)blockIdx.x * TILE_CHUNKS + threadIdx.x) * CUDA_CHUNK;
    int64_t i0 = (int64_t)blockIdx.y * rows_per_part;
    int64_t i1 = i0 + rows_per_part < N ? i0 + rows_per_part : N;
    float acc_dyy[CUDA_CHUNK], acc_dy[CUDA_CHUNK];
#pragma unroll
    for (int k = 0; k < CUDA_CHUNK; k++) acc_dyy[k] = acc_dy[k] = 0.0f;
    if (c0 < out) {
        float gc[CUDA_CHUNK];
        ld_chunk(gc, g, 0, c0, out, row_aligned16(g, 0), 0.0f);
        for (int64_t i = i0 + threadIdx.y; i < i1; i += PART_THREADS) {
            float d[CUDA_CHUNK], yv[CUDA_CHUNK];
            ld_chunk(d, dy, i, c0, out, row_aligned16(dy, i), 0.0f);
            ld_chunk(yv, y, i, c0, out, row_aligned16(y, i), 0.0f);
#pragma unroll
            for (int k = 0; k < CUDA_CHUNK; k++) {
                acc_dyy[k] += d[k] * yv[k];
                acc_dy[k] += d[k];
                d[k] *= gc[k];
            }
            st_chunk(dz, i, c0, out, row_aligned16(dz, i), d);
        }
    }

    /* each of the block's TILE_COLS threads finishes one of its columns */
    int t = threadIdx.y * TILE_CHUNKS + threadIdx.x;
    int64_t o = (int64_t)blockIdx.x * TILE_COLS + t;
    double s_dyy = 0.0, s_dy = 0.0;
#pragma unroll
    for (int k = 0; k < CUDA_CHUNK; k++) sums[threadIdx.y][threadIdx.x * CUDA_CHUNK + k] = acc_dyy[k];
    __syncthreads();
    for (int r = 0; r < PART_THREADS; r++) s_dyy += sums[r][t];
    __syncthreads();
#pragma unroll
    for (int k = 0; k < CUDA_CHUNK; k++) sums[threadIdx.y][threadIdx.x * CUDA_CHUNK + k] = acc_dy[k];
    __syncthreads();
    for (int r = 0; r < PART_THREADS; r++) s_dy += sums[r][t];
    if (o >= out) return;
    if (partial) {
        partial[(int64_t)blockIdx.y * out + o] = s_dyy;
        partial[(n_parts + (int64_t)blockIdx.y) * out + o] = s_dy;
    } else {
        zsum_update(zsum, g, bias, has_bias, o, s_dyy, s_dy);
    }
}

/* Pass 2. partial (2, n_parts, out) -> zsum (1,out). Grid: a thread per
** column. */
static __global__ void dora_scale_backward_finish_kernel(cuda_view zsum, cuda_view g,
                                                         cuda_view bias, bool has_bias,
                                                         const double *partial, int64_t out,
                                                         int64_t n_parts) {
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < out;
         o += (int64_t)gridDim.x * blockDim.x) {
        double s_dyy = 0.0, s_dy = 0.0;
        for (int64_t p = 0; p < n_parts; p++) {
            s_dyy += partial[p * out + o];
            s_dy += partial[(n_parts + p) * out + o];
        }
        zsum_update(zsum, g, bias, has_bias, o, s_dyy, s_dy);
    }
}

int CUDA_OP(dora_scale_backward)(dorac_backend *be, const dorac_tensor *dz,
                                 const dorac_tensor *zsum, const dorac_tensor *dy,
                                 const dorac_tensor *y, const dorac_tensor *g,
                                 const dorac_tensor *bias) {
    const char *op = "dora_scale_backward";
    DORAC_TRY(cuda_check_float(dy, op, "dy"));
    int64_t N = dy->rows, out = dy->cols;
    DORAC_TRY(cuda_check_shape(dz, N, out, op, "dz"));
    DORAC_TRY(cuda_check_shape(y, N, out, op, "y"));
    DORAC_TRY(cuda_check_shape(zsum, 1, out, op, "zsum"));
    DORAC_TRY(cuda_check_shape(g, 1, out, op, "g"));
    DORAC_TRY(cuda_check_optional_vector(bias, out, op, "bias"));
    if (N == 0 || out == 0) return DORAC_OK; /* zsum += 0 */

    /* Parts of at most PART_ROWS rows, balanced; only past 65535 parts (8M
    ** rows) do they grow, and a thread's fp32 sums with them. Depends only
    ** on (N, out). */
    int64_t col_tiles = (out + TILE_COLS - 1) / TILE_COLS;
    int64_t n_parts = (N + PART_ROWS - 1) / PART_ROWS;
    if (n_parts > 65535) n_parts = 65535;
    int64_t rows_per_part = (N + n_parts - 1) / n_parts;
    n_parts = (N + rows_per_part - 1) / rows_per_part;

    cudaStream_t stream = cuda_stream(be);
    double *partial = NULL;
    if (n_parts > 1) {
        partial = (double *)be->alloc(be, 2 * (size_t)n_parts * (size_t)out * sizeof(double));
        if (!partial) return DORAC_E_NOMEM;
    }
    bool has_bias = bias && bias->data;
    cuda_view none = {NULL, DORAC_DTYPE_F32, 0};
    cuda_view bv = has_bias ? cuda_view_of(bias) : none;
    dim3 grid((unsigned)col_tiles, (unsigned)n_parts), block(TILE_CHUNKS, PART_THREADS);
    dora_scale_backward_partial_kernel<<<grid, block, 0, stream>>>(
        partial, cuda_view_of(dz), cuda_view_of(zsum), cuda_view_of(dy), cuda_view_of(y),
        cuda_view_of(g), bv, has_bias, N, out, rows_per_part, n_parts);
    if (partial) {
        dora_scale_backward_finish_kernel<<<cuda_blocks(out, FINISH_THREADS), FINISH_THREADS, 0,
                                            stream>>>(cuda_view_of(zsum), cuda_view_of(g), bv,
                                                      has_bias, partial, out, n_parts);
        be->free(be, partial); /* stream-ordered: after the kernels finish */
    }
    return cuda_launch_status(op);
}
