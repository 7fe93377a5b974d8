/*
** cuda_attention_cached.cu — attention of a few new query rows against a
** KV cache on the GPU (backend.h's attention_cached), the decoding step of
** src/model/decode.c.
**
** Size letters: n new query rows, past cached rows before them, L = past+n
** key rows, H query heads, KV key/value heads (group = H/KV), D head
** dimension. q, out (n, H*D); k, v (L, KV*D); column views are fine.
**
** Query row i sits at position past+i and sees key rows 0..past+i. One
** block of 8 warps per (head, query row). Warp w takes keys w, w+8, ...:
** for each it forms the score with the lanes splitting the D columns (lane
** owns columns lane, lane+32, ...) and a fixed butterfly sum, and keeps a
** running maximum, a running sum of exponentials and an unnormalised
** output row, rescaled whenever the maximum rises (online softmax). The 8
** warps' partial results are then merged in warp order through shared
** memory. Every sum has a shape fixed by the sizes, so the result is
** bit-identical from run to run. No log-sum-exp is kept: this op has no
** backward. n is usually 1, so the grid is H blocks: the step is bound by
** reading the cache, which the 8 warps of a block stream in parallel.
*/
#include "backend/cuda/cuda_attention.cuh"

#define CACHED_WARPS 8

/* out, q (n, H*D); k, v (L, KV*D); D <= 32*NS. grid (H, n), 256 threads. */
template <int NS>
static __global__ void __launch_bounds__(CACHED_WARPS * 32)
attention_cached_kernel(cuda_view out, cuda_view q, cuda_view k, cuda_view v, int64_t past,
                        int group, int D, float scale_log2) {
    __shared__ float s_m[CACHED_WARPS], s_l[CACHED_WARPS];
    extern __shared__ float s_acc[]; /* [CACHED_WARPS][D] */
    const int h = blockIdx.x, kvh = h / group, i = blockIdx.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t last = past + i, qcol = (int64_t)h * D, kcol = (int64_t)kvh * D;

    float qv[NS], acc[NS]; /* column lane + 32 s */
#pragma unroll
    for (int s = 0; s < NS; s++) {
        const int d = lane + 32 * s;
        qv[s] = d < D ? ld_at(q, i, qcol + d) : 0.0f;
        acc[s] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int64_t j = warp; j <= last; j += CACHED_WARPS) {
        float dot = 0.0f;
#pragma unroll
        for (int s = 0; s < NS; s++) {
            const int d = lane + 32 * s;
            if (d < D) dot += qv[s] * ld_at(k, j, kcol + d);
        }
        const float x = warp_sum(dot) * scale_log2;
        const float m_new = fmaxf(m, x); /* finite: x is */
        const float alpha = exp2f(m - m_new), p = exp2f(x - m_new);
        l = l * alpha + p;
        m = m_new;
#pragma unroll
        for (int s = 0; s < NS; s++) {
            const int d = lane + 32 * s;
            if (d < D) acc[s] = acc[s] * alpha + p * ld_at(v, j, kcol + d);
        }
    }
    if (lane == 0) {
        s_m[warp] = m; /* -inf with l = 0 for a warp that saw no key */
        s_l[warp] = l;
    }
#pragma unroll
    for (int s = 0; s < NS; s++) {
        const int d = lane + 32 * s;
        if (d < D) s_acc[warp * D + d] = acc[s];
    }
    __syncthreads();

    /* merge in warp order; warp 0 always saw key 0, so the maximum is finite */
    float m_all = s_m[0];
    for (int w = 1; w < CACHED_WARPS; w++) m_all = fmaxf(m_all, s_m[w]);
    float l_all = 0.0f, wt[CACHED_WARPS];
#pragma unroll
    for (int w = 0; w < CACHED_WARPS; w++) {
        wt[w] = exp2f(s_m[w] - m_all);
        l_all += s_l[w] * wt[w];
    }
    const float inv = 1.0f / l_all;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float o = 0.0f;
#pragma unroll
        for (int w = 0; w < CACHED_WARPS; w++) o += s_acc[w * D + d] * wt[w];
        st_at(out, i, qcol + d, o * inv);
    }
}

template <int NS>
static int cached_launch(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *q,
                         const dorac_tensor *k, const dorac_tensor *v, int64_t past, int64_t H,
                         int64_t KV, int64_t D) {
    const size_t smem = (size_t)CACHED_WARPS * D * sizeof(float);
    dim3 grid((unsigned)H, (unsigned)q->rows);
    attention_cached_kernel<NS><<<grid, CACHED_WARPS * 32, smem, cuda_stream(be)>>>(
        cuda_view_of(out), cuda_view_of(q), cuda_view_of(k), cuda_view_of(v), past, (int)(H / KV),
        (int)D, (float)(1.4426950408889634 / sqrt((double)D)));
    return cuda_launch_status("attention_cached");
}

int CUDA_OP(attention_cached)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *q,
                              const dorac_tensor *k, const dorac_tensor *v, int64_t past, int64_t H,
                              int64_t KV, int64_t D) {
    const char *op = "attention_cached";
    const int64_t n = q->rows;
    if (n <= 0 || past < 0 || H <= 0 || KV <= 0 || D <= 0 || H % KV || past > INT32_MAX - n)
        return dorac_error(DORAC_E_INVALID, "%s: bad sizes n=%lld past=%lld H=%lld KV=%lld D=%lld", op,
                           (long long)n, (long long)past, (long long)H, (long long)KV, (long long)D);
    const int64_t L = past + n;
    DORAC_TRY(cuda_check_shape(q, n, H * D, op, "q"));
    DORAC_TRY(cuda_check_shape(out, n, H * D, op, "out"));
    DORAC_TRY(cuda_check_shape(k, L, KV * D, op, "k"));
    DORAC_TRY(cuda_check_shape(v, L, KV * D, op, "v"));
    if (D > ATTN_MAX_D || H > INT32_MAX || n > 65535)
        return dorac_error(DORAC_E_UNSUPPORTED,
                           "%s: sizes beyond the CUDA kernel (D=%lld, at most %d; n=%lld, at most 65535)",
                           op, (long long)D, ATTN_MAX_D, (long long)n);
    if (D <= 64) return cached_launch<2>(be, out, q, k, v, past, H, KV, D);
    if (D <= 128) return cached_launch<4>(be, out, q, k, v, past, H, KV, D);
    return cached_launch<8>(be, out, q, k, v, past, H, KV, D);
}
