/*
** cpu_backend.c — the CPU backend: OpenBLAS for GEMMs, OpenMP for the rest.
**
** This file is compiled twice. Plain, it is the fp32 backend "cpu", the one
** users run. With CPU_BACKEND_F64 defined, every element is a double and it
** is "cpu64", the oracle that finite-difference tests run the adapter code
** on. The two share every line of kernel code, so the oracle checks the very
** code path users run, only in higher precision.
**
** Invariants:
**   - Every tensor an op receives holds `real` elements (the backend's one
**     type); any other type is DORAC_E_UNSUPPORTED, never a reinterpretation.
**   - Every op checks shapes before touching memory.
**   - Reductions are parallel over independent outputs and sequential within
**     one output, so results do not depend on the thread count.
**   - Memory is counted (n_allocs, current, peak, largest) so that tests can
**     prove what an algorithm allocates. A backend is used by one thread at a
**     time; its ops use OpenMP inside.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "backend/backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/size.h"

#ifdef CPU_BACKEND_F64
typedef double real;
#define REAL_DTYPE DORAC_DTYPE_F64
#define BACKEND_NAME "cpu64"
#define CREATE_FN dorac_backend_cpu64_create
#define cblas_gemm cblas_dgemm
#else
typedef float real;
#define REAL_DTYPE DORAC_DTYPE_F32
#define BACKEND_NAME "cpu"
#define CREATE_FN dorac_backend_cpu_create
#define cblas_gemm cblas_sgemm
#endif

#define ALIGNMENT 64

typedef struct cpu_context {
    dorac_mem_stats stats;
} cpu_context;

/* ---------------------------------------------------------------------- */
/* checks                                                                 */
/* ---------------------------------------------------------------------- */

static int check_type(const dorac_tensor *t, const char *op, const char *what) {
    if (t->type != REAL_DTYPE)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: %s has dtype %s, backend %s needs %s", op,
                           what, dorac_dtype_name(t->type), BACKEND_NAME,
                           dorac_dtype_name(REAL_DTYPE));
    if (t->rows < 0 || t->cols < 0 || t->ld < t->cols || (t->rows * t->cols > 0 && !t->data))
        return dorac_error(DORAC_E_INVALID, "%s: %s has an invalid view (%lld, %lld) ld %lld", op,
                           what, (long long)t->rows, (long long)t->cols, (long long)t->ld);
    return DORAC_OK;
}

static int check_shape(const dorac_tensor *t, int64_t rows, int64_t cols, const char *op,
                       const char *what) {
    DORAC_TRY(check_type(t, op, what));
    if (t->rows != rows || t->cols != cols)
        return dorac_error(DORAC_E_INVALID, "%s: %s has shape (%lld, %lld), expected (%lld, %lld)",
                           op, what, (long long)t->rows, (long long)t->cols, (long long)rows,
                           (long long)cols);
    return DORAC_OK;
}

/* An optional (1, n) vector: absent (data NULL) or exactly (1, n). */
static int check_optional_vector(const dorac_tensor *t, int64_t n, const char *op,
                                 const char *what) {
    if (!t || !t->data) return DORAC_OK;
    return check_shape(t, 1, n, op, what);
}

static real *row_ptr(const dorac_tensor *t, int64_t i) { return (real *)t->data + i * t->ld; }

/* ---------------------------------------------------------------------- */
/* memory                                                                 */
/* ---------------------------------------------------------------------- */

/* Each block is preceded by a 64-byte header holding its size, so that free
** can keep the counters exact without a lookup table. */
static void *cpu_alloc(dorac_backend *be, size_t nbytes) {
    cpu_context *ctx = be->context;
    size_t total;
    if (!dorac_size_add(nbytes, ALIGNMENT, &total) || !dorac_size_add(total, ALIGNMENT - 1, &total)) {
        dorac_error(DORAC_E_NOMEM, "cpu: allocation of %zu bytes overflows", nbytes);
        return NULL;
    }
    total -= total % ALIGNMENT;
    unsigned char *block = aligned_alloc(ALIGNMENT, total);
    if (!block) {
        dorac_error(DORAC_E_NOMEM, "cpu: out of memory allocating %zu bytes", nbytes);
        return NULL;
    }
    memcpy(block, &nbytes, sizeof nbytes);
    ctx->stats.n_allocs++;
    ctx->stats.current_bytes += nbytes;
    if (ctx->stats.current_bytes > ctx->stats.peak_bytes) ctx->stats.peak_bytes = ctx->stats.current_bytes;
    if (nbytes > ctx->stats.largest_alloc) ctx->stats.largest_alloc = nbytes;
    return block + ALIGNMENT;
}

static void cpu_free(dorac_backend *be, void *ptr) {
    if (!ptr) return;
    cpu_context *ctx = be->context;
    unsigned char *block = (unsigned char *)ptr - ALIGNMENT;
    size_t nbytes;
    memcpy(&nbytes, block, sizeof nbytes);
    ctx->stats.current_bytes -= nbytes;
    free(block);
}

static void cpu_mem_stats(dorac_backend *be, dorac_mem_stats *out) {
    *out = ((cpu_context *)be->context)->stats;
}

static void cpu_mem_stats_reset(dorac_backend *be) {
    cpu_context *ctx = be->context;
    ctx->stats.n_allocs = 0;
    ctx->stats.largest_alloc = 0;
    ctx->stats.peak_bytes = ctx->stats.current_bytes;
}

static int cpu_upload(dorac_backend *be, const dorac_tensor *dst, const void *src,
                      dorac_dtype src_type) {
    (void)be;
    DORAC_TRY(check_type(dst, "upload", "dst"));
    if (dorac_dtype_size(src_type) == 0)
        return dorac_error(DORAC_E_INVALID, "upload: invalid source dtype %d", (int)src_type);
    size_t row_bytes = (size_t)dst->cols * dorac_dtype_size(src_type);
    for (int64_t i = 0; i < dst->rows; i++)
        dorac_convert(row_ptr(dst, i), REAL_DTYPE, (const char *)src + (size_t)i * row_bytes,
                      src_type, (size_t)dst->cols);
    return DORAC_OK;
}

static int cpu_download(dorac_backend *be, void *dst, dorac_dtype dst_type,
                        const dorac_tensor *src) {
    (void)be;
    DORAC_TRY(check_type(src, "download", "src"));
    if (dorac_dtype_size(dst_type) == 0)
        return dorac_error(DORAC_E_INVALID, "download: invalid destination dtype %d", (int)dst_type);
    size_t row_bytes = (size_t)src->cols * dorac_dtype_size(dst_type);
    for (int64_t i = 0; i < src->rows; i++)
        dorac_convert((char *)dst + (size_t)i * row_bytes, dst_type, row_ptr(src, i), REAL_DTYPE,
                      (size_t)src->cols);
    return DORAC_OK;
}

static int cpu_copy(dorac_backend *be, const dorac_tensor *dst, const dorac_tensor *src) {
    (void)be;
    DORAC_TRY(check_type(src, "copy", "src"));
    DORAC_TRY(check_shape(dst, src->rows, src->cols, "copy", "dst"));
    for (int64_t i = 0; i < src->rows; i++)
        memmove(row_ptr(dst, i), row_ptr(src, i), (size_t)src->cols * sizeof(real));
    return DORAC_OK;
}

static int cpu_fill(dorac_backend *be, const dorac_tensor *dst, double value) {
    (void)be;
    DORAC_TRY(check_type(dst, "fill", "dst"));
    real v = (real)value;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < dst->rows; i++) {
        real *row = row_ptr(dst, i);
        for (int64_t j = 0; j < dst->cols; j++) row[j] = v;
    }
    return DORAC_OK;
}

/* ---------------------------------------------------------------------- */
/* GEMM                                                                   */
/* ---------------------------------------------------------------------- */

static int cpu_gemm(dorac_backend *be, const dorac_tensor *C, const dorac_tensor *A, bool trans_a,
                    const dorac_tensor *B, bool trans_b, double alpha, double beta) {
    (void)be;
    DORAC_TRY(check_type(A, "gemm", "A"));
    DORAC_TRY(check_type(B, "gemm", "B"));
    DORAC_TRY(check_type(C, "gemm", "C"));
    int64_t M = trans_a ? A->cols : A->rows;
    int64_t K = trans_a ? A->rows : A->cols;
    int64_t Kb = trans_b ? B->cols : B->rows;
    int64_t N = trans_b ? B->rows : B->cols;
    if (K != Kb || C->rows != M || C->cols != N)
        return dorac_error(DORAC_E_INVALID,
                           "gemm: op(A) is (%lld, %lld), op(B) is (%lld, %lld), C is (%lld, %lld)",
                           (long long)M, (long long)K, (long long)Kb, (long long)N,
                           (long long)C->rows, (long long)C->cols);
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX || A->ld > INT32_MAX ||
        B->ld > INT32_MAX || C->ld > INT32_MAX)
        return dorac_error(DORAC_E_UNSUPPORTED, "gemm: dimension exceeds the 32-bit BLAS interface");
    if (M == 0 || N == 0) return DORAC_OK;
    if (K == 0) { /* op(A) op(B) is all zeros: C = beta C */
        for (int64_t i = 0; i < M; i++) {
            real *row = row_ptr(C, i);
            for (int64_t j = 0; j < N; j++) row[j] = beta == 0.0 ? 0 : (real)beta * row[j];
        }
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

static int cpu_axpby(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                     double alpha, double beta) {
    (void)be;
    DORAC_TRY(check_type(X, "axpby", "X"));
    DORAC_TRY(check_shape(out, X->rows, X->cols, "axpby", "out"));
    real a = (real)alpha, b = (real)beta;
#pragma omp parallel for schedule(static)
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

static int cpu_row_sumsq(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *W) {
    (void)be;
    DORAC_TRY(check_type(W, "row_sumsq", "W"));
    DORAC_TRY(check_shape(out, 1, W->rows, "row_sumsq", "out"));
    real *o = out->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < W->rows; i++) {
        const real *row = row_ptr(W, i);
        double acc = 0.0;
        for (int64_t j = 0; j < W->cols; j++) acc += (double)row[j] * (double)row[j];
        o[i] = (real)acc;
    }
    return DORAC_OK;
}

static int cpu_col_sum(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                       double alpha, double beta) {
    (void)be;
    DORAC_TRY(check_type(X, "col_sum", "X"));
    DORAC_TRY(check_shape(out, 1, X->cols, "col_sum", "out"));
    real *o = out->data;
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < X->cols; j++) {
        double acc = 0.0;
        for (int64_t i = 0; i < X->rows; i++) acc += row_ptr(X, i)[j];
        o[j] = (real)(alpha * acc + (beta == 0.0 ? 0.0 : beta * o[j]));
    }
    return DORAC_OK;
}

static int cpu_scale_cols_add_bias(dorac_backend *be, const dorac_tensor *Y,
                                   const dorac_tensor *scale, const dorac_tensor *bias) {
    (void)be;
    DORAC_TRY(check_type(Y, "scale_cols_add_bias", "Y"));
    DORAC_TRY(check_optional_vector(scale, Y->cols, "scale_cols_add_bias", "scale"));
    DORAC_TRY(check_optional_vector(bias, Y->cols, "scale_cols_add_bias", "bias"));
    const real *g = scale ? scale->data : NULL;
    const real *b = bias ? bias->data : NULL;
    if (!g && !b) return DORAC_OK;
    int64_t C = Y->cols;
#pragma omp parallel for schedule(static)
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

static int cpu_scale_rows(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                          const dorac_tensor *w, double alpha, double beta) {
    (void)be;
    DORAC_TRY(check_type(X, "scale_rows", "X"));
    DORAC_TRY(check_shape(out, X->rows, X->cols, "scale_rows", "out"));
    DORAC_TRY(check_shape(w, 1, X->rows, "scale_rows", "w"));
    const real *wv = w->data;
#pragma omp parallel for schedule(static)
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

static int cpu_dropout(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *in,
                       double p, uint64_t seed, uint64_t stream, int64_t row0) {
    (void)be;
    DORAC_TRY(check_type(in, "dropout", "in"));
    DORAC_TRY(check_shape(out, in->rows, in->cols, "dropout", "out"));
    if (!(p >= 0.0 && p < 1.0))
        return dorac_error(DORAC_E_INVALID, "dropout: probability %g is not in [0, 1)", p);
    real keep_scale = (real)(1.0 / (1.0 - p));
    float pf = (float)p;
    int64_t C = in->cols;
#pragma omp parallel for schedule(static)
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
/* DoRA                                                                   */
/* ---------------------------------------------------------------------- */

static int cpu_dora_norm(dorac_backend *be, const dorac_tensor *n, const dorac_tensor *g,
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

static int cpu_dora_scale_backward(dorac_backend *be, const dorac_tensor *dz,
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

static int cpu_dora_magnitude_backward(dorac_backend *be, const dorac_tensor *dm,
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

/* ---------------------------------------------------------------------- */
/* construction                                                           */
/* ---------------------------------------------------------------------- */

static void cpu_destroy(dorac_backend *be) {
    free(be->context);
    free(be);
}

dorac_backend *CREATE_FN(dorac_cpu_params params) {
    dorac_backend *be = calloc(1, sizeof *be);
    cpu_context *ctx = calloc(1, sizeof *ctx);
    if (!be || !ctx) {
        free(be);
        free(ctx);
        dorac_error(DORAC_E_NOMEM, "cpu: out of memory creating the backend");
        return NULL;
    }
    if (params.n_threads > 0) dorac_set_num_threads(params.n_threads);
    *be = (dorac_backend){
        .name = BACKEND_NAME,
        .context = ctx,
        .act_type = REAL_DTYPE,
        .weight_type = REAL_DTYPE,
        .param_type = REAL_DTYPE,
        .destroy = cpu_destroy,
        .alloc = cpu_alloc,
        .free = cpu_free,
        .mem_stats = cpu_mem_stats,
        .mem_stats_reset = cpu_mem_stats_reset,
        .upload = cpu_upload,
        .download = cpu_download,
        .copy = cpu_copy,
        .fill = cpu_fill,
        .synchronize = NULL,
        .gemm = cpu_gemm,
        .axpby = cpu_axpby,
        .row_sumsq = cpu_row_sumsq,
        .col_sum = cpu_col_sum,
        .scale_cols_add_bias = cpu_scale_cols_add_bias,
        .scale_rows = cpu_scale_rows,
        .dropout = cpu_dropout,
        .dora_norm = cpu_dora_norm,
        .dora_scale_backward = cpu_dora_scale_backward,
        .dora_magnitude_backward = cpu_dora_magnitude_backward,
    };
    return be;
}
