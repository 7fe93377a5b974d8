/*
** cuda_gram.cu — C (r,r) = alpha A A^T + beta C for a small F32 A (r,K),
** r <= 32: DoRA's G = A A^T, once per adapted layer and forward (gemm
** sends this shape here: A and B the same F32 view, B transposed).
**
** Why: cuBLAS runs it as a SIMT sgemm plus a split-K reduction, 7.6 us and
** a second launch at r 16, K 2048-8192 on the H200 (docs/PERF.md's ncu
** table); G is about 1% of those FLOPs' worth of work.
**
** Block k (one per row of G, 256 threads): thread t walks columns
** j = t, t + 256, ... of A and keeps, for every l < r,
**   acc[l] += A[k,j] A[l,j]
** (fp32; the loads are coalesced along j, A stays in L2); then the block
** sums each acc[l] in a fixed order (a warp butterfly, then the 8 warps in
** order) and thread l writes C[k,l]. No atomics: the same bits every run.
** G is symmetric in exact arithmetic; here C[k,l] and C[l,k] are summed in
** the same order of j and products a*b vs b*a, so they are equal too.
*/
#include "backend/cuda/cuda_impl.cuh"

enum { GRAM_THREADS = 256, GRAM_MAX_R = 32 };

template <int R>
static __global__ void __launch_bounds__(GRAM_THREADS)
gram_kernel(cuda_view C, cuda_view A, int r, int64_t K, float alpha, float beta) {
    __shared__ float part[GRAM_THREADS / 32][R];
    int k = blockIdx.x;
    float acc[R];
#pragma unroll
    for (int l = 0; l < R; l++) acc[l] = 0.0f;
    const float *a = (const float *)A.data;
    for (int64_t j = threadIdx.x; j < K; j += GRAM_THREADS) {
        float ak = a[(int64_t)k * A.ld + j];
#pragma unroll
        for (int l = 0; l < R; l++)
            if (l < r) acc[l] += ak * a[(int64_t)l * A.ld + j];
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int l = 0; l < R; l++) {
        float v = warp_sum(acc[l]);
        if (lane == 0) part[warp][l] = v;
    }
    __syncthreads();
    if (threadIdx.x < r) {
        int l = threadIdx.x;
        float sum = 0.0f;
        for (int w = 0; w < GRAM_THREADS / 32; w++) sum += part[w][l];
        float *c = (float *)C.data + (int64_t)k * C.ld + l;
        *c = beta == 0.0f ? alpha * sum : alpha * sum + beta * *c;
    }
}

/* gemm's caller checked: A F32 (r,K) with r <= GRAM_MAX_R, C F32 (r,r). */
int cuda_gram(dorac_backend *be, const dorac_tensor *C, const dorac_tensor *A, double alpha, double beta) {
    int r = (int)A->rows;
    int64_t K = A->cols;
    cudaStream_t stream = cuda_stream(be);
    cuda_view cv = cuda_view_of(C), av = cuda_view_of(A);
    float al = (float)alpha, bt = (float)beta;
    if (r <= 8) gram_kernel<8><<<r, GRAM_THREADS, 0, stream>>>(cv, av, r, K, al, bt);
    else if (r <= 16) gram_kernel<16><<<r, GRAM_THREADS, 0, stream>>>(cv, av, r, K, al, bt);
    else gram_kernel<32><<<r, GRAM_THREADS, 0, stream>>>(cv, av, r, K, al, bt);
    return cuda_launch_status("gemm (gram)");
}
