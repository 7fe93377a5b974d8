/*
** probe_lt_epilogue.cu — can cuBLASLt fold the adapter's forward pass into
** the frozen GEMM on this GPU, and at what cost?
**
** Today a DoRA (or LoRA) linear's forward is two passes over (N, out):
**   h = x W0^T              (cuBLAS, BF16 out)
**   y = g ⊙ (h + s u B^T) + b   (cuda_lowrank.cu, u = x A^T of width r)
** The second pass costs 4.0 ms of a 101.8 ms Llama-1B DoRA step (docs/PERF.md).
** The same y is one GEMM with the inner size grown by r,
**   y = g ⊙ ([x | s u] [W0 | B]^T) + b,
** if cuBLASLt takes g as a per-output "alpha vector"
** (CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_HOST) with BF16 operands,
** and b (and for GPT-2's c_fc, GELU with the pre-activation kept for the
** backward) as an epilogue. This program asks cuBLASLt's heuristic for each
** variant at the Llama-1B shapes (N = 8192 rows, r = 16), times it against
** the plain K = in GEMM, and checks sampled outputs against a double
** product on the host. It changes nothing in dorac; its output is what a
** change to the model's buffers (x with r spare columns, W0 with B beside
** it) would gain.
**
** usage: probe_lt_epilogue    (exits 77 without a CUDA device)
*/
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(x)                                                                                       \
    do {                                                                                            \
        cudaError_t e_ = (x);                                                                       \
        if (e_ != cudaSuccess) {                                                                    \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));            \
            exit(1);                                                                                \
        }                                                                                           \
    } while (0)

typedef __nv_bfloat16 bf16;

enum variant { PLAIN, VEC, VEC_BIAS, VEC_GELU_AUX_BIAS, VEC_BETA0, VEC_DEVICE, N_VARIANTS };
static const char *const variant_name[N_VARIANTS] = {
    "plain K=in, alpha 1", "K=in+r, alpha vector g", "K=in+r, alpha vector g, bias",
    "K=in+r, alpha vector g, bias, GELU + aux", "K=in+r, alpha vector g (beta-zero mode)",
    "K=in+r, alpha, beta device vectors"};
/* The pointer modes: VEC, VEC_BIAS, VEC_GELU_AUX_BIAS take
** ALPHA_DEVICE_VECTOR_BETA_HOST (beta 0 on the host), VEC_BETA0
** ALPHA_DEVICE_VECTOR_BETA_ZERO, VEC_DEVICE DEVICE_VECTOR (a device beta
** vector of zeros). */

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((float)(*s >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

/* Y (N, out) row-major = epilogue(g ⊙ (X (N, K) W (out, K)^T) + b): in
** cuBLAS's column-major terms D (out x N) = op_T(W) X, so the alpha vector
** runs along D's rows, the outputs. Returns the median of `reps` timed
** runs in us, or -1 when the heuristic has no algorithm (*status says
** why). */
static double run(cublasLtHandle_t lt, enum variant v, int N, int out, int K, int ldk, const bf16 *X, const bf16 *W,
                  const float *g, const float *zeros, const bf16 *bias, bf16 *Y, bf16 *aux, void *ws, size_t ws_bytes,
                  cudaStream_t st, int reps, cublasStatus_t *status) {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (v != PLAIN) {
        cublasLtPointerMode_t pm = v == VEC_BETA0    ? CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO
                                   : v == VEC_DEVICE ? CUBLASLT_POINTER_MODE_DEVICE_VECTOR
                                                     : CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_HOST;
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_POINTER_MODE, &pm, sizeof pm);
    }
    if (v == VEC_BIAS || v == VEC_GELU_AUX_BIAS) {
        cublasLtEpilogue_t ep = v == VEC_BIAS ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep);
        cudaDataType_t bt = CUDA_R_16BF;
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
        if (v == VEC_GELU_AUX_BIAS) {
            int64_t ld_aux = out;
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux);
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld_aux, sizeof ld_aux);
        }
    }
    cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, out, ldk); /* W^T stored: K x out */
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, N, ldk);   /* X: K x N */
    cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, out, N, out);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes);
    cublasLtMatmulHeuristicResult_t h;
    int found = 0;
    *status = cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, ld, ld, pref, 1, &h, &found);
    double median = -1;
    if (*status == CUBLAS_STATUS_SUCCESS && found > 0) {
        const float one = 1.0f, zero = 0.0f;
        const void *alpha = v == PLAIN ? (const void *)&one : (const void *)g;
        const void *beta = v == VEC_DEVICE ? (const void *)zeros : (const void *)&zero;
        cudaEvent_t e0, e1;
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
        double *t = (double *)malloc((size_t)reps * sizeof *t);
        for (int i = -3; i < reps && *status == CUBLAS_STATUS_SUCCESS; i++) { /* 3 warm-up runs */
            CK(cudaEventRecord(e0, st));
            *status = cublasLtMatmul(lt, op, alpha, W, la, X, lb, beta, Y, ld, Y, ld, &h.algo, ws, ws_bytes, st);
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            if (i >= 0) t[i] = ms * 1000.0;
        }
        if (*status == CUBLAS_STATUS_SUCCESS) {
            for (int i = 1; i < reps; i++) /* insertion sort: reps is small */
                for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
                    double x = t[j];
                    t[j] = t[j - 1];
                    t[j - 1] = x;
                }
            median = t[reps / 2];
        }
        free(t);
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
    }
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(ld);
    cublasLtMatmulDescDestroy(op);
    return median;
}

static double gelu_tanh(double x) {
    return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

/* The largest error of 256 sampled outputs against a double product of the
** same BF16 inputs, relative to the sum of the |products| (so BF16's output
** rounding reads as about 1e-4 or less, and a lost bias or scale as far
** more only where it is large against that sum). */
static double check(enum variant v, int N, int out, int K, int ldk, const bf16 *hX, const bf16 *hW, const float *hg,
                    const bf16 *hb, const bf16 *dY) {
    bf16 *y = (bf16 *)malloc((size_t)N * out * sizeof *y);
    CK(cudaMemcpy(y, dY, (size_t)N * out * sizeof *y, cudaMemcpyDeviceToHost));
    unsigned s = 7;
    double worst = 0;
    for (int i = 0; i < 256; i++) {
        int n = (int)((frand(&s) * 0.5f + 0.5f) * (N - 1)), o = (int)((frand(&s) * 0.5f + 0.5f) * (out - 1));
        double acc = 0, scale = 0;
        for (int k = 0; k < K; k++) {
            double p = (double)__bfloat162float(hX[(size_t)n * ldk + k]) * __bfloat162float(hW[(size_t)o * ldk + k]);
            acc += p;
            scale += fabs(p);
        }
        double ref = acc;
        if (v != PLAIN) ref *= hg[o];
        if (v == VEC_BIAS || v == VEC_GELU_AUX_BIAS) ref += __bfloat162float(hb[o]);
        if (v == VEC_GELU_AUX_BIAS) ref = gelu_tanh(ref);
        if (v != PLAIN) scale *= fabs(hg[o]);
        double err = fabs((double)__bfloat162float(y[(size_t)n * out + o]) - ref) / (scale > 0 ? scale : 1);
        if (!(err <= worst)) worst = err; /* keeps a NaN */
    }
    free(y);
    return worst;
}

int main(void) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        fprintf(stderr, "probe_lt_epilogue: no CUDA device\n");
        return 77;
    }
    const int N = 8192, r = 16, reps = 21;
    const int shapes[][2] = {{2048, 2048}, {512, 2048}, {8192, 2048}, {2048, 8192}}; /* (out, in) */
    cublasLtHandle_t lt;
    if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "probe_lt_epilogue: cublasLtCreate failed\n");
        return 1;
    }
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    size_t ws_bytes = (size_t)32 << 20;
    void *ws;
    CK(cudaMalloc(&ws, ws_bytes));
    int ver = (int)cublasLtGetVersion();
    printf("cuBLASLt %d; N = %d rows, r = %d; median of %d runs (us)\n", ver, N, r, reps);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int out = shapes[si][0], in = shapes[si][1], K = in + r;
        size_t nx = (size_t)N * K, nw = (size_t)out * K, ny = (size_t)N * out;
        bf16 *hX = (bf16 *)malloc(nx * sizeof *hX), *hW = (bf16 *)malloc(nw * sizeof *hW);
        bf16 *hb = (bf16 *)malloc((size_t)out * sizeof *hb);
        float *hg = (float *)malloc((size_t)out * sizeof *hg);
        unsigned s = 1 + (unsigned)si;
        for (size_t i = 0; i < nx; i++) hX[i] = __float2bfloat16(frand(&s));
        for (size_t i = 0; i < nw; i++) hW[i] = __float2bfloat16(frand(&s) * 0.05f);
        for (int o = 0; o < out; o++) hg[o] = 1.0f + 0.5f * frand(&s), hb[o] = __float2bfloat16(0.1f * frand(&s));
        bf16 *X, *W, *Y, *aux, *b;
        float *g, *zeros;
        CK(cudaMalloc(&zeros, (size_t)out * sizeof *zeros));
        CK(cudaMemset(zeros, 0, (size_t)out * sizeof *zeros));
        CK(cudaMalloc(&X, nx * sizeof *X));
        CK(cudaMalloc(&W, nw * sizeof *W));
        CK(cudaMalloc(&Y, ny * sizeof *Y));
        CK(cudaMalloc(&aux, ny * sizeof *aux));
        CK(cudaMalloc(&b, (size_t)out * sizeof *b));
        CK(cudaMalloc(&g, (size_t)out * sizeof *g));
        CK(cudaMemcpy(X, hX, nx * sizeof *X, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(W, hW, nw * sizeof *W, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(b, hb, (size_t)out * sizeof *b, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(g, hg, (size_t)out * sizeof *g, cudaMemcpyHostToDevice));
        printf("(out %d, in %d):\n", out, in);
        double t_plain = -1;
        for (int v = 0; v < N_VARIANTS; v++) {
            /* the plain GEMM reads the first `in` columns of X and W (row stride K) */
            const int k_run = v == PLAIN ? in : K;
            cublasStatus_t status;
            CK(cudaMemset(Y, 0xff, ny * sizeof *Y)); /* NaN: an unwritten output fails the check */
            double t = run(lt, (enum variant)v, N, out, k_run, K, X, W, g, zeros, b, Y, aux, ws, ws_bytes, st, reps, &status);
            if (t < 0) {
                printf("  %-44s  not available (status %d)\n", variant_name[v], (int)status);
                continue;
            }
            double err = check((enum variant)v, N, out, k_run, K, hX, hW, hg, hb, Y);
            if (v == PLAIN) t_plain = t;
            if (v == PLAIN || t_plain < 0)
                printf("  %-44s  %8.1f us            worst rel. error %.2e\n", variant_name[v], t, err);
            else
                printf("  %-44s  %8.1f us (%+6.1f)  worst rel. error %.2e\n", variant_name[v], t, t - t_plain, err);
        }
        cudaFree(X), cudaFree(W), cudaFree(Y), cudaFree(aux), cudaFree(b), cudaFree(g), cudaFree(zeros);
        free(hX), free(hW), free(hb), free(hg);
    }
    cudaFree(ws);
    cudaStreamDestroy(st);
    cublasLtDestroy(lt);
    return 0;
}
