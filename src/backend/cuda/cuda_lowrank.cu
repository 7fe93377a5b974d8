/*
** cuda_lowrank.cu — a product with a small inner size on the tensor cores,
** in one pass over its output:
**
**     C (M,N) = scale[n] * (beta C + alpha U op(V)) + bias[n]
**
** U (M,r) BF16, op(V) (r,N) of any float type, r in 8, 16, 24, 32. Two
** callers: the adapter's up-projection with DoRA's epilogue,
** y = g ⊙ (h + s u B^T) + b (cuda_lora_up_scale.cu), and gemm with K = r
** into a BF16 C (cuda_gemm.cu), which is the adapter's input gradient
** dx += du A.
**
** Why a kernel of its own: with r = 16 the arithmetic is nothing and the
** cost is reading and writing C. The fp32-core lora_up_scale kernel was
** issue bound (r FMAs and a shared-memory read per element): 5.07 ms per 2
** steps of 4 Llama-1B layers under ncu, against 2.3 here. cuBLAS runs
** dx += du A with its big-GEMM tiles at about 2.3-3.4 TB/s; at real clocks
** this pass matches it at width 2048 and takes 21-36% less time at 512 and
** 8192 (bench/bench_lowrank.c, docs/PERF.md); under ncu's locked clocks the
** two are even (1.9 and 1.8 ms for the 56 calls).
**
** Layout. A block of LR_WARPS warps owns LR_COLS columns; each warp takes
** every (gridDim.y * LR_WARPS)-th tile of 16 rows of them, and the grid is
** one wave of resident blocks. A warp keeps its columns of op(V) in
** registers as mma B fragments for its whole life. Tiles of C and U travel
** through the warp's own ring of `stages` shared-memory slots
** (lr_stages): cp.async brings tile i + stages - 1 (16-byte pieces of whole
** rows: coalesced) while tile i is computed, ldmatrix turns the C tile into accumulator
** fragments, stmatrix puts the results back, and 16-byte stores write the
** rows out. Every per-tile address is a lane constant plus the tile's row
** offset, r = 8 R8 is a template parameter, and nothing is divided in the
** loop: the pass is bound by instruction issue otherwise.
**
** History (ncu, 2 steps of 4 Llama-1B layers): loading C straight into
** fragments (4 bytes a lane, 8 rows an instruction) ran at about 2.6 TB/s
** for the up-projection and 1.6 for dx += du A, issuing about 580
** instructions per 16 x 64 tile; a first ring with 64-bit address
** arithmetic and a division per piece was slower still. Resident warps
** matter more than the ring's depth: with 64 registers (8 blocks an SM)
** depth 2 beats 3 and 4 by 10-20% at widths 2048 and 8192.
**
** Needs sm_90 (stmatrix), which is what the build targets. Overlapping C
** with U or V is not allowed (as for cuBLAS); gemm sends no call whose C
** starts where an operand does.
**
** Precision. Each alpha * V value is split into two bf16, hi = bf16(v) and
** lo = bf16(v - hi), and both are multiplied (two mmas per tile): the
** product keeps about 16 bits of V's mantissa. U is BF16 already, so the
** result matches an fp32 product of U and V to fp32 accumulation error, as
** the fp32-core kernel did, and is closer than cuBLAS's (which rounds an
** F32 V to BF16 first). The accumulator starts as beta C (beta == 0 reads
** nothing: C may hold NaN), and every element is computed by one thread in
** a fixed order, so results repeat from run to run.
*/
#include <stdlib.h>

#include "backend/cuda/cuda_mma.cuh"

enum { LR_WARPS = 4, LR_COLS = 64, LR_TILES = LR_COLS / 8, LR_LDS = LR_COLS + 8, LR_MAX_STAGES = 4 };
/* A ring slot: the C tile (16, LR_LDS), whose 16 bytes of padding put
** ldmatrix's and stmatrix's eight rows in different bank groups, then the
** U tile (16, lr_ldu(R8)), whose row stride in words is 4 mod 8, so that
** the eight rows of an A fragment read fall in different banks. */
static __host__ __device__ constexpr int lr_ldu(int R8) { return 8 * R8 + (R8 % 2 ? 0 : 8); }
static __host__ __device__ constexpr int lr_slot(int R8) { return 16 * LR_LDS + 16 * lr_ldu(R8); }
/* the rings, then each warp's scale and bias for its columns (2 LR_COLS
** floats) */
static size_t lr_smem_bytes(int R8, int stages) {
    return (size_t)LR_WARPS * stages * lr_slot(R8) * sizeof(bf16) + (size_t)LR_WARPS * 2 * LR_COLS * sizeof(float);
}

/* The ring's depth, 2 to 4 slots: 2, or DORAC_LOWRANK_STAGES (a tuning
** knob for bench/bench_lowrank.c); DORAC_LOWRANK_OFF set: the kernel is
** not used at all (callers take cuBLAS or the fp32-core kernel), so that
** the benchmark can time what it replaces. Read once. */
static int lr_stages(void) {
    static int stages = 0;
    if (!stages) {
        const char *e = getenv("DORAC_LOWRANK_STAGES");
        int v = e ? atoi(e) : 2;
        stages = v >= 2 && v <= LR_MAX_STAGES ? v : 2;
    }
    return stages;
}
static bool lr_off(void) {
    static int cache = -1;
    return cuda_env_switch("DORAC_LOWRANK_OFF", &cache);
}

bool cuda_lowrank_fits(const dorac_tensor *C, const dorac_tensor *U) {
    int64_t r = U->cols;
    return !lr_off() && C->type == DORAC_DTYPE_BF16 && U->type == DORAC_DTYPE_BF16 && r >= 8 && r <= 32 && r % 8 == 0 &&
           C->cols % 8 == 0 && C->ld % 8 == 0 && (uintptr_t)C->data % 16 == 0 && U->ld % 8 == 0 &&
           (uintptr_t)U->data % 16 == 0 && U->rows == C->rows && C->rows <= INT32_MAX - 16 &&
           (C->cols + LR_COLS - 1) / LR_COLS <= INT32_MAX;
}

/* (x, y) as a bf16 pair hi and the pair of what hi misses, lo (0 where hi
** is infinite, so that an infinite or bf16-overflowing value gives inf,
** not inf - inf = NaN). */
static __device__ __forceinline__ void split_pair(float x, float y, uint32_t *hi, uint32_t *lo) {
    __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    float2 hf = __bfloat1622float2(h);
    *hi = *(uint32_t *)&h;
    *lo = pack_bf16(isfinite(hf.x) ? x - hf.x : 0.0f, isfinite(hf.y) ? y - hf.y : 0.0f);
}

static __device__ __forceinline__ float2 unpack_pair(uint32_t v) {
    return __bfloat1622float2(*(__nv_bfloat162 *)&v);
}

/* The asm below clobbers memory so that the compiler keeps the plain
** shared-memory accesses in order with them. */
static __device__ __forceinline__ void lr_cp_async16(void *dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}
static __device__ __forceinline__ void lr_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/* waits for all but the newest stages - 1 groups (stages 2 to 4) */
static __device__ __forceinline__ void lr_wait(int stages) {
    if (stages == 2) asm volatile("cp.async.wait_group 1;\n" ::: "memory");
    else if (stages == 3) asm volatile("cp.async.wait_group 2;\n" ::: "memory");
    else asm volatile("cp.async.wait_group 3;\n" ::: "memory");
}
/* ldsm_x4's inverse: register i to matrix i, lane l addressing row l%8 of
** matrix l/8. */
static __device__ __forceinline__ void stsm_x4(bf16 *p, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(smem_u32(p)),
                 "r"(r0), "r"(r1), "r"(r2), "r"(r3)
                 : "memory");
}

/* alpha op(V)[k, n] (0 past r or N), V of type T. */
template <int R, typename T>
static __device__ __forceinline__ float v_at(const T *V, int64_t ld, bool v_trans, int k, int64_t n, int64_t ncols,
                                             float alpha) {
    if (k >= R || n >= ncols) return 0.0f;
    T v = v_trans ? V[n * ld + k] : V[(int64_t)k * ld + n];
    return alpha * (float)v;
}

/* This warp's columns n0.. of alpha op(V) as B fragments, hi and lo; k
** past R is zero (the second half of the last 16-wide step where R8 is
** odd), so those products vanish whatever U's slot holds there. */
template <int KS, int R, typename T>
static __device__ __forceinline__ void v_fragments(uint32_t bh[LR_TILES][KS][2], uint32_t bl[LR_TILES][KS][2],
                                                   const T *V, int64_t ld, bool v_trans, int64_t n0,
                                                   int64_t ncols, float alpha, int g, int c) {
#pragma unroll
    for (int j = 0; j < LR_TILES; j++)
#pragma unroll
        for (int ks = 0; ks < KS; ks++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int k = ks * 16 + 2 * c + 8 * h;
                int64_t n = n0 + 8 * j + g;
                split_pair(v_at<R>(V, ld, v_trans, k, n, ncols, alpha), v_at<R>(V, ld, v_trans, k + 1, n, ncols, alpha),
                           &bh[j][ks][h], &bl[j][ks][h]);
            }
}

/* Grid (ceil(N / LR_COLS), any), LR_WARPS warps, lr_smem_bytes(R8, stages)
** bytes of dynamic shared memory. At least 8 blocks an SM for r <= 16 (64
** registers a thread): the pass gains more from resident warps than from a
** deeper ring (bench/bench_lowrank.c); wider ranks would spill at 64. r = 8 R8. With R8 odd, the A fragments' k past r read 0
** (the second half of the last 16-wide step). */
template <int R8, bool BETA, bool SCALE, bool BIAS>
static __global__ void __launch_bounds__(LR_WARPS * 32, R8 <= 2 ? 8 : 4)
    lowrank_kernel(bf16 *C, int64_t ldc, const bf16 *U, int64_t ldu, cuda_view V, bool v_trans, int M,
                   int64_t ncols, float alpha, float beta, cuda_view scale, cuda_view bias, int stages) {
    constexpr int KS = (R8 + 1) / 2, LDU = lr_ldu(R8), SLOT = lr_slot(R8), r = 8 * R8;
    constexpr int U_PIECES = 16 * R8; /* 16-byte pieces of a U tile */
    extern __shared__ __align__(16) bf16 lr_smem[];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    bf16 *ring = lr_smem + warp * stages * SLOT;
    int64_t n0 = (int64_t)blockIdx.x * LR_COLS;
    int tiles = (M + 15) / 16, first = blockIdx.y * LR_WARPS + warp, step = gridDim.y * LR_WARPS;
    int count = first < tiles ? (tiles - first + step - 1) / step : 0;
    if (count == 0) return;

    /* the lane's pieces of a C tile: rows cq + 4k (k < 4), chunk cc; of a
    ** U tile: piece uq + 32k, row (uq + 32k) / R8, chunk (uq + 32k) % R8 */
    int cq = lane >> 3, cc = lane & 7;
    bool c_col_ok = n0 + 8 * cc < ncols; /* ncols is a multiple of 8 */
    const bf16 *c_src = C + cq * ldc + n0 + 8 * cc; /* plus the tile's row offset */
    int c_dst = cq * LR_LDS + 8 * cc;

    /* queues tile i's U rows and (BETA) C rows into ring slot `slot_i`,
    ** which is i % stages (kept as running indices: no division in the loop) */
    auto fetch = [&](int i, int slot_i) {
        int base = (first + i * step) * 16, left = M - base; /* rows of the tile inside */
        bf16 *slot = ring + slot_i * SLOT;
        if (BETA) {
            const bf16 *src = c_src + (int64_t)base * ldc;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                bool ok = c_col_ok && cq + 4 * k < left;
                lr_cp_async16(slot + c_dst + 4 * k * LR_LDS, ok ? src + 4 * k * ldc : C, ok ? 16 : 0);
            }
        }
        bf16 *ut = slot + 16 * LR_LDS;
        const bf16 *usrc = U + (int64_t)base * ldu;
#pragma unroll
        for (int k = 0; k < (U_PIECES + 31) / 32; k++) {
            int q = lane + 32 * k, row = q / R8, ch = q % R8;
            if (q < U_PIECES) {
                bool ok = row < left;
                lr_cp_async16(ut + row * LDU + 8 * ch, ok ? usrc + row * ldu + 8 * ch : U, ok ? 16 : 0);
            }
        }
    };
    for (int i = 0; i < stages - 1; i++) {
        if (i < count) fetch(i, i);
        lr_commit();
    }

    /* op(V) fragments */
    uint32_t bh[LR_TILES][KS][2], bl[LR_TILES][KS][2];
    if (V.type == DORAC_DTYPE_F32)
        v_fragments<KS, r>(bh, bl, (const float *)V.data, V.ld, v_trans, n0, ncols, alpha, g, c);
    else
        v_fragments<KS, r>(bh, bl, (const __nv_bfloat16 *)V.data, V.ld, v_trans, n0, ncols, alpha, g, c);
    /* scale and bias in shared memory, read as pairs in the epilogue
    ** (in registers they cost 32 of them, and spills at 64) */
    float *vec = (float *)(lr_smem + LR_WARPS * stages * SLOT) + warp * 2 * LR_COLS;
    if (SCALE || BIAS) {
        for (int e = lane; e < LR_COLS; e += 32) {
            bool ok = n0 + e < ncols;
            vec[e] = SCALE && ok ? ld_at(scale, 0, n0 + e) : 1.0f;
            vec[LR_COLS + e] = BIAS && ok ? ld_at(bias, 0, n0 + e) : 0.0f;
        }
        __syncwarp();
    }

    for (int i = 0, cur = 0; i < count; i++, cur = cur + 1 == stages ? 0 : cur + 1) {
        /* tile i + stages - 1 goes where tile i - 1 was: slot cur - 1 */
        if (i + stages - 1 < count) fetch(i + stages - 1, cur == 0 ? stages - 1 : cur - 1);
        lr_commit();
        lr_wait(stages);
        __syncwarp();
        bf16 *slot = ring + cur * SLOT;
        /* U's A fragments */
        uint32_t a[KS][4];
        const bf16 *ut = slot + 16 * LR_LDS + g * LDU + 2 * c;
#pragma unroll
        for (int ks = 0; ks < KS; ks++) {
            a[ks][0] = *(const uint32_t *)(ut + 16 * ks);
            a[ks][1] = *(const uint32_t *)(ut + 8 * LDU + 16 * ks);
            bool in = 16 * ks + 8 < r;
            a[ks][2] = in ? *(const uint32_t *)(ut + 16 * ks + 8) : 0u;
            a[ks][3] = in ? *(const uint32_t *)(ut + 8 * LDU + 16 * ks + 8) : 0u;
        }
#pragma unroll
        for (int jj = 0; jj < LR_TILES / 2; jj++) {
            /* n tiles 2jj and 2jj+1: one 16x16 block of the slot */
            bf16 *blk = slot + lane_row_a(lane) * LR_LDS + 16 * jj + lane_col_a(lane);
            float acc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
            if (BETA) {
                uint32_t y[4];
                ldsm_x4(y, blk);
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    float2 p = unpack_pair(y[2 * h]), q = unpack_pair(y[2 * h + 1]);
                    acc[h][0] = p.x, acc[h][1] = p.y, acc[h][2] = q.x, acc[h][3] = q.y;
                    if (beta != 1.0f)
#pragma unroll
                        for (int e = 0; e < 4; e++) acc[h][e] *= beta;
                }
            }
            uint32_t out[4];
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int j = 2 * jj + h;
#pragma unroll
                for (int ks = 0; ks < KS; ks++) {
                    mma_bf16(acc[h], a[ks], bh[j][ks][0], bh[j][ks][1]);
                    mma_bf16(acc[h], a[ks], bl[j][ks][0], bl[j][ks][1]);
                }
                float2 sc = SCALE ? *(const float2 *)(vec + 8 * j + 2 * c) : make_float2(1.0f, 1.0f);
                float2 bi = BIAS ? *(const float2 *)(vec + LR_COLS + 8 * j + 2 * c) : make_float2(0.0f, 0.0f);
                out[2 * h] = pack_bf16(sc.x * acc[h][0] + bi.x, sc.y * acc[h][1] + bi.y);
                out[2 * h + 1] = pack_bf16(sc.x * acc[h][2] + bi.x, sc.y * acc[h][3] + bi.y);
            }
            stsm_x4(blk, out[0], out[1], out[2], out[3]);
        }
        __syncwarp();
        /* the tile's rows out, 16 bytes a lane */
        int base = (first + i * step) * 16, left = M - base;
        bf16 *dst = (bf16 *)c_src + (int64_t)base * ldc;
#pragma unroll
        for (int k = 0; k < 4; k++)
            if (c_col_ok && cq + 4 * k < left)
                *(uint4 *)(dst + 4 * k * ldc) = *(const uint4 *)(slot + c_dst + 4 * k * LR_LDS);
        __syncwarp(); /* the slot is read before a later fetch refills it */
    }
}

typedef void (*lowrank_fn)(bf16 *, int64_t, const bf16 *, int64_t, cuda_view, bool, int, int64_t, float, float,
                           cuda_view, cuda_view, int);

/* variant: beta 4 + scale 2 + bias 1 */
template <int R8> static lowrank_fn pick(int variant) {
    static const lowrank_fn fns[8] = {
        lowrank_kernel<R8, false, false, false>, lowrank_kernel<R8, false, false, true>,
        lowrank_kernel<R8, false, true, false>,  lowrank_kernel<R8, false, true, true>,
        lowrank_kernel<R8, true, false, false>,  lowrank_kernel<R8, true, false, true>,
        lowrank_kernel<R8, true, true, false>,   lowrank_kernel<R8, true, true, true>,
    };
    return fns[variant];
}

/* Resident blocks an SM of fn at smem bytes, into *per_sm: asked once per
** backend and variant (slot), when fn's attributes are also set: the
** largest shared-memory carveout, so that the driver does not size it for
** fewer blocks than the registers allow, and the dynamic limit past 48 KiB.
** A failed occupancy query counts one block. */
static int blocks_per_sm(cuda_context *ctx, int slot, lowrank_fn fn, size_t smem, int *per_sm) {
    if (ctx->lowrank_blocks[slot] > 0) {
        *per_sm = ctx->lowrank_blocks[slot];
        return DORAC_OK;
    }
    DORAC_TRY(cuda_status(cudaFuncSetAttribute((const void *)fn, cudaFuncAttributePreferredSharedMemoryCarveout,
                                               (int)cudaSharedmemCarveoutMaxShared),
                          "lowrank", "shared memory carveout"));
    if (smem > 48 * 1024)
        DORAC_TRY(cuda_status(cudaFuncSetAttribute((const void *)fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   (int)smem),
                              "lowrank", "shared memory limit"));
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, fn, LR_WARPS * 32, smem) != cudaSuccess || n < 1) {
        n = 1;
        (void)cudaGetLastError(); /* tolerated: not a launch failure */
    }
    *per_sm = ctx->lowrank_blocks[slot] = n;
    return DORAC_OK;
}

int cuda_lowrank(dorac_backend *be, const dorac_tensor *C, const dorac_tensor *U, const dorac_tensor *V,
                 bool v_trans, double alpha, double beta, const dorac_tensor *scale, const dorac_tensor *bias) {
    int64_t M = C->rows, N = C->cols, r = U->cols;
    if (M == 0 || N == 0) return DORAC_OK;
    /* beta as the kernel sees it: one that rounds to 0.0f reads nothing */
    bool has_scale = scale && scale->data, has_bias = bias && bias->data;
    int variant = ((float)beta != 0.0f ? 4 : 0) + (has_scale ? 2 : 0) + (has_bias ? 1 : 0), R8 = (int)(r / 8);
    lowrank_fn fn = R8 == 1 ? pick<1>(variant) : R8 == 2 ? pick<2>(variant) : R8 == 3 ? pick<3>(variant) : pick<4>(variant);
    cuda_context *ctx = cuda_ctx(be);
    if (ctx->sm_count < 1 &&
        cudaDeviceGetAttribute(&ctx->sm_count, cudaDevAttrMultiProcessorCount, ctx->device) != cudaSuccess) {
        ctx->sm_count = 132;
        (void)cudaGetLastError(); /* tolerated: not a launch failure */
    }
    /* one wave of resident blocks, each warp looping over its share of the
    ** row tiles */
    int stages = lr_stages(), per_sm;
    size_t smem = lr_smem_bytes(R8, stages);
    DORAC_TRY(blocks_per_sm(ctx, (R8 - 1) * 8 + variant, fn, smem, &per_sm));
    /* blocks per column strip, rounded down: no second partial wave */
    int64_t strips = (N + LR_COLS - 1) / LR_COLS, tiles = (M + 15) / 16;
    int64_t per_strip = (int64_t)ctx->sm_count * per_sm / strips;
    int64_t need = (tiles + LR_WARPS - 1) / LR_WARPS;
    int64_t gy = per_strip < 1 ? 1 : per_strip;
    if (gy > need) gy = need;
    if (gy > 65535) gy = 65535;
    cuda_view none = {NULL, 0, 0};
    fn<<<dim3((unsigned)strips, (unsigned)gy), LR_WARPS * 32, smem, cuda_stream(be)>>>(
        (bf16 *)C->data, C->ld, (const bf16 *)U->data, U->ld, cuda_view_of(V), v_trans, (int)M, N, (float)alpha,
        (float)beta, has_scale ? cuda_view_of(scale) : none, has_bias ? cuda_view_of(bias) : none, stages);
    return cuda_launch_status("lowrank");
}
