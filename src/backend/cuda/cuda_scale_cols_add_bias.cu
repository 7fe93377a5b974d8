/*
** cuda_scale_cols_add_bias.cu — Y[i,c] = scale[c] Y[i,c] + bias[c] in place
** on the GPU (backend.h's scale_cols_add_bias; the CPU twin is in
** cpu_ops_basic.c): DoRA's g ⊙ (·) + bias after the forward GEMMs.
**
** Size letters: N rows, C columns.
**
** Element-wise, one thread per 16-byte chunk of a row (cuda_chunk.cuh). A
** thread keeps its columns for every row it visits, so it loads its chunk
** of scale and bias once. An absent scale (data NULL) means 1 and an absent
** bias means 0; with both absent nothing is launched. The arithmetic is
** fp32 and unfused, as the CPU computes it, so F32 tensors give the CPU's
** bits.
*/
#include "backend/cuda/cuda_chunk.cuh"

#define SCALE_COLS_THREADS 256

/* Y (N,C); scale, bias (1,C), each read only when its flag is set.
** Grid: cuda_chunk_grid, a thread per chunk of a row. */
static __global__ void scale_cols_add_bias_kernel(cuda_view Y, cuda_view scale, cuda_view bias,
                                                  int64_t N, int64_t C, bool has_scale,
                                                  bool has_bias) {
    int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CUDA_CHUNK;
    if (c0 >= C) return;
    float g[CUDA_CHUNK], b[CUDA_CHUNK];
    if (has_scale) ld_chunk(g, scale, 0, c0, C, row_aligned16(scale, 0), 1.0f);
    if (has_bias) ld_chunk(b, bias, 0, c0, C, row_aligned16(bias, 0), 0.0f);
    for (int64_t i = blockIdx.y; i < N; i += gridDim.y) {
        float y[CUDA_CHUNK];
        ld_chunk(y, Y, i, c0, C, row_aligned16(Y, i), 0.0f);
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) {
            if (has_scale) y[k] = __fmul_rn(g[k], y[k]);
            if (has_bias) y[k] = __fadd_rn(y[k], b[k]);
        }
        st_chunk(Y, i, c0, C, row_aligned16(Y, i), y);
    }
}

int CUDA_OP(scale_cols_add_bias)(dorac_backend *be, const dorac_tensor *Y,
                                 const dorac_tensor *scale, const dorac_tensor *bias) {
    const char *op = "scale_cols_add_bias";
    DORAC_TRY(cuda_check_float(Y, op, "Y"));
    DORAC_TRY(cuda_check_optional_vector(scale, Y->cols, op, "scale"));
    DORAC_TRY(cuda_check_optional_vector(bias, Y->cols, op, "bias"));
    bool has_scale = scale && scale->data, has_bias = bias && bias->data;
    int64_t N = Y->rows, C = Y->cols;
    if ((!has_scale && !has_bias) || N == 0 || C == 0) return DORAC_OK;
    cuda_view none = {NULL, DORAC_DTYPE_F32, 0};
    int threads = cuda_row_threads(C, SCALE_COLS_THREADS);
    scale_cols_add_bias_kernel<<<cuda_chunk_grid(N, C, threads), threads, 0, cuda_stream(be)>>>(
        cuda_view_of(Y), has_scale ? cuda_view_of(scale) : none, has_bias ? cuda_view_of(bias) : none,
        N, C, has_scale, has_bias);
    return cuda_launch_status(op);
}
