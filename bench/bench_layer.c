/*
** bench_layer.c — forward + backward of one linear layer on the CPU, in four
** modes (frozen, LoRA, DoRA-detach, DoRA-exact), at the foundation issue's
** shapes. Prints, per mode: best-of-R milliseconds, the ratio to LoRA, the
** GFLOP/s of the counted FLOPs, that as a share of cblas_sgemm's throughput
** measured in this same run, and the peak memory the layer allocates beyond
** the caller's tensors (x, y, dy, dx, u, parameters, gradients). The modes'
** repetitions are interleaved so that drift in machine speed hits all alike.
**
** usage: bench_layer [--reps R] [--threads T] [--shape in,out,tokens,r]...
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "adapter/linear.h"
#include "core/error.h"
#include "core/rng.h"
#include "dorac.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill(float *p, size_t n, double scale, uint64_t stream) {
    for (size_t i = 0; i < n; i++) p[i] = (float)(scale * (2.0 * dorac_rng_uniform(1, stream, i) - 1.0));
}

typedef struct shape { int64_t in, out, N; int r; } shape;

typedef struct result { double ms, flops, peak_extra_mb; } result;

static double layer_flops(const shape *s, dorac_method method, int exact) {
    double N = (double)s->N, in = (double)s->in, out = (double)s->out, r = s->r;
    double f = 4.0 * N * in * out; /* forward GEMM + input-gradient GEMM */
    if (method == DORAC_METHOD_LORA || method == DORAC_METHOD_DORA) f += 6.0 * N * r * (in + out);
    if (method == DORAC_METHOD_DORA) f += 2.0 * out * in * r + (exact ? 2.0 * out * in * r : 0.0);
    return f;
}

/* One mode's layer and its own tensors (W and x are shared, read-only). */
typedef struct mode_run {
    dorac_method method;
    int exact;
    dorac_linear L;
    dorac_tensor y, dy, dy0, dx, u, A, B, m, dA, dB, dm;
    double best;
    size_t peak_extra;
} mode_run;

static int mode_setup(dorac_backend *be, const shape *s, mode_run *mr, const dorac_tensor *W, float *host) {
    int64_t in = s->in, out = s->out, N = s->N, r = s->r;
    dorac_dtype f32 = DORAC_DTYPE_F32;
    dorac_tensor none = dorac_tensor_none(f32);
    int rc = 0;
    rc |= dorac_tensor_alloc(be, &mr->y, f32, N, out, "y");
    rc |= dorac_tensor_alloc(be, &mr->dy, f32, N, out, "dy");
    rc |= dorac_tensor_alloc(be, &mr->dy0, f32, N, out, "dy0");
    rc |= dorac_tensor_alloc(be, &mr->dx, f32, N, in, "dx");
    rc |= dorac_tensor_alloc(be, &mr->u, f32, N, r, "u");
    rc |= dorac_tensor_alloc(be, &mr->A, f32, r, in, "A");
    rc |= dorac_tensor_alloc(be, &mr->B, f32, out, r, "B");
    rc |= dorac_tensor_alloc(be, &mr->m, f32, 1, out, "m");
    rc |= dorac_tensor_alloc(be, &mr->dA, f32, r, in, "dA");
    rc |= dorac_tensor_alloc(be, &mr->dB, f32, out, r, "dB");
    rc |= dorac_tensor_alloc(be, &mr->dm, f32, 1, out, "dm");
    if (rc) return rc;
    fill(host, (size_t)(N * out), 1.0, 5); be->upload(be, &mr->dy0, host, f32);
    fill(host, (size_t)(out * r), 0.01, 6); be->upload(be, &mr->B, host, f32);
    fill(host, (size_t)(r * in), 0.02, 7); be->upload(be, &mr->A, host, f32);
    be->fill(be, &mr->dA, 0), be->fill(be, &mr->dB, 0), be->fill(be, &mr->dm, 0);
    dorac_method method = mr->method;
    dorac_adapter_config cfg = {.method = method, .rank = method == DORAC_METHOD_FROZEN ? 0 : s->r,
                                .alpha = 2.0 * s->r, .norm_grad = mr->exact};
    dorac_linear_tensors t = {.W = *W, .bias = none, .A = mr->A, .B = mr->B, .m = mr->m, .dA = mr->dA,
                              .dB = mr->dB, .dm = mr->dm, .dW = none, .dbias = none};
    if (method == DORAC_METHOD_FROZEN) t.A = t.B = t.m = t.dA = t.dB = t.dm = none;
    if (method == DORAC_METHOD_LORA) t.m = t.dm = none;
    rc = dorac_linear_init(&mr->L, be, &cfg, in, out, &t, "bench");
    if (!rc && method == DORAC_METHOD_DORA) rc = dorac_dora_init_magnitude_tensor(be, &mr->m, &mr->L.c);
    mr->best = 1e30;
    return rc;
}

/* One forward + backward, timed; dy is restored outside the timing (the
** DoRA backward writes dz over it, as the model calls it). */
static int mode_rep(dorac_backend *be, mode_run *mr, const dorac_tensor *x, bool record) {
    dorac_tensor none = dorac_tensor_none(DORAC_DTYPE_F32);
    const dorac_tensor *uu = mr->method == DORAC_METHOD_FROZEN ? &none : &mr->u;
    DORAC_TRY(be->copy(be, &mr->dy, &mr->dy0));
    dorac_mem_stats before, after;
    be->mem_stats_reset(be);
    be->mem_stats(be, &before);
    double t0 = now_s();
    DORAC_TRY(dorac_linear_forward(&mr->L, &mr->y, uu, x, 0));
    DORAC_TRY(dorac_linear_backward(&mr->L, &mr->dx, false, &mr->dy, &mr->dy, x, &mr->y, uu, 0));
    double dt = now_s() - t0;
    be->mem_stats(be, &after);
    if (record && dt < mr->best) mr->best = dt;
    size_t extra = after.peak_bytes - before.current_bytes;
    if (extra > mr->peak_extra) mr->peak_extra = extra;
    return DORAC_OK;
}

static void mode_free(dorac_backend *be, mode_run *mr) {
    dorac_linear_free(&mr->L);
    dorac_tensor *all[] = {&mr->y, &mr->dy, &mr->dy0, &mr->dx, &mr->u, &mr->A, &mr->B, &mr->m, &mr->dA, &mr->dB, &mr->dm};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dorac_tensor_free(be, all[i]);
}

/* All modes of one shape, their repetitions interleaved (frozen, LoRA,
** DoRA-detach, DoRA-exact, sgemm, frozen, ...), so that drift in the
** machine's speed affects every mode alike; best of reps per mode. The
** layer's peak extra memory is what it allocates during one forward +
** backward beyond its caller's tensors and its own caches. */
static int run_shape(dorac_backend *be, const shape *s, int reps, result *res, double *gemm_gflops) {
    int64_t in = s->in, out = s->out, N = s->N;
    size_t nmax = (size_t)(N * (in > out ? in : out));
    if ((size_t)(out * in) > nmax) nmax = (size_t)(out * in);
    float *host = malloc(nmax * sizeof *host);
    dorac_tensor W, x;
    int rc = dorac_tensor_alloc(be, &W, DORAC_DTYPE_F32, out, in, "W");
    if (!rc) rc = dorac_tensor_alloc(be, &x, DORAC_DTYPE_F32, N, in, "x");
    if (rc || !host) return rc ? rc : DORAC_E_NOMEM;
    fill(host, (size_t)(out * in), 0.02, 3); be->upload(be, &W, host, DORAC_DTYPE_F32);
    fill(host, (size_t)(N * in), 1.0, 4); be->upload(be, &x, host, DORAC_DTYPE_F32);
    mode_run modes[4] = {{.method = DORAC_METHOD_FROZEN}, {.method = DORAC_METHOD_LORA},
                         {.method = DORAC_METHOD_DORA, .exact = 0}, {.method = DORAC_METHOD_DORA, .exact = 1}};
    for (int k = 0; !rc && k < 4; k++) rc = mode_setup(be, s, &modes[k], &W, host);
    float *gy = malloc((size_t)(N * out) * sizeof *gy);
    double best_gemm = 1e30;
    for (int rep = 0; !rc && rep <= reps; rep++) {
        for (int k = 0; !rc && k < 4; k++) rc = mode_rep(be, &modes[k], &x, rep > 0);
        /* the BLAS anchor: one (N,in)x(in,out) sgemm, the layer's forward GEMM */
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)out, (int)in, 1.0f, x.data, (int)in,
                    W.data, (int)in, 0.0f, gy, (int)out);
        double dt = now_s() - t0;
        if (rep > 0 && dt < best_gemm) best_gemm = dt;
    }
    *gemm_gflops = 2.0 * (double)N * (double)in * (double)out / best_gemm * 1e-9;
    for (int k = 0; k < 4; k++) {
        res[k].ms = modes[k].best * 1e3;
        res[k].flops = layer_flops(s, modes[k].method, modes[k].exact);
        res[k].peak_extra_mb = (double)modes[k].peak_extra / (1024.0 * 1024.0);
        mode_free(be, &modes[k]);
    }
    dorac_tensor_free(be, &W), dorac_tensor_free(be, &x);
    free(host), free(gy);
    return rc;
}

int main(int argc, char **argv) {
    int reps = 5, threads = 0;
    shape shapes[8] = {{2048, 2048, 2048, 16}, {4096, 4096, 1024, 16}};
    int n_shapes = 2, custom = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc && n_shapes < 8) {
            shape s;
            long long a, b, c;
            if (sscanf(argv[++i], "%lld,%lld,%lld,%d", &a, &b, &c, &s.r) != 4) {
                fprintf(stderr, "bench_layer: --shape wants in,out,tokens,r\n");
                return 2;
            }
            s.in = a, s.out = b, s.N = c;
            if (!custom) n_shapes = 0, custom = 1;
            shapes[n_shapes++] = s;
        } else {
            fprintf(stderr, "usage: bench_layer [--reps R] [--threads T] [--shape in,out,tokens,r]...\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    dorac_set_num_threads(threads);
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    if (!be) return 1;
    printf("# bench_layer: fp32 CPU, %d threads, best of %d interleaved repetitions (after 1 warm-up)\n\n",
           dorac_get_num_threads(), reps);
    const char *names[] = {"frozen", "lora", "dora-detach", "dora-exact"};
    for (int si = 0; si < n_shapes; si++) {
        shape *s = &shapes[si];
        result res[4];
        double gemm_gflops;
        if (run_shape(be, s, reps, res, &gemm_gflops)) {
            fprintf(stderr, "bench_layer: %s\n", dorac_last_error());
            return 1;
        }
        printf("## (in, out, tokens, r) = (%lld, %lld, %lld, %d); cblas_sgemm %.1f GFLOP/s\n\n",
               (long long)s->in, (long long)s->out, (long long)s->N, s->r, gemm_gflops);
        printf("| mode | ms | / LoRA | GFLOP/s | of sgemm | peak extra MiB |\n|---|---|---|---|---|---|\n");
        for (int k = 0; k < 4; k++) {
            double gf = res[k].flops / (res[k].ms * 1e-3) * 1e-9;
            printf("| %s | %.1f | %.3f | %.1f | %.0f%% | %.3f |\n", names[k], res[k].ms,
                   res[k].ms / res[1].ms, gf, 100.0 * gf / gemm_gflops, res[k].peak_extra_mb);
        }
        double mib = 1024.0 * 1024.0;
        double bound_mb = (double)(s->out * s->r + s->r * s->r) * 4 / mib;
        /* held between forward and backward: c, n, g (out) and P (out,r), G (r,r) */
        double caches_mb = (double)(3 * s->out + s->out * s->r + s->r * s->r) * 4 / mib;
        printf("\nDoRA memory over LoRA: per-call scratch detach %.3f MiB, exact %.3f MiB; plus the layer's "
               "norm caches %.3f MiB held from forward to backward (out*r + r^2 floats = %.3f MiB). "
               "No (out, in) buffer.\n\n",
               res[2].peak_extra_mb - res[1].peak_extra_mb, res[3].peak_extra_mb - res[1].peak_extra_mb, caches_mb,
               bound_mb);
    }
    dorac_backend_destroy(be);
    return 0;
}
