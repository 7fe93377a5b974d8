/*
** test_optimizer.c — AdamW, gradient clipping and LR schedules against
** torch.optim.AdamW, clip_grad_norm_ and transformers' schedules
** (tests/fixtures/optim, made by tools/ref/make_optim_fixtures.py), and the
** optimizer state's save/load round trip.
*/
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "train/optimizer.h"
#include "train/schedule.h"
#include "test.h"

static void upload_named(dorac_backend *be, dorac_safetensors *st, const char *name, dorac_tensor *t) {
    const dorac_st_tensor *s = dorac_safetensors_find(st, name);
    CHECK(s != NULL && (int64_t)dorac_st_tensor_numel(s) == t->rows * t->cols);
    float buf[64];
    CHECK_OK(dorac_st_tensor_read(s, buf, DORAC_DTYPE_F32));
    CHECK_OK(be->upload(be, t, buf, DORAC_DTYPE_F32));
}

static double max_rel(dorac_backend *be, dorac_safetensors *st, const char *name, dorac_tensor *t) {
    const dorac_st_tensor *s = dorac_safetensors_find(st, name);
    float want[64], got[64];
    dorac_st_tensor_read(s, want, DORAC_DTYPE_F32);
    be->download(be, got, DORAC_DTYPE_F32, t);
    double num = 0, den = 1e-30;
    for (int64_t i = 0; i < t->rows * t->cols; i++) num = test_worst(num, fabs((double)got[i] - want[i])), den = fmax(den, fabs(want[i]));
    return num / den;
}

int main(void) {
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    dorac_safetensors *st;
    CHECK_OK(dorac_safetensors_open(&st, "tests/fixtures/optim/adamw.safetensors"));
    dorac_tensor p[2], g[2];
    CHECK_OK(dorac_tensor_alloc(be, &p[0], DORAC_DTYPE_F32, 3, 5, "p0"));
    CHECK_OK(dorac_tensor_alloc(be, &p[1], DORAC_DTYPE_F32, 1, 7, "p1"));
    CHECK_OK(dorac_tensor_alloc(be, &g[0], DORAC_DTYPE_F32, 3, 5, "g0"));
    CHECK_OK(dorac_tensor_alloc(be, &g[1], DORAC_DTYPE_F32, 1, 7, "g1"));
    upload_named(be, st, "p0_init", &p[0]);
    upload_named(be, st, "p1_init", &p[1]);
    dorac_trainable tr[2] = {{"p0", &p[0], &g[0], true}, {"p1", &p[1], &g[1], false}};
    dorac_optimizer o;
    CHECK_OK(dorac_optimizer_init(&o, be, tr, 2));
    dorac_adamw_config c = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .max_grad_norm = 0.5};
    float lrs[6], norms[6];
    size_t n;
    CHECK_OK(dorac_st_tensor_read(dorac_safetensors_find(st, "lr"), lrs, DORAC_DTYPE_F32));
    CHECK_OK(dorac_st_tensor_read(dorac_safetensors_find(st, "grad_norm"), norms, DORAC_DTYPE_F32));
    (void)n;
    char name[32];
    for (int k = 0; k < 6; k++) {
        snprintf(name, sizeof name, "g%d_0", k);
        upload_named(be, st, name, &g[0]);
        snprintf(name, sizeof name, "g%d_1", k);
        upload_named(be, st, name, &g[1]);
        double norm, lr = c.lr * dorac_schedule_factor(DORAC_SCHEDULE_LINEAR, k, 2, 6);
        CHECK_NEAR(lr, lrs[k], 1e-9);
        CHECK_OK(dorac_optimizer_grad_norm(&o, &norm));
        CHECK_NEAR(norm, norms[k], 1e-5 * norms[k]);
        CHECK_OK(dorac_optimizer_step(&o, &c, lr, norm));
        snprintf(name, sizeof name, "p%d_0", k);
        CHECK_LE(max_rel(be, st, name, &p[0]), 2e-6);
        snprintf(name, sizeof name, "p%d_1", k);
        CHECK_LE(max_rel(be, st, name, &p[1]), 2e-6);
    }
    CHECK(o.step == 6);

    /* state round trip: save, perturb, load, identical moments and step */
    char tmpl[] = "/tmp/dorac-optim-XXXXXX";
    char *dir = mkdtemp(tmpl);
    char path[256];
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    CHECK_OK(dorac_optimizer_save(&o, path));
    float m0[15], m1[15];
    be->download(be, m0, DORAC_DTYPE_F32, &o.m[0]);
    CHECK_OK(be->fill(be, &o.m[0], 3.0));
    o.step = 99;
    CHECK_OK(dorac_optimizer_load(&o, path));
    be->download(be, m1, DORAC_DTYPE_F32, &o.m[0]);
    CHECK(memcmp(m0, m1, sizeof m0) == 0);
    CHECK(o.step == 6);
    /* a state file for other tensors is rejected, naming the tensor */
    dorac_trainable other[1] = {{"q", &p[1], &g[1], false}};
    dorac_optimizer o2;
    CHECK_OK(dorac_optimizer_init(&o2, be, other, 1));
    CHECK_STATUS(dorac_optimizer_load(&o2, path), DORAC_E_FORMAT);
    CHECK(strstr(dorac_last_error(), "q.exp_avg") != NULL);
    dorac_optimizer_free(&o2);
    unlink(path);
    rmdir(dir);
    dorac_optimizer_free(&o);
    dorac_safetensors_close(st);

    /* schedules against transformers */
    CHECK_OK(dorac_safetensors_open(&st, "tests/fixtures/optim/schedules.safetensors"));
    const char *names[] = {"linear", "cosine", "constant"};
    for (int s = 0; s < 3; s++) {
        double want[20];
        CHECK_OK(dorac_st_tensor_read(dorac_safetensors_find(st, names[s]), want, DORAC_DTYPE_F64));
        CHECK(dorac_schedule_parse(names[s]) == s);
        for (int k = 0; k < 20; k++) CHECK_NEAR(dorac_schedule_factor((dorac_schedule)s, k, 4, 20), want[k], 1e-12);
    }
    CHECK(dorac_schedule_parse("exponential") == -1);
    dorac_safetensors_close(st);
    for (int i = 0; i < 2; i++) dorac_tensor_free(be, &p[i]), dorac_tensor_free(be, &g[i]);
    dorac_backend_destroy(be);
    return test_report();
}
