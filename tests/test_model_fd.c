/*
** test_model_fd.c — the whole model's backward against finite differences
** of its forward loss, in double precision (fp64 CPU backend), for both
** families and every training method: full fine-tuning (every base
** parameter), LoRA, and DoRA with the exact norm gradient (every adapter
** parameter; detach mode's gradient is not the derivative of the loss, and
** is checked at the layer level). Tiny shapes exercise GQA, q/k/v bias,
** tied and untied heads, llama3 and linear RoPE, GPT-2's fused c_attn and
** learned positions, ignored targets, and adapters on lm_head.
**
** The loss is sum over counted targets of cross-entropy, so grad_scale = 1.
*/
#include <string.h>

#include "core/rng.h"
#include "model/model.h"
#include "test.h"
#include "tiny_configs.h"

static dorac_model_config tiny_llama(bool tied, dorac_model_rope rope) {
    dorac_model_config c = {
        .family = DORAC_FAMILY_LLAMA, .vocab_size = 23, .hidden_size = 16, .intermediate_size = 24,
        .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 6, .max_positions = 32,
        .norm_eps = 1e-5, .tie_embeddings = tied, .qkv_bias = !tied, .rope_theta = 10000,
        .rope_type = rope, .rope_factor = 4, .rope_low_freq_factor = 1, .rope_high_freq_factor = 4,
        .rope_original_max_positions = 8,
    };
    strcpy(c.model_type, tied ? "llama" : "qwen2");
    return c;
}

typedef struct target_ctx { dorac_method method; int norm_grad; } target_ctx;

/* every linear, lm_head included, rank 2 (lm_head rank 3) */
static bool select_all(void *ctx, const char *path, const char *short_name, dorac_adapter_config *cfg) {
    (void)path;
    target_ctx *t = ctx;
    cfg->rank = strcmp(short_name, "lm_head") ? 2 : 3;
    cfg->alpha = 3.0;
    cfg->norm_grad = t->norm_grad;
    return true;
}

/* Random values in a tensor (host double array kept for perturbation). */
static double *randomise(dorac_backend *be, dorac_tensor *t, double scale, uint64_t stream) {
    size_t n = (size_t)(t->rows * t->cols);
    double *h = malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = scale * (2 * dorac_rng_uniform_f64(9, stream, i) - 1);
    be->upload(be, t, h, DORAC_DTYPE_F64);
    return h;
}

static double loss_of(dorac_model *m, const dorac_batch *b) {
    dorac_forward_result r;
    int rc = dorac_model_forward(m, b, false, 1.0, 0, &r, NULL);
    return rc ? NAN : r.loss_sum;
}

/* head_chunk: rows per lm_head chunk (0: the default, one chunk here) */
static void check(const char *name, dorac_model_config cfg, dorac_method method, int norm_grad,
                  int64_t head_chunk) {
    dorac_backend *be = dorac_backend_cpu64_create((dorac_cpu_params){0});
    dorac_model *m;
    CHECK_OK(dorac_model_create(&m, be, &cfg));
    CHECK_OK(dorac_model_set_head_chunk(m, head_chunk));
    CHECK_OK(dorac_model_init_random(m, 5));
    /* larger weights than init so that attention is far from uniform */
    for (size_t i = 0; i < dorac_model_n_params(m); i++) {
        dorac_model_param *p = dorac_model_param_at(m, i);
        bool norm = strstr(p->name, "norm") || strstr(p->name, "ln_");
        double *h = randomise(be, &p->w, norm ? 0.5 : 0.6, 100 + i);
        if (norm) { /* norm weights around 1 */
            for (int64_t k = 0; k < p->w.cols; k++) h[k] += 1.0;
            be->upload(be, &p->w, h, DORAC_DTYPE_F64);
        }
        free(h);
    }
    target_ctx tc = {method, norm_grad};
    CHECK_OK(dorac_model_set_method(m, method, select_all, &tc, 3));
    /* non-zero B and perturbed m, so every adapter path carries signal */
    for (size_t i = 0; i < dorac_model_n_linears(m); i++) {
        dorac_model_linear *l = dorac_model_linear_at(m, i);
        if (l->B.data) free(randomise(be, &l->B, 0.4, 500 + i));
        if (l->m.data) {
            size_t n = (size_t)l->out;
            double *h = malloc(n * sizeof *h);
            be->download(be, h, DORAC_DTYPE_F64, &l->m);
            for (size_t k = 0; k < n; k++) h[k] *= 1 + 0.3 * (2 * dorac_rng_uniform_f64(9, 900 + i, k) - 1);
            be->upload(be, &l->m, h, DORAC_DTYPE_F64);
            free(h);
        }
    }
    int64_t B = 2, T = 5;
    int32_t ids[10], targets[10];
    for (int i = 0; i < 10; i++) {
        ids[i] = (int32_t)(dorac_rng_bits(4, 1, (uint64_t)i) % (uint64_t)cfg.vocab_size);
        targets[i] = (int32_t)(dorac_rng_bits(4, 2, (uint64_t)i) % (uint64_t)cfg.vocab_size);
    }
    targets[3] = targets[9] = DORAC_IGNORE_INDEX;
    dorac_batch batch = {ids, targets, B, T};

    dorac_forward_result r;
    CHECK_OK(dorac_model_forward(m, &batch, true, 1.0, 0, &r, NULL));
    CHECK(r.n_tokens == 8);
    CHECK_OK(dorac_model_backward(m));
    double train_loss = r.loss_sum;
    CHECK_NEAR(loss_of(m, &batch), train_loss, 1e-12 * fabs(train_loss)); /* eval == train forward */
    {
        /* the logits handed back (rows of V, the device's padding dropped)
        ** give the same loss, formed here from them */
        int64_t V = cfg.vocab_size;
        float *logits = malloc((size_t)(B * T * V) * sizeof *logits);
        dorac_forward_result re;
        CHECK_OK(dorac_model_forward(m, &batch, false, 1.0, 0, &re, logits));
        double host_loss = 0;
        for (int64_t i = 0; i < B * T; i++) {
            if (targets[i] == DORAC_IGNORE_INDEX) continue;
            double mx = -INFINITY, sum = 0;
            for (int64_t v = 0; v < V; v++) mx = fmax(mx, logits[i * V + v]);
            for (int64_t v = 0; v < V; v++) sum += exp(logits[i * V + v] - mx);
            host_loss += mx + log(sum) - logits[i * V + targets[i]];
        }
        CHECK_NEAR(host_loss, train_loss, 1e-5 * fabs(train_loss));
        free(logits);
    }

    dorac_trainable tr[256];
    size_t n_tr = dorac_model_trainables(m, tr, 256);
    CHECK(n_tr > 0 && n_tr <= 256);
    double worst = 0;
    const char *worst_name = "";
    for (size_t i = 0; i < n_tr && i < 256; i++) {
        dorac_tensor *v = tr[i].value;
        size_t n = (size_t)(v->rows * v->cols);
        double *h = malloc(n * sizeof *h), *g = malloc(n * sizeof *g), *fd = malloc(n * sizeof *fd);
        be->download(be, h, DORAC_DTYPE_F64, v);
        be->download(be, g, DORAC_DTYPE_F64, tr[i].grad);
        /* every element for small tensors, a strided sample for large ones */
        size_t stride = n > 48 ? n / 24 : 1, checked = 0;
        double num = 0, den = 1e-12;
        for (size_t k = 0; k < n; k += stride) {
            double keep = h[k], step = 1e-5;
            h[k] = keep + step;
            be->upload(be, v, h, DORAC_DTYPE_F64);
            double lp = loss_of(m, &batch);
            h[k] = keep - step;
            be->upload(be, v, h, DORAC_DTYPE_F64);
            double lm = loss_of(m, &batch);
            h[k] = keep;
            be->upload(be, v, h, DORAC_DTYPE_F64);
            fd[checked] = (lp - lm) / (2 * step);
            num = test_worst(num, fabs(fd[checked] - g[k]));
            den = fmax(den, fabs(g[k]));
            checked++;
        }
        double err = num / den;
        if (err > worst) worst = err, worst_name = tr[i].name;
        if (!(err < 1e-6)) fprintf(stderr, "%s: %s gradient vs finite differences %.3g\n", name, tr[i].name, err);
        CHECK_LE(err, 1e-6);
        free(h), free(g), free(fd);
    }
    fprintf(stderr, "%s: %zu trainable tensors, worst relative error %.2g (%s)\n", name, n_tr, worst, worst_name);
    dorac_model_free(m);
    dorac_backend_destroy(be);
}

int main(void) {
    const int E = DORAC_NORM_GRAD_EXACT;
    /* three of them with the head in chunks of 3 rows (3, 3, 3, 1) */
    check("llama gqa llama3-rope qkv-bias full", tiny_llama(false, DORAC_MODEL_ROPE_LLAMA3), DORAC_METHOD_FULL, E, 0);
    check("llama tied linear-rope full", tiny_llama(true, DORAC_MODEL_ROPE_LINEAR), DORAC_METHOD_FULL, E, 0);
    check("gpt2 full, head chunks", tiny_gpt2(), DORAC_METHOD_FULL, E, 3);
    check("llama lora, head chunks", tiny_llama(false, DORAC_MODEL_ROPE_LLAMA3), DORAC_METHOD_LORA, E, 3);
    check("llama tied dora exact", tiny_llama(true, DORAC_MODEL_ROPE_DEFAULT), DORAC_METHOD_DORA, E, 0);
    check("qwen2-like dora exact", tiny_llama(false, DORAC_MODEL_ROPE_LLAMA3), DORAC_METHOD_DORA, E, 0);
    check("gpt2 lora", tiny_gpt2(), DORAC_METHOD_LORA, E, 0);
    check("gpt2 dora exact", tiny_gpt2(), DORAC_METHOD_DORA, E, 0);
    check("gpt2 dora exact, head chunks", tiny_gpt2(), DORAC_METHOD_DORA, E, 3);
    {
        dorac_backend *be = dorac_backend_cpu64_create((dorac_cpu_params){0});
        dorac_model *m;
        dorac_model_config cfg = tiny_gpt2();
        CHECK_OK(dorac_model_create(&m, be, &cfg));
        CHECK(dorac_model_set_head_chunk(m, -1) == DORAC_E_INVALID);
        dorac_model_free(m);
        dorac_backend_destroy(be);
    }
    return test_report();
}
