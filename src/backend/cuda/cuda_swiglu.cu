/*
** cuda_swiglu.cu — the SwiGLU gate of Llama's MLP on the GPU, forward and
** backward (contracts in backend.h, shared code in cuda_impl.cuh and
** cuda_chunk.cuh; the CPU twin is in cpu_ops_model.c).
**
** Size letters: N rows (B*T), C channels (the MLP's hidden width).
**
** Element-wise and bandwidth bound, fp32 math with the same formulas as the
** CPU, in two versions per direction that give the same bits:
**   - the BF16 path (swiglu_*_bf16_kernel), when every operand is BF16,
**     starts on a 16-byte boundary and has a row stride of whole 16-byte
**     chunks (cuda_bf16_rows16), and C is a multiple of 8. Thread x of a
**     block of SWIGLU_BF16_THREADS owns one chunk (8 values, cuda_chunk.cuh)
**     of ROWS consecutive rows (SWIGLU_FWD_ROWS, SWIGLU_BWD_ROWS), so a
**     warp's loads cover 512 contiguous bytes of a row. It issues all its
**     16-byte loads raw first (every input of every row), then widens,
**     computes and stores row by row.
**   - the chunk path (swiglu_*_kernel) for everything else (F32 or mixed
**     types, rows off a 16-byte boundary, C not a multiple of 8): a thread
**     per chunk of a row, loading and widening with ld_chunk. It is also
**     the slow, obvious twin: test_backend_ops runs it in its f32
**     configuration, and the BF16 path in its prod one where every view
**     is aligned. The model's buffers are (separate allocations, dz rows
**     padded by a multiple of 8 columns), so training takes the BF16 path.
** Both widen BF16 exactly and round each result once (st_chunk), and the
** per-element math is one shared function per direction (swiglu_value,
** swiglu_grad), so the results do not depend on the path.
**
** Why (H200, the Llama-3.2-1B step: N = 8192, C = 8192, BF16): the forward
** moves gate and up in and act out, 3 x 134 MB, and took 136 us (2.96
** TB/s); the backward moves dout, gate, up in and dgate, dup out, 5 x 134
** MB, and took 223 us (3.0 TB/s). ld_chunk widens right after each 16-byte
** load, inside the load's branch, so a chunk-path thread has one load in
** flight at a time: gate, then up (then dout), each waiting a DRAM round
** trip (the SASS of swiglu_forward_kernel shows it, as cuda_rmsnorm.cu and
** cuda_dora_colsum.cuh found for theirs). At its 44 (forward) or 56
** (backward) registers, 5 or 4 blocks of 256 threads an SM, that is 20 or
** 16 KB in flight an SM, 2.1 to 2.7 MB over 132 SMs: reads at ~2 TB/s
** (2/3 or 3/5 of the traffic) at ~1.2 us of loaded latency, what was
** measured. A BF16-path thread has 8 loads (forward: 4 rows x 2 inputs) or
** 6 (backward: 2 rows x 3 inputs) in flight at once, 128 or 96 bytes, and
** at its register bound (__launch_bounds__: 8 blocks of 128 threads an SM;
** 62 and 60 registers, no spills) 128 or 96 KB an SM, the same as
** cuda_rmsnorm.cu's row kernels, several times the DRAM's bandwidth-latency
** product, so the bytes in flight no longer bound it. Expected at 3.35-3.5
** TB/s (what the fixed RMSNorm reached): 115-120 us a forward launch,
** 192-200 us a backward. The loads-first order is the compiler's to keep:
** the SASS (nvcc 13.0) issues every load of a thread before its first
** widening; 3 backward rows would spill at 64 registers, 4 would need 102.
**
** Aliasing: each output may alias an input element for element (act over
** gate or up; dgate or dup over gate, up or dout), as the chunk path has
** always allowed (backend.h states no rule for these two ops; the model
** passes separate buffers). On either path a thread loads every input
** chunk it will store over before it stores any, and stores only chunks it
** has loaded; the loads are plain, not __ldg, since such an input is not
** read-only for the kernel's lifetime.
** gate and up are often column views of one fused projection (ld > cols).
*/
#include <math.h>

#include "backend/cuda/cuda_dora_colsum.cuh"

#define SWIGLU_THREADS 256      /* threads of a chunk-path block */
#define SWIGLU_BF16_THREADS 128 /* threads of a BF16-path block: 128 chunks, 1024 columns */
#define SWIGLU_BF16_BLOCKS 8    /* BF16-path blocks an SM: at most 64 registers a thread */
#define SWIGLU_FWD_ROWS 4       /* rows a BF16-path forward thread holds: 8 loads in flight */
#define SWIGLU_BWD_ROWS 2       /* ... and a backward thread: 6 loads in flight */

/* silu(g) u, silu(g) = g / (1 + e^-g): out for one element (g, u) =
** (gate, up). */
static __device__ __forceinline__ float swiglu_value(float g, float u) {
    return g / (1.0f + expf(-g)) * u;
}

/* out (N,C) = silu(gate) ⊙ up. Grid: cuda_chunk_grid, a thread per chunk
** of a row. */
static __global__ void swiglu_forward_kernel(cuda_view out, cuda_view gate, cuda_view up, int64_t N,
                                             int64_t C) {
    int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CUDA_CHUNK;
    if (c0 >= C) return;
    for (int64_t i = blockIdx.y; i < N; i += gridDim.y) {
        float g[CUDA_CHUNK], u[CUDA_CHUNK];
        ld_chunk(g, gate, i, c0, C, row_aligned16(gate, i), 0.0f);
        ld_chunk(u, up, i, c0, C, row_aligned16(up, i), 0.0f);
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) g[k] = swiglu_value(g[k], u[k]);
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

/* ---- the BF16 path: every load of a thread in flight at once ---------- */

/* swiglu_forward_kernel with every operand BF16 and cuda_bf16_rows16, C a
** multiple of 8: bf16_rows_map (cuda_chunk.cuh), SWIGLU_FWD_ROWS rows a
** thread. */
static __global__ void __launch_bounds__(SWIGLU_BF16_THREADS, SWIGLU_BF16_BLOCKS)
    swiglu_forward_bf16_kernel(cuda_view out, cuda_view gate, cuda_view up, int64_t N, int64_t C) {
    const cuda_view o[1] = {out}, in[2] = {gate, up};
    bf16_rows_map<SWIGLU_FWD_ROWS>(o, in, N, C, [](const float (&a)[2][CUDA_CHUNK], float (&y)[1][CUDA_CHUNK]) {
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) y[0][k] = swiglu_value(a[0][k], a[1][k]);
    });
}

/* swiglu_backward_kernel with every operand BF16 and cuda_bf16_rows16, C a
** multiple of 8: bf16_rows_map, SWIGLU_BWD_ROWS rows a thread; y[0] is
** dup, y[1] dgate. */
static __global__ void __launch_bounds__(SWIGLU_BF16_THREADS, SWIGLU_BF16_BLOCKS)
    swiglu_backward_bf16_kernel(cuda_view dgate, cuda_view dup, cuda_view dout, cuda_view gate,
                                cuda_view up, int64_t N, int64_t C) {
    const cuda_view o[2] = {dup, dgate}, in[3] = {gate, up, dout};
    bf16_rows_map<SWIGLU_BWD_ROWS>(o, in, N, C, [](const float (&a)[3][CUDA_CHUNK], float (&y)[2][CUDA_CHUNK]) {
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) swiglu_grad(a[0][k], a[1][k], a[2][k], &y[1][k], &y[0][k]);
    });
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
    cuda_view o = cuda_view_of(out), g = cuda_view_of(gate), u = cuda_view_of(up);
    if (C % CUDA_CHUNK == 0 && cuda_bf16_rows16(out) && cuda_bf16_rows16(gate) && cuda_bf16_rows16(up))
        swiglu_forward_bf16_kernel<<<cuda_row_group_grid(N, C, SWIGLU_FWD_ROWS, SWIGLU_BF16_THREADS), SWIGLU_BF16_THREADS, 0,
                                     cuda_stream(be)>>>(o, g, u, N, C);
    else
        swiglu_forward_kernel<<<cuda_chunk_grid(N, C, SWIGLU_THREADS), SWIGLU_THREADS, 0,
                                cuda_stream(be)>>>(o, g, u, N, C);
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
    cuda_view dg = cuda_view_of(dgate), du = cuda_view_of(dup), d = cuda_view_of(dout);
    cuda_view g = cuda_view_of(gate), u = cuda_view_of(up);
    if (C % CUDA_CHUNK == 0 && cuda_bf16_rows16(dgate) && cuda_bf16_rows16(dup) && cuda_bf16_rows16(dout) &&
        cuda_bf16_rows16(gate) && cuda_bf16_rows16(up))
        swiglu_backward_bf16_kernel<<<cuda_row_group_grid(N, C, SWIGLU_BWD_ROWS, SWIGLU_BF16_THREADS), SWIGLU_BF16_THREADS, 0,
                                      cuda_stream(be)>>>(dg, du, d, g, u, N, C);
    else
        swiglu_backward_kernel<<<cuda_chunk_grid(N, C, SWIGLU_THREADS), SWIGLU_THREADS, 0,
                                 cuda_stream(be)>>>(dg, du, d, g, u, N, C);
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
