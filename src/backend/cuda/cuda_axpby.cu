/*
** cuda_axpby.cu — out = alpha X + beta out on the GPU (backend.h's axpby;
** the CPU twin is in cpu_ops_basic.c).
**
** Size letters: R rows, C columns.
**
** Element-wise, one thread per 16-byte chunk of a row (cuda_chunk.cuh),
** stepping down the rows; any row stride (ld > cols views) is fine.
** beta == 0 never reads out, so NaN or garbage there is ignored, as the
** contract says. The arithmetic is fp32 and unfused (each product and sum
** rounded on its own), as the CPU computes it, so F32 tensors give the CPU's
** bits. out may be X itself: each thread reads a chunk before it writes it.
*/
#include "backend/cuda/cuda_chunk.cuh"

#define AXPBY_THREADS 256

/* out (R,C) = alpha X + (use_out ? beta out : 0); X (R,C).
** Grid: cuda_chunk_grid, a thread per chunk of a row. */
static __global__ void axpby_kernel(cuda_view out, cuda_view X, int64_t R, int64_t C, float alpha,
                                    float beta, bool use_out) {
    int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CUDA_CHUNK;
    if (c0 >= C) return;
    for (int64_t i = blockIdx.y; i < R; i += gridDim.y) {
        float x[CUDA_CHUNK], o[CUDA_CHUNK];
        ld_chunk(x, X, i, c0, C, row_aligned16(X, i), 0.0f);
        if (use_out) ld_chunk(o, out, i, c0, C, row_aligned16(out, i), 0.0f);
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) {
            float v = __fmul_rn(alpha, x[k]);
            x[k] = use_out ? __fadd_rn(v, __fmul_rn(beta, o[k])) : v;
        }
        st_chunk(out, i, c0, C, row_aligned16(out, i), x);
    }
}

int CUDA_OP(axpby)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                   double alpha, double beta) {
    DORAC_TRY(cuda_check_float(X, "axpby", "X"));
    DORAC_TRY(cuda_check_shape(out, X->rows, X->cols, "axpby", "out"));
    int64_t R = X->rows, C = X->cols;
    if (R == 0 || C == 0) return DORAC_OK;
    int threads = cuda_row_threads(C, AXPBY_THREADS);
    /* beta decides on the double, as the CPU does: a tiny beta that rounds
    ** to 0.0f still reads out */
    axpby_kernel<<<cuda_chunk_grid(R, C, threads), threads, 0, cuda_stream(be)>>>(
        cuda_view_of(out), cuda_view_of(X), R, C, (float)alpha, (float)beta, beta != 0.0);
    return cuda_launch_status("axpby");
}
