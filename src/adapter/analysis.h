/*
** analysis.h — the weight-decomposition analysis of the DoRA paper (§3.2,
** Fig. 2) on one linear layer, and the statistics drawn from it.
**
** For a layer whose base weight is W0 (out, in) and whose weight after some
** training is described by a dorac_linear L, per output row o (the paper's
** column of its (in, out) layout):
**
**   m_0[o] = ||W0[o,:]||
**   V      = the trained direction:  W (FROZEN, FULL: the weight itself),
**                                    W0 + sBA (LORA, DORA with r > 0),
**                                    W0 (DORA with r = 0)
**   m_t[o] = m[o] for DORA (the trained magnitude vector), ||V[o,:]|| otherwise
**   ΔM     = mean_o |m_t[o] - m_0[o]|
**   ΔD     = mean_o (1 - cos(V[o,:], W0[o,:]))
**
** This is shared/DESIGN.md §1 exactly: for LoRA and full fine-tuning V is
** the merged or trained weight and m_t its row norms; for DoRA, V is the
** direction before the row scaling m/||V||, and a positive row scale does not
** change a cosine, so only W0 + sBA matters. Biases are not part of it.
**
** Numerics. V is formed on the layer's backend (one GEMM per chunk of rows,
** so memory stays at DORAC_DECOMP_CHUNK_ELEMS elements of the backend's
** param type, whatever the layer's size) and downloaded; norms and cosines
** are then accumulated on the host in double. 1 - cos is computed as
** ||v/|v| - w/|w|||^2 / 2, which equals it and has no cancellation when the
** angle is tiny (fine-tuning moves directions by 1e-6 and less).
** A row where W0 or V is all zeros has no direction: it counts 0 towards ΔD
** and is counted in zero_rows.
*/
#ifndef DORAC_ADAPTER_ANALYSIS_H
#define DORAC_ADAPTER_ANALYSIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter/linear.h"

/* Elements of V formed on the backend at a time. */
#define DORAC_DECOMP_CHUNK_ELEMS ((int64_t)1 << 22)

typedef struct dorac_decomp {
    double delta_m;    /* ΔM = mean_o |m_t[o] - m_0[o]|, >= 0 */
    double delta_d;    /* ΔD = mean_o (1 - cos(V[o,:], W0[o,:])), in [0, 2] */
    int64_t rows;      /* out: rows averaged over */
    int64_t zero_rows; /* rows where W0 or V is all zeros (ΔD term taken as 0) */
} dorac_decomp;

/* ΔM and ΔD of layer L against the base weight W0 (out, in), a tensor on
** L's backend of any of its float types. For LoRA and DoRA layers the base
** is normally the layer's own frozen weight (&L->t.W); for a layer loaded
** from a fully fine-tuned checkpoint it is the base model's weight. Fails
** with DORAC_E_INVALID when W0's shape is not (L->out, L->in), and with the
** backend's or the allocator's status otherwise; *out is filled only on
** success. */
int dorac_decomp_linear(dorac_decomp *out, const dorac_linear *L, const dorac_tensor *W0);

/* Pearson's correlation coefficient of (x[i], y[i]), i < n, computed in two
** passes (means first). NAN when n < 2 or either variable is constant. */
double dorac_stats_pearson(const double *x, const double *y, size_t n);

/* The least-squares line y = intercept + slope * x. false (outputs
** untouched) when n < 2 or x is constant. */
bool dorac_stats_fit_line(const double *x, const double *y, size_t n, double *intercept, double *slope);

#endif
