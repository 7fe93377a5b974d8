/*
** test_analysis.c — the weight-decomposition analysis (adapter/analysis.h,
** train/run_dir.h, train/analyze.h):
**   - ΔM / ΔD of one layer against a plain double computation on random
**     matrices: frozen/full (V = W), LoRA (V = W0 + sBA), DoRA (m and the
**     direction W0 + sBA built densely), DoRA at rank 0, all-zero rows, a
**     layer large enough to take several chunks; on the fp64 and fp32 CPU
**     backends;
**   - Pearson r and the least-squares line against hand-derived values and
**     an independent one-pass formula;
**   - end to end: DoRA, LoRA and full fine-tuning "runs" built by perturbing
**     the llama-gqa fixture and saving checkpoints as the trainer does, then
**     dorac_analyze_runs over them, every point compared with the plain
**     computation; the final-folder rules, the CSV and the SVG; the default
**     modules (c_attn on GPT-2); and the error cases.
*/
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter/analysis.h"
#include "core/rng.h"
#include "io/atomic_file.h"
#include "io/fsutil.h"
#include "model/model.h"
#include "test.h"
#include "train/analyze.h"
#include "train/run_dir.h"

#define FIX "tests/fixtures/models"

/* ---------------------------------------------------------------------- */
/* the plain reference                                                    */
/* ---------------------------------------------------------------------- */

/* ΔM and ΔD as the paper writes them: cos = <v,w> / (|v||w|), in double,
** one row at a time. mt == NULL: m_t = ||V row||. Zero rows count 0 to ΔD. */
static void reference(const double *W0, const double *V, const double *mt, int64_t out, int64_t in, double *dm,
                      double *dd) {
    double sm = 0, sd = 0;
    for (int64_t o = 0; o < out; o++) {
        const double *w = W0 + o * in, *v = V + o * in;
        double ww = 0, vv = 0, wv = 0;
        for (int64_t j = 0; j < in; j++) ww += w[j] * w[j], vv += v[j] * v[j], wv += w[j] * v[j];
        double m0 = sqrt(ww), nv = sqrt(vv);
        sm += fabs((mt ? mt[o] : nv) - m0);
        if (m0 > 0 && nv > 0) sd += 1 - wv / (m0 * nv);
    }
    *dm = sm / (double)out;
    *dd = sd / (double)out;
}

/* V = W0 + s B A, densely. */
static double *dense_direction(const double *W0, const double *A, const double *B, double s, int64_t out, int64_t in,
                               int64_t r) {
    double *V = malloc((size_t)(out * in) * sizeof *V);
    for (int64_t o = 0; o < out; o++)
        for (int64_t j = 0; j < in; j++) {
            double acc = 0;
            for (int64_t k = 0; k < r; k++) acc += B[o * r + k] * A[k * in + j];
            V[o * in + j] = W0[o * in + j] + s * acc;
        }
    return V;
}

static double *random_array(size_t n, uint64_t stream, double scale, double offset) {
    double *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = offset + scale * dorac_rng_normal(7, stream, i);
    return p;
}

/* ---------------------------------------------------------------------- */
/* one layer                                                              */
/* ---------------------------------------------------------------------- */

typedef enum { CASE_FROZEN, CASE_LORA, CASE_DORA, CASE_DORA_R0 } layer_case;

static void check_layer(dorac_backend *be, layer_case kind, int64_t out, int64_t in, int64_t r, bool zero_row,
                        double tol) {
    dorac_method method = kind == CASE_FROZEN ? DORAC_METHOD_FROZEN : kind == CASE_LORA ? DORAC_METHOD_LORA : DORAC_METHOD_DORA;
    if (kind == CASE_DORA_R0) r = 0;
    dorac_adapter_config cfg = {.method = method, .rank = kind == CASE_FROZEN ? 0 : (int)r, .alpha = 2.0 * (double)(r ? r : 1)};
    double *W0 = random_array((size_t)(out * in), 1, 0.1, 0.0);
    double *W = random_array((size_t)(out * in), 2, 0.1, 0.0); /* the trained weight, frozen case */
    double *A = random_array((size_t)(r * in) + 1, 3, 0.2, 0.0), *B = random_array((size_t)(out * r) + 1, 4, 0.05, 0.0);
    double *m = random_array((size_t)out, 5, 0.3, 1.0);
    for (int64_t j = 0; j < in; j++) W[j] = 0.3 * W0[j]; /* frozen case, row 0: same direction, shorter */
    if (zero_row) {                                        /* row 3 of W0 (and of sBA) all zeros: no direction */
        for (int64_t j = 0; j < in; j++) W0[3 * in + j] = 0;
        for (int64_t k = 0; k < r; k++) B[3 * r + k] = 0;
    }
    dorac_tensor tW0, tW, tA, tB, tm;
    dorac_dtype wt = be->weight_type, pt = be->param_type;
    CHECK_OK(dorac_tensor_alloc(be, &tW0, wt, out, in, "W0"));
    CHECK_OK(dorac_tensor_alloc(be, &tW, wt, out, in, "W"));
    CHECK_OK(be->upload(be, &tW0, W0, DORAC_DTYPE_F64));
    CHECK_OK(be->upload(be, &tW, kind == CASE_FROZEN ? W : W0, DORAC_DTYPE_F64));
    dorac_tensor none = dorac_tensor_none(pt);
    tA = tB = tm = none;
    if (r > 0 && kind != CASE_FROZEN) {
        CHECK_OK(dorac_tensor_alloc(be, &tA, pt, r, in, "A"));
        CHECK_OK(dorac_tensor_alloc(be, &tB, pt, out, r, "B"));
        CHECK_OK(be->upload(be, &tA, A, DORAC_DTYPE_F64));
        CHECK_OK(be->upload(be, &tB, B, DORAC_DTYPE_F64));
    }
    if (method == DORAC_METHOD_DORA) {
        CHECK_OK(dorac_tensor_alloc(be, &tm, pt, 1, out, "m"));
        CHECK_OK(be->upload(be, &tm, m, DORAC_DTYPE_F64));
    }
    dorac_linear_tensors t = {.W = tW, .bias = dorac_tensor_none(wt), .A = tA, .B = tB, .m = tm, .dA = none,
                              .dB = none, .dm = none, .dW = none, .dbias = none};
    dorac_linear L;
    CHECK_OK(dorac_linear_init(&L, be, &cfg, in, out, &t, "test layer"));

    /* the reference, from the double inputs (the backend rounds them to its type) */
    double s = dorac_adapter_scale(&cfg), want_m, want_d;
    double *V = kind == CASE_FROZEN ? W : kind == CASE_DORA_R0 ? W0 : dense_direction(W0, A, B, s, out, in, r);
    reference(W0, V, method == DORAC_METHOD_DORA ? m : NULL, out, in, &want_m, &want_d);

    dorac_decomp d;
    CHECK_OK(dorac_decomp_linear(&d, &L, &tW0));
    if (fabs(d.delta_d - want_d) > tol * want_d + 1e-14 || fabs(d.delta_m - want_m) > tol * want_m + 1e-14)
        fprintf(stderr, "case %d (%lld x %lld, r %lld) on %s: dM %.12g vs %.12g, dD %.12g vs %.12g\n", (int)kind,
                (long long)out, (long long)in, (long long)r, be->name, d.delta_m, want_m, d.delta_d, want_d);
    CHECK_NEAR(d.delta_m, want_m, tol * want_m + 1e-14);
    CHECK_NEAR(d.delta_d, want_d, tol * want_d + 1e-14);
    CHECK(d.rows == out);
    CHECK(d.zero_rows == (zero_row ? 1 : 0));
    if (kind == CASE_DORA_R0) CHECK(d.delta_d == 0.0);
    CHECK(d.delta_d >= 0 && d.delta_d <= 2);

    /* a base of the wrong shape is refused */
    dorac_tensor wrong = dorac_tensor_rows(&tW0, 0, out - 1);
    CHECK_STATUS(dorac_decomp_linear(&d, &L, &wrong), DORAC_E_INVALID);

    if (V != W && V != W0) free(V);
    dorac_linear_free(&L);
    dorac_tensor *all[] = {&tW0, &tW, &tA, &tB, &tm};
    for (size_t i = 0; i < 5; i++) dorac_tensor_free(be, all[i]);
    free(W0), free(W), free(A), free(B), free(m);
}

/* A tiny angle: 1 - cos ~ 1e-12 must come out with its digits, which the
** naive 1 - <v,w>/(|v||w|) loses to cancellation. */
static void check_tiny_angle(dorac_backend *be64) {
    const int64_t out = 4, in = 64;
    double *W0 = random_array((size_t)(out * in), 11, 1.0, 0.0), *W = malloc((size_t)(out * in) * sizeof *W);
    double *dir = random_array((size_t)(out * in), 12, 1.0, 0.0);
    double eps = 1e-6, want = 0;
    for (int64_t o = 0; o < out; o++) {
        /* W = W0 + eps * u with u orthogonal to W0 row, |u| = |W0 row|: tan(angle) = eps */
        double ww = 0, wu = 0, uu = 0;
        for (int64_t j = 0; j < in; j++) ww += W0[o * in + j] * W0[o * in + j], wu += W0[o * in + j] * dir[o * in + j];
        for (int64_t j = 0; j < in; j++) dir[o * in + j] -= wu / ww * W0[o * in + j];
        for (int64_t j = 0; j < in; j++) uu += dir[o * in + j] * dir[o * in + j];
        for (int64_t j = 0; j < in; j++) W[o * in + j] = W0[o * in + j] + eps * sqrt(ww / uu) * dir[o * in + j];
        want += eps * eps / 2 - 3 * pow(eps, 4) / 8; /* 1 - 1/sqrt(1 + eps^2), without its cancellation */
    }
    want /= (double)out;
    dorac_tensor tW0, tW;
    CHECK_OK(dorac_tensor_alloc(be64, &tW0, be64->weight_type, out, in, "W0"));
    CHECK_OK(dorac_tensor_alloc(be64, &tW, be64->weight_type, out, in, "W"));
    CHECK_OK(be64->upload(be64, &tW0, W0, DORAC_DTYPE_F64));
    CHECK_OK(be64->upload(be64, &tW, W, DORAC_DTYPE_F64));
    dorac_adapter_config cfg = {.method = DORAC_METHOD_FROZEN};
    dorac_tensor none = dorac_tensor_none(be64->param_type);
    dorac_linear_tensors t = {.W = tW, .bias = dorac_tensor_none(be64->weight_type), .A = none, .B = none, .m = none,
                              .dA = none, .dB = none, .dm = none, .dW = none, .dbias = none};
    dorac_linear L;
    CHECK_OK(dorac_linear_init(&L, be64, &cfg, in, out, &t, "tiny"));
    dorac_decomp d;
    CHECK_OK(dorac_decomp_linear(&d, &L, &tW0));
    CHECK_NEAR(d.delta_d, want, 1e-6 * want); /* want = 5e-13 */
    dorac_linear_free(&L);
    dorac_tensor_free(be64, &tW0), dorac_tensor_free(be64, &tW);
    free(W0), free(W), free(dir);
}

/* ---------------------------------------------------------------------- */
/* statistics                                                             */
/* ---------------------------------------------------------------------- */

/* r by the one-pass textbook formula, independent of the library's two-pass one */
static double pearson_one_pass(const double *x, const double *y, size_t n) {
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0, N = (double)n;
    for (size_t i = 0; i < n; i++) sx += x[i], sy += y[i], sxx += x[i] * x[i], syy += y[i] * y[i], sxy += x[i] * y[i];
    return (N * sxy - sx * sy) / sqrt((N * sxx - sx * sx) * (N * syy - sy * sy));
}

static void check_stats(void) {
    double x[5] = {1, 2, 3, 4, 5}, up[5], down[5], c[5] = {2, 2, 2, 2, 2};
    for (int i = 0; i < 5; i++) up[i] = 3 * x[i] + 1, down[i] = -0.5 * x[i] + 7;
    CHECK_NEAR(dorac_stats_pearson(x, up, 5), 1.0, 1e-15);
    CHECK_NEAR(dorac_stats_pearson(x, down, 5), -1.0, 1e-15);
    CHECK(isnan(dorac_stats_pearson(x, c, 5)));
    CHECK(isnan(dorac_stats_pearson(c, x, 5)));
    CHECK(isnan(dorac_stats_pearson(x, up, 1)));
    /* by hand: mean x 3, mean y 4; Sxy = 6, Sxx = 10, Syy = 6: r = 6/sqrt(60), slope 0.6, intercept 2.2 */
    double y[5] = {2, 4, 5, 4, 5};
    CHECK_NEAR(dorac_stats_pearson(x, y, 5), 6 / sqrt(60.0), 1e-15);
    CHECK_NEAR(dorac_stats_pearson(x, y, 5), pearson_one_pass(x, y, 5), 1e-14);
    double a = 0, b = 0;
    CHECK(dorac_stats_fit_line(x, y, 5, &a, &b));
    CHECK_NEAR(b, 0.6, 1e-15);
    CHECK_NEAR(a, 2.2, 1e-14);
    CHECK(!dorac_stats_fit_line(c, y, 5, &a, &b));
    CHECK(!dorac_stats_fit_line(x, y, 1, &a, &b));
    /* symmetric in its arguments, invariant to affine maps with positive scale */
    double xs[40], ys[40], xt[40];
    for (int i = 0; i < 40; i++) {
        xs[i] = dorac_rng_normal(3, 1, (uint64_t)i);
        ys[i] = 0.3 * xs[i] + dorac_rng_normal(3, 2, (uint64_t)i);
        xt[i] = 1e-5 * xs[i] + 0.02; /* ΔD-sized values */
    }
    double r = dorac_stats_pearson(xs, ys, 40);
    CHECK_NEAR(r, pearson_one_pass(xs, ys, 40), 1e-12);
    CHECK_NEAR(dorac_stats_pearson(ys, xs, 40), r, 1e-15);
    CHECK_NEAR(dorac_stats_pearson(xt, ys, 40), r, 1e-9);
}

/* ---------------------------------------------------------------------- */
/* end to end: runs on the llama-gqa fixture                              */
/* ---------------------------------------------------------------------- */

#define MAX_CKPTS 4
#define MAX_LAYERS 8

/* What the test expects for one run: per checkpoint, per analysed layer. */
typedef struct expected_run {
    char dir[600];
    size_t n_ckpts;
    int64_t steps[MAX_CKPTS];
    size_t n_layers;
    char layers[MAX_LAYERS][96];
    double dm[MAX_CKPTS][MAX_LAYERS], dd[MAX_CKPTS][MAX_LAYERS];
} expected_run;

static bool is_qv(const char *short_name) { return !strcmp(short_name, "q_proj") || !strcmp(short_name, "v_proj"); }

static bool select_qv(void *ctx, const char *path, const char *short_name, dorac_adapter_config *cfg) {
    (void)ctx, (void)path;
    cfg->rank = 4;
    cfg->alpha = 8;
    return is_qv(short_name);
}

static bool select_c_attn(void *ctx, const char *path, const char *short_name, dorac_adapter_config *cfg) {
    (void)ctx, (void)path;
    cfg->rank = 2;
    cfg->alpha = 4;
    return !strcmp(short_name, "c_attn");
}

static double *download(dorac_backend *be, const dorac_tensor *t) {
    double *h = malloc((size_t)(t->rows * t->cols) * sizeof *h);
    CHECK_OK(be->download(be, h, DORAC_DTYPE_F64, t));
    return h;
}

/* Adds amount * noise to every trainable tensor of m (B, A and m of each
** adapted linear); magnitudes move by a relative amount. */
static void perturb_adapters(dorac_model *m, uint64_t stream, double amount) {
    dorac_backend *be = dorac_model_backend(m);
    dorac_trainable tr[64];
    size_t n = dorac_model_trainables(m, tr, 64);
    for (size_t i = 0; i < n && i < 64; i++) {
        double *h = download(be, tr[i].value);
        size_t cnt = (size_t)(tr[i].value->rows * tr[i].value->cols);
        bool magnitude = strstr(tr[i].name, "magnitude") != NULL;
        for (size_t k = 0; k < cnt; k++) {
            double z = dorac_rng_normal(stream, i, k);
            h[k] = magnitude ? h[k] * (1 + 0.2 * amount * z) : h[k] + amount * z;
        }
        CHECK_OK(be->upload(be, tr[i].value, h, DORAC_DTYPE_F64));
        free(h);
    }
}

/* The plain reference for every adapted q/v linear of m, into run->dm/dd[c]. */
static void expect_adapters(expected_run *run, size_t c, dorac_model *m, bool qv_only) {
    dorac_backend *be = dorac_model_backend(m);
    run->n_layers = 0;
    for (size_t i = 0; i < dorac_model_n_linears(m); i++) {
        dorac_model_linear *l = dorac_model_linear_at(m, i);
        if (l->L.cfg.method == DORAC_METHOD_FROZEN || (qv_only && !is_qv(l->short_name))) continue;
        int64_t r = l->L.cfg.rank;
        double *W0 = download(be, &l->L.t.W), *A = download(be, &l->A), *B = download(be, &l->B);
        bool dora = l->L.cfg.method == DORAC_METHOD_DORA;
        double *mv = dora ? download(be, &l->m) : NULL;
        double *V = dense_direction(W0, A, B, l->L.scale, l->out, l->in, r);
        size_t k = run->n_layers++;
        snprintf(run->layers[k], sizeof run->layers[k], "%s", l->path);
        reference(W0, V, mv, l->out, l->in, &run->dm[c][k], &run->dd[c][k]);
        free(W0), free(A), free(B), free(mv), free(V);
    }
}

static void write_metrics(const char *dir, int64_t last_step) {
    char path[700], text[256];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    snprintf(text, sizeof text, "{\"step\": 1, \"loss\": 3.5, \"lr\": 1e-4}\n{\"step\": %lld, \"loss\": 3.0, \"lr\": 1e-4}\n",
             (long long)last_step);
    CHECK_OK(dorac_atomic_write(path, text, strlen(text)));
}

/* An adapter run: checkpoints at 10, 20, 30 and a final adapter/ at
** final_step (== 30: the same weights as checkpoint-30, left out). */
static void make_adapter_run(dorac_backend *be, expected_run *run, const char *root, const char *name,
                             dorac_method method, int64_t final_step) {
    snprintf(run->dir, sizeof run->dir, "%s/%s", root, name);
    CHECK_OK(dorac_mkdir_p(run->dir));
    dorac_model *m = NULL;
    CHECK_OK(dorac_model_load(&m, be, FIX "/llama-gqa"));
    if (!m) return;
    CHECK_OK(dorac_model_set_method(m, method, select_qv, NULL, 5));
    char dir[800];
    run->n_ckpts = 0;
    for (int k = 1; k <= 3; k++) {
        perturb_adapters(m, (uint64_t)(100 * method + k), 0.02);
        snprintf(dir, sizeof dir, "%s/checkpoint-%d", run->dir, 10 * k);
        CHECK_OK(dorac_model_save_adapter(m, dir, FIX "/llama-gqa"));
        run->steps[run->n_ckpts] = 10 * k;
        expect_adapters(run, run->n_ckpts++, m, true);
    }
    if (final_step != 30) perturb_adapters(m, (uint64_t)(100 * method + 9), 0.02);
    snprintf(dir, sizeof dir, "%s/adapter", run->dir);
    CHECK_OK(dorac_model_save_adapter(m, dir, FIX "/llama-gqa"));
    write_metrics(run->dir, final_step);
    if (final_step != 30) {
        run->steps[run->n_ckpts] = final_step;
        expect_adapters(run, run->n_ckpts++, m, true);
    }
    dorac_model_free(m);
}

/* A full fine-tuning run: checkpoint-5 and checkpoint-15 with every weight
** moved (q/v and the others, which must be ignored), no final folder. */
static void make_full_run(dorac_backend *be, expected_run *run, const char *root) {
    snprintf(run->dir, sizeof run->dir, "%s/full", root);
    CHECK_OK(dorac_mkdir_p(run->dir));
    dorac_model *base = NULL, *m = NULL;
    CHECK_OK(dorac_model_load(&base, be, FIX "/llama-gqa"));
    CHECK_OK(dorac_model_load(&m, be, FIX "/llama-gqa"));
    if (!base || !m) return;
    run->n_ckpts = 0;
    for (int k = 1; k <= 2; k++) {
        for (size_t i = 0; i < dorac_model_n_params(m); i++) {
            dorac_model_param *p = dorac_model_param_at(m, i);
            double *h = download(be, &p->w);
            for (int64_t j = 0; j < p->w.rows * p->w.cols; j++) h[j] *= 1 + 0.05 * dorac_rng_normal(900 + (uint64_t)k, i, (uint64_t)j);
            CHECK_OK(be->upload(be, &p->w, h, DORAC_DTYPE_F64));
            free(h);
        }
        char dir[800];
        snprintf(dir, sizeof dir, "%s/checkpoint-%d", run->dir, 10 * k - 5);
        CHECK_OK(dorac_model_save(m, dir, DORAC_DTYPE_F32, FIX "/llama-gqa", (size_t)1 << 30));
        size_t c = run->n_ckpts++;
        run->steps[c] = 10 * k - 5;
        run->n_layers = 0;
        for (size_t i = 0; i < dorac_model_n_linears(m); i++) {
            dorac_model_linear *l = dorac_model_linear_at(m, i), *bl = dorac_model_linear_at(base, i);
            if (!is_qv(l->short_name)) continue;
            double *W0 = download(be, &bl->L.t.W), *W = download(be, &l->L.t.W);
            size_t n = run->n_layers++;
            snprintf(run->layers[n], sizeof run->layers[n], "%s", l->path);
            reference(W0, W, NULL, l->out, l->in, &run->dm[c][n], &run->dd[c][n]);
            free(W0), free(W);
        }
    }
    dorac_model_free(m);
    dorac_model_free(base);
}

static size_t count_occurrences(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void check_result(const dorac_analyze_result *res, const expected_run *runs, size_t n_runs) {
    CHECK(res->n_runs == n_runs);
    size_t want_points = 0;
    for (size_t r = 0; r < n_runs && r < res->n_runs; r++) {
        CHECK(res->runs[r].n_ckpts == runs[r].n_ckpts);
        for (size_t c = 0; c < runs[r].n_ckpts && c < res->runs[r].n_ckpts; c++)
            CHECK(res->runs[r].ckpts[c].step == runs[r].steps[c]);
        want_points += runs[r].n_ckpts * runs[r].n_layers;
    }
    CHECK(res->n_points == want_points);
    size_t matched = 0;
    for (size_t i = 0; i < res->n_points; i++) {
        const dorac_analyze_point *pt = &res->points[i];
        if (pt->run >= n_runs) continue;
        const expected_run *er = &runs[pt->run];
        for (size_t k = 0; k < er->n_layers; k++) {
            if (strcmp(er->layers[k], pt->layer) != 0) continue;
            double wm = er->dm[pt->ckpt][k], wd = er->dd[pt->ckpt][k];
            /* V is formed in fp32 on the CPU backend; the reference is double throughout */
            CHECK_NEAR(pt->d.delta_m, wm, 2e-5 * wm + 1e-9);
            CHECK_NEAR(pt->d.delta_d, wd, 2e-4 * wd + 1e-9);
            matched++;
        }
    }
    CHECK(matched == res->n_points);
}

static void check_end_to_end(dorac_backend *be, const char *root) {
    expected_run runs[3];
    memset(runs, 0, sizeof runs);
    make_adapter_run(be, &runs[0], root, "dora", DORAC_METHOD_DORA, 30); /* final == checkpoint-30 */
    make_adapter_run(be, &runs[1], root, "lora", DORAC_METHOD_LORA, 40); /* final at step 40 */
    make_full_run(be, &runs[2], root);
    /* debris the scan must ignore */
    char path[900];
    snprintf(path, sizeof path, "%s/dora/.checkpoint-40.tmp-123-0", root);
    CHECK(mkdir(path, 0777) == 0);
    snprintf(path, sizeof path, "%s/dora/checkpoint-final", root);
    CHECK(mkdir(path, 0777) == 0);
    snprintf(path, sizeof path, "%s/lora/checkpoint-7.txt", root);
    CHECK_OK(dorac_atomic_write(path, "x", 1));

    const char *dirs[3] = {runs[0].dir, runs[1].dir, runs[2].dir};
    dorac_analyze_params p = {.be = be, .base_dir = FIX "/llama-gqa", .run_dirs = dirs, .n_runs = 3};
    dorac_analyze_result res;
    CHECK_OK(dorac_analyze_runs(&res, &p));
    CHECK(!strcmp(res.modules, "q_proj,v_proj"));
    CHECK(res.n_runs == 3 && res.runs[0].method == DORAC_METHOD_DORA && res.runs[1].method == DORAC_METHOD_LORA &&
          res.runs[2].method == DORAC_METHOD_FULL);
    CHECK(res.runs[1].n_ckpts == 4 && res.runs[1].ckpts[3].final && !strcmp(res.runs[1].ckpts[3].name, "adapter"));
    CHECK(res.runs[0].n_ckpts == 3 && !res.runs[0].ckpts[2].final);
    CHECK(runs[0].n_layers == 4 && runs[2].n_layers == 4); /* 2 layers x (q, v) */
    check_result(&res, runs, 3);

    /* fits: per run and per method agree when each method has one run */
    for (size_t r = 0; r < 3; r++) {
        dorac_analyze_fit fr = dorac_analyze_fit_run(&res, r), fm = dorac_analyze_fit_method(&res, res.runs[r].method);
        CHECK(fr.n == runs[r].n_ckpts * runs[r].n_layers && fr.n == fm.n);
        CHECK(fr.r >= -1 && fr.r <= 1);
        CHECK(fr.r == fm.r);
        double x[32], y[32];
        size_t n = 0;
        for (size_t i = 0; i < res.n_points; i++)
            if (res.points[i].run == r) x[n] = res.points[i].d.delta_d, y[n] = res.points[i].d.delta_m, n++;
        CHECK_NEAR(fr.r, pearson_one_pass(x, y, n), 1e-9);
    }
    CHECK(dorac_analyze_fit_method(&res, DORAC_METHOD_FROZEN).n == 0);
    CHECK(dorac_analyze_fit_run(&res, 99).n == 0);

    /* CSV: a header and one line per point; SVG: one marker per point */
    char csv[900], *text = NULL;
    size_t n = 0;
    snprintf(csv, sizeof csv, "%s/out.csv", root);
    CHECK_OK(dorac_analyze_write_csv(&res, csv));
    CHECK_OK(dorac_read_file(csv, 1 << 20, &text, &n));
    if (text) {
        const char *header = "run,method,checkpoint,step,layer,module,delta_m,delta_d\n";
        CHECK(!strncmp(text, header, strlen(header)));
        CHECK(count_occurrences(text, "\n") == res.n_points + 1);
        CHECK(strstr(text, ",lora,adapter,40,model.layers.1.self_attn.v_proj,v_proj,") != NULL);
        CHECK(strstr(text, ",full,checkpoint-15,15,model.layers.0.self_attn.q_proj,q_proj,") != NULL);
        free(text);
    }
    dorac_svg svg;
    CHECK_OK(dorac_analyze_plot(&svg, &res));
    if (svg.buf) {
        CHECK(count_occurrences(svg.buf, "class=\"point\"") == res.n_points);
        CHECK(count_occurrences(svg.buf, "class=\"fit\"") == 3);
        CHECK(strstr(svg.buf, "DoRA (r = ") && strstr(svg.buf, "LoRA (r = ") && strstr(svg.buf, "FT (r = "));
        CHECK(count_occurrences(svg.buf, "<g ") == count_occurrences(svg.buf, "</g>"));
        CHECK(strstr(svg.buf, "</svg>\n") != NULL);
    }
    dorac_svg_free(&svg);
    dorac_analyze_result_free(&res);

    /* one run at a time with explicit modules: a path suffix selects one layer */
    p.run_dirs = &dirs[1];
    p.n_runs = 1;
    p.modules = "layers.1.self_attn.q_proj";
    CHECK_OK(dorac_analyze_runs(&res, &p));
    CHECK(res.n_points == runs[1].n_ckpts);
    for (size_t i = 0; i < res.n_points; i++) CHECK(!strcmp(res.points[i].layer, "model.layers.1.self_attn.q_proj"));
    dorac_analyze_result_free(&res);

    /* ---- errors ---- */
    p.modules = "no_such_proj";
    CHECK_STATUS(dorac_analyze_runs(&res, &p), DORAC_E_INVALID);
    CHECK(strstr(dorac_last_error(), "no_such_proj") != NULL);
    p.modules = "o_proj"; /* exists in the model, but the adapter does not adapt it */
    CHECK_STATUS(dorac_analyze_runs(&res, &p), DORAC_E_FORMAT);
    CHECK(strstr(dorac_last_error(), "adapts none") != NULL);
    p.modules = "o_proj"; /* ... while full fine-tuning has every layer */
    p.run_dirs = &dirs[2];
    CHECK_OK(dorac_analyze_runs(&res, &p));
    CHECK(res.n_points == 2 * 2);
    dorac_analyze_result_free(&res);
    p.modules = NULL;
    const char *missing[1] = {"/nonexistent/run"};
    p.run_dirs = missing;
    CHECK_STATUS(dorac_analyze_runs(&res, &p), DORAC_E_IO);
    CHECK(res.n_points == 0 && res.runs == NULL);
    char empty[900];
    snprintf(empty, sizeof empty, "%s/empty", root);
    CHECK_OK(dorac_mkdir_p(empty));
    const char *empties[1] = {empty};
    p.run_dirs = empties;
    CHECK_STATUS(dorac_analyze_runs(&res, &p), DORAC_E_FORMAT);
    CHECK(strstr(dorac_last_error(), "no checkpoint") != NULL);
    /* a LoRA checkpoint inside the DoRA run */
    char src[900], dst[800];
    snprintf(dst, sizeof dst, "%.700s/dora/checkpoint-25", root);
    CHECK_OK(dorac_mkdir_p(dst));
    const char *files[2] = {"adapter_config.json", "adapter_model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/lora/checkpoint-10/%s", root, files[i]);
        snprintf(path, sizeof path, "%s/%s", dst, files[i]);
        CHECK_OK(dorac_atomic_copy_file(src, path));
    }
    p.run_dirs = &dirs[0];
    CHECK_STATUS(dorac_analyze_runs(&res, &p), DORAC_E_FORMAT);
    CHECK(strstr(dorac_last_error(), "one method") != NULL);
    /* a checkpoint with neither an adapter nor weights */
    snprintf(path, sizeof path, "%s/dora/checkpoint-25/adapter_config.json", root);
    CHECK(unlink(path) == 0);
    CHECK_STATUS(dorac_analyze_runs(&res, &p), DORAC_E_FORMAT);
    CHECK(strstr(dorac_last_error(), "checkpoint-25") != NULL);
}

/* GPT-2 has no q_proj/v_proj: the default is its fused c_attn. */
static void check_gpt2_default(dorac_backend *be, const char *root) {
    char dir[800];
    snprintf(dir, sizeof dir, "%s/gpt2run/checkpoint-3", root);
    dorac_model *m = NULL;
    CHECK_OK(dorac_model_load(&m, be, FIX "/gpt2"));
    if (!m) return;
    CHECK_OK(dorac_model_set_method(m, DORAC_METHOD_LORA, select_c_attn, NULL, 1));
    perturb_adapters(m, 77, 0.05);
    CHECK_OK(dorac_model_save_adapter(m, dir, FIX "/gpt2"));
    expected_run er;
    memset(&er, 0, sizeof er);
    expect_adapters(&er, 0, m, false);
    er.n_ckpts = 1;
    er.steps[0] = 3;
    snprintf(dir, sizeof dir, "%s/gpt2run", root);
    const char *dirs[1] = {dir};
    dorac_analyze_params p = {.be = be, .base_dir = FIX "/gpt2", .run_dirs = dirs, .n_runs = 1};
    dorac_analyze_result res;
    CHECK_OK(dorac_analyze_runs(&res, &p));
    CHECK(!strcmp(res.modules, "c_attn"));
    CHECK(res.n_points == (size_t)dorac_model_get_config(m)->n_layers);
    check_result(&res, &er, 1);
    dorac_analyze_result_free(&res);
    dorac_model_free(m);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Removes the test's own temp folder (named /tmp/dorac-analysis-XXXXXX). */
static void remove_tree(const char *root) {
    if (strncmp(root, "/tmp/dorac-analysis-", 20) != 0) return;
    if (nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) fprintf(stderr, "could not remove %s\n", root);
}

int main(void) {
    dorac_backend *be64 = dorac_backend_cpu64_create((dorac_cpu_params){0});
    dorac_backend *be32 = dorac_backend_cpu_create((dorac_cpu_params){0});
    CHECK(be64 && be32);
    if (!be64 || !be32) return test_report();

    const layer_case cases[4] = {CASE_FROZEN, CASE_LORA, CASE_DORA, CASE_DORA_R0};
    for (int i = 0; i < 4; i++) {
        check_layer(be64, cases[i], 37, 29, 5, false, 1e-11);
        check_layer(be64, cases[i], 23, 41, 3, true, 1e-11);
        check_layer(be32, cases[i], 37, 29, 5, false, 1e-4);
    }
    /* several chunks: in = 4097 gives chunks of 1023 rows */
    check_layer(be32, CASE_LORA, 1100, 4097, 2, false, 1e-4);
    check_layer(be32, CASE_DORA, 1100, 4097, 2, true, 1e-4);
    check_tiny_angle(be64);
    check_stats();

    char tmpl[] = "/tmp/dorac-analysis-XXXXXX";
    char *root = mkdtemp(tmpl);
    CHECK(root != NULL);
    if (root) {
        check_end_to_end(be32, root);
        check_gpt2_default(be32, root);
        remove_tree(root);
    }
    dorac_backend_destroy(be64);
    dorac_backend_destroy(be32);
    return test_report();
}
