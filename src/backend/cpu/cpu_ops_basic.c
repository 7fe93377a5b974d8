/*
** cpu_ops_basic.c — the CPU backend's checks, transfers, GEMM and
** element-wise ops (see cpu_impl.h for the two precisions).
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "backend/cpu/cpu_impl.h"
#include "core/rng.h"

#ifdef CPU_BACKEND_F64
#define cblas_gemm cblas_dgemm
#define cblas_gemv cblas_dgemv
#else
#define cblas_gemm cblas_sgemm
#define cblas_gemv cblas_sgemv
#endif

/* ---------------------------------------------------------------------- */
/* checks                                                                 */
/* ---------------------------------------------------------------------- */

int check_type(const dorac_tensor *t, const char *op, const char *what) {
    if (t->type != REAL_DTYPE)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: %s has dtype %s, backend %s needs %s", op,
                           what, dorac_dtype_name(t->type), BACKEND_NAME,
                           dorac_dtype_name(REAL_DTYPE));
    return dorac_check_view(t, op, what);
}

int check_shape(const dorac_tensor *t, int64_t rows, int64_t cols, const char *op,
                       const char *what) {
    DORAC_TRY(check_type(t, op, what));
    return dorac_check_dims(t, rows, cols, op, what);
}

int check_optional_vector(const dorac_tensor *t, int64_t n, const char *op,
                                 const char *what) {
    if (!t || !t->data) return DORAC_OK;
    return check_shape(t, 1, n, op, what);
}


int check_index(const dorac_tensor *t, int64_t n, int64_t limit, const char *op,
                const char *what) {
    DORAC_TRY(dorac_check_index_shape(t, n, op, what));
    return dorac_check_index_values(t->data, n, limit, false, op, what);
}

/* Host transfers convert between any float types; I32 (ids, positions)
** tensors move only to and from I32 arrays. */
static int transfer_types_ok(const dorac_tensor *t, dorac_dtype host_type, const char *op) {
    if (t->type == DORAC_DTYPE_I32 || host_type == DORAC_DTYPE_I32) {
        if (t->type != host_type)
            return dorac_error(DORAC_E_UNSUPPORTED, "%s: cannot convert between %s and %s", op,
                               dorac_dtype_name(t->type), dorac_dtype_name(host_type));
        if (t->rows < 0 || t->cols < 0 || t->ld < t->cols)
            return dorac_error(DORAC_E_INVALID, "%s: invalid I32 view", op);
        return DORAC_OK;
    }
    DORAC_TRY(check_type(t, op, "tensor"));
    if (dorac_dtype_size(host_type) == 0)
        return dorac_error(DORAC_E_INVALID, "%s: invalid host dtype %d", op, (int)host_type);
    return DORAC_OK;
}

int CPU_FN(upload)(dorac_backend *be, const dorac_tensor *dst, const void *src,
                   dorac_dtype src_type) {
    (void)be;
    DORAC_TRY(transfer_types_ok(dst, src_type, "upload"));
    size_t row_bytes = (size_t)dst->cols * dorac_dtype_size(src_type);
    size_t ld_bytes = (size_t)dst->ld * dorac_dtype_size(dst->type);
    for (int64_t i = 0; i < dst->rows; i++)
        dorac_convert((char *)dst->data + (size_t)i * ld_bytes, dst->type,
                      (const char *)src + (size_t)i * row_bytes, src_type, (size_t)dst->cols);
    return DORAC_OK;
}

int CPU_FN(download)(dorac_backend *be, void *dst, dorac_dtype dst_type, const dorac_tensor *src) {
    (void)be;
    DORAC_TRY(transfer_types_ok(src, dst_type, "download"));
    size_t row_bytes = (size_t)src->cols * dorac_dtype_size(dst_type);
    size_t ld_bytes = (size_t)src->ld * dorac_dtype_size(src->type);
    for (int64_t i = 0; i < src->rows; i++)
        dorac_convert((char *)dst + (size_t)i * row_bytes, dst_type,
                      (const char *)src->data + (size_t)i * ld_bytes, src->type, (size_t)src->cols);
    return DORAC_OK;
}

int CPU_FN(copy)(dorac_backend *be, const dorac_tensor *dst, const dorac_tensor *src) {
    (void)be;
    DORAC_TRY(check_type(src, "copy", "src"));
    DORAC_TRY(check_shape(dst, src->rows, src->cols, "copy", "dst"));
    for (int64_t i = 0; i < src->rows; i++)
        memmove(row_ptr(dst, i), row_ptr(src, i), (size_t)src->cols * sizeof(real));
    return DORAC_OK;
}

int CPU_FN(fill)(dorac_backend *be, const dorac_tensor *dst, double value) {
    (void)be;
    DORAC_TRY(check_type(dst, "fill", "dst"));
    real v = (real)value;
CPU_PARALLEL_FOR(dst->rows * dst->cols)
    for (int64_t i = 0; i < dst->rows; i++) {
        real *row = row_ptr(dst, i);
        for (int64_t j = 0; j < dst->cols; j++) row[j] = v;
    }
    return DORAC_OK;
}

/* ---------------------------------------------------------------------- */
/* GEMM                                                                   */
/* ---------------------------------------------------------------------- */

int CPU_FN(gemm)(dorac_backend *be, const dorac_tensor *C, const dorac_tensor *A, bool trans_a,
                    const dorac_tensor *B, bool trans_b, double alpha, double beta) {
    (void)be;
    DORAC_TRY(check_type(A, "gemm", "A"));
    DORAC_TRY(check_type(B, "gemm", "B"));
    DORAC_TRY(check_type(C, "gemm", "C"));
    int64_t M, N, K;
    DORAC_TRY(dorac_gemm_shape(C, A, trans_a, B, trans_b, &M, &N, &K));
    if (M == 0 || N == 0) return DORAC_OK;
    if (K == 0) { /* op(A) op(B) is all zeros: C = beta C */
        for (int64_t i = 0; i < M; i++) {
            real *row = row_ptr(C, i);
            for (int64_t j = 0; j < N; j++) row[j] = beta == 0.0 ? 0 : (real)beta * row[j];
        }
        return DORAC_OK;
    }
    if (M == 1) {
        /* One row (decoding a token): gemv, which OpenBLAS 0.3.21 runs 3-6x
        ** faster than gemm with M = 1. C's row is zeroed first when beta is
        ** 0, so that NaN there is ignored as gemm ignores it. */
        real *c = C->data;
        const real *a = A->data;
        int inc_a = trans_a ? (int)A->ld : 1;
        if (beta == 0.0) memset(c, 0, (size_t)N * sizeof(real));
        /* a small gemv on one thread: waking BLAS's threads costs more than
        ** it saves (see CPU_MIN_PARALLEL_WORK). The choice depends on the
        ** sizes alone, so results stay deterministic for a thread count. */
        bool serial = N * K < 64 * CPU_MIN_PARALLEL_WORK;
        int saved = serial ? openblas_get_num_threads() : 0;
        if (serial) openblas_set_num_threads(1);
        if (trans_b) /* B (N,K): c = alpha B a + beta c */
            cblas_gemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, (real)alpha, (const real *)B->data,
                       (int)B->ld, a, inc_a, (real)beta, c, 1);
        else /* B (K,N): c = alpha B^T a + beta c */
            cblas_gemv(CblasRowMajor, CblasTrans, (int)K, (int)N, (real)alpha, (const real *)B->data,
                       (int)(B->ld > 0 ? B->ld : 1), a, inc_a, (real)beta, c, 1);
        if (serial) openblas_set_num_threads(saved);
        return DORAC_OK;
    }
    cblas_gemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
               (int)M, (int)N, (int)K, (real)alpha, (const real *)A->data, (int)(A->ld > 0 ? A->ld : 1),
               (const real *)B->data, (int)(B->ld > 0 ? B->ld : 1), (real)beta, (real *)C->data,
               (int)(C->ld > 0 ? C->ld : 1));
    return DORAC_OK;
}

/* ---------------------------------------------------------------------- */
/* element-wise and reductions                                            */
/* ---------------------------------------------------------------------- */

int CPU_FN(axpby)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                     double alpha, double beta) {
    (void)be;
    DORAC_TRY(check_type(X, "axpby", "X"));
    DORAC_TRY(check_shape(out, X->rows, X->cols, "axpby", "out"));
    real a = (real)alpha, b = (real)beta;
CPU_PARALLEL_FOR(X->rows * X->cols)
    for (int64_t i = 0; i < X->rows; i++) {
        const real *x = row_ptr(X, i);
        real *o = row_ptr(out, i);
        if (beta == 0.0)
            for (int64_t j = 0; j < X->cols; j++) o[j] = a * x[j];
        else
            for (int64_t j = 0; j < X->cols; j++) o[j] = a * x[j] + b * o[j];
    }
    return DORAC_OK;
}

int CPU_FN(row_sumsq)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *W) {
    (void)be;
    DORAC_TRY(check_type(W, "row_sumsq", "W"));
    DORAC_TRY(check_shape(out, 1, W->rows, "row_sumsq", "out"));
    real *o = out->data;
CPU_PARALLEL_FOR(W->rows * W->cols)
    for (int64_t i = 0; i < W->rows; i++) {
        const real *row = row_ptr(W, i);
        double acc = 0.0;
        for (int64_t j = 0; j < W->cols; j++) acc += (double)row[j] * (double)row[j];
        o[i] = (real)acc;
    }
    return DORAC_OK;
}

int CPU_FN(col_sum)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                       double alpha, double beta) {
    (void)be;
    DORAC_TRY(check_type(X, "col_sum", "X"));
    DORAC_TRY(check_shape(out, 1, X->cols, "col_sum", "out"));
    real *o = out->data;
CPU_PARALLEL_FOR(X->rows * X->cols)
    for (int64_t j = 0; j < X->cols; j++) {
        double acc = 0.0;
        for (int64_t i = 0; i < X->rows; i++) acc += row_ptr(X, i)[j];
        o[j] = (real)(alpha * acc + (beta == 0.0 ? 0.0 : beta * o[j]));
    }
    return DORAC_OK;
}

int CPU_FN(scale_cols_add_bias)(dorac_backend *be, const dorac_tensor *Y,
                                   const dorac_tensor *scale, const dorac_tensor *bias) {
    (void)be;
    DORAC_TRY(check_type(Y, "scale_cols_add_bias", "Y"));
    DORAC_TRY(check_optional_vector(scale, Y->cols, "scale_cols_add_bias", "scale"));
    DORAC_TRY(check_optional_vector(bias, Y->cols, "scale_cols_add_bias", "bias"));
    const real *g = scale ? scale->data : NULL;
    const real *b = bias ? bias->data : NULL;
    if (!g && !b) return DORAC_OK;
    int64_t C = Y->cols;
CPU_PARALLEL_FOR(Y->rows * Y->cols)
    for (int64_t i = 0; i < Y->rows; i++) {
        real *row = row_ptr(Y, i);
        if (g && b)
            for (int64_t c = 0; c < C; c++) row[c] = g[c] * row[c] + b[c];
        else if (g)
            for (int64_t c = 0; c < C; c++) row[c] = g[c] * row[c];
        else
            for (int64_t c = 0; c < C; c++) row[c] += b[c];
    }
    return DORAC_OK;
}

int CPU_FN(scale_rows)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                          const dorac_tensor *w, double alpha, double beta) {
    (void)be;
    DORAC_TRY(check_type(X, "scale_rows", "X"));
    DORAC_TRY(check_shape(out, X->rows, X->cols, "scale_rows", "out"));
    DORAC_TRY(check_shape(w, 1, X->rows, "scale_rows", "w"));
    const real *wv = w->data;
CPU_PARALLEL_FOR(X->rows * X->cols)
    for (int64_t i = 0; i < X->rows; i++) {
        const real *x = row_ptr(X, i);
        real *o = row_ptr(out, i);
        real f = (real)(alpha * wv[i]);
        if (beta == 0.0)
            for (int64_t j = 0; j < X->cols; j++) o[j] = f * x[j];
        else
            for (int64_t j = 0; j < X->cols; j++) o[j] = (real)beta * o[j] + f * x[j];
    }
    return DORAC_OK;
}

int CPU_FN(dropout)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *in,
                       double p, uint64_t seed, uint64_t stream, int64_t row0) {
    (void)be;
    DORAC_TRY(check_type(in, "dropout", "in"));
    DORAC_TRY(check_shape(out, in->rows, in->cols, "dropout", "out"));
    if (!(p >= 0.0 && p < 1.0))
        return dorac_error(DORAC_E_INVALID, "dropout: probability %g is not in [0, 1)", p);
    real keep_scale = (real)(1.0 / (1.0 - p));
    float pf = (float)p;
    int64_t C = in->cols;
CPU_PARALLEL_FOR(in->rows * in->cols)
    for (int64_t i = 0; i < in->rows; i++) {
        const real *x = row_ptr(in, i);
        real *o = row_ptr(out, i);
        uint64_t base = (uint64_t)(row0 + i) * (uint64_t)C;
        for (int64_t j = 0; j < C; j++)
            o[j] = dorac_rng_uniform(seed, stream, base + (uint64_t)j) >= pf ? x[j] * keep_scale : 0;
    }
    return DORAC_OK;
}


/* ---------------------------------------------------------------------- */
/* optimizer                                                              */
/* ---------------------------------------------------------------------- */

int CPU_FN(sum_squares)(dorac_backend *be, const dorac_tensor *X, double *out) {
    (void)be;
    DORAC_TRY(check_type(X, "sum_squares", "X"));
    double total = 0;
    /* row sums in parallel, then added in row order: thread-count independent */
    double *rows = malloc((size_t)(X->rows > 0 ? X->rows : 1) * sizeof *rows);
    if (!rows) return dorac_error(DORAC_E_NOMEM, "sum_squares: out of memory");
CPU_PARALLEL_FOR(X->rows * X->cols)
    for (int64_t i = 0; i < X->rows; i++) {
        const real *x = row_ptr(X, i);
        double acc = 0;
        for (int64_t j = 0; j < X->cols; j++) acc += (double)x[j] * x[j];
        rows[i] = acc;
    }
    for (int64_t i = 0; i < X->rows; i++) total += rows[i];
    free(rows);
    *out = total;
    return DORAC_OK;
}

int CPU_FN(adamw)(dorac_backend *be, const dorac_tensor *param, const dorac_tensor *grad,
                  const dorac_tensor *m, const dorac_tensor *v, double lr, double beta1, double beta2,
                  double eps, double weight_decay, int64_t step, double grad_scale) {
    (void)be;
    const char *op = "adamw";
    DORAC_TRY(check_type(param, op, "param"));
    int64_t R = param->rows, C = param->cols;
    DORAC_TRY(check_shape(grad, R, C, op, "grad"));
    DORAC_TRY(check_shape(m, R, C, op, "m"));
    DORAC_TRY(check_shape(v, R, C, op, "v"));
    if (step < 1) return dorac_error(DORAC_E_INVALID, "adamw: step %lld must be >= 1", (long long)step);
    /* the scalars in the same precision and order as torch's */
    real decay = (real)(1.0 - lr * weight_decay);
    real b1 = (real)beta1, b2 = (real)beta2, gs = (real)grad_scale, e = (real)eps;
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    real step_size = (real)(lr / bc1), bc2_sqrt = (real)sqrt(bc2);
CPU_PARALLEL_FOR(param->rows * param->cols)
    for (int64_t i = 0; i < R; i++) {
        real *p = row_ptr(param, i), *mm = row_ptr(m, i), *vv = row_ptr(v, i);
        const real *g = row_ptr(grad, i);
        for (int64_t j = 0; j < C; j++) {
            real gj = g[j] * gs;
            p[j] *= decay;
            mm[j] += (gj - mm[j]) * (1 - b1); /* lerp, as torch */
            vv[j] = vv[j] * b2 + (1 - b2) * gj * gj;
            real denom = sqrt(vv[j]) / bc2_sqrt + e;
            p[j] -= step_size * (mm[j] / denom);
        }
    }
    return DORAC_OK;
}
