/*
** rope.c — rotary position embedding tables, as transformers computes them
** for rope_type default, linear and llama3.
**
** inv_freq[j] = theta^(-2j/D), j < D/2. linear divides every frequency by
** factor (equivalently, positions). llama3 divides low frequencies (long
** wavelengths) by factor, keeps high ones, and blends in between
** (transformers' _compute_llama3_parameters). The tables hold cos and sin
** of pos * inv_freq[j] for pos < max_positions, computed in double.
*/
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "model/model_internal.h"

#define DORAC_PI 3.14159265358979323846

void dorac_rope_inv_freq(const dorac_model_config *cfg, double *inv_freq) {
    int64_t D = cfg->head_dim, half = D / 2;
    for (int64_t j = 0; j < half; j++) {
        /* transformers computes these in float32; we keep double */
        double f = 1.0 / pow(cfg->rope_theta, (double)(2 * j) / (double)D);
        if (cfg->rope_type == DORAC_MODEL_ROPE_LINEAR) {
            f /= cfg->rope_factor;
        } else if (cfg->rope_type == DORAC_MODEL_ROPE_LLAMA3) {
            double old_len = (double)cfg->rope_original_max_positions;
            double low_wavelen = old_len / cfg->rope_low_freq_factor;
            double high_wavelen = old_len / cfg->rope_high_freq_factor;
            double wavelen = 2.0 * DORAC_PI / f;
            if (wavelen > low_wavelen) {
                f /= cfg->rope_factor;
            } else if (wavelen >= high_wavelen) {
                double smooth = (old_len / wavelen - cfg->rope_low_freq_factor) /
                                (cfg->rope_high_freq_factor - cfg->rope_low_freq_factor);
                f = (1.0 - smooth) * f / cfg->rope_factor + smooth * f;
            }
        }
        inv_freq[j] = f;
    }
}

int dorac_model_rope_tables(dorac_model *m) {
    const dorac_model_config *cfg = &m->cfg;
    int64_t half = cfg->head_dim / 2, P = cfg->max_positions;
    size_t n = (size_t)(P * half);
    double *inv = malloc((size_t)half * sizeof *inv), *c = malloc(n * sizeof *c), *s = malloc(n * sizeof *s);
    int rc = (!inv || !c || !s) ? dorac_error(DORAC_E_NOMEM, "rope: out of memory for %lld positions", (long long)P) : DORAC_OK;
    if (!rc) {
        dorac_rope_inv_freq(cfg, inv);
        for (int64_t p = 0; p < P; p++)
            for (int64_t j = 0; j < half; j++) {
                double a = (double)p * inv[j];
                c[p * half + j] = cos(a);
                s[p * half + j] = sin(a);
            }
        rc = dorac_tensor_alloc(m->be, &m->rope_cos, m->be->param_type, P, half, "rope cos");
    }
    if (!rc) rc = dorac_tensor_alloc(m->be, &m->rope_sin, m->be->param_type, P, half, "rope sin");
    if (!rc) rc = m->be->upload(m->be, &m->rope_cos, c, DORAC_DTYPE_F64);
    if (!rc) rc = m->be->upload(m->be, &m->rope_sin, s, DORAC_DTYPE_F64);
    free(inv), free(c), free(s);
    return rc;
}
