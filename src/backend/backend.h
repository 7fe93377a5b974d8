/*
** backend.h — the seam between model/adapter code and the devices.
**
** A backend is a struct of function pointers plus a context, as in ggml.
** Model and adapter code is written once against this struct and never
** touches tensor memory directly: only the backend knows whether a pointer
** is host or device memory. The CPU backend (backend/cpu/) is the reference
** oracle; a CUDA backend (backend/cuda/) implements the same entries.
**
** Tensors are 2-D row-major views: (rows, cols) with a row stride `ld` in
** elements (ld >= cols). A vector is a (1, n) tensor. Batched activations of
** shape (B, T, C) are (B*T, C) views. Every op checks the shapes it is given
** and returns DORAC_E_INVALID, with a message naming the op and both shapes,
** rather than reading out of bounds.
**
** Precision policy. Each backend names three element types:
**   act_type    activations and their gradients, (N, ·) tensors
**   weight_type frozen weights W0, bias
**   param_type  trainable parameters (A, B, m, or W in full fine-tuning),
**               their gradients, optimizer state, and all DoRA norm
**               arithmetic (c, n, g, P, G), which is always at least fp32.
** The fp32 CPU backend uses F32 for all three; the fp64 CPU backend (the
** finite-difference oracle) uses F64 for all three; a CUDA backend would use
** BF16 / BF16 / F32. Ops accept the types their backend declares and fail
** with DORAC_E_UNSUPPORTED otherwise.
**
** Ops run in order on the backend's one stream; `synchronize` waits for
** them. Every op returns DORAC_OK or an error status.
*/
#ifndef DORAC_BACKEND_H
#define DORAC_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "dorac.h"

typedef struct dorac_tensor {
    void *data;       /* backend memory; NULL means "absent" where an op allows it */
    dorac_dtype type; /* element type */
    int64_t rows;     /* >= 0 */
    int64_t cols;     /* >= 0 */
    int64_t ld;       /* row stride in elements, >= cols */
} dorac_tensor;

/* Memory counters kept by every backend, for tests and benchmarks. */
typedef struct dorac_mem_stats {
    size_t n_allocs;        /* successful alloc calls since creation or reset */
    size_t current_bytes;   /* bytes allocated now */
    size_t peak_bytes;      /* high-water mark of current_bytes since reset */
    size_t largest_alloc;   /* largest single allocation since reset, bytes */
} dorac_mem_stats;

typedef struct dorac_backend dorac_backend;

/* One adapted layer's DoRA norm update, for dora_norm_many: G = A A^T, then
** dora_norm(n, g, c, B, P, G, m, scale). A (r,in), B and P (out,r) (P =
** W0 A^T, the caller's), G (r,r); A, B, P, G absent (data NULL) for a
** layer of rank 0; g and m may be absent as in dora_norm. */
typedef struct dorac_dora_norm_item {
    const dorac_tensor *n, *g, *c, *A, *B, *P, *G, *m;
    double scale;
} dorac_dora_norm_item;

/* One tensor of a multi-tensor AdamW step: param, its gradient, and its
** moments, all of param's shape; decay says whether weight decay applies. */
typedef struct dorac_adamw_item {
    const dorac_tensor *param, *grad, *m, *v;
    bool decay;
} dorac_adamw_item;

/* DoRA's element-wise backward terms of one projection (dora_scale_backward's
** zsum, g and bias), for the activation backwards that fuse them. bias may
** have data == NULL. */
typedef struct dorac_dora_epilogue {
    const dorac_tensor *zsum, *g, *bias;
} dorac_dora_epilogue;

struct dorac_backend {
    const char *name;        /* "cpu", "cpu64", "cuda" */
    void *context;           /* backend-private state */
    dorac_dtype act_type;
    dorac_dtype weight_type;
    dorac_dtype param_type;

    /* ---- lifetime ---- */
    void (*destroy)(dorac_backend *be);

    /* ---- memory ---- */
    /* nbytes of backend memory, 64-byte aligned; NULL (with the error set) on
    ** failure. Contents are undefined. */
    void *(*alloc)(dorac_backend *be, size_t nbytes);
    void (*free)(dorac_backend *be, void *ptr); /* ptr may be NULL */
    void (*mem_stats)(dorac_backend *be, dorac_mem_stats *out);
    void (*mem_stats_reset)(dorac_backend *be); /* peak := current, counters := 0 */

    /* dst (rows,cols) <- host array src, contiguous, of src_type, converted. */
    int (*upload)(dorac_backend *be, const dorac_tensor *dst, const void *src,
                  dorac_dtype src_type);
    /* host array dst, contiguous, of dst_type <- src, converted. */
    int (*download)(dorac_backend *be, void *dst, dorac_dtype dst_type,
                    const dorac_tensor *src);
    /* dst <- src, same shape; types may differ (converted). */
    int (*copy)(dorac_backend *be, const dorac_tensor *dst, const dorac_tensor *src);
    /* every element of dst <- value */
    int (*fill)(dorac_backend *be, const dorac_tensor *dst, double value);
    /* (optional) fill on each of the n tensors dst[0..n) (absent ones, with
    ** no data, skipped): the same result as n fill calls, in a handful of
    ** launches instead of n (zeroing hundreds of adapter gradients a step).
    ** NULL: callers use dorac_fill_many, which loops. */
    int (*fill_many)(dorac_backend *be, const dorac_tensor *const *dst, size_t n, double value);
    /* (optional) copy(dst[i], src[i]) for each i in [0, n) whose dst has
    ** data: the same result as those copy calls (types converted), in a
    ** handful of launches (the adapters' weight-type copies of A and B,
    ** refreshed before every forward). Pairs must not overlap each other.
    ** NULL: callers use dorac_copy_many, which loops. */
    int (*copy_many)(dorac_backend *be, const dorac_tensor *const *dst, const dorac_tensor *const *src,
                     size_t n);
    /* (optional) waits until queued ops finish; NULL for synchronous backends */
    int (*synchronize)(dorac_backend *be);

    /* ---- linear algebra ---- */
    /* C (M,N) = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T.
    ** beta == 0 ignores C's previous contents (NaN included). */
    int (*gemm)(dorac_backend *be, const dorac_tensor *C, const dorac_tensor *A, bool trans_a,
                const dorac_tensor *B, bool trans_b, double alpha, double beta);
    /* (optional) gemm(C[i], A[i], trans_a, B[i], trans_b, alpha, beta) for
    ** each i in [0, n), in fewer launches where products share their sizes,
    ** types and row strides (DoRA's P = W0 A^T of every layer, once a step);
    ** the same results up to rounding (a batch may run another algorithm
    ** than one product would). The C[i] must not overlap each other or any
    ** operand. NULL: callers use dorac_gemm_many, which loops. */
    int (*gemm_many)(dorac_backend *be, const dorac_tensor *const *C, const dorac_tensor *const *A,
                     bool trans_a, const dorac_tensor *const *B, bool trans_b, size_t n, double alpha,
                     double beta);

    /* ---- element-wise and reductions ---- */
    /* out (R,C) = alpha * X + beta * out; beta == 0 ignores out's contents. */
    int (*axpby)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X, double alpha,
                 double beta);
    /* out (1,rows) = sum_j W[o,j]^2, accumulated in double. */
    int (*row_sumsq)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *W);
    /* out (1,cols) = beta*out + alpha * sum_i X[i,:], accumulated in double. */
    int (*col_sum)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                   double alpha, double beta);
    /* Y (N,C): Y[i,c] = scale[c] * Y[i,c] + bias[c]; scale or bias may have
    ** data == NULL, meaning 1 and 0. */
    int (*scale_cols_add_bias)(dorac_backend *be, const dorac_tensor *Y,
                               const dorac_tensor *scale, const dorac_tensor *bias);
    /* out (R,C) = beta*out + alpha * diag(w) X, with X (R,C), w (1,R).
    ** out may alias X when beta == 0. */
    int (*scale_rows)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *X,
                      const dorac_tensor *w, double alpha, double beta);
    /* out (R,C) = in * mask / (1-p), mask[i,j] = uniform(seed, stream,
    ** (row0+i)*C + j) >= p. Applying it again with the same arguments to a
    ** gradient is its backward. out may alias in. */
    int (*dropout)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *in,
                   double p, uint64_t seed, uint64_t stream, int64_t row0);

    /* ---- DoRA ---- */
    /* The factored row norm (DESIGN.md §1):
    **   n2[o] = c[o] + 2s sum_k B[o,k] P[o,k] + s^2 sum_kl B[o,k] G[k,l] B[o,l]
    **   n[o]  = sqrt(max(n2[o], floor)),  g[o] = m[o] / n[o]
    ** c, n, g, m (1,out); B, P (out,r); G (r,r). r == 0 gives n = sqrt(c). */
    int (*dora_norm)(dorac_backend *be, const dorac_tensor *n, const dorac_tensor *g,
                     const dorac_tensor *c, const dorac_tensor *B, const dorac_tensor *P,
                     const dorac_tensor *G, const dorac_tensor *m, double scale, double floor);
    /* (optional) For each of the n items: G = A A^T (gemm, alpha 1, beta
    ** 0) where A is present, then dora_norm. The same results, bit for bit,
    ** as those calls item by item, in an unspecified order (items must not
    ** share an output); a batch takes two launches instead of two per item
    ** (a Llama-1B step updates 112 norms). A is present exactly when B is,
    ** with B's rank as its rows and at least one column. An item that fails
    ** the checks fails the call (other items may have been updated). NULL:
    ** callers use dorac_dora_norm_many, which loops. */
    int (*dora_norm_many)(dorac_backend *be, const dorac_dora_norm_item *items, size_t n, double floor);
    /* The element-wise half of DoRA's backward, one pass over (N,out):
    **   dz[i,o]  = g[o] * dy[i,o]
    **   zsum[o] += sum_i dy[i,o] * z[i,o],  z[i,o] = (y[i,o] - bias[o]) / g[o]
    ** z is read back from the forward output y, so no copy of z is kept.
    ** Where g[o] == 0, z[:,o] cannot be recovered and contributes 0; this only
    ** happens when m[o] == 0, and then z[:,o] is 0 for adapters trained from
    ** PEFT's initialisation (B's row gets no gradient while g is 0).
    ** bias may have data == NULL. dz may alias dy. */
    int (*dora_scale_backward)(dorac_backend *be, const dorac_tensor *dz,
                               const dorac_tensor *zsum, const dorac_tensor *dy,
                               const dorac_tensor *y, const dorac_tensor *g,
                               const dorac_tensor *bias);
    /* dm[o] += zsum[o] / n[o]; if w->data != NULL, also w[o] = -zsum[o] m[o] / n[o]^3,
    ** the per-row weight of the exact (non-detached) norm gradient. */
    int (*dora_magnitude_backward)(dorac_backend *be, const dorac_tensor *dm,
                                   const dorac_tensor *w, const dorac_tensor *zsum,
                                   const dorac_tensor *m, const dorac_tensor *n);

    /* (optional) The adapter's up-projection with DoRA's epilogue, in one
    ** pass over Y (N,out), which holds h = x W0^T on entry:
    **   Y[i,o] = scale[o] * (Y[i,o] + s * sum_k U[i,k] B[o,k]) + bias[o]
    ** U (N,r), B (out,r); scale, bias (1,out), either may have data == NULL
    ** (1 and 0). NULL: callers use dorac_lora_up_scale, whose slow twin is
    ** gemm (beta 1) then scale_cols_add_bias. */
    int (*lora_up_scale)(dorac_backend *be, const dorac_tensor *Y, const dorac_tensor *U,
                         const dorac_tensor *B, double s, const dorac_tensor *scale,
                         const dorac_tensor *bias);

    /* ---- optimizer ---- */
    /* *out = sum of X's squared elements, accumulated in double (waits for
    ** queued work: the result is on the host). */
    int (*sum_squares)(dorac_backend *be, const dorac_tensor *X, double *out);
    /* (optional) *out = sum over the n tensors X[0..n) of sum_squares(X[i]),
    ** added in order of i on the host: equal, bit for bit, to calling
    ** sum_squares on each and adding, but waiting for the device once, not
    ** n times (global-norm clipping reads hundreds of adapter gradients).
    ** NULL: callers use dorac_sum_squares_many, which loops. */
    int (*sum_squares_many)(dorac_backend *be, const dorac_tensor *const *X, size_t n, double *out);
    /* One AdamW step on param, exactly as torch.optim.AdamW (decoupled weight
    ** decay, bias correction for step >= 1):
    **   p *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
    **   p -= lr/(1-b1^step) * m / (sqrt(v)/sqrt(1-b2^step) + eps)
    ** grad is multiplied by grad_scale first (global-norm clipping). m, v
    ** have param's shape and the backend's param type. */
    int (*adamw)(dorac_backend *be, const dorac_tensor *param, const dorac_tensor *grad,
                 const dorac_tensor *m, const dorac_tensor *v, double lr, double beta1, double beta2,
                 double eps, double weight_decay, int64_t step, double grad_scale);

    /* (optional) adamw on each of n items, with weight_decay on those whose
    ** decay is set and 0 on the rest: the same result, bit for bit, as n
    ** adamw calls, in a handful of launches instead of n. NULL: callers use
    ** dorac_adamw_many, which loops. */
    int (*adamw_many)(dorac_backend *be, const dorac_adamw_item *items, size_t n, double lr,
                      double beta1, double beta2, double eps, double weight_decay, int64_t step,
                      double grad_scale);

    /* ---- transformer ops ----
    ** Size letters: N rows (B*T), C channels, V vocabulary, B batch, T time,
    ** H query heads, KV key/value heads (H % KV == 0), D head dimension.
    ** Index tensors (ids, positions, targets) are I32 (1, N); an index out of
    ** range is DORAC_E_INVALID naming the row. Input-gradient outputs of the
    ** norms accumulate (+=), for the residual stream; those of the other ops
    ** are overwritten. Parameter gradients accumulate and may be absent. */
    /* out (N,C) = table[ids] (or += with accumulate); table (V,C). */
    int (*embedding_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *ids,
                             const dorac_tensor *table, bool accumulate);
    /* dtable (V,C) += scatter of dout (N,C) by ids. */
    int (*embedding_backward)(dorac_backend *be, const dorac_tensor *dtable,
                              const dorac_tensor *dout, const dorac_tensor *ids);
    /* out = w ⊙ x / sqrt(mean(x^2) + eps); rstd (1,N) saved for backward. */
    int (*rmsnorm_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *rstd,
                           const dorac_tensor *x, const dorac_tensor *w, double eps);
    /* dx += ..., dw += ... (dw may be absent). */
    int (*rmsnorm_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dw,
                            const dorac_tensor *dout, const dorac_tensor *x,
                            const dorac_tensor *w, const dorac_tensor *rstd);
    /* out = w ⊙ (x - mean) * rstd + b; mean, rstd (1,N) saved; b may be absent. */
    int (*layernorm_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *mean,
                             const dorac_tensor *rstd, const dorac_tensor *x,
                             const dorac_tensor *w, const dorac_tensor *b, double eps);
    /* dx += ..., dw += ..., db += ... (dw, db may be absent). */
    int (*layernorm_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dw,
                              const dorac_tensor *db, const dorac_tensor *dout,
                              const dorac_tensor *x, const dorac_tensor *w,
                              const dorac_tensor *mean, const dorac_tensor *rstd);
    /* Rotates x (N, n_heads*D) in place, HF rotate_half layout: (x[j], x[j+D/2])
    ** of each head by pos*inv_freq[j]; cos, sin (max_pos, D/2) tables.
    ** inverse rotates back, which is also the backward. */
    int (*rope)(dorac_backend *be, const dorac_tensor *x, const dorac_tensor *pos,
                const dorac_tensor *cos, const dorac_tensor *sin, int64_t n_heads,
                int64_t head_dim, bool inverse);
    /* (optional) out <- rope of x (the same shape; x unchanged), in one
    ** pass instead of copy then rope: the model keeps q and k as its
    ** linears produced them (DoRA's backward reads them) and attends to the
    ** rotated copies. out may be x itself (rope in place) but must not
    ** overlap it otherwise. NULL: callers use dorac_rope_copy, whose slow
    ** twin is copy then rope. */
    int (*rope_copy)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *x,
                     const dorac_tensor *pos, const dorac_tensor *cos, const dorac_tensor *sin,
                     int64_t n_heads, int64_t head_dim, bool inverse);
    /* Causal softmax(q k^T / sqrt(D)) v per (batch, head), head h reading kv
    ** head h / (H/KV). q, out (N, H*D); k, v (N, KV*D); column views with
    ** ld > cols are fine. lse (1, B*H*T) saves each row's log-sum-exp. */
    int (*attention_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *lse,
                             const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                             int64_t B, int64_t T, int64_t H, int64_t KV, int64_t D);
    /* dq, dk, dv overwritten, from dout and the forward's out and lse. */
    int (*attention_backward)(dorac_backend *be, const dorac_tensor *dq, const dorac_tensor *dk,
                              const dorac_tensor *dv, const dorac_tensor *dout,
                              const dorac_tensor *q, const dorac_tensor *k,
                              const dorac_tensor *v, const dorac_tensor *out,
                              const dorac_tensor *lse, int64_t B, int64_t T, int64_t H,
                              int64_t KV, int64_t D);
    /* out = silu(gate) ⊙ up */
    int (*swiglu_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *gate,
                          const dorac_tensor *up);
    int (*swiglu_backward)(dorac_backend *be, const dorac_tensor *dgate, const dorac_tensor *dup,
                           const dorac_tensor *dout, const dorac_tensor *gate,
                           const dorac_tensor *up);
    /* out = GELU with the tanh approximation (GPT-2's gelu_new) */
    int (*gelu_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *x);
    int (*gelu_backward)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dout,
                         const dorac_tensor *x);
    /* (optional) swiglu_backward fused with dora_scale_backward of the
    ** DoRA projections that produced gate and up, in one pass: dgate and dup
    ** are computed as swiglu_backward computes them (in fp32), then for each
    ** side whose epilogue e is not NULL, with d that side's gradient and y
    ** its input (gate or up),
    **   e->zsum[o] += sum_i d[i,o] (y[i,o] - bias[o]) / g[o];  d[i,o] *= g[o]
    ** so the gradients are not written and re-read by a separate pass. NULL:
    ** callers use dorac_swiglu_backward_dora, whose slow twin is
    ** swiglu_backward, then dora_scale_backward on each DoRA side in place.
    ** With an epilogue, dgate and dup must not alias gate or up. */
    int (*swiglu_backward_dora)(dorac_backend *be, const dorac_tensor *dgate,
                                const dorac_tensor *dup, const dorac_tensor *dout,
                                const dorac_tensor *gate, const dorac_tensor *up,
                                const dorac_dora_epilogue *egate, const dorac_dora_epilogue *eup);
    /* (optional) gelu_backward fused likewise with dora_scale_backward of the
    ** DoRA projection that produced x (y = x). NULL: callers use
    ** dorac_gelu_backward_dora (gelu_backward, then dora_scale_backward).
    ** With an epilogue, dx must not alias x. */
    int (*gelu_backward_dora)(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dout,
                              const dorac_tensor *x, const dorac_dora_epilogue *e);
    /* loss (1,N) = logsumexp(logits[i]) - logits[i, t_i], 0 where t_i is
    ** DORAC_IGNORE_INDEX. dlogits (N,V), absent or aliasing logits, =
    ** dscale * (softmax(logits[i]) - onehot(t_i)), 0 on ignored rows. */
    int (*cross_entropy)(dorac_backend *be, const dorac_tensor *loss, const dorac_tensor *dlogits,
                         const dorac_tensor *logits, const dorac_tensor *targets, double dscale);

    /* ---- inference with a KV cache (src/model/decode.c) ---- */
    /* Attention of n = q->rows new query rows against a cache, B = 1:
    ** q, out (n, H*D); k, v (past+n, KV*D), the cache's first past+n rows,
    ** whose last n are the new rows' own keys and values. Query row i sits
    ** at position past+i and attends to key rows 0..past+i (every cached
    ** row; causal among the new rows), head h reading kv head h / (H/KV),
    ** scores scaled by 1/sqrt(D). The result equals rows past..past+n-1 of
    ** attention_forward over all past+n rows. No log-sum-exp is saved and
    ** there is no backward. Column views (ld > cols) are fine. */
    int (*attention_cached)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *q,
                            const dorac_tensor *k, const dorac_tensor *v, int64_t past, int64_t H,
                            int64_t KV, int64_t D);
};

/* A target that contributes no loss (PyTorch's ignore_index). */
#define DORAC_IGNORE_INDEX (-100)

/* ---- helpers on top of the interface (backend.c) ---- */

/* A tensor view of rows x cols over data, contiguous. */
static inline dorac_tensor dorac_tensor_view(void *data, dorac_dtype type, int64_t rows,
                                             int64_t cols) {
    dorac_tensor t = {data, type, rows, cols, cols};
    return t;
}

/* Rows [row0, row0+n) of t. The caller ensures the range is within t. */
dorac_tensor dorac_tensor_rows(const dorac_tensor *t, int64_t row0, int64_t n);

/* An absent tensor (data NULL) of the given type. */
static inline dorac_tensor dorac_tensor_none(dorac_dtype type) {
    dorac_tensor t = {NULL, type, 0, 0, 0};
    return t;
}

/* Bytes of a contiguous rows x cols tensor of type; 0 and an error on overflow. */
size_t dorac_tensor_nbytes(dorac_dtype type, int64_t rows, int64_t cols);

/* Allocates a contiguous (rows, cols) tensor of type on be. Returns DORAC_OK
** or DORAC_E_NOMEM / DORAC_E_INVALID with the message naming `what`. */
int dorac_tensor_alloc(dorac_backend *be, dorac_tensor *t, dorac_dtype type, int64_t rows,
                       int64_t cols, const char *what);

/* Frees t's memory (if any) and marks it absent. */
void dorac_tensor_free(dorac_backend *be, dorac_tensor *t);

/* "(r, c)" into buf, for error messages. */
const char *dorac_shape_str(const dorac_tensor *t, char *buf, size_t size);

/* be->fill_many where the backend has it, else fill per tensor with data:
** the slow, obvious twin. */
int dorac_fill_many(dorac_backend *be, const dorac_tensor *const *dst, size_t n, double value);

/* be->gemm_many where the backend has it, else gemm per product: the slow,
** obvious twin. */
int dorac_gemm_many(dorac_backend *be, const dorac_tensor *const *C, const dorac_tensor *const *A, bool trans_a,
                    const dorac_tensor *const *B, bool trans_b, size_t n, double alpha, double beta);

/* be->rope_copy where the backend has it, else copy (unless out is x) then
** rope in place: the slow, obvious twin. */
int dorac_rope_copy(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *x, const dorac_tensor *pos,
                    const dorac_tensor *cos, const dorac_tensor *sin, int64_t n_heads, int64_t head_dim,
                    bool inverse);

/* be->copy_many where the backend has it, else copy per pair whose dst has
** data: the slow, obvious twin. */
int dorac_copy_many(dorac_backend *be, const dorac_tensor *const *dst, const dorac_tensor *const *src,
                    size_t n);

/* be->dora_norm_many where the backend has it, else gemm (G = A A^T, for
** items with A) and dora_norm per item: the slow, obvious twin. */
int dorac_dora_norm_many(dorac_backend *be, const dorac_dora_norm_item *items, size_t n, double floor);

/* be->sum_squares_many where the backend has it, else sum_squares per
** tensor, added in order: the slow, obvious twin. */
int dorac_sum_squares_many(dorac_backend *be, const dorac_tensor *const *X, size_t n, double *out);

/* Checks the backends' ops share, so that a mistake reads the same on every
** backend (each adds its own dtype rule). All return DORAC_OK or
** DORAC_E_INVALID (DORAC_E_UNSUPPORTED for a non-I32 index) naming op and
** what. */
/* rows, cols >= 0, ld >= cols, and data present when the view is non-empty. */
int dorac_check_view(const dorac_tensor *t, const char *op, const char *what);
/* t is (rows, cols). */
int dorac_check_dims(const dorac_tensor *t, int64_t rows, int64_t cols, const char *op, const char *what);
/* t is an I32 (1, n) tensor. */
int dorac_check_index_shape(const dorac_tensor *t, int64_t n, const char *op, const char *what);
/* Every v[i], i < n, lies in [0, limit), or is DORAC_IGNORE_INDEX where
** ignore_ok (targets); the message names the first that does not. */
int dorac_check_index_values(const int32_t *v, int64_t n, int64_t limit, bool ignore_ok, const char *op,
                             const char *what);

/* The sizes of gemm's C (M,N) = op(A) (M,K) op(B) (K,N), checked: the
** same DORAC_E_INVALID message on every backend for operands that do not
** fit, DORAC_E_UNSUPPORTED for a size past the 32-bit BLAS interface. */
int dorac_gemm_shape(const dorac_tensor *C, const dorac_tensor *A, bool trans_a, const dorac_tensor *B,
                     bool trans_b, int64_t *M, int64_t *N, int64_t *K);

/* be->lora_up_scale where the backend has it, else gemm then
** scale_cols_add_bias. */
int dorac_lora_up_scale(dorac_backend *be, const dorac_tensor *Y, const dorac_tensor *U,
                        const dorac_tensor *B, double s, const dorac_tensor *scale,
                        const dorac_tensor *bias);

/* be->swiglu_backward_dora where the backend has it (and a side is DoRA),
** else swiglu_backward, then dora_scale_backward in place on each side
** whose epilogue is not NULL. */
int dorac_swiglu_backward_dora(dorac_backend *be, const dorac_tensor *dgate, const dorac_tensor *dup,
                               const dorac_tensor *dout, const dorac_tensor *gate,
                               const dorac_tensor *up, const dorac_dora_epilogue *egate,
                               const dorac_dora_epilogue *eup);

/* be->gelu_backward_dora where the backend has it (and e is not NULL),
** else gelu_backward, then dora_scale_backward in place. */
int dorac_gelu_backward_dora(dorac_backend *be, const dorac_tensor *dx, const dorac_tensor *dout,
                             const dorac_tensor *x, const dorac_dora_epilogue *e);

/* be->adamw_many where the backend has it, else adamw per item. */
int dorac_adamw_many(dorac_backend *be, const dorac_adamw_item *items, size_t n, double lr,
                     double beta1, double beta2, double eps, double weight_decay, int64_t step,
                     double grad_scale);

/* ---- backends ---- */

typedef struct dorac_cpu_params {
    int n_threads; /* <= 0: leave the current setting */
} dorac_cpu_params;

/* The fp32 CPU backend (OpenBLAS + OpenMP). NULL with the error set on failure. */
dorac_backend *dorac_backend_cpu_create(dorac_cpu_params params);
/* The fp64 CPU backend: same code, double precision; the oracle for
** finite-difference tests. */
dorac_backend *dorac_backend_cpu64_create(dorac_cpu_params params);

typedef struct dorac_cuda_params {
    int device; /* CUDA device ordinal; 0 is the first GPU */
} dorac_cuda_params;

/* True when dorac was built with the CUDA backend (-DDORAC_CUDA=ON) and at
** least one CUDA device is present. Never fails. */
bool dorac_cuda_available(void);

/* The CUDA backend (backend/cuda/): BF16 activations and frozen weights,
** F32 trainable parameters, cuBLAS GEMMs. NULL with the error set when
** dorac was built without CUDA, no device is present, or setup fails. */
dorac_backend *dorac_backend_cuda_create(dorac_cuda_params params);

/* Opens the backend a user names into *out: "cpu", "cuda", "cuda:N"
** (device N), or "auto" (or NULL): cuda when dorac_cuda_available(), else
** cpu. DORAC_E_INVALID for any other name; DORAC_E_UNSUPPORTED when cuda
** is named but dorac was built without it; DORAC_E_BACKEND when the device
** cannot start; DORAC_E_NOMEM. */
int dorac_backend_open(const char *device, dorac_backend **out);

static inline void dorac_backend_destroy(dorac_backend *be) {
    if (be) be->destroy(be);
}

#endif
