/*
** cuda_attention_forward.cu — causal softmax attention with GQA on the GPU
** (backend.h's attention_forward), flash-attention style: O(T) memory, the
** (T, T) score matrix never stored.
**
** Size letters: B batch, T time, H query heads, KV key/value heads, D head
** dimension, N = B*T rows. q, out (N, H*D); k, v (N, KV*D); lse (1, B*H*T),
** lse[(b*H + h)*T + t] the natural log-sum-exp of row t's scaled scores.
** Head h reads kv head h / (H/KV). Any of the tensors may be a column view.
**
** The algorithm. A block owns a tile of query rows of one (b, h). It walks
** the key tiles from key 0 up to the tile's last row (later keys are masked
** for every row of the tile, so those tiles are skipped, halving the work),
** keeping for each row a running maximum m, a running sum l of exp(s - m)
** and an unnormalised output o. A new tile's scores S raise the maximum to
** m' = max(m, rowmax S); the old l and o are rescaled by exp(m - m') and
** exp(S - m') V is added. After the last tile o / l is the softmax-weighted
** sum and m + log l the row's log-sum-exp. Scores are carried in log2
** units (q·k · log2(e)/sqrt(D)) so each exponential is one exp2.
**
** Two kernels compute this:
**   attention_forward_mma   the fast path: every operand BF16 with rows
**     readable 16 bytes at a time (cuda_bf16_rows16) and D one of 16, 32,
**     64, 96, 128. 64 query rows a block, 16 a warp; key tiles of 64 rows
**     double-buffered in shared memory by cp.async; S = Q K^T and O += P V
**     on the tensor cores (mma.sync, bf16 in, fp32 accumulation), P
**     rounded to bf16 in registers between the two.
**   attention_forward_generic  every other case (F32 tensors, odd strides,
**     any D up to 256), in fp32 on the CUDA cores: 8 query rows a block, one
**     a warp, chunks of 32 keys in shared memory, one key a lane for the
**     scores and D/32 output columns a lane for P V. It is also the
**     obvious twin that the fast kernel is tested against.
** Both visit keys and reduce in an order fixed by the sizes alone, so the
** results are bit-identical from run to run. Blocks run the longest query
** tiles (the last) first, which keeps the tail of the grid short.
*/
#include "backend/cuda/cuda_attention.cuh"

#define FWD_BR 64   /* query rows per block in the fast path, 16 per warp */
#define FWD_BC 64   /* keys per tile in the fast path */
#define GEN_ROWS 8  /* query rows per block in the generic path, one per warp */
#define GEN_KEYS 32 /* keys per chunk in the generic path, one per lane */

/* ---------------------------------------------------------------------- */
/* the tensor-core path                                                   */
/* ---------------------------------------------------------------------- */

/* out (N, H*D), lse (1, B*H*T), q (N, H*D), k, v (N, KV*D), all bf16 but lse.
** grid (B*H, ceil(T/64)), 128 threads; dynamic smem
** (64 + 4*64) * (D+8) bf16: the Q tile and two stages of K and V tiles.
** The launch bound holds D <= 64 to 128 registers, 4 blocks an SM (timed
** faster than 3 blocks without the cap, despite a few bytes of spill). */
template <int D>
static __global__ void __launch_bounds__(128, D <= 64 ? 4 : 2)
attention_forward_mma(bf16 *out, int64_t ld_o, void *lse, int lse_type, const bf16 *q, int64_t ld_q,
                      const bf16 *k, int64_t ld_k, const bf16 *v, int64_t ld_v, int T, int H,
                      int group, float scale_log2) {
    constexpr int STR = D + 8, KC = D / 16, NT = FWD_BC / 8, DT = D / 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *sQ = (bf16 *)smem_raw;      /* [FWD_BR][STR] */
    bf16 *sK = sQ + FWD_BR * STR;     /* [2][FWD_BC][STR] */
    bf16 *sV = sK + 2 * FWD_BC * STR; /* [2][FWD_BC][STR] */

    const int bh = blockIdx.x, b = bh / H, h = bh % H, kvh = h / group;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * FWD_BR; /* longest tiles first */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const bf16 *qh = q + (int64_t)b * T * ld_q + (int64_t)h * D;
    const bf16 *kh = k + (int64_t)b * T * ld_k + (int64_t)kvh * D;
    const bf16 *vh = v + (int64_t)b * T * ld_v + (int64_t)kvh * D;
    /* causal: the tile's rows see keys < min(q0 + FWD_BR, T) */
    const int n_tiles = (min(q0 + FWD_BR, T) + FWD_BC - 1) / FWD_BC;
    const int row0 = q0 + warp * 16 + g; /* this thread's rows: row0, row0 + 8 */

    load_tile_async<FWD_BR, D, 128>(sQ, qh, ld_q, q0, T);
    load_tile_async<FWD_BC, D, 128>(sK, kh, ld_k, 0, T);
    load_tile_async<FWD_BC, D, 128>(sV, vh, ld_v, 0, T);
    cp_async_commit();

    uint32_t qf[KC][4]; /* the warp's 16 query rows as A fragments */
    float o[DT][4];     /* 16 x D output accumulator */
#pragma unroll
    for (int i = 0; i < DT; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

    for (int kt = 0; kt < n_tiles; kt++) {
        const int stage = kt & 1;
        if (kt + 1 < n_tiles) { /* prefetch the next tile into the other stage */
            load_tile_async<FWD_BC, D, 128>(sK + (stage ^ 1) * FWD_BC * STR, kh, ld_k,
                                            (kt + 1) * FWD_BC, T);
            load_tile_async<FWD_BC, D, 128>(sV + (stage ^ 1) * FWD_BC * STR, vh, ld_v,
                                            (kt + 1) * FWD_BC, T);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (kt == 0) {
#pragma unroll
            for (int kc = 0; kc < KC; kc++)
                ldsm_x4(qf[kc], sQ + (warp * 16 + lane_row_a(lane)) * STR + kc * 16 + lane_col_a(lane));
        }
        const bf16 *sKs = sK + stage * FWD_BC * STR, *sVs = sV + stage * FWD_BC * STR;

        /* S (16 x FWD_BC) = Q K^T */
        float s[NT][4];
#pragma unroll
        for (int i = 0; i < NT; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
        for (int kc = 0; kc < KC; kc++) {
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                uint32_t bfr[4];
                ldsm_x4(bfr, sKs + (np * 16 + lane_row_nk(lane)) * STR + kc * 16 + lane_col_nk(lane));
                mma_bf16(s[2 * np], qf[kc], bfr[0], bfr[1]);
                mma_bf16(s[2 * np + 1], qf[kc], bfr[2], bfr[3]);
            }
        }

        /* mask keys after the row: only tiles that reach past the block's
        ** first row have any */
        const int k0 = kt * FWD_BC;
        if (k0 + FWD_BC - 1 > q0) {
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (k0 + nt * 8 + 2 * c + (e & 1) > row0 + (e >> 1) * 8) s[nt][e] = -INFINITY;
        }

        /* online softmax; a row's 64 scores lie in the 4 threads of a quad.
        ** The maximum is taken on the raw scores (the scale is positive),
        ** so each exponential is one multiply-add and one ex2. */
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < NT; nt++) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(m[r], mx * scale_log2);
            const float m_use = m_new == -INFINITY ? 0.0f : m_new; /* a row with no key yet */
            const float alpha = fast_exp2(m[r] - m_use);
            m[r] = m_new;
            float sum = 0.0f;
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                float p0 = fast_exp2(s[nt][2 * r] * scale_log2 - m_use);
                float p1 = fast_exp2(s[nt][2 * r + 1] * scale_log2 - m_use);
                s[nt][2 * r] = p0;
                s[nt][2 * r + 1] = p1;
                sum += p0 + p1;
            }
            l[r] = l[r] * alpha + sum; /* this thread's share; the quad adds them at the end */
#pragma unroll
            for (int dt = 0; dt < DT; dt++) {
                o[dt][2 * r] *= alpha;
                o[dt][2 * r + 1] *= alpha;
            }
        }

        /* O (16 x D) += P V: P's C fragments are the A fragments, in bf16 */
#pragma unroll
        for (int kk = 0; kk < FWD_BC / 16; kk++) {
            uint32_t a[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t bfr[4];
                ldsm_x4_t(bfr, sVs + (kk * 16 + lane_row_kn(lane)) * STR + dp * 16 + lane_col_kn(lane));
                mma_bf16(o[2 * dp], a, bfr[0], bfr[1]);
                mma_bf16(o[2 * dp + 1], a, bfr[2], bfr[3]);
            }
        }
        __syncthreads(); /* the stage is refilled by the next iteration's prefetch */
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        float sum = l[r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int row = row0 + r * 8;
        if (row >= T) continue;
        const float inv = 1.0f / sum;
        bf16 *orow = out + ((int64_t)b * T + row) * ld_o + (int64_t)h * D;
#pragma unroll
        for (int dt = 0; dt < DT; dt++)
            *(uint32_t *)(orow + dt * 8 + 2 * c) = pack_bf16(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
        if (c == 0) st_elem(lse, lse_type, (int64_t)bh * T + row, (m[r] + log2f(sum)) * ATTN_LN2);
    }
}

template <int D>
static int forward_mma(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *lse,
                       const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                       int64_t B, int64_t T, int64_t H, int64_t KV, float scale_log2) {
    const size_t smem = (size_t)(FWD_BR + 4 * FWD_BC) * (D + 8) * sizeof(bf16);
    DORAC_TRY(attn_smem_limit((const void *)attention_forward_mma<D>, smem, "attention_forward"));
    dim3 grid((unsigned)(B * H), (unsigned)((T + FWD_BR - 1) / FWD_BR));
    attention_forward_mma<D><<<grid, 128, smem, cuda_stream(be)>>>(
        (bf16 *)out->data, out->ld, lse->data, (int)lse->type, (const bf16 *)q->data, q->ld,
        (const bf16 *)k->data, k->ld, (const bf16 *)v->data, v->ld, (int)T, (int)H, (int)(H / KV),
        scale_log2);
    return cuda_launch_status("attention_forward");
}

/* ---------------------------------------------------------------------- */
/* the generic path                                                       */
/* ---------------------------------------------------------------------- */

/* out, q (N, H*D); k, v (N, KV*D); lse (1, B*H*T); D <= 32*NS.
** grid (B*H, ceil(T/8)), 256 threads; dynamic smem (8*D + 32*(D+1)) floats:
** the block's 8 query rows and one chunk of keys or values. */
template <int NS>
static __global__ void __launch_bounds__(GEN_ROWS * 32)
attention_forward_generic(cuda_view out, void *lse, int lse_type, cuda_view q, cuda_view k,
                          cuda_view v, int T, int H, int group, int D, float scale_log2) {
    extern __shared__ float gsm[];
    float *sq = gsm;                  /* [GEN_ROWS][D] */
    float *skv = gsm + GEN_ROWS * D;  /* [GEN_KEYS][D+1]: a lane's key row is bank-shifted */
    const int bh = blockIdx.x, b = bh / H, h = bh % H, kvh = h / group;
    const int t0 = (gridDim.y - 1 - blockIdx.y) * GEN_ROWS;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t = t0 + warp;
    const int64_t base = (int64_t)b * T, qcol = (int64_t)h * D, kcol = (int64_t)kvh * D;

    for (int i = threadIdx.x; i < GEN_ROWS * D; i += blockDim.x) {
        int r = i / D, d = i % D;
        sq[i] = t0 + r < T ? ld_at(q, base + t0 + r, qcol + d) : 0.0f;
    }
    const int t_last = min(t0 + GEN_ROWS, T) - 1; /* the block's last row */
    float m = -INFINITY, l = 0.0f, acc[NS];       /* acc[i]: column lane + 32 i */
#pragma unroll
    for (int i = 0; i < NS; i++) acc[i] = 0.0f;

    for (int j0 = 0; j0 <= t_last; j0 += GEN_KEYS) {
        const int n_keys = min(GEN_KEYS, t_last + 1 - j0);
        __syncthreads(); /* sq written; the previous chunk's values read */
        for (int i = threadIdx.x; i < GEN_KEYS * D; i += blockDim.x) {
            int j = i / D, d = i % D;
            skv[j * (D + 1) + d] = j < n_keys ? ld_at(k, base + j0 + j, kcol + d) : 0.0f;
        }
        __syncthreads();
        const int key = j0 + lane;
        float s = -INFINITY;
        if (t < T && key <= t) {
            float dot = 0.0f;
            for (int d = 0; d < D; d++) dot += sq[warp * D + d] * skv[lane * (D + 1) + d];
            s = dot * scale_log2;
        }
        __syncthreads(); /* keys read; load the values over them */
        for (int i = threadIdx.x; i < GEN_KEYS * D; i += blockDim.x) {
            int j = i / D, d = i % D;
            skv[j * (D + 1) + d] = j < n_keys ? ld_at(v, base + j0 + j, kcol + d) : 0.0f;
        }
        __syncthreads();
        const float m_new = fmaxf(m, warp_max(s));
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;
        const float alpha = exp2f(m - m_use), p = exp2f(s - m_use);
        l = l * alpha + warp_sum(p);
        m = m_new;
#pragma unroll
        for (int i = 0; i < NS; i++) acc[i] *= alpha;
        for (int jj = 0; jj < n_keys; jj++) {
            const float pj = __shfl_sync(0xffffffffu, p, jj);
            const float *vrow = skv + jj * (D + 1);
#pragma unroll
            for (int i = 0; i < NS; i++)
                if (lane + 32 * i < D) acc[i] += pj * vrow[lane + 32 * i];
        }
    }
    if (t >= T) return;
    const float inv = 1.0f / l;
#pragma unroll
    for (int i = 0; i < NS; i++)
        if (lane + 32 * i < D) st_at(out, base + t, qcol + lane + 32 * i, acc[i] * inv);
    if (lane == 0) st_elem(lse, lse_type, (int64_t)bh * T + t, (m + log2f(l)) * ATTN_LN2);
}

template <int NS>
static int forward_generic(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *lse,
                           const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                           int64_t B, int64_t T, int64_t H, int64_t KV, int64_t D, float scale_log2) {
    const size_t smem = (size_t)(GEN_ROWS * D + GEN_KEYS * (D + 1)) * sizeof(float);
    DORAC_TRY(attn_smem_limit((const void *)attention_forward_generic<NS>, smem, "attention_forward"));
    dim3 grid((unsigned)(B * H), (unsigned)((T + GEN_ROWS - 1) / GEN_ROWS));
    attention_forward_generic<NS><<<grid, GEN_ROWS * 32, smem, cuda_stream(be)>>>(
        cuda_view_of(out), lse->data, (int)lse->type, cuda_view_of(q), cuda_view_of(k),
        cuda_view_of(v), (int)T, (int)H, (int)(H / KV), (int)D, scale_log2);
    return cuda_launch_status("attention_forward");
}

/* ---------------------------------------------------------------------- */
/* the entry                                                              */
/* ---------------------------------------------------------------------- */

int CUDA_OP(attention_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *lse,
                               const dorac_tensor *q, const dorac_tensor *k, const dorac_tensor *v,
                               int64_t B, int64_t T, int64_t H, int64_t KV, int64_t D) {
    DORAC_TRY(attn_check(out, q, k, v, lse, B, T, H, KV, D, "attention_forward"));
    const float scale_log2 = (float)(1.4426950408889634 / sqrt((double)D));
    if (attn_mma_dim(D) && cuda_bf16_rows16(q) && cuda_bf16_rows16(k) && cuda_bf16_rows16(v) &&
        cuda_bf16_rows16(out)) {
        switch (D) {
        case 16: return forward_mma<16>(be, out, lse, q, k, v, B, T, H, KV, scale_log2);
        case 32: return forward_mma<32>(be, out, lse, q, k, v, B, T, H, KV, scale_log2);
        case 64: return forward_mma<64>(be, out, lse, q, k, v, B, T, H, KV, scale_log2);
        case 96: return forward_mma<96>(be, out, lse, q, k, v, B, T, H, KV, scale_log2);
        case 128: return forward_mma<128>(be, out, lse, q, k, v, B, T, H, KV, scale_log2);
        default: break;
        }
    }
    if (D <= 64) return forward_generic<2>(be, out, lse, q, k, v, B, T, H, KV, D, scale_log2);
    if (D <= 128) return forward_generic<4>(be, out, lse, q, k, v, B, T, H, KV, D, scale_log2);
    return forward_generic<8>(be, out, lse, q, k, v, B, T, H, KV, D, scale_log2);
}
