/*
** cpu_blas.h — BLAS for the CPU backend's kernels that call it from inside
** their own OpenMP parallel regions (attention, cached attention).
**
** blas_gemm is the precision's row-major GEMM. blas_serial_begin/end make
** BLAS run on the calling thread for the duration of such a region: OpenBLAS
** built for OpenMP does that by itself inside a parallel region (and setting
** its thread count would change OpenMP's team size), while the pthread build
** needs its own pool set to one thread and restored after.
*/
#ifndef DORAC_CPU_BLAS_H
#define DORAC_CPU_BLAS_H

#include <stdbool.h>

#include <cblas.h>

#include "backend/cpu/cpu_impl.h"

void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
int openblas_get_parallel(void); /* 0 sequential, 1 pthreads, 2 OpenMP */

/* C (M,N) = alpha op(A) op(B) + beta C, row-major with leading dimensions */
static inline void blas_gemm(bool ta, bool tb, int M, int N, int K, real alpha, const real *A, int lda,
                             const real *B, int ldb, real beta, real *C, int ldc) {
#ifdef CPU_BACKEND_F64
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                A, lda, B, ldb, beta, C, ldc);
#else
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                A, lda, B, ldb, beta, C, ldc);
#endif
}

/* Returns what blas_serial_end needs to restore. */
static inline int blas_serial_begin(void) {
    int n = openblas_get_num_threads();
    if (openblas_get_parallel() == 1) openblas_set_num_threads(1);
    return n;
}

static inline void blas_serial_end(int saved) {
    if (openblas_get_parallel() == 1) openblas_set_num_threads(saved);
}

#endif
