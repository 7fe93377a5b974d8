/*
** test_dora_raw.c — the public raw-array DoRA API (dorac.h) against the
** fp64 layer oracle: forward, backward (both norm modes, accumulation with
** +=), init_magnitude, merge and unmerge, following the header's example.
*/
#include <string.h>

#include "layer_fixture.h"
#include "test.h"

static float *to_f32(const double *p, size_t n) {
    float *q = malloc(n * sizeof *q);
    for (size_t i = 0; i < n; i++) q[i] = (float)p[i];
    return q;
}

static double *to_f64(const float *p, size_t n) {
    double *q = malloc(n * sizeof *q);
    for (size_t i = 0; i < n; i++) q[i] = p[i];
    return q;
}

static void check_against(const char *what, const float *got, fixture *f, const dorac_tensor *t) {
    size_t n = (size_t)(t->rows * t->cols);
    double *ref = fixture_get(f, t), *g = to_f64(got, n);
    double err = rel_err_f64(g, ref, n, 1e-30);
    if (err > 2e-5) fprintf(stderr, "%s: raw vs fp64 layer %.3g\n", what, err);
    CHECK_LE(err, 2e-5);
    free(ref), free(g);
}

static void check_case(dorac_backend *be64, const fixture_case *c) {
    fixture f;
    CHECK_OK(fixture_init(&f, be64, c));
    CHECK_OK(fixture_forward(&f));
    CHECK_OK(fixture_backward(&f));
    int64_t in = c->in, out = c->out, N = c->N, r = c->rank;
    float *W = to_f32(f.W, (size_t)(out * in)), *bias = to_f32(f.bias, (size_t)out);
    float *A = to_f32(f.A, (size_t)(r * in)), *B = to_f32(f.B, (size_t)(out * r));
    float *m = to_f32(f.m, (size_t)out), *x = to_f32(f.x, (size_t)(N * in)), *dy = to_f32(f.R, (size_t)(N * out));
    float *y = malloc((size_t)(N * out) * 4), *dx = malloc((size_t)(N * in) * 4);
    float *dA = calloc((size_t)(r * in + 1), 4), *dB = calloc((size_t)(out * r + 1), 4), *dm = calloc((size_t)out, 4);
    dorac_dora_weights w = {.in = in, .out = out, .rank = (int)r, .scale = (float)f.L.scale,
                            .norm_grad = c->norm_grad, .W0 = W, .bias = c->bias ? bias : NULL,
                            .A = A, .B = B, .m = m};
    CHECK_OK(dorac_dora_forward(&w, N, x, y));
    check_against("y", y, &f, &f.ty);
    CHECK_OK(dorac_dora_backward(&w, N, x, y, dy, dx, dA, dB, dm));
    check_against("dx", dx, &f, &f.tdx);
    check_against("dm", dm, &f, &f.tdm);
    if (r > 0) {
        check_against("dA", dA, &f, &f.tdA);
        check_against("dB", dB, &f, &f.tdB);
    }
    /* a second backward adds: gradients double */
    float dm0 = dm[0];
    CHECK_OK(dorac_dora_backward(&w, N, x, y, dy, NULL, dA, dB, dm));
    CHECK_NEAR(dm[0], 2 * dm0, 1e-6 * fabs(dm0) + 1e-12);

    /* merge, then a plain GEMM reproduces y; unmerge gives W0 back */
    float *Wm = malloc((size_t)(out * in) * 4), *n = malloc((size_t)out * 4);
    CHECK_OK(dorac_dora_merge(&w, Wm, n));
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t o = 0; o < out; o++) {
            double s = c->bias ? bias[o] : 0;
            for (int64_t j = 0; j < in; j++) s += (double)x[i * in + j] * Wm[o * in + j];
            worst = test_worst(worst, fabs(s - y[i * out + o]));
            scale = fmax(scale, fabs(y[i * out + o]));
        }
    CHECK_LE(worst / scale, 1e-5);
    CHECK_OK(dorac_dora_unmerge(&w, n, Wm));
    double werr = 0, wmax = 0;
    for (int64_t i = 0; i < out * in; i++) werr = test_worst(werr, fabs(Wm[i] - W[i])), wmax = fmax(wmax, fabs(W[i]));
    CHECK_LE(werr / wmax, 1e-6);

    /* init_magnitude: m = ||W0 row|| */
    CHECK_OK(dorac_dora_init_magnitude(&w, m));
    for (int64_t o = 0; o < out; o++) {
        double s = 0;
        for (int64_t j = 0; j < in; j++) s += (double)W[o * in + j] * W[o * in + j];
        CHECK_NEAR(m[o], sqrt(s), 1e-6 * sqrt(s));
    }
    free(W), free(bias), free(A), free(B), free(m), free(x), free(dy), free(y), free(dx);
    free(dA), free(dB), free(dm), free(Wm), free(n);
    fixture_free(&f);
}

int main(void) {
    dorac_set_num_threads(2);
    CHECK(dorac_get_num_threads() == 2);
    dorac_backend *be64 = dorac_backend_cpu64_create((dorac_cpu_params){0});
    const fixture_case cases[] = {
        {"raw detach", DORAC_METHOD_DORA, 13, 7, 5, 3, true, DORAC_NORM_GRAD_DETACH, 0, false},
        {"raw exact", DORAC_METHOD_DORA, 40, 33, 300, 5, false, DORAC_NORM_GRAD_EXACT, 0, false},
        {"raw magnitude-only", DORAC_METHOD_DORA, 13, 7, 5, 0, true, DORAC_NORM_GRAD_DETACH, 0, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(be64, &cases[i]);
    dorac_backend_destroy(be64);
    return test_report();
}
