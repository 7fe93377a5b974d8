/*
** cuda_attention.cuh — what the three attention files share: the shape
** check, the test for the tensor-core path, and the warp-level building
** blocks of that path (ldmatrix, mma.sync, cp.async).
**
** Size letters as in backend.h: B batch, T time, H query heads, KV key/value
** heads, D head dimension, N = B*T rows.
**
** The tensor-core path. Tiles of bf16 rows sit in shared memory with a row
** stride of D + 8 elements (16 bytes of padding), so the eight 16-byte rows
** that one ldmatrix phase reads fall in eight different bank groups. Each
** warp owns 16 rows of the product it computes; mma.sync m16n8k16 takes
** bf16 operands and accumulates in fp32. The fragment layouts (PTX ISA,
** "Matrix fragments for mma.m16n8k16"), with g = lane/4 and c = lane%4:
**   A (16x16, row-major): a0 (g, 2c..2c+1)   a1 (g+8, 2c..)
**                         a2 (g, 2c+8..)     a3 (g+8, 2c+8..)
**   B (16x8, k by n):     b0 (k 2c..2c+1, n g)   b1 (k 2c+8.., n g)
**   C (16x8, fp32):       c0,c1 (g, 2c..2c+1)    c2,c3 (g+8, 2c..2c+1)
** so the C fragments of two neighbouring 8-column tiles, rounded to bf16,
** are exactly the A fragment of the next product (P in P V): the score
** matrix never leaves registers.
*/
#ifndef DORAC_CUDA_ATTENTION_CUH
#define DORAC_CUDA_ATTENTION_CUH

#include "backend/cuda/cuda_impl.cuh"
#include "backend/cuda/cuda_mma.cuh"

/* The largest head dimension the CUDA backend runs. */
#define ATTN_MAX_D 256

#define ATTN_LOG2E 1.4426950408889634f
#define ATTN_LN2 0.6931471805599453f

/* ---- host side -------------------------------------------------------- */

/* The CPU backend's checks (cpu_ops_attention.c), with the same codes, and
** the CUDA backend's limit on D. */
static inline int attn_check(const dorac_tensor *o, const dorac_tensor *q, const dorac_tensor *k,
                             const dorac_tensor *v, const dorac_tensor *lse, int64_t B, int64_t T,
                             int64_t H, int64_t KV, int64_t D, const char *op) {
    if (B <= 0 || T <= 0 || H <= 0 || KV <= 0 || D <= 0 || H % KV)
        return dorac_error(DORAC_E_INVALID, "%s: bad sizes B=%lld T=%lld H=%lld KV=%lld D=%lld", op,
                           (long long)B, (long long)T, (long long)H, (long long)KV, (long long)D);
    DORAC_TRY(cuda_check_shape(q, B * T, H * D, op, "q"));
    DORAC_TRY(cuda_check_shape(k, B * T, KV * D, op, "k"));
    DORAC_TRY(cuda_check_shape(v, B * T, KV * D, op, "v"));
    DORAC_TRY(cuda_check_shape(o, B * T, H * D, op, "out"));
    DORAC_TRY(cuda_check_shape(lse, 1, B * H * T, op, "lse"));
    /* grids: (b, head) pairs on x, tiles of rows on y, the smallest tiles
    ** being 8 rows */
    if (D > ATTN_MAX_D || B * H > INT32_MAX || (T + 7) / 8 > 65535)
        return dorac_error(DORAC_E_UNSUPPORTED,
                           "%s: sizes beyond the CUDA kernels (D=%lld, at most %d; T=%lld; B*H=%lld)",
                           op, (long long)D, ATTN_MAX_D, (long long)T, (long long)(B * H));
    return DORAC_OK;
}

/* Head dimensions with a tensor-core kernel. */
static inline bool attn_mma_dim(int64_t D) {
    return D == 16 || D == 32 || D == 64 || D == 96 || D == 128;
}

/* Raises a kernel's dynamic shared memory limit where it needs more than
** the default 48 KiB. */
static inline int attn_smem_limit(const void *kernel, size_t bytes, const char *op) {
    if (bytes <= 48 * 1024) return DORAC_OK;
    return cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            (int)bytes),
                       op, "shared memory limit");
}

/* ---- device side ------------------------------------------------------ */

/* 2^x on the special function unit, subnormal results flushed to zero
** (exp2f adds a subnormal fix-up around the same instruction). */
static __device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* 16 bytes global -> shared without a register round trip; src_bytes 0
** writes zeros (rows past the end). */
static __device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(src_bytes));
}
static __device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::);
}
template <int N> static __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* Queues the copy of rows [row0, row0 + ROWS) of a bf16 matrix, D columns
** from src (which points at row 0, column 0 of the head), into a
** [ROWS][D + 8] smem tile; rows at or past row_end become zeros. All
** THREADS threads of the block call it. */
template <int ROWS, int D, int THREADS>
static __device__ __forceinline__ void load_tile_async(bf16 *dst, const bf16 *src, int64_t ld,
                                                       int row0, int row_end) {
    constexpr int CHUNKS = D / 8; /* 16-byte pieces of a row */
    for (int c = threadIdx.x; c < ROWS * CHUNKS; c += THREADS) {
        int r = c / CHUNKS, piece = c % CHUNKS, row = row0 + r;
        bool in = row < row_end;
        const bf16 *from = in ? src + (int64_t)row * ld + piece * 8 : src;
        cp_async16(dst + r * (D + 8) + piece * 8, from, in ? 16 : 0);
    }
}

#endif
