/*
** cpu_backend.c — the CPU backend: OpenBLAS for GEMMs, OpenMP for the rest.
** This file holds memory management and the construction of the backend
** struct; the ops are in cpu_ops_*.c. See cpu_impl.h for why every file here
** is compiled twice (fp32 "cpu" and fp64 "cpu64").
**
** Memory is counted (n_allocs, current, peak, largest) so that tests can
** prove what an algorithm allocates. A backend is used by one thread at a
** time; its ops use OpenMP inside.
*/
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_impl.h"
#include "core/size.h"

#ifdef CPU_BACKEND_F64
#define CREATE_FN dorac_backend_cpu64_create
#else
#define CREATE_FN dorac_backend_cpu_create
#endif

#define ALIGNMENT 64

typedef struct cpu_context {
    dorac_mem_stats stats;
} cpu_context;

/* ---------------------------------------------------------------------- */
/* memory                                                                 */
/* ---------------------------------------------------------------------- */

/* Each block is preceded by a 64-byte header holding its size, so that free
** can keep the counters exact without a lookup table. */
static void *cpu_alloc(dorac_backend *be, size_t nbytes) {
    cpu_context *ctx = be->context;
    size_t total;
    if (!dorac_size_add(nbytes, ALIGNMENT, &total) || !dorac_size_add(total, ALIGNMENT - 1, &total)) {
        dorac_error(DORAC_E_NOMEM, "cpu: allocation of %zu bytes overflows", nbytes);
        return NULL;
    }
    total -= total % ALIGNMENT;
    unsigned char *block = aligned_alloc(ALIGNMENT, total);
    if (!block) {
        dorac_error(DORAC_E_NOMEM, "cpu: out of memory allocating %zu bytes", nbytes);
        return NULL;
    }
    memcpy(block, &nbytes, sizeof nbytes);
    ctx->stats.n_allocs++;
    ctx->stats.current_bytes += nbytes;
    if (ctx->stats.current_bytes > ctx->stats.peak_bytes) ctx->stats.peak_bytes = ctx->stats.current_bytes;
    if (nbytes > ctx->stats.largest_alloc) ctx->stats.largest_alloc = nbytes;
    return block + ALIGNMENT;
}

static void cpu_free(dorac_backend *be, void *ptr) {
    if (!ptr) return;
    cpu_context *ctx = be->context;
    unsigned char *block = (unsigned char *)ptr - ALIGNMENT;
    size_t nbytes;
    memcpy(&nbytes, block, sizeof nbytes);
    ctx->stats.current_bytes -= nbytes;
    free(block);
}

static void cpu_mem_stats(dorac_backend *be, dorac_mem_stats *out) {
    *out = ((cpu_context *)be->context)->stats;
}

static void cpu_mem_stats_reset(dorac_backend *be) {
    cpu_context *ctx = be->context;
    ctx->stats.n_allocs = 0;
    ctx->stats.largest_alloc = 0;
    ctx->stats.peak_bytes = ctx->stats.current_bytes;
}

/* ---------------------------------------------------------------------- */
/* construction                                                           */
/* ---------------------------------------------------------------------- */

static void cpu_destroy(dorac_backend *be) {
    free(be->context);
    free(be);
}

dorac_backend *CREATE_FN(dorac_cpu_params params) {
    dorac_backend *be = calloc(1, sizeof *be);
    cpu_context *ctx = calloc(1, sizeof *ctx);
    if (!be || !ctx) {
        free(be);
        free(ctx);
        dorac_error(DORAC_E_NOMEM, "cpu: out of memory creating the backend");
        return NULL;
    }
    if (params.n_threads > 0) dorac_set_num_threads(params.n_threads);
    *be = (dorac_backend){
        .name = BACKEND_NAME,
        .context = ctx,
        .act_type = REAL_DTYPE,
        .weight_type = REAL_DTYPE,
        .param_type = REAL_DTYPE,
        .destroy = cpu_destroy,
        .alloc = cpu_alloc,
        .free = cpu_free,
        .mem_stats = cpu_mem_stats,
        .mem_stats_reset = cpu_mem_stats_reset,
        .upload = CPU_FN(upload),
        .download = CPU_FN(download),
        .copy = CPU_FN(copy),
        .fill = CPU_FN(fill),
        .synchronize = NULL,
        .gemm = CPU_FN(gemm),
        .axpby = CPU_FN(axpby),
        .row_sumsq = CPU_FN(row_sumsq),
        .col_sum = CPU_FN(col_sum),
        .scale_cols_add_bias = CPU_FN(scale_cols_add_bias),
        .scale_rows = CPU_FN(scale_rows),
        .dropout = CPU_FN(dropout),
        .dora_norm = CPU_FN(dora_norm),
        .dora_scale_backward = CPU_FN(dora_scale_backward),
        .dora_magnitude_backward = CPU_FN(dora_magnitude_backward),
        .sum_squares = CPU_FN(sum_squares),
        .adamw = CPU_FN(adamw),
        .embedding_forward = CPU_FN(embedding_forward),
        .embedding_backward = CPU_FN(embedding_backward),
        .rmsnorm_forward = CPU_FN(rmsnorm_forward),
        .rmsnorm_backward = CPU_FN(rmsnorm_backward),
        .layernorm_forward = CPU_FN(layernorm_forward),
        .layernorm_backward = CPU_FN(layernorm_backward),
        .rope = CPU_FN(rope),
        .attention_forward = CPU_FN(attention_forward),
        .attention_backward = CPU_FN(attention_backward),
        .swiglu_forward = CPU_FN(swiglu_forward),
        .swiglu_backward = CPU_FN(swiglu_backward),
        .gelu_forward = CPU_FN(gelu_forward),
        .gelu_backward = CPU_FN(gelu_backward),
        .cross_entropy = CPU_FN(cross_entropy),
        .attention_cached = CPU_FN(attention_cached),
    };
    return be;
}

