/*
** test_layer_peft.c — one adapted linear layer against PEFT 0.21 itself.
** tests/fixtures/layer/<case>.safetensors are written by
** tools/ref/make_layer_fixtures.py: x, W0, bias, A, B, m, dy and PEFT's y,
** dx, dA, dB, dm for DoRA (with and without bias, r = 1, rsLoRA, a batch
** that crosses the backward's row chunks) and plain LoRA. PEFT detaches
** the norm, so dorac runs with norm_grad = detach. Everything must agree in
** fp32 to 1e-5 relative (max |diff| / max |reference| per tensor), in both
** the chunked and the in-place backward.
*/
#include <stdlib.h>
#include <string.h>

#include "adapter/linear.h"
#include "io/safetensors.h"
#include "test.h"

static dorac_tensor upload(dorac_backend *be, const dorac_safetensors *st, const char *name, int64_t rows,
                           int64_t cols) {
    dorac_tensor t = dorac_tensor_none(DORAC_DTYPE_F32);
    const dorac_st_tensor *s = dorac_safetensors_find(st, name);
    if (!s) return t;
    CHECK((int64_t)dorac_st_tensor_numel(s) == rows * cols);
    float *h = malloc(dorac_st_tensor_numel(s) * sizeof *h);
    CHECK_OK(dorac_st_tensor_read(s, h, DORAC_DTYPE_F32));
    CHECK_OK(dorac_tensor_alloc(be, &t, DORAC_DTYPE_F32, rows, cols, name));
    CHECK_OK(be->upload(be, &t, h, DORAC_DTYPE_F32));
    free(h);
    return t;
}

static void compare(dorac_backend *be, const dorac_safetensors *st, const char *name, const dorac_tensor *got,
                    const char *case_name) {
    const dorac_st_tensor *s = dorac_safetensors_find(st, name);
    CHECK(s != NULL);
    if (!s) return;
    size_t n = dorac_st_tensor_numel(s);
    float *want = malloc(n * sizeof *want), *have = malloc(n * sizeof *have);
    dorac_st_tensor_read(s, want, DORAC_DTYPE_F32);
    be->download(be, have, DORAC_DTYPE_F32, got);
    double num = 0, den = 1e-30;
    for (size_t i = 0; i < n; i++) num = test_worst(num, fabs((double)have[i] - want[i])), den = fmax(den, fabs((double)want[i]));
    if (num / den > 1e-5) fprintf(stderr, "%s: %s relative error %.3g\n", case_name, name, num / den);
    CHECK_LE(num / den, 1e-5);
    free(want), free(have);
}

static void check_case(dorac_backend *be, const char *name, bool in_place) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/layer/%s.safetensors", name);
    dorac_safetensors *st;
    CHECK_OK(dorac_safetensors_open(&st, path));
    if (!st) return;
    const dorac_st_tensor *x0 = dorac_safetensors_find(st, "x"), *a0 = dorac_safetensors_find(st, "A");
    int64_t N = x0->shape[0], in = x0->shape[1], r = a0->shape[0];
    int64_t out = dorac_safetensors_find(st, "W0")->shape[0];
    bool dora = atoi(dorac_safetensors_metadata(st, "use_dora")) != 0;
    double alpha = atof(dorac_safetensors_metadata(st, "alpha"));
    bool rslora = atoi(dorac_safetensors_metadata(st, "use_rslora")) != 0;
    dorac_tensor none = dorac_tensor_none(DORAC_DTYPE_F32);
    dorac_tensor x = upload(be, st, "x", N, in), W = upload(be, st, "W0", out, in), bias = upload(be, st, "bias", 1, out);
    dorac_tensor A = upload(be, st, "A", r, in), B = upload(be, st, "B", out, r), m = dora ? upload(be, st, "m", 1, out) : none;
    dorac_tensor dy = upload(be, st, "dy", N, out), y, dx, u, dA, dB, dm = none;
    CHECK_OK(dorac_tensor_alloc(be, &y, DORAC_DTYPE_F32, N, out, "y"));
    CHECK_OK(dorac_tensor_alloc(be, &dx, DORAC_DTYPE_F32, N, in, "dx"));
    CHECK_OK(dorac_tensor_alloc(be, &u, DORAC_DTYPE_F32, N, r, "u"));
    CHECK_OK(dorac_tensor_alloc(be, &dA, DORAC_DTYPE_F32, r, in, "dA"));
    CHECK_OK(dorac_tensor_alloc(be, &dB, DORAC_DTYPE_F32, out, r, "dB"));
    CHECK_OK(be->fill(be, &dA, 0));
    CHECK_OK(be->fill(be, &dB, 0));
    if (dora) {
        CHECK_OK(dorac_tensor_alloc(be, &dm, DORAC_DTYPE_F32, 1, out, "dm"));
        CHECK_OK(be->fill(be, &dm, 0));
    }
    dorac_adapter_config cfg = {.method = dora ? DORAC_METHOD_DORA : DORAC_METHOD_LORA, .rank = (int)r,
                                .alpha = alpha, .use_rslora = rslora, .norm_grad = DORAC_NORM_GRAD_DETACH};
    dorac_linear_tensors t = {.W = W, .bias = bias, .A = A, .B = B, .m = m, .dA = dA, .dB = dB, .dm = dm,
                              .dW = none, .dbias = none};
    dorac_linear L;
    CHECK_OK(dorac_linear_init(&L, be, &cfg, in, out, &t, name));
    CHECK_NEAR(L.scale, atof(dorac_safetensors_metadata(st, "scale")), 1e-12);
    CHECK_OK(dorac_linear_forward(&L, &y, &u, &x, 0));
    CHECK_OK(dorac_linear_backward(&L, &dx, false, &dy, in_place ? &dy : NULL, &x, &y, &u, 0));
    compare(be, st, "y", &y, name);
    compare(be, st, "dx", &dx, name);
    compare(be, st, "dA", &dA, name);
    compare(be, st, "dB", &dB, name);
    if (dora) compare(be, st, "dm", &dm, name);
    dorac_linear_free(&L);
    dorac_tensor *all[] = {&x, &W, &bias, &A, &B, &m, &dy, &y, &dx, &u, &dA, &dB, &dm};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dorac_tensor_free(be, all[i]);
    dorac_safetensors_close(st);
}

int main(void) {
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    const char *cases[] = {"dora_bias", "dora_r1_nobias", "dora_rslora", "dora_chunked", "lora_bias", "lora_rslora"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_case(be, cases[i], false);
        check_case(be, cases[i], true);
    }
    dorac_backend_destroy(be);
    return test_report();
}
