/*
** layer_demo.c — `dorac layer-demo`: fits one DoRA layer to a teacher with
** the public raw-array API, then merges it, to show the API end to end.
**
** The teacher is W* = diag(k) (W0 + U V) with row scales k ~ 1 ± 0.2 and a
** rank-2 direction change UV: exactly what DoRA can express (magnitude and
** a low-rank direction). The student starts at W0 (B = 0, m = ||W0 row||)
** and descends the mean squared error with plain SGD on A, B and m.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "core/rng.h"
#include "dorac.h"

static void fill_normal(float *p, size_t n, double sd, uint64_t stream) {
    for (size_t i = 0; i < n; i++) p[i] = (float)(sd * dorac_rng_normal(7, stream, i));
}

static double mse(const float *a, const float *b, size_t n, float *diff) {
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        diff[i] = a[i] - b[i];
        s += (double)diff[i] * diff[i];
    }
    return s / (double)n;
}

int cli_layer_demo(int argc, char **argv) {
    int64_t in = 256, out = 256, rank = 4, steps = 300, N = 512, threads = 0;
    double lr = 0.02;
    cli_opt opts[] = {
        {"in", OPT_INT, &in, "input width (256)", false},
        {"out", OPT_INT, &out, "output width (256)", false},
        {"rank", OPT_INT, &rank, "adapter rank r (4)", false},
        {"tokens", OPT_INT, &N, "rows per batch (512)", false},
        {"steps", OPT_INT, &steps, "SGD steps (300)", false},
        {"lr", OPT_DOUBLE, &lr, "learning rate (0.02)", false},
        {"threads", OPT_INT, &threads, "CPU threads (all)", false},
    };
    int pr = cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0], "usage: dorac layer-demo [options]");
    if (pr) return pr == CLI_PARSE_HELP ? 0 : CLI_EXIT_USAGE;
    if (in <= 0 || out <= 0 || N <= 0 || steps < 0 || rank < 0 || in > 8192 || out > 8192 || N > 65536) {
        fprintf(stderr, "dorac: layer-demo sizes must be positive (in, out <= 8192, tokens <= 65536)\n");
        return CLI_EXIT_USAGE;
    }
    dorac_set_num_threads((int)threads);

    size_t nw = (size_t)(out * in), nx = (size_t)(N * in), ny = (size_t)(N * out);
    float *buf = calloc(3 * nw + 3 * (size_t)rank * (size_t)(in + out) + 3 * (size_t)out + nx + 4 * ny, sizeof(float));
    if (!buf) return cli_fail(DORAC_E_NOMEM);
    float *W0 = buf, *Wt = W0 + nw, *Wm = Wt + nw, *A = Wm + nw, *B = A + rank * in;
    float *dA = B + rank * out, *dB = dA + rank * in, *m = dB + rank * out, *dm = m + out;
    float *x = dm + out, *y = x + nx, *yt = y + ny, *dy = yt + ny, *k = dy + ny;

    /* teacher: W* = diag(k) (W0 + U V), U (out,2), V (2,in) */
    fill_normal(W0, nw, 1.0 / sqrt((double)in), 1);
    fill_normal(x, nx, 1.0, 2);
    for (int64_t o = 0; o < out; o++) k[o] = (float)(1.0 + 0.2 * (2 * dorac_rng_uniform(7, 3, (uint64_t)o) - 1));
    for (int64_t o = 0; o < out; o++)
        for (int64_t j = 0; j < in; j++) {
            double d = 0;
            for (int q = 0; q < 2; q++)
                d += 0.3 * dorac_rng_normal(7, 4, (uint64_t)(o * 2 + q)) * dorac_rng_normal(7, 5, (uint64_t)(q * in + j)) / sqrt((double)in);
            Wt[o * in + j] = k[o] * (W0[o * in + j] + (float)d);
        }
    for (int64_t i = 0; i < N; i++)
        for (int64_t o = 0; o < out; o++) {
            double s = 0;
            for (int64_t j = 0; j < in; j++) s += (double)x[i * in + j] * Wt[o * in + j];
            yt[i * out + o] = (float)s;
        }

    /* student: PEFT's initialisation */
    for (int64_t i = 0; i < rank * in; i++) A[i] = (float)((2 * dorac_rng_uniform(7, 6, (uint64_t)i) - 1) / sqrt((double)in));
    dorac_dora_weights w = {.in = in, .out = out, .rank = (int)rank, .scale = 2.0f,
                            .norm_grad = DORAC_NORM_GRAD_DETACH, .W0 = W0, .bias = NULL,
                            .A = A, .B = B, .m = m};
    int rc = dorac_dora_init_magnitude(&w, m);
    printf("layer-demo: DoRA r=%lld on a %lldx%lld layer, %lld tokens, teacher = row scales + rank-2 direction\n",
           (long long)rank, (long long)out, (long long)in, (long long)N);
    for (int64_t step = 0; !rc && step <= steps; step++) {
        rc = dorac_dora_forward(&w, N, x, y);
        if (rc) break;
        double loss = mse(y, yt, ny, dy); /* per element; dy holds y - y* */
        if (step % (steps / 10 > 0 ? steps / 10 : 1) == 0 || step == steps)
            printf("  step %4lld  mse %.3e\n", (long long)step, loss);
        if (step == steps) break;
        for (size_t i = 0; i < ny; i++) dy[i] *= (float)(2.0 / (double)N); /* d(sum sq / N) */
        memset(dA, 0, sizeof(float) * (size_t)(rank * in));
        memset(dB, 0, sizeof(float) * (size_t)(rank * out));
        memset(dm, 0, sizeof(float) * (size_t)out);
        rc = dorac_dora_backward(&w, N, x, y, dy, NULL, dA, dB, dm);
        for (int64_t i = 0; !rc && i < rank * in; i++) A[i] -= (float)lr * dA[i];
        for (int64_t i = 0; !rc && i < rank * out; i++) B[i] -= (float)lr * dB[i];
        for (int64_t i = 0; !rc && i < out; i++) m[i] -= (float)lr * dm[i];
    }
    if (!rc) rc = dorac_dora_merge(&w, Wm, NULL);
    if (!rc) {
        /* the merged weight reproduces the adapter with one plain GEMM */
        double worst = 0, scale = 0;
        for (int64_t i = 0; i < N; i++)
            for (int64_t o = 0; o < out; o++) {
                double s = 0;
                for (int64_t j = 0; j < in; j++) s += (double)x[i * in + j] * Wm[o * in + j];
                worst = fmax(worst, fabs(s - y[i * out + o]));
                scale = fmax(scale, fabs(y[i * out + o]));
            }
        printf("merged: max |x W'^T - adapter(x)| / max|y| = %.2e\n", worst / scale);
    }
    free(buf);
    return rc ? cli_fail(rc) : CLI_EXIT_OK;
}
