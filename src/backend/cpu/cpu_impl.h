/*
** cpu_impl.h — what the CPU backend's files share.
**
** The CPU backend is compiled twice from the same sources: plain, every
** element is a float and it is "cpu", the one users run; with
** CPU_BACKEND_F64 defined (the cpu64_*.c wrappers), every element is a
** double and it is "cpu64", the oracle that finite-difference tests run the
** adapter and model code on. The two share every line of kernel code, so the
** oracle checks the very code path users run, only in higher precision.
**
** CPU_FN(name) gives each precision's copy of a function its own external
** name (dorac_cpu32_name / dorac_cpu64_name).
**
** Invariants kept by every op:
**   - Every tensor an op receives holds `real` elements (the backend's one
**     type) or, for ids and positions, I32; any other type is
**     DORAC_E_UNSUPPORTED, never a reinterpretation.
**   - Every op checks shapes (and index ranges) before touching memory.
**   - Reductions are parallel over independent outputs and sequential within
**     one output, so results do not depend on the thread count.
*/
#ifndef DORAC_CPU_IMPL_H
#define DORAC_CPU_IMPL_H

#include <stdbool.h>
#include <math.h>
#include <stdint.h>

#include "backend/backend.h"
#include "core/error.h"

#ifdef CPU_BACKEND_F64
typedef double real;
#define REAL_DTYPE DORAC_DTYPE_F64
#define BACKEND_NAME "cpu64"
#define CPU_FN(name) dorac_cpu64_##name
#define R_EXP exp
#define R_TANH tanh
#else
typedef float real;
#define REAL_DTYPE DORAC_DTYPE_F32
#define BACKEND_NAME "cpu"
#define CPU_FN(name) dorac_cpu32_##name
#define R_EXP expf /* the element type's own math: no round trip through double */
#define R_TANH tanhf
#endif

/* Element-wise and row-wise loops run on OpenMP's threads only when they
** have at least CPU_MIN_PARALLEL_WORK elements: with the CLI's passive
** waiting, waking the sleeping threads costs tens of microseconds, more
** than a small op takes (one decoding step runs ~100 such ops; measured on
** the demo model: 926 tokens/s on 1 thread, 143 on 2 before this). Results
** do not change: every loop writes independent outputs in a fixed order. */
enum { CPU_MIN_PARALLEL_WORK = 16384 };
#define CPU_PRAGMA_(x) _Pragma(#x)
#define CPU_PARALLEL_FOR(work) \
    CPU_PRAGMA_(omp parallel for schedule(static) if ((work) >= CPU_MIN_PARALLEL_WORK))

/* ---- checks (cpu_ops_basic.c) ---- */
int CPU_FN(check_type)(const dorac_tensor *t, const char *op, const char *what);
int CPU_FN(check_shape)(const dorac_tensor *t, int64_t rows, int64_t cols, const char *op,
                        const char *what);
/* An optional (1, n) vector: absent (data NULL) or exactly (1, n). */
int CPU_FN(check_optional_vector)(const dorac_tensor *t, int64_t n, const char *op,
                                  const char *what);
/* An I32 index tensor of shape (1, n) whose values lie in [0, limit). */
int CPU_FN(check_index)(const dorac_tensor *t, int64_t n, int64_t limit, const char *op,
                        const char *what);
#define check_type CPU_FN(check_type)
#define check_shape CPU_FN(check_shape)
#define check_optional_vector CPU_FN(check_optional_vector)
#define check_index CPU_FN(check_index)

static inline real *row_ptr(const dorac_tensor *t, int64_t i) {
    return (real *)t->data + i * t->ld;
}

/* The causal row softmax of attention: s[0..last] becomes softmax(s[0..last])
** in place and s[last+1..n) becomes 0. Returns the log-sum-exp of the
** original s[0..last], which the backward pass needs. */
static inline double softmax_prefix(real *s, int64_t last, int64_t n) {
    real mx = s[0];
    for (int64_t j = 1; j <= last; j++) mx = s[j] > mx ? s[j] : mx;
    double sum = 0;
    for (int64_t j = 0; j <= last; j++) sum += (s[j] = R_EXP(s[j] - mx));
    real inv = (real)(1.0 / sum);
    for (int64_t j = 0; j <= last; j++) s[j] *= inv;
    for (int64_t j = last + 1; j < n; j++) s[j] = 0;
    return (double)mx + log(sum);
}

/* ---- ops, one prototype per backend entry ---- */
int CPU_FN(upload)(dorac_backend *be, const dorac_tensor *dst, const void *src, dorac_dtype src_type);
int CPU_FN(download)(dorac_backend *be, void *dst, dorac_dtype dst_type, const dorac_tensor *src);
int CPU_FN(copy)(dorac_backend *be, const dorac_tensor *dst, const dorac_tensor *src);
int CPU_FN(fill)(dorac_backend *be, const dorac_tensor *dst, double value);
int CPU_FN(gemm)(dorac_backend *be, const dorac_tensor *C, const dorac_tensor *A, bool trans_a,
                 const dorac_tensor *B, bool trans_b, double alpha, double beta);
int CPU_FN(axpby)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X, double alpha,
                  double beta);
int CPU_FN(row_sumsq)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *W);
int CPU_FN(col_sum)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                    double alpha, double beta);
int CPU_FN(scale_cols_add_bias)(dorac_backend *be, const dorac_tensor *Y,
                                const dorac_tensor *scale, const dorac_tensor *bias);
int CPU_FN(scale_rows)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                       const dorac_tensor *w, double alpha, double beta);
int CPU_FN(dropout)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *in, double p,
                    uint64_t seed, uint64_t stream, int64_t row0);
int CPU_FN(dora_norm)(dorac_backend *be, const dorac_tensor *n, const dorac_tensor *g,
                      const dorac_tensor *c, const dorac_tensor *B, const dorac_tensor *P,
                      const dorac_tensor *G, const dorac_tensor *m, double scale, double floor);
int CPU_FN(dora_scale_backward)(dorac_backend *be, const dorac_tensor *dz, const dorac_tensor *zsum,
                                const dorac_tensor *dy, const dorac_tensor *y,
                                const dorac_tensor *g, const dorac_tensor *bias);
int CPU_FN(dora_magnitude_backward)(dorac_backend *be, const dorac_tensor *dm,
                                    const dorac_tensor *w, const dorac_tensor *zsum,
                                    const dorac_tensor *m, const dorac_tensor *n);
int CPU_FN(embedding_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *ids,
                              const dorac_tensor *table, bool accumulate);
int CPU_FN(embedding_backward)(dorac_backend *be, const dorac_tensor *dtable,
                               const dorac_tensor *dout, const dorac_tensor *ids);
int CPU_FN(rmsnorm_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *rstd,
                            const dorac_tensor *x, const dorac_tensor *w, double eps);
int CPU_FN(rmsnorm_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dw,
                             const dorac_tensor *dout, const dorac_tensor *x,
                             const dorac_tensor *w, const dorac_tensor *rstd);
int CPU_FN(layernorm_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *mean,
                              const dorac_tensor *rstd, const dorac_tensor *x,
                              const dorac_tensor *w, const dorac_tensor *b, double eps);
int CPU_FN(layernorm_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dw,
                               const dorac_tensor *db, const dorac_tensor *dout,
                               const dorac_tensor *x, const dorac_tensor *w,
                               const dorac_tensor *mean, const dorac_tensor *rstd);
int CPU_FN(rope)(dorac_backend *be, const dorac_tensor *x, const dorac_tensor *pos,
                 const dorac_tensor *cos_t, const dorac_tensor *sin_t, int64_t n_heads,
                 int64_t head_dim, bool inverse);
int CPU_FN(attention_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *lse,
                              const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                              int64_t B, int64_t T, int64_t H, int64_t KV, int64_t D);
int CPU_FN(attention_backward)(dorac_backend *be, const dorac_tensor *dq, const dorac_tensor *dk,
                               const dorac_tensor *dv, const dorac_tensor *dout,
                               const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                               const dorac_tensor *out, const dorac_tensor *lse, int64_t B,
                               int64_t T, int64_t H, int64_t KV, int64_t D);
int CPU_FN(swiglu_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *gate,
                           const dorac_tensor *up);
int CPU_FN(swiglu_backward)(dorac_backend *be, const dorac_tensor *dgate, const dorac_tensor *dup,
                            const dorac_tensor *dout, const dorac_tensor *gate,
                            const dorac_tensor *up);
int CPU_FN(gelu_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *x);
int CPU_FN(gelu_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dout,
                          const dorac_tensor *x);
int CPU_FN(cross_entropy)(dorac_backend *be, const dorac_tensor *loss, const dorac_tensor *dlogits,
                          const dorac_tensor *logits, const dorac_tensor *targets, double dscale);

int CPU_FN(sum_squares)(dorac_backend *be, const dorac_tensor *X, double *out);
int CPU_FN(adamw)(dorac_backend *be, const dorac_tensor *param, const dorac_tensor *grad,
                  const dorac_tensor *m, const dorac_tensor *v, double lr, double beta1, double beta2,
                  double eps, double weight_decay, int64_t step, double grad_scale);

/* the slow, obvious twins of attention_forward/backward (tests compare) */
int CPU_FN(attention_forward_ref)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *lse,
                                  const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                                  int64_t B, int64_t T, int64_t H, int64_t KV, int64_t D);
int CPU_FN(attention_backward_ref)(dorac_backend *be, const dorac_tensor *dq, const dorac_tensor *dk,
                                   const dorac_tensor *dv, const dorac_tensor *dout,
                                   const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                                   const dorac_tensor *out, const dorac_tensor *lse, int64_t B,
                                   int64_t T, int64_t H, int64_t KV, int64_t D);

/* attention of new query rows against a KV cache (cpu_ops_decode.c) */
int CPU_FN(attention_cached)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *q,
                             const dorac_tensor *k, const dorac_tensor *v, int64_t past, int64_t H,
                             int64_t KV, int64_t D);

#endif
