/*
** cuda_lora_up_scale.cu — the adapter's up-projection fused with DoRA's
** epilogue (backend.h's lora_up_scale), one pass over Y:
**
**     Y[i,o] = scale[o] * (Y[i,o] + s * sum_k U[i,k] B[o,k]) + bias[o]
**
** Y (N,out) holds h = x W0^T from the base GEMM. Unfused, the LoRA term is
** a cuBLAS GEMM with beta = 1 (a read and a write of Y) and DoRA's g ⊙ · + b
** another pass (a second read and write): on the Llama-1B shape that pass
** moves about 12 GB a step. Here both happen while Y is in registers.
**
** BF16 Y and U (training's activations) take cuda_lowrank.cu's tensor-core
** pass; this kernel is the path for F32 activations and for shapes that
** pass does not take (odd r, odd widths).
**
** The inner dimension r is small (adapter ranks 4..32), so the product is
** cheap on the ordinary cores: a block owns TILE_COLS columns and TILE_ROWS
** rows, a thread per column; the thread keeps its column's row of B in
** registers (R floats, R = r rounded up to 4, 8, 16 or 32), staged through
** shared memory with coalesced loads, and the block's U rows sit in shared
** memory, so each output costs r FMAs and Y moves once each way. A thread
** loads UNROLL rows of its column before it computes the first.
** Ranks above 32 take the unfused path (gemm, then scale_cols_add_bias).
**
** The pass is latency bound, not bandwidth bound (ncu on the H200, docs/
** PERF.md): what helped was more threads with shorter dependent chains. The
** previous kernel (two columns a thread, 128-thread blocks of 128 rows,
** B read straight from global memory) took 6.75 ms per 2 steps of 4
** Llama-1B layers under ncu; this one 5.07.
**
** Every output is computed by one thread in a fixed order (k = 0..r-1, then
** the scale, then the bias), so results are the same from run to run.
*/
#include "backend/cuda/cuda_impl.cuh"

enum { TILE_COLS = 256, TILE_ROWS = 64, UNROLL = 4, THREADS = TILE_COLS };
static_assert(TILE_ROWS % UNROLL == 0, "whole unrolled steps per tile");

/* Grid (ceil(out/TILE_COLS), ceil(N/TILE_ROWS)), THREADS threads. VEC: Y is
** BF16 (element accesses without ld_at's type switch). */
template <int R, bool VEC>
static __global__ void lora_up_scale_kernel(cuda_view Y, cuda_view U, cuda_view B, int64_t N, int64_t out, int r,
                                            float s, cuda_view scale, bool has_scale, cuda_view bias,
                                            bool has_bias) {
    /* first the block's B rows (TILE_COLS, R), padded to R + 1 floats so
    ** that the threads' rows fall in different banks; then, in the same
    ** memory, its U rows (TILE_ROWS, R) */
    constexpr int B_FLOATS = TILE_COLS * (R + 1), U_FLOATS = TILE_ROWS * R;
    __shared__ __align__(16) float tile[B_FLOATS > U_FLOATS ? B_FLOATS : U_FLOATS];
    int64_t i0 = (int64_t)blockIdx.y * TILE_ROWS, o_base = (int64_t)blockIdx.x * TILE_COLS;
    int64_t o = o_base + threadIdx.x; /* this thread's column */
    for (int e = threadIdx.x; e < TILE_COLS * R; e += THREADS) { /* coalesced along B's rows */
        int c = e / R, k = e % R;
        tile[c * (R + 1) + k] = (k < r && o_base + c < out) ? s * ld_at(B, o_base + c, k) : 0.0f;
    }
    __syncthreads();
    float b0[R];
#pragma unroll
    for (int k = 0; k < R; k++) b0[k] = tile[threadIdx.x * (R + 1) + k];
    __syncthreads();
    float(*u_tile)[R] = (float(*)[R])tile;
    for (int e = threadIdx.x; e < TILE_ROWS * R; e += THREADS) {
        int row = e / R, k = e % R;
        u_tile[row][k] = (i0 + row < N && k < r) ? ld_at(U, i0 + row, k) : 0.0f;
    }
    float g0 = 1.0f, c0 = 0.0f;
    if (has_scale && o < out) g0 = ld_at(scale, 0, o);
    if (has_bias && o < out) c0 = ld_at(bias, 0, o);
    __syncthreads();
    if (o >= out) return;
    int rows = N - i0 < TILE_ROWS ? (int)(N - i0) : TILE_ROWS;
    for (int r0 = 0; r0 < rows; r0 += UNROLL) {
        float h[UNROLL]; /* all UNROLL rows' loads first, then the math */
#pragma unroll
        for (int k = 0; k < UNROLL; k++) {
            if (r0 + k >= rows) continue;
            int64_t i = i0 + r0 + k;
            h[k] = VEC ? __bfloat162float(((const __nv_bfloat16 *)Y.data)[i * Y.ld + o]) : ld_at(Y, i, o);
        }
#pragma unroll
        for (int k = 0; k < UNROLL; k++) {
            if (r0 + k >= rows) continue;
            float a0 = 0.0f;
            const float4 *u4 = (const float4 *)u_tile[r0 + k];
#pragma unroll
            for (int k4 = 0; k4 < R / 4; k4++) {
                float4 u = u4[k4];
                a0 += u.x * b0[4 * k4] + u.y * b0[4 * k4 + 1] + u.z * b0[4 * k4 + 2] + u.w * b0[4 * k4 + 3];
            }
            int64_t i = i0 + r0 + k;
            float y0 = g0 * (h[k] + a0) + c0;
            if (VEC) ((__nv_bfloat16 *)Y.data)[i * Y.ld + o] = __float2bfloat16_rn(y0);
            else st_at(Y, i, o, y0);
        }
    }
}

template <int R>
static void launch(const dorac_tensor *Y, const dorac_tensor *U, const dorac_tensor *B, float s,
                   const dorac_tensor *scale, bool has_scale, const dorac_tensor *bias, bool has_bias,
                   cudaStream_t stream) {
    int64_t N = Y->rows, out = Y->cols;
    dim3 grid((unsigned)((out + TILE_COLS - 1) / TILE_COLS), (unsigned)((N + TILE_ROWS - 1) / TILE_ROWS));
    bool vec = Y->type == DORAC_DTYPE_BF16; /* VEC: BF16 element accesses without ld_at's type switch */
    cuda_view sv = has_scale ? cuda_view_of(scale) : cuda_view{NULL, 0, 0};
    cuda_view bv = has_bias ? cuda_view_of(bias) : cuda_view{NULL, 0, 0};
    if (vec)
        lora_up_scale_kernel<R, true><<<grid, THREADS, 0, stream>>>(
            cuda_view_of(Y), cuda_view_of(U), cuda_view_of(B), N, out, (int)U->cols, s, sv, has_scale, bv, has_bias);
    else
        lora_up_scale_kernel<R, false><<<grid, THREADS, 0, stream>>>(
            cuda_view_of(Y), cuda_view_of(U), cuda_view_of(B), N, out, (int)U->cols, s, sv, has_scale, bv, has_bias);
}

extern "C" int CUDA_OP(lora_up_scale)(dorac_backend *be, const dorac_tensor *Y, const dorac_tensor *U,
                                      const dorac_tensor *B, double s, const dorac_tensor *scale,
                                      const dorac_tensor *bias) {
    DORAC_TRY(cuda_check_float(Y, "lora_up_scale", "Y"));
    int64_t N = Y->rows, out = Y->cols, r = U->cols;
    DORAC_TRY(cuda_check_shape(U, N, r, "lora_up_scale", "U"));
    DORAC_TRY(cuda_check_shape(B, out, r, "lora_up_scale", "B"));
    DORAC_TRY(cuda_check_optional_vector(scale, out, "lora_up_scale", "scale"));
    DORAC_TRY(cuda_check_optional_vector(bias, out, "lora_up_scale", "bias"));
    if (N == 0 || out == 0) return DORAC_OK;
    /* BF16 Y and U: the tensor-core pass */
    if (cuda_lowrank_fits(Y, U)) return cuda_lowrank(be, Y, U, B, true, s, 1.0, scale, bias);
    if (r > 32 || r == 0 || N > 65535LL * TILE_ROWS) { /* the unfused path */
        if (r > 0) DORAC_TRY(CUDA_OP(gemm)(be, Y, U, false, B, true, s, 1.0));
        return CUDA_OP(scale_cols_add_bias)(be, Y, scale, bias);
    }
    bool has_scale = scale && scale->data, has_bias = bias && bias->data;
    cudaStream_t stream = cuda_stream(be);
    if (r <= 4) launch<4>(Y, U, B, (float)s, scale, has_scale, bias, has_bias, stream);
    else if (r <= 8) launch<8>(Y, U, B, (float)s, scale, has_scale, bias, has_bias, stream);
    else if (r <= 16) launch<16>(Y, U, B, (float)s, scale, has_scale, bias, has_bias, stream);
    else launch<32>(Y, U, B, (float)s, scale, has_scale, bias, has_bias, stream);
    return cuda_launch_status("lora_up_scale");
}
