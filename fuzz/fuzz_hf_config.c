/*
** fuzz_hf_config.c — libFuzzer target for the config.json parser.
*/
#include <stdint.h>
#include <stdlib.h>

#include "io/hf_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dorac_hf_config cfg;
    if (dorac_hf_config_load_string(&cfg, (const char *)data, size, "fuzz/config.json") == 0) {
        /* a config that loads keeps the documented invariants */
        if (cfg.num_attention_heads % cfg.num_key_value_heads != 0) abort();
        if (cfg.head_dim <= 0 || cfg.vocab_size <= 0 || cfg.hidden_size <= 0) abort();
    }
    return 0;
}
