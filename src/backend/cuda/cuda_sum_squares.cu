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
** sum_squares_many enqueues the same two passes for every tensor, each into
** its own slot of one device array, copies the array back once and adds
** the slots in order on the host: the same doubles added in the same order
** as sum_squares called tensor by tensor, with one wait instead of n.
*/
#include "backend/cuda/cuda_chunk.cuh"

enum { THREADS = 256, MAX_BLOCKS = 1024, CHUNKS_PER_THREAD = 4 };

/* Pass 1. X (R,C), cpr chunks per row, n_chunks = R*cpr in all; dst has a
** double per block. Grid: n_blocks blocks of THREADS. */
static __global__ void sum_squares_partial_kernel(double *dst, cuda_view X, int64_t R, int64_t C,
                                                  int64_t cpr, int64_t n_chunks) {
    __shared__ double warp_sums[32];
    double acc = 0.0;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n_chunks;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t row = R == 1 ? 0 : e / cpr;
        float x[CUDA_CHUNK];
        ld_chunk(x, X, row, (e - row * cpr) * CUDA_CHUNK, C, row_aligned16(X, row), 0.0f);
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) acc += (double)x[k] * (double)x[k];
    }
    acc = block_sum(acc, warp_sums);
    if (threadIdx.x == 0) dst[blockIdx.x] = acc;
}

/* Pass 2. partial (n) -> *result. Grid: one block of THREADS. */
static __global__ void sum_squares_finish_kernel(double *result, const double *partial, int64_t n) {
    __shared__ double warp_sums[32];
    double acc = 0.0;
    for (int64_t b = threadIdx.x; b < n; b += blockDim.x) acc += partial[b];
    acc = block_sum(acc, warp_sums);
    if (threadIdx.x == 0) *result = acc;
}

/* Queues the sum of X's squares (X non-empty) into the device double *dst. */
static int enqueue_sum_squares(dorac_backend *be, const dorac_tensor *X, double *dst) {
    cudaStream_t stream = cuda_stream(be);
    cuda_view xv = cuda_view_of(X);
    int64_t R = X->rows, C = X->cols;
    if (X->ld == C) { /* contiguous: one long row */
        C *= R;
        R = 1;
        xv.ld = C;
    }
    int64_t cpr = cuda_chunks(C), n_chunks = R * cpr;
    int64_t n_blocks = (n_chunks + THREADS * CHUNKS_PER_THREAD - 1) / (THREADS * CHUNKS_PER_THREAD);
    if (n_blocks > MAX_BLOCKS) n_blocks = MAX_BLOCKS;
    double *partial = NULL;
    if (n_blocks > 1) {
        partial = (double *)be->alloc(be, (size_t)n_blocks * sizeof(double));
        if (!partial) return DORAC_E_NOMEM;
    }
    sum_squares_partial_kernel<<<(unsigned)n_blocks, THREADS, 0, stream>>>(
        partial ? partial : dst, xv, R, C, cpr, n_chunks);
    if (partial) {
        sum_squares_finish_kernel<<<1, THREADS, 0, stream>>>(dst, partial, n_blocks);
        be->free(be, partial); /* stream-ordered: after the kernels finish */
    }
    return cuda_launch_status("sum_squares");
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
    for (size_t i = 0; !rc && i < n; i++)
        if (X[i]->rows > 0 && X[i]->cols > 0) rc = enqueue_sum_squares(be, X[i], dev + i);
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
