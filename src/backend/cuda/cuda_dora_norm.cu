/*
** cuda_dora_norm.cu — DoRA's factored row norm on the GPU (backend.h's
** dora_norm; the math is DESIGN.md §1):
**   n2[o] = c[o] + 2s sum_k B[o,k] P[o,k] + s^2 sum_kl B[o,k] G[k,l] B[o,l]
**   n[o]  = sqrt(max(n2[o], floor)),  g[o] = m[o] / n[o]
** with c, n, g, m (1,out); B, P (out,r); G (r,r); s the adapter scale.
**
** With r > 0, a block takes ROWS_PER_BLOCK consecutive output rows and
** copies their rows of B into shared memory, as doubles. Thread t takes
** columns l = t, t + blockDim, ... and forms, for every row of the block,
**   (B_o G)[l] = sum_k B[o,k] G[k,l]
** reading G[k,l] once per block (coalesced along l, shared by the block's
** rows) and B[o,k] from shared memory; it then adds B[o,l] (B_o G)[l] and
** B[o,l] P[o,l] into its partial sums. The block adds the partials in a
** fixed order. Everything from the products on is double, as on the CPU;
** the shape of every sum depends only on (out, r), so results are the same
** from run to run. With r == 0 (no adapter yet), one thread per row.
**
** The common ranks 4, 8, 16 and 32 take a shorter path instead: four
** threads per output row, with G in shared memory (as doubles) and the row
** of B in registers; thread q forms the terms k = q, q + 4, ... of
** sum_k B[o,k] P[o,k] and sum_k B[o,k] (G B_o)[k], and a butterfly adds
** the four. Its sums have a fixed shape too, but not the wide path's, so
** the two agree to double rounding, far below the fp32 results. (The wide
** path's block of one or two warps per 8 rows, its warp trees and barriers
** took 12 us a call at r = 16 on the H200; one thread per row, with its
** R^2 dependent double products, 8.9 us under ncu.)
**
** dora_norm_many batches the update of many layers (DoRA's G = A A^T and
** this norm): for ranks 8, 16, 32, up to NORM_MANY layers a launch pair
** (cuda_gram_many, then the per-row path with a layer per grid row), the
** same work block for block as the calls one by one, so the same bits.
**
** Limit: the block's B rows live in shared memory, so r is at most
** MAX_RANK (5120, far above any adapter's rank); larger r is
** DORAC_E_UNSUPPORTED.
*/
#include <string.h>

#include "backend/cuda/cuda_impl.cuh"

enum {
    ROWS_PER_BLOCK = 8, /* output rows sharing one pass over G (fewer when r > 640) */
    MAX_RANK = 5120,    /* doubles of B rows a block may hold: 40 KiB of shared memory */
    MAX_THREADS = 256,
    ROW_THREADS = 128,  /* the per-row path's block */
    ROW_LANES = 4       /* ... and its lanes per row */
};

/* n, g from n2 in double, as the CPU forms them. g only when has_g. */
static __device__ __forceinline__ void dora_norm_store(cuda_view n, cuda_view g, cuda_view m,
                                                       int64_t o, double n2, double floor,
                                                       bool has_g) {
    double norm = sqrt(n2 > floor ? n2 : floor);
    st_at(n, 0, o, (float)norm);
    if (has_g) st_at(g, 0, o, (float)((double)ld_at(m, 0, o) / norm));
}

/* r == 0: n (1,out) = sqrt(max(c, floor)), g = m / n. */
static __global__ void dora_norm_plain_kernel(cuda_view n, cuda_view g, cuda_view c, cuda_view m,
                                              int64_t out, double floor, bool has_g) {
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < out;
         o += (int64_t)gridDim.x * blockDim.x)
        dora_norm_store(n, g, m, o, (double)ld_at(c, 0, o), floor, has_g);
}

/* r > 0: n, g, c, m (1,out); B, P (out,r); G (r,r). Dynamic shared memory
** holds rows_per_block * r doubles; rows_per_block <= ROWS_PER_BLOCK.
** Grid: a block per rows_per_block rows, at most MAX_THREADS threads. */
static __global__ void dora_norm_rank_kernel(cuda_view n, cuda_view g, cuda_view c, cuda_view B,
                                             cuda_view P, cuda_view G, cuda_view m, int64_t out,
                                             int64_t r, int rows_per_block, double scale,
                                             double floor, bool has_g) {
    extern __shared__ double b_rows[]; /* (rows_per_block, r) */
    __shared__ double warp_part[MAX_THREADS / 32][2 * ROWS_PER_BLOCK]; /* per warp: bp, bgb */
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
    for (int64_t o0 = (int64_t)blockIdx.x * rows_per_block; o0 < out;
         o0 += (int64_t)gridDim.x * rows_per_block) {
        int nr = out - o0 < rows_per_block ? (int)(out - o0) : rows_per_block;
        for (int64_t e = threadIdx.x; e < (int64_t)rows_per_block * r; e += blockDim.x) {
            int q = (int)(e / r);
            int64_t k = e - (int64_t)q * r;
            b_rows[e] = q < nr ? (double)ld_at(B, o0 + q, k) : 0.0; /* rows past out are 0 */
        }
        __syncthreads();

        double bp[ROWS_PER_BLOCK], bgb[ROWS_PER_BLOCK];
#pragma unroll
        for (int q = 0; q < ROWS_PER_BLOCK; q++) bp[q] = bgb[q] = 0.0;
        for (int64_t l = threadIdx.x; l < r; l += blockDim.x) {
            double bg[ROWS_PER_BLOCK]; /* (B_o G)[l] for each row o of the block */
#pragma unroll
            for (int q = 0; q < ROWS_PER_BLOCK; q++) bg[q] = 0.0;
#pragma unroll 4
            for (int64_t k = 0; k < r; k++) {
                double gkl = ld_at(G, k, l);
#pragma unroll
                for (int q = 0; q < ROWS_PER_BLOCK; q++)
                    if (q < rows_per_block) bg[q] += b_rows[q * r + k] * gkl;
            }
#pragma unroll
            for (int q = 0; q < ROWS_PER_BLOCK; q++)
                if (q < nr) {
                    double bl = b_rows[q * r + l];
                    bp[q] += bl * (double)ld_at(P, o0 + q, l);
                    bgb[q] += bl * bg[q];
                }
        }

        /* fixed-order block sums: warp trees, then warps in order */
#pragma unroll
        for (int q = 0; q < ROWS_PER_BLOCK; q++) {
            bp[q] = warp_sum(bp[q]);
            bgb[q] = warp_sum(bgb[q]);
        }
        if (lane == 0)
#pragma unroll
            for (int q = 0; q < ROWS_PER_BLOCK; q++) {
                warp_part[warp][q] = bp[q];
                warp_part[warp][ROWS_PER_BLOCK + q] = bgb[q];
            }
        __syncthreads();
        if (threadIdx.x < nr) {
            int q = threadIdx.x;
            double sum_bp = 0.0, sum_bgb = 0.0;
            for (int w = 0; w < n_warps; w++) {
                sum_bp += warp_part[w][q];
                sum_bgb += warp_part[w][ROWS_PER_BLOCK + q];
            }
            int64_t o = o0 + q;
            double n2 = (double)ld_at(c, 0, o) + (2.0 * scale * sum_bp + scale * scale * sum_bgb);
            dora_norm_store(n, g, m, o, n2, floor, has_g);
        }
        __syncthreads(); /* warp_part and b_rows are reused by the next rows */
    }
}

/* r == R in {4, 8, 16, 32}: ROW_LANES lanes per row (a block of
** ROW_THREADS threads holds ROW_THREADS / ROW_LANES rows). Lane q holds the
** whole row of B in registers and forms the terms k = q, q + ROW_LANES, ...
** of both sums, k in order; the lanes' parts are then added by a butterfly
** (lanes q^1, then q^2: a fixed order, the same bits in every lane). */
template <int R>
static __device__ __forceinline__ void dora_norm_rows(cuda_view n, cuda_view g, cuda_view c, cuda_view B, cuda_view P,
                                                      cuda_view G, cuda_view m, int64_t out, double scale, double floor,
                                                      bool has_g) {
    static_assert(R % ROW_LANES == 0, "every lane gets R / ROW_LANES terms");
    __shared__ double gs[R * R];
    for (int e = threadIdx.x; e < R * R; e += blockDim.x) gs[e] = (double)ld_at(G, e / R, e % R);
    __syncthreads();
    int q = threadIdx.x % ROW_LANES;
    int64_t rows_per_grid = (int64_t)gridDim.x * (ROW_THREADS / ROW_LANES);
    for (int64_t o0 = (int64_t)blockIdx.x * (ROW_THREADS / ROW_LANES); o0 < out; o0 += rows_per_grid) {
        int64_t o = o0 + threadIdx.x / ROW_LANES;
        bool live = o < out; /* dead lanes add zeros, so the butterfly stays whole */
        double b[R], bp = 0.0, bgb = 0.0;
#pragma unroll
        for (int l = 0; l < R; l++) b[l] = live ? (double)ld_at(B, o, l) : 0.0;
#pragma unroll
        for (int i = 0; i < R / ROW_LANES; i++) {
            int k = i * ROW_LANES + q;
            double bk = live ? (double)ld_at(B, o, k) : 0.0; /* b[k]: k is not a constant */
            bp += bk * (live ? (double)ld_at(P, o, k) : 0.0);
            double gb = 0.0; /* (G B_o)[k] */
#pragma unroll
            for (int l = 0; l < R; l++) gb += gs[k * R + l] * b[l];
            bgb += bk * gb;
        }
        bp += __shfl_xor_sync(0xffffffffu, bp, 1);
        bgb += __shfl_xor_sync(0xffffffffu, bgb, 1);
        bp += __shfl_xor_sync(0xffffffffu, bp, 2);
        bgb += __shfl_xor_sync(0xffffffffu, bgb, 2);
        if (live && q == 0) {
            double n2 = (double)ld_at(c, 0, o) + (2.0 * scale * bp + scale * scale * bgb);
            dora_norm_store(n, g, m, o, n2, floor, has_g);
        }
    }
}

template <int R>
static __global__ void
dora_norm_row_kernel(cuda_view n, cuda_view g, cuda_view c, cuda_view B, cuda_view P, cuda_view G, cuda_view m,
                     int64_t out, double scale, double floor, bool has_g) {
    dora_norm_rows<R>(n, g, c, B, P, G, m, out, scale, floor, has_g);
}

/* Up to NORM_MANY items of one rank R in one launch: grid (most row blocks
** of any item, items), block (b, i) doing row block b of item i as
** dora_norm_row_kernel would (grid-stride rows: the same bits for any
** grid). Passed by value (under 4 KiB of kernel parameters). */
enum { NORM_MANY = 16 };
typedef struct norm_many_args {
    cuda_view n[NORM_MANY], g[NORM_MANY], c[NORM_MANY], B[NORM_MANY], P[NORM_MANY], G[NORM_MANY], m[NORM_MANY];
    int64_t out[NORM_MANY];
    double scale[NORM_MANY];
    bool has_g[NORM_MANY];
} norm_many_args;

template <int R>
static __global__ void dora_norm_row_many_kernel(const norm_many_args a, double floor) {
    int i = blockIdx.y;
    dora_norm_rows<R>(a.n[i], a.g[i], a.c[i], a.B[i], a.P[i], a.G[i], a.m[i], a.out[i], a.scale[i], floor, a.has_g[i]);
}

/* dora_norm's checks; *out and *r (0 without B) on success. */
static int norm_check(const dorac_tensor *n, const dorac_tensor *g, const dorac_tensor *c, const dorac_tensor *B,
                      const dorac_tensor *P, const dorac_tensor *G, const dorac_tensor *m, int64_t *out_, int64_t *r_) {
    const char *op = "dora_norm";
    int64_t out = c->cols;
    DORAC_TRY(cuda_check_shape(c, 1, out, op, "c"));
    DORAC_TRY(cuda_check_shape(n, 1, out, op, "n"));
    DORAC_TRY(cuda_check_optional_vector(g, out, op, "g"));
    DORAC_TRY(cuda_check_optional_vector(m, out, op, "m"));
    bool has_g = g && g->data;
    if (has_g && !(m && m->data))
        return dorac_error(DORAC_E_INVALID, "dora_norm: g requested without m");
    int64_t r = (B && B->data) ? B->cols : 0;
    if (r > 0) {
        DORAC_TRY(cuda_check_shape(B, out, r, op, "B"));
        DORAC_TRY(cuda_check_shape(P, out, r, op, "P"));
        DORAC_TRY(cuda_check_shape(G, r, r, op, "G"));
        if (r > MAX_RANK)
            return dorac_error(DORAC_E_UNSUPPORTED, "dora_norm: rank %lld exceeds the CUDA limit %d",
                               (long long)r, (int)MAX_RANK);
    }
    *out_ = out, *r_ = r;
    return DORAC_OK;
}

int CUDA_OP(dora_norm)(dorac_backend *be, const dorac_tensor *n, const dorac_tensor *g,
                       const dorac_tensor *c, const dorac_tensor *B, const dorac_tensor *P,
                       const dorac_tensor *G, const dorac_tensor *m, double scale, double floor) {
    const char *op = "dora_norm";
    int64_t out = 0, r = 0;
    DORAC_TRY(norm_check(n, g, c, B, P, G, m, &out, &r));
    bool has_g = g && g->data;
    if (out == 0) return DORAC_OK;

    cudaStream_t stream = cuda_stream(be);
    cuda_view none = {NULL, DORAC_DTYPE_F32, 0};
    cuda_view gv = has_g ? cuda_view_of(g) : none, mv = (m && m->data) ? cuda_view_of(m) : none;
    if (r == 0) {
        dora_norm_plain_kernel<<<cuda_blocks(out, 256), 256, 0, stream>>>(
            cuda_view_of(n), gv, cuda_view_of(c), mv, out, floor, has_g);
        return cuda_launch_status(op);
    }
    cuda_view nv = cuda_view_of(n), cv = cuda_view_of(c), Bv = cuda_view_of(B), Pv = cuda_view_of(P);
    cuda_view Gv = cuda_view_of(G);
    unsigned row_blocks = cuda_blocks(out, ROW_THREADS / ROW_LANES);
    switch (r) {
    case 4: dora_norm_row_kernel<4><<<row_blocks, ROW_THREADS, 0, stream>>>(nv, gv, cv, Bv, Pv, Gv, mv, out, scale, floor, has_g); return cuda_launch_status(op);
    case 8: dora_norm_row_kernel<8><<<row_blocks, ROW_THREADS, 0, stream>>>(nv, gv, cv, Bv, Pv, Gv, mv, out, scale, floor, has_g); return cuda_launch_status(op);
    case 16: dora_norm_row_kernel<16><<<row_blocks, ROW_THREADS, 0, stream>>>(nv, gv, cv, Bv, Pv, Gv, mv, out, scale, floor, has_g); return cuda_launch_status(op);
    case 32: dora_norm_row_kernel<32><<<row_blocks, ROW_THREADS, 0, stream>>>(nv, gv, cv, Bv, Pv, Gv, mv, out, scale, floor, has_g); return cuda_launch_status(op);
    default: break;
    }
    int rows_per_block = (int)(MAX_RANK / r);
    if (rows_per_block > ROWS_PER_BLOCK) rows_per_block = ROWS_PER_BLOCK;
    int threads = 32;
    while (threads < MAX_THREADS && threads < r) threads *= 2;
    size_t shared = (size_t)rows_per_block * (size_t)r * sizeof(double);
    dora_norm_rank_kernel<<<cuda_blocks(out, rows_per_block), threads, shared, stream>>>(
        cuda_view_of(n), gv, cuda_view_of(c), cuda_view_of(B), cuda_view_of(P), cuda_view_of(G), mv,
        out, r, rows_per_block, scale, floor, has_g);
    return cuda_launch_status(op);
}

/* An item the batched path takes: rank 8, 16 or 32, F32 A (r, K) and G,
** as cuda_gram takes them; out >= 1. */
static bool many_fits(const dorac_dora_norm_item *it, int64_t out, int64_t r) {
    return (r == 8 || r == 16 || r == 32) && out >= 1 && it->A->type == DORAC_DTYPE_F32 &&
           it->G->type == DORAC_DTYPE_F32 && it->A->cols <= 65535LL * 256 && it->A->data != it->G->data;
}

/* Launches the gram and norm batches of rank R over items idx[0..k). */
template <int R>
static int many_batch(dorac_backend *be, const dorac_dora_norm_item *items, const size_t *idx, int k, double floor) {
    cuda_gram_many_args ga;
    norm_many_args na;
    memset(&ga, 0, sizeof ga);
    memset(&na, 0, sizeof na);
    cuda_view none = {NULL, DORAC_DTYPE_F32, 0};
    int64_t most_rows = 1;
    for (int j = 0; j < k; j++) {
        const dorac_dora_norm_item *it = &items[idx[j]];
        bool has_g = it->g && it->g->data;
        ga.A[j] = cuda_view_of(it->A), ga.C[j] = cuda_view_of(it->G), ga.K[j] = it->A->cols, ga.r[j] = R;
        int64_t out = it->c->cols;
        na.n[j] = cuda_view_of(it->n), na.c[j] = cuda_view_of(it->c), na.B[j] = cuda_view_of(it->B);
        na.P[j] = cuda_view_of(it->P), na.G[j] = cuda_view_of(it->G);
        na.g[j] = has_g ? cuda_view_of(it->g) : none;
        na.m[j] = it->m && it->m->data ? cuda_view_of(it->m) : none;
        na.out[j] = out, na.scale[j] = it->scale, na.has_g[j] = has_g;
        int64_t blocks = (out + ROW_THREADS / ROW_LANES - 1) / (ROW_THREADS / ROW_LANES);
        if (blocks > most_rows) most_rows = blocks;
    }
    ga.n = k;
    DORAC_TRY(cuda_gram_many(be, R, &ga));
    dim3 grid((unsigned)(most_rows < 65535 ? most_rows : 65535), (unsigned)k);
    dora_norm_row_many_kernel<R><<<grid, ROW_THREADS, 0, cuda_stream(be)>>>(na, floor);
    return cuda_launch_status("dora_norm_many");
}

extern "C" int CUDA_OP(dora_norm_many)(dorac_backend *be, const dorac_dora_norm_item *items, size_t n_items,
                                       double floor) {
    /* every item checked before anything is launched */
    for (size_t i = 0; i < n_items; i++) {
        const dorac_dora_norm_item *it = &items[i];
        int64_t out = 0, r = 0;
        DORAC_TRY(norm_check(it->n, it->g, it->c, it->B, it->P, it->G, it->m, &out, &r));
        bool has_a = it->A && it->A->data;
        if (has_a != (r > 0) || (has_a && (it->A->rows != r || it->A->cols < 1)))
            return dorac_error(DORAC_E_INVALID, "dora_norm_many: item %zu: A is (%lld, %lld) for rank %lld", i,
                               has_a ? (long long)it->A->rows : 0LL, has_a ? (long long)it->A->cols : 0LL,
                               (long long)r);
        if (has_a) DORAC_TRY(cuda_check_float(it->A, "dora_norm_many", "A"));
    }
    /* the ranks the batch takes, NORM_MANY items a launch pair; the rest one by one */
    size_t idx[NORM_MANY];
    static const int ranks[3] = {8, 16, 32};
    for (int q = 0; q < 3; q++) {
        int k = 0;
        for (size_t i = 0; i <= n_items; i++) {
            bool take = false;
            if (i < n_items) {
                int64_t out = items[i].c->cols, r = items[i].B && items[i].B->data ? items[i].B->cols : 0;
                take = r == ranks[q] && many_fits(&items[i], out, r);
            }
            if (take) idx[k++] = i;
            if (k == NORM_MANY || (i == n_items && k > 0)) {
                int rc = ranks[q] == 8 ? many_batch<8>(be, items, idx, k, floor)
                         : ranks[q] == 16 ? many_batch<16>(be, items, idx, k, floor)
                                          : many_batch<32>(be, items, idx, k, floor);
                DORAC_TRY(rc);
                k = 0;
            }
        }
    }
    for (size_t i = 0; i < n_items; i++) {
        const dorac_dora_norm_item *it = &items[i];
        int64_t out = it->c->cols, r = it->B && it->B->data ? it->B->cols : 0;
        if (r > 0 && many_fits(it, out, r)) continue; /* done above */
        if (r > 0) DORAC_TRY(CUDA_OP(gemm)(be, it->G, it->A, false, it->A, true, 1.0, 0.0));
        DORAC_TRY(CUDA_OP(dora_norm)(be, it->n, it->g, it->c, it->B, it->P, it->G, it->m, it->scale, floor));
    }
    return DORAC_OK;
}
