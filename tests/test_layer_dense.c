/*
** test_layer_dense.c — the layer against a dense reference, fp32 against its
** fp64 twin, and merge/unmerge.
**
** Dense reference: W' = diag(m/n)(W0 + sBA) built explicitly in double,
** with n the plain row norm of W0 + sBA, and y_ref = x W'^T + b. This is
** the definition, computed the obvious way; the layer computes it through
** the factored norm and never forms W'.
*/
#include "layer_fixture.h"
#include "test.h"

/* y_ref (N,out) and W' (out,in) in double, from the fixture's host arrays. */
static void dense_reference(const fixture *f, double *Wp, double *y_ref) {
    const fixture_case *c = &f->c;
    int64_t in = c->in, out = c->out, N = c->N, r = c->rank;
    double s = c->rslora ? 1.7 * r / sqrt((double)r) : 1.7;
    bool adapter = (c->method == DORAC_METHOD_LORA || c->method == DORAC_METHOD_DORA) && r > 0;
    for (int64_t o = 0; o < out; o++) {
        double n2 = 0;
        for (int64_t j = 0; j < in; j++) {
            double v = f->W[o * in + j];
            for (int64_t k = 0; adapter && k < r; k++) v += s * f->B[o * r + k] * f->A[k * in + j];
            Wp[o * in + j] = v;
            n2 += v * v;
        }
        if (c->method == DORAC_METHOD_DORA) {
            double g = f->m[o] / sqrt(n2 > DORAC_DORA_NORM_SQ_FLOOR ? n2 : DORAC_DORA_NORM_SQ_FLOOR);
            for (int64_t j = 0; j < in; j++) Wp[o * in + j] *= g;
        }
    }
    for (int64_t i = 0; i < N; i++)
        for (int64_t o = 0; o < out; o++) {
            double acc = c->bias ? f->bias[o] : 0;
            for (int64_t j = 0; j < in; j++) acc += f->x[i * in + j] * Wp[o * in + j];
            y_ref[i * out + o] = acc;
        }
}

static void check_dense(dorac_backend *be, const fixture_case *c, double tol) {
    fixture f;
    CHECK_OK(fixture_init(&f, be, c));
    CHECK_OK(fixture_forward(&f));
    double *Wp = malloc((size_t)(c->out * c->in) * sizeof(double));
    double *y_ref = malloc((size_t)(c->N * c->out) * sizeof(double));
    dense_reference(&f, Wp, y_ref);
    double *y = fixture_get(&f, &f.ty);
    double err = rel_err_f64(y, y_ref, (size_t)(c->N * c->out), 1e-30);
    if (err > tol) fprintf(stderr, "%s on %s: forward vs dense reference %.3g\n", c->name, be->name, err);
    CHECK_LE(err, tol);
    free(y), free(y_ref), free(Wp);
    fixture_free(&f);
}

/* fp32 gradients against the fp64 oracle, same inputs. */
static void check_twin(dorac_backend *be32, dorac_backend *be64, const fixture_case *c) {
    fixture a, b;
    CHECK_OK(fixture_init(&a, be32, c));
    CHECK_OK(fixture_init(&b, be64, c));
    CHECK_OK(fixture_forward(&a));
    CHECK_OK(fixture_forward(&b));
    CHECK_OK(fixture_backward(&a));
    CHECK_OK(fixture_backward(&b));
    dorac_tensor *ta[] = {&a.ty, &a.tdx, &a.tdA, &a.tdB, &a.tdm, &a.tdW, &a.tdbias};
    dorac_tensor *tb[] = {&b.ty, &b.tdx, &b.tdA, &b.tdB, &b.tdm, &b.tdW, &b.tdbias};
    const char *names[] = {"y", "dx", "dA", "dB", "dm", "dW", "dbias"};
    for (size_t k = 0; k < sizeof ta / sizeof ta[0]; k++) {
        if (!ta[k]->data) continue;
        double *ga = fixture_get(&a, ta[k]), *gb = fixture_get(&b, tb[k]);
        double err = rel_err_f64(ga, gb, (size_t)(ta[k]->rows * ta[k]->cols), 1e-30);
        if (err > 2e-5) fprintf(stderr, "%s: fp32 %s vs fp64: %.3g\n", c->name, names[k], err);
        CHECK_LE(err, 2e-5);
        free(ga), free(gb);
    }
    fixture_free(&a);
    fixture_free(&b);
}

/* After merge, a plain GEMM with W' equals the adapter forward (fp32, 1e-5
** relative); unmerge restores W0 (1e-6 relative). */
static void check_merge(dorac_backend *be, const fixture_case *c) {
    fixture f;
    CHECK_OK(fixture_init(&f, be, c));
    CHECK_OK(fixture_forward(&f));
    dorac_tensor Wm, ym, n;
    CHECK_OK(dorac_tensor_alloc(be, &Wm, be->weight_type, c->out, c->in, "W merged"));
    CHECK_OK(dorac_tensor_alloc(be, &ym, be->act_type, c->N, c->out, "y merged"));
    CHECK_OK(dorac_tensor_alloc(be, &n, be->param_type, 1, c->out, "n"));
    CHECK_OK(dorac_linear_merge(&f.L, &Wm));
    if (c->method == DORAC_METHOD_DORA) CHECK_OK(be->copy(be, &n, &f.L.n));
    CHECK_OK(be->gemm(be, &ym, &f.tx, false, &Wm, true, 1.0, 0.0));
    CHECK_OK(be->scale_cols_add_bias(be, &ym, NULL, &f.tbias));
    double *y = fixture_get(&f, &f.ty), *y2 = fixture_get(&f, &ym);
    double err = rel_err_f64(y2, y, (size_t)(c->N * c->out), 1e-30);
    if (err > 1e-5) fprintf(stderr, "%s: merged GEMM vs adapter %.3g\n", c->name, err);
    CHECK_LE(err, 1e-5);
    CHECK_OK(dorac_linear_unmerge(&f.L, &Wm, &n));
    double *W0 = fixture_get(&f, &Wm);
    double *W0_ref = fixture_get(&f, &f.tW);
    err = rel_err_f64(W0, W0_ref, (size_t)(c->out * c->in), 1e-30);
    if (err > 1e-6) fprintf(stderr, "%s: unmerge vs W0 %.3g\n", c->name, err);
    CHECK_LE(err, 1e-6);
    free(y), free(y2), free(W0), free(W0_ref);
    dorac_tensor_free(be, &Wm), dorac_tensor_free(be, &ym), dorac_tensor_free(be, &n);
    fixture_free(&f);
}

/* A W0 with all-zero rows (PEFT issue #2049): the norm is clamped, outputs
** and gradients stay finite, and the zero rows stay zero. */
static void check_zero_rows(dorac_backend *be) {
    fixture_case c = {"zero rows", DORAC_METHOD_DORA, 9, 6, 4, 2, false, DORAC_NORM_GRAD_EXACT, 0, false};
    fixture f;
    CHECK_OK(fixture_init(&f, be, &c));
    for (int64_t j = 0; j < c.in; j++) f.W[0 * c.in + j] = f.W[3 * c.in + j] = 0.0;
    for (int64_t k = 0; k < c.rank; k++) f.B[0 * c.rank + k] = f.B[3 * c.rank + k] = 0.0;
    fixture_upload(&f);
    dorac_linear_free(&f.L);
    dorac_adapter_config cfg = f.L.cfg;
    dorac_linear_tensors t = f.L.t;
    CHECK_OK(dorac_linear_init(&f.L, be, &cfg, c.in, c.out, &t, "zero rows"));
    CHECK_OK(dorac_linear_init_adapter(&f.L, 1, 1)); /* m = ||W0 row|| -> 0 on rows 0, 3 */
    CHECK_OK(fixture_forward(&f));
    CHECK_OK(fixture_backward(&f));
    double *y = fixture_get(&f, &f.ty), *n = fixture_get(&f, &f.L.n), *dm = fixture_get(&f, &f.tdm);
    double *dB = fixture_get(&f, &f.tdB), *dA = fixture_get(&f, &f.tdA), *dx = fixture_get(&f, &f.tdx);
    int finite = 1;
    for (int64_t i = 0; i < c.N * c.out; i++) finite &= isfinite(y[i]);
    for (int64_t i = 0; i < c.N * c.in; i++) finite &= isfinite(dx[i]);
    for (int64_t i = 0; i < c.rank * c.in; i++) finite &= isfinite(dA[i]);
    for (int64_t i = 0; i < c.out * c.rank; i++) finite &= isfinite(dB[i]);
    CHECK(finite);
    CHECK_NEAR(n[0], sqrt(DORAC_DORA_NORM_SQ_FLOOR), 1e-12);
    CHECK_NEAR(n[3], sqrt(DORAC_DORA_NORM_SQ_FLOOR), 1e-12);
    for (int64_t i = 0; i < c.N; i++) CHECK_NEAR(y[i * c.out + 0], 0.0, 0.0);
    CHECK_NEAR(dm[0], 0.0, 0.0);
    CHECK_NEAR(dB[0 * c.rank + 0], 0.0, 0.0);
    free(y), free(n), free(dm), free(dB), free(dA), free(dx);
    /* unmerge cannot recover a row whose magnitude is 0, and says so */
    dorac_tensor Wm, nt;
    CHECK_OK(dorac_tensor_alloc(be, &Wm, be->weight_type, c.out, c.in, "Wm"));
    CHECK_OK(dorac_tensor_alloc(be, &nt, be->param_type, 1, c.out, "n"));
    CHECK_OK(dorac_linear_merge(&f.L, &Wm));
    CHECK_OK(be->copy(be, &nt, &f.L.n));
    CHECK_STATUS(dorac_linear_unmerge(&f.L, &Wm, &nt), DORAC_E_INVALID);
    CHECK(strstr(dorac_last_error(), "row 0") != NULL);
    dorac_tensor_free(be, &Wm), dorac_tensor_free(be, &nt);
    fixture_free(&f);
}

/* PEFT's initialisation: the adapted layer equals the base at step 0. */
static void check_init_identity(dorac_backend *be) {
    fixture_case c = {"init", DORAC_METHOD_DORA, 17, 9, 5, 4, true, DORAC_NORM_GRAD_DETACH, 0, false};
    fixture f;
    CHECK_OK(fixture_init(&f, be, &c));
    CHECK_OK(dorac_linear_init_adapter(&f.L, 7, 3));
    double *A = fixture_get(&f, &f.tA), *B = fixture_get(&f, &f.tB), *m = fixture_get(&f, &f.tm);
    double bound = 1.0 / sqrt((double)c.in), amax = 0;
    for (int64_t i = 0; i < c.rank * c.in; i++) amax = fmax(amax, fabs(A[i]));
    CHECK(amax <= bound && amax > 0.5 * bound);
    for (int64_t i = 0; i < c.out * c.rank; i++) CHECK_NEAR(B[i], 0.0, 0.0);
    for (int64_t o = 0; o < c.out; o++) {
        double n0 = 0;
        for (int64_t j = 0; j < c.in; j++) n0 += f.W[o * c.in + j] * f.W[o * c.in + j];
        CHECK_NEAR(m[o], sqrt(n0), 1e-6 * sqrt(n0));
    }
    CHECK_OK(fixture_forward(&f));
    double *y = fixture_get(&f, &f.ty);
    double worst = 0;
    for (int64_t i = 0; i < c.N; i++)
        for (int64_t o = 0; o < c.out; o++) {
            double base = f.bias[o];
            for (int64_t j = 0; j < c.in; j++) base += f.x[i * c.in + j] * f.W[o * c.in + j];
            worst = test_worst(worst, fabs(base - y[i * c.out + o]));
        }
    CHECK_LE(worst, 1e-5);
    free(A), free(B), free(m), free(y);
    fixture_free(&f);
}

int main(void) {
    dorac_backend *be32 = dorac_backend_cpu_create((dorac_cpu_params){0});
    dorac_backend *be64 = dorac_backend_cpu64_create((dorac_cpu_params){0});
    const int D = DORAC_NORM_GRAD_DETACH, E = DORAC_NORM_GRAD_EXACT;
    const fixture_case cases[] = {
        {"dora odd",        DORAC_METHOD_DORA, 13, 7, 5, 3, true, D, 0, false},
        {"dora r1 exact",   DORAC_METHOD_DORA, 13, 7, 5, 1, false, E, 0, false},
        {"dora rslora",     DORAC_METHOD_DORA, 64, 48, 300, 8, true, E, 0, true},
        {"dora chunked",    DORAC_METHOD_DORA, 40, 33, 600, 5, true, D, 0, false},
        {"dora mag-only",   DORAC_METHOD_DORA, 13, 7, 5, 0, true, D, 0, false},
        {"lora",            DORAC_METHOD_LORA, 13, 7, 5, 3, true, D, 0, false},
        {"lora big",        DORAC_METHOD_LORA, 64, 48, 300, 8, false, D, 0, false},
        {"full",            DORAC_METHOD_FULL, 13, 7, 5, 0, true, D, 0, false},
        {"frozen",          DORAC_METHOD_FROZEN, 13, 7, 5, 0, true, D, 0, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_dense(be64, &cases[i], 1e-12);
        check_dense(be32, &cases[i], 1e-5);
        check_twin(be32, be64, &cases[i]);
        fixture_case in_place = cases[i];
        in_place.dz_in_place = true;
        check_twin(be32, be64, &in_place);
        if (cases[i].method != DORAC_METHOD_FULL) check_merge(be32, &cases[i]);
    }
    const fixture_case dropout = {"dora dropout", DORAC_METHOD_DORA, 40, 33, 600, 5, true, E, 0.25, false};
    check_twin(be32, be64, &dropout);
    check_zero_rows(be32);
    check_zero_rows(be64);
    check_init_identity(be32);
    dorac_backend_destroy(be32);
    dorac_backend_destroy(be64);
    return test_report();
}
