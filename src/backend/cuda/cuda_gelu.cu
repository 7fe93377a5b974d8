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
** Element-wise and bandwidth bound, fp32 math with the CPU's formulas, in
** two versions per direction that give the same bits (cuda_swiglu.cu has
** the same design and says why at more length):
**   - the BF16 path (gelu_*_bf16_kernel), when every operand is BF16,
**     starts on a 16-byte boundary and has a row stride of whole 16-byte
**     chunks (cuda_bf16_rows16), and C is a multiple of 8. Thread x of a
**     block of GELU_BF16_THREADS owns one chunk (8 values, cuda_chunk.cuh)
**     of ROWS consecutive rows (GELU_FWD_ROWS, GELU_BWD_ROWS), issues all
**     its 16-byte loads raw first, then widens, computes and stores row by
**     row.
**   - the chunk path (gelu_*_kernel) for everything else (F32 or mixed
**     types, rows off a 16-byte boundary, C not a multiple of 8): a thread
**     per chunk of a row, loading and widening with ld_chunk. It is also
**     the slow, obvious twin that test_backend_ops runs in its f32
**     configuration.
** Both widen BF16 exactly and round each result once (st_chunk), and the
** per-element math is one shared function per direction (gelu_value,
** gelu_grad), so the results do not depend on the path.
**
** Why (H200, GPT-2's MLP: N = 8192, C = 3072, BF16, 50 MB a tensor): as
** in SwiGLU's chunk path, ld_chunk widens right after each 16-byte load,
** inside the load's branch, so a chunk-path thread waits a DRAM round trip
** per input (x, then dout) with 16 bytes in flight: at its 38 (forward) or
** 46 (backward) registers, 6 or 5 blocks of 256 threads an SM, 24 or 20 KB
** in flight an SM, which held SwiGLU's passes near 3 TB/s. A BF16-path
** thread has 4 loads (forward: 4 rows of x) or 6 (backward: 3 rows of x
** and dout) in flight at once; at 56 and 64 registers (no spills), 9 or 8
** blocks of 128 threads an SM, that is 72 or 96 KB an SM. Expected at
** 3.35-3.5 TB/s: ~29-30 us a forward (2 x 50 MB) and ~43-45 us a backward
** (3 x 50 MB). The backward has 3 rows, not 4: at 4 rows and the 64
** registers of __launch_bounds__, ptxas (nvcc 13.0) moved the first row's
** x math ahead of the other seven loads, leaving one in flight; at 3 the
** SASS issues all six first, as it does the forward's four.
** tanhf is ~17 instructions with two MUFU ops, so the forward is the pass
** nearest the SM's issue rate: ~30 instructions an element against the ~39
** that 128 lanes an SM can issue (at 1.98 GHz) while an element's 4 bytes
** move at 3.4 TB/s.
**
** Aliasing: the output may alias an input element for element (out over
** x; dx over x or dout), as the chunk path has always allowed. On either
** path a thread loads every input chunk it will store over before it
** stores any, and stores only chunks it has loaded; the loads are plain,
** not __ldg, since such an input is not read-only for the kernel's
** lifetime.
*/
#include <math.h>

#include "backend/cuda/cuda_dora_colsum.cuh"

#define GELU_THREADS 256      /* threads of a chunk-path block */
#define GELU_BF16_THREADS 128 /* threads of a BF16-path block: 128 chunks, 1024 columns */
#define GELU_BF16_BLOCKS 8    /* BF16-path blocks an SM: at most 64 registers a thread */
#define GELU_FWD_ROWS 4       /* rows a BF16-path forward thread holds: 4 loads in flight */
#define GELU_BWD_ROWS 3       /* ... and a backward thread: 6 loads in flight */
#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f

/* gelu(x) */
static __device__ __forceinline__ float gelu_value(float x) {
    return 0.5f * x * (1.0f + tanhf(GELU_K * (x + GELU_A * x * x * x)));
}

/* out (N,C) = gelu(x (N,C)). Grid: cuda_chunk_grid, a thread per chunk. */
static __global__ void gelu_forward_kernel(cuda_view out, cuda_view x, int64_t N, int64_t C) {
    int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CUDA_CHUNK;
    if (c0 >= C) return;
    for (int64_t i = blockIdx.y; i < N; i += gridDim.y) {
        float a[CUDA_CHUNK];
        ld_chunk(a, x, i, c0, C, row_aligned16(x, i), 0.0f);
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) a[k] = gelu_value(a[k]);
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

/* ---- the BF16 path: every load of a thread in flight at once ---------- */

/* gelu_forward_kernel with out and x BF16 and cuda_bf16_rows16, C a
** multiple of 8: bf16_rows_map (cuda_chunk.cuh), GELU_FWD_ROWS rows a
** thread. */
static __global__ void __launch_bounds__(GELU_BF16_THREADS, GELU_BF16_BLOCKS)
    gelu_forward_bf16_kernel(cuda_view out, cuda_view x, int64_t N, int64_t C) {
    const cuda_view o[1] = {out}, in[1] = {x};
    bf16_rows_map<GELU_FWD_ROWS>(o, in, N, C, [](const float (&a)[1][CUDA_CHUNK], float (&y)[1][CUDA_CHUNK]) {
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) y[0][k] = gelu_value(a[0][k]);
    });
}

/* gelu_backward_kernel with dx, dout and x BF16 and cuda_bf16_rows16, C a
** multiple of 8: bf16_rows_map, GELU_BWD_ROWS rows a thread. */
static __global__ void __launch_bounds__(GELU_BF16_THREADS, GELU_BF16_BLOCKS)
    gelu_backward_bf16_kernel(cuda_view dx, cuda_view dout, cuda_view x, int64_t N, int64_t C) {
    const cuda_view o[1] = {dx}, in[2] = {x, dout};
    bf16_rows_map<GELU_BWD_ROWS>(o, in, N, C, [](const float (&a)[2][CUDA_CHUNK], float (&y)[1][CUDA_CHUNK]) {
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) y[0][k] = gelu_grad(a[0][k], a[1][k]);
    });
}

int CUDA_OP(gelu_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *x) {
    const char *op = "gelu_forward";
    DORAC_TRY(cuda_check_float(x, op, "x"));
    DORAC_TRY(cuda_check_shape(out, x->rows, x->cols, op, "out"));
    int64_t N = x->rows, C = x->cols;
    if (N == 0 || C == 0) return DORAC_OK;
    if (C % CUDA_CHUNK == 0 && cuda_bf16_rows16(out) && cuda_bf16_rows16(x))
        gelu_forward_bf16_kernel<<<cuda_row_group_grid(N, C, GELU_FWD_ROWS, GELU_BF16_THREADS), GELU_BF16_THREADS, 0,
                                   cuda_stream(be)>>>(cuda_view_of(out), cuda_view_of(x), N, C);
    else
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
    cuda_view d = cuda_view_of(dx), g = cuda_view_of(dout), v = cuda_view_of(x);
    if (C % CUDA_CHUNK == 0 && cuda_bf16_rows16(dx) && cuda_bf16_rows16(dout) && cuda_bf16_rows16(x))
        gelu_backward_bf16_kernel<<<cuda_row_group_grid(N, C, GELU_BWD_ROWS, GELU_BF16_THREADS), GELU_BF16_THREADS, 0,
                                    cuda_stream(be)>>>(d, g, v, N, C);
    else
        gelu_backward_kernel<<<cuda_chunk_grid(N, C, GELU_THREADS), GELU_THREADS, 0,
                               cuda_stream(be)>>>(d, g, v, N, C);
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
