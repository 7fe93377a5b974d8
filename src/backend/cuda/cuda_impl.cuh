/*
** cuda_impl.cuh — what the CUDA backend's files share.
**
** The CUDA backend implements backend.h on one NVIDIA GPU (built for sm_90,
** the H100/H200). Each op lives in its own cuda_<op>.cu file; this header
** holds the context, the element accessors and the host-side checks.
**
** Precision (backend.h's policy): act_type = BF16, weight_type = BF16,
** param_type = F32. Every float tensor an op receives may be F32 or BF16,
** whatever the role the backend names for it, and every kernel reads and
** writes through ld_elem/st_elem below, computing in fp32 and accumulating
** reductions in fp32 or fp64 as each op states. I32 tensors carry ids and
** positions. Any other type is DORAC_E_UNSUPPORTED.
**
** Invariants kept by every op:
**   - Shapes (and index ranges) are checked on the host before any launch;
**     a bad shape is DORAC_E_INVALID naming the op, never a read out of
**     bounds on the device.
**   - Ops are queued in order on the context's one stream and return at
**     once; a launch failure is reported by the op that launched it, an
**     execution failure by the next synchronising call (synchronize,
**     download, sum_squares).
**   - Reductions have a fixed shape for given sizes (no atomics on float
**     sums), so results are bit-identical from run to run.
*/
#ifndef DORAC_CUDA_IMPL_CUH
#define DORAC_CUDA_IMPL_CUH

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend/backend.h"
#include "core/error.h"
#include "core/rng.h"
}

/* What the host knows of an I32 tensor it uploaded: the value range of its
** `count` elements from `base`. Index checks consult it instead of copying
** ids back (which would wait for the GPU several times a step). */
typedef struct cuda_index_range {
    const void *base;
    int64_t count;
    int32_t min, max;
    int32_t min_not_ignored; /* min over values other than DORAC_IGNORE_INDEX */
} cuda_index_range;

#define CUDA_INDEX_RANGES 64

/* Host-side state of one CUDA backend. */
typedef struct cuda_context {
    int device;
    cudaStream_t stream;
    cublasHandle_t cublas;
    void *cublas_workspace;
    size_t cublas_workspace_size;
    /* gemm operand conversion (F32 -> BF16), grown on demand, stream-ordered */
    void *convert_scratch[2];
    size_t convert_scratch_size[2];
    /* one double on the device and its pinned host mirror, for results the
    ** host needs (sum_squares) */
    double *dev_result;
    double *host_result;
    /* arrival counters for kernels whose last block finishes a reduction
    ** (cuda_last_block), all zero between kernels; grown on demand */
    unsigned *counters;
    size_t counters_cap;
    /* pinned host slots for sum_squares_many, grown on demand */
    double *host_many;
    size_t host_many_cap;
    /* host scratch for index checks (ids, positions, targets) */
    int32_t *host_index;
    size_t host_index_cap;
    /* ranges of uploaded I32 tensors, a ring; invalidated when their memory
    ** is freed or written by a copy */
    cuda_index_range index_ranges[CUDA_INDEX_RANGES];
    int index_range_next;
    /* allocation sizes by pointer: open addressing, linear probing */
    void **alloc_ptr;
    size_t *alloc_size;
    size_t alloc_cap; /* power of two */
    size_t alloc_used;
    dorac_mem_stats stats;
    /* cuda_lowrank.cu's launch shape: the device's SM count and, per kernel
    ** variant, resident blocks an SM (0: not yet asked, attributes unset) */
    int sm_count;
    int lowrank_blocks[32];
} cuda_context;

static inline cuda_context *cuda_ctx(dorac_backend *be) { return (cuda_context *)be->context; }
static inline cudaStream_t cuda_stream(dorac_backend *be) { return cuda_ctx(be)->stream; }

/* ---- element access on the device ---------------------------------------- */

/* Element i of a float tensor of dtype type (F32 or BF16), as fp32. */
static __device__ __forceinline__ float ld_elem(const void *p, int type, int64_t i) {
    if (type == DORAC_DTYPE_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    return ((const float *)p)[i];
}

/* Stores v into element i, rounding to nearest even for BF16. */
static __device__ __forceinline__ void st_elem(void *p, int type, int64_t i, float v) {
    if (type == DORAC_DTYPE_BF16) ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
    else ((float *)p)[i] = v;
}

/* A tensor as a kernel argument: pointer, type and row stride. Element
** (i, j) is at index i * ld + j. */
typedef struct cuda_view {
    void *data;
    int type;
    int64_t ld;
} cuda_view;

static inline cuda_view cuda_view_of(const dorac_tensor *t) {
    cuda_view v = {t->data, (int)t->type, t->ld};
    return v;
}

static __device__ __forceinline__ float ld_at(cuda_view v, int64_t i, int64_t j) {
    return ld_elem(v.data, v.type, i * v.ld + j);
}
static __device__ __forceinline__ void st_at(cuda_view v, int64_t i, int64_t j, float x) {
    st_elem(v.data, v.type, i * v.ld + j, x);
}

/* ---- warp and block reductions (blockDim.x a multiple of 32, <= 1024) ---- */

/* Sum over the warp, in a fixed butterfly order; every lane gets it. T is
** float or double. */
template <typename T> static __device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block; every thread gets the result. `shared` holds >= 32
** values. Calls __syncthreads, so every thread of the block must call it. */
template <typename T> static __device__ __forceinline__ T block_sum(T v, T *shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < n_warps ? shared[lane] : (T)0;
    return warp_sum(v);
}

/* Arrival of this block at *counter, for a kernel of `expected` blocks
** (on that counter) whose last block finishes what the others wrote: every
** thread of the block calls it after the block's results are written; it
** returns true in every thread of the one block that arrives last, which
** then sees all the others' writes, and resets *counter to zero for the
** next kernel on the stream. Which block is last varies from run to run;
** what it computes must not depend on that (sum the parts in a fixed order). */
static __device__ __forceinline__ bool cuda_last_block(unsigned *counter, unsigned expected) {
    __shared__ bool last;
    __threadfence(); /* this block's results before its arrival */
    __syncthreads();
    if (threadIdx.x == 0 && threadIdx.y == 0) {
        last = atomicAdd(counter, 1u) == expected - 1;
        if (last) {
            __threadfence(); /* the others' results, after their arrivals */
            atomicExch(counter, 0u);
        }
    }
    __syncthreads();
    return last;
}

/* A switch from the environment (a tuning or benchmark knob), read once
** into *cache (-1 before): true when name is set to anything but "" or "0". */
static inline bool cuda_env_switch(const char *name, int *cache) {
    if (*cache < 0) {
        const char *e = getenv(name);
        *cache = e && *e && strcmp(e, "0") != 0;
    }
    return *cache != 0;
}

/* A BF16 tensor whose rows can be read 16 bytes at a time from any column
** that is a multiple of 8 (data 16-byte aligned, ld a multiple of 8): the
** condition of every kernel that moves rows as 16-byte vectors. */
static inline bool cuda_bf16_rows16(const dorac_tensor *t) {
    return t->type == DORAC_DTYPE_BF16 && t->ld % 8 == 0 && (uintptr_t)t->data % 16 == 0;
}

/* Blocks of `threads` covering n items, at least one. */
static inline unsigned cuda_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > 2147483647) b = 2147483647;
    return (unsigned)b;
}

/* ---- host-side checks (cuda_checks.cu) ----------------------------------- */

/* t is F32 or BF16 with a valid view. */
int cuda_check_float(const dorac_tensor *t, const char *op, const char *what);
/* ... and has shape (rows, cols). */
int cuda_check_shape(const dorac_tensor *t, int64_t rows, int64_t cols, const char *op,
                     const char *what);
/* absent (NULL or data NULL) or a float (1, n). */
int cuda_check_optional_vector(const dorac_tensor *t, int64_t n, const char *op, const char *what);
/* An I32 (1, n) tensor whose values lie in [0, limit). Copies the values to
** the host to check them, so it waits for queued work. */
int cuda_check_index(dorac_backend *be, const dorac_tensor *t, int64_t n, int64_t limit,
                     const char *op, const char *what);
/* Index ranges (cuda_checks.cu). _record after an upload of n values from
** host array v to device memory base; _forget when [base, base+bytes) is
** freed or overwritten; _lookup finds a recorded range covering the n
** elements at p (false if none, then the caller must copy to check). */
void cuda_index_range_record(dorac_backend *be, const void *base, const int32_t *v, int64_t n);
void cuda_index_range_forget(dorac_backend *be, const void *base, size_t bytes);
bool cuda_index_range_lookup(dorac_backend *be, const void *p, int64_t n, cuda_index_range *out);
/* The n I32 values of t copied to host scratch owned by the context (valid
** until the next call); waits for queued work. */
int cuda_index_to_host(dorac_backend *be, const dorac_tensor *t, int64_t n, const int32_t **out,
                       const char *op, const char *what);
/* The status of the last launch: DORAC_OK, or DORAC_E_BACKEND naming op. */
int cuda_launch_status(const char *op);
/* C (r,r) = alpha A A^T + beta C, A F32 (r,K), r <= 32 (cuda_gram.cu;
** cuda_gemm.cu dispatches to it). */
int cuda_gram(dorac_backend *be, const dorac_tensor *C, const dorac_tensor *A, double alpha, double beta);
/* Up to CUDA_GRAM_MANY products C[i] (r[i],r[i]) = A[i] A[i]^T (F32, r[i] <=
** R, R one of 8, 16, 32; K[i] = A[i]'s columns >= 1) in one launch, each
** the same bits as cuda_gram's (cuda_gram.cu). partial is filled in there. */
enum { CUDA_GRAM_MANY = 16 };
typedef struct cuda_gram_many_args {
    cuda_view A[CUDA_GRAM_MANY], C[CUDA_GRAM_MANY];
    float *partial[CUDA_GRAM_MANY];
    int64_t K[CUDA_GRAM_MANY];
    int r[CUDA_GRAM_MANY];
    int n;
} cuda_gram_many_args;
int cuda_gram_many(dorac_backend *be, int R, const cuda_gram_many_args *args);
/* C (M,N) = scale ⊙ (beta C + alpha U op(V)) + bias for U (M,r), r in 8..32 by 8,
** op(V) = V^T if v_trans, scale and bias (1,N) or absent, on the tensor
** cores (cuda_lowrank.cu). Only where cuda_lowrank_fits(C, U); the caller
** has checked the shapes. */
bool cuda_lowrank_fits(const dorac_tensor *C, const dorac_tensor *U);
int cuda_lowrank(dorac_backend *be, const dorac_tensor *C, const dorac_tensor *U, const dorac_tensor *V,
                 bool v_trans, double alpha, double beta, const dorac_tensor *scale, const dorac_tensor *bias);
/* *out = n zeroed arrival counters for cuda_last_block (the context's,
** grown on demand; a kernel leaves them zero). */
int cuda_counters(dorac_backend *be, size_t n, unsigned **out);
/* A CUDA runtime status as a dorac status. */
int cuda_status(cudaError_t e, const char *op, const char *what);

/* ---- ops, one prototype per backend entry -------------------------------- */
#define CUDA_OP(name) dorac_cuda_##name
extern "C" {
int CUDA_OP(upload)(dorac_backend *be, const dorac_tensor *dst, const void *src, dorac_dtype src_type);
int CUDA_OP(download)(dorac_backend *be, void *dst, dorac_dtype dst_type, const dorac_tensor *src);
int CUDA_OP(copy)(dorac_backend *be, const dorac_tensor *dst, const dorac_tensor *src);
int CUDA_OP(fill)(dorac_backend *be, const dorac_tensor *dst, double value);
int CUDA_OP(gemm_many)(dorac_backend *be, const dorac_tensor *const *C, const dorac_tensor *const *A,
                       bool trans_a, const dorac_tensor *const *B, bool trans_b, size_t n, double alpha,
                       double beta);
int CUDA_OP(fill_many)(dorac_backend *be, const dorac_tensor *const *dst, size_t n, double value);
int CUDA_OP(copy_many)(dorac_backend *be, const dorac_tensor *const *dst, const dorac_tensor *const *src,
                       size_t n);
int CUDA_OP(gemm)(dorac_backend *be, const dorac_tensor *C, const dorac_tensor *A, bool trans_a,
                  const dorac_tensor *B, bool trans_b, double alpha, double beta);
int CUDA_OP(axpby)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X, double alpha,
                   double beta);
int CUDA_OP(row_sumsq)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *W);
int CUDA_OP(col_sum)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                     double alpha, double beta);
int CUDA_OP(scale_cols_add_bias)(dorac_backend *be, const dorac_tensor *Y,
                                 const dorac_tensor *scale, const dorac_tensor *bias);
int CUDA_OP(scale_rows)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                        const dorac_tensor *w, double alpha, double beta);
int CUDA_OP(dropout)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *in, double p,
                     uint64_t seed, uint64_t stream, int64_t row0);
int CUDA_OP(dora_norm)(dorac_backend *be, const dorac_tensor *n, const dorac_tensor *g,
                       const dorac_tensor *c, const dorac_tensor *B, const dorac_tensor *P,
                       const dorac_tensor *G, const dorac_tensor *m, double scale, double floor);
int CUDA_OP(dora_norm_many)(dorac_backend *be, const dorac_dora_norm_item *items, size_t n, double floor);
int CUDA_OP(dora_scale_backward)(dorac_backend *be, const dorac_tensor *dz, const dorac_tensor *zsum,
                                 const dorac_tensor *dy, const dorac_tensor *y,
                                 const dorac_tensor *g, const dorac_tensor *bias);
int CUDA_OP(dora_magnitude_backward)(dorac_backend *be, const dorac_tensor *dm,
                                     const dorac_tensor *w, const dorac_tensor *zsum,
                                     const dorac_tensor *m, const dorac_tensor *n);
int CUDA_OP(lora_up_scale)(dorac_backend *be, const dorac_tensor *Y, const dorac_tensor *U,
                           const dorac_tensor *B, double s, const dorac_tensor *scale,
                           const dorac_tensor *bias);
int CUDA_OP(sum_squares)(dorac_backend *be, const dorac_tensor *X, double *out);
int CUDA_OP(sum_squares_many)(dorac_backend *be, const dorac_tensor *const *X, size_t n, double *out);
int CUDA_OP(adamw)(dorac_backend *be, const dorac_tensor *param, const dorac_tensor *grad,
                   const dorac_tensor *m, const dorac_tensor *v, double lr, double beta1,
                   double beta2, double eps, double weight_decay, int64_t step, double grad_scale);
int CUDA_OP(adamw_many)(dorac_backend *be, const dorac_adamw_item *items, size_t n, double lr,
                        double beta1, double beta2, double eps, double weight_decay, int64_t step,
                        double grad_scale);
int CUDA_OP(embedding_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *ids,
                               const dorac_tensor *table, bool accumulate);
int CUDA_OP(embedding_backward)(dorac_backend *be, const dorac_tensor *dtable,
                                const dorac_tensor *dout, const dorac_tensor *ids);
int CUDA_OP(rmsnorm_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *rstd,
                             const dorac_tensor *x, const dorac_tensor *w, double eps);
int CUDA_OP(rmsnorm_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dw,
                              const dorac_tensor *dout, const dorac_tensor *x,
                              const dorac_tensor *w, const dorac_tensor *rstd);
int CUDA_OP(layernorm_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *mean,
                               const dorac_tensor *rstd, const dorac_tensor *x,
                               const dorac_tensor *w, const dorac_tensor *b, double eps);
int CUDA_OP(layernorm_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dw,
                                const dorac_tensor *db, const dorac_tensor *dout,
                                const dorac_tensor *x, const dorac_tensor *w,
                                const dorac_tensor *mean, const dorac_tensor *rstd);
int CUDA_OP(rope)(dorac_backend *be, const dorac_tensor *x, const dorac_tensor *pos,
                  const dorac_tensor *cos_t, const dorac_tensor *sin_t, int64_t n_heads,
                  int64_t head_dim, bool inverse);
int CUDA_OP(rope_copy)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *x,
                       const dorac_tensor *pos, const dorac_tensor *cos_t, const dorac_tensor *sin_t,
                       int64_t n_heads, int64_t head_dim, bool inverse);
int CUDA_OP(attention_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *lse,
                               const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                               int64_t B, int64_t T, int64_t H, int64_t KV, int64_t D);
int CUDA_OP(attention_backward)(dorac_backend *be, const dorac_tensor *dq, const dorac_tensor *dk,
                                const dorac_tensor *dv, const dorac_tensor *dout,
                                const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                                const dorac_tensor *out, const dorac_tensor *lse, int64_t B,
                                int64_t T, int64_t H, int64_t KV, int64_t D);
int CUDA_OP(swiglu_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *gate,
                            const dorac_tensor *up);
int CUDA_OP(swiglu_backward)(dorac_backend *be, const dorac_tensor *dgate, const dorac_tensor *dup,
                             const dorac_tensor *dout, const dorac_tensor *gate,
                             const dorac_tensor *up);
int CUDA_OP(swiglu_backward_dora)(dorac_backend *be, const dorac_tensor *dgate, const dorac_tensor *dup,
                                  const dorac_tensor *dout, const dorac_tensor *gate, const dorac_tensor *up,
                                  const dorac_dora_epilogue *egate, const dorac_dora_epilogue *eup);
int CUDA_OP(gelu_backward_dora)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dout,
                                const dorac_tensor *x, const dorac_dora_epilogue *e);
int CUDA_OP(gelu_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *x);
int CUDA_OP(gelu_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dout,
                           const dorac_tensor *x);
int CUDA_OP(cross_entropy)(dorac_backend *be, const dorac_tensor *loss, const dorac_tensor *dlogits,
                           const dorac_tensor *logits, const dorac_tensor *targets, double dscale);
int CUDA_OP(attention_cached)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *q,
                              const dorac_tensor *k, const dorac_tensor *v, int64_t past, int64_t H,
                              int64_t KV, int64_t D);
}

#endif
