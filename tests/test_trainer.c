/*
** test_trainer.c — training actually trains what it says: after a short
** DoRA run every magnitude vector has moved away from ||W0 row|| and every
** B away from 0 (the bugs REFERENCES.md lists: frozen magnitudes, DoRA
** silently training as LoRA); a LoRA run saves no magnitudes; the loss on
** the training data goes down; full fine-tuning changes the base weights.
*/
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <stdlib.h>
#include <string.h>

#include "train/trainer.h"
#include "test.h"

#define MODEL "tests/fixtures/models/llama-gqa"

static void run(const char *out, dorac_method method, dorac_train_result *res) {
    dorac_train_config c;
    dorac_train_config_defaults(&c);
    c.model_dir = MODEL;
    c.data_path = "tests/fixtures/train/kjv_genesis.jsonl";
    c.eval_path = c.data_path; /* loss on the training data, before and after */
    c.out_dir = out;
    c.method = method;
    c.rank = 4;
    c.alpha = 8;
    c.adamw.lr = method == DORAC_METHOD_FULL ? 1e-3 : 3e-3;
    c.steps = 30;
    c.batch_size = 4;
    c.seq_len = 32;
    c.epochs = 0;
    CHECK_OK(dorac_train(&c, NULL, res));
    CHECK(res->steps_done == 30);
    CHECK(res->eval_loss_after < res->eval_loss_before - 0.01);
    if (!(res->eval_loss_after < res->eval_loss_before - 0.01))
        fprintf(stderr, "%s: loss %.4f -> %.4f\n", out, res->eval_loss_before, res->eval_loss_after);
}

static bool stop_at_3(void *ctx, const dorac_train_progress *p) {
    (void)ctx;
    return p->step < 3;
}

/* A step callback that returns false stops the run: metrics written, no
** final adapter (a later --resume continues from a checkpoint). */
static void stop_early(const char *dir) {
    dorac_train_config c;
    dorac_train_config_defaults(&c);
    char out[300], path[400];
    snprintf(out, sizeof out, "%s/stopped", dir);
    c.model_dir = MODEL;
    c.data_path = "tests/fixtures/train/kjv_genesis.jsonl";
    c.out_dir = out;
    c.rank = 2, c.alpha = 4, c.steps = 10, c.epochs = 0, c.batch_size = 2, c.seq_len = 16;
    dorac_train_callbacks cb = {NULL, stop_at_3, NULL};
    dorac_train_result res;
    CHECK_OK(dorac_train(&c, &cb, &res));
    CHECK(res.steps_done == 3);
    snprintf(path, sizeof path, "%s/adapter", out);
    FILE *f = fopen(path, "r");
    CHECK(f == NULL);
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    f = fopen(path, "r");
    int lines = 0, ch;
    while (f && (ch = fgetc(f)) != EOF) lines += ch == '\n';
    if (f) fclose(f);
    CHECK(lines == 3);
}

int main(void) {
    char tmpl[] = "/tmp/dorac-trainer-XXXXXX";
    char *dir = mkdtemp(tmpl);
    char out[256], path[300];
    dorac_train_result res;
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});

    /* DoRA: magnitudes and B move */
    snprintf(out, sizeof out, "%s/dora", dir);
    run(out, DORAC_METHOD_DORA, &res);
    dorac_model *m;
    CHECK_OK(dorac_model_load(&m, be, MODEL));
    snprintf(path, sizeof path, "%s/adapter", out);
    CHECK_OK(dorac_model_load_adapter(m, path));
    CHECK(dorac_model_method(m) == DORAC_METHOD_DORA);
    size_t adapted = 0;
    for (size_t i = 0; i < dorac_model_n_linears(m); i++) {
        dorac_model_linear *l = dorac_model_linear_at(m, i);
        if (!l->m.data) continue;
        adapted++;
        int64_t out_dim = l->out, in_dim = l->in;
        float *mv = malloc((size_t)out_dim * 4), *W = malloc((size_t)(out_dim * in_dim) * 4);
        float *B = malloc((size_t)(out_dim * l->L.cfg.rank) * 4);
        be->download(be, mv, DORAC_DTYPE_F32, &l->m);
        be->download(be, W, DORAC_DTYPE_F32, &l->L.t.W);
        be->download(be, B, DORAC_DTYPE_F32, &l->B);
        double moved = 0, bmax = 0;
        for (int64_t o = 0; o < out_dim; o++) {
            double n0 = 0;
            for (int64_t j = 0; j < in_dim; j++) n0 += (double)W[o * in_dim + j] * W[o * in_dim + j];
            moved = fmax(moved, fabs(mv[o] - sqrt(n0)));
        }
        for (int64_t k = 0; k < out_dim * l->L.cfg.rank; k++) bmax = fmax(bmax, fabs(B[k]));
        if (!(moved > 1e-4)) fprintf(stderr, "%s: magnitude did not move (%.2g)\n", l->path, moved);
        CHECK(moved > 1e-4);
        CHECK(bmax > 1e-4);
        free(mv), free(W), free(B);
    }
    CHECK(adapted == 14); /* all-linear on 2 layers */
    dorac_model_free(m);

    /* LoRA: no magnitude tensors at all */
    snprintf(out, sizeof out, "%s/lora", dir);
    run(out, DORAC_METHOD_LORA, &res);
    CHECK_OK(dorac_model_load(&m, be, MODEL));
    snprintf(path, sizeof path, "%s/adapter", out);
    CHECK_OK(dorac_model_load_adapter(m, path));
    CHECK(dorac_model_method(m) == DORAC_METHOD_LORA);
    for (size_t i = 0; i < dorac_model_n_linears(m); i++) CHECK(dorac_model_linear_at(m, i)->m.data == NULL);
    dorac_model_free(m);

    /* full fine-tuning: the saved weights differ from the base */
    snprintf(out, sizeof out, "%s/full", dir);
    run(out, DORAC_METHOD_FULL, &res);
    dorac_model *base, *tuned;
    CHECK_OK(dorac_model_load(&base, be, MODEL));
    snprintf(path, sizeof path, "%s/model", out);
    CHECK_OK(dorac_model_load(&tuned, be, path));
    size_t changed = 0;
    for (size_t i = 0; i < dorac_model_n_params(base); i++) {
        dorac_model_param *a = dorac_model_param_at(base, i), *b = dorac_model_param_at(tuned, i);
        size_t n = (size_t)(a->w.rows * a->w.cols);
        float *x = malloc(n * 4), *y = malloc(n * 4);
        be->download(be, x, DORAC_DTYPE_F32, &a->w);
        be->download(be, y, DORAC_DTYPE_F32, &b->w);
        changed += memcmp(x, y, n * 4) != 0;
        free(x), free(y);
    }
    CHECK(changed == dorac_model_n_params(base));
    dorac_model_free(base), dorac_model_free(tuned);

    stop_early(dir);
    dorac_backend_destroy(be);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return test_report();
}
