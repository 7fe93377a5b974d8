/*
** cuda_row_sumsq.cu — out[o] = sum_j W[o,j]^2 on the GPU (backend.h's
** row_sumsq; the CPU twin is in cpu_ops_basic.c), the squared row norms of
** a frozen weight that DoRA's factored norm starts from.
**
** Size letters: R rows, C columns.
**
** One block per row (grid-stride when there are more rows than blocks):
** thread t reads chunks t, t + blockDim, ... of the row (16 bytes each,
** cuda_chunk.cuh) and adds their squares in double, then the block adds
** the threads' sums by a fixed tree. The shape of the sum depends only on
** the sizes, so the result is the same from run to run; any row stride is
** fine.
*/
#include "backend/cuda/cuda_chunk.cuh"

#define ROW_SUMSQ_THREADS 256

/* out (1,R); W (R,C). Grid: a block per row. */
static __global__ void row_sumsq_kernel(cuda_view out, cuda_view W, int64_t R, int64_t C) {
    __shared__ double warp_sums[32];
    for (int64_t o = blockIdx.x; o < R; o += gridDim.x) {
        bool vec = row_aligned16(W, o);
        double acc = 0.0;
        for (int64_t c0 = (int64_t)threadIdx.x * CUDA_CHUNK; c0 < C;
             c0 += (int64_t)blockDim.x * CUDA_CHUNK) {
            float w[CUDA_CHUNK];
            ld_chunk(w, W, o, c0, C, vec, 0.0f);
#pragma unroll
            for (int k = 0; k < CUDA_CHUNK; k++) acc += (double)w[k] * (double)w[k];
        }
        acc = block_sum(acc, warp_sums);
        if (threadIdx.x == 0) st_at(out, 0, o, (float)acc);
    }
}

int CUDA_OP(row_sumsq)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *W) {
    DORAC_TRY(cuda_check_float(W, "row_sumsq", "W"));
    DORAC_TRY(cuda_check_shape(out, 1, W->rows, "row_sumsq", "out"));
    if (W->rows == 0) return DORAC_OK; /* a row of 0 columns still writes its 0 */
    int threads = cuda_row_threads(W->cols, ROW_SUMSQ_THREADS);
    row_sumsq_kernel<<<cuda_blocks(W->rows, 1), threads, 0, cuda_stream(be)>>>(
        cuda_view_of(out), cuda_view_of(W), W->rows, W->cols);
    return cuda_launch_status("row_sumsq");
}
