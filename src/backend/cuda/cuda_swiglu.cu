/*
** cuda_swiglu.cu — the SwiGLU gate of Llama's MLP on the GPU, forward and
** backward (contracts in backend.h, shared code in cuda_impl.cuh and
** cuda_chunk.cuh; the CPU twin is in cpu_ops_model.c).
**
** Size letters: N rows (B*T), C channels (the MLP's hidden width).
**
** Element-wise, one thread per 16-byte chunk of a row (cuda_chunk.cuh),
** fp32 math with the same formulas as the CPU. Each thread reads all its
** inputs before it writes, so outputs may alias inputs element for element.
** gate and up are often column views of one fused projection (ld > cols).
*/
#include <math.h>

#include "backend/cuda/cuda_dora_colsum.cuh"

#define SWIGLU_THREADS 256

/* out (N,C) = silu(gate) ⊙ up, silu(g) = g / (1 + e^-g).
** Grid: cuda_chunk_grid, a thread per chunk of a row. */
static __global__ void swiglu_forward_kernel(cuda_view out, cuda_view gate, cuda_view up, int64_t N,
                                             int64_t C) {
    int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CUDA_CHUNK;
    if (c0 >= C) return;
    for (int64_t i = blockIdx.y; i < N; i += gridDim.y) {
        float g[CUDA_CHUNK], u[CUDA_CHUNK];
        ld_chunk(g, gate, i, c0, C, row_aligned16(gate, i), 0.0f);
        ld_chunk(u, up, i, c0, C, row_aligned16(up, i), 0.0f);
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
        st_chunk(out, i, c0, C, row_aligned16(out, i), g);
    }
}

/* silu(g) = g σ(g), silu'(g) = σ(g) (1 + g (1 - σ(g))):
**   dup = dout silu(gate),  dgate = dout up silu'(gate)
** for one element (g, u, d) = (gate, up, dout). */
static __device__ __forceinline__ void swiglu_grad(float g, float u, float d, float *dgate, float *dup) {
    float sg = 1.0f / (1.0f + expf(-g));
    *dup = d * g * sg;
    *dgate = d * u * sg * (1.0f + g * (1.0f - sg));
}

/* dgate, dup (N,C) by swiglu_grad. Grid: cuda_chunk_grid, a thread per
** chunk of a row. */
static __global__ void swiglu_backward_kernel(cuda_view dgate, cuda_view dup, cuda_view dout,
                                              cuda_view gate, cuda_view up, int64_t N, int64_t C) {
    int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CUDA_CHUNK;
    if (c0 >= C) return;
    for (int64_t i = blockIdx.y; i < N; i += gridDim.y) {
        float g[CUDA_CHUNK], u[CUDA_CHUNK], d[CUDA_CHUNK];
        ld_chunk(g, gate, i, c0, C, row_aligned16(gate, i), 0.0f);
        ld_chunk(u, up, i, c0, C, row_aligned16(up, i), 0.0f);
        ld_chunk(d, dout, i, c0, C, row_aligned16(dout, i), 0.0f);
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) swiglu_grad(g[k], u[k], d[k], &d[k], &u[k]); /* d: dgate, u: dup */
        st_chunk(dup, i, c0, C, row_aligned16(dup, i), u);
        st_chunk(dgate, i, c0, C, row_aligned16(dgate, i), d);
    }
}

/* The backward's gradients for cuda_dora_colsum.cuh, from in = (gate, up,
** dout): d[0] = dgate, d[1] = dup by swiglu_grad, y[0] = gate, y[1] = up
** (the projections' outputs). */
struct swiglu_producer {
    enum { N_IN = 3 };
    cuda_view in[N_IN]; /* gate, up, dout */
    __device__ __forceinline__ void operator()(const float x[N_IN][CUDA_CHUNK], float d[2][CUDA_CHUNK],
                                               float y[2][CUDA_CHUNK]) const {
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) {
            y[0][k] = x[0][k], y[1][k] = x[1][k];
            swiglu_grad(x[0][k], x[1][k], x[2][k], &d[0][k], &d[1][k]);
        }
    }
};

int CUDA_OP(swiglu_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *gate,
                            const dorac_tensor *up) {
    const char *op = "swiglu_forward";
    DORAC_TRY(cuda_check_float(gate, op, "gate"));
    int64_t N = gate->rows, C = gate->cols;
    DORAC_TRY(cuda_check_shape(up, N, C, op, "up"));
    DORAC_TRY(cuda_check_shape(out, N, C, op, "out"));
    if (N == 0 || C == 0) return DORAC_OK;
    swiglu_forward_kernel<<<cuda_chunk_grid(N, C, SWIGLU_THREADS), SWIGLU_THREADS, 0,
                            cuda_stream(be)>>>(cuda_view_of(out), cuda_view_of(gate),
                                               cuda_view_of(up), N, C);
    return cuda_launch_status(op);
}

/* The backward's operands: gate a float (N,C) tensor, the others (N,C). */
static int check_backward(const dorac_tensor *dgate, const dorac_tensor *dup, const dorac_tensor *dout,
                          const dorac_tensor *gate, const dorac_tensor *up, const char *op) {
    DORAC_TRY(cuda_check_float(gate, op, "gate"));
    int64_t N = gate->rows, C = gate->cols;
    DORAC_TRY(cuda_check_shape(up, N, C, op, "up"));
    DORAC_TRY(cuda_check_shape(dout, N, C, op, "dout"));
    DORAC_TRY(cuda_check_shape(dgate, N, C, op, "dgate"));
    return cuda_check_shape(dup, N, C, op, "dup");
}

int CUDA_OP(swiglu_backward)(dorac_backend *be, const dorac_tensor *dgate, const dorac_tensor *dup,
                             const dorac_tensor *dout, const dorac_tensor *gate,
                             const dorac_tensor *up) {
    const char *op = "swiglu_backward";
    DORAC_TRY(check_backward(dgate, dup, dout, gate, up, op));
    int64_t N = gate->rows, C = gate->cols;
    if (N == 0 || C == 0) return DORAC_OK;
    swiglu_backward_kernel<<<cuda_chunk_grid(N, C, SWIGLU_THREADS), SWIGLU_THREADS, 0,
                             cuda_stream(be)>>>(cuda_view_of(dgate), cuda_view_of(dup),
                                                cuda_view_of(dout), cuda_view_of(gate),
                                                cuda_view_of(up), N, C);
    return cuda_launch_status(op);
}

int CUDA_OP(swiglu_backward_dora)(dorac_backend *be, const dorac_tensor *dgate,
                                  const dorac_tensor *dup, const dorac_tensor *dout,
                                  const dorac_tensor *gate, const dorac_tensor *up,
                                  const dorac_dora_epilogue *egate,
                                  const dorac_dora_epilogue *eup) {
    const char *op = "swiglu_backward_dora";
    DORAC_TRY(check_backward(dgate, dup, dout, gate, up, op));
    int64_t N = gate->rows, C = gate->cols;
    const dorac_dora_epilogue *e[2] = {egate, eup};
    for (int j = 0; j < 2; j++) {
        if (!e[j]) continue;
        DORAC_TRY(cuda_check_shape(e[j]->zsum, 1, C, op, "zsum"));
        DORAC_TRY(cuda_check_shape(e[j]->g, 1, C, op, "g"));
        DORAC_TRY(cuda_check_optional_vector(e[j]->bias, C, op, "bias"));
    }
    swiglu_producer produce = {{cuda_view_of(gate), cuda_view_of(up), cuda_view_of(dout)}};
    dora_sides<2> s = {{egate ? dora_side_of(dgate, egate->zsum, egate->g, egate->bias)
                              : dora_side_of(dgate, NULL, NULL, NULL),
                        eup ? dora_side_of(dup, eup->zsum, eup->g, eup->bias)
                            : dora_side_of(dup, NULL, NULL, NULL)}};
    return dora_colsum_launch<2>(be, produce, s, N, C, op);
}
