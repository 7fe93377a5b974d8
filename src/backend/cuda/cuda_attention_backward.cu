/*
** cuda_attention_backward.cu — the backward of causal GQA attention on the
** GPU (backend.h's attention_backward), flash-attention style: P is
** recomputed from q, k and the forward's log-sum-exp, never stored.
**
** Size letters: B batch, T time, H query heads, KV key/value heads (group =
** H/KV query heads per kv head), D head dimension, N = B*T rows. q, out,
** dout, dq (N, H*D); k, v, dk, dv (N, KV*D); lse (1, B*H*T). Any of them may
** be a column view. dq, dk, dv are overwritten.
**
** The math, per (b, h) with s = 1/sqrt(D), for query row t and key j <= t:
**   P[t,j]  = exp(s q_t·k_j - lse_t)
**   dP[t,j] = dout_t · v_j
**   dS[t,j] = P[t,j] (dP[t,j] - Di_t) s,   Di_t = dout_t · out_t
**   dq_t = sum_j dS[t,j] k_j,   dk_j = sum_{h in group, t} dS[t,j] q_t,
**   dv_j = sum_{h in group, t} P[t,j] dout_t
** (Di_t = sum_j P[t,j] dP[t,j], the softmax's row term, read off the
** forward's output instead of summed over keys.)
**
** Each pass owns what it writes, so no two blocks add into the same
** element and no float atomics are needed: the results are bit-identical
** from run to run. Di goes to fp32 scratch (be->alloc, freed stream-ordered
** right after the launches).
**   dQ: a block owns a tile of query rows of one (b, h) and walks the key
**     tiles up to its last row, as the forward does. It also computes Di
**     for its rows (it holds their dout already) and writes it out for:
**   dK, dV: a block owns a tile of keys of one (b, kv head) and keeps
**     their dK, dV in registers while it walks, in a fixed order, every
**     query head of the group and every query tile at or after the key
**     tile (earlier rows see none of these keys).
** Both recompute P and dP (seven tile products where an atomic-add design
** needs five) in exchange for determinism.
**
** Two versions:
**   *_mma: every operand but lse BF16 with rows readable 16 bytes at a
**     time and D one of 16, 32, 64, 96, 128. 4 warps, each owning 16 rows
**     of the block's tile (query rows for dQ, keys for dK, dV); the
**     streamed tiles are double-buffered in shared memory by cp.async;
**     products on the tensor cores (mma.sync, bf16 in, fp32 accumulation),
**     P and dS rounded to bf16 in registers for the second product as in
**     the forward. The scale s is applied once to the finished dQ and dK.
**   *_generic: everything else (F32, odd strides, any D up to 256), fp32
**     on the CUDA cores: attention_rowdot (a warp per row and head) for
**     Di, then one key (dK, dV) or one query row (dQ) per lane or warp;
**     the obvious twin the fast kernels are tested against.
*/
#include "backend/cuda/cuda_attention.cuh"

#define BWD_BKV 64  /* keys per block in the fast dK/dV pass, 16 per warp */
#define BWD_BQ 64   /* query rows per block in the fast dQ pass, 16 per warp */
#define GEN_KEYS 32 /* keys per block in the generic dK/dV pass, one per lane */
#define GEN_STEP 4  /* query rows per step of the generic dK/dV pass, one per warp */
#define GEN_ROWS 8  /* query rows per block in the generic dQ pass, one per warp */

/* ---------------------------------------------------------------------- */
/* Di = rowsum(dout ⊙ out), generic                                       */
/* ---------------------------------------------------------------------- */

/* Di (1, B*H*T) fp32; dout, out (N, H*D). A warp per (row, head), heads of
** one row in neighbouring warps; grid ceil(N*H/8), 256 threads. */
static __global__ void attention_rowdot(float *Di, cuda_view dout, cuda_view out, int64_t N, int T,
                                        int H, int D) {
    const int64_t w = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5);
    if (w >= N * H) return; /* whole warps leave together */
    const int lane = threadIdx.x & 31, h = (int)(w % H);
    const int64_t n = w / H, b = n / T, t = n % T;
    float s = 0.0f;
    for (int d = lane; d < D; d += 32) s += ld_at(dout, n, (int64_t)h * D + d) * ld_at(out, n, (int64_t)h * D + d);
    s = warp_sum(s);
    if (lane == 0) Di[(b * H + h) * T + t] = s;
}

/* ---------------------------------------------------------------------- */
/* tensor cores: dK, dV                                                   */
/* ---------------------------------------------------------------------- */

/* Queues the query tile of one step: rows [q0, q0+BR) of head h's q and
** dout into sQs, sdOs, and their lse (in log2 units) and Di into sLs, sDs;
** rows at or past T are zeros. */
template <int D, int BR>
static __device__ __forceinline__ void dkv_load_step(bf16 *sQs, bf16 *sdOs, float *sLs, float *sDs,
                                                     const bf16 *q, int64_t ld_q, const bf16 *dout,
                                                     int64_t ld_do, const void *lse, int lse_type,
                                                     const float *Di, int b, int h, int H, int q0,
                                                     int T) {
    load_tile_async<BR, D, 128>(sQs, q + (int64_t)b * T * ld_q + (int64_t)h * D, ld_q, q0, T);
    load_tile_async<BR, D, 128>(sdOs, dout + (int64_t)b * T * ld_do + (int64_t)h * D, ld_do, q0, T);
    const int64_t row_base = ((int64_t)b * H + h) * T;
    for (int i = threadIdx.x; i < BR; i += 128) {
        const int row = q0 + i;
        sLs[i] = row < T ? ld_elem(lse, lse_type, row_base + row) * ATTN_LOG2E : 0.0f;
        sDs[i] = row < T ? Di[row_base + row] : 0.0f;
    }
}

/* dk, dv (N, KV*D); q, dout (N, H*D); k, v (N, KV*D); lse, Di (1, B*H*T).
** grid (B*KV, ceil(T/64)), 128 threads; dynamic smem: K and V tiles
** (2 x 64 rows), two stages of Q and dout tiles (4 x BR rows), all of
** stride D+8 bf16, then 4 x BR floats of lse and Di. */
template <int D, int BR>
static __global__ void __launch_bounds__(128, D <= 64 ? 3 : 2)
attention_backward_dkv_mma(bf16 *dk, int64_t ld_dk, bf16 *dv, int64_t ld_dv, const bf16 *q,
                           int64_t ld_q, const bf16 *k, int64_t ld_k, const bf16 *v, int64_t ld_v,
                           const bf16 *dout, int64_t ld_do, const void *lse, int lse_type,
                           const float *Di, int T, int H, int group, float scale, float scale_log2) {
    constexpr int STR = D + 8, KC = D / 16, NT = BR / 8, DT = D / 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *sK = (bf16 *)smem_raw;        /* [BWD_BKV][STR] */
    bf16 *sV = sK + BWD_BKV * STR;      /* [BWD_BKV][STR] */
    bf16 *sQ = sV + BWD_BKV * STR;      /* [2][BR][STR] */
    bf16 *sdO = sQ + 2 * BR * STR;      /* [2][BR][STR] */
    float *sL = (float *)(sdO + 2 * BR * STR); /* [2][BR] */
    float *sD = sL + 2 * BR;                   /* [2][BR] */

    const int KV = H / group, b = blockIdx.x / KV, kvh = blockIdx.x % KV;
    const int k0 = blockIdx.y * BWD_BKV;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    /* query tiles before k0 / BR see none of these keys */
    const int qt0 = k0 / BR, nq = (T + BR - 1) / BR - qt0, n_steps = group * nq;
    const int key0 = k0 + warp * 16 + g; /* this thread's keys: key0, key0 + 8 */

    load_tile_async<BWD_BKV, D, 128>(sK, k + (int64_t)b * T * ld_k + (int64_t)kvh * D, ld_k, k0, T);
    load_tile_async<BWD_BKV, D, 128>(sV, v + (int64_t)b * T * ld_v + (int64_t)kvh * D, ld_v, k0, T);
    dkv_load_step<D, BR>(sQ, sdO, sL, sD, q, ld_q, dout, ld_do, lse, lse_type, Di, b, kvh * group, H,
                         qt0 * BR, T);
    cp_async_commit();

    float dka[DT][4], dva[DT][4]; /* the warp's 16 keys x D of dK and dV */
#pragma unroll
    for (int i = 0; i < DT; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[i][e] = dva[i][e] = 0.0f;

    /* step s: query head kvh*group + s / nq, query tile qt0 + s % nq */
    for (int s = 0; s < n_steps; s++) {
        const int stage = s & 1;
        if (s + 1 < n_steps) {
            const int o = stage ^ 1;
            dkv_load_step<D, BR>(sQ + o * BR * STR, sdO + o * BR * STR, sL + o * BR, sD + o * BR, q,
                                 ld_q, dout, ld_do, lse, lse_type, Di, b, kvh * group + (s + 1) / nq,
                                 H, (qt0 + (s + 1) % nq) * BR, T);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int q0 = (qt0 + s % nq) * BR;
        const bf16 *sQs = sQ + stage * BR * STR, *sdOs = sdO + stage * BR * STR;
        const float *sLs = sL + stage * BR, *sDs = sD + stage * BR;

        /* S^T (16 keys x BR) = K_w Q^T and dP^T = V_w dout^T */
        float st[NT][4], dpt[NT][4];
#pragma unroll
        for (int i = 0; i < NT; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) st[i][e] = dpt[i][e] = 0.0f;
#pragma unroll
        for (int kc = 0; kc < KC; kc++) {
            uint32_t ak[4], av[4];
            const int a_off = (warp * 16 + lane_row_a(lane)) * STR + kc * 16 + lane_col_a(lane);
            ldsm_x4(ak, sK + a_off);
            ldsm_x4(av, sV + a_off);
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                uint32_t bq[4], bo[4];
                const int b_off = (np * 16 + lane_row_nk(lane)) * STR + kc * 16 + lane_col_nk(lane);
                ldsm_x4(bq, sQs + b_off);
                ldsm_x4(bo, sdOs + b_off);
                mma_bf16(st[2 * np], ak, bq[0], bq[1]);
                mma_bf16(st[2 * np + 1], ak, bq[2], bq[3]);
                mma_bf16(dpt[2 * np], av, bo[0], bo[1]);
                mma_bf16(dpt[2 * np + 1], av, bo[2], bo[3]);
            }
        }

        /* P^T and dS^T / s in place (dK is scaled by s once, at the end) */
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int ql = nt * 8 + 2 * c + (e & 1);
                const float p = fast_exp2(st[nt][e] * scale_log2 - sLs[ql]);
                st[nt][e] = p;
                dpt[nt][e] = p * (dpt[nt][e] - sDs[ql]);
            }
        }
        /* masked: keys after the query row, and query rows past T; only
        ** the tiles on the diagonal and the last one have any */
        if (q0 < k0 + BWD_BKV - 1 || q0 + BR > T) {
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int row = q0 + nt * 8 + 2 * c + (e & 1), key = key0 + (e >> 1) * 8;
                    if (key > row || row >= T) st[nt][e] = dpt[nt][e] = 0.0f;
                }
            }
        }

        /* dV_w += P^T dout, dK_w += dS^T Q */
#pragma unroll
        for (int kk = 0; kk < BR / 16; kk++) {
            uint32_t ap[4] = {pack_bf16(st[2 * kk][0], st[2 * kk][1]), pack_bf16(st[2 * kk][2], st[2 * kk][3]),
                              pack_bf16(st[2 * kk + 1][0], st[2 * kk + 1][1]),
                              pack_bf16(st[2 * kk + 1][2], st[2 * kk + 1][3])};
            uint32_t as[4] = {pack_bf16(dpt[2 * kk][0], dpt[2 * kk][1]),
                              pack_bf16(dpt[2 * kk][2], dpt[2 * kk][3]),
                              pack_bf16(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]),
                              pack_bf16(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t bo[4], bq[4];
                const int b_off = (kk * 16 + lane_row_kn(lane)) * STR + dp * 16 + lane_col_kn(lane);
                ldsm_x4_t(bo, sdOs + b_off);
                ldsm_x4_t(bq, sQs + b_off);
                mma_bf16(dva[2 * dp], ap, bo[0], bo[1]);
                mma_bf16(dva[2 * dp + 1], ap, bo[2], bo[3]);
                mma_bf16(dka[2 * dp], as, bq[0], bq[1]);
                mma_bf16(dka[2 * dp + 1], as, bq[2], bq[3]);
            }
        }
        __syncthreads(); /* the stage is refilled by the next iteration's prefetch */
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int key = key0 + r * 8;
        if (key >= T) continue;
        bf16 *dkrow = dk + ((int64_t)b * T + key) * ld_dk + (int64_t)kvh * D;
        bf16 *dvrow = dv + ((int64_t)b * T + key) * ld_dv + (int64_t)kvh * D;
#pragma unroll
        for (int dt = 0; dt < DT; dt++) {
            *(uint32_t *)(dkrow + dt * 8 + 2 * c) = pack_bf16(dka[dt][2 * r] * scale, dka[dt][2 * r + 1] * scale);
            *(uint32_t *)(dvrow + dt * 8 + 2 * c) = pack_bf16(dva[dt][2 * r], dva[dt][2 * r + 1]);
        }
    }
}

/* ---------------------------------------------------------------------- */
/* tensor cores: dQ and Di                                                */
/* ---------------------------------------------------------------------- */

/* dq, q, dout, out (N, H*D); k, v (N, KV*D); lse, Di (1, B*H*T), Di written.
** grid (B*H, ceil(T/64)), 128 threads; dynamic smem: the Q, dout and out
** tiles (3 x 64 rows) and two stages of K and V tiles (4 x BC rows), stride
** D+8 bf16, then the tile's 64 Di. */
template <int D, int BC>
static __global__ void __launch_bounds__(128, D <= 64 ? 3 : 2)
attention_backward_dq_mma(bf16 *dq, int64_t ld_dq, float *Di, const bf16 *q, int64_t ld_q,
                          const bf16 *k, int64_t ld_k, const bf16 *v, int64_t ld_v,
                          const bf16 *dout, int64_t ld_do, const bf16 *out, int64_t ld_o,
                          const void *lse, int lse_type, int T, int H, int group, float scale,
                          float scale_log2) {
    constexpr int STR = D + 8, KC = D / 16, NT = BC / 8, DT = D / 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *sQ = (bf16 *)smem_raw;     /* [BWD_BQ][STR] */
    bf16 *sdO = sQ + BWD_BQ * STR;   /* [BWD_BQ][STR] */
    bf16 *sO = sdO + BWD_BQ * STR;   /* [BWD_BQ][STR] */
    bf16 *sK = sO + BWD_BQ * STR;    /* [2][BC][STR] */
    bf16 *sV = sK + 2 * BC * STR;    /* [2][BC][STR] */
    float *sDi = (float *)(sV + 2 * BC * STR); /* [BWD_BQ] */

    const int bh = blockIdx.x, b = bh / H, h = bh % H, kvh = h / group;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BWD_BQ; /* longest tiles first */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const bf16 *kh = k + (int64_t)b * T * ld_k + (int64_t)kvh * D;
    const bf16 *vh = v + (int64_t)b * T * ld_v + (int64_t)kvh * D;
    const int n_tiles = (min(q0 + BWD_BQ, T) + BC - 1) / BC;
    const int row0 = q0 + warp * 16 + g; /* this thread's rows: row0, row0 + 8 */

    load_tile_async<BWD_BQ, D, 128>(sQ, q + (int64_t)b * T * ld_q + (int64_t)h * D, ld_q, q0, T);
    load_tile_async<BWD_BQ, D, 128>(sdO, dout + (int64_t)b * T * ld_do + (int64_t)h * D, ld_do, q0, T);
    load_tile_async<BWD_BQ, D, 128>(sO, out + (int64_t)b * T * ld_o + (int64_t)h * D, ld_o, q0, T);
    load_tile_async<BC, D, 128>(sK, kh, ld_k, 0, T);
    load_tile_async<BC, D, 128>(sV, vh, ld_v, 0, T);
    cp_async_commit();

    float lse2[2], di[2]; /* rows past T: finite values, never stored */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row0 + r * 8;
        lse2[r] = row < T ? ld_elem(lse, lse_type, (int64_t)bh * T + row) * ATTN_LOG2E : 0.0f;
    }
    uint32_t qf[KC][4], of[KC][4]; /* the warp's rows of Q and dout as A fragments */
    float dqa[DT][4];
#pragma unroll
    for (int i = 0; i < DT; i++) dqa[i][0] = dqa[i][1] = dqa[i][2] = dqa[i][3] = 0.0f;

    for (int kt = 0; kt < n_tiles; kt++) {
        const int stage = kt & 1;
        if (kt + 1 < n_tiles) {
            load_tile_async<BC, D, 128>(sK + (stage ^ 1) * BC * STR, kh, ld_k, (kt + 1) * BC, T);
            load_tile_async<BC, D, 128>(sV + (stage ^ 1) * BC * STR, vh, ld_v, (kt + 1) * BC, T);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (kt == 0) {
#pragma unroll
            for (int kc = 0; kc < KC; kc++) {
                const int a_off = (warp * 16 + lane_row_a(lane)) * STR + kc * 16 + lane_col_a(lane);
                ldsm_x4(qf[kc], sQ + a_off);
                ldsm_x4(of[kc], sdO + a_off);
            }
            /* Di of the tile's rows, two threads a row, each half the columns */
            const int rl = threadIdx.x >> 1, half = threadIdx.x & 1;
            const __nv_bfloat162 *go = (const __nv_bfloat162 *)(sdO + rl * STR + half * (D / 2));
            const __nv_bfloat162 *oo = (const __nv_bfloat162 *)(sO + rl * STR + half * (D / 2));
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < D / 4; j++) {
                const float2 x = __bfloat1622float2(go[j]), y = __bfloat1622float2(oo[j]);
                sum += x.x * y.x + x.y * y.y;
            }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            if (half == 0) {
                sDi[rl] = sum;
                if (q0 + rl < T) Di[(int64_t)bh * T + q0 + rl] = sum; /* for the dK, dV pass */
            }
            __syncthreads();
            di[0] = sDi[warp * 16 + g];
            di[1] = sDi[warp * 16 + g + 8];
        }
        const bf16 *sKs = sK + stage * BC * STR, *sVs = sV + stage * BC * STR;

        /* S (16 x BC) = Q K^T, dP = dout V^T */
        float s[NT][4], dp[NT][4];
#pragma unroll
        for (int i = 0; i < NT; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[i][e] = dp[i][e] = 0.0f;
#pragma unroll
        for (int kc = 0; kc < KC; kc++) {
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                uint32_t bk[4], bv[4];
                const int b_off = (np * 16 + lane_row_nk(lane)) * STR + kc * 16 + lane_col_nk(lane);
                ldsm_x4(bk, sKs + b_off);
                ldsm_x4(bv, sVs + b_off);
                mma_bf16(s[2 * np], qf[kc], bk[0], bk[1]);
                mma_bf16(s[2 * np + 1], qf[kc], bk[2], bk[3]);
                mma_bf16(dp[2 * np], of[kc], bv[0], bv[1]);
                mma_bf16(dp[2 * np + 1], of[kc], bv[2], bv[3]);
            }
        }

        /* dS / s in place of S (dQ is scaled by s once, at the end) */
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = e >> 1;
                s[nt][e] = fast_exp2(s[nt][e] * scale_log2 - lse2[r]) * (dp[nt][e] - di[r]);
            }
        }
        const int k0 = kt * BC;
        if (k0 + BC - 1 > q0) { /* keys after the row */
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (k0 + nt * 8 + 2 * c + (e & 1) > row0 + (e >> 1) * 8) s[nt][e] = 0.0f;
        }

        /* dQ (16 x D) += dS K */
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            uint32_t a[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dpi = 0; dpi < D / 16; dpi++) {
                uint32_t bk[4];
                ldsm_x4_t(bk, sKs + (kk * 16 + lane_row_kn(lane)) * STR + dpi * 16 + lane_col_kn(lane));
                mma_bf16(dqa[2 * dpi], a, bk[0], bk[1]);
                mma_bf16(dqa[2 * dpi + 1], a, bk[2], bk[3]);
            }
        }
        __syncthreads(); /* the stage is refilled by the next iteration's prefetch */
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row0 + r * 8;
        if (row >= T) continue;
        bf16 *dqrow = dq + ((int64_t)b * T + row) * ld_dq + (int64_t)h * D;
#pragma unroll
        for (int dt = 0; dt < DT; dt++)
            *(uint32_t *)(dqrow + dt * 8 + 2 * c) = pack_bf16(dqa[dt][2 * r] * scale, dqa[dt][2 * r + 1] * scale);
    }
}

/* The tensor-core passes: dQ (which also writes Di), then dK, dV. BR query
** rows per step of the dK, dV pass and BC keys per tile of the dQ pass
** (32 for D > 64, to stay within registers). Both kernels' launch bounds
** hold D <= 64 to 168 registers, 3 blocks an SM (timed faster than 2). */
template <int D>
static int backward_mma(dorac_backend *be, const dorac_tensor *dq, const dorac_tensor *dk,
                        const dorac_tensor *dv, const dorac_tensor *dout, const dorac_tensor *q,
                        const dorac_tensor *k, const dorac_tensor *v, const dorac_tensor *out,
                        const dorac_tensor *lse, float *Di, int64_t B, int64_t T, int64_t H,
                        int64_t KV, float scale, float scale_log2) {
    constexpr int BR = D <= 64 ? 64 : 32, BC = D <= 64 ? 64 : 32;
    const char *op = "attention_backward";
    const int group = (int)(H / KV);
    cudaStream_t stream = cuda_stream(be);

    const size_t smem_q = (size_t)(3 * BWD_BQ + 4 * BC) * (D + 8) * sizeof(bf16) + BWD_BQ * sizeof(float);
    DORAC_TRY(attn_smem_limit((const void *)attention_backward_dq_mma<D, BC>, smem_q, op));
    dim3 grid_q((unsigned)(B * H), (unsigned)((T + BWD_BQ - 1) / BWD_BQ));
    attention_backward_dq_mma<D, BC><<<grid_q, 128, smem_q, stream>>>(
        (bf16 *)dq->data, dq->ld, Di, (const bf16 *)q->data, q->ld, (const bf16 *)k->data, k->ld,
        (const bf16 *)v->data, v->ld, (const bf16 *)dout->data, dout->ld, (const bf16 *)out->data,
        out->ld, lse->data, (int)lse->type, (int)T, (int)H, group, scale, scale_log2);
    DORAC_TRY(cuda_launch_status(op));

    const size_t smem_kv = (size_t)(2 * BWD_BKV + 4 * BR) * (D + 8) * sizeof(bf16) + 4 * BR * sizeof(float);
    DORAC_TRY(attn_smem_limit((const void *)attention_backward_dkv_mma<D, BR>, smem_kv, op));
    dim3 grid_kv((unsigned)(B * KV), (unsigned)((T + BWD_BKV - 1) / BWD_BKV));
    attention_backward_dkv_mma<D, BR><<<grid_kv, 128, smem_kv, stream>>>(
        (bf16 *)dk->data, dk->ld, (bf16 *)dv->data, dv->ld, (const bf16 *)q->data, q->ld,
        (const bf16 *)k->data, k->ld, (const bf16 *)v->data, v->ld, (const bf16 *)dout->data,
        dout->ld, lse->data, (int)lse->type, Di, (int)T, (int)H, group, scale, scale_log2);
    return cuda_launch_status(op);
}

/* ---------------------------------------------------------------------- */
/* generic: dK, dV and dQ                                                 */
/* ---------------------------------------------------------------------- */

/* dk, dv (N, KV*D); q, dout (N, H*D); k, v (N, KV*D); lse, Di (1, B*H*T);
** D <= 4*NS. grid (B*KV, ceil(T/32)), 128 threads. Lane j owns key
** k0 + j; warp w computes P and dS of query row t0 + w of each step, then
** owns columns w, w+4, ... of every key's dK, dV, adding the step's 4 rows
** in order. Dynamic smem: K and V rows [32][D+1], the step's q and dout
** rows [4][D], its P and dS [4][32], floats. */
template <int NS>
static __global__ void __launch_bounds__(128)
attention_backward_dkv_generic(cuda_view dk, cuda_view dv, cuda_view q, cuda_view k, cuda_view v,
                               cuda_view dout, const void *lse, int lse_type, const float *Di, int T,
                               int H, int group, int D, float scale, float scale_log2) {
    extern __shared__ float gsm[];
    float *sk = gsm;                          /* [GEN_KEYS][D+1] */
    float *sv = sk + GEN_KEYS * (D + 1);      /* [GEN_KEYS][D+1] */
    float *sq = sv + GEN_KEYS * (D + 1);      /* [GEN_STEP][D] */
    float *sdo = sq + GEN_STEP * D;           /* [GEN_STEP][D] */
    float *sp = sdo + GEN_STEP * D;           /* [GEN_STEP][GEN_KEYS] */
    float *sds = sp + GEN_STEP * GEN_KEYS;    /* [GEN_STEP][GEN_KEYS] */
    const int KV = H / group, b = blockIdx.x / KV, kvh = blockIdx.x % KV;
    const int k0 = blockIdx.y * GEN_KEYS, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t base = (int64_t)b * T, kcol = (int64_t)kvh * D;

    for (int i = threadIdx.x; i < GEN_KEYS * D; i += blockDim.x) {
        const int j = i / D, d = i % D, key = k0 + j;
        sk[j * (D + 1) + d] = key < T ? ld_at(k, base + key, kcol + d) : 0.0f;
        sv[j * (D + 1) + d] = key < T ? ld_at(v, base + key, kcol + d) : 0.0f;
    }
    float dka[NS], dva[NS]; /* columns warp + 4 i of key k0 + lane */
#pragma unroll
    for (int i = 0; i < NS; i++) dka[i] = dva[i] = 0.0f;

    const int key = k0 + lane;
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        const int64_t qcol = (int64_t)h * D, row_base = ((int64_t)b * H + h) * T;
        for (int t0 = k0; t0 < T; t0 += GEN_STEP) {
            __syncthreads(); /* the previous step's rows are read (and K, V written) */
            for (int i = threadIdx.x; i < GEN_STEP * D; i += blockDim.x) {
                const int r = i / D, d = i % D, row = t0 + r;
                sq[i] = row < T ? ld_at(q, base + row, qcol + d) : 0.0f;
                sdo[i] = row < T ? ld_at(dout, base + row, qcol + d) : 0.0f;
            }
            __syncthreads();
            const int t = t0 + warp;
            float p = 0.0f, ds = 0.0f;
            if (t < T && key <= t) {
                float qk = 0.0f, ov = 0.0f;
                for (int d = 0; d < D; d++) {
                    qk += sq[warp * D + d] * sk[lane * (D + 1) + d];
                    ov += sdo[warp * D + d] * sv[lane * (D + 1) + d];
                }
                p = exp2f(qk * scale_log2 - ld_elem(lse, lse_type, row_base + t) * ATTN_LOG2E);
                ds = p * (ov - Di[row_base + t]) * scale;
            }
            sp[warp * GEN_KEYS + lane] = p;
            sds[warp * GEN_KEYS + lane] = ds;
            __syncthreads();
#pragma unroll
            for (int i = 0; i < NS; i++) {
                const int d = warp + 4 * i;
                if (d >= D) break;
                for (int r = 0; r < GEN_STEP; r++) {
                    dka[i] += sds[r * GEN_KEYS + lane] * sq[r * D + d];
                    dva[i] += sp[r * GEN_KEYS + lane] * sdo[r * D + d];
                }
            }
        }
    }
    if (key >= T) return;
#pragma unroll
    for (int i = 0; i < NS; i++) {
        const int d = warp + 4 * i;
        if (d >= D) break;
        st_at(dk, base + key, kcol + d, dka[i]);
        st_at(dv, base + key, kcol + d, dva[i]);
    }
}

/* dq, q, dout (N, H*D); k, v (N, KV*D); lse, Di (1, B*H*T); D <= 32*NS.
** grid (B*H, ceil(T/8)), 256 threads: warp w owns query row t0 + w, lane j
** key j0 + j of each chunk, and columns lane + 32 i of dq. Dynamic smem:
** the block's q and dout rows [8][D], a chunk of K and V rows [32][D+1]. */
template <int NS>
static __global__ void __launch_bounds__(GEN_ROWS * 32)
attention_backward_dq_generic(cuda_view dq, cuda_view q, cuda_view k, cuda_view v, cuda_view dout,
                              const void *lse, int lse_type, const float *Di, int T, int H,
                              int group, int D, float scale, float scale_log2) {
    extern __shared__ float gsm[];
    float *sq = gsm;                        /* [GEN_ROWS][D] */
    float *sdo = sq + GEN_ROWS * D;         /* [GEN_ROWS][D] */
    float *sk = sdo + GEN_ROWS * D;         /* [GEN_KEYS][D+1] */
    float *sv = sk + GEN_KEYS * (D + 1);    /* [GEN_KEYS][D+1] */
    const int bh = blockIdx.x, b = bh / H, h = bh % H, kvh = h / group;
    const int t0 = (gridDim.y - 1 - blockIdx.y) * GEN_ROWS;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t = t0 + warp;
    const int64_t base = (int64_t)b * T, qcol = (int64_t)h * D, kcol = (int64_t)kvh * D;

    for (int i = threadIdx.x; i < GEN_ROWS * D; i += blockDim.x) {
        const int r = i / D, d = i % D, row = t0 + r;
        sq[i] = row < T ? ld_at(q, base + row, qcol + d) : 0.0f;
        sdo[i] = row < T ? ld_at(dout, base + row, qcol + d) : 0.0f;
    }
    const float lse2 = t < T ? ld_elem(lse, lse_type, (int64_t)bh * T + t) * ATTN_LOG2E : 0.0f;
    const float di = t < T ? Di[(int64_t)bh * T + t] : 0.0f;
    const int t_last = min(t0 + GEN_ROWS, T) - 1;
    float acc[NS];
#pragma unroll
    for (int i = 0; i < NS; i++) acc[i] = 0.0f;

    for (int j0 = 0; j0 <= t_last; j0 += GEN_KEYS) {
        const int n_keys = min(GEN_KEYS, t_last + 1 - j0);
        __syncthreads(); /* the previous chunk is read (and q, dout written) */
        for (int i = threadIdx.x; i < GEN_KEYS * D; i += blockDim.x) {
            const int j = i / D, d = i % D;
            sk[j * (D + 1) + d] = j < n_keys ? ld_at(k, base + j0 + j, kcol + d) : 0.0f;
            sv[j * (D + 1) + d] = j < n_keys ? ld_at(v, base + j0 + j, kcol + d) : 0.0f;
        }
        __syncthreads();
        const int key = j0 + lane;
        float ds = 0.0f;
        if (t < T && key <= t) {
            float qk = 0.0f, ov = 0.0f;
            for (int d = 0; d < D; d++) {
                qk += sq[warp * D + d] * sk[lane * (D + 1) + d];
                ov += sdo[warp * D + d] * sv[lane * (D + 1) + d];
            }
            const float p = exp2f(qk * scale_log2 - lse2);
            ds = p * (ov - di) * scale;
        }
        for (int jj = 0; jj < n_keys; jj++) {
            const float dsj = __shfl_sync(0xffffffffu, ds, jj);
            const float *krow = sk + jj * (D + 1);
#pragma unroll
            for (int i = 0; i < NS; i++)
                if (lane + 32 * i < D) acc[i] += dsj * krow[lane + 32 * i];
        }
    }
    if (t >= T) return;
#pragma unroll
    for (int i = 0; i < NS; i++)
        if (lane + 32 * i < D) st_at(dq, base + t, qcol + lane + 32 * i, acc[i]);
}

/* NS_KV columns a thread in the dK, dV kernel (D <= 4 NS_KV), NS_Q in the dQ kernel (D <= 32 NS_Q). */
template <int NS_KV, int NS_Q>
static int backward_generic(dorac_backend *be, const dorac_tensor *dq, const dorac_tensor *dk,
                            const dorac_tensor *dv, const dorac_tensor *dout, const dorac_tensor *q,
                            const dorac_tensor *k, const dorac_tensor *v, const dorac_tensor *lse,
                            const float *Di, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t D,
                            float scale, float scale_log2) {
    const char *op = "attention_backward";
    const int group = (int)(H / KV);
    cudaStream_t stream = cuda_stream(be);

    const size_t smem_kv =
        (size_t)(2 * GEN_KEYS * (D + 1) + 2 * GEN_STEP * D + 2 * GEN_STEP * GEN_KEYS) * sizeof(float);
    DORAC_TRY(attn_smem_limit((const void *)attention_backward_dkv_generic<NS_KV>, smem_kv, op));
    dim3 grid_kv((unsigned)(B * KV), (unsigned)((T + GEN_KEYS - 1) / GEN_KEYS));
    attention_backward_dkv_generic<NS_KV><<<grid_kv, 128, smem_kv, stream>>>(
        cuda_view_of(dk), cuda_view_of(dv), cuda_view_of(q), cuda_view_of(k), cuda_view_of(v),
        cuda_view_of(dout), lse->data, (int)lse->type, Di, (int)T, (int)H, group, (int)D, scale,
        scale_log2);
    DORAC_TRY(cuda_launch_status(op));

    const size_t smem_q = (size_t)(2 * GEN_ROWS * D + 2 * GEN_KEYS * (D + 1)) * sizeof(float);
    DORAC_TRY(attn_smem_limit((const void *)attention_backward_dq_generic<NS_Q>, smem_q, op));
    dim3 grid_q((unsigned)(B * H), (unsigned)((T + GEN_ROWS - 1) / GEN_ROWS));
    attention_backward_dq_generic<NS_Q><<<grid_q, GEN_ROWS * 32, smem_q, stream>>>(
        cuda_view_of(dq), cuda_view_of(q), cuda_view_of(k), cuda_view_of(v), cuda_view_of(dout),
        lse->data, (int)lse->type, Di, (int)T, (int)H, group, (int)D, scale, scale_log2);
    return cuda_launch_status(op);
}

/* ---------------------------------------------------------------------- */
/* the entry                                                              */
/* ---------------------------------------------------------------------- */

/* All passes, Di in scratch. */
static int backward_passes(dorac_backend *be, const dorac_tensor *dq, const dorac_tensor *dk,
                           const dorac_tensor *dv, const dorac_tensor *dout, const dorac_tensor *q,
                           const dorac_tensor *k, const dorac_tensor *v, const dorac_tensor *out,
                           const dorac_tensor *lse, float *Di, int64_t B, int64_t T, int64_t H,
                           int64_t KV, int64_t D) {
    const float scale = (float)(1.0 / sqrt((double)D));
    const float scale_log2 = (float)(1.4426950408889634 / sqrt((double)D));
    const bool fast = attn_mma_dim(D) && cuda_bf16_rows16(q) && cuda_bf16_rows16(k) &&
                      cuda_bf16_rows16(v) && cuda_bf16_rows16(out) && cuda_bf16_rows16(dout) &&
                      cuda_bf16_rows16(dq) && cuda_bf16_rows16(dk) && cuda_bf16_rows16(dv);
    if (fast) {
        switch (D) {
        case 16: return backward_mma<16>(be, dq, dk, dv, dout, q, k, v, out, lse, Di, B, T, H, KV, scale, scale_log2);
        case 32: return backward_mma<32>(be, dq, dk, dv, dout, q, k, v, out, lse, Di, B, T, H, KV, scale, scale_log2);
        case 64: return backward_mma<64>(be, dq, dk, dv, dout, q, k, v, out, lse, Di, B, T, H, KV, scale, scale_log2);
        case 96: return backward_mma<96>(be, dq, dk, dv, dout, q, k, v, out, lse, Di, B, T, H, KV, scale, scale_log2);
        case 128: return backward_mma<128>(be, dq, dk, dv, dout, q, k, v, out, lse, Di, B, T, H, KV, scale, scale_log2);
        default: break;
        }
    }
    const int64_t n_rows = B * H * T;
    attention_rowdot<<<cuda_blocks(n_rows, 8), 256, 0, cuda_stream(be)>>>(
        Di, cuda_view_of(dout), cuda_view_of(out), B * T, (int)T, (int)H, (int)D);
    DORAC_TRY(cuda_launch_status("attention_backward"));
    if (D <= 64)
        return backward_generic<16, 2>(be, dq, dk, dv, dout, q, k, v, lse, Di, B, T, H, KV, D, scale, scale_log2);
    return backward_generic<64, 8>(be, dq, dk, dv, dout, q, k, v, lse, Di, B, T, H, KV, D, scale, scale_log2);
}

int CUDA_OP(attention_backward)(dorac_backend *be, const dorac_tensor *dq, const dorac_tensor *dk,
                                const dorac_tensor *dv, const dorac_tensor *dout,
                                const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                                const dorac_tensor *out, const dorac_tensor *lse, int64_t B,
                                int64_t T, int64_t H, int64_t KV, int64_t D) {
    const char *op = "attention_backward";
    DORAC_TRY(attn_check(out, q, k, v, lse, B, T, H, KV, D, op));
    DORAC_TRY(cuda_check_shape(dq, B * T, H * D, op, "dq"));
    DORAC_TRY(cuda_check_shape(dk, B * T, KV * D, op, "dk"));
    DORAC_TRY(cuda_check_shape(dv, B * T, KV * D, op, "dv"));
    DORAC_TRY(cuda_check_shape(dout, B * T, H * D, op, "dout"));

    /* Di scratch; freeing it right after the launches is stream-ordered */
    float *Di = (float *)be->alloc(be, (size_t)(B * H * T) * sizeof(float));
    if (!Di) return DORAC_E_NOMEM; /* alloc has set the message */
    int status = backward_passes(be, dq, dk, dv, dout, q, k, v, out, lse, Di, B, T, H, KV, D);
    be->free(be, Di);
    return status;
}
