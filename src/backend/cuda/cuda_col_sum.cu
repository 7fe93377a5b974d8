/*
** cuda_col_sum.cu — out = beta out + alpha sum_i X[i,:] on the GPU
** (backend.h's col_sum; the CPU twin is in cpu_ops_basic.c), e.g. a bias
** gradient summed over the N rows of a batch.
**
** Size letters: R rows, C columns.
**
** Two passes, no atomics, so the sum of each column has a fixed shape for
** given sizes and the result is the same from run to run:
**   1. The rows are cut into n_parts parts of rows_per_part. Block
**      (tile, part) has TILE_CHUNKS x PART_THREADS threads: thread (tx, ty)
**      owns one 16-byte chunk of columns (cuda_chunk.cuh) of the block's
**      column tile and adds, in double, rows part_start + ty, + ty +
**      PART_THREADS, ... of its part. The PART_THREADS sums of a column are
**      then added in ty order, giving one double per (part, column) in a
**      scratch array. A warp reads 32 consecutive chunks of one row.
**   2. One thread per column adds its n_parts partial sums in part order
**      and writes out.
** With a single part, pass 1 writes out itself and no scratch is used.
*/
#include "backend/cuda/cuda_chunk.cuh"

enum {
    TILE_CHUNKS = 32,                     /* chunk columns of a block (x) */
    TILE_COLS = TILE_CHUNKS * CUDA_CHUNK, /* 256 columns: one per thread of the block */
    PART_THREADS = 8,                     /* row threads of a block (y) */
    UNROLL = 4,                           /* rows a thread loads at once */
    FINISH_THREADS = 256
};
static_assert(TILE_CHUNKS * PART_THREADS == TILE_COLS, "a thread per column finishes a tile");

/* out[j] from the column's sum s, in double as the CPU computes it.
** beta == 0 (use_out false) never reads out. */
static __device__ __forceinline__ void col_sum_store(cuda_view out, int64_t j, double s,
                                                     double alpha, double beta, bool use_out) {
    double v = alpha * s + (use_out ? beta * (double)ld_at(out, 0, j) : 0.0);
    st_at(out, 0, j, (float)v);
}

/* Pass 1. X (R,C); partial (n_parts, C), or NULL when there is one part and
** out (1,C) is written directly. Grid: (column tiles, parts); registers
** bounded so that 3 blocks fit an SM. */
static __global__ void __launch_bounds__(TILE_CHUNKS * PART_THREADS, 3)
col_sum_partial_kernel(double *partial, cuda_view out, cuda_view X, int64_t R, int64_t C,
                       int64_t rows_per_part, double alpha, double beta, bool use_out) {
    __shared__ double sums[PART_THREADS][TILE_COLS];
    int64_t c0 = ((int64_t)blockIdx.x * TILE_CHUNKS + threadIdx.x) * CUDA_CHUNK;
    int64_t i0 = (int64_t)blockIdx.y * rows_per_part;
    int64_t i1 = i0 + rows_per_part < R ? i0 + rows_per_part : R;
    double acc[CUDA_CHUNK];
#pragma unroll
    for (int k = 0; k < CUDA_CHUNK; k++) acc[k] = 0.0;
    if (c0 < C)
        /* UNROLL rows at a time, all loaded before any is added, so that
        ** several loads are in flight; they are added in row order */
        for (int64_t i = i0 + threadIdx.y; i < i1; i += UNROLL * PART_THREADS) {
            float x[UNROLL][CUDA_CHUNK];
#pragma unroll
            for (int u = 0; u < UNROLL; u++) {
                int64_t row = i + u * PART_THREADS;
                if (row < i1) ld_chunk(x[u], X, row, c0, C, row_aligned16(X, row), 0.0f);
            }
#pragma unroll
            for (int u = 0; u < UNROLL; u++)
                if (i + u * PART_THREADS < i1)
#pragma unroll
                    for (int k = 0; k < CUDA_CHUNK; k++) acc[k] += x[u][k];
        }
#pragma unroll
    for (int k = 0; k < CUDA_CHUNK; k++) sums[threadIdx.y][threadIdx.x * CUDA_CHUNK + k] = acc[k];
    __syncthreads();
    /* each of the block's TILE_COLS threads finishes one of its columns */
    int t = threadIdx.y * TILE_CHUNKS + threadIdx.x;
    int64_t j = (int64_t)blockIdx.x * TILE_COLS + t;
    if (j >= C) return;
    double s = 0.0;
    for (int y = 0; y < PART_THREADS; y++) s += sums[y][t];
    if (partial) partial[(int64_t)blockIdx.y * C + j] = s;
    else col_sum_store(out, j, s, alpha, beta, use_out);
}

/* Pass 2. partial (n_parts, C) -> out (1,C). Grid: a thread per column. */
static __global__ void col_sum_finish_kernel(cuda_view out, const double *partial, int64_t n_parts,
                                             int64_t C, double alpha, double beta, bool use_out) {
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < C;
         j += (int64_t)gridDim.x * blockDim.x) {
        double s = 0.0;
        for (int64_t p = 0; p < n_parts; p++) s += partial[p * C + j];
        col_sum_store(out, j, s, alpha, beta, use_out);
    }
}

int CUDA_OP(col_sum)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                     double alpha, double beta) {
    DORAC_TRY(cuda_check_float(X, "col_sum", "X"));
    DORAC_TRY(cuda_check_shape(out, 1, X->cols, "col_sum", "out"));
    int64_t R = X->rows, C = X->cols;
    if (C == 0) return DORAC_OK; /* R == 0 still writes beta * out */
    /* Enough parts for ~1024 blocks in all, each part at least 64 rows (8
    ** per thread). Depends only on (R, C). */
    int64_t col_tiles = (C + TILE_COLS - 1) / TILE_COLS;
    int64_t n_parts = (1024 + col_tiles - 1) / col_tiles;
    int64_t max_parts = (R + 63) / 64;
    if (n_parts > max_parts) n_parts = max_parts;
    if (n_parts > 65535) n_parts = 65535;
    if (n_parts < 1) n_parts = 1;
    int64_t rows_per_part = (R + n_parts - 1) / n_parts;
    if (rows_per_part < 1) rows_per_part = 1;
    n_parts = R > 0 ? (R + rows_per_part - 1) / rows_per_part : 1;

    cudaStream_t stream = cuda_stream(be);
    double *partial = NULL;
    if (n_parts > 1) {
        partial = (double *)be->alloc(be, (size_t)n_parts * (size_t)C * sizeof(double));
        if (!partial) return DORAC_E_NOMEM;
    }
    bool use_out = beta != 0.0;
    dim3 grid((unsigned)col_tiles, (unsigned)n_parts), block(TILE_CHUNKS, PART_THREADS);
    col_sum_partial_kernel<<<grid, block, 0, stream>>>(partial, cuda_view_of(out), cuda_view_of(X),
                                                       R, C, rows_per_part, alpha, beta, use_out);
    if (partial) {
        col_sum_finish_kernel<<<cuda_blocks(C, FINISH_THREADS), FINISH_THREADS, 0, stream>>>(
            cuda_view_of(out), partial, n_parts, C, alpha, beta, use_out);
        be->free(be, partial); /* stream-ordered: after the kernels finish */
    }
    return cuda_launch_status("col_sum");
}
