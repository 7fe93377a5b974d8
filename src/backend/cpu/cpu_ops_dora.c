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
CPU_PARALLEL_FOR(out * (1 + B->cols * B->cols))
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
    /* sum_i dy*z = (sum_i dy*y - b sum_i dy) / g: two plain sums per column,
    ** no per-element division or subtraction. Parallel over blocks of
    ** columns, so every column's sums run over i in order on one thread and
    ** the result does not depend on the thread count. Within a block, rows
    ** are summed in `real` over ROWS_PER_FLUSH rows (vectorizable), then
    ** added into double accumulators. */
    enum { COLS = 64, ROWS_PER_FLUSH = 64 }; /* 64 columns: enough blocks to balance the threads */
    int64_t n_blocks = (out + COLS - 1) / COLS;
CPU_PARALLEL_FOR(dy->rows * dy->cols)
    for (int64_t blk = 0; blk < n_blocks; blk++) {
        int64_t c0 = blk * COLS, w = c0 + COLS < out ? COLS : out - c0;
        double acc_dyy[COLS], acc_dy[COLS];
        real s_dyy[COLS], s_dy[COLS], gc[COLS];
        for (int64_t c = 0; c < w; c++) acc_dyy[c] = acc_dy[c] = 0.0, gc[c] = gv[c0 + c];
        for (int64_t i0 = 0; i0 < N; i0 += ROWS_PER_FLUSH) {
            int64_t i1 = i0 + ROWS_PER_FLUSH < N ? i0 + ROWS_PER_FLUSH : N;
            for (int64_t c = 0; c < w; c++) s_dyy[c] = s_dy[c] = 0;
            for (int64_t i = i0; i < i1; i++) {
                const real *dyr = row_ptr(dy, i) + c0, *yr = row_ptr(y, i) + c0;
                real *dzr = row_ptr(dz, i) + c0; /* may be dyr itself */
                for (int64_t c = 0; c < w; c++) {
                    real d = dyr[c];
                    s_dyy[c] += d * yr[c];
                    s_dy[c] += d;
                    dzr[c] = gc[c] * d;
                }
            }
            for (int64_t c = 0; c < w; c++) acc_dyy[c] += s_dyy[c], acc_dy[c] += s_dy[c];
        }
        for (int64_t c = 0; c < w; c++) {
            real gval = gc[c];
            double b = bv ? bv[c0 + c] : 0.0;
            double sum = gval != 0 ? (acc_dyy[c] - b * acc_dy[c]) / gval : 0.0;
            zs[c0 + c] = (real)(zs[c0 + c] + sum);
        }
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

