/*
** cuda_rmsnorm.cu — RMSNorm on the GPU, forward and backward (contracts in
** backend.h, shared code in cuda_impl.cuh and cuda_chunk.cuh; the CPU twin
** is in cpu_ops_model.c).
**
** Size letters: N rows (B*T), C channels.
**
** Row statistics come from one block per row: each thread accumulates its
** 16-byte chunks of the row in double and the block sums those in a fixed
** tree; the second pass over the row mostly hits the cache. Element-wise
** math is fp32. The weight gradient is a sum over rows, made deterministic
** in two steps: a partial sum (double) per block of NORM_PARTIAL_ROWS rows
** and per column, in a fixed order (each of NORM_PARTIAL_SLICES warps sums
** every 8th row in order, then the warps' sums are added in warp order)
** into scratch, then one thread per column adding the partials in order
** into dw. No float atomics, so results repeat bit for bit.
*/
#include <math.h>

#include "backend/cuda/cuda_norm.cuh"

/* rstd[i] = 1 / sqrt(mean_c x[i,c]^2 + eps); out[i,c] = w[c] * (x[i,c] * rstd[i]).
** out (N,C) may alias x (N,C); w (1,C); rstd (1,N). One block per row. */
static __global__ void __launch_bounds__(NORM_THREADS)
    rmsnorm_forward_kernel(cuda_view out, cuda_view rstd, cuda_view x, cuda_view w, int64_t C,
                           double eps) {
    __shared__ double shared[32];
    int64_t i = blockIdx.x, n_chunks = cuda_chunks(C);
    bool x_vec = row_aligned16(x, i), w_vec = row_aligned16(w, 0), out_vec = row_aligned16(out, i);
    double ss = 0;
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float v[CUDA_CHUNK];
        ld_chunk(v, x, i, k * CUDA_CHUNK, C, x_vec, 0.0f);
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) ss += (double)v[j] * v[j];
    }
    ss = block_sum(ss, shared);
    float r = (float)(1.0 / sqrt(ss / (double)C + eps));
    if (threadIdx.x == 0) st_at(rstd, 0, i, r);
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float v[CUDA_CHUNK], wv[CUDA_CHUNK];
        ld_chunk(v, x, i, k * CUDA_CHUNK, C, x_vec, 0.0f);
        ld_chunk(wv, w, 0, k * CUDA_CHUNK, C, w_vec, 0.0f);
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) v[j] = wv[j] * (v[j] * r);
        st_chunk(out, i, k * CUDA_CHUNK, C, out_vec, v);
    }
}

/* y = w ⊙ x̂, x̂ = x r:  dx[i] += r (w ⊙ dy) - r^3 x (sum_c w dy x) / C.
** dx (N,C) may alias dout (N,C). One block per row. */
static __global__ void __launch_bounds__(NORM_THREADS)
    rmsnorm_backward_dx_kernel(cuda_view dx, cuda_view dout, cuda_view x, cuda_view w,
                               cuda_view rstd, int64_t C) {
    __shared__ double shared[32];
    int64_t i = blockIdx.x, n_chunks = cuda_chunks(C);
    bool dx_vec = row_aligned16(dx, i), g_vec = row_aligned16(dout, i);
    bool x_vec = row_aligned16(x, i), w_vec = row_aligned16(w, 0);
    double dot = 0;
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float g[CUDA_CHUNK], xv[CUDA_CHUNK], wv[CUDA_CHUNK];
        ld_chunk(g, dout, i, k * CUDA_CHUNK, C, g_vec, 0.0f);
        ld_chunk(xv, x, i, k * CUDA_CHUNK, C, x_vec, 0.0f);
        ld_chunk(wv, w, 0, k * CUDA_CHUNK, C, w_vec, 0.0f);
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) dot += (double)wv[j] * g[j] * xv[j];
    }
    dot = block_sum(dot, shared);
    double r = ld_at(rstd, 0, i);
    float r_f = (float)r, s = (float)(r * r * r * dot / (double)C);
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float g[CUDA_CHUNK], xv[CUDA_CHUNK], wv[CUDA_CHUNK], d[CUDA_CHUNK];
        ld_chunk(g, dout, i, k * CUDA_CHUNK, C, g_vec, 0.0f);
        ld_chunk(xv, x, i, k * CUDA_CHUNK, C, x_vec, 0.0f);
        ld_chunk(wv, w, 0, k * CUDA_CHUNK, C, w_vec, 0.0f);
        ld_chunk(d, dx, i, k * CUDA_CHUNK, C, dx_vec, 0.0f);
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) d[j] += r_f * wv[j] * g[j] - s * xv[j];
        st_chunk(dx, i, k * CUDA_CHUNK, C, dx_vec, d);
    }
}

/* partial (n_blocks, C): partial[b,c] = sum over the NORM_PARTIAL_ROWS rows
** i of block b of dout[i,c] x[i,c] rstd[i]. Block (32, NORM_PARTIAL_SLICES):
** lane x owns a chunk of columns, warp y the rows b*R + y, + 2y, ... of the
** block (R = NORM_PARTIAL_ROWS), summed in order; the warps' sums are then
** added in warp order. Grid: x over groups of 32 chunks, y over row blocks
** (strided). */
static __global__ void __launch_bounds__(32 * NORM_PARTIAL_SLICES)
    rmsnorm_dw_partial_kernel(double *partial, cuda_view dout, cuda_view x, cuda_view rstd,
                              int64_t N, int64_t C) {
    __shared__ double slice_sum[NORM_PARTIAL_SLICES][CUDA_CHUNK][32];
    int64_t c0 = ((int64_t)blockIdx.x * 32 + threadIdx.x) * CUDA_CHUNK;
    bool active = c0 < C; /* no early return: the block synchronises */
    int64_t n_blocks = (N + NORM_PARTIAL_ROWS - 1) / NORM_PARTIAL_ROWS;
    for (int64_t b = blockIdx.y; b < n_blocks; b += gridDim.y) {
        int64_t i1 = (b + 1) * NORM_PARTIAL_ROWS < N ? (b + 1) * NORM_PARTIAL_ROWS : N;
        double acc[CUDA_CHUNK] = {0};
        for (int64_t i = b * NORM_PARTIAL_ROWS + threadIdx.y; active && i < i1;
             i += NORM_PARTIAL_SLICES) {
            float g[CUDA_CHUNK], xv[CUDA_CHUNK];
            ld_chunk(g, dout, i, c0, C, row_aligned16(dout, i), 0.0f);
            ld_chunk(xv, x, i, c0, C, row_aligned16(x, i), 0.0f);
            double r = ld_at(rstd, 0, i);
#pragma unroll
            for (int j = 0; j < CUDA_CHUNK; j++) acc[j] += (double)g[j] * xv[j] * r;
        }
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) slice_sum[threadIdx.y][j][threadIdx.x] = acc[j];
        __syncthreads();
        if (threadIdx.y == 0 && active) {
            for (int j = 0; j < CUDA_CHUNK && c0 + j < C; j++) {
                double total = 0;
                for (int y = 0; y < NORM_PARTIAL_SLICES; y++) total += slice_sum[y][j][threadIdx.x];
                partial[b * C + c0 + j] = total;
            }
        }
        __syncthreads();
    }
}

int CUDA_OP(rmsnorm_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *rstd,
                             const dorac_tensor *x, const dorac_tensor *w, double eps) {
    const char *op = "rmsnorm_forward";
    DORAC_TRY(cuda_check_float(x, op, "x"));
    int64_t N = x->rows, C = x->cols;
    DORAC_TRY(cuda_check_shape(out, N, C, op, "out"));
    DORAC_TRY(cuda_check_shape(rstd, 1, N, op, "rstd"));
    DORAC_TRY(cuda_check_shape(w, 1, C, op, "weight"));
    if (N == 0) return DORAC_OK;
    /* C == 0 still runs: rstd becomes 1/sqrt(0/0 + eps), NaN, as on the CPU */
    rmsnorm_forward_kernel<<<cuda_blocks(N, 1) /* a block per row */,
                             cuda_row_threads(C, NORM_THREADS), 0, cuda_stream(be)>>>(
        cuda_view_of(out), cuda_view_of(rstd), cuda_view_of(x), cuda_view_of(w), C, eps);
    return cuda_launch_status(op);
}

int CUDA_OP(rmsnorm_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dw,
                              const dorac_tensor *dout, const dorac_tensor *x,
                              const dorac_tensor *w, const dorac_tensor *rstd) {
    const char *op = "rmsnorm_backward";
    DORAC_TRY(cuda_check_float(x, op, "x"));
    int64_t N = x->rows, C = x->cols;
    DORAC_TRY(cuda_check_shape(dx, N, C, op, "dx"));
    DORAC_TRY(cuda_check_shape(dout, N, C, op, "dout"));
    DORAC_TRY(cuda_check_shape(w, 1, C, op, "weight"));
    DORAC_TRY(cuda_check_shape(rstd, 1, N, op, "rstd"));
    DORAC_TRY(cuda_check_optional_vector(dw, C, op, "dweight"));
    if (N == 0 || C == 0) return DORAC_OK;
    cudaStream_t stream = cuda_stream(be);
    rmsnorm_backward_dx_kernel<<<cuda_blocks(N, 1) /* a block per row */,
                                 cuda_row_threads(C, NORM_THREADS), 0, stream>>>(
        cuda_view_of(dx), cuda_view_of(dout), cuda_view_of(x), cuda_view_of(w), cuda_view_of(rstd),
        C);
    int status = cuda_launch_status(op);
    if (status != DORAC_OK || !dw || !dw->data) return status;

    int64_t n_blocks = (N + NORM_PARTIAL_ROWS - 1) / NORM_PARTIAL_ROWS;
    double *partial = (double *)be->alloc(be, (size_t)(n_blocks * C) * sizeof(double));
    if (!partial) return DORAC_E_NOMEM; /* alloc set the message */
    dim3 grid(cuda_blocks(cuda_chunks(C), 32),
              (unsigned)(n_blocks < GRID_Y_MAX ? n_blocks : GRID_Y_MAX));
    rmsnorm_dw_partial_kernel<<<grid, dim3(32, NORM_PARTIAL_SLICES), 0, stream>>>(
        partial, cuda_view_of(dout), cuda_view_of(x), cuda_view_of(rstd), N, C);
    status = cuda_launch_status(op);
    if (status == DORAC_OK) {
        column_total_kernel<<<cuda_blocks(C, NORM_TOTAL_THREADS), NORM_TOTAL_THREADS, 0,
                                  stream>>>(cuda_view_of(dw), partial, n_blocks, C);
        status = cuda_launch_status(op);
    }
    be->free(be, partial); /* stream-ordered: freed after the kernels ran */
    return status;
}
