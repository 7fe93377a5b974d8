/*
** fuzz_metrics.c — libFuzzer target for the metrics.jsonl reader that
** `dorac plot` uses. Parsed records are sorted by step.
*/
#include <stdint.h>
#include <stdlib.h>

#include "train/metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dorac_metrics m;
    if (dorac_metrics_parse(&m, (const char *)data, size, "fuzz/metrics.jsonl") == 0) {
        if (m.n == 0) abort();
        for (size_t i = 1; i < m.n; i++)
            if (m.records[i].step < m.records[i - 1].step) abort();
        dorac_metrics_free(&m);
    }
    return 0;
}
