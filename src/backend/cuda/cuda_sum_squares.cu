/*
** cuda_sum_squares.cu — *out = sum of X's squared elements on the GPU
** (backend.h's sum_squares; the CPU twin is in cpu_ops_basic.c), for
** global-norm gradient clipping. The result is a host double, so the op
** waits for the stream: it is one of the synchronising calls that report an
** earlier kernel's execution failure.
**
** Size letters: R rows, C columns.
**
** X is walked in 16-byte chunks (cuda_chunk.cuh), numbered row by row; a
** contiguous X (ld == C) is walked as one long row, so a thin (out, r)
** tensor does not waste threads on short rows. Two passes with a fixed
** shape for given sizes, all in double, no atomics, so the result is the
** same from run to run:
**   1. n_blocks blocks (a number set by the size alone, at most MAX_BLOCKS)
**      of THREADS threads; thread t of block b adds the squares of chunks
**      b*THREADS + t, + n_blocks*THREADS, ... in order, and the block adds
**      its threads by a fixed tree into partial[b].
**   2. One block adds the n_blocks partials the same way into the
**      context's device result, which is copied to its pinned host mirror.
** With a single block, pass 1 writes the device result itself and no
** scratch is used.
**
** sum_squares_many runs the same two passes for up to MANY_BATCH tensors at
** once (blockIdx.y picks the tensor; each tensor keeps its own number of
** blocks, stride and tree), each into its own slot of one device array,
** copies the array back once and adds the slots in order on the host: the
** same doubles added in the same order as sum_squares called tensor by
** tensor, with one wait instead of n and two launches per batch instead of
** up to two per tensor (a DoRA step on the Llama-1B shape reads 336
** gradients).
*/
#include "backend/cuda/cuda_chunk.cuh"

enum { THREADS = 256, MAX_BLOCKS = 1024, CHUNKS_PER_THREAD = 4 };

/* Pass 1 for block b of n_blocks over X (R,C), cpr chunks per row, n_chunks
** = R*cpr in all: thread t adds chunks b*THREADS + t, + n_blocks*THREADS,
** ... and the block adds its threads; thread 0 gets the block's sum. */
static __device__ __forceinline__ double partial_of_block(cuda_view X, int64_t R, int64_t C, int64_t cpr,
                                                          int64_t n_chunks, int64_t b, int64_t n_blocks,
                                                          double *warp_sums) {
    double acc = 0.0;
    for (int64_t e = b * blockDim.x + threadIdx.x; e < n_chunks; e += n_blocks * blockDim.x) {
        int64_t row = R == 1 ? 0 : e / cpr;
        float x[CUDA_CHUNK];
        ld_chunk(x, X, row, (e - row * cpr) * CUDA_CHUNK, C, row_aligned16(X, row), 0.0f);
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) acc += (double)x[k] * (double)x[k];
    }
    return block_sum(acc, warp_sums);
}

/* Pass 2: the n partials added in the fixed tree; thread 0 gets the sum. */
static __device__ __forceinline__ double finish_of(const double *partial, int64_t n, double *warp_sums) {
    double acc = 0.0;
    for (int64_t b = threadIdx.x; b < n; b += blockDim.x) acc += partial[b];
    return block_sum(acc, warp_sums);
}

/* Pass 1. dst has a double per block. Grid: n_blocks blocks of THREADS. */
static __global__ void sum_squares_partial_kernel(double *dst, cuda_view X, int64_t R, int64_t C,
                                                  int64_t cpr, int64_t n_chunks) {
    __shared__ double warp_sums[32];
    double acc = partial_of_block(X, R, C, cpr, n_chunks, blockIdx.x, gridDim.x, warp_sums);
    if (threadIdx.x == 0) dst[blockIdx.x] = acc;
}

/* Pass 2. partial (n) -> *result. Grid: one block of THREADS. */
static __global__ void sum_squares_finish_kernel(double *result, const double *partial, int64_t n) {
    __shared__ double warp_sums[32];
    double acc = finish_of(partial, n, warp_sums);
    if (threadIdx.x == 0) *result = acc;
}

/* How sum_squares walks X: as one long row when contiguous, and the number
** of pass-1 blocks (a function of the size alone). */
typedef struct sumsq_plan {
    cuda_view x;
    int64_t R, C, cpr, n_chunks, n_blocks;
} sumsq_plan;

static sumsq_plan plan_of(const dorac_tensor *X) {
    sumsq_plan p;
    p.x = cuda_view_of(X);
    p.R = X->rows, p.C = X->cols;
    if (X->ld == p.C) { /* contiguous: one long row */
        p.C *= p.R;
        p.R = 1;
        p.x.ld = p.C;
    }
    p.cpr = cuda_chunks(p.C), p.n_chunks = p.R * p.cpr;
    p.n_blocks = (p.n_chunks + THREADS * CHUNKS_PER_THREAD - 1) / (THREADS * CHUNKS_PER_THREAD);
    if (p.n_blocks > MAX_BLOCKS) p.n_blocks = MAX_BLOCKS;
    return p;
}

/* sum_squares_many's batches: tensor y of the batch, its plan, where its
** pass-1 partials go (offset into one scratch array; unused with one block)
** and its result slot. */
enum { MANY_BATCH = 64 };
typedef struct sumsq_batch {
    sumsq_plan p[MANY_BATCH];
    int64_t part_off[MANY_BATCH];
    double *dst[MANY_BATCH];
} sumsq_batch;

/* Grid (most blocks of the batch, tensors): block (b, y) is block b of
** tensor y's pass 1 (none past its n_blocks), into its partial or, with one
** block, its result. */
static __global__ void sum_squares_many_partial_kernel(const __grid_constant__ sumsq_batch batch, double *partial) {
    __shared__ double warp_sums[32];
    const sumsq_plan &p = batch.p[blockIdx.y];
    if ((int64_t)blockIdx.x >= p.n_blocks) return; /* uniform over the block */
    double acc = partial_of_block(p.x, p.R, p.C, p.cpr, p.n_chunks, blockIdx.x, p.n_blocks, warp_sums);
    if (threadIdx.x == 0) {
        if (p.n_blocks == 1) *batch.dst[blockIdx.y] = acc;
        else partial[batch.part_off[blockIdx.y] + blockIdx.x] = acc;
    }
}

/* Grid (tensors): pass 2 of each tensor with more than one block. */
static __global__ void sum_squares_many_finish_kernel(const __grid_constant__ sumsq_batch batch,
                                                      const double *partial) {
    __shared__ double warp_sums[32];
    const sumsq_plan &p = batch.p[blockIdx.x];
    if (p.n_blocks == 1) return;
    double acc = finish_of(partial + batch.part_off[blockIdx.x], p.n_blocks, warp_sums);
    if (threadIdx.x == 0) *batch.dst[blockIdx.x] = acc;
}

/* Queues the sum of X's squares (X non-empty) into the device double *dst. */
static int enqueue_sum_squares(dorac_backend *be, const dorac_tensor *X, double *dst) {
    cudaStream_t stream = cuda_stream(be);
    sumsq_plan p = plan_of(X);
    double *partial = NULL;
    if (p.n_blocks > 1) {
        partial = (double *)be->alloc(be, (size_t)p.n_blocks * sizeof(double));
        if (!partial) return DORAC_E_NOMEM;
    }
    sum_squares_partial_kernel<<<(unsigned)p.n_blocks, THREADS, 0, stream>>>(partial ? partial : dst, p.x, p.R,
                                                                              p.C, p.cpr, p.n_chunks);
    if (partial) {
        sum_squares_finish_kernel<<<1, THREADS, 0, stream>>>(dst, partial, p.n_blocks);
        be->free(be, partial); /* stream-ordered: after the kernels finish */
    }
    return cuda_launch_status("sum_squares");
}

/* Queues the sums of the non-empty X[i] into dev[i], MANY_BATCH at a time. */
static int enqueue_many(dorac_backend *be, const dorac_tensor *const *X, size_t n, double *dev) {
    cudaStream_t stream = cuda_stream(be);
    size_t i = 0;
    while (i < n) {
        sumsq_batch batch;
        int nb = 0;
        int64_t parts = 0, most = 0;
        for (; i < n && nb < MANY_BATCH; i++) {
            if (X[i]->rows == 0 || X[i]->cols == 0) continue;
            batch.p[nb] = plan_of(X[i]);
            batch.dst[nb] = dev + i;
            batch.part_off[nb] = parts;
            if (batch.p[nb].n_blocks > 1) parts += batch.p[nb].n_blocks;
            if (batch.p[nb].n_blocks > most) most = batch.p[nb].n_blocks;
            nb++;
        }
        if (nb == 0) continue;
        double *partial = NULL;
        if (parts > 0) {
            partial = (double *)be->alloc(be, (size_t)parts * sizeof(double));
            if (!partial) return DORAC_E_NOMEM;
        }
        sum_squares_many_partial_kernel<<<dim3((unsigned)most, (unsigned)nb), THREADS, 0, stream>>>(batch, partial);
        if (partial) {
            sum_squares_many_finish_kernel<<<(unsigned)nb, THREADS, 0, stream>>>(batch, partial);
            be->free(be, partial); /* stream-ordered: after the kernels finish */
        }
        DORAC_TRY(cuda_launch_status("sum_squares_many"));
    }
    return DORAC_OK;
}

int CUDA_OP(sum_squares)(dorac_backend *be, const dorac_tensor *X, double *out) {
    DORAC_TRY(cuda_check_float(X, "sum_squares", "X"));
    cuda_context *ctx = cuda_ctx(be);
    cudaStream_t stream = ctx->stream;
    if (X->rows == 0 || X->cols == 0) { /* nothing to add, but still wait, as the contract says */
        DORAC_TRY(cuda_status(cudaStreamSynchronize(stream), "sum_squares", "synchronize"));
        *out = 0.0;
        return DORAC_OK;
    }
    DORAC_TRY(enqueue_sum_squares(be, X, ctx->dev_result));
    DORAC_TRY(cuda_status(cudaMemcpyAsync(ctx->host_result, ctx->dev_result, sizeof(double),
                                          cudaMemcpyDeviceToHost, stream),
                          "sum_squares", "copy to host"));
    DORAC_TRY(cuda_status(cudaStreamSynchronize(stream), "sum_squares", "synchronize"));
    *out = *ctx->host_result;
    return DORAC_OK;
}

int CUDA_OP(sum_squares_many)(dorac_backend *be, const dorac_tensor *const *X, size_t n, double *out) {
    for (size_t i = 0; i < n; i++) DORAC_TRY(cuda_check_float(X[i], "sum_squares_many", "X[i]"));
    cudaStream_t stream = cuda_stream(be);
    cuda_context *ctx = cuda_ctx(be);
    if (n > ctx->host_many_cap) {
        cudaFreeHost(ctx->host_many);
        ctx->host_many = NULL;
        ctx->host_many_cap = 0;
        DORAC_TRY(cuda_status(cudaMallocHost(&ctx->host_many, n * sizeof(double)), "sum_squares_many",
                              "pinned host buffer"));
        ctx->host_many_cap = n;
    }
    double *dev = (double *)be->alloc(be, (n ? n : 1) * sizeof(double)), *host = ctx->host_many;
    if (!dev) return DORAC_E_NOMEM;
    int rc = DORAC_OK;
    if (!rc && n) rc = cuda_status(cudaMemsetAsync(dev, 0, n * sizeof(double), stream), "sum_squares_many", "memset");
    if (!rc) rc = enqueue_many(be, X, n, dev);
    if (!rc && n)
        rc = cuda_status(cudaMemcpyAsync(host, dev, n * sizeof(double), cudaMemcpyDeviceToHost, stream),
                         "sum_squares_many", "copy to host");
    if (!rc) rc = cuda_status(cudaStreamSynchronize(stream), "sum_squares_many", "synchronize");
    double total = 0.0;
    for (size_t i = 0; !rc && i < n; i++) total += host[i];
    if (!rc) *out = total;
    be->free(be, dev);
    return rc;
}
