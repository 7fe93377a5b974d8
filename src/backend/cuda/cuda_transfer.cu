/*
** cuda_transfer.cu — moving tensors: upload, download, copy and fill.
**
** Host transfers convert on the host (dorac_convert, the same rounding as
** the CPU backend: round to nearest even, NaN stays NaN) through a staging
** buffer in the device tensor's own type, then move rows with one 2-D copy
** that honours the tensor's row stride. Both wait for the stream to drain,
** so the caller's host array may be reused as soon as they return.
** Device-to-device copies of one type are 2-D memcpys; between F32 and BF16
** a kernel converts. I32 tensors (ids, positions) move only to and from I32.
*/
#include <stdlib.h>

#include "backend/cuda/cuda_impl.cuh"

static int transfer_types_ok(const dorac_tensor *t, dorac_dtype host_type, const char *op) {
    if (t->type == DORAC_DTYPE_I32 || host_type == DORAC_DTYPE_I32) {
        if (t->type != host_type)
            return dorac_error(DORAC_E_UNSUPPORTED, "%s: cannot convert between %s and %s", op,
                               dorac_dtype_name(t->type), dorac_dtype_name(host_type));
        if (t->rows < 0 || t->cols < 0 || t->ld < t->cols || (t->rows * t->cols > 0 && !t->data))
            return dorac_error(DORAC_E_INVALID, "%s: invalid I32 view", op);
        return DORAC_OK;
    }
    DORAC_TRY(cuda_check_float(t, op, "tensor"));
    if (dorac_dtype_size(host_type) == 0)
        return dorac_error(DORAC_E_INVALID, "%s: invalid host dtype %d", op, (int)host_type);
    return DORAC_OK;
}

/* Staging bytes for t's elements, contiguous; 0 with the error set on overflow. */
static size_t staging_bytes(const dorac_tensor *t, const char *op) {
    size_t n = dorac_tensor_nbytes(t->type, t->rows, t->cols);
    if (n == 0) dorac_error(DORAC_E_NOMEM, "%s: tensor size overflows", op);
    return n;
}

extern "C" int CUDA_OP(upload)(dorac_backend *be, const dorac_tensor *dst, const void *src,
                               dorac_dtype src_type) {
    DORAC_TRY(transfer_types_ok(dst, src_type, "upload"));
    if (dst->rows == 0 || dst->cols == 0) return DORAC_OK;
    size_t n = staging_bytes(dst, "upload"), esize = dorac_dtype_size(dst->type);
    if (n == 0) return DORAC_E_NOMEM;
    const void *from = src;
    void *staging = NULL;
    if (src_type != dst->type) {
        staging = malloc(n);
        if (!staging) return dorac_error(DORAC_E_NOMEM, "upload: out of host memory (%zu bytes)", n);
        dorac_convert(staging, dst->type, src, src_type, (size_t)dst->rows * (size_t)dst->cols);
        from = staging;
    }
    cudaStream_t s = cuda_stream(be);
    int rc = cuda_status(cudaMemcpy2DAsync(dst->data, (size_t)dst->ld * esize, from,
                                           (size_t)dst->cols * esize, (size_t)dst->cols * esize,
                                           (size_t)dst->rows, cudaMemcpyHostToDevice, s),
                         "upload", "copy to device");
    if (!rc) rc = cuda_status(cudaStreamSynchronize(s), "upload", "copy to device");
    free(staging);
    if (!rc && dst->type == DORAC_DTYPE_I32) {
        if (dst->ld == dst->cols) cuda_index_range_record(be, dst->data, (const int32_t *)src, dst->rows * dst->cols);
        else cuda_index_range_forget(be, dst->data, (size_t)(dst->rows * dst->ld) * sizeof(int32_t));
    }
    return rc;
}

extern "C" int CUDA_OP(download)(dorac_backend *be, void *dst, dorac_dtype dst_type,
                                 const dorac_tensor *src) {
    DORAC_TRY(transfer_types_ok(src, dst_type, "download"));
    if (src->rows == 0 || src->cols == 0) return DORAC_OK;
    size_t n = staging_bytes(src, "download"), esize = dorac_dtype_size(src->type);
    if (n == 0) return DORAC_E_NOMEM;
    void *to = dst, *staging = NULL;
    if (src->type != dst_type) {
        staging = malloc(n);
        if (!staging) return dorac_error(DORAC_E_NOMEM, "download: out of host memory (%zu bytes)", n);
        to = staging;
    }
    cudaStream_t s = cuda_stream(be);
    int rc = cuda_status(cudaMemcpy2DAsync(to, (size_t)src->cols * esize, src->data,
                                           (size_t)src->ld * esize, (size_t)src->cols * esize,
                                           (size_t)src->rows, cudaMemcpyDeviceToHost, s),
                         "download", "copy to host");
    if (!rc) rc = cuda_status(cudaStreamSynchronize(s), "download", "copy to host");
    if (!rc && staging)
        dorac_convert(dst, dst_type, staging, src->type, (size_t)src->rows * (size_t)src->cols);
    free(staging);
    return rc;
}

/* dst (R,C) <- src (R,C), converting: one thread per element. */
__global__ void convert_kernel(cuda_view dst, cuda_view src, int64_t rows, int64_t cols) {
    int64_t n = rows * cols;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n;
         idx += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = idx / cols, j = idx % cols;
        st_at(dst, i, j, ld_at(src, i, j));
    }
}

extern "C" int CUDA_OP(copy)(dorac_backend *be, const dorac_tensor *dst, const dorac_tensor *src) {
    if (src->type == DORAC_DTYPE_I32 || dst->type == DORAC_DTYPE_I32) {
        DORAC_TRY(transfer_types_ok(src, dst->type, "copy"));
        DORAC_TRY(transfer_types_ok(dst, src->type, "copy"));
        if (dst->rows != src->rows || dst->cols != src->cols)
            return dorac_error(DORAC_E_INVALID, "copy: dst has shape (%lld, %lld), expected (%lld, %lld)",
                               (long long)dst->rows, (long long)dst->cols, (long long)src->rows,
                               (long long)src->cols);
    } else {
        DORAC_TRY(cuda_check_float(src, "copy", "src"));
        DORAC_TRY(cuda_check_shape(dst, src->rows, src->cols, "copy", "dst"));
    }
    if (src->rows == 0 || src->cols == 0) return DORAC_OK;
    cudaStream_t s = cuda_stream(be);
    if (dst->type == DORAC_DTYPE_I32) /* values the host has not seen */
        cuda_index_range_forget(be, dst->data, (size_t)(dst->rows * dst->ld) * sizeof(int32_t));
    if (src->type == dst->type) {
        size_t esize = dorac_dtype_size(src->type);
        return cuda_status(cudaMemcpy2DAsync(dst->data, (size_t)dst->ld * esize, src->data,
                                             (size_t)src->ld * esize, (size_t)src->cols * esize,
                                             (size_t)src->rows, cudaMemcpyDeviceToDevice, s),
                           "copy", "device copy");
    }
    convert_kernel<<<cuda_blocks(src->rows * src->cols, 256), 256, 0, s>>>(
        cuda_view_of(dst), cuda_view_of(src), src->rows, src->cols);
    return cuda_launch_status("copy");
}

/* every element of dst (R,C) <- v */
__global__ void fill_kernel(cuda_view dst, int64_t rows, int64_t cols, float v) {
    int64_t n = rows * cols;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n;
         idx += (int64_t)gridDim.x * blockDim.x)
        st_at(dst, idx / cols, idx % cols, v);
}

extern "C" int CUDA_OP(fill)(dorac_backend *be, const dorac_tensor *dst, double value) {
    DORAC_TRY(cuda_check_float(dst, "fill", "dst"));
    if (dst->rows == 0 || dst->cols == 0) return DORAC_OK;
    fill_kernel<<<cuda_blocks(dst->rows * dst->cols, 256), 256, 0, cuda_stream(be)>>>(
        cuda_view_of(dst), dst->rows, dst->cols, (float)value);
    return cuda_launch_status("fill");
}

/* fill_many: up to FILL_BATCH tensors' views travel in the kernel's
** parameters; blockIdx.y picks the tensor, the blocks stride over its
** elements (fill_kernel's loop). */
enum { FILL_BATCH = 64, FILL_THREADS = 256 };

typedef struct fill_batch {
    cuda_view dst[FILL_BATCH];
    int64_t rows[FILL_BATCH], cols[FILL_BATCH];
} fill_batch;

static __global__ void fill_many_kernel(const __grid_constant__ fill_batch b, float v) {
    int t = blockIdx.y;
    int64_t rows = b.rows[t], cols = b.cols[t], n = rows * cols;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n;
         idx += (int64_t)gridDim.x * blockDim.x)
        st_at(b.dst[t], idx / cols, idx % cols, v);
}

extern "C" int CUDA_OP(fill_many)(dorac_backend *be, const dorac_tensor *const *dst, size_t n, double value) {
    for (size_t i = 0; i < n; i++)
        if (dst[i]->data) DORAC_TRY(cuda_check_float(dst[i], "fill_many", "dst"));
    size_t i = 0;
    while (i < n) {
        fill_batch b;
        int nb = 0;
        int64_t most = 0;
        for (; i < n && nb < FILL_BATCH; i++) {
            const dorac_tensor *t = dst[i];
            if (!t->data || t->rows == 0 || t->cols == 0) continue;
            b.dst[nb] = cuda_view_of(t), b.rows[nb] = t->rows, b.cols[nb] = t->cols;
            if (t->rows * t->cols > most) most = t->rows * t->cols;
            nb++;
        }
        if (nb == 0) continue;
        int64_t blocks = (most + FILL_THREADS - 1) / FILL_THREADS;
        if (blocks > 1024) blocks = 1024;
        fill_many_kernel<<<dim3((unsigned)blocks, (unsigned)nb), FILL_THREADS, 0, cuda_stream(be)>>>(b, (float)value);
        DORAC_TRY(cuda_launch_status("fill_many"));
    }
    return DORAC_OK;
}

/* copy_many: up to COPY_BATCH pairs' views travel in the kernel's
** parameters (2.3 KB a batch); blockIdx.y picks the pair, the blocks
** stride over its elements as convert_kernel does. */
enum { COPY_BATCH = 32 };

typedef struct copy_batch {
    cuda_view dst[COPY_BATCH], src[COPY_BATCH];
    int64_t rows[COPY_BATCH], cols[COPY_BATCH];
} copy_batch;

static __global__ void copy_many_kernel(const __grid_constant__ copy_batch b) {
    int t = blockIdx.y;
    int64_t cols = b.cols[t], n = b.rows[t] * cols;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n;
         idx += (int64_t)gridDim.x * blockDim.x)
        st_at(b.dst[t], idx / cols, idx % cols, ld_at(b.src[t], idx / cols, idx % cols));
}

/* A pair copy_many hands to copy (I32: copy keeps the index bookkeeping). */
static bool copy_pair_i32(const dorac_tensor *dst, const dorac_tensor *src) {
    return dst->type == DORAC_DTYPE_I32 || src->type == DORAC_DTYPE_I32;
}

extern "C" int CUDA_OP(copy_many)(dorac_backend *be, const dorac_tensor *const *dst,
                                  const dorac_tensor *const *src, size_t n) {
    /* I32 pairs go through copy, one by one (its index bookkeeping); the
    ** float ones are checked before anything runs */
    for (size_t i = 0; i < n; i++) {
        if (!dst[i]->data || copy_pair_i32(dst[i], src[i])) continue;
        DORAC_TRY(cuda_check_float(src[i], "copy_many", "src"));
        DORAC_TRY(cuda_check_shape(dst[i], src[i]->rows, src[i]->cols, "copy_many", "dst"));
    }
    for (size_t i = 0; i < n; i++)
        if (dst[i]->data && copy_pair_i32(dst[i], src[i]))
            DORAC_TRY(CUDA_OP(copy)(be, dst[i], src[i]));
    size_t i = 0;
    while (i < n) {
        copy_batch b;
        int nb = 0;
        int64_t most = 0;
        for (; i < n && nb < COPY_BATCH; i++) {
            const dorac_tensor *d = dst[i], *s = src[i];
            if (!d->data || s->rows == 0 || s->cols == 0 || copy_pair_i32(d, s)) continue; /* I32: done above */
            b.dst[nb] = cuda_view_of(d), b.src[nb] = cuda_view_of(s), b.rows[nb] = s->rows, b.cols[nb] = s->cols;
            if (s->rows * s->cols > most) most = s->rows * s->cols;
            nb++;
        }
        if (nb == 0) continue;
        int64_t blocks = (most + FILL_THREADS - 1) / FILL_THREADS;
        if (blocks > 1024) blocks = 1024;
        copy_many_kernel<<<dim3((unsigned)blocks, (unsigned)nb), FILL_THREADS, 0, cuda_stream(be)>>>(b);
        DORAC_TRY(cuda_launch_status("copy_many"));
    }
    return DORAC_OK;
}
