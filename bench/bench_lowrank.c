/*
** bench_lowrank.c — the adapter's two one-pass products over a big
** activation on the CUDA backend, at the Llama-1B shape (N = 8192 rows,
** r = 16), timed with the device synchronised around R repetitions:
**
**   up     Y (N,out) = Y + s U B^T          (LoRA's up-projection)
**   up+g   Y (N,out) = g ⊙ (Y + s U B^T)    (DoRA's, dorac_lora_up_scale)
**   dx     dx (N,in) += du A                (gemm, K = r, beta 1)
**
** for out/in in 512, 2048, 8192. Prints microseconds per call and the
** bandwidth of Y's read and write. Which path runs is the library's
** choice; DORAC_LOWRANK_OFF=1 selects what cuda_lowrank.cu replaces
** (cuBLAS, the fp32-core kernel) and DORAC_LOWRANK_STAGES its ring depth,
** so one device call can compare them (tools/device/cuda_run.sh lowrank).
**
** usage: bench_lowrank [--reps R]
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "core/error.h"
#include "dorac.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef enum { OP_UP, OP_UP_G, OP_DX } op_kind;

static int run_op(dorac_backend *be, op_kind op, const dorac_tensor *Y, const dorac_tensor *U,
                  const dorac_tensor *B, const dorac_tensor *A, const dorac_tensor *g) {
    switch (op) {
    case OP_UP: return dorac_lora_up_scale(be, Y, U, B, 2.0, NULL, NULL);
    case OP_UP_G: return dorac_lora_up_scale(be, Y, U, B, 2.0, g, NULL);
    default: return be->gemm(be, Y, U, false, A, false, 1.0, 1.0);
    }
}

int main(int argc, char **argv) {
    int reps = 50;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_lowrank [--reps R]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    dorac_backend *be = dorac_backend_cuda_create((dorac_cuda_params){0});
    if (!be) {
        fprintf(stderr, "bench_lowrank: no CUDA backend: %s\n", dorac_last_error());
        return 77;
    }
    const int64_t N = 8192, r = 16, widths[] = {512, 2048, 8192};
    static const char *names[] = {"up", "up+g", "dx"};
    const char *off = getenv("DORAC_LOWRANK_OFF"), *stages = getenv("DORAC_LOWRANK_STAGES");
    printf("# path: %s\n", off ? "replaced (cuBLAS / fp32-core kernel)" : "cuda_lowrank");
    if (!off) printf("# stages: %s\n", stages ? stages : "default");
    int rc = 0;
    for (int w = 0; w < 3 && !rc; w++) {
        int64_t n = widths[w];
        dorac_tensor Y, U, B, A, g;
        rc = dorac_tensor_alloc(be, &Y, DORAC_DTYPE_BF16, N, n, "Y");
        if (!rc) rc = dorac_tensor_alloc(be, &U, DORAC_DTYPE_BF16, N, r, "U");
        if (!rc) rc = dorac_tensor_alloc(be, &B, DORAC_DTYPE_F32, n, r, "B");
        if (!rc) rc = dorac_tensor_alloc(be, &A, DORAC_DTYPE_F32, r, n, "A");
        if (!rc) rc = dorac_tensor_alloc(be, &g, DORAC_DTYPE_F32, 1, n, "g");
        /* small values, so that repeated accumulation stays finite */
        if (!rc) rc = be->fill(be, &Y, 0.5);
        if (!rc) rc = be->fill(be, &U, 0.01);
        if (!rc) rc = be->fill(be, &B, 0.01);
        if (!rc) rc = be->fill(be, &A, 0.01);
        if (!rc) rc = be->fill(be, &g, 1.0);
        for (int op = 0; op < 3 && !rc; op++) {
            rc = run_op(be, (op_kind)op, &Y, &U, &B, &A, &g); /* warm-up */
            if (!rc) rc = be->synchronize(be);
            double t0 = now_s();
            for (int i = 0; i < reps && !rc; i++) rc = run_op(be, (op_kind)op, &Y, &U, &B, &A, &g);
            if (!rc) rc = be->synchronize(be);
            double us = (now_s() - t0) / reps * 1e6;
            if (!rc)
                printf("%-5s N=%lld width=%-5lld r=%lld  %8.1f us  %6.2f TB/s\n", names[op], (long long)N,
                       (long long)n, (long long)r, us, 2.0 * 2.0 * (double)N * (double)n / (us * 1e-6) / 1e12);
        }
        dorac_tensor_free(be, &Y), dorac_tensor_free(be, &U), dorac_tensor_free(be, &B);
        dorac_tensor_free(be, &A), dorac_tensor_free(be, &g);
    }
    if (rc) fprintf(stderr, "bench_lowrank: %s\n", dorac_last_error());
    be->destroy(be);
    return rc ? 1 : 0;
}
