/*
** dora_raw.c — the public raw-array DoRA functions of dorac.h.
**
** Each call wraps the caller's host arrays as tensors of a transient fp32
** CPU backend (no copies: the CPU backend's memory is host memory) and runs
** the same dorac_linear code the model uses. The layer never writes through
** W0, bias, A, B or m, so casting their const away for the views is safe.
*/
#include <stdlib.h>

#include "adapter/linear.h"
#include "core/error.h"

static dorac_tensor view(const float *p, int64_t rows, int64_t cols) {
    return dorac_tensor_view((void *)p, DORAC_DTYPE_F32, rows, cols);
}

static int check_weights(const dorac_dora_weights *w) {
    if (!w) return dorac_error(DORAC_E_INVALID, "dora: weights descriptor is NULL");
    if (!w->W0) return dorac_error(DORAC_E_INVALID, "dora: W0 is NULL");
    if (!w->m) return dorac_error(DORAC_E_INVALID, "dora: m is NULL");
    if (w->rank > 0 && (!w->A || !w->B))
        return dorac_error(DORAC_E_INVALID, "dora: rank is %d but A or B is NULL", w->rank);
    return DORAC_OK;
}

/* Builds a DoRA layer over w's arrays with gradient targets dA, dB, dm
** (each may be NULL). The scale is taken from w as given, so the config's
** alpha is set to reproduce it. */
static int layer_open(dorac_linear *L, dorac_backend **be_out, const dorac_dora_weights *w,
                      float *dA, float *dB, float *dm) {
    *be_out = NULL;
    DORAC_TRY(check_weights(w));
    dorac_adapter_config cfg = {
        .method = DORAC_METHOD_DORA,
        .rank = w->rank,
        .alpha = w->rank > 0 ? (double)w->scale * w->rank : 1.0,
        .use_rslora = false,
        .dropout = 0.0,
        .norm_grad = w->norm_grad,
    };
    int64_t r = w->rank;
    dorac_tensor none = dorac_tensor_none(DORAC_DTYPE_F32);
    dorac_linear_tensors t = {
        .W = view(w->W0, w->out, w->in),
        .bias = w->bias ? view(w->bias, 1, w->out) : none,
        .A = r > 0 ? view(w->A, r, w->in) : none,
        .B = r > 0 ? view(w->B, w->out, r) : none,
        .m = view(w->m, 1, w->out),
        .dA = dA && r > 0 ? view(dA, r, w->in) : none,
        .dB = dB && r > 0 ? view(dB, w->out, r) : none,
        .dm = dm ? view(dm, 1, w->out) : none,
        .dW = none,
        .dbias = none,
    };
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    if (!be) return DORAC_E_NOMEM;
    int rc = dorac_linear_init(L, be, &cfg, w->in, w->out, &t, "dora");
    if (rc) {
        dorac_backend_destroy(be);
        return rc;
    }
    L->scale = w->scale; /* exactly the caller's s, not alpha/r recomputed */
    *be_out = be;
    return DORAC_OK;
}

static void layer_close(dorac_linear *L, dorac_backend *be) {
    dorac_linear_free(L);
    dorac_backend_destroy(be);
}

int dorac_dora_init_magnitude(const dorac_dora_weights *w, float *m_out) {
    if (!m_out) return dorac_error(DORAC_E_INVALID, "dora: m_out is NULL");
    dorac_dora_weights w2 = *w;
    w2.m = m_out; /* dora_norm writes through L->t.m below */
    dorac_linear L;
    dorac_backend *be;
    DORAC_TRY(layer_open(&L, &be, &w2, NULL, NULL, NULL));
    int rc = dorac_dora_init_magnitude_tensor(be, &L.t.m, &L.c);
    layer_close(&L, be);
    return rc;
}

int dorac_dora_forward(const dorac_dora_weights *w, int64_t N, const float *x, float *y) {
    if (N < 0 || !x || !y) return dorac_error(DORAC_E_INVALID, "dora_forward: N < 0 or x/y NULL");
    dorac_linear L;
    dorac_backend *be;
    DORAC_TRY(layer_open(&L, &be, w, NULL, NULL, NULL));
    dorac_tensor xt = view(x, N, w->in), yt = view(y, N, w->out);
    int rc = dorac_linear_forward(&L, &yt, NULL, &xt, 0);
    layer_close(&L, be);
    return rc;
}

int dorac_dora_backward(const dorac_dora_weights *w, int64_t N, const float *x,
                        const float *y, const float *dy, float *dx, float *dA,
                        float *dB, float *dm) {
    if (N < 0 || !x || !y || !dy)
        return dorac_error(DORAC_E_INVALID, "dora_backward: N < 0 or x/y/dy NULL");
    dorac_linear L;
    dorac_backend *be;
    DORAC_TRY(layer_open(&L, &be, w, dA, dB, dm));
    dorac_tensor u = dorac_tensor_none(DORAC_DTYPE_F32);
    int rc = DORAC_OK;
    if (w->rank > 0) {
        /* recompute u = x A^T and the norm caches, as the forward left them */
        rc = dorac_tensor_alloc(be, &u, DORAC_DTYPE_F32, N, w->rank, "u");
        dorac_tensor xt = view(x, N, w->in);
        if (!rc) rc = be->gemm(be, &u, &xt, false, &L.t.A, true, 1.0, 0.0);
    }
    if (!rc) rc = dorac_dora_update_norm(&L);
    if (!rc) {
        dorac_tensor xt = view(x, N, w->in), yt = view(y, N, w->out), dyt = view(dy, N, w->out);
        dorac_tensor dxt = dx ? view(dx, N, w->in) : dorac_tensor_none(DORAC_DTYPE_F32);
        rc = dorac_linear_backward(&L, &dxt, false, &dyt, NULL, &xt, &yt, &u, 0); /* dy is const: chunked */
    }
    dorac_tensor_free(be, &u);
    layer_close(&L, be);
    return rc;
}

int dorac_dora_merge(const dorac_dora_weights *w, float *W_merged, float *n_out) {
    if (!W_merged) return dorac_error(DORAC_E_INVALID, "dora_merge: W_merged is NULL");
    dorac_linear L;
    dorac_backend *be;
    DORAC_TRY(layer_open(&L, &be, w, NULL, NULL, NULL));
    dorac_tensor Wm = view(W_merged, w->out, w->in);
    int rc = dorac_linear_merge(&L, &Wm);
    if (!rc && n_out) rc = be->download(be, n_out, DORAC_DTYPE_F32, &L.n);
    layer_close(&L, be);
    return rc;
}

int dorac_dora_unmerge(const dorac_dora_weights *w, const float *n, float *W_inout) {
    if (!W_inout || !n) return dorac_error(DORAC_E_INVALID, "dora_unmerge: W_inout or n is NULL");
    dorac_dora_weights w2 = *w;
    w2.W0 = W_inout; /* only its shape matters to the layer here */
    dorac_linear L;
    dorac_backend *be;
    DORAC_TRY(layer_open(&L, &be, &w2, NULL, NULL, NULL));
    dorac_tensor Wt = view(W_inout, w->out, w->in), nt = view(n, 1, w->out);
    int rc = dorac_linear_unmerge(&L, &Wt, &nt);
    layer_close(&L, be);
    return rc;
}
