/*
** cpu_ops_attention.c — causal softmax attention with GQA, forward and
** backward, in two versions:
**
**   attention_forward / attention_backward (the backend's entries): the
**   flash-attention recurrence over blocks of QB query rows, with every
**   product a single-threaded BLAS GEMM: S = Q_blk K^T, O_blk = P V, and in
**   the backward dV += P^T dO, dP = dO V^T, dQ = dS K, dK += dS^T Q_blk.
**   Only the log-sum-exp of each score row is kept between the passes (no
**   (T,T) matrix); scratch is two (QB, T) blocks per thread.
**
**   attention_forward_ref / attention_backward_ref: the same math one query
**   and one key at a time, the slow obvious twin the tests compare with.
**
** Work is split over (batch, head) pairs in the forward and (batch, kv
** head) pairs in the backward, so every output element is written by one
** thread, in a fixed order: results do not depend on the thread count.
** BLAS runs single-threaded inside the parallel region (cpu_blas.h).
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_blas.h"
#include "backend/cpu/cpu_impl.h"

/* query rows per block */
#define QB 64

/* ---------------------------------------------------------------------- */
/* checks and the reference twin                                          */
/* ---------------------------------------------------------------------- */

static int check_attention(const dorac_tensor *o, const dorac_tensor *q, const dorac_tensor *k,
                           const dorac_tensor *v, const dorac_tensor *lse, int64_t B, int64_t T,
                           int64_t H, int64_t KV, int64_t D, const char *op) {
    if (B <= 0 || T <= 0 || H <= 0 || KV <= 0 || D <= 0 || H % KV)
        return dorac_error(DORAC_E_INVALID, "%s: bad sizes B=%lld T=%lld H=%lld KV=%lld D=%lld", op,
                           (long long)B, (long long)T, (long long)H, (long long)KV, (long long)D);
    DORAC_TRY(check_shape(q, B * T, H * D, op, "q"));
    DORAC_TRY(check_shape(k, B * T, KV * D, op, "k"));
    DORAC_TRY(check_shape(v, B * T, KV * D, op, "v"));
    DORAC_TRY(check_shape(o, B * T, H * D, op, "out"));
    DORAC_TRY(check_shape(lse, 1, B * H * T, op, "lse"));
    return DORAC_OK;
}

static real dot(const real *a, const real *b, int64_t n) {
    real s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

int CPU_FN(attention_forward_ref)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *lse,
                              const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                              int64_t B, int64_t T, int64_t H, int64_t KV, int64_t D) {
    (void)be;
    DORAC_TRY(check_attention(out, q, k, v, lse, B, T, H, KV, D, "attention_forward_ref"));
    real *lv = lse->data;
    const real scale = (real)(1.0 / sqrt((double)D));
    int64_t group = H / KV;
    int failed = 0;
#pragma omp parallel
    {
        real *scores = malloc((size_t)T * sizeof(real));
        double *acc = malloc((size_t)D * sizeof(double));
        if (!scores || !acc) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t bh = 0; bh < B * H; bh++) {
            if (failed) continue;
            int64_t b = bh / H, h = bh % H, kvh = h / group;
            for (int64_t t = 0; t < T; t++) {
                const real *qt = row_ptr(q, b * T + t) + h * D;
                real mx = -INFINITY;
                for (int64_t s = 0; s <= t; s++) {
                    scores[s] = dot(qt, row_ptr(k, b * T + s) + kvh * D, D) * scale;
                    if (scores[s] > mx) mx = scores[s];
                }
                double sum = 0;
                for (int64_t d = 0; d < D; d++) acc[d] = 0;
                for (int64_t s = 0; s <= t; s++) {
                    double p = exp((double)(scores[s] - mx));
                    sum += p;
                    const real *vs = row_ptr(v, b * T + s) + kvh * D;
                    for (int64_t d = 0; d < D; d++) acc[d] += p * vs[d];
                }
                real *ot = row_ptr(out, b * T + t) + h * D;
                for (int64_t d = 0; d < D; d++) ot[d] = (real)(acc[d] / sum);
                lv[bh * T + t] = (real)((double)mx + log(sum));
            }
        }
        free(scores);
        free(acc);
    }
    if (failed) return dorac_error(DORAC_E_NOMEM, "attention_forward: out of memory for scratch");
    return DORAC_OK;
}

int CPU_FN(attention_backward_ref)(dorac_backend *be, const dorac_tensor *dq, const dorac_tensor *dk,
                               const dorac_tensor *dv, const dorac_tensor *dout,
                               const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                               const dorac_tensor *out, const dorac_tensor *lse, int64_t B,
                               int64_t T, int64_t H, int64_t KV, int64_t D) {
    (void)be;
    const char *op = "attention_backward_ref";
    DORAC_TRY(check_attention(out, q, k, v, lse, B, T, H, KV, D, op));
    DORAC_TRY(check_shape(dq, B * T, H * D, op, "dq"));
    DORAC_TRY(check_shape(dk, B * T, KV * D, op, "dk"));
    DORAC_TRY(check_shape(dv, B * T, KV * D, op, "dv"));
    DORAC_TRY(check_shape(dout, B * T, H * D, op, "dout"));
    const real *lv = lse->data;
    const double scale = 1.0 / sqrt((double)D);
    int64_t group = H / KV;
    /* one (b, kv head) per task: it owns dk, dv of that head and dq of its
    ** query heads, so no two threads write the same element */
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t bk = 0; bk < B * KV; bk++) {
        int64_t b = bk / KV, kvh = bk % KV;
        for (int64_t t = 0; t < T; t++) {
            memset(row_ptr(dk, b * T + t) + kvh * D, 0, (size_t)D * sizeof(real));
            memset(row_ptr(dv, b * T + t) + kvh * D, 0, (size_t)D * sizeof(real));
        }
        for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
            for (int64_t t = 0; t < T; t++) {
                const real *qt = row_ptr(q, b * T + t) + h * D;
                const real *gt = row_ptr(dout, b * T + t) + h * D;
                const real *ot = row_ptr(out, b * T + t) + h * D;
                real *dqt = row_ptr(dq, b * T + t) + h * D;
                double l = lv[(b * H + h) * T + t];
                double Dt = dot(gt, ot, D); /* sum_s p_s dp_s = dout · out */
                for (int64_t d = 0; d < D; d++) dqt[d] = 0;
                for (int64_t s = 0; s <= t; s++) {
                    const real *ks = row_ptr(k, b * T + s) + kvh * D;
                    const real *vs = row_ptr(v, b * T + s) + kvh * D;
                    real *dks = row_ptr(dk, b * T + s) + kvh * D;
                    real *dvs = row_ptr(dv, b * T + s) + kvh * D;
                    double p = exp(dot(qt, ks, D) * scale - l);
                    double dp = dot(gt, vs, D);
                    real ds = (real)(p * (dp - Dt) * scale);
                    real pr = (real)p;
                    for (int64_t d = 0; d < D; d++) {
                        dqt[d] += ds * ks[d];
                        dks[d] += ds * qt[d];
                        dvs[d] += pr * gt[d];
                    }
                }
            }
        }
    }
    return DORAC_OK;
}


/* ---------------------------------------------------------------------- */
/* the blocked version                                                    */
/* ---------------------------------------------------------------------- */

int CPU_FN(attention_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *lse,
                              const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                              int64_t B, int64_t T, int64_t H, int64_t KV, int64_t D) {
    (void)be;
    DORAC_TRY(check_attention(out, q, k, v, lse, B, T, H, KV, D, "attention_forward"));
    if (T > INT32_MAX / QB || q->ld > INT32_MAX || k->ld > INT32_MAX || v->ld > INT32_MAX || out->ld > INT32_MAX)
        return dorac_error(DORAC_E_UNSUPPORTED, "attention_forward: sizes exceed the 32-bit BLAS interface");
    real *lv = lse->data;
    const real scale = (real)(1.0 / sqrt((double)D));
    int64_t group = H / KV;
    int saved = blas_serial_begin(), failed = 0;
#pragma omp parallel
    {
        real *S = malloc((size_t)(QB * T) * sizeof(real));
        if (!S) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t bh = 0; bh < B * H; bh++) {
            if (failed) continue;
            int64_t b = bh / H, h = bh % H, kvh = h / group;
            const real *Kb = row_ptr(k, b * T) + kvh * D, *Vb = row_ptr(v, b * T) + kvh * D;
            for (int64_t t0 = 0; t0 < T; t0 += QB) {
                int64_t rows = T - t0 < QB ? T - t0 : QB, keys = t0 + rows; /* causal: keys < t0+rows */
                const real *Qb = row_ptr(q, b * T + t0) + h * D;
                /* S = scale Q_blk K[0:keys]^T */
                blas_gemm(false, true, (int)rows, (int)keys, (int)D, scale, Qb, (int)q->ld, Kb, (int)k->ld, 0, S, (int)keys);
                /* keys beyond each row's own position t0+i are masked */
                for (int64_t i = 0; i < rows; i++) lv[bh * T + t0 + i] = (real)softmax_prefix(S + i * keys, t0 + i, keys);
                /* O_blk = P V[0:keys] */
                blas_gemm(false, false, (int)rows, (int)D, (int)keys, 1, S, (int)keys, Vb, (int)v->ld, 0,
                     row_ptr(out, b * T + t0) + h * D, (int)out->ld);
            }
        }
        free(S);
    }
    blas_serial_end(saved);
    if (failed) return dorac_error(DORAC_E_NOMEM, "attention_forward: out of memory for scratch");
    return DORAC_OK;
}

int CPU_FN(attention_backward)(dorac_backend *be, const dorac_tensor *dq, const dorac_tensor *dk,
                               const dorac_tensor *dv, const dorac_tensor *dout,
                               const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                               const dorac_tensor *out, const dorac_tensor *lse, int64_t B,
                               int64_t T, int64_t H, int64_t KV, int64_t D) {
    (void)be;
    const char *op = "attention_backward";
    DORAC_TRY(check_attention(out, q, k, v, lse, B, T, H, KV, D, op));
    DORAC_TRY(check_shape(dq, B * T, H * D, op, "dq"));
    DORAC_TRY(check_shape(dk, B * T, KV * D, op, "dk"));
    DORAC_TRY(check_shape(dv, B * T, KV * D, op, "dv"));
    DORAC_TRY(check_shape(dout, B * T, H * D, op, "dout"));
    if (T > INT32_MAX / QB || q->ld > INT32_MAX || k->ld > INT32_MAX || dq->ld > INT32_MAX || dk->ld > INT32_MAX)
        return dorac_error(DORAC_E_UNSUPPORTED, "attention_backward: sizes exceed the 32-bit BLAS interface");
    const real *lv = lse->data;
    const real scale = (real)(1.0 / sqrt((double)D));
    int64_t group = H / KV;
    int saved = blas_serial_begin(), failed = 0;
#pragma omp parallel
    {
        real *P = malloc((size_t)(QB * T) * sizeof(real)), *dP = malloc((size_t)(QB * T) * sizeof(real));
        if (!P || !dP) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t bk = 0; bk < B * KV; bk++) {
            if (failed) continue;
            int64_t b = bk / KV, kvh = bk % KV;
            const real *Kb = row_ptr(k, b * T) + kvh * D, *Vb = row_ptr(v, b * T) + kvh * D;
            real *dKb = row_ptr(dk, b * T) + kvh * D, *dVb = row_ptr(dv, b * T) + kvh * D;
            for (int64_t t = 0; t < T; t++) {
                memset(dKb + t * dk->ld, 0, (size_t)D * sizeof(real));
                memset(dVb + t * dv->ld, 0, (size_t)D * sizeof(real));
            }
            for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
                for (int64_t t0 = 0; t0 < T; t0 += QB) {
                    int64_t rows = T - t0 < QB ? T - t0 : QB, keys = t0 + rows;
                    const real *Qb = row_ptr(q, b * T + t0) + h * D, *dOb = row_ptr(dout, b * T + t0) + h * D;
                    const real *Ob = row_ptr(out, b * T + t0) + h * D;
                    /* P = exp(scale Q K^T - lse), masked */
                    blas_gemm(false, true, (int)rows, (int)keys, (int)D, scale, Qb, (int)q->ld, Kb, (int)k->ld, 0, P, (int)keys);
                    for (int64_t i = 0; i < rows; i++) {
                        real *p = P + i * keys, l = lv[(b * H + h) * T + t0 + i];
                        int64_t last = t0 + i;
                        for (int64_t j = 0; j <= last; j++) p[j] = R_EXP(p[j] - l);
                        for (int64_t j = last + 1; j < keys; j++) p[j] = 0;
                    }
                    /* dV += P^T dO ;  dP = dO V^T */
                    blas_gemm(true, false, (int)keys, (int)D, (int)rows, 1, P, (int)keys, dOb, (int)dout->ld, 1, dVb, (int)dv->ld);
                    blas_gemm(false, true, (int)rows, (int)keys, (int)D, 1, dOb, (int)dout->ld, Vb, (int)v->ld, 0, dP, (int)keys);
                    /* dS = P (dP - rowsum(dO ⊙ O)) scale, into dP */
                    for (int64_t i = 0; i < rows; i++) {
                        const real *go = dOb + i * dout->ld, *oo = Ob + i * out->ld;
                        real Dt = 0;
                        for (int64_t d = 0; d < D; d++) Dt += go[d] * oo[d];
                        real *p = P + i * keys, *g = dP + i * keys;
                        for (int64_t j = 0; j < keys; j++) g[j] = p[j] * (g[j] - Dt) * scale;
                    }
                    /* dQ_blk = dS K ;  dK += dS^T Q_blk */
                    blas_gemm(false, false, (int)rows, (int)D, (int)keys, 1, dP, (int)keys, Kb, (int)k->ld, 0,
                         row_ptr(dq, b * T + t0) + h * D, (int)dq->ld);
                    blas_gemm(true, false, (int)keys, (int)D, (int)rows, 1, dP, (int)keys, Qb, (int)q->ld, 1, dKb, (int)dk->ld);
                }
            }
        }
        free(P);
        free(dP);
    }
    blas_serial_end(saved);
    if (failed) return dorac_error(DORAC_E_NOMEM, "attention_backward: out of memory for scratch");
    return DORAC_OK;
}
