/*
** test_layer_determinism.c — the same inputs and thread count give
** bit-identical outputs and gradients on every run (DESIGN.md §4), for LoRA
** and both DoRA modes with dropout, across the backward's row chunks.
*/
#include <string.h>

#include "layer_fixture.h"
#include "test.h"

static void run(dorac_backend *be, const fixture_case *c, double **out, size_t *n_out) {
    fixture f;
    CHECK_OK(fixture_init(&f, be, c));
    CHECK_OK(fixture_forward(&f));
    CHECK_OK(fixture_backward(&f));
    dorac_tensor *ts[] = {&f.ty, &f.tdx, &f.tdA, &f.tdB, &f.tdm};
    size_t total = 0;
    for (size_t k = 0; k < 5; k++) total += ts[k]->data ? (size_t)(ts[k]->rows * ts[k]->cols) : 0;
    *out = malloc(total * sizeof(double));
    *n_out = total;
    size_t at = 0;
    for (size_t k = 0; k < 5; k++) {
        if (!ts[k]->data) continue;
        double *h = fixture_get(&f, ts[k]);
        size_t n = (size_t)(ts[k]->rows * ts[k]->cols);
        memcpy(*out + at, h, n * sizeof(double));
        at += n;
        free(h);
    }
    fixture_free(&f);
}

int main(void) {
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){.n_threads = 2});
    const fixture_case cases[] = {
        {"lora dropout", DORAC_METHOD_LORA, 96, 80, 700, 8, true, 0, 0.1, false},
        {"dora detach dropout", DORAC_METHOD_DORA, 96, 80, 700, 8, true, DORAC_NORM_GRAD_DETACH, 0.1, false},
        {"dora exact", DORAC_METHOD_DORA, 96, 80, 700, 8, false, DORAC_NORM_GRAD_EXACT, 0, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double *a, *b;
        size_t na, nb;
        run(be, &cases[i], &a, &na);
        run(be, &cases[i], &b, &nb);
        CHECK(na == nb && na > 0);
        CHECK(memcmp(a, b, na * sizeof(double)) == 0);
        free(a), free(b);
    }
    dorac_backend_destroy(be);
    return test_report();
}
