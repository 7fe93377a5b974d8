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

/* param, grad, m, v (R,C). Grid: cuda_chunk_grid, a thread per chunk of a
** row. Registers are bounded so that 4 blocks fit an SM: the double
** denominator's long latency needs the occupancy more than the few spilled
** registers cost (measured on an H200: 20% faster). */
static __global__ void __launch_bounds__(ADAMW_THREADS, 4)
adamw_kernel(cuda_view param, cuda_view grad, cuda_view m, cuda_view v, int64_t R, int64_t C,
             adamw_scalars s) {
    int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CUDA_CHUNK;
    if (c0 >= C) return;
    float one_minus_b1 = __fsub_rn(1.0f, s.beta1), one_minus_b2 = __fsub_rn(1.0f, s.beta2);
    for (int64_t i = blockIdx.y; i < R; i += gridDim.y) {
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
    /* the scalars in the same precision and order as torch's (and the CPU's) */
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    adamw_scalars s;
    s.decay = (float)(1.0 - lr * weight_decay);
    s.beta1 = (float)beta1;
    s.beta2 = (float)beta2;
    s.grad_scale = (float)grad_scale;
    s.eps = (float)eps;
    s.step_size = (float)(lr / bc1);
    s.bc2_sqrt = (float)sqrt(bc2);
    int threads = cuda_row_threads(C, ADAMW_THREADS);
    adamw_kernel<<<cuda_chunk_grid(R, C, threads), threads, 0, cuda_stream(be)>>>(
        cuda_view_of(param), cuda_view_of(grad), cuda_view_of(m), cuda_view_of(v), R, C, s);
    return cuda_launch_status(op);
}
