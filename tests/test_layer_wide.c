/*
** test_layer_wide.c — the backward with the adapter's dx in the base GEMM
** (dorac_linear_backward_ex with dz_spare, A_w right after W's rows) gives
** what the plain backward gives: y, dx, dA, dB and dm of the same layer,
** built once as the tests' fixture does and once with the copies A_w and
** B_w and a dz whose rows have spare columns.
**
** The plain path is the slow twin here: dx = dz W0, then dx += du A as a
** product of its own. The fp32 CPU backend runs both, so they must agree
** to fp32 rounding (the sums are ordered differently).
**
** Also: the spare columns hold s dz B afterwards, the columns past them
** are untouched, a dz whose ld leaves fewer than r columns is refused, and
** with dropout (where dz_spare changes nothing) the results still match.
** Where the wide path must run (no dropout, detached norm) A itself is NaN
** during the backward, which only the plain path reads; every case runs
** with dx overwritten and with dx accumulated into.
*/
#include <math.h>
#include <string.h>

#include "layer_fixture.h"
#include "test.h"

enum { SPARE = 24 }; /* more than any rank below: the columns past r stay put */
static const double SENTINEL = 777.0;

typedef struct results {
    double *y, *dx, *dA, *dB, *dm;
} results;

static void results_free(results *r) { free(r->y), free(r->dx), free(r->dA), free(r->dB), free(r->dm); }

static double rel_err(const double *got, const double *want, size_t n) {
    double num = 0, den = 1e-300;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(want[i])) return INFINITY; /* test_worst keeps only NaN */
        num = test_worst(num, fabs(got[i] - want[i])), den = fmax(den, fabs(want[i]));
    }
    return num / den;
}

/* dx's values before a backward that accumulates into it */
static void fill_dx(fixture *f) {
    size_t n = (size_t)(f->c.N * f->c.in);
    double *h = malloc(n * sizeof *h);
    for (size_t k = 0; k < n; k++) h[k] = 0.25 * sin(0.1 * (double)k);
    CHECK_OK(f->be->upload(f->be, &f->tdx, h, DORAC_DTYPE_F64));
    free(h);
}

/* The plain layer: the fixture's own forward and backward (dz written over
** dy when dz_in_place, else the layer's chunked internal scratch). */
static void run_plain(dorac_backend *be, const fixture_case *c, bool acc, results *out) {
    fixture f;
    CHECK_OK(fixture_init(&f, be, c));
    CHECK_OK(fixture_forward(&f));
    if (acc) {
        CHECK_OK(fixture_zero_grads(&f));
        fill_dx(&f);
        const dorac_tensor *dz = c->dz_in_place ? &f.tdy : NULL;
        CHECK_OK(dorac_linear_backward(&f.L, &f.tdx, true, &f.tdy, dz, &f.tx, &f.ty, &f.tu, 1234));
    } else {
        CHECK_OK(fixture_backward(&f));
    }
    out->y = fixture_get(&f, &f.ty);
    out->dx = fixture_get(&f, &f.tdx);
    out->dA = fixture_get(&f, &f.tdA);
    out->dB = fixture_get(&f, &f.tdB);
    out->dm = f.tdm.data ? fixture_get(&f, &f.tdm) : NULL;
    fixture_free(&f);
}

/* The same layer with W extended by r rows holding A_w, B_w, and dy (dz in
** place for DoRA with dz_in_place) of ld out + SPARE. */
static void run_wide(dorac_backend *be, const fixture_case *c, bool acc, results *out) {
    fixture f;
    CHECK_OK(fixture_init(&f, be, c));
    int64_t in = c->in, out_ = c->out, N = c->N, r = c->rank;
    dorac_linear_free(&f.L);
    dorac_tensor Wx, Bw, dyw;
    CHECK_OK(dorac_tensor_alloc(be, &Wx, be->weight_type, out_ + r, in, "W extended"));
    CHECK_OK(dorac_tensor_alloc(be, &Bw, be->weight_type, out_, r, "B copy"));
    CHECK_OK(dorac_tensor_alloc(be, &dyw, be->act_type, N, out_ + SPARE, "wide dy"));
    dorac_tensor W = dorac_tensor_rows(&Wx, 0, out_), Aw = dorac_tensor_rows(&Wx, out_, r);
    CHECK_OK(be->copy(be, &W, &f.tW));
    CHECK_OK(be->fill(be, &Aw, NAN)); /* stale until the forward refreshes it */
    CHECK_OK(be->fill(be, &Bw, NAN));
    dorac_adapter_config cfg = {.method = c->method, .rank = c->rank, .alpha = 1.7 * c->rank,
                                .use_rslora = c->rslora, .dropout = c->dropout, .norm_grad = c->norm_grad};
    dorac_linear_tensors t = {.W = W, .bias = f.tbias, .A = f.tA, .B = f.tB, .m = f.tm, .dA = f.tdA,
                              .dB = f.tdB, .dm = f.tdm, .dW = f.tdW, .dbias = f.tdbias, .A_w = Aw, .B_w = Bw};
    CHECK_OK(dorac_linear_init(&f.L, be, &cfg, in, out_, &t, c->name));
    f.L.dropout_stream = 99;
    CHECK_OK(fixture_forward(&f));
    CHECK_OK(fixture_zero_grads(&f));
    if (acc) fill_dx(&f);
    /* the wide path reads A only through A_w, which the forward refreshed */
    bool must_be_wide = c->dropout == 0.0 && c->norm_grad != DORAC_NORM_GRAD_EXACT;
    if (must_be_wide) CHECK_OK(be->fill(be, &f.tA, NAN));

    /* dy in the first out columns, the sentinel in the SPARE after them */
    double *h = malloc((size_t)(N * (out_ + SPARE)) * sizeof *h);
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < out_ + SPARE; j++) h[i * (out_ + SPARE) + j] = j < out_ ? f.R[i * out_ + j] : SENTINEL;
    CHECK_OK(be->upload(be, &dyw, h, DORAC_DTYPE_F64));
    dorac_tensor dy = dyw;
    dy.cols = out_;
    const dorac_tensor *dz = c->dz_in_place ? &dy : NULL;
    /* DoRA with its own chunked dz scratch goes wide without being told:
    ** that scratch always has the spare columns */
    bool spare = c->method == DORAC_METHOD_LORA || c->dz_in_place;
    CHECK_OK(dorac_linear_backward_ex(&f.L, &f.tdx, acc, &dy, dz, &f.tx, &f.ty, &f.tu, 1234, spare));
    out->y = fixture_get(&f, &f.ty);
    out->dx = fixture_get(&f, &f.tdx);
    out->dA = fixture_get(&f, &f.tdA);
    out->dB = fixture_get(&f, &f.tdB);
    out->dm = f.tdm.data ? fixture_get(&f, &f.tdm) : NULL;

    /* where dz is dy (LoRA, or DoRA in place) and no dropout: the spare
    ** columns hold s dz B; past them nothing moved */
    CHECK_OK(be->download(be, h, DORAC_DTYPE_F64, &dyw));
    bool spare_used = c->dropout == 0.0 && (c->method == DORAC_METHOD_LORA || c->dz_in_place);
    size_t written = 0, past = 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = out_; j < out_ + SPARE; j++) {
            double v = h[i * (out_ + SPARE) + j];
            if (j < out_ + r) written += v != SENTINEL;
            else past += v != SENTINEL;
        }
    if (spare_used) CHECK(written == (size_t)(N * r));
    else CHECK(written == 0);
    CHECK(past == 0);

    /* a dz whose ld leaves fewer than r spare columns */
    if (c->method == DORAC_METHOD_LORA || c->dz_in_place) {
        dorac_tensor narrow;
        CHECK_OK(dorac_tensor_alloc(be, &narrow, be->act_type, N, out_ + r - 1, "narrow dy"));
        CHECK_OK(be->fill(be, &narrow, 0.0));
        dorac_tensor nd = narrow;
        nd.cols = out_;
        int rc = dorac_linear_backward_ex(&f.L, &f.tdx, false, &nd, c->dz_in_place ? &nd : NULL, &f.tx, &f.ty,
                                          &f.tu, 1234, true);
        CHECK(rc == DORAC_E_INVALID && strstr(dorac_last_error(), "spare columns"));
        dorac_error_clear();
        dorac_tensor_free(be, &narrow);
    }
    free(h);
    dorac_tensor_free(be, &Wx), dorac_tensor_free(be, &Bw), dorac_tensor_free(be, &dyw);
    fixture_free(&f);
}

int main(void) {
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){.n_threads = 2});
    /* name, method, in, out, N, rank, bias, norm_grad, dropout, rslora, dz_in_place */
    const fixture_case cases[] = {
        {"lora", DORAC_METHOD_LORA, 72, 56, 300, 8, false, 0, 0, false, false},
        {"lora rank 3 bias", DORAC_METHOD_LORA, 40, 64, 90, 3, true, 0, 0, false, false},
        {"dora in place", DORAC_METHOD_DORA, 72, 56, 300, 8, false, DORAC_NORM_GRAD_DETACH, 0, false, true},
        {"dora exact in place", DORAC_METHOD_DORA, 48, 40, 70, 16, true, DORAC_NORM_GRAD_EXACT, 0, false, true},
        /* the layer's own chunked dz scratch (N > DORAC_LINEAR_CHUNK_ROWS): wide too */
        {"dora own scratch", DORAC_METHOD_DORA, 64, 48, 600, 8, false, DORAC_NORM_GRAD_DETACH, 0, false, false},
        /* dropout: dz_spare changes nothing */
        {"dora dropout in place", DORAC_METHOD_DORA, 64, 48, 120, 8, false, DORAC_NORM_GRAD_DETACH, 0.2, false, true},
        {"lora dropout", DORAC_METHOD_LORA, 64, 48, 120, 8, false, 0, 0.2, false, false},
    };
    for (size_t i = 0; i < 2 * (sizeof cases / sizeof cases[0]); i++) {
        const fixture_case *c = &cases[i / 2];
        bool acc = i % 2;
        results a = {0}, b = {0};
        run_plain(be, c, acc, &a);
        run_wide(be, c, acc, &b);
        double e[5] = {
            rel_err(b.y, a.y, (size_t)(c->N * c->out)), rel_err(b.dx, a.dx, (size_t)(c->N * c->in)),
            rel_err(b.dA, a.dA, (size_t)(c->rank * c->in)), rel_err(b.dB, a.dB, (size_t)(c->out * c->rank)),
            a.dm ? rel_err(b.dm, a.dm, (size_t)c->out) : 0.0,
        };
        double worst = 0;
        for (int k = 0; k < 5; k++) worst = fmax(worst, e[k]);
        printf("%-24s %-10s y %.1e dx %.1e dA %.1e dB %.1e dm %.1e\n", c->name, acc ? "dx +=" : "dx =", e[0],
               e[1], e[2], e[3], e[4]);
        CHECK_LE(worst, 2e-6);
        results_free(&a), results_free(&b);
    }
    be->destroy(be);
    return test_report();
}
