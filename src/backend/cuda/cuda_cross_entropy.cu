/*
** cuda_cross_entropy.cu — softmax cross-entropy over the vocabulary on the
** GPU, the loss and its gradient in one op (contract in backend.h, shared
** code in cuda_impl.cuh and cuda_chunk.cuh; the CPU twin is in
** cpu_ops_model.c).
**
** Size letters: N rows (B*T), V vocabulary (128256 for Llama-3), C blocks
** in a cluster, S chunks in a block's slice of a row, T threads a block.
**
** Why: the op is memory-bound, and the least it can move is one read of the
** logits and one write of dlogits. One block per row that reads the row
** twice (log-sum-exp, then the gradient) moves three rows: the second read
** misses L2, since all of a 512-row chunk is resident at once and its 131 MB
** of BF16 logits streams through the 50 MB L2 before any row comes back.
** On an H200 that was 114 us a chunk for 394 MB (3.45 TB/s); one read and
** one write are 2 x 512 x 128256 x 2 B = 263 MB, about 77 us at that rate.
**
** So a row is read from global memory once, into shared memory, and both
** passes read it there. A BF16 row of 128256 is 256 KB, more than an SM
** holds (228 KB), so a thread-block cluster of C blocks (1, 2, 4 or 8, the
** fewest whose slices fit CE_SLICE_BYTES) shares each row: block r holds the
** row's chunks [r S, r S + S), S = ceil(chunks / C), as raw bits (16 bytes
** a BF16 chunk, 32 an F32 one). Llama-3's rows take C = 4 (BF16) or 8 (F32)
** blocks of 64 KB; three blocks fit an SM, so one block's loads overlap
** another's arithmetic and stores.
**
** Per row, in every block of the cluster:
**   1. Each thread copies its chunks of the slice (chunk x, x + T, x + 2T,
**      ...: a round of T chunks at a time) global -> shared with cp.async,
**      one commit group a round, so they are all in flight at once.
**   2. As each round lands, the thread folds its chunk into an online
**      (max m, sum s of exp(z - m)). The block merges its threads' pairs in
**      a fixed tree; each block publishes its pair, and after a cluster
**      barrier every thread merges the C pairs in rank order through
**      distributed shared memory: the same log-sum-exp in every thread of
**      every block, and the same bits from run to run.
**   3. Each thread writes dlogits = dscale (softmax - onehot) for its own
**      chunks, from shared memory; the thread holding the target writes the
**      loss from the shared copy of the target logit.
** A thread reads back only the chunks it copied itself, so there is no
** block barrier between the copy and the passes. dlogits may be the logits
** themselves (the caller's BF16 buffer): each block writes only its own
** slice, and only after the cluster barrier, when every block has its
** slice in shared memory. A second, split barrier (arrive after reading the
** other blocks' pairs, wait at the end of the row) keeps each block's pair
** alive until the others have read it.
**
** Precision: values enter shared memory unchanged and widen to fp32 exactly.
** exp(z - c) is computed as 2^(z log2(e) - c log2(e)): one fma and the SFU's
** ex2.approx (2 ulp, as exp2f; results below 2^-126 flush to 0), with
** c log2(e) rounded to fp32 once (from fp64 for the log-sum-exp): the same
** size of error as fp32 expf(z - c), in two instructions instead of ~8. Sums
** of exponentials are fp32, per thread over at most 64 terms, then a fixed
** tree; the log-sum-exp and the loss are formed in fp64 as m + log(s) and
** lse - z[t]. A NaN logit makes its row's loss and gradient NaN (a chunk
** whose max is -inf is summed with shift 0, not skipped); a +inf logit
** gives NaN; a row of -inf gives loss and gradient NaN, as on the CPU.
**
** Rows too long for 8 blocks (V > 262144 BF16 or 131072 F32) take the
** streaming kernel instead: one block per row, the row read twice from
** global memory, the same arithmetic on each chunk.
**
** Aligned rows move by 16-byte cp.async (stores as 16-byte vectors, see
** cuda_chunk.cuh); rows that are not 16-byte aligned move element by
** element. Results do not depend on the alignment.
**
** Targets are checked on the host, as on the CPU: each in [0, V) or
** DORAC_IGNORE_INDEX (check_targets).
**
** Needs sm_90 (clusters, distributed shared memory), which is what the
** build targets.
*/
#include <cooperative_groups.h>
#include <math.h>
#include <stdlib.h>

#include "backend/cuda/cuda_chunk.cuh"

namespace cg = cooperative_groups;

#define CE_THREADS 512                  /* threads a block, at most */
#define CE_SLICE_BYTES (64 * 1024)      /* a block's share of a row, at most: 3 blocks an SM */
#define CE_CLUSTER_MAX 8                /* blocks a cluster, at most (the portable limit) */
#define CE_ROUNDS_MAX 8                 /* rounds of T chunks in a slice: 64 KiB / 16 B / 512 */
#define CE_LOG2E 1.4426950408889634074  /* log2(e) */

/* ce_wait counts rounds in an immediate, up to CE_ROUNDS_MAX; a block of
** fewer than CE_THREADS threads has one round (cuda_row_threads). */
static_assert(CE_SLICE_BYTES / 16 <= CE_ROUNDS_MAX * CE_THREADS, "a slice has too many rounds");

/* 2^x on the special function unit: the instruction exp2f wraps (2 ulp)
** without exp2f's subnormal fix-up, so results below 2^-126 flush to zero;
** 2^-inf = 0, 2^+inf = +inf, 2^NaN = NaN. */
static __device__ __forceinline__ float ce_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* Merges the online log-sum-exp state (m2, s2) into (m, s), where s is the
** sum of exp(z - m). Commutative, so every lane of a butterfly agrees. An
** empty state is (-inf, 0); two states of max -inf add their sums (0, or
** NaN from a NaN logit, which must survive). */
static __device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2) {
    float nm = fmaxf(m, m2);
    if (nm == -INFINITY) {
        s += s2;
        return;
    }
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

/* Folds chunk z (padding -inf) into a thread's online state (m, s). The
** shift is the new max in log2 units; when that max is -inf (the chunk and
** everything before it -inf or NaN) the shift is 0, so -inf terms add 0 and
** NaN terms add NaN instead of being skipped. */
static __device__ __forceinline__ void lse_add_chunk(float &m, float &s, const float z[CUDA_CHUNK]) {
    const float log2e = (float)CE_LOG2E;
    float chunk_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < CUDA_CHUNK; j++) chunk_max = fmaxf(chunk_max, z[j]);
    float nm = fmaxf(m, chunk_max);
    float shift = nm == -INFINITY ? 0.0f : nm * log2e;
    float chunk_sum = 0.0f;
#pragma unroll
    for (int j = 0; j < CUDA_CHUNK; j++) chunk_sum += ce_exp2(fmaf(z[j], log2e, -shift));
    if (nm != m) s *= ce_exp2((m - nm) * log2e); /* rescale to the new max */
    s += chunk_sum;
    m = nm;
}

/* z = dscale (softmax(z) - onehot) for the chunk at column c0 of a row
** whose log-sum-exp times log2(e) is lse_log2 and whose target is t. */
static __device__ __forceinline__ void grad_chunk(float z[CUDA_CHUNK], float lse_log2, float dscale,
                                                  int64_t c0, int64_t t) {
    const float log2e = (float)CE_LOG2E;
#pragma unroll
    for (int j = 0; j < CUDA_CHUNK; j++) z[j] = ce_exp2(fmaf(z[j], log2e, -lse_log2)) * dscale;
    if (t >= c0 && t < c0 + CUDA_CHUNK) { /* constant indices: z stays in registers */
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++)
            if (c0 + j == t) z[j] -= dscale;
    }
}

/* ---- the cluster kernel: a row held in the cluster's shared memory ------- */

/* 16 bytes global -> shared, asynchronously (cp.async, L1 bypassed). */
static __device__ __forceinline__ void ce_copy16(void *dst, const void *src) {
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
}

static __device__ __forceinline__ void ce_commit(void) {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* Waits until at most `pending` (0 .. CE_ROUNDS_MAX - 1) of this thread's
** commit groups are still in flight; the immediate wants a switch. */
static __device__ __forceinline__ void ce_wait(int pending) {
    switch (pending) {
    case 0: asm volatile("cp.async.wait_group 0;\n" ::: "memory"); break;
    case 1: asm volatile("cp.async.wait_group 1;\n" ::: "memory"); break;
    case 2: asm volatile("cp.async.wait_group 2;\n" ::: "memory"); break;
    case 3: asm volatile("cp.async.wait_group 3;\n" ::: "memory"); break;
    case 4: asm volatile("cp.async.wait_group 4;\n" ::: "memory"); break;
    case 5: asm volatile("cp.async.wait_group 5;\n" ::: "memory"); break;
    case 6: asm volatile("cp.async.wait_group 6;\n" ::: "memory"); break;
    default: asm volatile("cp.async.wait_group 7;\n" ::: "memory"); break;
    }
}

/* Starts the copy of row i's chunk at column c0 of logits into slot q of
** the slice (16 bytes a BF16 slot, 32 an F32 one): cp.async when the chunk
** is whole and the row aligned (vec), else element by element, now, with
** -inf past V. */
template <bool BF16>
static __device__ __forceinline__ void slice_load(uint4 *slice, int q, cuda_view logits, int64_t i,
                                                  int64_t c0, int64_t V, bool vec) {
    int64_t at = i * logits.ld + c0;
    if (BF16) {
        const unsigned short *p = (const unsigned short *)logits.data + at;
        if (vec && c0 + CUDA_CHUNK <= V) {
            ce_copy16(&slice[q], p);
            return;
        }
        unsigned h[CUDA_CHUNK];
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) h[j] = c0 + j < V ? p[j] : 0xff80u; /* BF16 -inf */
        slice[q] = make_uint4(h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16);
    } else {
        const float *p = (const float *)logits.data + at;
        if (vec && c0 + CUDA_CHUNK <= V) {
            ce_copy16(&slice[2 * q], p);
            ce_copy16(&slice[2 * q + 1], p + 4);
            return;
        }
        float f[CUDA_CHUNK];
#pragma unroll
        for (int j = 0; j < CUDA_CHUNK; j++) f[j] = c0 + j < V ? p[j] : -INFINITY;
        slice[2 * q] = make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]),
                                  __float_as_uint(f[3]));
        slice[2 * q + 1] = make_uint4(__float_as_uint(f[4]), __float_as_uint(f[5]), __float_as_uint(f[6]),
                                      __float_as_uint(f[7]));
    }
}

/* z = slot q of the slice as fp32 (exact). */
template <bool BF16>
static __device__ __forceinline__ void slice_chunk(float z[CUDA_CHUNK], const uint4 *slice, int q) {
    if (BF16) {
        widen_chunk_bf16(z, slice[q]);
    } else {
        uint4 lo = slice[2 * q], hi = slice[2 * q + 1];
        z[0] = __uint_as_float(lo.x), z[1] = __uint_as_float(lo.y);
        z[2] = __uint_as_float(lo.z), z[3] = __uint_as_float(lo.w);
        z[4] = __uint_as_float(hi.x), z[5] = __uint_as_float(hi.y);
        z[6] = __uint_as_float(hi.z), z[7] = __uint_as_float(hi.w);
    }
}

/* Element j of slot q of the slice as fp32. */
template <bool BF16>
static __device__ __forceinline__ float slice_elem(const uint4 *slice, int q, int j) {
    if (BF16) return __uint_as_float((unsigned)((const unsigned short *)slice)[q * CUDA_CHUNK + j] << 16);
    return ((const float *)slice)[q * CUDA_CHUNK + j];
}

/* For row i of logits (N,V) with target t = targets[i]:
**   loss[i] = logsumexp(logits[i]) - logits[i,t], or 0 when t is ignored;
**   dlogits[i] = dscale (softmax(logits[i]) - onehot(t)), or 0 when ignored,
**   written only when dlogits.data is set (it may equal logits.data).
** loss (1,N). Launched in clusters of C blocks along x, a cluster per row
** (striding by the grid's clusters); block r of a cluster takes chunks
** [r S, r S + S) of the row into S slots of dynamic shared memory (S * 16
** bytes for BF16 logits, S * 32 for F32), with S <= CE_ROUNDS_MAX * T. */
template <bool BF16>
static __global__ void __launch_bounds__(CE_THREADS, 3)
    cross_entropy_cluster_kernel(cuda_view loss, cuda_view dlogits, cuda_view logits,
                                 const int32_t *targets, int64_t N, int64_t V, int S, float dscale) {
    extern __shared__ uint4 slice[];
    __shared__ float shared_m[32], shared_s[32];
    __shared__ float2 block_pair; /* this block's (m, s), read by the cluster */
    cg::cluster_group cluster = cg::this_cluster();
    int C = (int)cluster.num_blocks(), rank = (int)cluster.block_rank();
    int64_t n_chunks = cuda_chunks(V);
    int64_t first = (int64_t)rank * S; /* the slice's first chunk in the row */
    int T = blockDim.x, rounds = (S + T - 1) / T;
    bool grad = dlogits.data != NULL;
    for (int64_t i = blockIdx.x / C; i < N; i += gridDim.x / C) {
        int64_t t = targets[i];
        bool vec_out = grad && row_aligned16(dlogits, i);
        if (t == DORAC_IGNORE_INDEX) { /* the same for the whole cluster: no barriers */
            if (rank == 0 && threadIdx.x == 0) st_at(loss, 0, i, 0.0f);
            if (!grad) continue;
            float zero[CUDA_CHUNK] = {0};
            for (int q = threadIdx.x; q < S && first + q < n_chunks; q += T)
                st_chunk(dlogits, i, (first + q) * CUDA_CHUNK, V, vec_out, zero);
            continue;
        }

        /* 1. copy: every round's loads in flight before the first is used */
        bool vec_in = row_aligned16(logits, i);
        for (int r = 0; r < rounds; r++) {
            int q = threadIdx.x + r * T;
            if (q < S && first + q < n_chunks)
                slice_load<BF16>(slice, q, logits, i, (first + q) * CUDA_CHUNK, V, vec_in);
            ce_commit();
        }

        /* 2. log-sum-exp: the thread's chunks as they land, the block, the cluster */
        float m = -INFINITY, s = 0.0f;
        for (int r = 0; r < rounds; r++) {
            ce_wait(rounds - 1 - r);
            int q = threadIdx.x + r * T;
            if (q < S && first + q < n_chunks) {
                float z[CUDA_CHUNK];
                slice_chunk<BF16>(z, slice, q);
                lse_add_chunk(m, s, z);
            }
        }
        block_lse(m, s, shared_m, shared_s);
        if (threadIdx.x == 0) block_pair = make_float2(m, s);
        cluster.sync(); /* every pair published; every slice loaded */
        m = -INFINITY, s = 0.0f;
        for (int b = 0; b < C; b++) { /* rank order: the same bits in every thread */
            float2 pair = *cluster.map_shared_rank(&block_pair, b);
            lse_merge(m, s, pair.x, pair.y);
        }
        cluster.barrier_arrive(); /* done with the other blocks' pairs */
        double lse = (double)m + log((double)s);

        /* 3. the loss from the target's slot, then the gradient */
        int64_t t_chunk = t / CUDA_CHUNK, t_slot = t_chunk - first;
        if (t_slot >= 0 && t_slot < S && threadIdx.x == (int)(t_slot % T)) {
            float target_logit = slice_elem<BF16>(slice, (int)t_slot, (int)(t - t_chunk * CUDA_CHUNK));
            st_at(loss, 0, i, (float)(lse - (double)target_logit));
        }
        if (grad) {
            float lse_log2 = (float)(lse * CE_LOG2E);
            for (int q = threadIdx.x; q < S && first + q < n_chunks; q += T) {
                float z[CUDA_CHUNK];
                slice_chunk<BF16>(z, slice, q);
                int64_t c0 = (first + q) * CUDA_CHUNK;
                grad_chunk(z, lse_log2, dscale, c0, t);
                st_chunk(dlogits, i, c0, V, vec_out, z);
            }
        }
        cluster.barrier_wait(); /* the others have read block_pair: it may change or go */
    }
}

/* ---- the streaming kernel: rows too long for a cluster ------------------- */

/* As cross_entropy_cluster_kernel, one block per row, the row read from
** global memory in each pass. The target logit is read before the first
** barrier, so before anyone writes dlogits when it aliases the logits;
** every other element is read before it is written by the same thread. */
static __global__ void __launch_bounds__(CE_THREADS)
    cross_entropy_stream_kernel(cuda_view loss, cuda_view dlogits, cuda_view logits,
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
    float target_logit = threadIdx.x == 0 ? ld_at(logits, i, t) : 0.0f;

    bool vec_in = row_aligned16(logits, i);
    float m = -INFINITY, s = 0.0f;
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float z[CUDA_CHUNK];
        ld_chunk(z, logits, i, k * CUDA_CHUNK, V, vec_in, -INFINITY);
        lse_add_chunk(m, s, z);
    }
    block_lse(m, s, shared_m, shared_s);
    double lse = (double)m + log((double)s);
    if (threadIdx.x == 0) st_at(loss, 0, i, (float)(lse - (double)target_logit));
    if (!grad) return;

    float lse_log2 = (float)(lse * CE_LOG2E);
    for (int64_t k = threadIdx.x; k < n_chunks; k += blockDim.x) {
        float z[CUDA_CHUNK];
        ld_chunk(z, logits, i, k * CUDA_CHUNK, V, vec_in, 0.0f);
        grad_chunk(z, lse_log2, dscale, k * CUDA_CHUNK, t);
        st_chunk(dlogits, i, k * CUDA_CHUNK, V, vec_out, z);
    }
}

/* ---- host side ------------------------------------------------------------ */

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

/* Blocks a cluster for rows of n_chunks chunks of chunk_bytes each: the
** fewest (1, 2, 4, 8) whose slices of *S chunks fit CE_SLICE_BYTES, or 0
** when rows are too long for any. */
static int cluster_blocks(int64_t n_chunks, int chunk_bytes, int *S) {
    for (int C = 1; C <= CE_CLUSTER_MAX; C *= 2) {
        int64_t slots = (n_chunks + C - 1) / C;
        if (slots * chunk_bytes <= CE_SLICE_BYTES) {
            *S = (int)slots;
            return C;
        }
    }
    return 0;
}

/* Launches the cluster kernel over N >= 1 rows: C blocks a row of T
** threads each, S slots of shared memory a block. */
template <bool BF16>
static int launch_cluster(dorac_backend *be, cuda_view loss, cuda_view dz, cuda_view logits,
                          const int32_t *targets, int64_t N, int64_t V, int C, int S, float dscale) {
    const char *op = "cross_entropy";
    void (*kernel)(cuda_view, cuda_view, cuda_view, const int32_t *, int64_t, int64_t, int, float) =
        cross_entropy_cluster_kernel<BF16>;
    int T = cuda_row_threads((int64_t)S * CUDA_CHUNK, CE_THREADS);
    size_t smem = (size_t)S * (BF16 ? 16 : 32);
    if (smem > 48 * 1024)
        DORAC_TRY(cuda_status(cudaFuncSetAttribute((const void *)kernel,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                              op, "shared memory limit"));
    /* a cluster per row; past 2^31 blocks, clusters stride over the rows */
    int64_t clusters = N < 2147483647 / C ? N : 2147483647 / C;
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = (unsigned)C;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.gridDim = dim3((unsigned)(clusters * C));
    cfg.blockDim = dim3((unsigned)T);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = cuda_stream(be);
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cuda_status(cudaLaunchKernelEx(&cfg, kernel, loss, dz, logits, targets, N, V, S, dscale), op,
                       "kernel launch");
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
    const int32_t *tg = (const int32_t *)targets->data;
    bool bf16 = logits->type == DORAC_DTYPE_BF16;
    int S = 0, C = cluster_blocks(cuda_chunks(V), bf16 ? 16 : 32, &S);
    if (C > 0 && bf16)
        return launch_cluster<true>(be, cuda_view_of(loss), dz, cuda_view_of(logits), tg, N, V, C, S,
                                    (float)dscale);
    if (C > 0)
        return launch_cluster<false>(be, cuda_view_of(loss), dz, cuda_view_of(logits), tg, N, V, C, S,
                                     (float)dscale);
    cross_entropy_stream_kernel<<<cuda_blocks(N, 1) /* a block per row */, CE_THREADS, 0,
                                  cuda_stream(be)>>>(cuda_view_of(loss), dz, cuda_view_of(logits), tg, V,
                                                     (float)dscale);
    return cuda_launch_status(op);
}
