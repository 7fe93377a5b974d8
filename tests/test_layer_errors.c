/*
** test_layer_errors.c — bad input to the layer and the raw-array API gets a
** clear status and message, never an abort: shape mismatches, a rank larger
** than min(in, out), bad dropout, missing tensors, wrong dtypes, NULLs.
*/
#include <string.h>

#include "adapter/linear.h"
#include "test.h"

static int mentions(const char *needle) { return strstr(dorac_last_error(), needle) != NULL; }

int main(void) {
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    dorac_dtype f32 = DORAC_DTYPE_F32;
    dorac_tensor W, A, B, m, x, y, u, W_bad, x_bad, W64;
    CHECK_OK(dorac_tensor_alloc(be, &W, f32, 7, 13, "W"));
    CHECK_OK(dorac_tensor_alloc(be, &A, f32, 3, 13, "A"));
    CHECK_OK(dorac_tensor_alloc(be, &B, f32, 7, 3, "B"));
    CHECK_OK(dorac_tensor_alloc(be, &m, f32, 1, 7, "m"));
    CHECK_OK(dorac_tensor_alloc(be, &x, f32, 5, 13, "x"));
    CHECK_OK(dorac_tensor_alloc(be, &y, f32, 5, 7, "y"));
    CHECK_OK(dorac_tensor_alloc(be, &u, f32, 5, 3, "u"));
    CHECK_OK(dorac_tensor_alloc(be, &W_bad, f32, 7, 12, "W_bad"));
    CHECK_OK(dorac_tensor_alloc(be, &x_bad, f32, 5, 12, "x_bad"));
    CHECK_OK(be->fill(be, &W, 0.1));
    CHECK_OK(be->fill(be, &A, 0.1));
    CHECK_OK(be->fill(be, &B, 0.1));
    CHECK_OK(be->fill(be, &m, 1.0));
    CHECK_OK(be->fill(be, &x, 1.0));
    W64 = W;
    W64.type = DORAC_DTYPE_F64;
    dorac_tensor none = dorac_tensor_none(f32);
    dorac_linear L;
    dorac_adapter_config cfg = {.method = DORAC_METHOD_DORA, .rank = 3, .alpha = 6};
    dorac_linear_tensors t = {.W = W, .bias = none, .A = A, .B = B, .m = m,
                              .dA = none, .dB = none, .dm = none, .dW = none, .dbias = none};

    /* rank larger than min(in, out) */
    dorac_adapter_config big = cfg;
    big.rank = 8;
    CHECK_STATUS(dorac_linear_init(&L, be, &big, 13, 7, &t, "q_proj"), DORAC_E_INVALID);
    CHECK(mentions("q_proj") && mentions("rank 8"));
    /* LoRA needs rank >= 1; DoRA allows 0 */
    dorac_adapter_config lora0 = {.method = DORAC_METHOD_LORA, .rank = 0, .alpha = 1};
    CHECK_STATUS(dorac_linear_init(&L, be, &lora0, 13, 7, &t, "v_proj"), DORAC_E_INVALID);
    /* dropout outside [0, 1) */
    dorac_adapter_config drop = cfg;
    drop.dropout = 1.0;
    CHECK_STATUS(dorac_linear_init(&L, be, &drop, 13, 7, &t, "k_proj"), DORAC_E_INVALID);
    CHECK(mentions("dropout"));
    /* weight of the wrong shape */
    dorac_linear_tensors tw = t;
    tw.W = W_bad;
    CHECK_STATUS(dorac_linear_init(&L, be, &cfg, 13, 7, &tw, "o_proj"), DORAC_E_INVALID);
    CHECK(mentions("o_proj") && mentions("(7, 12)") && mentions("(7, 13)"));
    /* a missing lora_B */
    dorac_linear_tensors tb = t;
    tb.B = none;
    CHECK_STATUS(dorac_linear_init(&L, be, &cfg, 13, 7, &tb, "up_proj"), DORAC_E_INVALID);
    CHECK(mentions("lora_B") && mentions("missing"));
    /* a missing magnitude for DoRA */
    dorac_linear_tensors tm = t;
    tm.m = none;
    CHECK_STATUS(dorac_linear_init(&L, be, &cfg, 13, 7, &tm, "down_proj"), DORAC_E_INVALID);
    CHECK(mentions("magnitude"));
    /* a weight of a dtype the backend does not hold */
    dorac_linear_tensors t64 = t;
    t64.W = W64;
    CHECK_STATUS(dorac_linear_init(&L, be, &cfg, 13, 7, &t64, "gate_proj"), DORAC_E_INVALID);
    CHECK(mentions("F64"));
    /* negative or zero shapes */
    CHECK_STATUS(dorac_linear_init(&L, be, &cfg, 0, 7, &t, "x"), DORAC_E_INVALID);

    /* a valid layer, then inputs of the wrong shape */
    CHECK_OK(dorac_linear_init(&L, be, &cfg, 13, 7, &t, "good"));
    CHECK_STATUS(dorac_linear_forward(&L, &y, &u, &x_bad, 0), DORAC_E_INVALID);
    CHECK(mentions("x") && mentions("(5, 12)"));
    CHECK_STATUS(dorac_linear_forward(&L, &u, &u, &x, 0), DORAC_E_INVALID); /* y too narrow */
    CHECK_OK(dorac_linear_forward(&L, &y, &u, &x, 0));
    CHECK_STATUS(dorac_linear_backward(&L, &x_bad, false, &y, NULL, &x, &y, &u, 0), DORAC_E_INVALID);
    dorac_linear_free(&L);

    /* backend ops check shapes themselves */
    CHECK_STATUS(be->gemm(be, &y, &x, false, &W_bad, true, 1, 0), DORAC_E_INVALID);
    CHECK(mentions("gemm"));
    CHECK_STATUS(be->gemm(be, &y, &x, false, &W64, true, 1, 0), DORAC_E_UNSUPPORTED);

    /* the raw-array API */
    float Wh[7 * 13] = {0}, Ah[3 * 13] = {0}, Bh[7 * 3] = {0}, mh[7] = {0}, xh[5 * 13] = {0}, yh[5 * 7];
    dorac_dora_weights w = {.in = 13, .out = 7, .rank = 9, .scale = 1, .W0 = Wh, .A = Ah, .B = Bh, .m = mh};
    CHECK_STATUS(dorac_dora_forward(&w, 5, xh, yh), DORAC_E_INVALID);
    CHECK(mentions("rank 9"));
    w.rank = 3;
    w.A = NULL;
    CHECK_STATUS(dorac_dora_forward(&w, 5, xh, yh), DORAC_E_INVALID);
    w.A = Ah;
    CHECK_STATUS(dorac_dora_forward(NULL, 5, xh, yh), DORAC_E_INVALID);
    CHECK_STATUS(dorac_dora_forward(&w, -1, xh, yh), DORAC_E_INVALID);
    CHECK_STATUS(dorac_dora_backward(&w, 5, xh, yh, NULL, NULL, NULL, NULL, NULL), DORAC_E_INVALID);
    w.norm_grad = 7;
    CHECK_STATUS(dorac_dora_forward(&w, 5, xh, yh), DORAC_E_INVALID);
    CHECK(mentions("norm_grad"));

    dorac_tensor *all[] = {&W, &A, &B, &m, &x, &y, &u, &W_bad, &x_bad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dorac_tensor_free(be, all[i]);
    dorac_backend_destroy(be);
    return test_report();
}
