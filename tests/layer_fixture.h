/*
** layer_fixture.h — builds a dorac_linear with random parameters on any
** backend, from host double arrays, for the layer tests.
**
** The host arrays are the ground truth: tests perturb them and call
** fixture_upload() again, and compare what the backend computes with what
** the tests compute themselves in double.
*/
#ifndef DORAC_TEST_LAYER_FIXTURE_H
#define DORAC_TEST_LAYER_FIXTURE_H

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "adapter/linear.h"
#include "core/error.h"
#include "core/rng.h"

typedef struct fixture_case {
    const char *name;
    dorac_method method;
    int64_t in, out, N;
    int rank;
    bool bias;
    int norm_grad;
    double dropout;
    bool rslora;
    bool dz_in_place; /* backward writes dz over dy instead of chunking */
} fixture_case;

typedef struct fixture {
    fixture_case c;
    dorac_backend *be;
    dorac_linear L;
    /* host copies (double), the ground truth */
    double *W, *bias, *A, *B, *m, *x, *R; /* R: dL/dy, the loss is sum(R ⊙ y) */
    /* backend tensors */
    dorac_tensor tW, tbias, tA, tB, tm, tdA, tdB, tdm, tdW, tdbias, tx, ty, tu, tdx, tdy;
} fixture;

static inline double *fixture_random(size_t n, double scale, uint64_t stream) {
    double *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = scale * (2.0 * dorac_rng_uniform_f64(42, stream, i) - 1.0);
    return p;
}

static inline void fixture_upload(fixture *f) {
    dorac_backend *be = f->be;
    be->upload(be, &f->tW, f->W, DORAC_DTYPE_F64);
    if (f->c.bias) be->upload(be, &f->tbias, f->bias, DORAC_DTYPE_F64);
    if (f->tA.data) be->upload(be, &f->tA, f->A, DORAC_DTYPE_F64);
    if (f->tB.data) be->upload(be, &f->tB, f->B, DORAC_DTYPE_F64);
    if (f->tm.data) be->upload(be, &f->tm, f->m, DORAC_DTYPE_F64);
    be->upload(be, &f->tx, f->x, DORAC_DTYPE_F64);
    be->upload(be, &f->tdy, f->R, DORAC_DTYPE_F64);
}

static inline int fixture_zero_grads(fixture *f) {
    dorac_tensor *g[] = {&f->tdA, &f->tdB, &f->tdm, &f->tdW, &f->tdbias};
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
        if (g[i]->data) DORAC_TRY(f->be->fill(f->be, g[i], 0.0));
    return DORAC_OK;
}

static inline int fixture_alloc(dorac_backend *be, dorac_tensor *t, dorac_dtype type, int64_t r, int64_t c,
                         bool want) {
    if (!want) {
        *t = dorac_tensor_none(type);
        return DORAC_OK;
    }
    return dorac_tensor_alloc(be, t, type, r, c, "fixture");
}

/* Random parameters: W0 ~ U(±1/sqrt(in)), A, B and m all non-zero, m
** perturbed away from ||W0 row|| so that g != 1. Returns DORAC_OK. */
static inline int fixture_init(fixture *f, dorac_backend *be, const fixture_case *c) {
    memset(f, 0, sizeof *f);
    f->c = *c;
    f->be = be;
    int64_t in = c->in, out = c->out, N = c->N, r = c->rank;
    bool adapter = (c->method == DORAC_METHOD_LORA || c->method == DORAC_METHOD_DORA) && r > 0;
    bool dora = c->method == DORAC_METHOD_DORA, full = c->method == DORAC_METHOD_FULL;
    f->W = fixture_random((size_t)(out * in), 1.0 / sqrt((double)in), 1);
    f->bias = fixture_random((size_t)out, 0.5, 2);
    f->A = fixture_random((size_t)(r * in), 1.0 / sqrt((double)in), 3);
    f->B = fixture_random((size_t)(out * r), 0.3, 4);
    f->m = malloc((size_t)out * sizeof(double));
    for (int64_t o = 0; o < out; o++) {
        double n0 = 0;
        for (int64_t j = 0; j < in; j++) n0 += f->W[o * in + j] * f->W[o * in + j];
        f->m[o] = sqrt(n0) * (1.0 + 0.3 * (2.0 * dorac_rng_uniform_f64(42, 5, (uint64_t)o) - 1.0));
    }
    f->x = fixture_random((size_t)(N * in), 1.0, 6);
    f->R = fixture_random((size_t)(N * out), 1.0, 7);

    dorac_dtype pt = be->param_type, at = be->act_type;
    dorac_dtype wt = full ? pt : be->weight_type;
    int rc = 0;
    rc |= fixture_alloc(be, &f->tW, wt, out, in, true);
    rc |= fixture_alloc(be, &f->tbias, wt, 1, out, c->bias);
    rc |= fixture_alloc(be, &f->tA, pt, r, in, adapter);
    rc |= fixture_alloc(be, &f->tB, pt, out, r, adapter);
    rc |= fixture_alloc(be, &f->tm, pt, 1, out, dora);
    rc |= fixture_alloc(be, &f->tdA, pt, r, in, adapter);
    rc |= fixture_alloc(be, &f->tdB, pt, out, r, adapter);
    rc |= fixture_alloc(be, &f->tdm, pt, 1, out, dora);
    rc |= fixture_alloc(be, &f->tdW, pt, out, in, full);
    rc |= fixture_alloc(be, &f->tdbias, pt, 1, out, full && c->bias);
    rc |= fixture_alloc(be, &f->tx, at, N, in, true);
    rc |= fixture_alloc(be, &f->ty, at, N, out, true);
    rc |= fixture_alloc(be, &f->tu, at, N, r, adapter);
    rc |= fixture_alloc(be, &f->tdx, at, N, in, true);
    rc |= fixture_alloc(be, &f->tdy, at, N, out, true);
    if (rc) return rc;
    fixture_upload(f);
    dorac_adapter_config cfg = {.method = c->method, .rank = c->rank, .alpha = 1.7 * (c->rank > 0 ? c->rank : 1),
                                .use_rslora = c->rslora, .dropout = c->dropout, .norm_grad = c->norm_grad};
    dorac_linear_tensors t = {.W = f->tW, .bias = f->tbias, .A = f->tA, .B = f->tB, .m = f->tm,
                              .dA = f->tdA, .dB = f->tdB, .dm = f->tdm, .dW = f->tdW, .dbias = f->tdbias};
    rc = dorac_linear_init(&f->L, be, &cfg, in, out, &t, c->name);
    f->L.dropout_stream = 99;
    return rc;
}

static inline int fixture_forward(fixture *f) {
    return dorac_linear_forward(&f->L, &f->ty, &f->tu, &f->tx, 1234);
}

static inline int fixture_backward(fixture *f) {
    DORAC_TRY(fixture_zero_grads(f));
    DORAC_TRY(f->be->upload(f->be, &f->tdy, f->R, DORAC_DTYPE_F64)); /* in-place mode overwrote it */
    const dorac_tensor *dz = f->c.dz_in_place ? &f->tdy : NULL;
    return dorac_linear_backward(&f->L, &f->tdx, false, &f->tdy, dz, &f->tx, &f->ty, &f->tu, 1234);
}

static inline void fixture_free(fixture *f) {
    dorac_linear_free(&f->L);
    dorac_tensor *ts[] = {&f->tW, &f->tbias, &f->tA, &f->tB, &f->tm, &f->tdA, &f->tdB, &f->tdm,
                          &f->tdW, &f->tdbias, &f->tx, &f->ty, &f->tu, &f->tdx, &f->tdy};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dorac_tensor_free(f->be, ts[i]);
    free(f->W), free(f->bias), free(f->A), free(f->B), free(f->m), free(f->x), free(f->R);
}

/* Downloads t into a fresh double array. */
static inline double *fixture_get(fixture *f, const dorac_tensor *t) {
    double *h = malloc((size_t)(t->rows * t->cols + 1) * sizeof *h);
    f->be->download(f->be, h, DORAC_DTYPE_F64, t);
    return h;
}

#endif
