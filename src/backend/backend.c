/*
** backend.c — small helpers shared by every user of the backend interface.
*/
#include "backend/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/size.h"

dorac_tensor dorac_tensor_rows(const dorac_tensor *t, int64_t row0, int64_t n) {
    dorac_tensor v = *t;
    if (t->data) v.data = (char *)t->data + (size_t)(row0 * t->ld) * dorac_dtype_size(t->type);
    v.rows = n;
    return v;
}

size_t dorac_tensor_nbytes(dorac_dtype type, int64_t rows, int64_t cols) {
    size_t n;
    if (rows < 0 || cols < 0 || !dorac_size_mul3((size_t)rows, (size_t)cols, dorac_dtype_size(type), &n))
        return 0;
    return n;
}

int dorac_tensor_alloc(dorac_backend *be, dorac_tensor *t, dorac_dtype type, int64_t rows,
                       int64_t cols, const char *what) {
    *t = dorac_tensor_none(type);
    if (rows < 0 || cols < 0)
        return dorac_error(DORAC_E_INVALID, "%s: negative shape (%lld, %lld)", what,
                           (long long)rows, (long long)cols);
    size_t nbytes = dorac_tensor_nbytes(type, rows, cols);
    if (nbytes == 0 && rows != 0 && cols != 0)
        return dorac_error(DORAC_E_NOMEM, "%s: size (%lld, %lld) overflows", what,
                           (long long)rows, (long long)cols);
    void *p = be->alloc(be, nbytes ? nbytes : 1);
    if (!p) return dorac_error_prefix(DORAC_E_NOMEM, "%s (%lld x %lld)", what, (long long)rows, (long long)cols);
    *t = dorac_tensor_view(p, type, rows, cols);
    return DORAC_OK;
}

void dorac_tensor_free(dorac_backend *be, dorac_tensor *t) {
    if (t->data) be->free(be, t->data);
    *t = dorac_tensor_none(t->type);
}

const char *dorac_shape_str(const dorac_tensor *t, char *buf, size_t size) {
    snprintf(buf, size, "(%lld, %lld)", (long long)t->rows, (long long)t->cols);
    return buf;
}

int dorac_fill_many(dorac_backend *be, const dorac_tensor *const *dst, size_t n, double value) {
    if (be->fill_many) return be->fill_many(be, dst, n, value);
    for (size_t i = 0; i < n; i++)
        if (dst[i]->data) DORAC_TRY(be->fill(be, dst[i], value));
    return DORAC_OK;
}

int dorac_gemm_many(dorac_backend *be, const dorac_tensor *const *C, const dorac_tensor *const *A, bool trans_a,
                    const dorac_tensor *const *B, bool trans_b, size_t n, double alpha, double beta) {
    if (be->gemm_many) return be->gemm_many(be, C, A, trans_a, B, trans_b, n, alpha, beta);
    for (size_t i = 0; i < n; i++) DORAC_TRY(be->gemm(be, C[i], A[i], trans_a, B[i], trans_b, alpha, beta));
    return DORAC_OK;
}

int dorac_rope_copy(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *x, const dorac_tensor *pos,
                    const dorac_tensor *cos, const dorac_tensor *sin, int64_t n_heads, int64_t head_dim,
                    bool inverse) {
    if (be->rope_copy) return be->rope_copy(be, out, x, pos, cos, sin, n_heads, head_dim, inverse);
    if (out->data == x->data && out->ld != x->ld)
        return dorac_error(DORAC_E_INVALID, "rope_copy: out is x with another row stride");
    if (out->data != x->data) DORAC_TRY(be->copy(be, out, x));
    return be->rope(be, out, pos, cos, sin, n_heads, head_dim, inverse);
}

int dorac_copy_many(dorac_backend *be, const dorac_tensor *const *dst, const dorac_tensor *const *src,
                    size_t n) {
    if (be->copy_many) return be->copy_many(be, dst, src, n);
    for (size_t i = 0; i < n; i++)
        if (dst[i]->data) DORAC_TRY(be->copy(be, dst[i], src[i]));
    return DORAC_OK;
}

int dorac_dora_norm_many(dorac_backend *be, const dorac_dora_norm_item *items, size_t n, double floor) {
    if (be->dora_norm_many) return be->dora_norm_many(be, items, n, floor);
    for (size_t i = 0; i < n; i++) {
        const dorac_dora_norm_item *it = &items[i];
        /* A exactly when B, with B's rank as rows: as the batched entries check */
        bool has_a = it->A && it->A->data, has_b = it->B && it->B->data;
        int64_t r = has_b ? it->B->cols : 0;
        if (has_a != has_b || (has_a && (it->A->rows != r || it->A->cols < 1)))
            return dorac_error(DORAC_E_INVALID, "dora_norm_many: item %zu: A is (%lld, %lld) for rank %lld", i,
                               has_a ? (long long)it->A->rows : 0LL, has_a ? (long long)it->A->cols : 0LL,
                               (long long)r);
        if (has_a) DORAC_TRY(be->gemm(be, it->G, it->A, false, it->A, true, 1.0, 0.0));
        DORAC_TRY(be->dora_norm(be, it->n, it->g, it->c, it->B, it->P, it->G, it->m, it->scale, floor));
    }
    return DORAC_OK;
}

int dorac_sum_squares_many(dorac_backend *be, const dorac_tensor *const *X, size_t n, double *out) {
    if (be->sum_squares_many) return be->sum_squares_many(be, X, n, out);
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        double s;
        DORAC_TRY(be->sum_squares(be, X[i], &s));
        total += s;
    }
    *out = total;
    return DORAC_OK;
}

int dorac_check_view(const dorac_tensor *t, const char *op, const char *what) {
    if (t->rows < 0 || t->cols < 0 || t->ld < t->cols || (t->rows * t->cols > 0 && !t->data))
        return dorac_error(DORAC_E_INVALID, "%s: %s has an invalid view (%lld, %lld) ld %lld", op, what,
                           (long long)t->rows, (long long)t->cols, (long long)t->ld);
    return DORAC_OK;
}

int dorac_check_dims(const dorac_tensor *t, int64_t rows, int64_t cols, const char *op, const char *what) {
    if (t->rows != rows || t->cols != cols)
        return dorac_error(DORAC_E_INVALID, "%s: %s has shape (%lld, %lld), expected (%lld, %lld)", op, what,
                           (long long)t->rows, (long long)t->cols, (long long)rows, (long long)cols);
    return DORAC_OK;
}

int dorac_check_index_shape(const dorac_tensor *t, int64_t n, const char *op, const char *what) {
    if (t->type != DORAC_DTYPE_I32)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: %s has dtype %s, expected I32", op, what,
                           dorac_dtype_name(t->type));
    if (t->rows != 1 || t->cols != n || (n > 0 && !t->data))
        return dorac_error(DORAC_E_INVALID, "%s: %s has shape (%lld, %lld), expected (1, %lld)", op, what,
                           (long long)t->rows, (long long)t->cols, (long long)n);
    return DORAC_OK;
}

int dorac_check_index_values(const int32_t *v, int64_t n, int64_t limit, bool ignore_ok, const char *op,
                             const char *what) {
    for (int64_t i = 0; i < n; i++)
        if ((v[i] < 0 || v[i] >= limit) && !(ignore_ok && v[i] == DORAC_IGNORE_INDEX))
            return dorac_error(DORAC_E_INVALID, "%s: %s[%lld] = %d is outside [0, %lld)", op, what, (long long)i,
                               (int)v[i], (long long)limit);
    return DORAC_OK;
}

int dorac_gemm_shape(const dorac_tensor *C, const dorac_tensor *A, bool trans_a, const dorac_tensor *B,
                     bool trans_b, int64_t *M, int64_t *N, int64_t *K) {
    *M = trans_a ? A->cols : A->rows;
    *K = trans_a ? A->rows : A->cols;
    int64_t Kb = trans_b ? B->cols : B->rows;
    *N = trans_b ? B->rows : B->cols;
    if (*K != Kb || C->rows != *M || C->cols != *N)
        return dorac_error(DORAC_E_INVALID,
                           "gemm: op(A) is (%lld, %lld), op(B) is (%lld, %lld), C is (%lld, %lld)",
                           (long long)*M, (long long)*K, (long long)Kb, (long long)*N,
                           (long long)C->rows, (long long)C->cols);
    if (*M > INT32_MAX || *N > INT32_MAX || *K > INT32_MAX || A->ld > INT32_MAX ||
        B->ld > INT32_MAX || C->ld > INT32_MAX)
        return dorac_error(DORAC_E_UNSUPPORTED, "gemm: dimension exceeds the 32-bit BLAS interface");
    return DORAC_OK;
}

int dorac_lora_up_scale(dorac_backend *be, const dorac_tensor *Y, const dorac_tensor *U,
                        const dorac_tensor *B, double s, const dorac_tensor *scale,
                        const dorac_tensor *bias) {
    if (be->lora_up_scale) return be->lora_up_scale(be, Y, U, B, s, scale, bias);
    DORAC_TRY(be->gemm(be, Y, U, false, B, true, s, 1.0));
    return be->scale_cols_add_bias(be, Y, scale, bias);
}

int dorac_swiglu_backward_dora(dorac_backend *be, const dorac_tensor *dgate, const dorac_tensor *dup,
                               const dorac_tensor *dout, const dorac_tensor *gate,
                               const dorac_tensor *up, const dorac_dora_epilogue *egate,
                               const dorac_dora_epilogue *eup) {
    if (be->swiglu_backward_dora && (egate || eup))
        return be->swiglu_backward_dora(be, dgate, dup, dout, gate, up, egate, eup);
    DORAC_TRY(be->swiglu_backward(be, dgate, dup, dout, gate, up));
    if (egate) DORAC_TRY(be->dora_scale_backward(be, dgate, egate->zsum, dgate, gate, egate->g, egate->bias));
    if (eup) DORAC_TRY(be->dora_scale_backward(be, dup, eup->zsum, dup, up, eup->g, eup->bias));
    return DORAC_OK;
}

int dorac_gelu_backward_dora(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dout,
                             const dorac_tensor *x, const dorac_dora_epilogue *e) {
    if (be->gelu_backward_dora && e) return be->gelu_backward_dora(be, dx, dout, x, e);
    DORAC_TRY(be->gelu_backward(be, dx, dout, x));
    if (e) DORAC_TRY(be->dora_scale_backward(be, dx, e->zsum, dx, x, e->g, e->bias));
    return DORAC_OK;
}

int dorac_adamw_many(dorac_backend *be, const dorac_adamw_item *items, size_t n, double lr,
                     double beta1, double beta2, double eps, double weight_decay, int64_t step,
                     double grad_scale) {
    if (be->adamw_many)
        return be->adamw_many(be, items, n, lr, beta1, beta2, eps, weight_decay, step, grad_scale);
    for (size_t i = 0; i < n; i++)
        DORAC_TRY(be->adamw(be, items[i].param, items[i].grad, items[i].m, items[i].v, lr, beta1, beta2,
                            eps, items[i].decay ? weight_decay : 0.0, step, grad_scale));
    return DORAC_OK;
}

static int open_cuda(int device, dorac_backend **out) {
    *out = dorac_backend_cuda_create((dorac_cuda_params){device});
    if (*out) return DORAC_OK;
#ifdef DORAC_HAVE_CUDA
    return DORAC_E_BACKEND;
#else
    return DORAC_E_UNSUPPORTED;
#endif
}

static int open_cpu(dorac_backend **out) {
    *out = dorac_backend_cpu_create((dorac_cpu_params){0});
    return *out ? DORAC_OK : DORAC_E_NOMEM;
}

int dorac_backend_open(const char *device, dorac_backend **out) {
    *out = NULL;
    if (!device || !strcmp(device, "auto")) return dorac_cuda_available() ? open_cuda(0, out) : open_cpu(out);
    if (!strcmp(device, "cpu")) return open_cpu(out);
    if (!strcmp(device, "cuda")) return open_cuda(0, out);
    if (!strncmp(device, "cuda:", 5)) {
        char *end = NULL;
        long n = strtol(device + 5, &end, 10);
        if (end != device + 5 && *end == '\0' && n >= 0 && n < 4096) return open_cuda((int)n, out);
    }
    return dorac_error(DORAC_E_INVALID, "unknown device '%s' (expected cpu, cuda, cuda:N or auto)", device);
}

#ifndef DORAC_HAVE_CUDA
/* Built without CUDA: the entry points exist, so callers need no #ifdef. */
bool dorac_cuda_available(void) { return false; }

dorac_backend *dorac_backend_cuda_create(dorac_cuda_params params) {
    (void)params;
    dorac_error(DORAC_E_UNSUPPORTED,
                "cuda: this dorac was built without CUDA (configure with -DDORAC_CUDA=ON)");
    return NULL;
}
#endif
