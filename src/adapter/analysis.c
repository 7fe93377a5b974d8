/*
** analysis.c — ΔM / ΔD of one layer, Pearson's r and the least-squares line
** (see analysis.h for the definitions and the numerics).
*/
#include "adapter/analysis.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* Adds row o's terms: |m_t - m_0| to *sum_dm, 1 - cos to *sum_dd. v and w
** are the rows of V and W0 (in elements); mt is NAN to use ||v||. */
static void add_row(const double *v, const double *w, int64_t in, double mt, double *sum_dm, double *sum_dd,
                    int64_t *zero_rows) {
    double vv = 0, ww = 0;
    for (int64_t j = 0; j < in; j++) {
        vv += v[j] * v[j];
        ww += w[j] * w[j];
    }
    double nv = sqrt(vv), nw = sqrt(ww);
    *sum_dm += fabs((isnan(mt) ? nv : mt) - nw);
    if (nv == 0 || nw == 0) {
        (*zero_rows)++;
        return;
    }
    double d = 0; /* || v/|v| - w/|w| ||^2 = 2 (1 - cos) */
    for (int64_t j = 0; j < in; j++) {
        double e = v[j] / nv - w[j] / nw;
        d += e * e;
    }
    *sum_dd += 0.5 * d;
}

int dorac_decomp_linear(dorac_decomp *out, const dorac_linear *L, const dorac_tensor *W0) {
    if (!out || !L || !W0 || !L->be) return dorac_error(DORAC_E_INVALID, "decomp: NULL argument");
    dorac_backend *be = L->be;
    const int64_t rows = L->out, in = L->in;
    if (W0->rows != rows || W0->cols != in || !W0->data)
        return dorac_error(DORAC_E_INVALID, "decomp: base weight is (%lld, %lld), the layer is (%lld, %lld)",
                           (long long)W0->rows, (long long)W0->cols, (long long)rows, (long long)in);
    if (rows < 1 || in < 1) return dorac_error(DORAC_E_INVALID, "decomp: empty layer (%lld, %lld)", (long long)rows, (long long)in);
    const bool adapter = dorac_linear_has_adapter(L);
    const bool dora = L->cfg.method == DORAC_METHOD_DORA;
    if (dora && !L->t.m.data) return dorac_error(DORAC_E_INVALID, "decomp: DoRA layer without a magnitude vector");
    int64_t chunk = DORAC_DECOMP_CHUNK_ELEMS / in;
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;

    /* host: W0 and V chunks and the whole magnitude vector, in double */
    size_t chunk_elems = (size_t)chunk * (size_t)in;
    double *w = malloc(chunk_elems * sizeof *w), *v = malloc(chunk_elems * sizeof *v);
    double *m = dora ? malloc((size_t)rows * sizeof *m) : NULL;
    dorac_tensor V = dorac_tensor_none(be->param_type);
    int rc = (!w || !v || (dora && !m)) ? dorac_error(DORAC_E_NOMEM, "decomp: out of memory for a %lld x %lld chunk",
                                                      (long long)chunk, (long long)in)
                                        : DORAC_OK;
    if (!rc && adapter) rc = dorac_tensor_alloc(be, &V, be->param_type, chunk, in, "decomp direction chunk");
    if (!rc && dora) rc = be->download(be, m, DORAC_DTYPE_F64, &L->t.m);

    double sum_dm = 0, sum_dd = 0;
    int64_t zero_rows = 0;
    for (int64_t o0 = 0; !rc && o0 < rows; o0 += chunk) {
        int64_t n = rows - o0 < chunk ? rows - o0 : chunk;
        dorac_tensor w0_rows = dorac_tensor_rows(W0, o0, n), w_rows = dorac_tensor_rows(&L->t.W, o0, n);
        rc = be->download(be, w, DORAC_DTYPE_F64, &w0_rows);
        if (!rc && adapter) { /* V = W0 + s B[o0:o0+n] A */
            dorac_tensor Vn = dorac_tensor_rows(&V, 0, n), B_rows = dorac_tensor_rows(&L->t.B, o0, n);
            rc = be->copy(be, &Vn, &w_rows);
            if (!rc) rc = be->gemm(be, &Vn, &B_rows, false, &L->t.A, false, L->scale, 1.0);
            if (!rc && be->synchronize) rc = be->synchronize(be);
            if (!rc) rc = be->download(be, v, DORAC_DTYPE_F64, &Vn);
        } else if (!rc) {
            rc = be->download(be, v, DORAC_DTYPE_F64, &w_rows);
        }
        for (int64_t i = 0; !rc && i < n; i++)
            add_row(v + (size_t)i * (size_t)in, w + (size_t)i * (size_t)in, in, dora ? m[o0 + i] : NAN, &sum_dm,
                    &sum_dd, &zero_rows);
    }
    dorac_tensor_free(be, &V);
    free(w), free(v), free(m);
    if (rc) return rc;
    out->delta_m = sum_dm / (double)rows;
    out->delta_d = sum_dd / (double)rows;
    out->rows = rows;
    out->zero_rows = zero_rows;
    return DORAC_OK;
}

double dorac_stats_pearson(const double *x, const double *y, size_t n) {
    if (n < 2) return NAN;
    double mx = 0, my = 0;
    for (size_t i = 0; i < n; i++) mx += x[i], my += y[i];
    mx /= (double)n, my /= (double)n;
    double sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < n; i++) {
        double dx = x[i] - mx, dy = y[i] - my;
        sxy += dx * dy, sxx += dx * dx, syy += dy * dy;
    }
    if (!(sxx > 0) || !(syy > 0)) return NAN;
    double r = sxy / sqrt(sxx * syy);
    return r > 1 ? 1 : r < -1 ? -1 : r; /* rounding can step just outside */
}

bool dorac_stats_fit_line(const double *x, const double *y, size_t n, double *intercept, double *slope) {
    if (n < 2) return false;
    double mx = 0, my = 0;
    for (size_t i = 0; i < n; i++) mx += x[i], my += y[i];
    mx /= (double)n, my /= (double)n;
    double sxy = 0, sxx = 0;
    for (size_t i = 0; i < n; i++) {
        double dx = x[i] - mx;
        sxy += dx * (y[i] - my), sxx += dx * dx;
    }
    if (!(sxx > 0)) return false;
    *slope = sxy / sxx;
    *intercept = my - *slope * mx;
    return true;
}
