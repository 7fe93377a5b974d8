/*
** tiny_configs.h — model configurations small enough for finite differences
** and exhaustive checks, shared by the model tests.
*/
#ifndef DORAC_TESTS_TINY_CONFIGS_H
#define DORAC_TESTS_TINY_CONFIGS_H

#include <string.h>

#include "model/model.h"

/* GPT-2: 2 layers, 4 heads of 4, tied head, 12 positions. */
static inline dorac_model_config tiny_gpt2(void) {
    dorac_model_config c = {
        .family = DORAC_FAMILY_GPT2, .vocab_size = 23, .hidden_size = 16, .intermediate_size = 32,
        .n_layers = 2, .n_heads = 4, .n_kv_heads = 4, .head_dim = 4, .max_positions = 12,
        .norm_eps = 1e-5, .tie_embeddings = true,
    };
    strcpy(c.model_type, "gpt2");
    return c;
}

#endif
