/*
** cpu_ops_dora.c — the CPU backend's DoRA ops: the factored norm, the fused
** element-wise half of the backward, and the magnitude gradient (see
** backend.h for their contracts, cpu_impl.h for the two precisions).
*/
#include <math.h>

#include "backend/cpu/cpu_impl.h"

/* ---------------------------------------------------------------------- */
/* DoRA                                                                   */
/* ---------------------------------------------------------------------- */

int CPU_FN(dora_norm)(dorac_backend *be, const dorac_tensor *n, const dorac_tensor *g,
                         const dorac_tensor *c, const dorac_tensor *B, const dorac_tensor *P,
                         const dorac_tensor *G, const dorac_tensor *m, double scale,
                         double floor) {
    (void)be;
    const char *op = "dora_norm";
    int64_t out = c->cols;
    DORAC_TRY(check_shape(c, 1, out, op, "c"));
    DORAC_TRY(check_shape(n, 1, out, op, "n"));
    DORAC_TRY(check_optional_vector(g, out, op, "g"));
    DORAC_TRY(check_optional_vector(m, out, op, "m"));
    if (g && g->data && !(m && m->data))
        return dorac_error(DORAC_E_INVALID, "dora_norm: g requested without m");
    int64_t r = (B && B->data) ? B->cols : 0;
    if (r > 0) {
        DORAC_TRY(check_shape(B, out, r, op, "B"));
        DORAC_TRY(check_shape(P, out, r, op, "P"));
        DORAC_TRY(check_shape(G, r, r, op, "G"));
    }
    const real *cv = c->data, *mv = m ? m->data : NULL;
    real *nv = n->data, *gv = g ? g->data : NULL;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < out; o++) {
        double n2 = cv[o];
        if (r > 0) {
            const real *b = row_ptr(B, o), *p = row_ptr(P, o);
            double bp = 0.0, bgb = 0.0;
            for (int64_t k = 0; k < r; k++) {
                bp += (double)b[k] * p[k];
                const real *gk = row_ptr(G, k);
                double gb = 0.0;
                for (int64_t l = 0; l < r; l++) gb += (double)gk[l] * b[l];
                bgb += (double)b[k] * gb;
            }
            n2 += 2.0 * scale * bp + scale * scale * bgb;
        }
        double norm = sqrt(n2 > floor ? n2 : floor);
        nv[o] = (real)norm;
        if (gv) gv[o] = (real)(mv[o] / norm);
    }
    return DORAC_OK;
}

int CPU_FN(dora_scale_backward)(dorac_backend *be, const dorac_tensor *dz,
                                   const dorac_tensor *zsum, const dorac_tensor *dy,
                                   const dorac_tensor *y, const dorac_tensor *g,
                                   const dorac_tensor *bias) {
    (void)be;
    const char *op = "dora_scale_backward";
    DORAC_TRY(check_type(dy, op, "dy"));
    int64_t N = dy->rows, out = dy->cols;
    DORAC_TRY(check_shape(dz, N, out, op, "dz"));
    DORAC_TRY(check_shape(y, N, out, op, "y"));
    DORAC_TRY(check_shape(zsum, 1, out, op, "zsum"));
    DORAC_TRY(check_shape(g, 1, out, op, "g"));
    DORAC_TRY(check_optional_vector(bias, out, op, "bias"));
    const real *gv = g->data, *bv = bias ? bias->data : NULL;
    real *zs = zsum->data;
    /* Parallel over blocks of columns: every column's sum runs over i in order
    ** on one thread, so the result is independent of the thread count. */
    const int64_t col_block = 256;
    int64_t n_blocks = (out + col_block - 1) / col_block;
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < n_blocks; blk++) {
        int64_t c0 = blk * col_block, c1 = c0 + col_block < out ? c0 + col_block : out;
        double acc[256];
        real ginv[256], bb[256];
        for (int64_t c = c0; c < c1; c++) {
            acc[c - c0] = 0.0;
            ginv[c - c0] = gv[c] != 0 ? (real)1 / gv[c] : 0;
            bb[c - c0] = bv ? bv[c] : 0;
        }
        for (int64_t i = 0; i < N; i++) {
            const real *dyr = row_ptr(dy, i) + c0, *yr = row_ptr(y, i) + c0;
            real *dzr = row_ptr(dz, i) + c0;
            int64_t w = c1 - c0;
            for (int64_t c = 0; c < w; c++) {
                real d = dyr[c];
                acc[c] += (double)(d * ((yr[c] - bb[c]) * ginv[c]));
                dzr[c] = gv[c0 + c] * d;
            }
        }
        for (int64_t c = c0; c < c1; c++) zs[c] = (real)(zs[c] + acc[c - c0]);
    }
    return DORAC_OK;
}

int CPU_FN(dora_magnitude_backward)(dorac_backend *be, const dorac_tensor *dm,
                                       const dorac_tensor *w, const dorac_tensor *zsum,
                                       const dorac_tensor *m, const dorac_tensor *n) {
    (void)be;
    const char *op = "dora_magnitude_backward";
    int64_t out = zsum->cols;
    DORAC_TRY(check_shape(zsum, 1, out, op, "zsum"));
    DORAC_TRY(check_shape(dm, 1, out, op, "dm"));
    DORAC_TRY(check_shape(n, 1, out, op, "n"));
    DORAC_TRY(check_optional_vector(w, out, op, "w"));
    if (w && w->data) DORAC_TRY(check_shape(m, 1, out, op, "m"));
    const real *zs = zsum->data, *nv = n->data, *mv = m ? m->data : NULL;
    real *dmv = dm->data, *wv = w ? w->data : NULL;
    for (int64_t o = 0; o < out; o++) {
        double nn = nv[o];
        dmv[o] = (real)(dmv[o] + zs[o] / nn);
        if (wv) wv[o] = (real)(-(double)zs[o] * mv[o] / (nn * nn * nn));
    }
    return DORAC_OK;
}

