/*
** cuda_rmsnorm.cu — RMSNorm on the GPU, forward and backward (contracts in
** backend.h, shared code in cuda_impl.cuh, cuda_chunk.cuh and cuda_norm.cuh;
** the CPU twin is in cpu_ops_model.c).
**
** Size letters: N rows (B*T), C channels.
**
** Both directions are row-wise and bandwidth bound: one block per row, a
** row statistic (sum x^2, or sum w dy x) summed by the block, then an
** element-wise pass. Each has two kernels:
**   - the row path (rmsnorm_*_row_kernel), when the activations (x and out;
**     dx, dout and x) are BF16, every row starts on a 16-byte boundary and
**     C is a multiple of 8 up to 8192. Each thread holds K = 1, 2 or 4
**     chunks (8 values, 16 bytes, cuda_chunk.cuh) of every row input in
**     registers: chunk j of thread t is the row's chunk t + j * blockDim.x,
**     so a warp's loads cover 512 contiguous bytes. A thread issues all its
**     loads first and raw (dout, x and the dx it accumulates into, then
**     rstd, then w), widens them only where it uses them, and reads global
**     memory once per row: the block sum and the element-wise pass work on
**     the registers. K is the fewest that keeps a block within 128 threads
**     (256 for rows past 4096): K = 2 at C = 2048.
**   - the two-pass path (rmsnorm_*_kernel) for everything else (F32 or
**     misaligned activations, C not a multiple of 8, wider rows): each
**     thread walks its chunks twice, loading and widening them with
**     ld_chunk; the second pass mostly hits the cache. It is also the slow,
**     obvious twin: test_backend_ops runs it in its f32 configuration and
**     the row path in its prod one (BF16 activations).
**
** Why (H200, the Llama-3.2-1B step: N = 8192, C = 2048, BF16): the backward
** must move dout, x and dx in and dx out, 4 x 33.5 MB, 40 us at 3.35 TB/s;
** the two-pass kernel took 62 us (2.2 TB/s). ld_chunk widens right after
** each load, inside the load's branch, so (as cuda_dora_colsum.cuh found
** in the SASS of the same loads) a thread has one 16-byte load in flight
** at a time: dout, x and w one after the other, the block sum, then rstd,
** then the second pass's dout, x, w (cache hits) and dx (DRAM), again one
** by one. At its 64 registers, 4 blocks of 256 threads an SM, that is at
** most 16 KB in flight an SM, 2.1 MB over 132 SMs: ~2.1 TB/s at ~1 us of
** loaded DRAM latency, what was measured. The row kernel at K = 2 (60 registers, 128 threads,
** 8 blocks an SM) has 96 bytes a thread in flight at once, 96 KB an SM,
** and one DRAM round trip per row instead of four, so the bytes in flight
** no longer bound it. The forward (27 us for 2 x 33.5 MB) is the same fix:
** x and w loaded once, up front, x kept in registers.
**
** Precision: fp32 element-wise math, the row sums in double. For BF16
** inputs the dot's terms are exact, as on the CPU: dy x in fp32 (8-bit
** significands, short of fp32 overflow or underflow) and w (dy x) in
** double, so each term is the CPU's (double) w dy x, rounded once by the
** fma into the sum; x^2 likewise. Each thread adds its terms in chunk
** order and block_sum adds the threads' sums in a fixed tree, so results
** repeat bit for bit; the two kernels differ in that tree (and in which
** fp32 products the compiler fuses into fmas), not in the terms.
**
** The weight gradient (full fine-tuning; LoRA/DoRA pass no dw) is a sum
** over rows, made deterministic in two steps: a partial sum (double) per
** block of NORM_PARTIAL_ROWS rows and per column, in a fixed order (each of
** NORM_PARTIAL_SLICES warps sums every 8th row in order, then the warps'
** sums are added in warp order) into scratch, then one thread per column
** adding the partials in order into dw. No float atomics, so results
** repeat bit for bit.
*/
#include <math.h>

#include "backend/cuda/cuda_norm.cuh"

/* rstd[i] = 1 / sqrt(mean_c x[i,c]^2 + eps); out[i,c] = w[c] * (x[i,c] * rstd[i]).
** out (N,C) may alias x (N,C); w (1,C); rstd (1,N). One block per row. */
static __global__ void __launch_bounds__(NORM_THREADS)
    rmsnorm_forward_kernel(cuda_view out, cuda_view rstd, cuda_view x, cuda_view w, int64_t C,
                           double eps) {
    __shared__ double shared[32];
    int64_t i = blockIdx.x, n_chunks = cuda_chunks(C);
    bool x_vec = row_aligned16(x, i), w_vec = row_aligned16(w, 0), out_vec = row_aligned16(out, i);
    double ss = 0;
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float v[CUDA_CHUNK];
        ld_chunk(v, x, i, k * CUDA_CHUNK, C, x_vec, 0.0f);
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) ss += (double)v[j] * v[j];
    }
    ss = block_sum(ss, shared);
    float r = (float)(1.0 / sqrt(ss / (double)C + eps));
    if (threadIdx.x == 0) st_at(rstd, 0, i, r);
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float v[CUDA_CHUNK], wv[CUDA_CHUNK];
        ld_chunk(v, x, i, k * CUDA_CHUNK, C, x_vec, 0.0f);
        ld_chunk(wv, w, 0, k * CUDA_CHUNK, C, w_vec, 0.0f);
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) v[j] = wv[j] * (v[j] * r);
        st_chunk(out, i, k * CUDA_CHUNK, C, out_vec, v);
    }
}

/* y = w ⊙ x̂, x̂ = x r:  dx[i] += r (w ⊙ dy) - r^3 x (sum_c w dy x) / C.
** dx (N,C) may alias dout (N,C). One block per row. */
static __global__ void __launch_bounds__(NORM_THREADS)
    rmsnorm_backward_dx_kernel(cuda_view dx, cuda_view dout, cuda_view x, cuda_view w,
                               cuda_view rstd, int64_t C) {
    __shared__ double shared[32];
    int64_t i = blockIdx.x, n_chunks = cuda_chunks(C);
    bool dx_vec = row_aligned16(dx, i), g_vec = row_aligned16(dout, i);
    bool x_vec = row_aligned16(x, i), w_vec = row_aligned16(w, 0);
    double dot = 0;
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float g[CUDA_CHUNK], xv[CUDA_CHUNK], wv[CUDA_CHUNK];
        ld_chunk(g, dout, i, k * CUDA_CHUNK, C, g_vec, 0.0f);
        ld_chunk(xv, x, i, k * CUDA_CHUNK, C, x_vec, 0.0f);
        ld_chunk(wv, w, 0, k * CUDA_CHUNK, C, w_vec, 0.0f);
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) dot += (double)wv[j] * g[j] * xv[j];
    }
    dot = block_sum(dot, shared);
    double r = ld_at(rstd, 0, i);
    float r_f = (float)r, s = (float)(r * r * r * dot / (double)C);
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float g[CUDA_CHUNK], xv[CUDA_CHUNK], wv[CUDA_CHUNK], d[CUDA_CHUNK];
        ld_chunk(g, dout, i, k * CUDA_CHUNK, C, g_vec, 0.0f);
        ld_chunk(xv, x, i, k * CUDA_CHUNK, C, x_vec, 0.0f);
        ld_chunk(wv, w, 0, k * CUDA_CHUNK, C, w_vec, 0.0f);
        ld_chunk(d, dx, i, k * CUDA_CHUNK, C, dx_vec, 0.0f);
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) d[j] += r_f * wv[j] * g[j] - s * xv[j];
        st_chunk(dx, i, k * CUDA_CHUNK, C, dx_vec, d);
    }
}

/* ---- the row path: a BF16 row in registers ---------------------------- */

#define NORM_ROW_THREADS 128  /* threads a row-path block aims at */
#define NORM_ROW_MAX_CHUNKS 4  /* chunks a thread holds, at most: C <= 8192 */

/* Chunks a thread of the row path holds for rows of C columns: the fewest
** of 1, 2, 4 that keep a row within NORM_ROW_THREADS threads, else 4 up to
** NORM_THREADS threads; 0 when the row path does not take C (past 8192
** columns, or not whole chunks). More chunks a thread means more bytes in
** flight per register: at C = 2048 the backward's 128 threads of 2 chunks
** (60 registers) let 8 rows an SM have 96 KB of loads in flight, where
** 256 threads of 1 (48 registers) would let 5 rows have 60 KB. */
static int rms_row_chunks(int64_t C) {
    int64_t n_chunks = cuda_chunks(C);
    if (C % CUDA_CHUNK != 0) return 0;
    for (int k = 1; k <= NORM_ROW_MAX_CHUNKS; k *= 2)
        if (n_chunks <= (int64_t)k * NORM_ROW_THREADS) return k;
    return n_chunks <= (int64_t)NORM_ROW_MAX_CHUNKS * NORM_THREADS ? NORM_ROW_MAX_CHUNKS : 0;
}

/* Threads of a row-path block holding K chunks each: a warp multiple, at
** least one warp (C == 0 still runs the forward). */
static int rms_row_threads(int64_t C, int K) {
    int64_t t = (cuda_chunks(C) + K - 1) / K;
    return t < 32 ? 32 : (int)((t + 31) / 32 * 32);
}

/* fp32 z as a chunk of 8 BF16 values, rounded to nearest even. */
static __device__ __forceinline__ uint4 narrow_chunk_bf16(const float z[CUDA_CHUNK]) {
    uint4 raw;
    __nv_bfloat162 *pairs = (__nv_bfloat162 *)&raw;
#pragma unroll
    for (int k = 0; k < CUDA_CHUNK / 2; k++) pairs[k] = __floats2bfloat162_rn(z[2 * k], z[2 * k + 1]);
    return raw;
}

/* rmsnorm_forward_kernel with x and out row-path ready (cuda_bf16_rows16, C a
** multiple of 8) and each thread's K chunks of x and w in registers: x is
** read once. Thread t holds the row's chunks t + j * blockDim.x. out (N,C)
** may alias x (N,C): a thread stores only chunks it has loaded. */
template <int K>
static __global__ void __launch_bounds__(NORM_THREADS)
    rmsnorm_forward_row_kernel(cuda_view out, cuda_view rstd, cuda_view x, cuda_view w, int64_t C,
                               double eps) {
    __shared__ double shared[32];
    int64_t i = blockIdx.x;
    int n_chunks = (int)(C / CUDA_CHUNK);
    bool w_vec = row_aligned16(w, 0);
    const uint4 *x_row = bf16_chunk(x, i, 0);
    uint4 x_raw[K];
    float wv[K][CUDA_CHUNK];
#pragma unroll
    for (int j = 0; j < K; j++) {
        int k = threadIdx.x + j * blockDim.x;
        x_raw[j] = k < n_chunks ? x_row[k] : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int j = 0; j < K; j++) {
        int k = threadIdx.x + j * blockDim.x;
        ld_chunk(wv[j], w, 0, (int64_t)k * CUDA_CHUNK, C, w_vec, 0.0f); /* past C: 0, no load */
    }
    double ss = 0;
#pragma unroll
    for (int j = 0; j < K; j++) {
        float v[CUDA_CHUNK];
        widen_chunk_bf16(v, x_raw[j]);
#pragma unroll
        for (int e = 0; e < CUDA_CHUNK; e++) ss = fma((double)v[e], (double)v[e], ss);
    }
    ss = block_sum(ss, shared);
    float r = (float)(1.0 / sqrt(ss / (double)C + eps));
    if (threadIdx.x == 0) st_at(rstd, 0, i, r);
    uint4 *out_row = bf16_chunk(out, i, 0);
#pragma unroll
    for (int j = 0; j < K; j++) {
        int k = threadIdx.x + j * blockDim.x;
        if (k >= n_chunks) break;
        float v[CUDA_CHUNK];
        widen_chunk_bf16(v, x_raw[j]);
#pragma unroll
        for (int e = 0; e < CUDA_CHUNK; e++) v[e] = wv[j][e] * (v[e] * r);
        out_row[k] = narrow_chunk_bf16(v);
    }
}

/* rmsnorm_backward_dx_kernel with dx, dout and x row-path ready
** (cuda_bf16_rows16, C a multiple of 8) and each thread's K chunks of them
** and of w in registers: every input is read once, all the loads issued
** before the first use. Thread t holds the row's chunks t + j * blockDim.x.
** dx (N,C) may alias dout (N,C): a thread stores only chunks it has
** loaded. */
template <int K>
static __global__ void __launch_bounds__(NORM_THREADS)
    rmsnorm_backward_dx_row_kernel(cuda_view dx, cuda_view dout, cuda_view x, cuda_view w,
                                   cuda_view rstd, int64_t C) {
    __shared__ double shared[32];
    int64_t i = blockIdx.x;
    int n_chunks = (int)(C / CUDA_CHUNK);
    bool w_vec = row_aligned16(w, 0);
    const uint4 *g_row = bf16_chunk(dout, i, 0), *x_row = bf16_chunk(x, i, 0);
    uint4 *d_row = bf16_chunk(dx, i, 0);
    uint4 g_raw[K], x_raw[K], d_raw[K];
    float wv[K][CUDA_CHUNK];
    /* the DRAM loads first, then rstd and w (cache hits, mostly), so that
    ** the waits for them overlap */
#pragma unroll
    for (int j = 0; j < K; j++) {
        int k = threadIdx.x + j * blockDim.x;
        bool in = k < n_chunks;
        g_raw[j] = in ? g_row[k] : make_uint4(0, 0, 0, 0);
        x_raw[j] = in ? x_row[k] : make_uint4(0, 0, 0, 0);
        d_raw[j] = in ? d_row[k] : make_uint4(0, 0, 0, 0);
    }
    double r = ld_at(rstd, 0, i);
#pragma unroll
    for (int j = 0; j < K; j++) {
        int k = threadIdx.x + j * blockDim.x;
        ld_chunk(wv[j], w, 0, (int64_t)k * CUDA_CHUNK, C, w_vec, 0.0f); /* past C: 0, no load */
    }
    /* dot, and the row-sum-free term r w g, which is all of w and dout the
    ** second half needs (fewer registers live across the block sum) */
    float r_f = (float)r;
    double dot = 0;
#pragma unroll
    for (int j = 0; j < K; j++) {
        float g[CUDA_CHUNK], xv[CUDA_CHUNK];
        widen_chunk_bf16(g, g_raw[j]);
        widen_chunk_bf16(xv, x_raw[j]);
#pragma unroll
        for (int e = 0; e < CUDA_CHUNK; e++) {
            /* g x is exact in fp32 (BF16 values), and w (g x) in double */
            dot = fma((double)wv[j][e], (double)(g[e] * xv[e]), dot);
            wv[j][e] = r_f * wv[j][e] * g[e];
        }
    }
    dot = block_sum(dot, shared);
    float s = (float)(r * r * r * dot / (double)C);
#pragma unroll
    for (int j = 0; j < K; j++) {
        int k = threadIdx.x + j * blockDim.x;
        if (k >= n_chunks) break;
        float xv[CUDA_CHUNK], d[CUDA_CHUNK];
        widen_chunk_bf16(xv, x_raw[j]);
        widen_chunk_bf16(d, d_raw[j]);
#pragma unroll
        for (int e = 0; e < CUDA_CHUNK; e++) d[e] += wv[j][e] - s * xv[e]; /* wv: r w g */
        d_row[k] = narrow_chunk_bf16(d);
    }
}

/* partial (n_blocks, C): partial[b,c] = sum over the NORM_PARTIAL_ROWS rows
** i of block b of dout[i,c] x[i,c] rstd[i]. Block (32, NORM_PARTIAL_SLICES):
** lane x owns a chunk of columns, warp y the rows b*R + y, + 2y, ... of the
** block (R = NORM_PARTIAL_ROWS), summed in order; the warps' sums are then
** added in warp order. Grid: x over groups of 32 chunks, y over row blocks
** (strided). */
static __global__ void __launch_bounds__(32 * NORM_PARTIAL_SLICES)
    rmsnorm_dw_partial_kernel(double *partial, cuda_view dout, cuda_view x, cuda_view rstd,
                              int64_t N, int64_t C) {
    __shared__ double slice_sum[NORM_PARTIAL_SLICES][CUDA_CHUNK][32];
    int64_t c0 = ((int64_t)blockIdx.x * 32 + threadIdx.x) * CUDA_CHUNK;
    bool active = c0 < C; /* no early return: the block synchronises */
    int64_t n_blocks = (N + NORM_PARTIAL_ROWS - 1) / NORM_PARTIAL_ROWS;
    for (int64_t b = blockIdx.y; b < n_blocks; b += gridDim.y) {
        int64_t i1 = (b + 1) * NORM_PARTIAL_ROWS < N ? (b + 1) * NORM_PARTIAL_ROWS : N;
        double acc[CUDA_CHUNK] = {0};
        for (int64_t i = b * NORM_PARTIAL_ROWS + threadIdx.y; active && i < i1;
             i += NORM_PARTIAL_SLICES) {
            float g[CUDA_CHUNK], xv[CUDA_CHUNK];
            ld_chunk(g, dout, i, c0, C, row_aligned16(dout, i), 0.0f);
            ld_chunk(xv, x, i, c0, C, row_aligned16(x, i), 0.0f);
            double r = ld_at(rstd, 0, i);
#pragma unroll
            for (int j = 0; j < CUDA_CHUNK; j++) acc[j] += (double)g[j] * xv[j] * r;
        }
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) slice_sum[threadIdx.y][j][threadIdx.x] = acc[j];
        __syncthreads();
        if (threadIdx.y == 0 && active) {
            for (int j = 0; j < CUDA_CHUNK && c0 + j < C; j++) {
                double total = 0;
                for (int y = 0; y < NORM_PARTIAL_SLICES; y++) total += slice_sum[y][j][threadIdx.x];
                partial[b * C + c0 + j] = total;
            }
        }
        __syncthreads();
    }
}

int CUDA_OP(rmsnorm_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *rstd,
                             const dorac_tensor *x, const dorac_tensor *w, double eps) {
    const char *op = "rmsnorm_forward";
    DORAC_TRY(cuda_check_float(x, op, "x"));
    int64_t N = x->rows, C = x->cols;
    DORAC_TRY(cuda_check_shape(out, N, C, op, "out"));
    DORAC_TRY(cuda_check_shape(rstd, 1, N, op, "rstd"));
    DORAC_TRY(cuda_check_shape(w, 1, C, op, "weight"));
    if (N == 0) return DORAC_OK;
    /* C == 0 still runs: rstd becomes 1/sqrt(0/0 + eps), NaN, as on the CPU */
    int K = cuda_bf16_rows16(x) && cuda_bf16_rows16(out) ? rms_row_chunks(C) : 0;
    void (*kernel)(cuda_view, cuda_view, cuda_view, cuda_view, int64_t, double) =
        K == 1 ? rmsnorm_forward_row_kernel<1>
        : K == 2 ? rmsnorm_forward_row_kernel<2>
        : K == 4 ? rmsnorm_forward_row_kernel<4>
                 : rmsnorm_forward_kernel;
    int threads = K ? rms_row_threads(C, K) : cuda_row_threads(C, NORM_THREADS);
    kernel<<<cuda_blocks(N, 1) /* a block per row */, threads, 0, cuda_stream(be)>>>(
        cuda_view_of(out), cuda_view_of(rstd), cuda_view_of(x), cuda_view_of(w), C, eps);
    return cuda_launch_status(op);
}

int CUDA_OP(rmsnorm_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dw,
                              const dorac_tensor *dout, const dorac_tensor *x,
                              const dorac_tensor *w, const dorac_tensor *rstd) {
    const char *op = "rmsnorm_backward";
    DORAC_TRY(cuda_check_float(x, op, "x"));
    int64_t N = x->rows, C = x->cols;
    DORAC_TRY(cuda_check_shape(dx, N, C, op, "dx"));
    DORAC_TRY(cuda_check_shape(dout, N, C, op, "dout"));
    DORAC_TRY(cuda_check_shape(w, 1, C, op, "weight"));
    DORAC_TRY(cuda_check_shape(rstd, 1, N, op, "rstd"));
    DORAC_TRY(cuda_check_optional_vector(dw, C, op, "dweight"));
    if (N == 0 || C == 0) return DORAC_OK;
    cudaStream_t stream = cuda_stream(be);
    bool ready = cuda_bf16_rows16(dx) && cuda_bf16_rows16(dout) && cuda_bf16_rows16(x);
    int K = ready ? rms_row_chunks(C) : 0;
    void (*kernel)(cuda_view, cuda_view, cuda_view, cuda_view, cuda_view, int64_t) =
        K == 1 ? rmsnorm_backward_dx_row_kernel<1>
        : K == 2 ? rmsnorm_backward_dx_row_kernel<2>
        : K == 4 ? rmsnorm_backward_dx_row_kernel<4>
                 : rmsnorm_backward_dx_kernel;
    int threads = K ? rms_row_threads(C, K) : cuda_row_threads(C, NORM_THREADS);
    kernel<<<cuda_blocks(N, 1) /* a block per row */, threads, 0, stream>>>(
        cuda_view_of(dx), cuda_view_of(dout), cuda_view_of(x), cuda_view_of(w), cuda_view_of(rstd), C);
    int status = cuda_launch_status(op);
    if (status != DORAC_OK || !dw || !dw->data) return status;

    int64_t n_blocks = (N + NORM_PARTIAL_ROWS - 1) / NORM_PARTIAL_ROWS;
    double *partial = (double *)be->alloc(be, (size_t)(n_blocks * C) * sizeof(double));
    if (!partial) return DORAC_E_NOMEM; /* alloc set the message */
    dim3 grid(cuda_blocks(cuda_chunks(C), 32),
              (unsigned)(n_blocks < GRID_Y_MAX ? n_blocks : GRID_Y_MAX));
    rmsnorm_dw_partial_kernel<<<grid, dim3(32, NORM_PARTIAL_SLICES), 0, stream>>>(
        partial, cuda_view_of(dout), cuda_view_of(x), cuda_view_of(rstd), N, C);
    status = cuda_launch_status(op);
    if (status == DORAC_OK) {
        column_total_kernel<<<cuda_blocks(C, NORM_TOTAL_THREADS), NORM_TOTAL_THREADS, 0,
                                  stream>>>(cuda_view_of(dw), partial, n_blocks, C);
        status = cuda_launch_status(op);
    }
    be->free(be, partial); /* stream-ordered: freed after the kernels ran */
    return status;
}
