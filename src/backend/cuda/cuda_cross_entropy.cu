/*
** cuda_cross_entropy.cu — softmax cross-entropy over the vocabulary on the
** GPU, the loss and its gradient in one op (contract in backend.h, shared
** code in cuda_impl.cuh and cuda_chunk.cuh; the CPU twin is in
** cpu_ops_model.c).
**
** Size letters: N rows (B*T), V vocabulary (128256 for Llama-3).
**
** One block per row. The first pass reads the row once, each thread keeping
** an online (max, sum of exp(z - max)) over its chunks of CUDA_CHUNK columns,
** and the block merges those pairs in a fixed tree: the log-sum-exp comes
** from one read, and results repeat bit for bit. The second pass reads the
** row again and writes dlogits = dscale (softmax - onehot). No (N,V) fp32
** buffer is ever made: dlogits may be the logits themselves (the caller's
** BF16 buffer), since every element is read before it is written by the
** same thread, and the target logit is read before the first barrier.
**
** Rows move in 16-byte chunks where aligned (cuda_chunk.cuh); results do
** not depend on the alignment.
**
** Targets are checked on the host, as on the CPU: each in [0, V) or
** DORAC_IGNORE_INDEX (check_targets).
*/
#include <math.h>
#include <stdlib.h>

#include "backend/cuda/cuda_chunk.cuh"

#define CE_THREADS 512

/* Merges the online log-sum-exp state (m2, s2) into (m, s), where s is the
** sum of exp(z - m). Commutative, so every lane of a butterfly agrees. An
** empty state is (-inf, 0). */
static __device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2) {
    float nm = fmaxf(m, m2);
    if (nm == -INFINITY) return; /* both empty */
    s = s * expf(m - nm) + s2 * expf(m2 - nm);
    m = nm;
}

/* The block's merged (m, s), in every thread. shared_m, shared_s hold >= 32
** floats; every thread of the block must call it. */
static __device__ __forceinline__ void block_lse(float &m, float &s, float *shared_m,
                                                 float *shared_s) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1)
        lse_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    __syncthreads();
    if (lane == 0) {
        shared_m[warp] = m;
        shared_s[warp] = s;
    }
    __syncthreads();
    m = lane < n_warps ? shared_m[lane] : -INFINITY;
    s = lane < n_warps ? shared_s[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
        lse_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
}

/* For row i of logits (N,V) with target t = targets[i]:
**   loss[i] = logsumexp(logits[i]) - logits[i,t], or 0 when t is ignored;
**   dlogits[i] = dscale (softmax(logits[i]) - onehot(t)), or 0 when ignored,
**   written only when dlogits.data is set (it may equal logits.data).
** loss (1,N). One block per row. */
static __global__ void __launch_bounds__(CE_THREADS)
    cross_entropy_kernel(cuda_view loss, cuda_view dlogits, cuda_view logits,
                         const int32_t *targets, int64_t V, float dscale) {
    __shared__ float shared_m[32], shared_s[32];
    int64_t i = blockIdx.x;
    int64_t t = targets[i];
    int64_t n_chunks = cuda_chunks(V);
    bool grad = dlogits.data != NULL;
    bool vec_out = grad && row_aligned16(dlogits, i);
    if (t == DORAC_IGNORE_INDEX) {
        if (threadIdx.x == 0) st_at(loss, 0, i, 0.0f);
        if (!grad) return;
        float zero[CUDA_CHUNK] = {0};
        for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x)
            st_chunk(dlogits, i, k * CUDA_CHUNK, V, vec_out, zero);
        return;
    }
    /* read before the first barrier, so before anyone writes dlogits */
    float target_logit = threadIdx.x == 0 ? ld_at(logits, i, t) : 0.0f;

    bool vec_in = row_aligned16(logits, i);
    float m = -INFINITY, s = 0.0f;
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float z[CUDA_CHUNK];
        ld_chunk(z, logits, i, k * CUDA_CHUNK, V, vec_in, -INFINITY);
        float chunk_max = -INFINITY;
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) chunk_max = fmaxf(chunk_max, z[j]);
        float nm = fmaxf(m, chunk_max);
        if (nm == -INFINITY) continue; /* nothing but -inf so far */
        float chunk_sum = 0.0f;
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) chunk_sum += expf(z[j] - nm);
        if (nm != m) s *= expf(m - nm); /* rescale to the new max */
        s += chunk_sum;
        m = nm;
    }
    block_lse(m, s, shared_m, shared_s);
    double lse = (double)m + log((double)s);
    if (threadIdx.x == 0) st_at(loss, 0, i, (float)(lse - (double)target_logit));
    if (!grad) return;

    float lse_f = (float)lse;
    int64_t target_chunk = t / CUDA_CHUNK;
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float z[CUDA_CHUNK];
        ld_chunk(z, logits, i, k * CUDA_CHUNK, V, vec_in, 0.0f);
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) z[j] = expf(z[j] - lse_f) * dscale;
        if (k == target_chunk) z[t - k * CUDA_CHUNK] -= dscale;
        st_chunk(dlogits, i, k * CUDA_CHUNK, V, vec_out, z);
    }
}

/* targets is I32 (1,N), each in [0, V) or DORAC_IGNORE_INDEX. The range
** recorded when the targets were uploaded settles it without waiting for
** the GPU; otherwise (or if that range is not clean) the values are copied
** to the host, which waits for queued work, and the first bad one named. */
static int check_targets(dorac_backend *be, const dorac_tensor *targets, int64_t N, int64_t V) {
    if (targets->type != DORAC_DTYPE_I32 || targets->rows != 1 || targets->cols != N ||
        (N > 0 && !targets->data))
        return dorac_error(DORAC_E_INVALID, "cross_entropy: targets must be I32 (1, %lld)",
                           (long long)N);
    if (N == 0) return DORAC_OK;
    cuda_index_range r;
    /* every value other than the ignore index lies in [min_not_ignored, max] */
    if (cuda_index_range_lookup(be, targets->data, N, &r) && r.min_not_ignored >= 0 && r.max < V)
        return DORAC_OK;
    const int32_t *host;
    DORAC_TRY(cuda_index_to_host(be, targets, N, &host, "cross_entropy", "targets"));
    return dorac_check_index_values(host, N, V, true, "cross_entropy", "target");
}

int CUDA_OP(cross_entropy)(dorac_backend *be, const dorac_tensor *loss, const dorac_tensor *dlogits,
                           const dorac_tensor *logits, const dorac_tensor *targets, double dscale) {
    const char *op = "cross_entropy";
    DORAC_TRY(cuda_check_float(logits, op, "logits"));
    int64_t N = logits->rows, V = logits->cols;
    DORAC_TRY(cuda_check_shape(loss, 1, N, op, "loss"));
    bool grad = dlogits && dlogits->data;
    if (grad) DORAC_TRY(cuda_check_shape(dlogits, N, V, op, "dlogits"));
    DORAC_TRY(check_targets(be, targets, N, V));
    if (N == 0) return DORAC_OK;
    cuda_view dz = {NULL, DORAC_DTYPE_F32, 0};
    if (grad) dz = cuda_view_of(dlogits);
    cross_entropy_kernel<<<cuda_blocks(N, 1) /* a block per row */, CE_THREADS, 0,
                           cuda_stream(be)>>>(cuda_view_of(loss), dz, cuda_view_of(logits),
                                              (const int32_t *)targets->data, V, (float)dscale);
    return cuda_launch_status(op);
}
