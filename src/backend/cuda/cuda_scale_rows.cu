/*
** cuda_scale_rows.cu — out = beta out + alpha diag(w) X on the GPU
** (backend.h's scale_rows; the CPU twin is in cpu_ops_basic.c).
**
** Size letters: R rows, C columns.
**
** Element-wise, one thread per 16-byte chunk of a row (cuda_chunk.cuh),
** stepping down the rows. The row factor f = alpha w[i] is formed in double
** and then rounded, as the CPU forms it; the element arithmetic is fp32 and
** unfused, so F32 tensors give the CPU's bits. beta == 0 never reads out
** (NaN there is ignored), and out may then be X itself: each thread reads a
** chunk before it writes it.
*/
#include "backend/cuda/cuda_chunk.cuh"

#define SCALE_ROWS_THREADS 256

/* out (R,C); X (R,C); w (1,R).
** Grid: cuda_chunk_grid, a thread per chunk of a row. */
static __global__ void scale_rows_kernel(cuda_view out, cuda_view X, cuda_view w, int64_t R,
                                         int64_t C, double alpha, float beta, bool use_out) {
    int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CUDA_CHUNK;
    if (c0 >= C) return;
    for (int64_t i = blockIdx.y; i < R; i += gridDim.y) {
        float f = (float)(alpha * (double)ld_at(w, 0, i));
        float x[CUDA_CHUNK], o[CUDA_CHUNK];
        ld_chunk(x, X, i, c0, C, row_aligned16(X, i), 0.0f);
        if (use_out) ld_chunk(o, out, i, c0, C, row_aligned16(out, i), 0.0f);
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) {
            float v = __fmul_rn(f, x[k]);
            x[k] = use_out ? __fadd_rn(__fmul_rn(beta, o[k]), v) : v;
        }
        st_chunk(out, i, c0, C, row_aligned16(out, i), x);
    }
}

int CUDA_OP(scale_rows)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                        const dorac_tensor *w, double alpha, double beta) {
    DORAC_TRY(cuda_check_float(X, "scale_rows", "X"));
    DORAC_TRY(cuda_check_shape(out, X->rows, X->cols, "scale_rows", "out"));
    DORAC_TRY(cuda_check_shape(w, 1, X->rows, "scale_rows", "w"));
    int64_t R = X->rows, C = X->cols;
    if (R == 0 || C == 0) return DORAC_OK;
    int threads = cuda_row_threads(C, SCALE_ROWS_THREADS);
    scale_rows_kernel<<<cuda_chunk_grid(R, C, threads), threads, 0, cuda_stream(be)>>>(
        cuda_view_of(out), cuda_view_of(X), cuda_view_of(w), R, C, alpha, (float)beta, beta != 0.0);
    return cuda_launch_status("scale_rows");
}
