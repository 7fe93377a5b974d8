/*
** linear.c — forward and backward of one linear layer, frozen, fully
** trained, LoRA or DoRA (see linear.h). DoRA's norm and magnitude math is in
** dora.c; this file sequences the GEMMs around it.
**
** Sizes: N rows of the batch (B*T), in and out the layer's widths, r the
** adapter rank, s its scale.
*/
#include "adapter/linear.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/rng.h"

const char *dorac_method_name(dorac_method m) {
    switch (m) {
    case DORAC_METHOD_FROZEN: return "frozen";
    case DORAC_METHOD_FULL: return "full";
    case DORAC_METHOD_LORA: return "lora";
    case DORAC_METHOD_DORA: return "dora";
    default: return "?";
    }
}

double dorac_adapter_scale(const dorac_adapter_config *cfg) {
    if (cfg->rank <= 0) return 1.0;
    return cfg->use_rslora ? cfg->alpha / sqrt((double)cfg->rank) : cfg->alpha / cfg->rank;
}

int dorac_adapter_config_check(const dorac_adapter_config *cfg, int64_t in, int64_t out,
                               const char *name) {
    if (in <= 0 || out <= 0)
        return dorac_error(DORAC_E_INVALID, "%s: layer shape (out=%lld, in=%lld) must be positive",
                           name, (long long)out, (long long)in);
    switch (cfg->method) {
    case DORAC_METHOD_FROZEN:
    case DORAC_METHOD_FULL: return DORAC_OK;
    case DORAC_METHOD_LORA:
    case DORAC_METHOD_DORA: break;
    default: return dorac_error(DORAC_E_INVALID, "%s: unknown method %d", name, (int)cfg->method);
    }
    int64_t min_dim = in < out ? in : out;
    int min_rank = cfg->method == DORAC_METHOD_DORA ? 0 : 1;
    if (cfg->rank < min_rank || cfg->rank > min_dim)
        return dorac_error(DORAC_E_INVALID, "%s: rank %d must be in [%d, min(in=%lld, out=%lld)]",
                           name, cfg->rank, min_rank, (long long)in, (long long)out);
    if (!isfinite(cfg->alpha))
        return dorac_error(DORAC_E_INVALID, "%s: alpha %g is not finite", name, cfg->alpha);
    if (!(cfg->dropout >= 0.0 && cfg->dropout < 1.0))
        return dorac_error(DORAC_E_INVALID, "%s: dropout %g must be in [0, 1)", name, cfg->dropout);
    if (cfg->norm_grad != DORAC_NORM_GRAD_DETACH && cfg->norm_grad != DORAC_NORM_GRAD_EXACT)
        return dorac_error(DORAC_E_INVALID, "%s: norm_grad %d must be detach (0) or exact (1)", name,
                           cfg->norm_grad);
    return DORAC_OK;
}

/* A tensor the layer needs must be present with this shape and type. */
static int expect(const dorac_tensor *t, int64_t rows, int64_t cols, dorac_dtype type,
                  const char *name, const char *what) {
    if (!t->data)
        return dorac_error(DORAC_E_INVALID, "%s: %s is missing, expected (%lld, %lld)", name, what,
                           (long long)rows, (long long)cols);
    if (t->rows != rows || t->cols != cols)
        return dorac_error(DORAC_E_INVALID, "%s: %s has shape (%lld, %lld), expected (%lld, %lld)",
                           name, what, (long long)t->rows, (long long)t->cols, (long long)rows,
                           (long long)cols);
    if (t->type != type)
        return dorac_error(DORAC_E_INVALID, "%s: %s has dtype %s, expected %s", name, what,
                           dorac_dtype_name(t->type), dorac_dtype_name(type));
    return DORAC_OK;
}

static int expect_optional(const dorac_tensor *t, int64_t rows, int64_t cols, dorac_dtype type,
                           const char *name, const char *what) {
    return t->data ? expect(t, rows, cols, type, name, what) : DORAC_OK;
}

static int check_tensors(const dorac_linear *L, const char *name) {
    const dorac_linear_tensors *t = &L->t;
    dorac_backend *be = L->be;
    int64_t in = L->in, out = L->out, r = L->cfg.rank;
    dorac_method method = L->cfg.method;
    dorac_dtype wtype = method == DORAC_METHOD_FULL ? be->param_type : be->weight_type;
    DORAC_TRY(expect(&t->W, out, in, wtype, name, "weight"));
    DORAC_TRY(expect_optional(&t->bias, 1, out, wtype, name, "bias"));
    if (method == DORAC_METHOD_FULL) {
        DORAC_TRY(expect_optional(&t->dW, out, in, be->param_type, name, "weight grad"));
        if (t->bias.data) DORAC_TRY(expect_optional(&t->dbias, 1, out, be->param_type, name, "bias grad"));
    }
    if (dorac_linear_has_adapter(L)) {
        DORAC_TRY(expect(&t->A, r, in, be->param_type, name, "lora_A"));
        DORAC_TRY(expect(&t->B, out, r, be->param_type, name, "lora_B"));
        DORAC_TRY(expect_optional(&t->dA, r, in, be->param_type, name, "lora_A grad"));
        DORAC_TRY(expect_optional(&t->dB, out, r, be->param_type, name, "lora_B grad"));
        DORAC_TRY(expect_optional(&t->A_w, r, in, t->W.type, name, "lora_A copy"));
        DORAC_TRY(expect_optional(&t->B_w, out, r, t->W.type, name, "lora_B copy"));
    }
    if (method == DORAC_METHOD_DORA) {
        DORAC_TRY(expect(&t->m, 1, out, be->param_type, name, "magnitude"));
        DORAC_TRY(expect_optional(&t->dm, 1, out, be->param_type, name, "magnitude grad"));
    }
    return DORAC_OK;
}

void dorac_linear_free(dorac_linear *L) {
    if (!L->be) return;
    dorac_tensor_free(L->be, &L->c);
    dorac_tensor_free(L->be, &L->n);
    dorac_tensor_free(L->be, &L->g);
    dorac_tensor_free(L->be, &L->P);
    dorac_tensor_free(L->be, &L->G);
    dorac_tensor_free(L->be, &L->zsum);
}

int dorac_linear_init(dorac_linear *L, dorac_backend *be, const dorac_adapter_config *cfg,
                      int64_t in, int64_t out, const dorac_linear_tensors *t,
                      const char *name) {
    *L = (dorac_linear){0};
    DORAC_TRY(dorac_adapter_config_check(cfg, in, out, name));
    L->be = be;
    L->cfg = *cfg;
    L->in = in;
    L->out = out;
    L->scale = dorac_adapter_scale(cfg);
    L->t = *t;
    dorac_dtype pt = be->param_type;
    L->c = L->n = L->g = dorac_tensor_none(pt);
    L->P = L->G = L->zsum = dorac_tensor_none(pt);
    DORAC_TRY(check_tensors(L, name));
    if (cfg->method != DORAC_METHOD_DORA) return DORAC_OK;

    int64_t r = cfg->rank;
    int rc = dorac_tensor_alloc(be, &L->c, pt, 1, out, "dora c");
    if (!rc) rc = dorac_tensor_alloc(be, &L->n, pt, 1, out, "dora n");
    if (!rc) rc = dorac_tensor_alloc(be, &L->g, pt, 1, out, "dora g");
    if (!rc) rc = dorac_tensor_alloc(be, &L->zsum, pt, 1, out, "dora zsum");
    if (!rc && r > 0) rc = dorac_tensor_alloc(be, &L->P, pt, out, r, "dora P");
    if (!rc && r > 0) rc = dorac_tensor_alloc(be, &L->G, pt, r, r, "dora G");
    if (!rc) rc = be->row_sumsq(be, &L->c, &L->t.W);
    if (rc) {
        dorac_linear_free(L);
        return dorac_error_prefix(rc, "%s", name);
    }
    return DORAC_OK;
}

int dorac_dora_init_magnitude_tensor(dorac_backend *be, const dorac_tensor *m,
                                     const dorac_tensor *c) {
    dorac_tensor none = dorac_tensor_none(be->param_type);
    return be->dora_norm(be, m, &none, c, &none, &none, &none, &none, 1.0, 0.0);
}

int dorac_linear_init_adapter(dorac_linear *L, uint64_t seed, uint64_t stream) {
    dorac_backend *be = L->be;
    if (dorac_linear_has_adapter(L)) {
        int64_t r = L->cfg.rank, in = L->in;
        size_t count = (size_t)(r * in);
        double *host = malloc(count * sizeof *host);
        if (!host) return dorac_error(DORAC_E_NOMEM, "init_adapter: out of memory for A (%lld x %lld)",
                                      (long long)r, (long long)in);
        double bound = 1.0 / sqrt((double)in);
        for (size_t i = 0; i < count; i++)
            host[i] = (2.0 * dorac_rng_uniform_f64(seed, stream, i) - 1.0) * bound;
        int rc = be->upload(be, &L->t.A, host, DORAC_DTYPE_F64);
        free(host);
        DORAC_TRY(rc);
        DORAC_TRY(be->fill(be, &L->t.B, 0.0));
    }
    if (L->cfg.method == DORAC_METHOD_DORA) {
        /* m = ||W0 row|| = sqrt(c) exactly (floor 0): an all-zero row starts at
        ** m = 0, so the adapted layer equals the base there too. */
        DORAC_TRY(dorac_dora_init_magnitude_tensor(be, &L->t.m, &L->c));
    }
    return DORAC_OK;
}

/* ---------------------------------------------------------------------- */
/* forward                                                                */
/* ---------------------------------------------------------------------- */

/* The dropout probability in effect: the config's in training, 0 in eval mode. */
static double active_dropout(const dorac_linear *L) { return L->eval_mode ? 0.0 : L->cfg.dropout; }

int dorac_linear_refresh_copies(dorac_linear *const *Ls, size_t n) {
    if (n == 0) return DORAC_OK;
    dorac_backend *be = Ls[0]->be;
    const dorac_tensor **dst = malloc(2 * n * sizeof *dst), **src = malloc(2 * n * sizeof *src);
    size_t k = 0;
    int rc = dst && src ? DORAC_OK : dorac_error(DORAC_E_NOMEM, "linear: out of memory for %zu copies", n);
    for (size_t i = 0; i < n && !rc; i++) {
        const dorac_linear_tensors *t = &Ls[i]->t;
        if (Ls[i]->be != be) rc = dorac_error(DORAC_E_INVALID, "linear: copies refreshed on two backends");
        if (rc || !dorac_linear_has_adapter(Ls[i])) continue;
        if (t->A_w.data) dst[k] = &t->A_w, src[k++] = &t->A;
        if (t->B_w.data) dst[k] = &t->B_w, src[k++] = &t->B;
    }
    if (!rc) rc = dorac_copy_many(be, dst, src, k);
    free(dst);
    free(src);
    return rc;
}

int dorac_linear_prepare(dorac_linear *const *Ls, size_t n) {
    DORAC_TRY(dorac_linear_refresh_copies(Ls, n));
    dorac_linear **dora = malloc((n ? n : 1) * sizeof *dora);
    if (!dora) return dorac_error(DORAC_E_NOMEM, "linear: out of memory for %zu layers", n);
    size_t nd = 0;
    for (size_t i = 0; i < n; i++)
        if (Ls[i]->cfg.method == DORAC_METHOD_DORA) dora[nd++] = Ls[i];
    int rc = dorac_dora_update_norms(dora, nd);
    free(dora);
    return rc;
}

/* A as the products in W's type read it: the copy where there is one. */
static const dorac_tensor *A_for_products(const dorac_linear *L) {
    return L->t.A_w.data ? &L->t.A_w : &L->t.A;
}

/* u (N,r) = drop(x) A^T, in chunks of rows so the dropout scratch stays
** (chunk, in). */
static int adapter_input_forward(dorac_linear *L, const dorac_tensor *u, const dorac_tensor *x,
                                 uint64_t dropout_seed) {
    dorac_backend *be = L->be;
    const dorac_tensor *A = A_for_products(L);
    if (active_dropout(L) == 0.0) return be->gemm(be, u, x, false, A, true, 1.0, 0.0);
    int64_t N = x->rows, chunk = DORAC_LINEAR_CHUNK_ROWS;
    dorac_tensor xd;
    DORAC_TRY(dorac_tensor_alloc(be, &xd, be->act_type, chunk < N ? chunk : N, L->in, "dropout scratch"));
    int rc = DORAC_OK;
    for (int64_t i0 = 0; i0 < N && !rc; i0 += chunk) {
        int64_t rows = N - i0 < chunk ? N - i0 : chunk;
        dorac_tensor x_c = dorac_tensor_rows(x, i0, rows), u_c = dorac_tensor_rows(u, i0, rows);
        dorac_tensor xd_c = dorac_tensor_rows(&xd, 0, rows);
        rc = be->dropout(be, &xd_c, &x_c, active_dropout(L), dropout_seed, L->dropout_stream, i0);
        if (!rc) rc = be->gemm(be, &u_c, &xd_c, false, A, true, 1.0, 0.0);
    }
    dorac_tensor_free(be, &xd);
    return rc;
}

static int check_activation(const dorac_linear *L, const dorac_tensor *t, int64_t N, int64_t cols,
                            const char *what) {
    if (t->rows != N || t->cols != cols)
        return dorac_error(DORAC_E_INVALID, "linear: %s has shape (%lld, %lld), expected (%lld, %lld)",
                           what, (long long)t->rows, (long long)t->cols, (long long)N, (long long)cols);
    if (t->type != L->be->act_type)
        return dorac_error(DORAC_E_INVALID, "linear: %s has dtype %s, expected %s", what,
                           dorac_dtype_name(t->type), dorac_dtype_name(L->be->act_type));
    return DORAC_OK;
}

int dorac_linear_forward(dorac_linear *L, const dorac_tensor *y, const dorac_tensor *u,
                         const dorac_tensor *x, uint64_t dropout_seed) {
    return dorac_linear_forward_ex(L, y, u, x, dropout_seed, true);
}

int dorac_linear_forward_ex(dorac_linear *L, const dorac_tensor *y, const dorac_tensor *u,
                            const dorac_tensor *x, uint64_t dropout_seed, bool update_norm) {
    dorac_backend *be = L->be;
    int64_t N = x->rows;
    DORAC_TRY(check_activation(L, x, N, L->in, "x"));
    DORAC_TRY(check_activation(L, y, N, L->out, "y"));

    /* g = m / n from the factored norm: needs only the parameters */
    bool dora = L->cfg.method == DORAC_METHOD_DORA;
    if (update_norm) DORAC_TRY(dorac_linear_prepare(&L, 1));
    const dorac_tensor *g = dora ? &L->g : NULL;

    /* h = x W0^T: the frozen base GEMM, written straight into y */
    DORAC_TRY(be->gemm(be, y, x, false, &L->t.W, true, 1.0, 0.0));

    if (dorac_linear_has_adapter(L)) {
        /* u = drop(x) A^T; y = g ⊙ (h + s u B^T) + b in one pass where the
        ** backend fuses it (dorac_lora_up_scale) */
        dorac_tensor u_scratch = dorac_tensor_none(be->act_type);
        const dorac_tensor *u_use = u;
        if (!u || !u->data) {
            DORAC_TRY(dorac_tensor_alloc(be, &u_scratch, be->act_type, N, L->cfg.rank, "u scratch"));
            u_use = &u_scratch;
        }
        int rc = check_activation(L, u_use, N, L->cfg.rank, "u");
        if (!rc) rc = adapter_input_forward(L, u_use, x, dropout_seed);
        if (!rc) rc = dorac_lora_up_scale(be, y, u_use, &L->t.B, L->scale, g, &L->t.bias);
        dorac_tensor_free(be, &u_scratch);
        return rc;
    }
    /* y = g ⊙ h + b (DoRA with r = 0), or h + b */
    return be->scale_cols_add_bias(be, y, g, &L->t.bias);
}

/* ---------------------------------------------------------------------- */
/* backward                                                               */
/* ---------------------------------------------------------------------- */

/* Scratch for one backward call, sized by chunk rows. */
typedef struct backward_scratch {
    dorac_tensor dz;     /* (chunk, out) DoRA: g ⊙ dy; ld leaves r spare columns with an adapter */
    dorac_tensor du;     /* (chunk, r) s dz B, unless it goes into dz's spare columns */
    dorac_tensor xd;     /* (chunk, in) dropout: drop(x), then drop(du A) */
} backward_scratch;

static void scratch_free(dorac_backend *be, backward_scratch *s) {
    dorac_tensor_free(be, &s->dz);
    dorac_tensor_free(be, &s->du);
    dorac_tensor_free(be, &s->xd);
}

static int scratch_alloc(dorac_linear *L, backward_scratch *s, int64_t chunk, bool dz_given, bool wide) {
    dorac_backend *be = L->be;
    bool adapter = dorac_linear_has_adapter(L);
    s->dz = s->du = s->xd = dorac_tensor_none(be->act_type);
    int rc = DORAC_OK;
    if (L->cfg.method == DORAC_METHOD_DORA && !dz_given) {
        /* spare columns for s dz B, rounded up to keep rows 16-byte aligned */
        int64_t spare = adapter ? (L->cfg.rank + 7) / 8 * 8 : 0;
        rc = dorac_tensor_alloc(be, &s->dz, be->act_type, chunk, L->out + spare, "dz scratch");
        if (!rc) s->dz.cols = L->out;
    }
    if (!rc && adapter && !wide) rc = dorac_tensor_alloc(be, &s->du, be->act_type, chunk, L->cfg.rank, "du scratch");
    if (!rc && adapter && active_dropout(L) > 0.0)
        rc = dorac_tensor_alloc(be, &s->xd, be->act_type, chunk, L->in, "dropout scratch");
    if (rc) scratch_free(be, s);
    return rc;
}

/* True when A_w's rows follow W's in one allocation: [W0 ; A] is one
** (out + r, in) operand. */
static bool a_follows_w(const dorac_linear *L) {
    const dorac_tensor *W = &L->t.W, *Aw = &L->t.A_w;
    size_t es = dorac_dtype_size(W->type);
    return Aw->data && Aw->type == W->type && Aw->ld == W->ld &&
           (char *)Aw->data == (char *)W->data + (size_t)W->rows * (size_t)W->ld * es;
}

/* The adapter's part of the backward for rows [i0, i0+rows):
**   dB += s dz^T u,  du = s dz B,  dA += du^T drop(x),  dx += drop(du A)
** wide (no dropout; dz has r spare columns, A_w follows W): du goes into
** dz's spare columns and dx = [dz | du] [W0 ; A] is the base GEMM too. */
static int adapter_backward_chunk(dorac_linear *L, backward_scratch *s, const dorac_tensor *dz_c,
                                  const dorac_tensor *x_c, const dorac_tensor *u_c,
                                  const dorac_tensor *dx_c, bool accumulate_dx, bool wide, int64_t i0,
                                  uint64_t dropout_seed) {
    dorac_backend *be = L->be;
    const dorac_linear_tensors *t = &L->t;
    int64_t rows = dz_c->rows, out = L->out, r = L->cfg.rank;
    const dorac_tensor *B = t->B_w.data ? &t->B_w : &t->B;
    dorac_tensor du_c = wide ? dorac_tensor_view((char *)dz_c->data + (size_t)out * dorac_dtype_size(dz_c->type),
                                                 dz_c->type, rows, r)
                             : dorac_tensor_rows(&s->du, 0, rows);
    if (wide) du_c.ld = dz_c->ld;
    if (t->dB.data) DORAC_TRY(be->gemm(be, &t->dB, dz_c, true, u_c, false, L->scale, 1.0));
    DORAC_TRY(be->gemm(be, &du_c, dz_c, false, B, false, L->scale, 0.0));
    if (wide) {
        if (t->dA.data) DORAC_TRY(be->gemm(be, &t->dA, &du_c, true, x_c, false, 1.0, 1.0));
        if (!dx_c->data) return DORAC_OK;
        dorac_tensor dzu = *dz_c, Wa = t->W; /* [dz | du] (rows, out + r), [W0 ; A] (out + r, in) */
        dzu.cols = out + r;
        Wa.rows = out + r;
        return be->gemm(be, dx_c, &dzu, false, &Wa, false, 1.0, accumulate_dx ? 1.0 : 0.0);
    }
    if (active_dropout(L) == 0.0) {
        if (t->dA.data) DORAC_TRY(be->gemm(be, &t->dA, &du_c, true, x_c, false, 1.0, 1.0));
        if (dx_c->data) DORAC_TRY(be->gemm(be, dx_c, &du_c, false, &t->A, false, 1.0, 1.0));
        return DORAC_OK;
    }
    dorac_tensor xd_c = dorac_tensor_rows(&s->xd, 0, rows);
    if (t->dA.data) {
        DORAC_TRY(be->dropout(be, &xd_c, x_c, active_dropout(L), dropout_seed, L->dropout_stream, i0));
        DORAC_TRY(be->gemm(be, &t->dA, &du_c, true, &xd_c, false, 1.0, 1.0));
    }
    if (dx_c->data) {
        DORAC_TRY(be->gemm(be, &xd_c, &du_c, false, &t->A, false, 1.0, 0.0));
        DORAC_TRY(be->dropout(be, &xd_c, &xd_c, active_dropout(L), dropout_seed, L->dropout_stream, i0));
        DORAC_TRY(be->axpby(be, dx_c, &xd_c, 1.0, 1.0));
    }
    return DORAC_OK;
}

static int backward_chunks(dorac_linear *L, backward_scratch *s, int64_t chunk,
                           const dorac_tensor *dx, bool accumulate_dx, const dorac_tensor *dy,
                           const dorac_tensor *dz_given, const dorac_tensor *x,
                           const dorac_tensor *y, const dorac_tensor *u, bool wide, uint64_t dropout_seed) {
    dorac_backend *be = L->be;
    int64_t N = dy->rows;
    /* y == NULL: dy already is dz, and zsum is summed (dorac_linear_backward_dz) */
    bool dora = L->cfg.method == DORAC_METHOD_DORA && y;
    for (int64_t i0 = 0; i0 < N; i0 += chunk) {
        int64_t rows = N - i0 < chunk ? N - i0 : chunk;
        dorac_tensor dy_c = dorac_tensor_rows(dy, i0, rows);
        dorac_tensor dx_c = dx->data ? dorac_tensor_rows(dx, i0, rows) : *dx;
        dorac_tensor dz_c = dy_c;
        if (dora) {
            /* dz = g ⊙ dy and zsum += sum dy ⊙ z, one pass over (rows, out) */
            dorac_tensor y_c = dorac_tensor_rows(y, i0, rows);
            dz_c = dz_given ? dorac_tensor_rows(dz_given, i0, rows) : dorac_tensor_rows(&s->dz, 0, rows);
            DORAC_TRY(be->dora_scale_backward(be, &dz_c, &L->zsum, &dy_c, &y_c, &L->g, &L->t.bias));
        }
        /* dx = dz W0 (wide: in the adapter's part, with du A) */
        if (dx->data && !wide)
            DORAC_TRY(be->gemm(be, &dx_c, &dz_c, false, &L->t.W, false, 1.0, accumulate_dx ? 1.0 : 0.0));
        if (dorac_linear_has_adapter(L)) {
            dorac_tensor x_c = dorac_tensor_rows(x, i0, rows), u_c = dorac_tensor_rows(u, i0, rows);
            DORAC_TRY(adapter_backward_chunk(L, s, &dz_c, &x_c, &u_c, &dx_c, accumulate_dx, wide, i0,
                                             dropout_seed));
        }
    }
    return DORAC_OK;
}

/* Both backwards. dz_ready: dy already holds dz = g ⊙ dy and L->zsum its
** sum (dorac_linear_backward_dz), so DoRA's element-wise pass is skipped.
** dz_spare: see dorac_linear_backward_ex. */
static int linear_backward(dorac_linear *L, const dorac_tensor *dx, bool accumulate_dx,
                           const dorac_tensor *dy, const dorac_tensor *dz_scratch, const dorac_tensor *x,
                           const dorac_tensor *y, const dorac_tensor *u, uint64_t dropout_seed, bool dz_ready,
                           bool dz_spare) {
    dorac_backend *be = L->be;
    int64_t N = dy->rows;
    dorac_tensor none = dorac_tensor_none(be->act_type);
    if (!dx) dx = &none;
    bool dora = L->cfg.method == DORAC_METHOD_DORA;
    bool dora_pass = dora && !dz_ready; /* dz and zsum still to form from dy and y */
    bool adapter = dorac_linear_has_adapter(L);
    const dorac_tensor *dz_given = dora_pass && dz_scratch && dz_scratch->data ? dz_scratch : NULL;
    DORAC_TRY(check_activation(L, dy, N, L->out, dz_ready ? "dz" : "dy"));
    if (dx->data) DORAC_TRY(check_activation(L, dx, N, L->in, "dx"));
    if (adapter || L->cfg.method == DORAC_METHOD_FULL) DORAC_TRY(check_activation(L, x, N, L->in, "x"));
    if (adapter) DORAC_TRY(check_activation(L, u, N, L->cfg.rank, "u"));
    if (dora_pass) DORAC_TRY(check_activation(L, y, N, L->out, "y"));
    if (dz_given) DORAC_TRY(check_activation(L, dz_given, N, L->out, "dz scratch"));

    /* One pass over all N rows unless DoRA has nowhere to put dz, or dropout
    ** needs its masked-input scratch: then chunks of rows keep both scratches
    ** independent of N. */
    bool own_dz = dora_pass && !dz_given;
    bool chunked = own_dz || (adapter && active_dropout(L) > 0.0);
    int64_t chunk = chunked && N > DORAC_LINEAR_CHUNK_ROWS ? DORAC_LINEAR_CHUNK_ROWS : (N > 0 ? N : 1);

    /* the adapter's dx in the base GEMM: dz's spare columns (the internal
    ** scratch always has them), A_w after W, no dropout */
    const dorac_tensor *dz_t = dz_given ? dz_given : dy;
    if (dz_spare && adapter && !own_dz && dz_t->ld - L->out < L->cfg.rank)
        return dorac_error(DORAC_E_INVALID, "linear: %s has ld %lld, leaving fewer than r = %lld spare columns",
                           dz_given ? "dz scratch" : dz_ready ? "dz" : "dy", (long long)dz_t->ld,
                           (long long)L->cfg.rank);
    bool wide = adapter && active_dropout(L) == 0.0 && a_follows_w(L) && (own_dz || dz_spare);

    backward_scratch s;
    DORAC_TRY(scratch_alloc(L, &s, chunk, !dora_pass || dz_given != NULL, wide));
    int rc = dora_pass && !L->zsum_zeroed ? be->fill(be, &L->zsum, 0.0) : DORAC_OK;
    if (dora_pass) L->zsum_zeroed = false;
    if (!rc)
        rc = backward_chunks(L, &s, chunk, dx, accumulate_dx, dy, dz_given, x, dora_pass ? y : NULL, u, wide,
                             dropout_seed);
    if (!rc && dora) rc = dorac_dora_backward_params(L, &L->zsum);
    if (!rc && L->cfg.method == DORAC_METHOD_FULL) {
        /* dW += dy^T x, dbias += sum_N dy */
        if (L->t.dW.data) rc = be->gemm(be, &L->t.dW, dy, true, x, false, 1.0, 1.0);
        if (!rc && L->t.dbias.data) rc = be->col_sum(be, &L->t.dbias, dy, 1.0, 1.0);
    }
    scratch_free(be, &s);
    return rc;
}

int dorac_linear_backward(dorac_linear *L, const dorac_tensor *dx, bool accumulate_dx,
                          const dorac_tensor *dy, const dorac_tensor *dz_scratch,
                          const dorac_tensor *x, const dorac_tensor *y, const dorac_tensor *u,
                          uint64_t dropout_seed) {
    return linear_backward(L, dx, accumulate_dx, dy, dz_scratch, x, y, u, dropout_seed, false, false);
}

int dorac_linear_backward_ex(dorac_linear *L, const dorac_tensor *dx, bool accumulate_dx,
                             const dorac_tensor *dy, const dorac_tensor *dz_scratch,
                             const dorac_tensor *x, const dorac_tensor *y, const dorac_tensor *u,
                             uint64_t dropout_seed, bool dz_spare) {
    return linear_backward(L, dx, accumulate_dx, dy, dz_scratch, x, y, u, dropout_seed, false, dz_spare);
}

const dorac_dora_epilogue *dorac_linear_dora_epilogue(dorac_linear *L, dorac_dora_epilogue *e,
                                                      int *rc) {
    *rc = DORAC_OK;
    if (!L || L->cfg.method != DORAC_METHOD_DORA) return NULL;
    *rc = L->zsum_zeroed ? DORAC_OK : L->be->fill(L->be, &L->zsum, 0.0);
    L->zsum_zeroed = false;
    *e = (dorac_dora_epilogue){&L->zsum, &L->g, &L->t.bias};
    return *rc ? NULL : e;
}

int dorac_linear_backward_dz_ex(dorac_linear *L, const dorac_tensor *dx, bool accumulate_dx,
                                const dorac_tensor *dz, const dorac_tensor *x, const dorac_tensor *u,
                                uint64_t dropout_seed, bool dz_spare) {
    if (L->cfg.method != DORAC_METHOD_DORA)
        return dorac_error(DORAC_E_INVALID, "linear: backward from dz needs a DoRA layer, not %s",
                           dorac_method_name(L->cfg.method));
    return linear_backward(L, dx, accumulate_dx, dz, NULL, x, NULL, u, dropout_seed, true, dz_spare);
}

int dorac_linear_backward_dz(dorac_linear *L, const dorac_tensor *dx, bool accumulate_dx,
                             const dorac_tensor *dz, const dorac_tensor *x, const dorac_tensor *u,
                             uint64_t dropout_seed) {
    return dorac_linear_backward_dz_ex(L, dx, accumulate_dx, dz, x, u, dropout_seed, false);
}
