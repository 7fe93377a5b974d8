/*
** test_model_fixtures.c — dorac against transformers and PEFT, on the
** fixture models of tests/fixtures/models (made by
** tools/ref/make_model_fixtures.py; layout in its README):
**   - logits to 1e-4 max absolute difference and mean loss to 1e-4, for the
**     base model and with each PEFT adapter (DoRA, LoRA, rsLoRA,
**     rank/alpha patterns, regex targets), every architecture, the bf16
**     sharded copy and PEFT's merged folders;
**   - adapter gradients of one backward pass against PEFT's .grad, and full
**     fine-tuning gradients against PyTorch's, to 1e-4 relative;
**   - RoPE inverse frequencies against transformers';
**   - merge: dorac's merged weights against PEFT's merge_and_unload, merged
**     eval against adapter eval; adapter save -> load bit-identical;
**   - bad input: an adapter for another model, a wrong shape, a missing
**     tensor, a missing folder.
*/
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "model/model.h"
#include "test.h"

#define FIX "tests/fixtures/models"

typedef struct cases {
    int32_t ids[64], targets[64];
    int64_t B, T;
} cases;

static int load_cases(const char *model, cases *c) {
    char path[512];
    snprintf(path, sizeof path, FIX "/%s/cases.json", model);
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    if (!root) return -1;
    json_t *ids = json_object_get(root, "input_ids"), *labels = json_object_get(root, "labels");
    c->B = (int64_t)json_array_size(ids);
    c->T = (int64_t)json_array_size(json_array_get(ids, 0));
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t t = 0; t < c->T; t++) {
            c->ids[b * c->T + t] = (int32_t)json_integer_value(json_array_get(json_array_get(ids, (size_t)b), (size_t)t));
            /* transformers shifts inside the loss: position t predicts labels[t+1] */
            c->targets[b * c->T + t] = t + 1 < c->T
                ? (int32_t)json_integer_value(json_array_get(json_array_get(labels, (size_t)b), (size_t)t + 1))
                : DORAC_IGNORE_INDEX;
        }
    json_decref(root);
    return 0;
}

static float *read_f32(const dorac_safetensors *st, const char *name, size_t *n) {
    const dorac_st_tensor *t = dorac_safetensors_find(st, name);
    if (!t) {
        fprintf(stderr, "fixture tensor %s missing\n", name);
        return NULL;
    }
    *n = dorac_st_tensor_numel(t);
    float *p = malloc(*n * sizeof *p);
    dorac_st_tensor_read(t, p, DORAC_DTYPE_F32);
    return p;
}

static dorac_model *load(dorac_backend *be, const char *model, const char *adapter) {
    char dir[512];
    snprintf(dir, sizeof dir, FIX "/%s", model);
    dorac_model *m = NULL;
    CHECK_OK(dorac_model_load(&m, be, dir));
    if (m && adapter) {
        snprintf(dir, sizeof dir, FIX "/%s/adapters/%s", model, adapter);
        CHECK_OK(dorac_model_load_adapter(m, dir));
    }
    return m;
}

/* logits and loss of (model, adapter) against expected.safetensors[variant] */
static void check_logits(dorac_model *m, const char *model, const char *variant) {
    cases c;
    CHECK(load_cases(model, &c) == 0);
    int64_t V = dorac_model_get_config(m)->vocab_size;
    float *logits = malloc((size_t)(c.B * c.T * V) * sizeof *logits);
    dorac_batch batch = {c.ids, c.targets, c.B, c.T};
    dorac_forward_result r;
    CHECK_OK(dorac_model_forward(m, &batch, false, 1.0, 0, &r, logits));
    char path[512], key[128];
    snprintf(path, sizeof path, FIX "/%s/expected.safetensors", model);
    dorac_safetensors *st;
    CHECK_OK(dorac_safetensors_open(&st, path));
    size_t n;
    snprintf(key, sizeof key, "%s.logits", variant);
    float *want = read_f32(st, key, &n);
    double worst = 0;
    for (size_t i = 0; want && i < n; i++) worst = test_worst(worst, fabs((double)logits[i] - want[i]));
    snprintf(key, sizeof key, "%s.loss", variant);
    float *want_loss = read_f32(st, key, &n);
    double loss = r.loss_sum / (double)r.n_tokens;
    fprintf(stderr, "%-24s %-12s max|dlogit| %.2e  loss %.6f vs %.6f\n", model, variant, worst, loss,
            want_loss ? want_loss[0] : NAN);
    CHECK_LE(worst, 1e-4);
    CHECK(want_loss != NULL);
    if (want_loss) CHECK_NEAR(loss, want_loss[0], 1e-4);
    free(want), free(want_loss), free(logits);
    dorac_safetensors_close(st);
}

static void check_forward(dorac_backend *be, const char *model, const char *adapter, const char *variant) {
    dorac_model *m = load(be, model, adapter);
    if (!m) return;
    check_logits(m, model, variant);
    dorac_model_free(m);
}

/* One backward pass of the mean loss against PEFT/PyTorch .grad. */
static void check_grads(dorac_backend *be, const char *model, const char *adapter, const char *grads_file) {
    cases c;
    CHECK(load_cases(model, &c) == 0);
    dorac_model *m = load(be, model, adapter);
    if (!m) return;
    if (!adapter) CHECK_OK(dorac_model_set_method(m, DORAC_METHOD_FULL, NULL, NULL, 0));
    dorac_batch batch = {c.ids, c.targets, c.B, c.T};
    dorac_forward_result r;
    int64_t n_tok = 0;
    for (int64_t i = 0; i < c.B * c.T; i++) n_tok += c.targets[i] != DORAC_IGNORE_INDEX;
    CHECK_OK(dorac_model_forward(m, &batch, true, 1.0 / (double)n_tok, 0, &r, NULL));
    CHECK_OK(dorac_model_backward(m));
    char path[512];
    snprintf(path, sizeof path, FIX "/%s/%s", model, grads_file);
    dorac_safetensors *st;
    CHECK_OK(dorac_safetensors_open(&st, path));
    dorac_trainable tr[512];
    size_t n_tr = dorac_model_trainables(m, tr, 512), matched = 0;
    double worst = 0;
    for (size_t i = 0; i < n_tr; i++) {
        const dorac_st_tensor *t = dorac_safetensors_find(st, tr[i].name);
        if (!t && !strncmp(tr[i].name, "lm_head", 7) && dorac_model_get_config(m)->tie_embeddings) continue;
        if (!t) {
            fprintf(stderr, "%s: no reference gradient for %s\n", grads_file, tr[i].name);
            CHECK(t != NULL);
            continue;
        }
        matched++;
        size_t n = (size_t)(tr[i].grad->rows * tr[i].grad->cols);
        CHECK(dorac_st_tensor_numel(t) == n);
        float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
        dorac_st_tensor_read(t, want, DORAC_DTYPE_F32);
        be->download(be, got, DORAC_DTYPE_F32, tr[i].grad);
        dorac_model_param *p = dorac_model_find_param(m, tr[i].name);
        bool transposed = p && p->transposed_at_load;
        double num = 0, den = 1e-30;
        for (int64_t row = 0; row < tr[i].grad->rows; row++)
            for (int64_t col = 0; col < tr[i].grad->cols; col++) {
                /* GPT-2 Conv1D gradients are stored (in, out) */
                size_t k = (size_t)(row * tr[i].grad->cols + col);
                size_t kw = transposed ? (size_t)(col * tr[i].grad->rows + row) : k;
                num = test_worst(num, fabs((double)got[k] - want[kw]));
                den = fmax(den, fabs((double)want[kw]));
            }
        double err = num / den;
        if (err > 1e-4) fprintf(stderr, "%s: %s relative error %.3g\n", grads_file, tr[i].name, err);
        CHECK_LE(err, 1e-4);
        worst = fmax(worst, err);
        free(want), free(got);
    }
    CHECK(matched == dorac_safetensors_count(st));
    fprintf(stderr, "%-24s %-20s %zu gradients, worst relative error %.2e\n", model, grads_file, matched, worst);
    dorac_safetensors_close(st);
    dorac_model_free(m);
}

static void check_rope(dorac_backend *be, const char *model) {
    dorac_model *m = load(be, model, NULL);
    if (!m) return;
    char path[512];
    snprintf(path, sizeof path, FIX "/%s/expected.safetensors", model);
    dorac_safetensors *st;
    CHECK_OK(dorac_safetensors_open(&st, path));
    size_t n;
    float *want = read_f32(st, "rope.inv_freq", &n);
    double got[512];
    dorac_rope_inv_freq(dorac_model_get_config(m), got);
    for (size_t i = 0; want && i < n; i++) CHECK_NEAR(got[i], want[i], 1e-6 * fabs(want[i]));
    free(want);
    dorac_safetensors_close(st);
    dorac_model_free(m);
}

/* dorac's merge against PEFT's merge_and_unload, and a save/load round trip */
static void check_merge(dorac_backend *be, const char *model) {
    dorac_model *m = load(be, model, "dora");
    if (!m) return;
    char tmpl[] = "/tmp/dorac-test-XXXXXX";
    char *tmp = mkdtemp(tmpl);
    CHECK(tmp != NULL);
    char adir[600], mdir[600], src[512], ref[512];
    snprintf(adir, sizeof adir, "%s/adapter", tmp);
    snprintf(mdir, sizeof mdir, "%s/merged", tmp);
    /* save -> load: bit-identical adapter tensors */
    CHECK_OK(dorac_model_save_adapter(m, adir, "fixture"));
    dorac_model *m2 = load(be, model, NULL);
    CHECK_OK(dorac_model_load_adapter(m2, adir));
    dorac_trainable a[512], b[512];
    size_t na = dorac_model_trainables(m, a, 512), nb = dorac_model_trainables(m2, b, 512);
    CHECK(na == nb);
    for (size_t i = 0; i < na && i < nb; i++) {
        size_t n = (size_t)(a[i].value->rows * a[i].value->cols);
        float *x = malloc(n * 4), *y = malloc(n * 4);
        be->download(be, x, DORAC_DTYPE_F32, a[i].value);
        be->download(be, y, DORAC_DTYPE_F32, b[i].value);
        CHECK(!strcmp(a[i].name, b[i].name) && memcmp(x, y, n * 4) == 0);
        free(x), free(y);
    }
    dorac_model_free(m2);
    /* merge and write; compare every tensor with PEFT's merged folder */
    snprintf(src, sizeof src, FIX "/%s", model);
    CHECK_OK(dorac_model_merge_adapters(m));
    CHECK_OK(dorac_model_save(m, mdir, DORAC_DTYPE_F32, src, 1000 * 1000 * 1000));
    snprintf(ref, sizeof ref, FIX "/%s-dora-merged", model);
    dorac_safetensors *got, *want;
    CHECK_OK(dorac_safetensors_open(&got, mdir));
    CHECK_OK(dorac_safetensors_open(&want, ref));
    CHECK(dorac_safetensors_count(got) == dorac_safetensors_count(want));
    double worst = 0;
    for (size_t i = 0; i < dorac_safetensors_count(want); i++) {
        const dorac_st_tensor *w = dorac_safetensors_at(want, i);
        const dorac_st_tensor *g = dorac_safetensors_find(got, w->name);
        CHECK(g != NULL);
        if (!g) continue;
        size_t n = dorac_st_tensor_numel(w);
        CHECK(dorac_st_tensor_numel(g) == n && g->n_dims == w->n_dims);
        float *x = malloc(n * 4), *y = malloc(n * 4);
        dorac_st_tensor_read(g, x, DORAC_DTYPE_F32);
        dorac_st_tensor_read(w, y, DORAC_DTYPE_F32);
        double num = 0, den = 1e-30;
        for (size_t k = 0; k < n; k++) num = test_worst(num, fabs((double)x[k] - y[k])), den = fmax(den, fabs((double)y[k]));
        worst = fmax(worst, num / den);
        free(x), free(y);
    }
    fprintf(stderr, "%-24s merged weights vs PEFT merge_and_unload: worst relative error %.2e\n", model, worst);
    CHECK_LE(worst, 1e-5);
    dorac_safetensors_close(got);
    dorac_safetensors_close(want);
    /* the merged folder evaluates like the adapter */
    cases c;
    CHECK(load_cases(model, &c) == 0);
    dorac_model *mm;
    CHECK_OK(dorac_model_load(&mm, be, mdir));
    dorac_model *ma = load(be, model, "dora");
    dorac_batch batch = {c.ids, c.targets, c.B, c.T};
    dorac_forward_result r1, r2;
    CHECK_OK(dorac_model_forward(mm, &batch, false, 1, 0, &r1, NULL));
    CHECK_OK(dorac_model_forward(ma, &batch, false, 1, 0, &r2, NULL));
    CHECK_NEAR(r1.loss_sum / (double)r1.n_tokens, r2.loss_sum / (double)r2.n_tokens, 1e-5);
    dorac_model_free(mm), dorac_model_free(ma), dorac_model_free(m);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
}

/* Adapter dropout acts in training only: an eval forward of an adapter with
** lora_dropout > 0 gives exactly the dropout-free logits, a train forward
** does not. */
static void check_dropout_eval(dorac_backend *be) {
    cases c;
    CHECK(load_cases("llama-gqa", &c) == 0);
    dorac_model *m = load(be, "llama-gqa", "dora");
    if (!m) return;
    int64_t n = c.B * c.T * dorac_model_get_config(m)->vocab_size;
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
    dorac_batch batch = {c.ids, c.targets, c.B, c.T};
    dorac_forward_result r0, r1, r2;
    CHECK_OK(dorac_model_forward(m, &batch, false, 1, 0, &r0, a));
    for (size_t i = 0; i < dorac_model_n_linears(m); i++) dorac_model_linear_at(m, i)->L.cfg.dropout = 0.3;
    CHECK_OK(dorac_model_forward(m, &batch, false, 1, 9, &r1, b));
    CHECK(memcmp(a, b, (size_t)n * 4) == 0);
    CHECK_OK(dorac_model_forward(m, &batch, true, 1, 9, &r2, NULL));
    CHECK(r2.loss_sum != r1.loss_sum);
    free(a), free(b);
    dorac_model_free(m);
}

/* dorac_model_clear_adapters: a model that had the DoRA adapter, cleared,
** gives transformers' base logits; with the LoRA adapter loaded next, PEFT's
** LoRA logits; after a load that fails half-way (llama-tied's adapter has
** other shapes), clearing gives the base again. Full fine-tuning cannot be
** cleared. */
static void check_clear_adapters(dorac_backend *be) {
    dorac_model *m = load(be, "llama-gqa", "dora");
    if (!m) return;
    CHECK_OK(dorac_model_clear_adapters(m));
    CHECK(dorac_model_method(m) == DORAC_METHOD_FROZEN);
    dorac_trainable tr[4];
    CHECK(dorac_model_trainables(m, tr, 4) == 0);
    check_logits(m, "llama-gqa", "base");
    CHECK_OK(dorac_model_load_adapter(m, FIX "/llama-gqa/adapters/lora"));
    check_logits(m, "llama-gqa", "lora");
    CHECK_OK(dorac_model_clear_adapters(m));
    CHECK(dorac_model_load_adapter(m, FIX "/llama-tied/adapters/dora") != DORAC_OK);
    CHECK_OK(dorac_model_clear_adapters(m));
    check_logits(m, "llama-gqa", "base");
    CHECK_OK(dorac_model_clear_adapters(m)); /* nothing attached: a no-op */
    dorac_model_free(m);
    m = load(be, "llama-gqa", NULL);
    if (!m) return;
    CHECK_OK(dorac_model_set_method(m, DORAC_METHOD_FULL, NULL, NULL, 0));
    CHECK_STATUS(dorac_model_clear_adapters(m), DORAC_E_INVALID);
    dorac_model_free(m);
}

static void check_bad_adapters(dorac_backend *be) {
    /* gpt2's adapter on a llama model: names modules the model lacks */
    dorac_model *m = load(be, "llama-gqa", NULL);
    CHECK_STATUS(dorac_model_load_adapter(m, FIX "/gpt2/adapters/dora"), DORAC_E_FORMAT);
    CHECK(strstr(dorac_last_error(), "transformer.h.0") != NULL);
    dorac_model_free(m);
    /* llama-tied's adapter (head_dim 32) on llama-gqa: same module names, other shapes */
    m = load(be, "llama-gqa", NULL);
    CHECK(dorac_model_load_adapter(m, FIX "/llama-tied/adapters/dora") != DORAC_OK);
    CHECK(strstr(dorac_last_error(), "shape") != NULL && strstr(dorac_last_error(), "[") != NULL);
    dorac_model_free(m);
    /* a folder that does not exist */
    m = load(be, "llama-gqa", NULL);
    CHECK(dorac_model_load_adapter(m, FIX "/no-such-adapter") != DORAC_OK);
    dorac_model_free(m);
    dorac_model *none = NULL;
    CHECK(dorac_model_load(&none, be, FIX "/no-such-model") != DORAC_OK && none == NULL);
}

int main(void) {
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    const char *models[] = {"llama-gqa", "llama-tied", "qwen2", "mistral", "gpt2"};
    const char *adapters[] = {"dora", "lora", "rslora"};
    for (size_t i = 0; i < 5; i++) {
        check_forward(be, models[i], NULL, "base");
        for (size_t k = 0; k < 3; k++) check_forward(be, models[i], adapters[k], adapters[k]);
        check_grads(be, models[i], "dora", "grads_dora.safetensors");
        check_grads(be, models[i], "lora", "grads_lora.safetensors");
        if (strcmp(models[i], "gpt2")) check_rope(be, models[i]);
    }
    check_forward(be, "llama-gqa", "dora_pattern", "dora_pattern");
    check_forward(be, "llama-gqa", "dora_regex", "dora_regex");
    check_forward(be, "llama-gqa-bf16-sharded", NULL, "base");
    check_forward(be, "llama-tied-dora-merged", NULL, "base");
    check_forward(be, "gpt2-dora-merged", NULL, "base");
    check_grads(be, "llama-tied", NULL, "grads_full.safetensors");
    check_grads(be, "gpt2", NULL, "grads_full.safetensors");
    check_merge(be, "llama-tied");
    check_merge(be, "gpt2");
    check_bad_adapters(be);
    check_clear_adapters(be);
    check_dropout_eval(be);
    dorac_backend_destroy(be);
    return test_report();
}
