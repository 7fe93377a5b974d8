/*
** fuzz_data_line.c — libFuzzer target for one line of training data: the
** JSONL formats (text, prompt/completion, messages, input_ids/labels) with
** a real tokenizer (tests/fixtures/models/llama-gqa, vocabulary 1024).
** Every example that parses keeps the dataset's invariants.
*/
#include <stdint.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "train/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static dorac_tokenizer *tok;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok && dorac_tokenizer_load(&tok, "tests/fixtures/models/llama-gqa/tokenizer.json",
                                     "tests/fixtures/models/llama-gqa/tokenizer_config.json"))
        abort(); /* run from the repository root */
    dorac_dataset_options opt = {.tok = tok, .vocab_size = 1024, .add_special = true};
    dorac_example ex;
    if (dorac_example_parse(&ex, (const char *)data, size, &opt, "fuzz.jsonl:1") == 0) {
        if (ex.n < 1) abort();
        for (int64_t i = 0; i < ex.n; i++) {
            if (ex.ids[i] < 0 || ex.ids[i] >= 1024) abort();
            if (ex.labels[i] != DORAC_IGNORE_INDEX && (ex.labels[i] < 0 || ex.labels[i] >= 1024)) abort();
        }
        dorac_example_free(&ex);
    }
    return 0;
}
