/*
** cuda_gemm.cu — C (M,N) = alpha op(A) op(B) + beta C through cuBLAS.
**
** Row-major tensors are column-major tensors transposed, so the row-major
** product C = op(A) op(B) is computed as the column-major C^T = op(B)^T
** op(A)^T: cuBLAS gets B first, then A, with the transposes kept.
**
** Types. cuBLAS multiplies two operands of one type. The combinations run:
**   A, B BF16           -> C BF16 or F32, fp32 accumulation (tensor cores)
**   A, B F32, C F32     -> plain fp32 (no TF32), for parameter products;
**                          A A^T with at most 32 rows (DoRA's G) runs
**                          cuda_gram.cu's kernel instead of cuBLAS
** A BF16 C = alpha A op(B) + beta C with K = 8, 16, 24 or 32 runs cuda_lowrank.cu's
**   kernel (one pass over C; op(B) of any float type, fp32 precision)
** Any other mix converts its F32 operands to BF16 first, into scratch owned
** by the backend (kept and grown, so steady-state training allocates
** nothing here). This is the autocast rule: an adapter's F32 A or B meets
** BF16 activations in BF16, as PyTorch's autocast does, and accumulates in
** fp32. beta == 0 ignores C's contents (NaN included), as cuBLAS does.
** A BF16 product with a size that is not a multiple of 8 runs as two
** (gemm_split_unaligned; DORAC_GEMM_NOSPLIT, set, turns this off, for the
** benchmark and the tests).
*/
#include "backend/cuda/cuda_impl.cuh"

static cudaDataType_t cuda_type(dorac_dtype t) {
    return t == DORAC_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

static const char *cublas_name(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "alloc failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "arch mismatch";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "error";
    }
}

/* A contiguous BF16 copy of t in the backend's conversion scratch `slot`. */
static int to_bf16(dorac_backend *be, int slot, const dorac_tensor *t, dorac_tensor *out) {
    cuda_context *ctx = cuda_ctx(be);
    size_t need = dorac_tensor_nbytes(DORAC_DTYPE_BF16, t->rows, t->cols);
    if (need == 0) return dorac_error(DORAC_E_NOMEM, "gemm: operand size overflows");
    if (need > ctx->convert_scratch_size[slot]) {
        be->free(be, ctx->convert_scratch[slot]);
        ctx->convert_scratch_size[slot] = 0;
        ctx->convert_scratch[slot] = be->alloc(be, need);
        if (!ctx->convert_scratch[slot]) return dorac_error_prefix(DORAC_E_NOMEM, "gemm: BF16 operand");
        ctx->convert_scratch_size[slot] = need;
    }
    *out = dorac_tensor_view(ctx->convert_scratch[slot], DORAC_DTYPE_BF16, t->rows, t->cols);
    return CUDA_OP(copy)(be, out, t);
}

/* DORAC_GEMM_NOSPLIT set (and not "0"): no gemm_split_unaligned. Read once. */
static bool gemm_nosplit(void) {
    static int cache = -1;
    return cuda_env_switch("DORAC_GEMM_NOSPLIT", &cache);
}

/* Columns [c0, c0+n) of t, and rows [r0, r0+n) of t. */
static dorac_tensor cols_of(const dorac_tensor *t, int64_t c0, int64_t n) {
    dorac_tensor v = *t;
    v.data = (char *)t->data + (size_t)c0 * dorac_dtype_size(t->type);
    v.cols = n;
    return v;
}

static dorac_tensor rows_of(const dorac_tensor *t, int64_t r0, int64_t n) {
    return dorac_tensor_rows(t, r0, n);
}

/* Splits a tensor-core product one of whose sizes is not a multiple of 8
** into the largest multiple-of-64 part and the rest (fewer than 64), each a
** product of its own. cuBLAS runs such products on sm75-era kernels, about
** 3x slower on an H200 than its sm90 ones (measured: GPT-2's lm_head over
** 50257 columns, 214 and 157 us a 256-row chunk, forward and backward):
** sizes of multiples of 64, with the row starts kept 16-byte aligned, get
** the fast kernels. N and M splits compute each element in one product as
** before; a K split adds the rest to the first part's result (beta 1), one
** more rounding of C when C is BF16. *split is false when nothing is split. */
static int gemm_split_unaligned(dorac_backend *be, const dorac_tensor *C, const dorac_tensor *A, bool trans_a,
                                const dorac_tensor *B, bool trans_b, int64_t M, int64_t N, int64_t K,
                                double alpha, double beta, bool *split) {
    *split = true;
    if (N >= 128 && N % 8) {
        int64_t n0 = N & ~(int64_t)63;
        dorac_tensor c0 = cols_of(C, 0, n0), c1 = cols_of(C, n0, N - n0);
        dorac_tensor b0 = trans_b ? rows_of(B, 0, n0) : cols_of(B, 0, n0);
        dorac_tensor b1 = trans_b ? rows_of(B, n0, N - n0) : cols_of(B, n0, N - n0);
        DORAC_TRY(CUDA_OP(gemm)(be, &c0, A, trans_a, &b0, trans_b, alpha, beta));
        return CUDA_OP(gemm)(be, &c1, A, trans_a, &b1, trans_b, alpha, beta);
    }
    if (M >= 128 && M % 8) {
        int64_t m0 = M & ~(int64_t)63;
        dorac_tensor c0 = rows_of(C, 0, m0), c1 = rows_of(C, m0, M - m0);
        dorac_tensor a0 = trans_a ? cols_of(A, 0, m0) : rows_of(A, 0, m0);
        dorac_tensor a1 = trans_a ? cols_of(A, m0, M - m0) : rows_of(A, m0, M - m0);
        DORAC_TRY(CUDA_OP(gemm)(be, &c0, &a0, trans_a, B, trans_b, alpha, beta));
        return CUDA_OP(gemm)(be, &c1, &a1, trans_a, B, trans_b, alpha, beta);
    }
    if (K >= 128 && K % 8) {
        int64_t k0 = K & ~(int64_t)63;
        dorac_tensor a0 = trans_a ? rows_of(A, 0, k0) : cols_of(A, 0, k0);
        dorac_tensor a1 = trans_a ? rows_of(A, k0, K - k0) : cols_of(A, k0, K - k0);
        dorac_tensor b0 = trans_b ? cols_of(B, 0, k0) : rows_of(B, 0, k0);
        dorac_tensor b1 = trans_b ? cols_of(B, k0, K - k0) : rows_of(B, k0, K - k0);
        DORAC_TRY(CUDA_OP(gemm)(be, C, &a0, trans_a, &b0, trans_b, alpha, beta));
        return CUDA_OP(gemm)(be, C, &a1, trans_a, &b1, trans_b, alpha, 1.0);
    }
    *split = false;
    return DORAC_OK;
}

extern "C" int CUDA_OP(gemm)(dorac_backend *be, const dorac_tensor *C, const dorac_tensor *A,
                             bool trans_a, const dorac_tensor *B, bool trans_b, double alpha,
                             double beta) {
    DORAC_TRY(cuda_check_float(A, "gemm", "A"));
    DORAC_TRY(cuda_check_float(B, "gemm", "B"));
    DORAC_TRY(cuda_check_float(C, "gemm", "C"));
    int64_t M, N, K;
    DORAC_TRY(dorac_gemm_shape(C, A, trans_a, B, trans_b, &M, &N, &K));
    if (M == 0 || N == 0) return DORAC_OK;
    if (K == 0) /* op(A) op(B) is all zeros: C = beta C */
        return beta == 0.0 ? CUDA_OP(fill)(be, C, 0.0) : CUDA_OP(axpby)(be, C, C, beta, 0.0);

    dorac_tensor a = *A, b = *B;
    bool all_f32 = A->type == DORAC_DTYPE_F32 && B->type == DORAC_DTYPE_F32 &&
                   C->type == DORAC_DTYPE_F32;
    /* A A^T of a small F32 A (DoRA's G): cuda_gram.cu's kernel */
    if (all_f32 && !trans_a && trans_b && A->data == B->data && A->ld == B->ld && A->rows == B->rows &&
        A->cols == B->cols && M <= 32 && K <= 65535LL * 256 && A->data != C->data)
        return cuda_gram(be, C, A, alpha, beta);
    /* a product with a small inner size into a BF16 C (the adapter's
    ** dx += du A): one pass over C on the tensor cores, cuda_lowrank.cu */
    if (!trans_a && K <= 32 && A->data != C->data && B->data != C->data && cuda_lowrank_fits(C, A))
        return cuda_lowrank(be, C, A, B, trans_b, alpha, beta, NULL, NULL);
    if (!all_f32) {
        if (a.type != DORAC_DTYPE_BF16) DORAC_TRY(to_bf16(be, 0, A, &a));
        if (b.type != DORAC_DTYPE_BF16) DORAC_TRY(to_bf16(be, 1, B, &b));
        bool split = false;
        if (!gemm_nosplit())
            DORAC_TRY(gemm_split_unaligned(be, C, &a, trans_a, &b, trans_b, M, N, K, alpha, beta, &split));
        if (split) return DORAC_OK;
    }
    float alpha_f = (float)alpha, beta_f = (float)beta;
    cublasStatus_t s = cublasGemmEx(
        cuda_ctx(be)->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
        (int)N, (int)M, (int)K, &alpha_f, b.data, cuda_type(b.type), (int)(b.ld > 0 ? b.ld : 1),
        a.data, cuda_type(a.type), (int)(a.ld > 0 ? a.ld : 1), &beta_f, C->data, cuda_type(C->type),
        (int)(C->ld > 0 ? C->ld : 1), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS)
        return dorac_error(DORAC_E_BACKEND, "gemm: cuBLAS failed (%s) for M=%lld N=%lld K=%lld %s x %s -> %s",
                           cublas_name(s), (long long)M, (long long)N, (long long)K,
                           dorac_dtype_name(a.type), dorac_dtype_name(b.type), dorac_dtype_name(C->type));
    return DORAC_OK;
}

/* ---------------------------------------------------------------------- */
/* gemm_many                                                              */
/* ---------------------------------------------------------------------- */

/* Products that gemm would hand to cuBLAS as they are (BF16 A and B, no
** split, no low-rank pass) are grouped by sizes, types and row strides;
** a group of two or more runs as one cublasGemmBatchedEx, whose pointer
** arrays a one-block kernel writes on the device from its parameters
** (GEMM_BATCH products a batch). Everything else runs through gemm, one by
** one. DoRA's P = W0 A^T is 112 products a Llama-1B step in 4 shapes. */
enum { GEMM_BATCH = 64 };

typedef struct gemm_ptrs {
    const void *b[GEMM_BATCH], *a[GEMM_BATCH];
    void *c[GEMM_BATCH];
} gemm_ptrs;

/* dst: [b pointers | a pointers | c pointers], GEMM_BATCH each. */
static __global__ void gemm_ptrs_kernel(const __grid_constant__ gemm_ptrs p, const void **dst, int n) {
    int i = threadIdx.x;
    if (i >= n) return;
    dst[i] = p.b[i];
    dst[GEMM_BATCH + i] = p.a[i];
    dst[2 * GEMM_BATCH + i] = p.c[i];
}

/* A product of gemm_many: its sizes, whether it may join a batch
** (gemm_batchable), and whether it has run or is in a batch. */
typedef struct gemm_item {
    int64_t M, N, K;
    bool batchable, done;
} gemm_item;

/* Whether a product of sizes (M, N, K) may join a batch: gemm would hand it
** to cuBLAS as it is (BF16 A and B, no split, no low-rank pass), and, since
** cuBLAS picks a batch's kernel without seeing the pointers (they are in
** device memory), each is 16-byte aligned, with row strides of whole
** 16-byte pieces. */
static bool gemm_batchable(const dorac_tensor *C, const dorac_tensor *A, const dorac_tensor *B, int64_t M,
                           int64_t N, int64_t K) {
    if (A->type != DORAC_DTYPE_BF16 || B->type != DORAC_DTYPE_BF16 || !C->data || !A->data || !B->data) return false;
    if (C->type != DORAC_DTYPE_BF16 && C->type != DORAC_DTYPE_F32) return false;
    size_t c_es = dorac_dtype_size(C->type);
    if (((uintptr_t)A->data | (uintptr_t)B->data | (uintptr_t)C->data) % 16 || A->ld % 8 || B->ld % 8 ||
        (C->ld * (int64_t)c_es) % 16)
        return false;
    if (M == 0 || N == 0 || K <= 32) return false; /* nothing to do, or the low-rank pass */
    bool split = (N >= 128 && N % 8) || (M >= 128 && M % 8) || (K >= 128 && K % 8);
    return !split || gemm_nosplit();
}

extern "C" int CUDA_OP(gemm_many)(dorac_backend *be, const dorac_tensor *const *C, const dorac_tensor *const *A,
                                  bool trans_a, const dorac_tensor *const *B, bool trans_b, size_t n,
                                  double alpha, double beta) {
    gemm_item *it = (gemm_item *)calloc(n ? n : 1, sizeof *it);
    if (!it) return dorac_error(DORAC_E_NOMEM, "gemm_many: out of memory for %zu products", n);
    /* every product's operands and sizes before any runs */
    int rc = DORAC_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = cuda_check_float(A[i], "gemm_many", "A");
        if (!rc) rc = cuda_check_float(B[i], "gemm_many", "B");
        if (!rc) rc = cuda_check_float(C[i], "gemm_many", "C");
        if (!rc) rc = dorac_gemm_shape(C[i], A[i], trans_a, B[i], trans_b, &it[i].M, &it[i].N, &it[i].K);
        if (!rc) it[i].batchable = gemm_batchable(C[i], A[i], B[i], it[i].M, it[i].N, it[i].K);
    }
    const void **ptrs = NULL;
    float alpha_f = (float)alpha, beta_f = (float)beta;
    for (size_t i = 0; i < n && !rc; i++) {
        if (it[i].done) continue;
        if (!it[i].batchable) {
            rc = CUDA_OP(gemm)(be, C[i], A[i], trans_a, B[i], trans_b, alpha, beta);
            continue;
        }
        /* i and the later products of its sizes, types and strides */
        gemm_ptrs p;
        size_t grp[GEMM_BATCH];
        int cnt = 0;
        for (size_t j = i; j < n && cnt < GEMM_BATCH; j++) {
            if (it[j].done || !it[j].batchable || it[j].M != it[i].M || it[j].N != it[i].N || it[j].K != it[i].K ||
                C[j]->type != C[i]->type || A[j]->ld != A[i]->ld || B[j]->ld != B[i]->ld || C[j]->ld != C[i]->ld)
                continue;
            p.b[cnt] = B[j]->data, p.a[cnt] = A[j]->data, p.c[cnt] = C[j]->data;
            grp[cnt++] = j;
        }
        for (int g = 0; g < cnt; g++) it[grp[g]].done = true; /* run below, or rc stops the loop */
        if (cnt == 1) {
            rc = CUDA_OP(gemm)(be, C[i], A[i], trans_a, B[i], trans_b, alpha, beta);
            continue;
        }
        if (!ptrs && !(ptrs = (const void **)be->alloc(be, 3 * GEMM_BATCH * sizeof(void *)))) {
            rc = DORAC_E_NOMEM;
            break;
        }
        gemm_ptrs_kernel<<<1, GEMM_BATCH, 0, cuda_stream(be)>>>(p, ptrs, cnt);
        rc = cuda_launch_status("gemm_many");
        if (rc) break;
        cublasStatus_t s = cublasGemmBatchedEx(
            cuda_ctx(be)->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
            (int)it[i].N, (int)it[i].M, (int)it[i].K, &alpha_f, ptrs, CUDA_R_16BF, (int)B[i]->ld, ptrs + GEMM_BATCH,
            CUDA_R_16BF, (int)A[i]->ld, &beta_f, (void *const *)(ptrs + 2 * GEMM_BATCH), cuda_type(C[i]->type),
            (int)C[i]->ld, cnt, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        /* a batch cuBLAS declines runs one product at a time */
        for (int g = 0; s != CUBLAS_STATUS_SUCCESS && g < cnt && !rc; g++)
            rc = CUDA_OP(gemm)(be, C[grp[g]], A[grp[g]], trans_a, B[grp[g]], trans_b, alpha, beta);
    }
    if (ptrs) be->free(be, ptrs); /* stream-ordered: after the products */
    free(it);
    return rc;
}
