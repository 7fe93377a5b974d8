/*
** cuda_dora_scale_backward.cu — the element-wise half of DoRA's backward on
** the GPU (backend.h's dora_scale_backward; the CPU twin is in
** cpu_ops_dora.c), one pass over (N,out):
**   dz[i,o]  = g[o] * dy[i,o]
**   zsum[o] += sum_i dy[i,o] * z[i,o],  z[i,o] = (y[i,o] - bias[o]) / g[o]
** The pass and its fixed-order column sums are cuda_dora_colsum.cuh's, with
** a producer that reads dy and y. dz may alias dy.
**
** Size letters: N rows (B*T), out columns (the layer's output features).
*/
#include "backend/cuda/cuda_dora_colsum.cuh"

/* From in = (dy, y): d = dy, y = y. */
struct scale_producer {
    enum { N_IN = 2 };
    cuda_view in[N_IN]; /* dy, y */
    __device__ __forceinline__ void operator()(const float x[N_IN][CUDA_CHUNK], float d[1][CUDA_CHUNK],
                                               float y[1][CUDA_CHUNK]) const {
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) d[0][k] = x[0][k], y[0][k] = x[1][k];
    }
};

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
    scale_producer produce = {{cuda_view_of(dy), cuda_view_of(y)}};
    dora_sides<1> s = {{dora_side_of(dz, zsum, g, bias)}};
    return dora_colsum_launch<1>(be, produce, s, N, out, op);
}
