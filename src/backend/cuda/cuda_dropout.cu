/*
** cuda_dropout.cu — out = in * mask / (1-p) on the GPU (backend.h's
** dropout; the CPU twin is in cpu_ops_basic.c).
**
** Size letters: R rows, C columns.
**
** The mask is the CPU's, bit for bit: element (i, j) is kept when
** dorac_rng_uniform(seed, stream, (row0+i)*C + j) >= (float)p, the same
** counter-based draw (core/rng.h compiles for the device), the same index
** and the same fp32 comparison, and a kept element is multiplied by the
** same fp32 keep scale (float)(1/(1-p)). So a mask drawn here matches one
** drawn by the CPU backend, and applying the op again with the same
** arguments to a gradient is its backward.
**
** Element-wise, one thread per 16-byte chunk of a row (cuda_chunk.cuh).
** out may be in itself: each thread reads a chunk before it writes it.
*/
#include "backend/cuda/cuda_chunk.cuh"

#define DROPOUT_THREADS 256

/* out (R,C); in (R,C). Row i of the tensor is row row0 + i of the mask.
** Grid: cuda_chunk_grid, a thread per chunk of a row. */
static __global__ void dropout_kernel(cuda_view out, cuda_view in, int64_t R, int64_t C, float p,
                                      float keep_scale, uint64_t seed, uint64_t stream,
                                      int64_t row0) {
    int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CUDA_CHUNK;
    if (c0 >= C) return;
    for (int64_t i = blockIdx.y; i < R; i += gridDim.y) {
        uint64_t base = (uint64_t)(row0 + i) * (uint64_t)C + (uint64_t)c0;
        float x[CUDA_CHUNK];
        ld_chunk(x, in, i, c0, C, row_aligned16(in, i), 0.0f);
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++)
            x[k] = dorac_rng_uniform(seed, stream, base + (uint64_t)k) >= p ? x[k] * keep_scale : 0.0f;
        st_chunk(out, i, c0, C, row_aligned16(out, i), x);
    }
}

int CUDA_OP(dropout)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *in, double p,
                     uint64_t seed, uint64_t stream, int64_t row0) {
    DORAC_TRY(cuda_check_float(in, "dropout", "in"));
    DORAC_TRY(cuda_check_shape(out, in->rows, in->cols, "dropout", "out"));
    if (!(p >= 0.0 && p < 1.0))
        return dorac_error(DORAC_E_INVALID, "dropout: probability %g is not in [0, 1)", p);
    int64_t R = in->rows, C = in->cols;
    if (R == 0 || C == 0) return DORAC_OK;
    int threads = cuda_row_threads(C, DROPOUT_THREADS);
    dropout_kernel<<<cuda_chunk_grid(R, C, threads), threads, 0, cuda_stream(be)>>>(
        cuda_view_of(out), cuda_view_of(in), R, C, (float)p, (float)(1.0 / (1.0 - p)), seed, stream,
        row0);
    return cuda_launch_status("dropout");
}
