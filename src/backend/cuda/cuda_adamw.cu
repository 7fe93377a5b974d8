/*
** cuda_adamw.cu — one AdamW step on the GPU (backend.h's adamw), exactly as
** torch.optim.AdamW and the CPU backend take it:
**   g  = grad * grad_scale
**   p *= 1 - lr*wd
**   m += (g - m) (1 - b1)                       (torch's lerp)
**   v  = v b2 + (1 - b2) g g
**   p -= lr/(1 - b1^step) * m / (sqrt(v)/sqrt(1 - b2^step) + eps)
** The scalars are formed on the host in double and rounded to fp32 as the
** CPU rounds them. Per element every operation is the CPU's, in the CPU's
** order and precision: fp32 and unfused (the explicit _rn intrinsics keep
** the compiler from contracting into FMAs), except the denominator, which
** the CPU forms in double (C's sqrt of a float is a double sqrt). So with
** F32 param, m, v and grad the step matches the CPU bit for bit. Any of
** them may be BF16, read and written through the accessors (each store
** rounds to nearest even).
**
** Element-wise, one thread per 16-byte chunk of a row (cuda_chunk.cuh),
** any row stride.
**
** adamw_many runs the same per-chunk code over many tensors at once: up to
** MANY_BATCH tensors' views travel in the kernel's parameters (no copy to
** the device), blockIdx.y picks the tensor and the blocks stride over its
** chunks. A DoRA step on the Llama-1B shape updates 336 tensors: 6 launches
** instead of 336.
*/
#include <math.h>

#include "backend/cuda/cuda_chunk.cuh"

/* The step's fp32 scalars, formed once on the host. */
typedef struct adamw_scalars {
    float decay;     /* 1 - lr*wd */
    float beta1;     /* b1 */
    float beta2;     /* b2 */
    float grad_scale;
    float eps;
    float step_size; /* lr / (1 - b1^step) */
    float bc2_sqrt;  /* sqrt(1 - b2^step) */
} adamw_scalars;

#define ADAMW_THREADS 256

/* The step on the chunk at (row i, column c0) of C columns. */
static __device__ __forceinline__ void adamw_chunk(cuda_view param, cuda_view grad, cuda_view m,
                                                   cuda_view v, int64_t i, int64_t c0, int64_t C,
                                                   const adamw_scalars &s) {
    float one_minus_b1 = __fsub_rn(1.0f, s.beta1), one_minus_b2 = __fsub_rn(1.0f, s.beta2);
    {
        float p[CUDA_CHUNK], g[CUDA_CHUNK], mm[CUDA_CHUNK], vv[CUDA_CHUNK];
        ld_chunk(p, param, i, c0, C, row_aligned16(param, i), 0.0f);
        ld_chunk(g, grad, i, c0, C, row_aligned16(grad, i), 0.0f);
        ld_chunk(mm, m, i, c0, C, row_aligned16(m, i), 0.0f);
        ld_chunk(vv, v, i, c0, C, row_aligned16(v, i), 0.0f);
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) {
            float gk = __fmul_rn(g[k], s.grad_scale);
            p[k] = __fmul_rn(p[k], s.decay);
            mm[k] = __fadd_rn(mm[k], __fmul_rn(__fsub_rn(gk, mm[k]), one_minus_b1));
            vv[k] = __fadd_rn(__fmul_rn(vv[k], s.beta2), __fmul_rn(__fmul_rn(one_minus_b2, gk), gk));
            float denom = (float)__dadd_rn(__ddiv_rn(__dsqrt_rn((double)vv[k]), (double)s.bc2_sqrt),
                                           (double)s.eps);
            p[k] = __fsub_rn(p[k], __fmul_rn(s.step_size, __fdiv_rn(mm[k], denom)));
        }
        st_chunk(m, i, c0, C, row_aligned16(m, i), mm);
        st_chunk(v, i, c0, C, row_aligned16(v, i), vv);
        st_chunk(param, i, c0, C, row_aligned16(param, i), p);
    }
}

/* param, grad, m, v (R,C). Grid: cuda_chunk_grid, a thread per chunk of a
** row. Registers are bounded so that 4 blocks fit an SM: the double
** denominator's long latency needs the occupancy more than the few spilled
** registers cost (measured on an H200: 20% faster). */
static __global__ void __launch_bounds__(ADAMW_THREADS, 4)
adamw_kernel(cuda_view param, cuda_view grad, cuda_view m, cuda_view v, int64_t R, int64_t C,
             adamw_scalars s) {
    int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CUDA_CHUNK;
    if (c0 >= C) return;
    for (int64_t i = blockIdx.y; i < R; i += gridDim.y) adamw_chunk(param, grad, m, v, i, c0, C, s);
}

enum { MANY_BATCH = 48 };

typedef struct adamw_tensor {
    cuda_view param, grad, m, v;
    int64_t R, C;
    float decay; /* 1 - lr*wd for this tensor */
} adamw_tensor;

typedef struct adamw_batch {
    adamw_tensor t[MANY_BATCH];
} adamw_batch;

/* Grid (x: blocks striding over chunks, y: tensors of the batch). Not
** register-bounded: the tensor's descriptor lives in registers across the
** loop, and bounding it spilled. */
static __global__ void __launch_bounds__(ADAMW_THREADS)
adamw_many_kernel(const __grid_constant__ adamw_batch batch, adamw_scalars s) {
    const adamw_tensor &t = batch.t[blockIdx.y];
    adamw_scalars st = s;
    st.decay = t.decay;
    int64_t cpr = cuda_chunks(t.C), n = t.R * cpr;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e / cpr;
        adamw_chunk(t.param, t.grad, t.m, t.v, i, (e - i * cpr) * CUDA_CHUNK, t.C, st);
    }
}

/* The step's scalars in the same precision and order as torch's (and the CPU's). */
static adamw_scalars make_scalars(double lr, double beta1, double beta2, double eps, double weight_decay,
                                  int64_t step, double grad_scale) {
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    adamw_scalars s;
    s.decay = (float)(1.0 - lr * weight_decay);
    s.beta1 = (float)beta1;
    s.beta2 = (float)beta2;
    s.grad_scale = (float)grad_scale;
    s.eps = (float)eps;
    s.step_size = (float)(lr / bc1);
    s.bc2_sqrt = (float)sqrt(bc2);
    return s;
}

static int check_item(const dorac_tensor *param, const dorac_tensor *grad, const dorac_tensor *m,
                      const dorac_tensor *v, int64_t step, const char *op) {
    DORAC_TRY(cuda_check_float(param, op, "param"));
    int64_t R = param->rows, C = param->cols;
    DORAC_TRY(cuda_check_shape(grad, R, C, op, "grad"));
    DORAC_TRY(cuda_check_shape(m, R, C, op, "m"));
    DORAC_TRY(cuda_check_shape(v, R, C, op, "v"));
    if (step < 1) return dorac_error(DORAC_E_INVALID, "%s: step %lld must be >= 1", op, (long long)step);
    return DORAC_OK;
}

int CUDA_OP(adamw_many)(dorac_backend *be, const dorac_adamw_item *items, size_t n, double lr,
                        double beta1, double beta2, double eps, double weight_decay, int64_t step,
                        double grad_scale) {
    const char *op = "adamw_many";
    for (size_t i = 0; i < n; i++)
        DORAC_TRY(check_item(items[i].param, items[i].grad, items[i].m, items[i].v, step, op));
    adamw_scalars s = make_scalars(lr, beta1, beta2, eps, weight_decay, step, grad_scale);
    float no_decay = make_scalars(lr, beta1, beta2, eps, 0.0, step, grad_scale).decay;
    for (size_t b0 = 0; b0 < n; b0 += MANY_BATCH) {
        adamw_batch batch;
        int nb = 0;
        int64_t most = 0;
        for (size_t i = b0; i < n && i < b0 + MANY_BATCH; i++) {
            const dorac_adamw_item *it = &items[i];
            if (it->param->rows == 0 || it->param->cols == 0) continue;
            adamw_tensor *t = &batch.t[nb++];
            t->param = cuda_view_of(it->param), t->grad = cuda_view_of(it->grad);
            t->m = cuda_view_of(it->m), t->v = cuda_view_of(it->v);
            t->R = it->param->rows, t->C = it->param->cols;
            t->decay = it->decay ? s.decay : no_decay;
            int64_t chunks = t->R * cuda_chunks(t->C);
            if (chunks > most) most = chunks;
        }
        if (nb == 0) continue;
        int64_t blocks = (most + ADAMW_THREADS - 1) / ADAMW_THREADS;
        if (blocks > 1024) blocks = 1024;
        adamw_many_kernel<<<dim3((unsigned)blocks, (unsigned)nb), ADAMW_THREADS, 0, cuda_stream(be)>>>(batch, s);
        DORAC_TRY(cuda_launch_status(op));
    }
    return DORAC_OK;
}

int CUDA_OP(adamw)(dorac_backend *be, const dorac_tensor *param, const dorac_tensor *grad,
                   const dorac_tensor *m, const dorac_tensor *v, double lr, double beta1,
                   double beta2, double eps, double weight_decay, int64_t step, double grad_scale) {
    const char *op = "adamw";
    DORAC_TRY(cuda_check_float(param, op, "param"));
    int64_t R = param->rows, C = param->cols;
    DORAC_TRY(cuda_check_shape(grad, R, C, op, "grad"));
    DORAC_TRY(cuda_check_shape(m, R, C, op, "m"));
    DORAC_TRY(cuda_check_shape(v, R, C, op, "v"));
    if (step < 1)
        return dorac_error(DORAC_E_INVALID, "adamw: step %lld must be >= 1", (long long)step);
    if (R == 0 || C == 0) return DORAC_OK;
    adamw_scalars s = make_scalars(lr, beta1, beta2, eps, weight_decay, step, grad_scale);
    int threads = cuda_row_threads(C, ADAMW_THREADS);
    adamw_kernel<<<cuda_chunk_grid(R, C, threads), threads, 0, cuda_stream(be)>>>(
        cuda_view_of(param), cuda_view_of(grad), cuda_view_of(m), cuda_view_of(v), R, C, s);
    return cuda_launch_status(op);
}
