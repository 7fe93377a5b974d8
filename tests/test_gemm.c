/*
** test_gemm.c — the backend's GEMM against a plain double loop, for every
** transpose combination, one row (the gemv path) and several, strided
** views, beta 0 over a C full of NaN (ignored) and beta 1 (accumulated),
** and K = 0; on both the fp32 and fp64 CPU backends.
*/
#include <string.h>

#include "backend/backend.h"
#include "core/rng.h"
#include "test.h"

static void check(dorac_backend *be, int64_t M, int64_t N, int64_t K, bool ta, bool tb, double beta) {
    dorac_dtype t = be->act_type;
    int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    /* strided views: every matrix lives in a wider buffer */
    dorac_tensor Abuf, Bbuf, Cbuf;
    CHECK_OK(dorac_tensor_alloc(be, &Abuf, t, ar, ac + 3, "A"));
    CHECK_OK(dorac_tensor_alloc(be, &Bbuf, t, br, bc + 2, "B"));
    CHECK_OK(dorac_tensor_alloc(be, &Cbuf, t, M, N + 1, "C"));
    size_t na = (size_t)(ar * (ac + 3)), nb = (size_t)(br * (bc + 2)), nc = (size_t)(M * (N + 1));
    double *a = malloc(na * 8), *b = malloc(nb * 8), *c = malloc(nc * 8), *got = malloc(nc * 8);
    for (size_t i = 0; i < na; i++) a[i] = 2 * dorac_rng_uniform_f64(3, 1, i) - 1;
    for (size_t i = 0; i < nb; i++) b[i] = 2 * dorac_rng_uniform_f64(3, 2, i) - 1;
    for (size_t i = 0; i < nc; i++) c[i] = beta == 0.0 ? NAN : 2 * dorac_rng_uniform_f64(3, 3, i) - 1;
    be->upload(be, &Abuf, a, DORAC_DTYPE_F64);
    be->upload(be, &Bbuf, b, DORAC_DTYPE_F64);
    be->upload(be, &Cbuf, c, DORAC_DTYPE_F64);
    dorac_tensor A = Abuf, B = Bbuf, C = Cbuf;
    A.cols = ac, B.cols = bc, C.cols = N;
    CHECK_OK(be->gemm(be, &C, &A, ta, &B, tb, 0.7, beta));
    be->download(be, got, DORAC_DTYPE_F64, &Cbuf);
    double worst = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double want = beta == 0.0 ? 0.0 : beta * c[i * (N + 1) + j];
            for (int64_t k = 0; k < K; k++) {
                double x = ta ? a[k * (ac + 3) + i] : a[i * (ac + 3) + k];
                double y = tb ? b[j * (bc + 2) + k] : b[k * (bc + 2) + j];
                want += 0.7 * x * y;
            }
            worst = test_worst(worst, fabs(got[i * (N + 1) + j] - want));
            if (got[i * (N + 1) + j] != got[i * (N + 1) + j]) worst = INFINITY;
        }
    double tol = be->act_type == DORAC_DTYPE_F64 ? 1e-12 : 1e-4;
    if (!(worst <= tol))
        fprintf(stderr, "%s gemm M=%lld N=%lld K=%lld ta=%d tb=%d beta=%g: error %.3g\n", be->name, (long long)M,
                (long long)N, (long long)K, ta, tb, beta, worst);
    CHECK_LE(worst, tol);
    /* the padding column of C is untouched */
    for (int64_t i = 0; i < M; i++)
        if (beta != 0.0) {
            double stored = c[i * (N + 1) + N];
            if (be->act_type == DORAC_DTYPE_F32) stored = (float)stored;
            CHECK_NEAR(got[i * (N + 1) + N], stored, 0.0);
        }
    free(a), free(b), free(c), free(got);
    dorac_tensor_free(be, &Abuf), dorac_tensor_free(be, &Bbuf), dorac_tensor_free(be, &Cbuf);
}

int main(void) {
    dorac_backend *bes[2] = {dorac_backend_cpu_create((dorac_cpu_params){0}),
                             dorac_backend_cpu64_create((dorac_cpu_params){0})};
    for (int e = 0; e < 2; e++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int beta = 0; beta < 2; beta++) {
                    check(bes[e], 1, 37, 29, ta, tb, beta);  /* the gemv path */
                    check(bes[e], 5, 37, 29, ta, tb, beta);
                    check(bes[e], 1, 7, 0, ta, tb, beta);    /* K = 0 */
                }
    for (int e = 0; e < 2; e++) dorac_backend_destroy(bes[e]);
    return test_report();
}
