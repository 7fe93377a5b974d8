/*
** dora.c — the DoRA-specific math of a linear layer (shared/DESIGN.md §1):
** the factored row norm, the magnitude gradient, the exact (non-detached)
** norm gradient, and merge/unmerge.
**
** The factored norm. With V = W0 + s B A,
**     ||V[o,:]||^2 = c[o] + 2s (B ⊙ P)[o,:]·1 + s^2 B[o,:] G B[o,:]^T
** where c = ||W0 row||^2 (once, at init), P = W0 A^T (out,r), G = A A^T (r,r).
** Cost per step: 2·out·in·r FLOPs for P and O(out·r + r^2) memory; the
** (out,in) matrix V is never formed. n^2 is clamped at
** DORAC_DORA_NORM_SQ_FLOOR before the square root (all-zero rows, and
** rounding that could make n^2 slightly negative).
**
** The exact norm gradient. With q = -zsum ⊙ m / n^2 = dL/dn and
** w = q / n (dora_magnitude_backward computes w), dL/dV = diag(w) V, so
**     dB += s diag(w) V A^T = s (w ⊙ P) + s^2 (w ⊙ B) G
**     dA += s (w ⊙ B)^T V   = s (w ⊙ B)^T W0 + s^2 ((w ⊙ B)^T B) A
** The only sizeable term is the (r,out)x(out,in) product, the same cost as P.
*/
#include <stdlib.h>

#include "adapter/linear.h"
#include "core/error.h"

int dorac_dora_update_norms(dorac_linear *const *Ls, size_t n) {
    if (n == 0) return DORAC_OK;
    dorac_backend *be = Ls[0]->be;
    dorac_dora_norm_item *items = malloc(n * sizeof *items);
    const dorac_tensor **P = malloc(3 * n * sizeof *P), **W = P ? P + n : NULL, **A = P ? P + 2 * n : NULL;
    int rc = items && P ? DORAC_OK : dorac_error(DORAC_E_NOMEM, "dora: out of memory for %zu norm updates", n);
    dorac_tensor none = dorac_tensor_none(be->param_type);
    size_t np = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        dorac_linear *L = Ls[i];
        const dorac_linear_tensors *t = &L->t;
        bool ranked = L->cfg.rank > 0;
        if (L->be != be) rc = dorac_error(DORAC_E_INVALID, "dora: norm updates on two backends");
        /* P = W0 A^T, from A's copy in W's type where there is one (the
        ** product would convert A to it otherwise) */
        if (ranked) P[np] = &L->P, W[np] = &t->W, A[np++] = t->A_w.data ? &t->A_w : &t->A;
        items[i] = (dorac_dora_norm_item){&L->n, &L->g, &L->c, ranked ? &t->A : &none, ranked ? &t->B : &none,
                                          ranked ? &L->P : &none, ranked ? &L->G : &none, &t->m, L->scale};
    }
    /* every layer's P in a few batched products, then G and the norms */
    if (!rc) rc = dorac_gemm_many(be, P, W, false, A, true, np, 1.0, 0.0);
    if (!rc) rc = dorac_dora_norm_many(be, items, n, DORAC_DORA_NORM_SQ_FLOOR);
    free(items);
    free(P);
    return rc;
}

/* the copies first: P reads A_w, which a change of A since the last
** forward (a load, a merge right after one) has left stale */
int dorac_dora_update_norm(dorac_linear *L) { return dorac_linear_prepare(&L, 1); }

/* The exact mode's extra terms, given w (1,out). */
static int exact_norm_backward(dorac_linear *L, const dorac_tensor *w) {
    dorac_backend *be = L->be;
    const dorac_linear_tensors *t = &L->t;
    int64_t r = L->cfg.rank, out = L->out;
    double s = L->scale;
    dorac_tensor wB, K;
    DORAC_TRY(dorac_tensor_alloc(be, &wB, be->param_type, out, r, "exact wB"));
    int rc = dorac_tensor_alloc(be, &K, be->param_type, r, r, "exact K");
    if (!rc) rc = be->scale_rows(be, &wB, &t->B, w, 1.0, 0.0); /* wB = w ⊙ B */
    if (!rc && t->dB.data) {
        rc = be->scale_rows(be, &t->dB, &L->P, w, s, 1.0);           /* dB += s (w ⊙ P) */
        if (!rc) rc = be->gemm(be, &t->dB, &wB, false, &L->G, false, s * s, 1.0); /* += s^2 wB G */
    }
    if (!rc && t->dA.data) {
        rc = be->gemm(be, &t->dA, &wB, true, &t->W, false, s, 1.0);   /* dA += s wB^T W0 */
        if (!rc) rc = be->gemm(be, &K, &wB, true, &t->B, false, 1.0, 0.0); /* K = wB^T B */
        if (!rc) rc = be->gemm(be, &t->dA, &K, false, &t->A, false, s * s, 1.0); /* += s^2 K A */
    }
    dorac_tensor_free(be, &K);
    dorac_tensor_free(be, &wB);
    return rc;
}

int dorac_dora_backward_params(dorac_linear *L, const dorac_tensor *zsum) {
    dorac_backend *be = L->be;
    bool exact = L->cfg.norm_grad == DORAC_NORM_GRAD_EXACT && L->cfg.rank > 0;
    dorac_tensor dm = L->t.dm, w = dorac_tensor_none(be->param_type);
    int rc = DORAC_OK;
    if (!dm.data) {
        /* no magnitude gradient wanted; still need a target for the op */
        rc = dorac_tensor_alloc(be, &dm, be->param_type, 1, L->out, "dm scratch");
        if (!rc) rc = be->fill(be, &dm, 0.0);
    }
    if (!rc && exact) rc = dorac_tensor_alloc(be, &w, be->param_type, 1, L->out, "exact w");
    if (!rc) rc = be->dora_magnitude_backward(be, &dm, &w, zsum, &L->t.m, &L->n);
    if (!rc && exact) rc = exact_norm_backward(L, &w);
    dorac_tensor_free(be, &w);
    if (!L->t.dm.data) dorac_tensor_free(be, &dm);
    return rc;
}

int dorac_linear_merge(dorac_linear *L, const dorac_tensor *W_out) {
    dorac_backend *be = L->be;
    const dorac_linear_tensors *t = &L->t;
    if (W_out->rows != L->out || W_out->cols != L->in)
        return dorac_error(DORAC_E_INVALID, "merge: output has shape (%lld, %lld), expected (%lld, %lld)",
                           (long long)W_out->rows, (long long)W_out->cols, (long long)L->out,
                           (long long)L->in);
    DORAC_TRY(be->copy(be, W_out, &t->W));
    bool adapter = dorac_linear_has_adapter(L);
    if (L->cfg.method == DORAC_METHOD_DORA) DORAC_TRY(dorac_dora_update_norm(L));
    if (adapter) DORAC_TRY(be->gemm(be, W_out, &t->B, false, &t->A, false, L->scale, 1.0));
    if (L->cfg.method == DORAC_METHOD_DORA) DORAC_TRY(be->scale_rows(be, W_out, W_out, &L->g, 1.0, 0.0));
    return DORAC_OK;
}

int dorac_linear_unmerge(dorac_linear *L, const dorac_tensor *W_inout, const dorac_tensor *n) {
    dorac_backend *be = L->be;
    const dorac_linear_tensors *t = &L->t;
    int64_t out = L->out;
    if (W_inout->rows != out || W_inout->cols != L->in)
        return dorac_error(DORAC_E_INVALID, "unmerge: weight has shape (%lld, %lld), expected (%lld, %lld)",
                           (long long)W_inout->rows, (long long)W_inout->cols, (long long)out,
                           (long long)L->in);
    if (L->cfg.method == DORAC_METHOD_DORA) {
        /* W0 + sBA = diag(n/m) W'. n/m is an (out) vector: computed on the
        ** host, which is fine for an operation run once per layer. */
        if (!n || n->rows != 1 || n->cols != out)
            return dorac_error(DORAC_E_INVALID, "unmerge: the norm vector must be (1, %lld)", (long long)out);
        double *mv = malloc((size_t)out * 2 * sizeof *mv);
        if (!mv) return dorac_error(DORAC_E_NOMEM, "unmerge: out of memory");
        double *nv = mv + out;
        int rc = be->download(be, mv, DORAC_DTYPE_F64, &t->m);
        if (!rc) rc = be->download(be, nv, DORAC_DTYPE_F64, n);
        for (int64_t o = 0; !rc && o < out; o++) {
            if (mv[o] == 0.0)
                rc = dorac_error(DORAC_E_INVALID,
                                 "unmerge: magnitude is 0 in row %lld, so W0's row cannot be recovered",
                                 (long long)o);
            else
                nv[o] /= mv[o];
        }
        dorac_tensor ratio;
        if (!rc) rc = dorac_tensor_alloc(be, &ratio, be->param_type, 1, out, "unmerge ratio");
        if (!rc) {
            rc = be->upload(be, &ratio, nv, DORAC_DTYPE_F64);
            if (!rc) rc = be->scale_rows(be, W_inout, W_inout, &ratio, 1.0, 0.0);
            dorac_tensor_free(be, &ratio);
        }
        free(mv);
        DORAC_TRY(rc);
    }
    bool adapter = dorac_linear_has_adapter(L);
    if (adapter) DORAC_TRY(be->gemm(be, W_inout, &t->B, false, &t->A, false, -L->scale, 1.0));
    return DORAC_OK;
}
