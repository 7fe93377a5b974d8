/*
** cuda_checks.cu — host-side validation shared by the CUDA ops.
**
** Every op checks its tensors here before it launches anything, so a wrong
** shape or type is a one-line error naming the op, never an out-of-bounds
** access on the device. The messages match the CPU backend's, so a caller
** sees the same text whichever backend it runs on.
*/
#include <stdlib.h>

#include "backend/cuda/cuda_impl.cuh"

int cuda_status(cudaError_t e, const char *op, const char *what) {
    if (e == cudaSuccess) return DORAC_OK;
    return dorac_error(DORAC_E_BACKEND, "cuda: %s: %s failed: %s", op, what, cudaGetErrorString(e));
}

int cuda_launch_status(const char *op) {
    return cuda_status(cudaGetLastError(), op, "kernel launch");
}

int cuda_check_float(const dorac_tensor *t, const char *op, const char *what) {
    if (t->type != DORAC_DTYPE_F32 && t->type != DORAC_DTYPE_BF16)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: %s has dtype %s, backend cuda needs F32 or BF16",
                           op, what, dorac_dtype_name(t->type));
    return dorac_check_view(t, op, what);
}

int cuda_check_shape(const dorac_tensor *t, int64_t rows, int64_t cols, const char *op,
                     const char *what) {
    DORAC_TRY(cuda_check_float(t, op, what));
    return dorac_check_dims(t, rows, cols, op, what);
}

int cuda_check_optional_vector(const dorac_tensor *t, int64_t n, const char *op, const char *what) {
    if (!t || !t->data) return DORAC_OK;
    return cuda_check_shape(t, 1, n, op, what);
}

void cuda_index_range_record(dorac_backend *be, const void *base, const int32_t *v, int64_t n) {
    cuda_context *ctx = cuda_ctx(be);
    cuda_index_range_forget(be, base, (size_t)n * sizeof(int32_t));
    cuda_index_range r = {base, n, INT32_MAX, INT32_MIN, INT32_MAX};
    for (int64_t i = 0; i < n; i++) {
        if (v[i] < r.min) r.min = v[i];
        if (v[i] > r.max) r.max = v[i];
        if (v[i] != DORAC_IGNORE_INDEX && v[i] < r.min_not_ignored) r.min_not_ignored = v[i];
    }
    ctx->index_ranges[ctx->index_range_next] = r;
    ctx->index_range_next = (ctx->index_range_next + 1) % CUDA_INDEX_RANGES;
}

void cuda_index_range_forget(dorac_backend *be, const void *base, size_t bytes) {
    cuda_context *ctx = cuda_ctx(be);
    const char *lo = (const char *)base, *hi = lo + bytes;
    for (int i = 0; i < CUDA_INDEX_RANGES; i++) {
        cuda_index_range *r = &ctx->index_ranges[i];
        if (!r->base) continue;
        const char *rlo = (const char *)r->base, *rhi = rlo + (size_t)r->count * sizeof(int32_t);
        if (rlo < hi && lo < rhi) r->base = NULL;
    }
}

bool cuda_index_range_lookup(dorac_backend *be, const void *p, int64_t n, cuda_index_range *out) {
    cuda_context *ctx = cuda_ctx(be);
    const char *lo = (const char *)p, *hi = lo + (size_t)n * sizeof(int32_t);
    for (int i = 0; i < CUDA_INDEX_RANGES; i++) {
        const cuda_index_range *r = &ctx->index_ranges[i];
        if (!r->base) continue;
        const char *rlo = (const char *)r->base, *rhi = rlo + (size_t)r->count * sizeof(int32_t);
        if (rlo <= lo && hi <= rhi) {
            *out = *r; /* the whole upload's range bounds this part of it */
            return true;
        }
    }
    return false;
}

int cuda_check_index(dorac_backend *be, const dorac_tensor *t, int64_t n, int64_t limit,
                     const char *op, const char *what) {
    DORAC_TRY(dorac_check_index_shape(t, n, op, what));
    if (n == 0) return DORAC_OK;
    cuda_index_range r;
    if (cuda_index_range_lookup(be, t->data, n, &r) && r.min >= 0 && r.max < limit) return DORAC_OK;
    /* unknown, or out of range somewhere: copy back to check (and to name
    ** the first bad element) */
    const int32_t *host;
    DORAC_TRY(cuda_index_to_host(be, t, n, &host, op, what));
    return dorac_check_index_values(host, n, limit, false, op, what);
}

int cuda_index_to_host(dorac_backend *be, const dorac_tensor *t, int64_t n, const int32_t **out,
                       const char *op, const char *what) {
    cuda_context *ctx = cuda_ctx(be);
    if ((size_t)n > ctx->host_index_cap) {
        int32_t *grown = (int32_t *)realloc(ctx->host_index, (size_t)n * sizeof *grown);
        if (!grown) return dorac_error(DORAC_E_NOMEM, "%s: out of memory checking %s", op, what);
        ctx->host_index = grown;
        ctx->host_index_cap = (size_t)n;
    }
    DORAC_TRY(cuda_status(cudaMemcpyAsync(ctx->host_index, t->data, (size_t)n * sizeof(int32_t),
                                          cudaMemcpyDeviceToHost, ctx->stream),
                          op, "index copy"));
    DORAC_TRY(cuda_status(cudaStreamSynchronize(ctx->stream), op, "index copy"));
    *out = ctx->host_index;
    return DORAC_OK;
}
