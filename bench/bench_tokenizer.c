/*
** bench_tokenizer.c — encoding throughput of dorac's tokenizer on one core.
**
** The text file is cut at line ends into chunks of at least --chunk bytes
** (a data loader's records), every chunk is encoded once to warm the
** pre-token cache, then the whole set is encoded --reps times; the best
** pass is reported in MB/s (10^6 bytes of input text per CPU second). The
** token count and a checksum of the ids are printed too, so that
** tools/ref/bench_tokenizers.py can check that tokenizers, run on the same
** chunks, produced the same ids.
**
** usage: bench_tokenizer TOKENIZER_JSON TEXT_FILE [--reps R] [--chunk BYTES]
** prints: bench_tokenizer bytes=B chunks=C tokens=T checksum=X seconds=S mbps=M
*/
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dorac.h"
#include "tokenizer/tokenizer.h"

/* CPU time of this thread: the machines these runs share are busy, and CPU
** time does not count the slices another process took. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER_JSON TEXT_FILE [--reps R] [--chunk BYTES]\n");
        return 2;
    }
    int reps = 3;
    size_t chunk = 4096;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--chunk")) chunk = (size_t)atol(argv[i + 1]);
    }
    if (reps < 1) reps = 1;
    dorac_tokenizer *tok = NULL;
    if (dorac_tokenizer_load(&tok, argv[1], NULL) != DORAC_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", dorac_last_error());
        return 1;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        fprintf(stderr, "bench_tokenizer: cannot open %s\n", argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) return 1;
    fclose(f);

    /* chunk boundaries: after the first '\n' at or beyond `chunk` bytes */
    size_t n_chunks = 0, cap = 1024, *starts = malloc(cap * sizeof *starts);
    for (size_t pos = 0; pos < (size_t)size;) {
        size_t end = pos + chunk < (size_t)size ? pos + chunk : (size_t)size;
        while (end < (size_t)size && text[end - 1] != '\n') end++;
        if (n_chunks + 2 > cap) starts = realloc(starts, (cap *= 2) * sizeof *starts);
        starts[n_chunks++] = pos;
        pos = end;
    }
    starts[n_chunks] = (size_t)size;

    uint64_t tokens = 0, checksum = 0;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) { /* pass 0 warms the cache */
        uint64_t t = 0, sum = 0;
        double t0 = now_s();
        for (size_t c = 0; c < n_chunks; c++) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (dorac_tokenizer_encode(tok, text + starts[c], starts[c + 1] - starts[c], false, &ids, &n)) {
                fprintf(stderr, "bench_tokenizer: %s\n", dorac_last_error());
                return 1;
            }
            for (size_t i = 0; i < n; i++) sum = sum * 1000003u + (uint64_t)ids[i];
            t += n;
            free(ids);
        }
        double dt = now_s() - t0;
        if (r > 0 && dt < best) best = dt;
        tokens = t;
        checksum = sum;
    }
    printf("bench_tokenizer bytes=%ld chunks=%zu tokens=%llu checksum=%llu seconds=%.4f mbps=%.2f\n", size,
           n_chunks, (unsigned long long)tokens, (unsigned long long)checksum, best, (double)size / best / 1e6);
    free(starts);
    free(text);
    dorac_tokenizer_free(tok);
    return 0;
}
