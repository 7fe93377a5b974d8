/*
** threads.c — one place that sets the CPU thread count for OpenMP and BLAS.
*/
#include "dorac.h"

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* OpenBLAS exports these; declared here so that cblas.h variants without
** them still compile. */
void openblas_set_num_threads(int num_threads);

static int configured_threads = 0;

void dorac_set_num_threads(int n) {
#ifdef _OPENMP
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
#else
    if (n <= 0) n = 1;
#endif
    openblas_set_num_threads(n);
    configured_threads = n;
}

int dorac_get_num_threads(void) {
#ifdef _OPENMP
    return configured_threads > 0 ? configured_threads : omp_get_max_threads();
#else
    return configured_threads > 0 ? configured_threads : 1;
#endif
}
