/*
** fuzz_safetensors.c — libFuzzer target for the safetensors header parser.
** The input is a whole file image; when it opens, every tensor is looked up
** by name and every readable one converted, so the validated offsets and
** sizes are exercised, not just parsed.
*/
#include <stdint.h>
#include <stdlib.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dorac_safetensors *st;
    if (dorac_safetensors_open_memory(&st, data, size, "fuzz.safetensors") != 0) return 0;
    (void)dorac_safetensors_metadata(st, "format");
    for (size_t i = 0; i < dorac_safetensors_count(st); i++) {
        const dorac_st_tensor *t = dorac_safetensors_at(st, i);
        if (dorac_safetensors_find(st, t->name) != t) abort();
        size_t n = dorac_st_tensor_numel(t);
        if (n > ((size_t)1 << 20)) continue;
        double *out = malloc((n ? n : 1) * sizeof *out);
        if (!out) continue;
        int rc = dorac_st_tensor_read(t, out, DORAC_DTYPE_F64);
        if (t->dtype_supported != (rc == 0)) abort();
        free(out);
    }
    dorac_safetensors_close(st);
    return 0;
}
