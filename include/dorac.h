/*
** dorac.h — the public C API of dorac, a DoRA / LoRA / full fine-tuning engine.
**
** Conventions, kept by every function declared here:
**   - A function that can fail returns an int status: DORAC_OK (0) on success,
**     one of the negative DORAC_E_* codes on failure. The reason, one line that
**     names the file, tensor or argument and what was expected, is returned by
**     dorac_last_error() on the same thread until the next failure.
**   - The library never prints to stdout and never calls exit() or abort() on
**     bad input. Bad input is an error status.
**   - Matrices are row-major. A weight W0 is (out, in), as PyTorch's nn.Linear
**     stores it: y = x W0^T + b.
**   - Parameter gradients (dA, dB, dm, dW, dbias) accumulate with +=, so that
**     gradient accumulation works. Activation gradients (dx) are overwritten
**     unless a function says otherwise.
*/
#ifndef DORAC_H
#define DORAC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Status and errors                                                        */
/* ------------------------------------------------------------------------ */

enum dorac_status {
    DORAC_OK = 0,
    DORAC_E_INVALID = -1,     /* bad argument: shape mismatch, rank too large, NULL */
    DORAC_E_NOMEM = -2,       /* allocation failed or a size overflowed */
    DORAC_E_IO = -3,          /* open/read/write/rename failed */
    DORAC_E_FORMAT = -4,      /* a file's contents are malformed */
    DORAC_E_UNSUPPORTED = -5, /* well-formed but not supported (dtype, architecture) */
    DORAC_E_NUMERIC = -6,     /* NaN or Inf where a finite value is required */
    DORAC_E_BACKEND = -7      /* a device failed: no GPU, a CUDA or cuBLAS call failed */
};

/* The message of the last failure on this thread ("" if none). The pointer
** stays valid until the next failing call on this thread. */
const char *dorac_last_error(void);

/* The name of a status code, e.g. "DORAC_E_INVALID". */
const char *dorac_status_name(int status);

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */
/* ------------------------------------------------------------------------ */

/* Sets the number of CPU threads used by OpenMP kernels and by BLAS.
** n <= 0 means "all cores". Results are deterministic for a fixed n. */
void dorac_set_num_threads(int n);
int dorac_get_num_threads(void);

/* ------------------------------------------------------------------------ */
/* DoRA on raw arrays                                                       */
/* ------------------------------------------------------------------------ */
/*
** The DoRA linear layer as plain functions on host fp32 arrays, for users who
** want DoRA inside their own C model. The math (shared/DESIGN.md §1):
**
**     z = x W0^T + s (x A^T) B^T                       (N, out)
**     n = || W0 + s B A ||_row   (factored: never builds the (out,in) matrix)
**     y = (m / n) ⊙ z + bias                            (N, out)
**
** Shapes: x (N,in), W0 (out,in), bias (out) or NULL, A (r,in), B (out,r),
** m (out), y (N,out). rank = 0 is the magnitude-only variant (A, B unused).
**
** Example: one training step of a DoRA layer inside your own model.
**
**     dorac_dora_weights w = {
**         .in = 4096, .out = 4096, .rank = 16, .scale = 32.0f / 16,
**         .norm_grad = DORAC_NORM_GRAD_DETACH,
**         .W0 = W0, .bias = NULL, .A = A, .B = B, .m = m };
**     dorac_dora_init_magnitude(&w, m);          // m = ||W0 row||, once
**     if (dorac_dora_forward(&w, N, x, y) != DORAC_OK)
**         fprintf(stderr, "dorac: %s\n", dorac_last_error());
**     ... compute dy = dL/dy ...
**     memset(dA, 0, ...); memset(dB, 0, ...); memset(dm, 0, ...);
**     dorac_dora_backward(&w, N, x, y, dy, dx, dA, dB, dm);
**
** dorac_dora_backward needs the y that dorac_dora_forward produced, unchanged:
** the magnitude gradient reads z back from it, so no (N,out) copy of z is kept.
** It recomputes x A^T and the norm, which costs about r/N of a base GEMM.
** It overwrites dx (which may be NULL when not wanted) and adds into dA, dB
** and dm. These functions use the fp32 CPU backend and the thread count set
** by dorac_set_num_threads().
*/

enum dorac_norm_grad {
    DORAC_NORM_GRAD_DETACH = 0, /* the paper's §4.3 and PEFT: n treated as a constant */
    DORAC_NORM_GRAD_EXACT = 1   /* also differentiate through n */
};

typedef struct dorac_dora_weights {
    int64_t in, out;      /* W0 is (out, in) */
    int rank;             /* r >= 0; r <= min(in, out) */
    float scale;          /* s: alpha / r (LoRA) or alpha / sqrt(r) (rsLoRA) */
    int norm_grad;        /* enum dorac_norm_grad */
    const float *W0;      /* (out, in) frozen */
    const float *bias;    /* (out) frozen, or NULL */
    const float *A;       /* (r, in); NULL when rank == 0 */
    const float *B;       /* (out, r); NULL when rank == 0 */
    const float *m;       /* (out) magnitude */
} dorac_dora_weights;

/* The floor applied to n^2 before the square root, so all-zero rows of W0
** give a finite norm (PEFT issue #2049). n >= sqrt(floor) = 1e-6. */
#define DORAC_DORA_NORM_SQ_FLOOR 1e-12

/* m[o] = ||W0[o,:]||_2: the initial magnitude, so the adapted layer equals the base. */
int dorac_dora_init_magnitude(const dorac_dora_weights *w, float *m_out);

/* y (N,out) = DoRA(x (N,in)). */
int dorac_dora_forward(const dorac_dora_weights *w, int64_t N, const float *x, float *y);

/* Gradients of the layer. dy (N,out); dx (N,in) overwritten, or NULL;
** dA (r,in), dB (out,r), dm (out) accumulated with +=. */
int dorac_dora_backward(const dorac_dora_weights *w, int64_t N, const float *x,
                        const float *y, const float *dy, float *dx, float *dA,
                        float *dB, float *dm);

/* W_merged (out,in) = diag(m/n) (W0 + s B A), the weight a plain linear layer
** needs to reproduce the adapter. n_out (out), or NULL, receives n, which
** dorac_dora_unmerge needs. */
int dorac_dora_merge(const dorac_dora_weights *w, float *W_merged, float *n_out);

/* Restores W0 in place from W_merged, given the n that merge returned:
** W0 = diag(n/m) W' - s B A. Fails, naming the row, if some m[o] is 0 (the
** merged row is then 0 and W0's row cannot be recovered). w->W0 is ignored. */
int dorac_dora_unmerge(const dorac_dora_weights *w, const float *n, float *W_inout);

#ifdef __cplusplus
}
#endif
#endif /* DORAC_H */
