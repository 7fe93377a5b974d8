/*
** fuzz_peft_config.c — libFuzzer target for the adapter_config.json parser,
** PEFT's module matching on the patterns it loads, and the adapter tensor
** key parser (the input, NUL-terminated, is also parsed as a key).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/peft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const paths[] = {"model.layers.0.self_attn.q_proj", "model.layers.11.mlp.down_proj",
                                        "transformer.h.3.attn.c_attn", "lm_head", "q_proj"};
    dorac_peft_config cfg;
    if (dorac_peft_config_load_string(&cfg, (const char *)data, size, "fuzz/adapter_config.json") == 0) {
        for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
            (void)dorac_peft_targets_module(&cfg, paths[i]);
            if (dorac_peft_rank_for(&cfg, paths[i]) < 1) abort();
            (void)dorac_peft_alpha_for(&cfg, paths[i]);
        }
        dorac_peft_config_free(&cfg);
    }
    char *key = malloc(size + 1);
    if (!key) return 0;
    memcpy(key, data, size);
    key[size] = '\0';
    char module[256];
    dorac_peft_key_kind kind;
    if (dorac_peft_key_parse(key, module, sizeof module, &kind) == 0) {
        char rebuilt[512];
        if (dorac_peft_key(rebuilt, sizeof rebuilt, module, kind) == 0 && kind != DORAC_PEFT_KEY_MAGNITUDE &&
            strcmp(rebuilt, key) != 0)
            abort();
    }
    free(key);
    return 0;
}
