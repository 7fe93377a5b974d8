/*
** bench_layer.c — forward + backward of one linear layer on the CPU, in four
** modes (frozen, LoRA, DoRA-detach, DoRA-exact), at the foundation issue's
** shapes. Prints, per mode: best-of-R milliseconds, the ratio to LoRA, the
** GFLOP/s of the counted FLOPs, that as a share of cblas_sgemm's throughput
** measured in this same run, and the peak memory the layer allocates beyond
** the caller's tensors (x, y, dy, dx, u, parameters, gradients).
**
** usage: bench_layer [--reps R] [--threads T] [--shape in,out,tokens,r]...
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "adapter/linear.h"
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

/* Best-of-reps seconds of one (N,in)x(in,out) sgemm: the BLAS anchor. */
static double time_sgemm(const shape *s, int reps) {
    size_t nx = (size_t)(s->N * s->in), nw = (size_t)(s->out * s->in), ny = (size_t)(s->N * s->out);
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *y = malloc(ny * 4);
    fill(x, nx, 1, 1);
    fill(w, nw, 0.02, 2);
    double best = 1e30;
    for (int k = 0; k <= reps; k++) {
        double t = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->N, (int)s->out, (int)s->in, 1.0f,
                    x, (int)s->in, w, (int)s->in, 0.0f, y, (int)s->out);
        t = now_s() - t;
        if (k > 0 && t < best) best = t; /* k == 0 warms up */
    }
    free(x), free(w), free(y);
    return best;
}

typedef struct result { double ms, flops, peak_extra_mb; } result;

static double layer_flops(const shape *s, dorac_method method, int exact) {
    double N = (double)s->N, in = (double)s->in, out = (double)s->out, r = s->r;
    double f = 4.0 * N * in * out; /* forward GEMM + input-gradient GEMM */
    if (method == DORAC_METHOD_LORA || method == DORAC_METHOD_DORA) f += 6.0 * N * r * (in + out);
    if (method == DORAC_METHOD_DORA) f += 2.0 * out * in * r + (exact ? 2.0 * out * in * r : 0.0);
    return f;
}

static int run_mode(dorac_backend *be, const shape *s, dorac_method method, int exact, int reps,
                    result *res) {
    int64_t in = s->in, out = s->out, N = s->N, r = s->r;
    dorac_dtype f32 = DORAC_DTYPE_F32;
    dorac_tensor W, x, y, dy, dx, u, A, B, m, dA, dB, dm;
    dorac_tensor none = dorac_tensor_none(f32);
    int rc = 0;
    rc |= dorac_tensor_alloc(be, &W, f32, out, in, "W");
    rc |= dorac_tensor_alloc(be, &x, f32, N, in, "x");
    rc |= dorac_tensor_alloc(be, &y, f32, N, out, "y");
    rc |= dorac_tensor_alloc(be, &dy, f32, N, out, "dy");
    rc |= dorac_tensor_alloc(be, &dx, f32, N, in, "dx");
    rc |= dorac_tensor_alloc(be, &u, f32, N, r, "u");
    rc |= dorac_tensor_alloc(be, &A, f32, r, in, "A");
    rc |= dorac_tensor_alloc(be, &B, f32, out, r, "B");
    rc |= dorac_tensor_alloc(be, &m, f32, 1, out, "m");
    rc |= dorac_tensor_alloc(be, &dA, f32, r, in, "dA");
    rc |= dorac_tensor_alloc(be, &dB, f32, out, r, "dB");
    rc |= dorac_tensor_alloc(be, &dm, f32, 1, out, "dm");
    if (rc) return rc;
    {
        size_t nmax = (size_t)(N * (in > out ? in : out));
        float *h = malloc((nmax > (size_t)(out * in) ? nmax : (size_t)(out * in)) * 4);
        fill(h, (size_t)(out * in), 0.02, 3); be->upload(be, &W, h, f32);
        fill(h, (size_t)(N * in), 1.0, 4); be->upload(be, &x, h, f32);
        fill(h, (size_t)(N * out), 1.0, 5); be->upload(be, &dy, h, f32);
        fill(h, (size_t)(out * r), 0.01, 6); be->upload(be, &B, h, f32);
        free(h);
    }
    dorac_adapter_config cfg = {.method = method, .rank = method == DORAC_METHOD_FROZEN ? 0 : r,
                                .alpha = 2.0 * r, .norm_grad = exact};
    dorac_linear_tensors t = {.W = W, .bias = none, .A = A, .B = B, .m = m, .dA = dA, .dB = dB,
                              .dm = dm, .dW = none, .dbias = none};
    if (method == DORAC_METHOD_FROZEN) t.A = t.B = t.m = t.dA = t.dB = t.dm = none;
    if (method == DORAC_METHOD_LORA) t.m = t.dm = none;
    dorac_mem_stats before, after;
    be->mem_stats_reset(be);
    be->mem_stats(be, &before);
    dorac_linear L;
    rc = dorac_linear_init(&L, be, &cfg, in, out, &t, "bench");
    if (!rc && method == DORAC_METHOD_DORA) {
        rc = dorac_dora_init_magnitude_tensor(be, &m, &L.c);
    }
    const dorac_tensor *uu = method == DORAC_METHOD_FROZEN ? &none : &u;
    double best = 1e30;
    for (int k = 0; !rc && k <= reps; k++) {
        double t0 = now_s();
        rc = dorac_linear_forward(&L, &y, uu, &x, 0);
        if (!rc) rc = dorac_linear_backward(&L, &dx, false, &dy, &dy, &x, &y, uu, 0); /* dz in place, as the model does */
        double dt = now_s() - t0;
        if (k > 0 && dt < best) best = dt;
    }
    be->mem_stats(be, &after);
    dorac_linear_free(&L);
    res->ms = best * 1e3;
    res->flops = layer_flops(s, method, exact);
    res->peak_extra_mb = (double)(after.peak_bytes - before.current_bytes) / (1024.0 * 1024.0);
    dorac_tensor *all[] = {&W, &x, &y, &dy, &dx, &u, &A, &B, &m, &dA, &dB, &dm};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dorac_tensor_free(be, all[i]);
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
    printf("# bench_layer: fp32 CPU, %d threads, best of %d (after 1 warm-up)\n\n", dorac_get_num_threads(), reps);
    const char *names[] = {"frozen", "lora", "dora-detach", "dora-exact"};
    dorac_method methods[] = {DORAC_METHOD_FROZEN, DORAC_METHOD_LORA, DORAC_METHOD_DORA, DORAC_METHOD_DORA};
    int exacts[] = {0, 0, 0, 1};
    for (int si = 0; si < n_shapes; si++) {
        shape *s = &shapes[si];
        double t_gemm = time_sgemm(s, reps);
        double gemm_gflops = 2.0 * (double)s->N * (double)s->in * (double)s->out / t_gemm * 1e-9;
        printf("## (in, out, tokens, r) = (%lld, %lld, %lld, %d); cblas_sgemm %.1f GFLOP/s\n\n",
               (long long)s->in, (long long)s->out, (long long)s->N, s->r, gemm_gflops);
        printf("| mode | ms | / LoRA | GFLOP/s | of sgemm | peak extra MiB |\n|---|---|---|---|---|---|\n");
        result res[4];
        for (int k = 0; k < 4; k++) {
            if (run_mode(be, s, methods[k], exacts[k], reps, &res[k])) {
                fprintf(stderr, "bench_layer: %s\n", dorac_last_error());
                return 1;
            }
        }
        for (int k = 0; k < 4; k++) {
            double gf = res[k].flops / (res[k].ms * 1e-3) * 1e-9;
            printf("| %s | %.1f | %.3f | %.1f | %.0f%% | %.3f |\n", names[k], res[k].ms,
                   res[k].ms / res[1].ms, gf, 100.0 * gf / gemm_gflops, res[k].peak_extra_mb);
        }
        double bound_mb = (double)(s->out * s->r + s->r * s->r) * 4 / (1024.0 * 1024.0);
        printf("\nDoRA-detach extra over LoRA: %.3f MiB (out*r + r^2 floats = %.3f MiB; the rest is the %d-row dz chunk and O(out) vectors)\n\n",
               res[2].peak_extra_mb - res[1].peak_extra_mb, bound_mb, DORAC_LINEAR_CHUNK_ROWS);
    }
    dorac_backend_destroy(be);
    return 0;
}
