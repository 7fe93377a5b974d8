/*
** cuda_gelu.cu — GELU with the tanh approximation (GPT-2's gelu_new) on the
** GPU, forward and backward (contracts in backend.h, shared code in
** cuda_impl.cuh and cuda_chunk.cuh; the CPU twin is in cpu_ops_model.c).
**
** Size letters: N rows (B*T), C channels.
**
**   gelu(x)  = x/2 (1 + tanh(u)),  u = k (x + 0.044715 x^3),  k = sqrt(2/pi)
**   gelu'(x) = (1 + tanh(u))/2 + x/2 (1 - tanh(u)^2) k (1 + 3 0.044715 x^2)
**
** Element-wise, one thread per 16-byte chunk of a row (cuda_chunk.cuh),
** fp32 math with the CPU's formulas. Each thread reads its inputs before it
** writes, so outputs may alias inputs element for element.
*/
#include <math.h>

#include "backend/cuda/cuda_dora_colsum.cuh"

#define GELU_THREADS 256
#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f

/* out (N,C) = gelu(x (N,C)). Grid: cuda_chunk_grid, a thread per chunk. */
static __global__ void gelu_forward_kernel(cuda_view out, cuda_view x, int64_t N, int64_t C) {
    int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CUDA_CHUNK;
    if (c0 >= C) return;
    for (int64_t i = blockIdx.y; i < N; i += gridDim.y) {
        float a[CUDA_CHUNK];
        ld_chunk(a, x, i, c0, C, row_aligned16(x, i), 0.0f);
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++)
            a[k] = 0.5f * a[k] * (1.0f + tanhf(GELU_K * (a[k] + GELU_A * a[k] * a[k] * a[k])));
        st_chunk(out, i, c0, C, row_aligned16(out, i), a);
    }
}

/* dout gelu'(x) */
static __device__ __forceinline__ float gelu_grad(float x, float dout) {
    float th = tanhf(GELU_K * (x + GELU_A * x * x * x));
    float du = GELU_K * (1.0f + 3.0f * GELU_A * x * x);
    return dout * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du);
}

/* The backward's gradient for cuda_dora_colsum.cuh, from in = (x, dout):
** d = dout gelu'(x), y = x (the projection's output). */
struct gelu_producer {
    enum { N_IN = 2 };
    cuda_view in[N_IN]; /* x, dout */
    __device__ __forceinline__ void operator()(const float v[N_IN][CUDA_CHUNK], float d[1][CUDA_CHUNK],
                                               float y[1][CUDA_CHUNK]) const {
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) y[0][k] = v[0][k], d[0][k] = gelu_grad(v[0][k], v[1][k]);
    }
};

/* dx (N,C) = dout (N,C) gelu'(x (N,C)). Grid: cuda_chunk_grid, a thread per
** chunk. */
static __global__ void gelu_backward_kernel(cuda_view dx, cuda_view dout, cuda_view x, int64_t N,
                                            int64_t C) {
    int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CUDA_CHUNK;
    if (c0 >= C) return;
    for (int64_t i = blockIdx.y; i < N; i += gridDim.y) {
        float a[CUDA_CHUNK], g[CUDA_CHUNK];
        ld_chunk(a, x, i, c0, C, row_aligned16(x, i), 0.0f);
        ld_chunk(g, dout, i, c0, C, row_aligned16(dout, i), 0.0f);
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) g[k] = gelu_grad(a[k], g[k]);
        st_chunk(dx, i, c0, C, row_aligned16(dx, i), g);
    }
}

int CUDA_OP(gelu_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *x) {
    const char *op = "gelu_forward";
    DORAC_TRY(cuda_check_float(x, op, "x"));
    DORAC_TRY(cuda_check_shape(out, x->rows, x->cols, op, "out"));
    int64_t N = x->rows, C = x->cols;
    if (N == 0 || C == 0) return DORAC_OK;
    gelu_forward_kernel<<<cuda_chunk_grid(N, C, GELU_THREADS), GELU_THREADS, 0,
                          cuda_stream(be)>>>(cuda_view_of(out), cuda_view_of(x), N, C);
    return cuda_launch_status(op);
}

int CUDA_OP(gelu_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dout,
                           const dorac_tensor *x) {
    const char *op = "gelu_backward";
    DORAC_TRY(cuda_check_float(x, op, "x"));
    DORAC_TRY(cuda_check_shape(dx, x->rows, x->cols, op, "dx"));
    DORAC_TRY(cuda_check_shape(dout, x->rows, x->cols, op, "dout"));
    int64_t N = x->rows, C = x->cols;
    if (N == 0 || C == 0) return DORAC_OK;
    gelu_backward_kernel<<<cuda_chunk_grid(N, C, GELU_THREADS), GELU_THREADS, 0,
                           cuda_stream(be)>>>(cuda_view_of(dx), cuda_view_of(dout),
                                              cuda_view_of(x), N, C);
    return cuda_launch_status(op);
}

int CUDA_OP(gelu_backward_dora)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dout,
                                const dorac_tensor *x, const dorac_dora_epilogue *e) {
    const char *op = "gelu_backward_dora";
    DORAC_TRY(cuda_check_float(x, op, "x"));
    int64_t N = x->rows, C = x->cols;
    DORAC_TRY(cuda_check_shape(dx, N, C, op, "dx"));
    DORAC_TRY(cuda_check_shape(dout, N, C, op, "dout"));
    DORAC_TRY(cuda_check_shape(e->zsum, 1, C, op, "zsum"));
    DORAC_TRY(cuda_check_shape(e->g, 1, C, op, "g"));
    DORAC_TRY(cuda_check_optional_vector(e->bias, C, op, "bias"));
    gelu_producer produce = {{cuda_view_of(x), cuda_view_of(dout)}};
    dora_sides<1> s = {{dora_side_of(dx, e->zsum, e->g, e->bias)}};
    return dora_colsum_launch<1>(be, produce, s, N, C, op);
}
