/*
** cuda_layernorm.cu — LayerNorm on the GPU, forward and backward (contracts
** in backend.h, shared code in cuda_impl.cuh and cuda_chunk.cuh; the CPU
** twin is in cpu_ops_model.c).
**
** Size letters: N rows (B*T), C channels.
**
** Row statistics come from one block per row: each thread accumulates its
** 16-byte chunks of the row in double and the block sums those in a fixed
** tree; the variance is the two-pass sum of (x - mean)^2, as on the CPU.
** The later passes over the row mostly hit the cache. Element-wise math
** is fp32. The weight and bias gradients are sums over rows, made
** deterministic in two steps: partial sums (double) per block of
** NORM_PARTIAL_ROWS rows and per column, in a fixed order (each of
** NORM_PARTIAL_SLICES warps sums every 8th row in order, then the warps'
** sums are added in warp order) into scratch, then one thread per column
** adding the partials in order. No float atomics, so results repeat bit
** for bit.
*/
#include <math.h>

#include "backend/cuda/cuda_norm.cuh"

/* mean[i] = mean_c x[i,c]; rstd[i] = 1 / sqrt(mean_c (x[i,c] - mean[i])^2 + eps);
** out[i,c] = (x[i,c] - mean[i]) rstd[i] w[c] + b[c] (b absent: 0).
** out (N,C) may alias x (N,C); w, b (1,C); mean, rstd (1,N). One block per
** row. */
static __global__ void __launch_bounds__(NORM_THREADS)
    layernorm_forward_kernel(cuda_view out, cuda_view mean, cuda_view rstd, cuda_view x,
                             cuda_view w, cuda_view b, int64_t C, double eps) {
    __shared__ double shared[32];
    int64_t i = blockIdx.x, n_chunks = cuda_chunks(C);
    bool x_vec = row_aligned16(x, i), w_vec = row_aligned16(w, 0), out_vec = row_aligned16(out, i);
    bool b_vec = b.data && row_aligned16(b, 0);
    double sum = 0;
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float v[CUDA_CHUNK];
        ld_chunk(v, x, i, k * CUDA_CHUNK, C, x_vec, 0.0f);
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) sum += v[j];
    }
    double mu = block_sum(sum, shared) / (double)C;
    double var = 0;
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float v[CUDA_CHUNK];
        ld_chunk(v, x, i, k * CUDA_CHUNK, C, x_vec, 0.0f);
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) {
            double d = v[j] - mu;
            if (k * CUDA_CHUNK + j < C) var += d * d; /* padding is not a column */
        }
    }
    var = block_sum(var, shared);
    double r = 1.0 / sqrt(var / (double)C + eps);
    if (threadIdx.x == 0) {
        st_at(mean, 0, i, (float)mu);
        st_at(rstd, 0, i, (float)r);
    }
    float mu_f = (float)mu, r_f = (float)r;
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float v[CUDA_CHUNK], wv[CUDA_CHUNK], bv[CUDA_CHUNK] = {0};
        ld_chunk(v, x, i, k * CUDA_CHUNK, C, x_vec, 0.0f);
        ld_chunk(wv, w, 0, k * CUDA_CHUNK, C, w_vec, 0.0f);
        if (b.data) ld_chunk(bv, b, 0, k * CUDA_CHUNK, C, b_vec, 0.0f);
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) v[j] = (v[j] - mu_f) * r_f * wv[j] + bv[j];
        st_chunk(out, i, k * CUDA_CHUNK, C, out_vec, v);
    }
}

/* x̂ = (x - mean) rstd, y = w ⊙ x̂ + b, g = w ⊙ dy:
**   dx[i] += rstd (g - mean_c(g) - x̂ mean_c(g x̂))
** dx (N,C) may alias dout (N,C). One block per row. */
static __global__ void __launch_bounds__(NORM_THREADS)
    layernorm_backward_dx_kernel(cuda_view dx, cuda_view dout, cuda_view x, cuda_view w,
                                 cuda_view mean, cuda_view rstd, int64_t C) {
    __shared__ double shared[32];
    int64_t i = blockIdx.x, n_chunks = cuda_chunks(C);
    bool dx_vec = row_aligned16(dx, i), dy_vec = row_aligned16(dout, i);
    bool x_vec = row_aligned16(x, i), w_vec = row_aligned16(w, 0);
    float mu = ld_at(mean, 0, i), r = ld_at(rstd, 0, i);
    double g_sum = 0, gx_sum = 0;
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float dy[CUDA_CHUNK], xv[CUDA_CHUNK], wv[CUDA_CHUNK];
        ld_chunk(dy, dout, i, k * CUDA_CHUNK, C, dy_vec, 0.0f);
        ld_chunk(xv, x, i, k * CUDA_CHUNK, C, x_vec, 0.0f);
        ld_chunk(wv, w, 0, k * CUDA_CHUNK, C, w_vec, 0.0f);
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) {
            float g = wv[j] * dy[j], xh = (xv[j] - mu) * r;
            g_sum += g;
            gx_sum += (double)g * xh;
        }
    }
    float g_mean = (float)(block_sum(g_sum, shared) / (double)C);
    float gx_mean = (float)(block_sum(gx_sum, shared) / (double)C);
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float dy[CUDA_CHUNK], xv[CUDA_CHUNK], wv[CUDA_CHUNK], d[CUDA_CHUNK];
        ld_chunk(dy, dout, i, k * CUDA_CHUNK, C, dy_vec, 0.0f);
        ld_chunk(xv, x, i, k * CUDA_CHUNK, C, x_vec, 0.0f);
        ld_chunk(wv, w, 0, k * CUDA_CHUNK, C, w_vec, 0.0f);
        ld_chunk(d, dx, i, k * CUDA_CHUNK, C, dx_vec, 0.0f);
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) {
            float g = wv[j] * dy[j], xh = (xv[j] - mu) * r;
            d[j] += r * (g - g_mean - xh * gx_mean);
        }
        st_chunk(dx, i, k * CUDA_CHUNK, C, dx_vec, d);
    }
}

/* partial (2, n_blocks, C): partial[0,b,c] = sum over the NORM_PARTIAL_ROWS
** rows i of block b of dout[i,c] (x[i,c] - mean[i]) rstd[i] (for dw), and
** partial[1,b,c] = the same sum of dout[i,c] (for db). Block (32,
** NORM_PARTIAL_SLICES): lane x owns a chunk of columns, warp y the rows
** b*R + y, + 2y, ... of the block (R = NORM_PARTIAL_ROWS), summed in order;
** the warps' sums are then added in warp order. Grid: x over groups of 32
** chunks, y over row blocks (strided). */
static __global__ void __launch_bounds__(32 * NORM_PARTIAL_SLICES)
    layernorm_dwdb_partial_kernel(double *partial, cuda_view dout, cuda_view x, cuda_view mean,
                                  cuda_view rstd, int64_t N, int64_t C) {
    __shared__ double slice_w[NORM_PARTIAL_SLICES][CUDA_CHUNK][32];
    __shared__ double slice_b[NORM_PARTIAL_SLICES][CUDA_CHUNK][32];
    int64_t c0 = ((int64_t)blockIdx.x * 32 + threadIdx.x) * CUDA_CHUNK;
    bool active = c0 < C; /* no early return: the block synchronises */
    int64_t n_blocks = (N + NORM_PARTIAL_ROWS - 1) / NORM_PARTIAL_ROWS;
    for (int64_t b = blockIdx.y; b < n_blocks; b += gridDim.y) {
        int64_t i1 = (b + 1) * NORM_PARTIAL_ROWS < N ? (b + 1) * NORM_PARTIAL_ROWS : N;
        double acc_w[CUDA_CHUNK] = {0}, acc_b[CUDA_CHUNK] = {0};
        for (int64_t i = b * NORM_PARTIAL_ROWS + threadIdx.y; active && i < i1;
             i += NORM_PARTIAL_SLICES) {
            float dy[CUDA_CHUNK], xv[CUDA_CHUNK];
            ld_chunk(dy, dout, i, c0, C, row_aligned16(dout, i), 0.0f);
            ld_chunk(xv, x, i, c0, C, row_aligned16(x, i), 0.0f);
            double mu = ld_at(mean, 0, i), r = ld_at(rstd, 0, i);
#pragma unroll
            for (int j = 0; j < CUDA_CHUNK; j++) {
                acc_w[j] += (double)dy[j] * (xv[j] - mu) * r;
                acc_b[j] += dy[j];
            }
        }
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) {
            slice_w[threadIdx.y][j][threadIdx.x] = acc_w[j];
            slice_b[threadIdx.y][j][threadIdx.x] = acc_b[j];
        }
        __syncthreads();
        if (threadIdx.y == 0 && active) {
            for (int j = 0; j < CUDA_CHUNK && c0 + j < C; j++) {
                double total_w = 0, total_b = 0;
                for (int y = 0; y < NORM_PARTIAL_SLICES; y++) {
                    total_w += slice_w[y][j][threadIdx.x];
                    total_b += slice_b[y][j][threadIdx.x];
                }
                partial[b * C + c0 + j] = total_w;
                partial[(n_blocks + b) * C + c0 + j] = total_b;
            }
        }
        __syncthreads();
    }
}

int CUDA_OP(layernorm_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *mean,
                               const dorac_tensor *rstd, const dorac_tensor *x,
                               const dorac_tensor *w, const dorac_tensor *b, double eps) {
    const char *op = "layernorm_forward";
    DORAC_TRY(cuda_check_float(x, op, "x"));
    int64_t N = x->rows, C = x->cols;
    DORAC_TRY(cuda_check_shape(out, N, C, op, "out"));
    DORAC_TRY(cuda_check_shape(mean, 1, N, op, "mean"));
    DORAC_TRY(cuda_check_shape(rstd, 1, N, op, "rstd"));
    DORAC_TRY(cuda_check_shape(w, 1, C, op, "weight"));
    DORAC_TRY(cuda_check_optional_vector(b, C, op, "bias"));
    if (N == 0) return DORAC_OK;
    /* C == 0 still runs: mean and rstd become NaN (0/0), as on the CPU */
    cuda_view bias = {NULL, DORAC_DTYPE_F32, 0};
    if (b && b->data) bias = cuda_view_of(b);
    layernorm_forward_kernel<<<cuda_blocks(N, 1) /* a block per row */,
                               cuda_row_threads(C, NORM_THREADS), 0, cuda_stream(be)>>>(
        cuda_view_of(out), cuda_view_of(mean), cuda_view_of(rstd), cuda_view_of(x),
        cuda_view_of(w), bias, C, eps);
    return cuda_launch_status(op);
}

int CUDA_OP(layernorm_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dw,
                                const dorac_tensor *db, const dorac_tensor *dout,
                                const dorac_tensor *x, const dorac_tensor *w,
                                const dorac_tensor *mean, const dorac_tensor *rstd) {
    const char *op = "layernorm_backward";
    DORAC_TRY(cuda_check_float(x, op, "x"));
    int64_t N = x->rows, C = x->cols;
    DORAC_TRY(cuda_check_shape(dx, N, C, op, "dx"));
    DORAC_TRY(cuda_check_shape(dout, N, C, op, "dout"));
    DORAC_TRY(cuda_check_shape(w, 1, C, op, "weight"));
    DORAC_TRY(cuda_check_shape(mean, 1, N, op, "mean"));
    DORAC_TRY(cuda_check_shape(rstd, 1, N, op, "rstd"));
    DORAC_TRY(cuda_check_optional_vector(dw, C, op, "dweight"));
    DORAC_TRY(cuda_check_optional_vector(db, C, op, "dbias"));
    if (N == 0 || C == 0) return DORAC_OK;
    cudaStream_t stream = cuda_stream(be);
    layernorm_backward_dx_kernel<<<cuda_blocks(N, 1) /* a block per row */,
                                   cuda_row_threads(C, NORM_THREADS), 0, stream>>>(
        cuda_view_of(dx), cuda_view_of(dout), cuda_view_of(x), cuda_view_of(w),
        cuda_view_of(mean), cuda_view_of(rstd), C);
    int status = cuda_launch_status(op);
    bool want_w = dw && dw->data, want_b = db && db->data;
    if (status != DORAC_OK || (!want_w && !want_b)) return status;

    int64_t n_blocks = (N + NORM_PARTIAL_ROWS - 1) / NORM_PARTIAL_ROWS;
    double *partial = (double *)be->alloc(be, (size_t)(2 * n_blocks * C) * sizeof(double));
    if (!partial) return DORAC_E_NOMEM; /* alloc set the message */
    dim3 grid(cuda_blocks(cuda_chunks(C), 32),
              (unsigned)(n_blocks < GRID_Y_MAX ? n_blocks : GRID_Y_MAX));
    layernorm_dwdb_partial_kernel<<<grid, dim3(32, NORM_PARTIAL_SLICES), 0, stream>>>(
        partial, cuda_view_of(dout), cuda_view_of(x), cuda_view_of(mean), cuda_view_of(rstd), N, C);
    status = cuda_launch_status(op);
    unsigned total_blocks = cuda_blocks(C, NORM_TOTAL_THREADS);
    if (status == DORAC_OK && want_w) {
        column_total_kernel<<<total_blocks, NORM_TOTAL_THREADS, 0, stream>>>(
            cuda_view_of(dw), partial, n_blocks, C);
        status = cuda_launch_status(op);
    }
    if (status == DORAC_OK && want_b) {
        column_total_kernel<<<total_blocks, NORM_TOTAL_THREADS, 0, stream>>>(
            cuda_view_of(db), partial + n_blocks * C, n_blocks, C);
        status = cuda_launch_status(op);
    }
    be->free(be, partial); /* stream-ordered: freed after the kernels ran */
    return status;
}
