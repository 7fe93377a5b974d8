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
    acc = block_sum_d(acc, warp_sums);
    if (threadIdx.x == 0) dst[blockIdx.x] = acc;
}

/* Pass 2. partial (n) -> *result. Grid: one block of THREADS. */
static __global__ void sum_squares_finish_kernel(double *result, const double *partial, int64_t n) {
    __shared__ double warp_sums[32];
    double acc = 0.0;
    for (int64_t b = threadIdx.x; b < n; b += blockDim.x) acc += partial[b];
    acc = block_sum_d(acc, warp_sums);
    if (threadIdx.x == 0) *result = acc;
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
        partial ? partial : ctx->dev_result, xv, R, C, cpr, n_chunks);
    if (partial) {
        sum_squares_finish_kernel<<<1, THREADS, 0, stream>>>(ctx->dev_result, partial, n_blocks);
        be->free(be, partial); /* stream-ordered: after the kernels finish */
    }
    DORAC_TRY(cuda_launch_status("sum_squares"));
    DORAC_TRY(cuda_status(cudaMemcpyAsync(ctx->host_result, ctx->dev_result, sizeof(double),
                                          cudaMemcpyDeviceToHost, stream),
                          "sum_squares", "copy to host"));
    DORAC_TRY(cuda_status(cudaStreamSynchronize(stream), "sum_squares", "synchronize"));
    *out = *ctx->host_result;
    return DORAC_OK;
}
