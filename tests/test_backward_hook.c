/*
** test_backward_hook.c — dorac_model_backward_ex's callback (model.h), which
** the data-parallel trainer uses to start each block's gradient all-reduce
** while the backward of the earlier blocks runs. For both families, tied and
** untied heads, biases, and every method (full, LoRA, DoRA, with and
** without an adapter on lm_head):
**   - every trainable gradient is handed over exactly once, with its shape;
**   - a gradient handed over is final: its value then is its value at the
**     end of the backward, bit for bit;
**   - the stages come as documented: the head's (when it has any), one per
**     block, the embeddings' (full fine-tuning);
**   - the gradients are bit for bit dorac_model_backward's;
**   - a second backward without zero_grad doubles them (accumulation);
**   - a callback's error stops the backward and is returned.
*/
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "model/model.h"
#include "test.h"
#include "tiny_configs.h"

#define MAX_HANDED 256

static dorac_model_config tiny_llama(bool tied) {
    dorac_model_config c = {
        .family = DORAC_FAMILY_LLAMA, .vocab_size = 23, .hidden_size = 16, .intermediate_size = 24,
        .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .head_dim = 4, .max_positions = 32,
        .norm_eps = 1e-5, .tie_embeddings = tied, .qkv_bias = !tied, .o_bias = !tied,
        .rope_theta = 10000,
    };
    strcpy(c.model_type, "llama");
    return c;
}

/* every bias Llama can have (attention_bias and mlp_bias: 16 params a
** layer), over more layers than the parameter table once allowed */
static dorac_model_config all_bias_llama(void) {
    dorac_model_config c = tiny_llama(false);
    c.n_layers = 6;
    c.mlp_bias = true;
    return c;
}

static bool head_too; /* the selector also adapts lm_head */

static bool select_linears(void *ctx, const char *path, const char *short_name, dorac_adapter_config *cfg) {
    (void)ctx, (void)path;
    if (!head_too && !strcmp(short_name, "lm_head")) return false;
    cfg->rank = 2;
    cfg->alpha = 4.0;
    return true;
}

/* What the callback saw: each gradient with its stage and its value then. */
typedef struct handed {
    const void *data;
    int64_t rows, cols;
    int stage;
    float *value;
} handed;

typedef struct hook_log {
    dorac_backend *be;
    handed h[MAX_HANDED];
    size_t n;
    int stages;
    int fail_at; /* the stage whose call returns an error; -1: none */
} hook_log;

static int record(void *ctx, const dorac_tensor *const *grads, size_t n) {
    hook_log *log = ctx;
    if (log->stages == log->fail_at) return dorac_error(DORAC_E_IO, "hook: stopped at stage %d", log->stages);
    CHECK(n >= 1);
    for (size_t i = 0; i < n && log->n < MAX_HANDED; i++) {
        const dorac_tensor *g = grads[i];
        size_t count = (size_t)(g->rows * g->cols);
        handed *h = &log->h[log->n++];
        *h = (handed){g->data, g->rows, g->cols, log->stages, malloc((count ? count : 1) * sizeof(float))};
        if (count) CHECK_OK(log->be->download(log->be, h->value, DORAC_DTYPE_F32, g));
    }
    log->stages++;
    return DORAC_OK;
}

static void check(const char *name, dorac_model_config cfg, dorac_method method, bool adapt_head) {
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    dorac_model *m = NULL;
    CHECK_OK(dorac_model_create(&m, be, &cfg));
    if (!m) return;
    CHECK_OK(dorac_model_init_random(m, 11));
    head_too = adapt_head;
    CHECK_OK(dorac_model_set_method(m, method, select_linears, NULL, 3));
    /* non-zero B, so that every adapter gradient carries signal */
    for (size_t i = 0; i < dorac_model_n_linears(m); i++) {
        dorac_model_linear *l = dorac_model_linear_at(m, i);
        if (!l->B.data) continue;
        size_t n = (size_t)(l->B.rows * l->B.cols);
        float *h = malloc(n * sizeof *h);
        for (size_t k = 0; k < n; k++) h[k] = (float)(0.3 * (2 * dorac_rng_uniform_f64(7, 300 + i, k) - 1));
        CHECK_OK(be->upload(be, &l->B, h, DORAC_DTYPE_F32));
        free(h);
    }
    int32_t ids[12], targets[12];
    for (int i = 0; i < 12; i++) {
        ids[i] = (int32_t)(dorac_rng_bits(5, 1, (uint64_t)i) % (uint64_t)cfg.vocab_size);
        targets[i] = (int32_t)(dorac_rng_bits(5, 2, (uint64_t)i) % (uint64_t)cfg.vocab_size);
    }
    dorac_batch batch = {ids, targets, 2, 6};
    dorac_trainable tr[MAX_HANDED];
    size_t n_tr = dorac_model_trainables(m, tr, MAX_HANDED);
    CHECK(n_tr > 0 && n_tr <= MAX_HANDED);
    if (n_tr > MAX_HANDED) n_tr = MAX_HANDED;

    /* the reference: dorac_model_backward */
    dorac_forward_result r;
    float *ref[MAX_HANDED];
    CHECK_OK(dorac_model_forward(m, &batch, true, 0.1, 0, &r, NULL));
    CHECK_OK(dorac_model_backward(m));
    for (size_t i = 0; i < n_tr; i++) {
        size_t count = (size_t)(tr[i].grad->rows * tr[i].grad->cols);
        ref[i] = malloc((count ? count : 1) * sizeof(float));
        if (count) CHECK_OK(be->download(be, ref[i], DORAC_DTYPE_F32, tr[i].grad));
    }

    /* the same pass with the callback */
    static hook_log log;
    memset(&log, 0, sizeof log);
    log.be = be;
    log.fail_at = -1;
    CHECK_OK(dorac_model_zero_grad(m));
    CHECK_OK(dorac_model_forward(m, &batch, true, 0.1, 0, &r, NULL));
    CHECK_OK(dorac_model_backward_ex(m, record, &log));
    bool full = method == DORAC_METHOD_FULL;
    int want_stages = (full || adapt_head) + (int)cfg.n_layers + full;
    CHECK(log.stages == want_stages);
    CHECK(log.n == n_tr);
    size_t not_once = 0, moved = 0, differ = 0;
    int last_stage = -1;
    for (size_t i = 0; i < n_tr; i++) {
        const dorac_tensor *g = tr[i].grad;
        size_t count = (size_t)(g->rows * g->cols), seen = 0;
        float *now = malloc((count ? count : 1) * sizeof *now);
        if (count) CHECK_OK(be->download(be, now, DORAC_DTYPE_F32, g));
        for (size_t k = 0; k < log.n; k++) {
            handed *h = &log.h[k];
            if (h->data != g->data) continue;
            seen++;
            if (h->rows != g->rows || h->cols != g->cols || memcmp(h->value, now, count * sizeof *now)) {
                fprintf(stderr, "%s: %s changed after stage %d handed it over\n", name, tr[i].name, h->stage);
                moved++;
            }
        }
        if (seen != 1) fprintf(stderr, "%s: %s handed over %zu times\n", name, tr[i].name, seen);
        not_once += seen != 1;
        differ += memcmp(now, ref[i], count * sizeof *now) != 0;
        free(now);
    }
    for (size_t k = 0; k < log.n; k++) {
        CHECK(log.h[k].stage >= last_stage); /* in call order */
        last_stage = log.h[k].stage;
        free(log.h[k].value);
    }
    CHECK(not_once == 0);
    CHECK(moved == 0);
    CHECK(differ == 0);

    /* a second backward without zero_grad accumulates (gradient
    ** accumulation): every gradient is twice the first (to rounding: the
    ** second pass adds inside the GEMMs), so each backward started its DoRA
    ** sums (zsum) from zero and only the gradients carried over */
    CHECK_OK(dorac_model_forward(m, &batch, true, 0.1, 0, &r, NULL));
    CHECK_OK(dorac_model_backward(m));
    size_t not_doubled = 0;
    for (size_t i = 0; i < n_tr; i++) {
        const dorac_tensor *g = tr[i].grad;
        size_t count = (size_t)(g->rows * g->cols);
        float *now = malloc((count ? count : 1) * sizeof *now);
        if (count) CHECK_OK(be->download(be, now, DORAC_DTYPE_F32, g));
        double worst = 0, scale = 0;
        for (size_t k = 0; k < count; k++) {
            double d = fabs((double)now[k] - 2.0 * (double)ref[i][k]);
            worst = d > worst ? d : worst;
            scale = fabs(2.0 * (double)ref[i][k]) > scale ? fabs(2.0 * (double)ref[i][k]) : scale;
        }
        if (worst > 1e-5 * scale + 1e-30) {
            fprintf(stderr, "%s: %s after two backwards is off twice the first by %g (max |2g| %g)\n", name,
                    tr[i].name, worst, scale);
            not_doubled++;
        }
        free(now);
        free(ref[i]);
    }
    CHECK(not_doubled == 0);

    /* the callback's error stops the backward */
    memset(&log, 0, sizeof log);
    log.be = be;
    log.fail_at = 1;
    CHECK_OK(dorac_model_forward(m, &batch, true, 0.1, 0, &r, NULL));
    CHECK_STATUS(dorac_model_backward_ex(m, record, &log), DORAC_E_IO);
    CHECK(strstr(dorac_last_error(), "stopped at stage 1") != NULL);
    for (size_t k = 0; k < log.n; k++) free(log.h[k].value);
    fprintf(stderr, "%s: %zu gradients in %d stages\n", name, n_tr, want_stages);
    dorac_model_free(m);
    dorac_backend_destroy(be);
}

int main(void) {
    check("llama tied full", tiny_llama(true), DORAC_METHOD_FULL, false);
    check("llama untied biased full", tiny_llama(false), DORAC_METHOD_FULL, false);
    check("gpt2 full", tiny_gpt2(), DORAC_METHOD_FULL, false);
    check("llama tied lora", tiny_llama(true), DORAC_METHOD_LORA, false);
    check("llama untied dora", tiny_llama(false), DORAC_METHOD_DORA, false);
    check("llama tied dora + lm_head", tiny_llama(true), DORAC_METHOD_DORA, true);
    check("gpt2 lora + lm_head", tiny_gpt2(), DORAC_METHOD_LORA, true);
    check("gpt2 dora", tiny_gpt2(), DORAC_METHOD_DORA, false);
    check("llama 6 layers, every bias, dora", all_bias_llama(), DORAC_METHOD_DORA, false);
    check("llama 6 layers, every bias, full", all_bias_llama(), DORAC_METHOD_FULL, false);
    return test_report();
}
