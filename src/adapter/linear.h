/*
** linear.h — one linear layer y = x W^T + b, frozen or adapted.
**
** This is the unit the model is built from: every targeted projection
** (q, k, v, o, gate, up, down, lm_head) is a dorac_linear. The method decides
** what is trained:
**
**   FROZEN  nothing; backward gives dx only
**   FULL    W (and b) trainable: dW += dy^T x, dbias += sum_N dy
**   LORA    y = x W0^T + s (x A^T) B^T + b;  A, B trainable
**   DORA    y = (m / n) ⊙ (x W0^T + s (x A^T) B^T) + b;  A, B, m trainable;
**           rank 0 is the magnitude-only variant (paper's Table 6).
**
** The math and its derivation are in shared/DESIGN.md §1; the DoRA-specific
** parts (norm, magnitude gradient, exact norm gradient, merge) live in
** dora.c, the rest in linear.c.
**
** Ownership. The layer never owns W, bias, the adapter parameters or their
** gradients: the caller (the model, or the raw-array API) hands in views of
** memory it owns, so that one arena can hold every parameter, llm.c style.
** The layer owns only its DoRA caches (c, n, g, P, G), O(out*r + r^2).
**
** Memory. The DoRA norm never materialises an (out, in) matrix. The
** backward pass needs the forward's output y (it reads z back from it) and
** somewhere to put dz = g ⊙ dy: in place over dy, or a chunk scratch of
** DORAC_LINEAR_CHUNK_ROWS x out, independent of N and in (see backward).
*/
#ifndef DORAC_ADAPTER_LINEAR_H
#define DORAC_ADAPTER_LINEAR_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"

typedef enum dorac_method {
    DORAC_METHOD_FROZEN = 0,
    DORAC_METHOD_FULL = 1,
    DORAC_METHOD_LORA = 2,
    DORAC_METHOD_DORA = 3
} dorac_method;

const char *dorac_method_name(dorac_method m);

/* Rows of the batch processed per step of the backward pass (DoRA's dz
** scratch, dropout's masked-input scratch). */
#define DORAC_LINEAR_CHUNK_ROWS 256

typedef struct dorac_adapter_config {
    dorac_method method;
    int rank;         /* r: >= 1 for LoRA, >= 0 for DoRA, <= min(in, out) */
    double alpha;     /* scale numerator */
    bool use_rslora;  /* s = alpha / sqrt(r) instead of alpha / r */
    double dropout;   /* on the adapter input only, in [0, 1) */
    int norm_grad;    /* enum dorac_norm_grad, DoRA only */
} dorac_adapter_config;

/* s = alpha / r, or alpha / sqrt(r) with rsLoRA; 1 when r == 0. */
double dorac_adapter_scale(const dorac_adapter_config *cfg);

/* Checks cfg against the layer shape; DORAC_E_INVALID naming `name` and the
** offending value otherwise. */
int dorac_adapter_config_check(const dorac_adapter_config *cfg, int64_t in, int64_t out,
                               const char *name);

/* What the caller hands the layer. Tensors of absent parts have data NULL. */
typedef struct dorac_linear_tensors {
    dorac_tensor W;     /* (out, in) weight_type; param_type for FULL */
    dorac_tensor bias;  /* (1, out) or absent */
    dorac_tensor A;     /* (r, in) param_type, LoRA/DoRA with r > 0 */
    dorac_tensor B;     /* (out, r) */
    dorac_tensor m;     /* (1, out), DoRA */
    dorac_tensor dA;    /* gradients, same shapes, accumulated with += ... */
    dorac_tensor dB;
    dorac_tensor dm;
    dorac_tensor dW;    /* ... FULL only; may be absent for a forward-only layer */
    dorac_tensor dbias; /* FULL with bias */
    /* Optional copies of A and B in W's type, which the owner allocates and
    ** dorac_linear_refresh_copies fills: the products that read A and B in
    ** W's type (u = x A^T, P = W0 A^T, du = s dz B) then convert nothing per
    ** call. An A_w whose rows follow W's last row in one allocation, with
    ** W's ld, also lets a backward with spare dz columns (dorac_linear_
    ** backward_ex) run the adapter's dx in the base GEMM:
    **     dx = [dz | s dz B] [W0 ; A]       (K = out + r, one product) */
    dorac_tensor A_w;   /* (r, in) W's type, or absent */
    dorac_tensor B_w;   /* (out, r) W's type, or absent */
} dorac_linear_tensors;

typedef struct dorac_linear {
    dorac_backend *be;
    dorac_adapter_config cfg;
    int64_t in, out;      /* W is (out, in) */
    double scale;         /* s */
    uint64_t dropout_stream; /* distinguishes this layer's dropout masks */
    bool eval_mode;       /* inference: no dropout (PyTorch's module.eval()); false = training */
    dorac_linear_tensors t;
    /* DoRA caches, owned. c is set at init; n, g, P, G by each forward and
    ** read by the following backward, which sums into zsum. */
    dorac_tensor c;       /* (1, out) ||W0[o,:]||^2 */
    dorac_tensor n;       /* (1, out) row norm of W0 + sBA */
    dorac_tensor g;       /* (1, out) m / n */
    dorac_tensor P;       /* (out, r) W0 A^T */
    dorac_tensor G;       /* (r, r) A A^T */
    dorac_tensor zsum;    /* (1, out) the backward's sum_N dy ⊙ z */
    /* zsum already holds zeros (a model zeroes every layer's with one
    ** fill_many before its backward): the next backward, or
    ** dorac_linear_dora_epilogue, skips its own fill and clears this */
    bool zsum_zeroed;
} dorac_linear;

/* True when the layer has low-rank factors A and B (LoRA, or DoRA with r > 0). */
static inline bool dorac_linear_has_adapter(const dorac_linear *L) {
    return (L->cfg.method == DORAC_METHOD_LORA || L->cfg.method == DORAC_METHOD_DORA) &&
           L->cfg.rank > 0;
}

/* Validates shapes and types and allocates the DoRA caches. On failure
** nothing is left allocated. `name` is used in error messages. */
int dorac_linear_init(dorac_linear *L, dorac_backend *be, const dorac_adapter_config *cfg,
                      int64_t in, int64_t out, const dorac_linear_tensors *t,
                      const char *name);
void dorac_linear_free(dorac_linear *L);

/* PEFT's initialisation: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming-uniform,
** a = sqrt(5)), B = 0, m = ||W0 row||. The draws are a pure function of
** (seed, stream), so any device gives the same A. */
int dorac_linear_init_adapter(dorac_linear *L, uint64_t seed, uint64_t stream);

/* m (1,out) = sqrt(c), c = ||W0 row||^2: DoRA's initial magnitude. */
int dorac_dora_init_magnitude_tensor(dorac_backend *be, const dorac_tensor *m,
                                     const dorac_tensor *c);

/* y (N,out) = layer(x (N,in)). u (N,r) receives x A^T (the dropped x with
** dropout), which backward needs; it may be absent for inference, and is
** ignored unless LoRA/DoRA with r > 0. dropout_seed selects the mask and
** must be passed again to backward. */
int dorac_linear_forward(dorac_linear *L, const dorac_tensor *y, const dorac_tensor *u,
                         const dorac_tensor *x, uint64_t dropout_seed);

/* The same, with control over what the forward derives from the
** parameters: update_norm = false reuses DoRA's caches of the previous
** forward (P, G, n, g) and the copies A_w and B_w without recomputing them.
** Use it only while A, B and m are unchanged since those were formed, e.g.
** for the later row chunks of one batch (the model's lm_head). */
int dorac_linear_forward_ex(dorac_linear *L, const dorac_tensor *y, const dorac_tensor *u,
                            const dorac_tensor *x, uint64_t dropout_seed, bool update_norm);

/* Gradients. dy (N,out); x, y, u as given to and produced by the forward
** just before. dx (N,in) is overwritten, or added to when accumulate_dx, or
** skipped when absent. Parameter gradients are added to.
**
** dz_scratch (N,out), or absent, matters to DoRA only: DoRA writes
** dz = g ⊙ dy there and runs the backward as single GEMMs over all N rows.
** It may alias dy, which is then overwritten with dz; this is how the model
** calls it, so DoRA needs no memory beyond LoRA's. When absent, the backward
** runs over chunks of DORAC_LINEAR_CHUNK_ROWS rows with an internal
** (chunk, out) scratch, and dy is left intact. With dropout the adapter part
** always runs in chunks, so its masked-input scratch stays (chunk, in). */
int dorac_linear_backward(dorac_linear *L, const dorac_tensor *dx, bool accumulate_dx,
                          const dorac_tensor *dy, const dorac_tensor *dz_scratch,
                          const dorac_tensor *x, const dorac_tensor *y, const dorac_tensor *u,
                          uint64_t dropout_seed);

/* dorac_linear_backward with dz_spare: the r columns after dz's out in each
** row (inside dz's ld) are this call's scratch, dz being dz_scratch when
** DoRA writes dz there and dy otherwise. With an A_w right after W (see
** dorac_linear_tensors) and no dropout, s dz B goes there and the adapter's
** dx joins the base GEMM (a pass over (N,in) less); the results equal
** dorac_linear_backward's up to rounding (A in W's type, dx rounded once).
** Without such an A_w, or with dropout, dz_spare changes nothing. A dz
** whose ld leaves fewer than r columns is an error. */
int dorac_linear_backward_ex(dorac_linear *L, const dorac_tensor *dx, bool accumulate_dx,
                             const dorac_tensor *dy, const dorac_tensor *dz_scratch,
                             const dorac_tensor *x, const dorac_tensor *y, const dorac_tensor *u,
                             uint64_t dropout_seed, bool dz_spare);

/* DoRA's element-wise backward done by the op that produces dy (an MLP
** activation's fused backward, backend.h's swiglu_backward_dora and
** gelu_backward_dora). dorac_linear_dora_epilogue zeroes L->zsum, points
** e at the terms that op needs (zsum, g, bias) and returns e; it returns
** NULL when L is NULL or not DoRA (*rc = DORAC_OK: pass the NULL on to the
** op, and run dorac_linear_backward) or when zeroing fails (*rc says why). The op then leaves dz = g ⊙ dy where it would have written dy, and
** zsum = sum_N dy ⊙ z; dorac_linear_backward_dz finishes the layer's
** backward from them. Together they give dorac_linear_backward's results
** up to rounding (dz is rounded once, from fp32 dy, instead of twice) and
** save a pass over (N,out). x, u, dx and the other arguments are as for
** dorac_linear_backward; dz is single GEMMs over all N rows. */
const dorac_dora_epilogue *dorac_linear_dora_epilogue(dorac_linear *L, dorac_dora_epilogue *e,
                                                      int *rc);
int dorac_linear_backward_dz(dorac_linear *L, const dorac_tensor *dx, bool accumulate_dx,
                             const dorac_tensor *dz, const dorac_tensor *x, const dorac_tensor *u,
                             uint64_t dropout_seed);
/* The same with dz_spare, as dorac_linear_backward_ex. */
int dorac_linear_backward_dz_ex(dorac_linear *L, const dorac_tensor *dx, bool accumulate_dx,
                                const dorac_tensor *dz, const dorac_tensor *x, const dorac_tensor *u,
                                uint64_t dropout_seed, bool dz_spare);

/* A_w <- A and B_w <- B (dorac_linear_tensors) for each of the n layers
** Ls[0..n) (one backend) that has them, in one dorac_copy_many. Run after
** every change of A or B and before the next forward; the model does it at
** the start of each forward, and dorac_linear_forward for its one layer. */
int dorac_linear_refresh_copies(dorac_linear *const *Ls, size_t n);

/* Everything the forwards of the n layers Ls[0..n) (one backend) derive
** from their parameters alone, in a few batched calls: the copies
** (dorac_linear_refresh_copies), then the norms of the DoRA ones
** (dorac_dora_update_norms). The model runs it at the start of each
** forward; dorac_linear_forward runs it for its one layer. */
int dorac_linear_prepare(dorac_linear *const *Ls, size_t n);

/* ---- DoRA parts (dora.c) ---- */

/* P = W0 A^T, G = A A^T, n, g = m/n: fills the caches from the current A, B, m
** (and refreshes the copies A_w and B_w first: dorac_linear_prepare of L). */
int dorac_dora_update_norm(dorac_linear *L);

/* The norms of each of the n DoRA linears Ls[0..n) (one backend): the P
** products through dorac_gemm_many, then G and the norms of all of them
** through dorac_dora_norm_many (the same results up to the rounding of P,
** in fewer launches). P reads A_w
** where there is one, so refresh the copies first (dorac_linear_prepare
** does both). */
int dorac_dora_update_norms(dorac_linear *const *Ls, size_t n);

/* After the (N,out) pass has summed zsum[o] = sum_N dy*z: dm += zsum/n and,
** in exact mode, the norm's contribution to dA and dB. */
int dorac_dora_backward_params(dorac_linear *L, const dorac_tensor *zsum);

/* W_out (out,in) = the merged weight: W0 + sBA (LoRA), diag(m/n)(W0 + sBA)
** (DoRA), W0 otherwise. For DoRA the n used is left in L->n. */
int dorac_linear_merge(dorac_linear *L, const dorac_tensor *W_out);

/* Inverse of merge, in place: W_inout (out,in) holds the merged weight on
** entry and W0 on return. n is the norm merge used. Fails naming the row if
** some m[o] == 0. */
int dorac_linear_unmerge(dorac_linear *L, const dorac_tensor *W_inout, const dorac_tensor *n);

#endif
