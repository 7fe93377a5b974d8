/*
** cpu_ops_decode.c — attention of a few new query rows against a KV cache,
** the one op that incremental decoding (src/model/decode.c) adds to the
** transformer ops. See backend.h (attention_cached) for the contract.
**
** Size letters: n new query rows, past cached rows before them, L = past+n
** key rows, H query heads, KV key/value heads, D head dimension.
**
** Query row i sits at position past+i and sees key rows 0..past+i: every
** cached row, and the new rows up to itself (causal among the new rows).
** With past = 0 and n = T this is attention_forward for B = 1; with n = 1 it
** is one decoding step, O(L·D) per head instead of the O(L²·D) of running
** attention over the whole sequence again.
**
** The work is split over (head, block of QB query rows) pairs, each a
** single-threaded BLAS GEMM pair S = scale Q_blk K[0:keys]^T, O_blk = P V,
** exactly as attention_forward's blocked path. Every output element is
** written by one task in a fixed order, so results do not depend on the
** thread count. Scratch is one (QB, L) block per thread. No log-sum-exp is
** kept: this op has no backward.
*/
#include <math.h>
#include <stdlib.h>

#include "backend/cpu/cpu_blas.h"
#include "backend/cpu/cpu_impl.h"

/* query rows per block */
#define QB 64

int CPU_FN(attention_cached)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *q,
                             const dorac_tensor *k, const dorac_tensor *v, int64_t past, int64_t H,
                             int64_t KV, int64_t D) {
    (void)be;
    const char *op = "attention_cached";
    int64_t n = q->rows;
    if (n <= 0 || past < 0 || H <= 0 || KV <= 0 || D <= 0 || H % KV || past > INT32_MAX - n)
        return dorac_error(DORAC_E_INVALID, "%s: bad sizes n=%lld past=%lld H=%lld KV=%lld D=%lld", op,
                           (long long)n, (long long)past, (long long)H, (long long)KV, (long long)D);
    int64_t L = past + n;
    DORAC_TRY(check_shape(q, n, H * D, op, "q"));
    DORAC_TRY(check_shape(out, n, H * D, op, "out"));
    DORAC_TRY(check_shape(k, L, KV * D, op, "k"));
    DORAC_TRY(check_shape(v, L, KV * D, op, "v"));
    if (L > INT32_MAX / QB || q->ld > INT32_MAX || k->ld > INT32_MAX || v->ld > INT32_MAX || out->ld > INT32_MAX)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: sizes exceed the 32-bit BLAS interface", op);
    const real scale = (real)(1.0 / sqrt((double)D));
    int64_t group = H / KV, n_blocks = (n + QB - 1) / QB;
    int saved = blas_serial_begin(), failed = 0; /* BLAS on the calling thread (cpu_blas.h) */
    CPU_PRAGMA_(omp parallel if (n * H * L * D >= CPU_MIN_PARALLEL_WORK))
    {
        real *S = malloc((size_t)(QB * L) * sizeof(real));
        if (!S) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < H * n_blocks; task++) {
            if (failed) continue;
            int64_t h = task / n_blocks, i0 = (task % n_blocks) * QB, kvh = h / group;
            int64_t rows = n - i0 < QB ? n - i0 : QB, keys = past + i0 + rows; /* causal: keys < past+i0+rows */
            const real *Qb = row_ptr(q, i0) + h * D;
            const real *Kb = (const real *)k->data + kvh * D, *Vb = (const real *)v->data + kvh * D;
            /* S (rows, keys) = scale Q_blk K[0:keys]^T */
            blas_gemm(false, true, (int)rows, (int)keys, (int)D, scale, Qb, (int)q->ld, Kb, (int)k->ld, 0, S, (int)keys);
            /* each row's own position is past+i0+i; later keys are masked */
            for (int64_t i = 0; i < rows; i++) softmax_prefix(S + i * keys, past + i0 + i, keys);
            /* O_blk (rows, D) = P V[0:keys] */
            blas_gemm(false, false, (int)rows, (int)D, (int)keys, 1, S, (int)keys, Vb, (int)v->ld, 0,
                      row_ptr(out, i0) + h * D, (int)out->ld);
        }
        free(S);
    }
    blas_serial_end(saved);
    if (failed) return dorac_error(DORAC_E_NOMEM, "%s: out of memory for scratch (%lld keys)", op, (long long)L);
    return DORAC_OK;
}
