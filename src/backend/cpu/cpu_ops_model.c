/*
** cpu_ops_model.c — the CPU backend's transformer ops: embeddings,
** RMSNorm/LayerNorm, RoPE, SwiGLU, GELU (tanh) and
** softmax cross-entropy, each forward and backward (contracts in
** backend.h; the two precisions in cpu_impl.h).
**
** Size letters: N rows (B*T), C channels, V vocabulary, B batch, T time,
** H query heads, KV key/value heads, D head dimension.
**
** Attention is in cpu_ops_attention.c.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_impl.h"

/* ---------------------------------------------------------------------- */
/* embeddings                                                             */
/* ---------------------------------------------------------------------- */

int CPU_FN(embedding_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *ids,
                              const dorac_tensor *table, bool accumulate) {
    (void)be;
    const char *op = "embedding_forward";
    DORAC_TRY(check_type(table, op, "table"));
    DORAC_TRY(check_shape(out, out->rows, table->cols, op, "out"));
    DORAC_TRY(check_index(ids, out->rows, table->rows, op, "ids"));
    const int32_t *id = ids->data;
    int64_t C = table->cols;
CPU_PARALLEL_FOR(out->rows * out->cols)
    for (int64_t i = 0; i < out->rows; i++) {
        const real *src = row_ptr(table, id[i]);
        real *dst = row_ptr(out, i);
        if (accumulate)
            for (int64_t c = 0; c < C; c++) dst[c] += src[c];
        else
            memcpy(dst, src, (size_t)C * sizeof(real));
    }
    return DORAC_OK;
}

int CPU_FN(embedding_backward)(dorac_backend *be, const dorac_tensor *dtable,
                               const dorac_tensor *dout, const dorac_tensor *ids) {
    (void)be;
    const char *op = "embedding_backward";
    DORAC_TRY(check_type(dtable, op, "dtable"));
    DORAC_TRY(check_shape(dout, dout->rows, dtable->cols, op, "dout"));
    DORAC_TRY(check_index(ids, dout->rows, dtable->rows, op, "ids"));
    const int32_t *id = ids->data;
    int64_t C = dtable->cols, N = dout->rows;
    /* parallel over column blocks: each dtable element is summed over rows i
    ** in order by one thread, whatever the thread count */
    const int64_t block = 64;
CPU_PARALLEL_FOR(dout->rows * dout->cols)
    for (int64_t c0 = 0; c0 < C; c0 += block) {
        int64_t c1 = c0 + block < C ? c0 + block : C;
        for (int64_t i = 0; i < N; i++) {
            const real *g = row_ptr(dout, i);
            real *d = row_ptr(dtable, id[i]);
            for (int64_t c = c0; c < c1; c++) d[c] += g[c];
        }
    }
    return DORAC_OK;
}

/* ---------------------------------------------------------------------- */
/* normalisation                                                          */
/* ---------------------------------------------------------------------- */

int CPU_FN(rmsnorm_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *rstd,
                            const dorac_tensor *x, const dorac_tensor *w, double eps) {
    (void)be;
    const char *op = "rmsnorm_forward";
    DORAC_TRY(check_type(x, op, "x"));
    int64_t N = x->rows, C = x->cols;
    DORAC_TRY(check_shape(out, N, C, op, "out"));
    DORAC_TRY(check_shape(rstd, 1, N, op, "rstd"));
    DORAC_TRY(check_shape(w, 1, C, op, "weight"));
    const real *wv = w->data;
    real *rs = rstd->data;
CPU_PARALLEL_FOR(x->rows * x->cols)
    for (int64_t i = 0; i < N; i++) {
        const real *xi = row_ptr(x, i);
        real *oi = row_ptr(out, i);
        double ss = 0;
        for (int64_t c = 0; c < C; c++) ss += (double)xi[c] * xi[c];
        real r = (real)(1.0 / sqrt(ss / (double)C + eps));
        rs[i] = r;
        for (int64_t c = 0; c < C; c++) oi[c] = wv[c] * (xi[c] * r);
    }
    return DORAC_OK;
}

int CPU_FN(rmsnorm_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dw,
                             const dorac_tensor *dout, const dorac_tensor *x,
                             const dorac_tensor *w, const dorac_tensor *rstd) {
    (void)be;
    const char *op = "rmsnorm_backward";
    DORAC_TRY(check_type(x, op, "x"));
    int64_t N = x->rows, C = x->cols;
    DORAC_TRY(check_shape(dx, N, C, op, "dx"));
    DORAC_TRY(check_shape(dout, N, C, op, "dout"));
    DORAC_TRY(check_shape(w, 1, C, op, "weight"));
    DORAC_TRY(check_shape(rstd, 1, N, op, "rstd"));
    DORAC_TRY(check_optional_vector(dw, C, op, "dweight"));
    const real *wv = w->data, *rs = rstd->data;
    /* y = w ⊙ x̂, x̂ = x r:  dx = r (w⊙dy) - r^3 x (sum_c w⊙dy⊙x) / C */
CPU_PARALLEL_FOR(dout->rows * dout->cols)
    for (int64_t i = 0; i < N; i++) {
        const real *xi = row_ptr(x, i), *gi = row_ptr(dout, i);
        real *di = row_ptr(dx, i);
        double r = rs[i], dot = 0;
        for (int64_t c = 0; c < C; c++) dot += (double)wv[c] * gi[c] * xi[c];
        double k = r * r * r * dot / (double)C;
        for (int64_t c = 0; c < C; c++) di[c] += (real)(r * wv[c] * gi[c] - k * xi[c]);
    }
    if (dw && dw->data) {
        real *dwv = dw->data;
CPU_PARALLEL_FOR(dout->rows * dout->cols)
        for (int64_t c = 0; c < C; c++) {
            double acc = 0;
            for (int64_t i = 0; i < N; i++) acc += (double)row_ptr(dout, i)[c] * row_ptr(x, i)[c] * rs[i];
            dwv[c] += (real)acc;
        }
    }
    return DORAC_OK;
}

int CPU_FN(layernorm_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *mean,
                              const dorac_tensor *rstd, const dorac_tensor *x,
                              const dorac_tensor *w, const dorac_tensor *b, double eps) {
    (void)be;
    const char *op = "layernorm_forward";
    DORAC_TRY(check_type(x, op, "x"));
    int64_t N = x->rows, C = x->cols;
    DORAC_TRY(check_shape(out, N, C, op, "out"));
    DORAC_TRY(check_shape(mean, 1, N, op, "mean"));
    DORAC_TRY(check_shape(rstd, 1, N, op, "rstd"));
    DORAC_TRY(check_shape(w, 1, C, op, "weight"));
    DORAC_TRY(check_optional_vector(b, C, op, "bias"));
    const real *wv = w->data, *bv = b ? b->data : NULL;
    real *mv = mean->data, *rs = rstd->data;
CPU_PARALLEL_FOR(x->rows * x->cols)
    for (int64_t i = 0; i < N; i++) {
        const real *xi = row_ptr(x, i);
        real *oi = row_ptr(out, i);
        double mu = 0, var = 0;
        for (int64_t c = 0; c < C; c++) mu += xi[c];
        mu /= (double)C;
        for (int64_t c = 0; c < C; c++) var += ((double)xi[c] - mu) * ((double)xi[c] - mu);
        double r = 1.0 / sqrt(var / (double)C + eps);
        mv[i] = (real)mu;
        rs[i] = (real)r;
        for (int64_t c = 0; c < C; c++)
            oi[c] = (real)(((double)xi[c] - mu) * r * wv[c] + (bv ? bv[c] : 0));
    }
    return DORAC_OK;
}

int CPU_FN(layernorm_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dw,
                               const dorac_tensor *db, const dorac_tensor *dout,
                               const dorac_tensor *x, const dorac_tensor *w,
                               const dorac_tensor *mean, const dorac_tensor *rstd) {
    (void)be;
    const char *op = "layernorm_backward";
    DORAC_TRY(check_type(x, op, "x"));
    int64_t N = x->rows, C = x->cols;
    DORAC_TRY(check_shape(dx, N, C, op, "dx"));
    DORAC_TRY(check_shape(dout, N, C, op, "dout"));
    DORAC_TRY(check_shape(w, 1, C, op, "weight"));
    DORAC_TRY(check_shape(mean, 1, N, op, "mean"));
    DORAC_TRY(check_shape(rstd, 1, N, op, "rstd"));
    DORAC_TRY(check_optional_vector(dw, C, op, "dweight"));
    DORAC_TRY(check_optional_vector(db, C, op, "dbias"));
    const real *wv = w->data, *mv = mean->data, *rs = rstd->data;
    /* x̂ = (x-mu) r, y = w x̂ + b:
    ** dx = r (g - mean(g) - x̂ mean(g x̂)), g = w ⊙ dy */
CPU_PARALLEL_FOR(dout->rows * dout->cols)
    for (int64_t i = 0; i < N; i++) {
        const real *xi = row_ptr(x, i), *gi = row_ptr(dout, i);
        real *di = row_ptr(dx, i);
        double mu = mv[i], r = rs[i], gmean = 0, gxmean = 0;
        for (int64_t c = 0; c < C; c++) {
            double g = (double)wv[c] * gi[c], xh = ((double)xi[c] - mu) * r;
            gmean += g;
            gxmean += g * xh;
        }
        gmean /= (double)C;
        gxmean /= (double)C;
        for (int64_t c = 0; c < C; c++) {
            double g = (double)wv[c] * gi[c], xh = ((double)xi[c] - mu) * r;
            di[c] += (real)(r * (g - gmean - xh * gxmean));
        }
    }
    bool want_w = dw && dw->data, want_b = db && db->data;
    if (want_w || want_b) {
        real *dwv = want_w ? dw->data : NULL, *dbv = want_b ? db->data : NULL;
CPU_PARALLEL_FOR(dout->rows * dout->cols)
        for (int64_t c = 0; c < C; c++) {
            double aw = 0, ab = 0;
            for (int64_t i = 0; i < N; i++) {
                double g = row_ptr(dout, i)[c];
                aw += g * ((double)row_ptr(x, i)[c] - mv[i]) * rs[i];
                ab += g;
            }
            if (dwv) dwv[c] += (real)aw;
            if (dbv) dbv[c] += (real)ab;
        }
    }
    return DORAC_OK;
}

/* ---------------------------------------------------------------------- */
/* RoPE                                                                   */
/* ---------------------------------------------------------------------- */

int CPU_FN(rope)(dorac_backend *be, const dorac_tensor *x, const dorac_tensor *pos,
                 const dorac_tensor *cos_t, const dorac_tensor *sin_t, int64_t n_heads,
                 int64_t head_dim, bool inverse) {
    (void)be;
    const char *op = "rope";
    DORAC_TRY(check_type(x, op, "x"));
    if (head_dim <= 0 || head_dim % 2 || n_heads <= 0 || x->cols != n_heads * head_dim)
        return dorac_error(DORAC_E_INVALID, "rope: x has %lld columns, expected %lld heads x %lld (even)",
                           (long long)x->cols, (long long)n_heads, (long long)head_dim);
    int64_t half = head_dim / 2;
    DORAC_TRY(check_shape(cos_t, cos_t->rows, half, op, "cos"));
    DORAC_TRY(check_shape(sin_t, cos_t->rows, half, op, "sin"));
    DORAC_TRY(check_index(pos, x->rows, cos_t->rows, op, "positions"));
    const int32_t *p = pos->data;
    real sgn = inverse ? -1 : 1;
    /* HF's rotate_half layout: pairs (j, j + D/2) of each head rotate by
    ** angle pos * inv_freq[j]. The inverse (the backward) rotates back. */
CPU_PARALLEL_FOR(x->rows * x->cols)
    for (int64_t i = 0; i < x->rows; i++) {
        const real *cs = row_ptr(cos_t, p[i]), *sn = row_ptr(sin_t, p[i]);
        real *xi = row_ptr(x, i);
        for (int64_t h = 0; h < n_heads; h++) {
            real *v = xi + h * head_dim;
            for (int64_t j = 0; j < half; j++) {
                real a = v[j], b = v[j + half], c = cs[j], s = sgn * sn[j];
                v[j] = a * c - b * s;
                v[j + half] = b * c + a * s;
            }
        }
    }
    return DORAC_OK;
}

/* ---------------------------------------------------------------------- */
/* activations                                                            */
/* ---------------------------------------------------------------------- */

int CPU_FN(swiglu_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *gate,
                           const dorac_tensor *up) {
    (void)be;
    const char *op = "swiglu_forward";
    DORAC_TRY(check_type(gate, op, "gate"));
    DORAC_TRY(check_shape(up, gate->rows, gate->cols, op, "up"));
    DORAC_TRY(check_shape(out, gate->rows, gate->cols, op, "out"));
CPU_PARALLEL_FOR(gate->rows * gate->cols)
    for (int64_t i = 0; i < gate->rows; i++) {
        const real *g = row_ptr(gate, i), *u = row_ptr(up, i);
        real *o = row_ptr(out, i);
        for (int64_t c = 0; c < gate->cols; c++) o[c] = g[c] / (1 + R_EXP(-g[c])) * u[c];
    }
    return DORAC_OK;
}

int CPU_FN(swiglu_backward)(dorac_backend *be, const dorac_tensor *dgate, const dorac_tensor *dup,
                            const dorac_tensor *dout, const dorac_tensor *gate,
                            const dorac_tensor *up) {
    (void)be;
    const char *op = "swiglu_backward";
    DORAC_TRY(check_type(gate, op, "gate"));
    int64_t N = gate->rows, C = gate->cols;
    DORAC_TRY(check_shape(up, N, C, op, "up"));
    DORAC_TRY(check_shape(dout, N, C, op, "dout"));
    DORAC_TRY(check_shape(dgate, N, C, op, "dgate"));
    DORAC_TRY(check_shape(dup, N, C, op, "dup"));
    /* silu(g) = g σ(g), silu'(g) = σ(g) (1 + g (1 - σ(g))) */
CPU_PARALLEL_FOR(dout->rows * dout->cols)
    for (int64_t i = 0; i < N; i++) {
        const real *g = row_ptr(gate, i), *u = row_ptr(up, i), *d = row_ptr(dout, i);
        real *dg = row_ptr(dgate, i), *du = row_ptr(dup, i);
        for (int64_t c = 0; c < C; c++) {
            real sg = 1 / (1 + R_EXP(-g[c]));
            real dd = d[c];
            du[c] = dd * g[c] * sg;
            dg[c] = dd * u[c] * sg * (1 + g[c] * (1 - sg));
        }
    }
    return DORAC_OK;
}

#define GELU_K 0.7978845608028654 /* sqrt(2/pi) */

int CPU_FN(gelu_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *x) {
    (void)be;
    DORAC_TRY(check_type(x, "gelu_forward", "x"));
    DORAC_TRY(check_shape(out, x->rows, x->cols, "gelu_forward", "out"));
CPU_PARALLEL_FOR(x->rows * x->cols)
    for (int64_t i = 0; i < x->rows; i++) {
        const real *xi = row_ptr(x, i);
        real *oi = row_ptr(out, i);
        for (int64_t c = 0; c < x->cols; c++) {
            real a = xi[c];
            oi[c] = (real)0.5 * a * (1 + R_TANH((real)GELU_K * (a + (real)0.044715 * a * a * a)));
        }
    }
    return DORAC_OK;
}

int CPU_FN(gelu_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dout,
                          const dorac_tensor *x) {
    (void)be;
    DORAC_TRY(check_type(x, "gelu_backward", "x"));
    DORAC_TRY(check_shape(dx, x->rows, x->cols, "gelu_backward", "dx"));
    DORAC_TRY(check_shape(dout, x->rows, x->cols, "gelu_backward", "dout"));
CPU_PARALLEL_FOR(x->rows * x->cols)
    for (int64_t i = 0; i < x->rows; i++) {
        const real *xi = row_ptr(x, i), *gi = row_ptr(dout, i);
        real *di = row_ptr(dx, i);
        for (int64_t c = 0; c < x->cols; c++) {
            real a = xi[c];
            real u = (real)GELU_K * (a + (real)0.044715 * a * a * a);
            real th = R_TANH(u);
            real du = (real)GELU_K * (1 + (real)3 * (real)0.044715 * a * a);
            di[c] = gi[c] * ((real)0.5 * (1 + th) + (real)0.5 * a * (1 - th * th) * du);
        }
    }
    return DORAC_OK;
}

/* ---------------------------------------------------------------------- */
/* softmax cross-entropy                                                  */
/* ---------------------------------------------------------------------- */

int CPU_FN(cross_entropy)(dorac_backend *be, const dorac_tensor *loss, const dorac_tensor *dlogits,
                          const dorac_tensor *logits, const dorac_tensor *targets,
                          double dscale) {
    (void)be;
    const char *op = "cross_entropy";
    DORAC_TRY(check_type(logits, op, "logits"));
    int64_t N = logits->rows, V = logits->cols;
    DORAC_TRY(check_shape(loss, 1, N, op, "loss"));
    bool grad = dlogits && dlogits->data;
    if (grad) DORAC_TRY(check_shape(dlogits, N, V, op, "dlogits"));
    if (targets->type != DORAC_DTYPE_I32 || targets->rows != 1 || targets->cols != N)
        return dorac_error(DORAC_E_INVALID, "cross_entropy: targets must be I32 (1, %lld)", (long long)N);
    const int32_t *tg = targets->data;
    DORAC_TRY(dorac_check_index_values(tg, N, V, true, op, "target"));
    real *lv = loss->data;
CPU_PARALLEL_FOR(logits->rows * logits->cols)
    for (int64_t i = 0; i < N; i++) {
        const real *z = row_ptr(logits, i);
        real *dz = grad ? row_ptr(dlogits, i) : NULL;
        if (tg[i] == DORAC_IGNORE_INDEX) {
            lv[i] = 0;
            if (dz) memset(dz, 0, (size_t)V * sizeof(real));
            continue;
        }
        real mx = z[0];
        for (int64_t c = 1; c < V; c++) mx = z[c] > mx ? z[c] : mx;
        double sum = 0;
        for (int64_t c = 0; c < V; c++) sum += R_EXP(z[c] - mx); /* terms in real, sum in double */
        double lse = (double)mx + log(sum);
        double target_logit = z[tg[i]];
        lv[i] = (real)(lse - target_logit);
        if (dz) {
            real lse_r = (real)lse, ds = (real)dscale;
            for (int64_t c = 0; c < V; c++) dz[c] = R_EXP(z[c] - lse_r) * ds;
            dz[tg[i]] -= (real)dscale;
        }
    }
    return DORAC_OK;
}
