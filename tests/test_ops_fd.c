/*
** test_ops_fd.c — every transformer op of the backend, checked the way
** ggml's test-backend-ops does, in two ways:
**   1. the backward against central finite differences of the forward, on
**      the fp64 CPU backend (relative error < 1e-6);
**   2. the fp32 backend against the fp64 one on the same inputs (forward
**      and backward, relative error < 2e-5), and the forward against a
**      plain reference written here where the op's math is not trivial
**      (attention against an explicit softmax over the full score matrix).
**
** Every op case is one struct: host inputs (double), an output size, and
** two callbacks that run the op on a given backend. The loss is
** L = sum(R ⊙ out) for a fixed random R.
*/
#include <string.h>

#include "backend/backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "test.h"

#define MAX_INPUTS 4

typedef struct op_case op_case;
struct op_case {
    const char *name;
    int n_inputs;
    const char *input_names[MAX_INPUTS];
    int64_t rows[MAX_INPUTS], cols[MAX_INPUTS];
    bool differentiable[MAX_INPUTS]; /* FD-check this input's gradient */
    int64_t out_rows, out_cols;
    /* forward: out <- op(inputs); backward: grads <- d(sum R ⊙ out)/d inputs
    ** (grads are zeroed first; norms accumulate into them) */
    int (*forward)(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux);
    int (*backward)(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux,
                    dorac_tensor *dout, dorac_tensor *grads);
    int64_t aux_cols;   /* (1, aux_cols) saved-for-backward scratch, param type */
    int64_t aux2_cols;  /* second aux vector (layernorm's rstd) */
    int64_t B, T, H, KV, D; /* attention / rope sizes */
    dorac_tensor ids;   /* I32 index tensor, when the op needs one */
    int32_t *ids_host;
    int64_t n_ids, ids_limit;
};

/* ---- the op callbacks ---- */

static int rms_fwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux) {
    (void)c;
    return be->rmsnorm_forward(be, out, &aux[0], &in[0], &in[1], 1e-5);
}
static int rms_bwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux,
                   dorac_tensor *dout, dorac_tensor *g) {
    (void)c, (void)out;
    return be->rmsnorm_backward(be, &g[0], &g[1], dout, &in[0], &in[1], &aux[0]);
}
static int ln_fwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux) {
    (void)c;
    return be->layernorm_forward(be, out, &aux[0], &aux[1], &in[0], &in[1], &in[2], 1e-5);
}
static int ln_bwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux,
                  dorac_tensor *dout, dorac_tensor *g) {
    (void)c, (void)out;
    return be->layernorm_backward(be, &g[0], &g[1], &g[2], dout, &in[0], &in[1], &aux[0], &aux[1]);
}
static int swiglu_fwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux) {
    (void)c, (void)aux;
    return be->swiglu_forward(be, out, &in[0], &in[1]);
}
static int swiglu_bwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux,
                      dorac_tensor *dout, dorac_tensor *g) {
    (void)c, (void)out, (void)aux;
    return be->swiglu_backward(be, &g[0], &g[1], dout, &in[0], &in[1]);
}
static int gelu_fwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux) {
    (void)c, (void)aux;
    return be->gelu_forward(be, out, &in[0]);
}
static int gelu_bwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux,
                    dorac_tensor *dout, dorac_tensor *g) {
    (void)c, (void)out, (void)aux;
    return be->gelu_backward(be, &g[0], dout, &in[0]);
}
static int emb_fwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux) {
    (void)aux;
    return be->embedding_forward(be, out, &c->ids, &in[0], false);
}
static int emb_bwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux,
                   dorac_tensor *dout, dorac_tensor *g) {
    (void)in, (void)out, (void)aux;
    return be->embedding_backward(be, &g[0], dout, &c->ids);
}

/* rope on a copy: out = rope(x); its backward is the inverse rotation */
static dorac_tensor cos_t[2], sin_t[2]; /* per backend: [0] fp32, [1] fp64 */
static int rope_tables(dorac_backend *be, int64_t max_pos, int64_t D) {
    int k = be->param_type == DORAC_DTYPE_F64;
    if (cos_t[k].data) return DORAC_OK;
    int64_t half = D / 2;
    double *c = malloc((size_t)(max_pos * half) * sizeof(double)), *s = malloc((size_t)(max_pos * half) * sizeof(double));
    for (int64_t p = 0; p < max_pos; p++)
        for (int64_t j = 0; j < half; j++) {
            double ang = (double)p * pow(10000.0, -2.0 * (double)j / (double)D);
            c[p * half + j] = cos(ang), s[p * half + j] = sin(ang);
        }
    CHECK_OK(dorac_tensor_alloc(be, &cos_t[k], be->param_type, max_pos, half, "cos"));
    CHECK_OK(dorac_tensor_alloc(be, &sin_t[k], be->param_type, max_pos, half, "sin"));
    be->upload(be, &cos_t[k], c, DORAC_DTYPE_F64);
    be->upload(be, &sin_t[k], s, DORAC_DTYPE_F64);
    free(c), free(s);
    return DORAC_OK;
}
static int rope_fwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux) {
    (void)aux;
    int k = be->param_type == DORAC_DTYPE_F64;
    DORAC_TRY(rope_tables(be, c->ids_limit, c->D));
    DORAC_TRY(be->copy(be, out, &in[0]));
    return be->rope(be, out, &c->ids, &cos_t[k], &sin_t[k], c->H, c->D, false);
}
static int rope_bwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux,
                    dorac_tensor *dout, dorac_tensor *g) {
    (void)in, (void)out, (void)aux;
    int k = be->param_type == DORAC_DTYPE_F64;
    DORAC_TRY(be->copy(be, &g[0], dout));
    return be->rope(be, &g[0], &c->ids, &cos_t[k], &sin_t[k], c->H, c->D, true);
}

/* attention: inputs q, k, v; lse in aux */
static int att_fwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux) {
    return be->attention_forward(be, out, &aux[0], &in[0], &in[1], &in[2], c->B, c->T, c->H, c->KV, c->D);
}
static int att_bwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux,
                   dorac_tensor *dout, dorac_tensor *g) {
    return be->attention_backward(be, &g[0], &g[1], &g[2], dout, &in[0], &in[1], &in[2], out, &aux[0],
                                  c->B, c->T, c->H, c->KV, c->D);
}

/* cross-entropy: out is the per-row loss (1,N) */
static int xent_fwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux) {
    (void)aux;
    return be->cross_entropy(be, out, NULL, &in[0], &c->ids, 1.0);
}
static int xent_bwd(dorac_backend *be, op_case *c, dorac_tensor *in, dorac_tensor *out, dorac_tensor *aux,
                    dorac_tensor *dout, dorac_tensor *g) {
    (void)aux;
    /* d(sum_i R_i loss_i)/dlogits = R_i (softmax - onehot): apply per row */
    DORAC_TRY(be->cross_entropy(be, out, &g[0], &in[0], &c->ids, 1.0));
    return be->scale_rows(be, &g[0], &g[0], dout, 1.0, 0.0);
}

/* ---- the harness ---- */

typedef struct run {
    dorac_tensor in[MAX_INPUTS], grads[MAX_INPUTS], out, dout, aux[2];
} run;

static void run_alloc(dorac_backend *be, op_case *c, run *r) {
    for (int i = 0; i < c->n_inputs; i++) {
        CHECK_OK(dorac_tensor_alloc(be, &r->in[i], be->act_type, c->rows[i], c->cols[i], c->input_names[i]));
        CHECK_OK(dorac_tensor_alloc(be, &r->grads[i], be->act_type, c->rows[i], c->cols[i], "grad"));
    }
    CHECK_OK(dorac_tensor_alloc(be, &r->out, be->act_type, c->out_rows, c->out_cols, "out"));
    CHECK_OK(dorac_tensor_alloc(be, &r->dout, be->act_type, c->out_rows, c->out_cols, "dout"));
    CHECK_OK(dorac_tensor_alloc(be, &r->aux[0], be->param_type, 1, c->aux_cols ? c->aux_cols : 1, "aux"));
    CHECK_OK(dorac_tensor_alloc(be, &r->aux[1], be->param_type, 1, c->aux2_cols ? c->aux2_cols : 1, "aux2"));
    if (c->n_ids) {
        CHECK_OK(dorac_tensor_alloc(be, &c->ids, DORAC_DTYPE_I32, 1, c->n_ids, "ids"));
        CHECK_OK(be->upload(be, &c->ids, c->ids_host, DORAC_DTYPE_I32));
    }
}

static void run_free(dorac_backend *be, op_case *c, run *r) {
    for (int i = 0; i < c->n_inputs; i++) dorac_tensor_free(be, &r->in[i]), dorac_tensor_free(be, &r->grads[i]);
    dorac_tensor_free(be, &r->out), dorac_tensor_free(be, &r->dout);
    dorac_tensor_free(be, &r->aux[0]), dorac_tensor_free(be, &r->aux[1]);
    if (c->n_ids) dorac_tensor_free(be, &c->ids);
}

static double *host_get(dorac_backend *be, const dorac_tensor *t) {
    double *h = malloc((size_t)(t->rows * t->cols + 1) * sizeof *h);
    CHECK_OK(be->download(be, h, DORAC_DTYPE_F64, t));
    return h;
}

static double loss_of(dorac_backend *be, op_case *c, run *r, double **x, const double *R) {
    for (int i = 0; i < c->n_inputs; i++) be->upload(be, &r->in[i], x[i], DORAC_DTYPE_F64);
    CHECK_OK(c->forward(be, c, r->in, &r->out, r->aux));
    double *o = host_get(be, &r->out), L = 0;
    for (int64_t i = 0; i < c->out_rows * c->out_cols; i++) L += R[i] * o[i];
    free(o);
    return L;
}

/* forward + backward on be; returns out and grads as host arrays */
static void forward_backward(dorac_backend *be, op_case *c, double **x, const double *R, double **out,
                             double **grads) {
    run r;
    run_alloc(be, c, &r);
    for (int i = 0; i < c->n_inputs; i++) {
        be->upload(be, &r.in[i], x[i], DORAC_DTYPE_F64);
        CHECK_OK(be->fill(be, &r.grads[i], 0.0));
    }
    be->upload(be, &r.dout, R, DORAC_DTYPE_F64);
    CHECK_OK(c->forward(be, c, r.in, &r.out, r.aux));
    CHECK_OK(c->backward(be, c, r.in, &r.out, r.aux, &r.dout, r.grads));
    *out = host_get(be, &r.out);
    for (int i = 0; i < c->n_inputs; i++) grads[i] = host_get(be, &r.grads[i]);
    run_free(be, c, &r);
}

static void check_op(dorac_backend *be32, dorac_backend *be64, op_case *c) {
    double *x[MAX_INPUTS];
    for (int i = 0; i < c->n_inputs; i++) {
        size_t n = (size_t)(c->rows[i] * c->cols[i]);
        x[i] = malloc(n * sizeof(double));
        for (size_t j = 0; j < n; j++) x[i][j] = 2.0 * dorac_rng_uniform_f64(5, (uint64_t)i, j) - 1.0;
    }
    size_t n_out = (size_t)(c->out_rows * c->out_cols);
    double *R = malloc(n_out * sizeof(double));
    for (size_t j = 0; j < n_out; j++) R[j] = 2.0 * dorac_rng_uniform_f64(5, 99, j) - 1.0;

    double *out64, *g64[MAX_INPUTS], *out32, *g32[MAX_INPUTS];
    forward_backward(be64, c, x, R, &out64, g64);
    forward_backward(be32, c, x, R, &out32, g32);

    /* 1. finite differences on the fp64 backend */
    run r;
    run_alloc(be64, c, &r);
    const double h = 1e-5;
    for (int i = 0; i < c->n_inputs; i++) {
        if (!c->differentiable[i]) continue;
        size_t n = (size_t)(c->rows[i] * c->cols[i]);
        double *fd = malloc(n * sizeof(double));
        for (size_t j = 0; j < n; j++) {
            double keep = x[i][j];
            x[i][j] = keep + h;
            double lp = loss_of(be64, c, &r, x, R);
            x[i][j] = keep - h;
            double lm = loss_of(be64, c, &r, x, R);
            x[i][j] = keep;
            fd[j] = (lp - lm) / (2 * h);
        }
        double err = rel_err_f64(g64[i], fd, n, 1e-12);
        if (err >= 1e-6) fprintf(stderr, "%s: d%s finite-difference error %.3g\n", c->name, c->input_names[i], err);
        CHECK_LE(err, 1e-6);
        free(fd);
    }
    run_free(be64, c, &r);

    /* 2. fp32 against fp64 */
    double err = rel_err_f64(out32, out64, n_out, 1e-30);
    if (err > 2e-5) fprintf(stderr, "%s: fp32 forward vs fp64 %.3g\n", c->name, err);
    CHECK_LE(err, 2e-5);
    for (int i = 0; i < c->n_inputs; i++) {
        size_t n = (size_t)(c->rows[i] * c->cols[i]);
        if (!c->differentiable[i]) continue;
        double e = rel_err_f64(g32[i], g64[i], n, 1e-30);
        if (e > 2e-5) fprintf(stderr, "%s: fp32 d%s vs fp64 %.3g\n", c->name, c->input_names[i], e);
        CHECK_LE(e, 2e-5);
    }

    /* 3. attention forward against the explicit full-matrix softmax */
    if (c->forward == att_fwd) {
        int64_t B = c->B, T = c->T, H = c->H, KV = c->KV, D = c->D;
        double worst = 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t hh = 0; hh < H; hh++)
                for (int64_t t = 0; t < T; t++) {
                    int64_t kv = hh / (H / KV);
                    double w[64], mx = -1e300, sum = 0;
                    for (int64_t s = 0; s < T; s++) {
                        double sc = 0;
                        for (int64_t d = 0; d < D; d++)
                            sc += x[0][(b * T + t) * H * D + hh * D + d] * x[1][(b * T + s) * KV * D + kv * D + d];
                        w[s] = s <= t ? sc / sqrt((double)D) : -INFINITY; /* causal mask */
                        mx = fmax(mx, w[s]);
                    }
                    for (int64_t s = 0; s < T; s++) sum += (w[s] = exp(w[s] - mx));
                    for (int64_t d = 0; d < D; d++) {
                        double o = 0;
                        for (int64_t s = 0; s < T; s++) o += w[s] / sum * x[2][(b * T + s) * KV * D + kv * D + d];
                        worst = test_worst(worst, fabs(o - out64[(b * T + t) * H * D + hh * D + d]));
                    }
                }
        CHECK_LE(worst, 1e-12);
    }
    /* 4. cross-entropy: ignored rows give 0 loss and 0 gradient */
    if (c->forward == xent_fwd)
        for (int64_t i = 0; i < c->n_ids; i++)
            if (c->ids_host[i] == DORAC_IGNORE_INDEX) {
                CHECK_NEAR(out64[i], 0.0, 0.0);
                for (int64_t j = 0; j < c->cols[0]; j++) CHECK_NEAR(g64[0][i * c->cols[0] + j], 0.0, 0.0);
            }

    for (int i = 0; i < c->n_inputs; i++) free(x[i]), free(g64[i]), free(g32[i]);
    free(R), free(out64), free(out32);
}

/* the blocked attention against its slow twin, over several query blocks */
int dorac_cpu32_attention_forward_ref(dorac_backend *, const dorac_tensor *, const dorac_tensor *,
                                      const dorac_tensor *, const dorac_tensor *, const dorac_tensor *, int64_t,
                                      int64_t, int64_t, int64_t, int64_t);
int dorac_cpu32_attention_backward_ref(dorac_backend *, const dorac_tensor *, const dorac_tensor *,
                                       const dorac_tensor *, const dorac_tensor *, const dorac_tensor *,
                                       const dorac_tensor *, const dorac_tensor *, const dorac_tensor *,
                                       const dorac_tensor *, int64_t, int64_t, int64_t, int64_t, int64_t);

static void check_attention_twin(dorac_backend *be) {
    const int64_t B = 2, T = 150, H = 6, KV = 2, D = 16, N = B * T;
    dorac_tensor t[16];
    int64_t cols[] = {H * D, KV * D, KV * D, H * D, H * D, KV * D, KV * D, H * D, H * D, KV * D, KV * D, H * D};
    for (int i = 0; i < 12; i++) {
        CHECK_OK(dorac_tensor_alloc(be, &t[i], DORAC_DTYPE_F32, N, cols[i], "attn"));
        double *h = malloc((size_t)(N * cols[i]) * sizeof *h);
        for (int64_t j = 0; j < N * cols[i]; j++) h[j] = 2 * dorac_rng_uniform_f64(77, (uint64_t)i, (uint64_t)j) - 1;
        be->upload(be, &t[i], h, DORAC_DTYPE_F64);
        free(h);
    }
    dorac_tensor lse1, lse2;
    CHECK_OK(dorac_tensor_alloc(be, &lse1, DORAC_DTYPE_F32, 1, B * H * T, "lse"));
    CHECK_OK(dorac_tensor_alloc(be, &lse2, DORAC_DTYPE_F32, 1, B * H * T, "lse"));
    /* q k v | out_fast | dq dk dv fast | out_ref | dq dk dv ref | dout */
    CHECK_OK(be->attention_forward(be, &t[3], &lse1, &t[0], &t[1], &t[2], B, T, H, KV, D));
    CHECK_OK(dorac_cpu32_attention_forward_ref(be, &t[7], &lse2, &t[0], &t[1], &t[2], B, T, H, KV, D));
    CHECK_OK(be->attention_backward(be, &t[4], &t[5], &t[6], &t[11], &t[0], &t[1], &t[2], &t[3], &lse1, B, T, H, KV, D));
    CHECK_OK(dorac_cpu32_attention_backward_ref(be, &t[8], &t[9], &t[10], &t[11], &t[0], &t[1], &t[2], &t[7], &lse2,
                                                B, T, H, KV, D));
    int pairs[][2] = {{3, 7}, {4, 8}, {5, 9}, {6, 10}};
    for (int k = 0; k < 4; k++) {
        dorac_tensor *a = &t[pairs[k][0]], *b = &t[pairs[k][1]];
        size_t n = (size_t)(a->rows * a->cols);
        double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        be->download(be, x, DORAC_DTYPE_F64, a);
        be->download(be, y, DORAC_DTYPE_F64, b);
        double err = rel_err_f64(x, y, n, 1e-30);
        if (err > 1e-5) fprintf(stderr, "attention fast vs reference, output %d: %.3g\n", k, err);
        CHECK_LE(err, 1e-5);
        free(x), free(y);
    }
    for (int i = 0; i < 12; i++) dorac_tensor_free(be, &t[i]);
    dorac_tensor_free(be, &lse1), dorac_tensor_free(be, &lse2);
}

int main(void) {
    dorac_backend *be32 = dorac_backend_cpu_create((dorac_cpu_params){0});
    dorac_backend *be64 = dorac_backend_cpu64_create((dorac_cpu_params){0});
    int32_t emb_ids[7] = {3, 0, 3, 5, 1, 3, 2};
    int32_t pos[6] = {0, 1, 2, 7, 3, 11};
    int32_t targets[5] = {2, DORAC_IGNORE_INDEX, 0, 8, 4};
    op_case cases[] = {
        {.name = "rmsnorm", .n_inputs = 2, .input_names = {"x", "w"}, .rows = {5, 1}, .cols = {11, 11},
         .differentiable = {true, true}, .out_rows = 5, .out_cols = 11, .forward = rms_fwd, .backward = rms_bwd,
         .aux_cols = 5},
        {.name = "layernorm", .n_inputs = 3, .input_names = {"x", "w", "b"}, .rows = {5, 1, 1}, .cols = {11, 11, 11},
         .differentiable = {true, true, true}, .out_rows = 5, .out_cols = 11, .forward = ln_fwd, .backward = ln_bwd,
         .aux_cols = 5, .aux2_cols = 5},
        {.name = "swiglu", .n_inputs = 2, .input_names = {"gate", "up"}, .rows = {4, 4}, .cols = {9, 9},
         .differentiable = {true, true}, .out_rows = 4, .out_cols = 9, .forward = swiglu_fwd, .backward = swiglu_bwd},
        {.name = "gelu", .n_inputs = 1, .input_names = {"x"}, .rows = {4}, .cols = {9},
         .differentiable = {true}, .out_rows = 4, .out_cols = 9, .forward = gelu_fwd, .backward = gelu_bwd},
        {.name = "embedding", .n_inputs = 1, .input_names = {"table"}, .rows = {6}, .cols = {5},
         .differentiable = {true}, .out_rows = 7, .out_cols = 5, .forward = emb_fwd, .backward = emb_bwd,
         .ids_host = emb_ids, .n_ids = 7, .ids_limit = 6},
        {.name = "rope", .n_inputs = 1, .input_names = {"x"}, .rows = {6}, .cols = {3 * 8},
         .differentiable = {true}, .out_rows = 6, .out_cols = 24, .forward = rope_fwd, .backward = rope_bwd,
         .H = 3, .D = 8, .ids_host = pos, .n_ids = 6, .ids_limit = 16},
        {.name = "attention mha", .n_inputs = 3, .input_names = {"q", "k", "v"}, .rows = {2 * 5, 2 * 5, 2 * 5},
         .cols = {2 * 4, 2 * 4, 2 * 4}, .differentiable = {true, true, true}, .out_rows = 10, .out_cols = 8,
         .forward = att_fwd, .backward = att_bwd, .aux_cols = 2 * 2 * 5, .B = 2, .T = 5, .H = 2, .KV = 2, .D = 4},
        {.name = "attention gqa", .n_inputs = 3, .input_names = {"q", "k", "v"}, .rows = {2 * 6, 2 * 6, 2 * 6},
         .cols = {4 * 4, 2 * 4, 2 * 4}, .differentiable = {true, true, true}, .out_rows = 12, .out_cols = 16,
         .forward = att_fwd, .backward = att_bwd, .aux_cols = 2 * 4 * 6, .B = 2, .T = 6, .H = 4, .KV = 2, .D = 4},
        {.name = "cross_entropy", .n_inputs = 1, .input_names = {"logits"}, .rows = {5}, .cols = {9},
         .differentiable = {true}, .out_rows = 1, .out_cols = 5, .forward = xent_fwd, .backward = xent_bwd,
         .ids_host = targets, .n_ids = 5, .ids_limit = 9},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_op(be32, be64, &cases[i]);
    check_attention_twin(be32);

    /* out-of-range indices are errors, not reads out of bounds */
    dorac_tensor ids, table, out;
    int32_t bad[2] = {1, 6};
    CHECK_OK(dorac_tensor_alloc(be32, &ids, DORAC_DTYPE_I32, 1, 2, "ids"));
    CHECK_OK(dorac_tensor_alloc(be32, &table, DORAC_DTYPE_F32, 6, 3, "table"));
    CHECK_OK(dorac_tensor_alloc(be32, &out, DORAC_DTYPE_F32, 2, 3, "out"));
    CHECK_OK(be32->upload(be32, &ids, bad, DORAC_DTYPE_I32));
    CHECK_STATUS(be32->embedding_forward(be32, &out, &ids, &table, false), DORAC_E_INVALID);
    CHECK(strstr(dorac_last_error(), "ids[1] = 6") != NULL);
    dorac_tensor_free(be32, &ids), dorac_tensor_free(be32, &table), dorac_tensor_free(be32, &out);
    for (int k = 0; k < 2; k++) {
        dorac_backend *be = k ? be64 : be32;
        dorac_tensor_free(be, &cos_t[k]), dorac_tensor_free(be, &sin_t[k]);
    }
    dorac_backend_destroy(be32);
    dorac_backend_destroy(be64);
    return test_report();
}
