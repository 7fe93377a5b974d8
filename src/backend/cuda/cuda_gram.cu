/*
** cuda_gram.cu — C (r,r) = alpha A A^T + beta C for a small F32 A (r,K),
** r <= 32: DoRA's G = A A^T, once per adapted layer and forward (gemm
** sends this shape here: A and B the same F32 view, B transposed).
**
** Why: cuBLAS runs it as a SIMT sgemm plus a split-K reduction, about 12.6
** us a call at r 16, K 2048-8192 on the H200 (ncu), 112 calls a step of the
** Llama-1B shape. A first kernel of one block per row of G (16 blocks, each
** reading all of A) took 14.4 us: too few blocks. Here the columns are cut:
**   1. Block s (one per GRAM_SLICE columns of A) stages its (r, GRAM_SLICE)
**      slice of A in shared memory, rows padded by one float so that the r
**      threads of a warp reading different rows at one column hit different
**      banks. Thread (k, l) adds A[k,j] A[l,j] over the slice's j in order,
**      in fp32, and writes partial[s,k,l].
**   2. The block that finishes last (cuda_last_block) adds the slices'
**      partials: its thread (k, l) in s order, in double, and writes C[k,l].
**      (A second kernel for this cost a launch per call.)
** cuda_gram_many runs up to CUDA_GRAM_MANY of these in one launch (DoRA's
** batched norm update, cuda_dora_norm.cu), block for block the same work.
** No atomics: the same bits every run. G is symmetric in exact arithmetic;
** here C[k,l] and C[l,k] are too (the same products, a*b = b*a, added in
** the same order).
*/
#include "backend/cuda/cuda_impl.cuh"

enum { GRAM_SLICE = 256 };

/* One block's share of C (r,r) = alpha A A^T + beta C: slice `slice` of
** n_slices of A's columns, and the sum of all slices if this block finishes
** last. Block (R, R) threads; counter: one zeroed arrival counter. */
template <int R>
static __device__ __forceinline__ void gram_block(cuda_view C, float *partial, unsigned *counter, cuda_view A, int r,
                                                  int64_t K, float alpha, float beta, unsigned slice,
                                                  unsigned n_slices) {
    __shared__ float a[R][GRAM_SLICE + 1];
    int64_t j0 = (int64_t)slice * GRAM_SLICE;
    int t = threadIdx.y * R + threadIdx.x;
    const float *src = (const float *)A.data;
    for (int e = t; e < R * GRAM_SLICE; e += R * R) {
        int row = e / GRAM_SLICE, j = e % GRAM_SLICE;
        a[row][j] = row < r && j0 + j < K ? src[(int64_t)row * A.ld + j0 + j] : 0.0f;
    }
    __syncthreads();
    int k = threadIdx.y, l = threadIdx.x;
    float acc = 0.0f;
#pragma unroll 8
    for (int j = 0; j < GRAM_SLICE; j++) acc += a[k][j] * a[l][j];
    if (k < r && l < r) partial[((int64_t)slice * r + k) * r + l] = acc;
    if (!cuda_last_block(counter, n_slices) || k >= r || l >= r) return;
    /* unrolled so that eight loads are in flight at once: a chain of one
    ** L2 round trip per slice was most of a call at K = 8192 (32 slices) */
    double sum = 0.0;
#pragma unroll 8
    for (int64_t s = 0; s < n_slices; s++) sum += (double)__ldcg(&partial[(s * r + k) * r + l]);
    float *c = (float *)C.data + (int64_t)k * C.ld + l;
    float v = (float)sum;
    *c = beta == 0.0f ? alpha * v : alpha * v + beta * *c;
}

/* Grid: slices; block (R, R) threads, R = r rounded up to 8, 16, 32.
** counter: one zeroed arrival counter. */
template <int R>
static __global__ void __launch_bounds__(R *R)
gram_kernel(cuda_view C, float *partial, unsigned *counter, cuda_view A, int r, int64_t K, float alpha, float beta) {
    gram_block<R>(C, partial, counter, A, r, K, alpha, beta, blockIdx.x, gridDim.x);
}

/* Grid (most slices of any item, items): block (s, i) is slice s of item i,
** or idle past that item's slices; item i's counter is counters[i]. The
** same block work as gram_kernel, so the same bits. */
template <int R>
static __global__ void __launch_bounds__(R *R) gram_many_kernel(const cuda_gram_many_args args, unsigned *counters) {
    int i = blockIdx.y;
    int64_t K = args.K[i];
    unsigned n_slices = (unsigned)((K + GRAM_SLICE - 1) / GRAM_SLICE);
    if (blockIdx.x >= n_slices) return;
    gram_block<R>(args.C[i], args.partial[i], &counters[i], args.A[i], args.r[i], K, 1.0f, 0.0f, blockIdx.x,
                  n_slices);
}

int cuda_gram_many(dorac_backend *be, int R, const cuda_gram_many_args *args) {
    if (args->n < 1 || args->n > CUDA_GRAM_MANY) return dorac_error(DORAC_E_INVALID, "gemm (gram): batch of %d", args->n);
    cuda_gram_many_args a = *args;
    size_t total = 0, offs[CUDA_GRAM_MANY];
    unsigned most = 1;
    for (int i = 0; i < a.n; i++) {
        int64_t slices = (a.K[i] + GRAM_SLICE - 1) / GRAM_SLICE;
        if (a.K[i] < 1 || slices > 65535 || a.r[i] < 1 || a.r[i] > R)
            return dorac_error(DORAC_E_INVALID, "gemm (gram): item %d with r %d, K %lld", i, a.r[i], (long long)a.K[i]);
        offs[i] = total;
        total += (size_t)slices * (size_t)a.r[i] * (size_t)a.r[i];
        if ((unsigned)slices > most) most = (unsigned)slices;
    }
    float *partial = (float *)be->alloc(be, total * sizeof(float));
    if (!partial) return dorac_error(DORAC_E_NOMEM, "gemm (gram): out of device memory for partial sums");
    for (int i = 0; i < a.n; i++) a.partial[i] = partial + offs[i];
    unsigned *counters;
    int rc = cuda_counters(be, (size_t)a.n, &counters);
    if (rc) {
        be->free(be, partial);
        return rc;
    }
    cudaStream_t stream = cuda_stream(be);
    dim3 grid(most, (unsigned)a.n);
    if (R == 8) gram_many_kernel<8><<<grid, dim3(8, 8), 0, stream>>>(a, counters);
    else if (R == 16) gram_many_kernel<16><<<grid, dim3(16, 16), 0, stream>>>(a, counters);
    else gram_many_kernel<32><<<grid, dim3(32, 32), 0, stream>>>(a, counters);
    be->free(be, partial); /* stream-ordered: after the kernel finishes */
    return cuda_launch_status("gemm (gram)");
}

/* gemm's caller checked: A F32 (r,K) with 1 <= r <= 32 and K >= 1, C F32 (r,r). */
int cuda_gram(dorac_backend *be, const dorac_tensor *C, const dorac_tensor *A, double alpha, double beta) {
    int r = (int)A->rows;
    int64_t K = A->cols, slices = (K + GRAM_SLICE - 1) / GRAM_SLICE;
    if (slices > 65535) return dorac_error(DORAC_E_INVALID, "gemm (gram): K %lld too large", (long long)K);
    float *partial = (float *)be->alloc(be, (size_t)slices * (size_t)r * (size_t)r * sizeof(float));
    if (!partial) return dorac_error(DORAC_E_NOMEM, "gemm (gram): out of device memory for partial sums");
    unsigned *counter;
    int rc = cuda_counters(be, 1, &counter);
    if (rc) {
        be->free(be, partial);
        return rc;
    }
    cudaStream_t stream = cuda_stream(be);
    cuda_view cv = cuda_view_of(C), av = cuda_view_of(A);
    float al = (float)alpha, bt = (float)beta;
    unsigned grid = (unsigned)slices;
    if (r <= 8) gram_kernel<8><<<grid, dim3(8, 8), 0, stream>>>(cv, partial, counter, av, r, K, al, bt);
    else if (r <= 16) gram_kernel<16><<<grid, dim3(16, 16), 0, stream>>>(cv, partial, counter, av, r, K, al, bt);
    else gram_kernel<32><<<grid, dim3(32, 32), 0, stream>>>(cv, partial, counter, av, r, K, al, bt);
    be->free(be, partial); /* stream-ordered: after the kernels finish */
    return cuda_launch_status("gemm (gram)");
}
