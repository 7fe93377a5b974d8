/*
** fuzz_tokenizer_encode.c — libFuzzer target: random bytes through every
** fixture tokenizer (tests/fixtures/tokenizer/).
**
** Input: byte 0 picks the tokenizer and add_special; the rest is the text,
** any bytes at all. Checked: encode succeeds, every id is inside the
** vocabulary, a second encode gives the same ids (the pre-token cache is
** transparent), and decode succeeds and returns valid UTF-8.
*/
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {"gpt2", "llama3", "qwen2", "llama2", "mistral",
                                    "zoo_wordpiece", "zoo_metaspace", "zoo_split"};
enum { N_TOK = sizeof names / sizeof names[0] };
static dorac_tokenizer *toks[N_TOK];

static void load_all(void) {
    for (int i = 0; i < N_TOK; i++) {
        char path[1024], cfg[1024];
        snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/%s.tokenizer.json", DORAC_SOURCE_DIR, names[i]);
        snprintf(cfg, sizeof cfg, "%s/tests/fixtures/tokenizer/%s.tokenizer_config.json", DORAC_SOURCE_DIR, names[i]);
        if (dorac_tokenizer_load(&toks[i], path, cfg) != 0) {
            fprintf(stderr, "fuzz: cannot load %s\n", path);
            abort();
        }
    }
}

static bool valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                   : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (!len || i + len > n) return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return false;
        if (c == 0xE0 && s[i + 1] < 0xA0) return false;
        if (c == 0xED && s[i + 1] > 0x9F) return false;
        if (c == 0xF0 && s[i + 1] < 0x90) return false;
        if (c == 0xF4 && s[i + 1] > 0x8F) return false;
        i += len;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!toks[0]) load_all();
    if (size == 0) return 0;
    const dorac_tokenizer *tok = toks[data[0] % N_TOK];
    bool add_special = (data[0] / N_TOK) & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    int32_t *ids = NULL, *again = NULL;
    size_t n = 0, n2 = 0;
    if (dorac_tokenizer_encode(tok, text, len, add_special, &ids, &n) != 0) abort();
    int32_t vocab = dorac_tokenizer_vocab_size(tok);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab || !dorac_tokenizer_id_to_token(tok, ids[i], NULL)) abort();
    if (dorac_tokenizer_encode(tok, text, len, add_special, &again, &n2) != 0) abort();
    if (n2 != n || (n && memcmp(ids, again, n * sizeof *ids))) abort();

    char *out = NULL;
    size_t out_len = 0;
    if (dorac_tokenizer_decode(tok, ids, n, data[0] & 2, &out, &out_len) != 0) abort();
    if (!valid_utf8((const unsigned char *)out, out_len) || out[out_len] != '\0') abort();
    free(out);
    free(ids);
    free(again);
    return 0;
}
