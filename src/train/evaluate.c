/*
** evaluate.c — mean next-token loss over a dataset (see evaluate.h).
*/
#include "train/evaluate.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"

int dorac_evaluate(dorac_model *m, const dorac_dataset *ds, int64_t batch_size, double *loss, int64_t *tokens) {
    const dorac_model_config *c = dorac_model_get_config(m);
    int64_t max_len = 0;
    for (size_t i = 0; i < ds->n; i++) {
        if (ds->ex[i].n > c->max_positions)
            return dorac_error(DORAC_E_INVALID, "example at line %lld has %lld tokens, more than max_position_embeddings %lld",
                               (long long)ds->ex[i].line, (long long)ds->ex[i].n, (long long)c->max_positions);
        if (ds->ex[i].n > max_len) max_len = ds->ex[i].n;
    }
    int32_t *ids = malloc((size_t)(batch_size * max_len) * sizeof *ids);
    int32_t *tg = malloc((size_t)(batch_size * max_len) * sizeof *tg);
    if (!ids || !tg) {
        free(ids), free(tg);
        return dorac_error(DORAC_E_NOMEM, "eval: out of memory");
    }
    double sum = 0;
    int64_t count = 0;
    int rc = DORAC_OK;
    for (size_t i0 = 0; i0 < ds->n && !rc; i0 += (size_t)batch_size) {
        size_t nb = ds->n - i0 < (size_t)batch_size ? ds->n - i0 : (size_t)batch_size;
        int64_t T = 1;
        for (size_t k = 0; k < nb; k++) T = ds->ex[i0 + k].n > T ? ds->ex[i0 + k].n : T;
        for (size_t k = 0; k < nb; k++) {
            const dorac_example *e = &ds->ex[i0 + k];
            for (int64_t t = 0; t < T; t++) {
                ids[(int64_t)k * T + t] = t < e->n ? e->ids[t] : 0;
                tg[(int64_t)k * T + t] = t + 1 < e->n ? e->labels[t + 1] : DORAC_IGNORE_INDEX;
            }
        }
        dorac_batch b = {ids, tg, (int64_t)nb, T};
        dorac_forward_result r;
        rc = dorac_model_forward(m, &b, false, 1.0, 0, &r, NULL);
        sum += r.loss_sum;
        count += r.n_tokens;
    }
    free(ids), free(tg);
    *loss = count ? sum / (double)count : NAN;
    *tokens = count;
    return rc;
}

