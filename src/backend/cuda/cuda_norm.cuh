/*
** cuda_norm.cuh — what the RMSNorm and LayerNorm files share: their launch
** shapes, and the second pass of their weight (and bias) gradients.
**
** Both reduce dw[c] = sum_i (...)[i,c] in two fixed-order passes: blocks of
** NORM_PARTIAL_ROWS rows write double partials (NORM_PARTIAL_SLICES warps
** share a block's rows), then column_total_kernel adds the partials of each
** column in block order. No atomics, so the sums are the same on every run.
*/
#ifndef DORAC_CUDA_NORM_CUH
#define DORAC_CUDA_NORM_CUH

#include "backend/cuda/cuda_chunk.cuh"

#define NORM_THREADS 256         /* most threads on one row */
#define NORM_PARTIAL_ROWS 64     /* rows summed into one partial */
#define NORM_PARTIAL_SLICES 8    /* warps sharing a partial's rows */
#define NORM_TOTAL_THREADS 256
#define GRID_Y_MAX 65535         /* CUDA's limit on gridDim.y */

/* grad (1,C): grad[c] += sum_b partial[b,c], b = 0..n_blocks-1 in order:
** the second, fixed-order pass of the norms' weight and bias gradients
** (partial is (n_blocks, C) doubles). One thread per column. */
static __global__ void column_total_kernel(cuda_view grad, const double *partial, int64_t n_blocks,
                                           int64_t C) {
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double acc = 0;
#pragma unroll 8
    for (int64_t b = 0; b < n_blocks; b++) acc += partial[b * C + c];
    st_at(grad, 0, c, ld_at(grad, 0, c) + (float)acc);
}

#endif
