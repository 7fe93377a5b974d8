/*
** fuzz_tokenizer_load.c — libFuzzer target for the tokenizer.json loader.
**
** Input: a tokenizer.json, optionally followed by "\n#CONFIG#\n" and a
** tokenizer_config.json. Checked: load never crashes or leaks; a tokenizer
** that loads encodes a few texts with every id inside its vocabulary and
** decodes them.
*/
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const texts[] = {
    "Hello world, it's 2024!  \t\r\n",
    "<s>caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC <|endoftext|>x",
    "\xFF\xFE bad \xE6\x97",
    "",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char sep[] = "\n#CONFIG#\n";
    const char *json = (const char *)data, *cfg = NULL;
    size_t json_len = size, cfg_len = 0;
    for (size_t i = 0; i + sizeof sep - 1 <= size; i++)
        if (!memcmp(data + i, sep, sizeof sep - 1)) {
            json_len = i;
            cfg = json + i + sizeof sep - 1;
            cfg_len = size - i - (sizeof sep - 1);
            break;
        }
    dorac_tokenizer *tok = NULL;
    if (dorac_tokenizer_load_buffer(&tok, json, json_len, cfg, cfg_len, "fuzz.json") != 0) {
        if (tok) abort(); /* a failed load leaves nothing behind */
        return 0;
    }
    int32_t vocab = dorac_tokenizer_vocab_size(tok);
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        int32_t *ids = NULL;
        size_t n = 0;
        /* encode may fail on a well-formed tokenizer (an unk_token missing from
        ** the vocabulary, a regex hitting its match limit): it must say so */
        if (dorac_tokenizer_encode(tok, texts[t], strlen(texts[t]), t & 1, &ids, &n) != 0) {
            if (ids || n) abort();
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= vocab) abort();
        char *out = NULL;
        size_t out_len;
        if (dorac_tokenizer_decode(tok, ids, n, t & 2, &out, &out_len) != 0) abort();
        free(out);
        free(ids);
    }
    dorac_tokenizer_free(tok);
    return 0;
}
