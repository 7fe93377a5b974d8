/*
** cuda_backend.cu — the CUDA backend: device setup, memory, and the
** construction of the backend struct. The ops are in cuda_<op>.cu.
**
** Memory comes from the device's default stream-ordered pool
** (cudaMallocAsync / cudaFreeAsync on the backend's stream), with the pool's
** release threshold raised so that freed blocks stay in the pool: the
** adapter code allocates small scratch buffers inside forward and backward,
** and a plain cudaMalloc/cudaFree there would synchronise the device every
** time. Sizes are remembered in a host hash table keyed by pointer, so the
** counters (n_allocs, current, peak, largest) are exact, as on the CPU.
**
** A backend is used by one host thread at a time.
*/
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_impl.cuh"

#define CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)

/* ---------------------------------------------------------------------- */
/* allocation size table                                                  */
/* ---------------------------------------------------------------------- */

static size_t ptr_hash(const void *p, size_t cap) {
    uint64_t z = dorac_mix64((uint64_t)(uintptr_t)p);
    return (size_t)z & (cap - 1);
}

static bool table_grow(cuda_context *ctx) {
    size_t cap = ctx->alloc_cap ? ctx->alloc_cap * 2 : 1024;
    void **ptrs = (void **)calloc(cap, sizeof *ptrs);
    size_t *sizes = (size_t *)calloc(cap, sizeof *sizes);
    if (!ptrs || !sizes) {
        free(ptrs);
        free(sizes);
        return false;
    }
    for (size_t i = 0; i < ctx->alloc_cap; i++) {
        if (!ctx->alloc_ptr[i]) continue;
        size_t h = ptr_hash(ctx->alloc_ptr[i], cap);
        while (ptrs[h]) h = (h + 1) & (cap - 1);
        ptrs[h] = ctx->alloc_ptr[i];
        sizes[h] = ctx->alloc_size[i];
    }
    free(ctx->alloc_ptr);
    free(ctx->alloc_size);
    ctx->alloc_ptr = ptrs;
    ctx->alloc_size = sizes;
    ctx->alloc_cap = cap;
    return true;
}

static bool table_put(cuda_context *ctx, void *p, size_t n) {
    if ((ctx->alloc_used + 1) * 2 > ctx->alloc_cap && !table_grow(ctx)) return false;
    size_t h = ptr_hash(p, ctx->alloc_cap);
    while (ctx->alloc_ptr[h]) h = (h + 1) & (ctx->alloc_cap - 1);
    ctx->alloc_ptr[h] = p;
    ctx->alloc_size[h] = n;
    ctx->alloc_used++;
    return true;
}

/* Removes p and returns its size; false if p was never allocated here. */
static bool table_take(cuda_context *ctx, void *p, size_t *n) {
    if (!ctx->alloc_cap) return false;
    size_t mask = ctx->alloc_cap - 1, h = ptr_hash(p, ctx->alloc_cap);
    while (ctx->alloc_ptr[h] && ctx->alloc_ptr[h] != p) h = (h + 1) & mask;
    if (!ctx->alloc_ptr[h]) return false;
    *n = ctx->alloc_size[h];
    ctx->alloc_ptr[h] = NULL;
    ctx->alloc_used--;
    /* re-insert the rest of the probe cluster (backward-shift deletion) */
    for (size_t j = (h + 1) & mask; ctx->alloc_ptr[j]; j = (j + 1) & mask) {
        void *q = ctx->alloc_ptr[j];
        size_t qn = ctx->alloc_size[j];
        ctx->alloc_ptr[j] = NULL;
        size_t k = ptr_hash(q, ctx->alloc_cap);
        while (ctx->alloc_ptr[k]) k = (k + 1) & mask;
        ctx->alloc_ptr[k] = q;
        ctx->alloc_size[k] = qn;
    }
    return true;
}

/* ---------------------------------------------------------------------- */
/* memory                                                                 */
/* ---------------------------------------------------------------------- */

static void *cuda_alloc(dorac_backend *be, size_t nbytes) {
    cuda_context *ctx = cuda_ctx(be);
    void *p = NULL;
    cudaError_t e = cudaMallocAsync(&p, nbytes ? nbytes : 1, ctx->stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        dorac_error(DORAC_E_NOMEM, "cuda: out of device memory allocating %zu bytes (%zu of %zu free): %s",
                    nbytes, free_b, total_b, cudaGetErrorString(e));
        return NULL;
    }
    if (!table_put(ctx, p, nbytes)) {
        cudaFreeAsync(p, ctx->stream);
        dorac_error(DORAC_E_NOMEM, "cuda: out of host memory tracking an allocation");
        return NULL;
    }
    ctx->stats.n_allocs++;
    ctx->stats.current_bytes += nbytes;
    if (ctx->stats.current_bytes > ctx->stats.peak_bytes) ctx->stats.peak_bytes = ctx->stats.current_bytes;
    if (nbytes > ctx->stats.largest_alloc) ctx->stats.largest_alloc = nbytes;
    return p;
}

static void cuda_free(dorac_backend *be, void *ptr) {
    if (!ptr) return;
    cuda_context *ctx = cuda_ctx(be);
    size_t n = 0;
    if (table_take(ctx, ptr, &n)) ctx->stats.current_bytes -= n;
    cuda_index_range_forget(be, ptr, n ? n : 1);
    cudaFreeAsync(ptr, ctx->stream);
}

static void cuda_mem_stats(dorac_backend *be, dorac_mem_stats *out) { *out = cuda_ctx(be)->stats; }

static void cuda_mem_stats_reset(dorac_backend *be) {
    cuda_context *ctx = cuda_ctx(be);
    ctx->stats.n_allocs = 0;
    ctx->stats.largest_alloc = 0;
    ctx->stats.peak_bytes = ctx->stats.current_bytes;
}

static int cuda_synchronize(dorac_backend *be) {
    return cuda_status(cudaStreamSynchronize(cuda_stream(be)), "synchronize", "stream");
}

/* ---------------------------------------------------------------------- */
/* construction                                                           */
/* ---------------------------------------------------------------------- */

static void cuda_destroy(dorac_backend *be) {
    if (!be) return;
    cuda_context *ctx = cuda_ctx(be);
    if (ctx) {
        if (ctx->stream) cudaStreamSynchronize(ctx->stream);
        for (size_t i = 0; i < ctx->alloc_cap; i++)
            if (ctx->alloc_ptr[i]) cudaFreeAsync(ctx->alloc_ptr[i], ctx->stream);
        for (int i = 0; i < 2; i++)
            if (ctx->convert_scratch[i]) cudaFreeAsync(ctx->convert_scratch[i], ctx->stream);
        if (ctx->stream) cudaStreamSynchronize(ctx->stream);
        if (ctx->cublas) cublasDestroy(ctx->cublas);
        cudaFree(ctx->cublas_workspace);
        cudaFree(ctx->dev_result);
        cudaFree(ctx->counters);
        cudaFreeHost(ctx->host_result);
        cudaFreeHost(ctx->host_many);
        if (ctx->stream) cudaStreamDestroy(ctx->stream);
        free(ctx->host_index);
        free(ctx->alloc_ptr);
        free(ctx->alloc_size);
        free(ctx);
    }
    free(be);
}

int cuda_counters(dorac_backend *be, size_t n, unsigned **out) {
    cuda_context *ctx = cuda_ctx(be);
    if (n > ctx->counters_cap) {
        size_t cap = n < 1024 ? 1024 : n;
        unsigned *c = NULL;
        /* the old counters may be in use by queued kernels: wait for them */
        DORAC_TRY(cuda_status(cudaStreamSynchronize(ctx->stream), "counters", "synchronize"));
        DORAC_TRY(cuda_status(cudaMalloc(&c, cap * sizeof *c), "counters", "allocate"));
        /* on the backend's stream: it does not wait for the legacy default
        ** stream, so a plain cudaMemset could land after the first kernel */
        int rc = cuda_status(cudaMemsetAsync(c, 0, cap * sizeof *c, ctx->stream), "counters", "zero");
        if (rc) {
            cudaFree(c);
            return rc;
        }
        cudaFree(ctx->counters);
        ctx->counters = c;
        ctx->counters_cap = cap;
    }
    *out = ctx->counters;
    return DORAC_OK;
}

extern "C" bool dorac_cuda_available(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return n > 0;
}

static int setup(cuda_context *ctx, int device) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        return dorac_error(DORAC_E_BACKEND, "cuda: no CUDA device found%s%s", e != cudaSuccess ? ": " : "",
                           e != cudaSuccess ? cudaGetErrorString(e) : "");
    if (device < 0 || device >= n)
        return dorac_error(DORAC_E_INVALID, "cuda: device %d does not exist (%d present)", device, n);
    ctx->device = device;
    DORAC_TRY(cuda_status(cudaSetDevice(device), "create", "cudaSetDevice"));
    DORAC_TRY(cuda_status(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking), "create",
                          "stream"));
    cudaMemPool_t pool;
    DORAC_TRY(cuda_status(cudaDeviceGetDefaultMemPool(&pool, device), "create", "memory pool"));
    uint64_t threshold = UINT64_MAX;
    DORAC_TRY(cuda_status(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold),
                          "create", "memory pool threshold"));
    if (cublasCreate(&ctx->cublas) != CUBLAS_STATUS_SUCCESS)
        return dorac_error(DORAC_E_BACKEND, "cuda: cuBLAS initialisation failed");
    DORAC_TRY(cuda_status(cudaMalloc(&ctx->cublas_workspace, CUBLAS_WORKSPACE_BYTES), "create",
                          "cuBLAS workspace"));
    ctx->cublas_workspace_size = CUBLAS_WORKSPACE_BYTES;
    if (cublasSetStream(ctx->cublas, ctx->stream) != CUBLAS_STATUS_SUCCESS ||
        cublasSetWorkspace(ctx->cublas, ctx->cublas_workspace, CUBLAS_WORKSPACE_BYTES) !=
            CUBLAS_STATUS_SUCCESS ||
        cublasSetMathMode(ctx->cublas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS)
        return dorac_error(DORAC_E_BACKEND, "cuda: cuBLAS stream/workspace setup failed");
    DORAC_TRY(cuda_status(cudaMalloc(&ctx->dev_result, sizeof(double)), "create", "result slot"));
    DORAC_TRY(cuda_status(cudaMallocHost(&ctx->host_result, sizeof(double)), "create", "result slot"));
    return DORAC_OK;
}

extern "C" dorac_backend *dorac_backend_cuda_create(dorac_cuda_params params) {
    dorac_backend *be = (dorac_backend *)calloc(1, sizeof *be);
    cuda_context *ctx = (cuda_context *)calloc(1, sizeof *ctx);
    if (!be || !ctx) {
        free(be);
        free(ctx);
        dorac_error(DORAC_E_NOMEM, "cuda: out of memory creating the backend");
        return NULL;
    }
    be->context = ctx;
    if (setup(ctx, params.device) != DORAC_OK) {
        cuda_destroy(be);
        return NULL;
    }
    be->name = "cuda";
    be->act_type = DORAC_DTYPE_BF16;
    be->weight_type = DORAC_DTYPE_BF16;
    be->param_type = DORAC_DTYPE_F32;
    be->destroy = cuda_destroy;
    be->alloc = cuda_alloc;
    be->free = cuda_free;
    be->mem_stats = cuda_mem_stats;
    be->mem_stats_reset = cuda_mem_stats_reset;
    be->upload = CUDA_OP(upload);
    be->download = CUDA_OP(download);
    be->copy = CUDA_OP(copy);
    be->fill = CUDA_OP(fill);
    be->fill_many = CUDA_OP(fill_many);
    be->gemm_many = CUDA_OP(gemm_many);
    be->copy_many = CUDA_OP(copy_many);
    be->synchronize = cuda_synchronize;
    be->gemm = CUDA_OP(gemm);
    be->axpby = CUDA_OP(axpby);
    be->row_sumsq = CUDA_OP(row_sumsq);
    be->col_sum = CUDA_OP(col_sum);
    be->scale_cols_add_bias = CUDA_OP(scale_cols_add_bias);
    be->scale_rows = CUDA_OP(scale_rows);
    be->dropout = CUDA_OP(dropout);
    be->dora_norm = CUDA_OP(dora_norm);
    be->dora_norm_many = CUDA_OP(dora_norm_many);
    be->dora_scale_backward = CUDA_OP(dora_scale_backward);
    be->dora_magnitude_backward = CUDA_OP(dora_magnitude_backward);
    be->lora_up_scale = CUDA_OP(lora_up_scale);
    be->sum_squares = CUDA_OP(sum_squares);
    be->sum_squares_many = CUDA_OP(sum_squares_many);
    be->adamw = CUDA_OP(adamw);
    be->adamw_many = CUDA_OP(adamw_many);
    be->embedding_forward = CUDA_OP(embedding_forward);
    be->embedding_backward = CUDA_OP(embedding_backward);
    be->rmsnorm_forward = CUDA_OP(rmsnorm_forward);
    be->rmsnorm_backward = CUDA_OP(rmsnorm_backward);
    be->layernorm_forward = CUDA_OP(layernorm_forward);
    be->layernorm_backward = CUDA_OP(layernorm_backward);
    be->rope = CUDA_OP(rope);
    be->rope_copy = CUDA_OP(rope_copy);
    be->attention_forward = CUDA_OP(attention_forward);
    be->attention_backward = CUDA_OP(attention_backward);
    be->swiglu_forward = CUDA_OP(swiglu_forward);
    be->swiglu_backward = CUDA_OP(swiglu_backward);
    be->gelu_forward = CUDA_OP(gelu_forward);
    be->gelu_backward = CUDA_OP(gelu_backward);
    be->swiglu_backward_dora = CUDA_OP(swiglu_backward_dora);
    be->gelu_backward_dora = CUDA_OP(gelu_backward_dora);
    be->cross_entropy = CUDA_OP(cross_entropy);
    be->attention_cached = CUDA_OP(attention_cached);
    return be;
}
