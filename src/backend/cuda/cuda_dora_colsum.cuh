/*
** cuda_dora_colsum.cuh — DoRA's element-wise backward as an epilogue of a
** pass over (N,out): what dora_scale_backward does on its own, and what the
** MLP activations' fused backwards (swiglu_backward_dora, gelu_backward_dora)
** do on the gradients they produce, so that no separate pass re-reads them.
**
** For each of K outputs ("sides": the gate and up projections of SwiGLU, or
** one projection) a producer turns, per row i and chunk of columns, its
** N_IN input chunks into the upstream gradient d = dL/dy and the
** projection's forward output y. Then, for a DoRA side (g present),
**   zsum[o] += sum_i d[i,o] * z[i,o],  z[i,o] = (y[i,o] - bias[o]) / g[o]
**   dz[i,o]  = g[o] * d[i,o]
** and for any other side dz[i,o] = d[i,o]. As on the CPU, the column sum is
** formed from two plain sums, (sum_i d y - bias sum_i d) / g, so there is no
** per-element division; a column with g == 0 contributes 0.
**
** The pass is bandwidth bound. Loads and stores move 16-byte chunks
** (cuda_chunk.cuh) coalesced along the columns, in two kernels and no
** atomics. Each column's sums have a fixed shape for given (N, out), so
** results are the same from run to run:
**   1. The rows are cut into n_parts parts (grid y) and the columns into
**      blocks of BX chunks (grid x; BX = 32, 64 or 128, i.e. 256 to 1024
**      columns). A block has COLSUM_THREADS threads, BX x BY: thread
**      (tx, ty) owns one chunk of columns and a run of consecutive rows of
**      the part (the ty-th of BY runs of `run` rows). It walks its run in
**      order, writes dz, and sums d y and d in fp32, as the CPU sums runs of
**      64 rows in fp32; the g chunk is loaded once, before the walk. The BY
**      runs of a column are then added in double in ty order, and a part's
**      two sums per (side, column) are stored as floats in a scratch array.
**   2. One thread per column adds its n_parts partials in double, in part
**      order, and updates zsum.
** With a single part, pass 1 updates zsum itself and no scratch is used.
**
** Why it is shaped so. On the H200 (ncu) the previous design (256-column
** tiles, a thread loading, widening and storing one row at a time, double
** partials, an L2 prefetch of the rows ahead) moved about 1.8 TB/s on the
** Llama-1B SwiGLU shape, against 2.7 for the plain swiglu_backward kernel.
** Its SASS showed why: ld_chunk widens BF16 right after each 16-byte load,
** inside the load's branch, so a thread had one load in flight at a time.
** Here, when every input is BF16, a thread loads chunks raw (ld_chunk_bf16)
** and widens them only where it uses them, and it issues row i +
** COLSUM_AHEAD's loads before it works on row i, so the loads of
** COLSUM_AHEAD + 1 rows of every input can be in flight. Otherwise (F32 or
** mixed inputs) it loads one row at a time: F32 chunks need no widening, so
** that row's loads are all in flight at once, and two rows of eight floats
** per input would not fit in the registers. The g chunk, constant over the
** rows, stays in registers, and the two versions sum the same values in the
** same order. Loads of a later row before the stores of an earlier one are
** safe when dz aliases an input element for element, and a row's own loads
** come before its own stores.
**
** The cut (colsum_plan_of) depends on (N, out, K) only:
**   - run, the rows of a thread's fp32 sums, is 64, halved (down to 8)
**     while the threads with work, chunks(out) x ceil(N / run), are fewer
**     than about two waves at the kernel's occupancy on a 132-SM GPU
**     (COLSUM_SM_WAVES SMs' worth: 2 blocks an SM for K = 2, 3 for K = 1,
**     the register bounds of __launch_bounds__);
**   - BX is 128 when the columns and the run allow, halved while the block
**     is at least twice as wide as the columns or a part, BY x run rows,
**     would have fewer than COLSUM_PART_ROWS (64) rows. A part's partials,
**     written and read, are then 16 K bytes a column against about 64 rows
**     or more of traffic: at most 5% (SwiGLU) or 4% (one side) of the bytes
**     with BF16, half that with F32;
**   - parts are balanced, at most 65535 (the grid's y limit): only past
**     that (8M rows for the Llama-1B shapes) do the parts, and a thread's
**     fp32 runs with them, grow past the sizes above.
** E.g. (N, out, K) = (8192, 8192, 2): BX 128, run 64, grid 8 x 64;
** (8192, 2048, 1): BX 32, run 8, grid 8 x 128; (8192, 512, 1): BX 32,
** run 8, grid 2 x 128; (100, 8192, 2): BX 32, run 7, grid 32 x 2.
*/
#ifndef DORAC_CUDA_DORA_COLSUM_CUH
#define DORAC_CUDA_DORA_COLSUM_CUH

#include "backend/cuda/cuda_chunk.cuh"

enum {
    COLSUM_THREADS = 256,        /* threads of a pass-1 block, BX x BY */
    COLSUM_MAX_BX = 128,         /* chunk columns of the widest block: 1024 columns */
    COLSUM_MAX_RUN = 64,         /* rows of a thread's fp32 sums, at most (below 8M rows) */
    COLSUM_MIN_RUN = 8,          /* ... and at least, before the parts are balanced */
    COLSUM_PART_ROWS = 64,       /* rows of a part (BY run), at least, before balancing */
    COLSUM_AHEAD = 1,            /* rows a thread loads ahead of the one it works on (BF16) */
    COLSUM_SM_WAVES = 256        /* SMs' worth of resident threads wanted: 1.94 waves on 132 SMs */
};

/* Pass-1 blocks an SM holds: __launch_bounds__ caps a thread's registers to
** fit them (K = 1: 85, K = 2: 128; the BF16 versions need 80 and 128, with
** no spills). */
static __host__ __device__ constexpr int colsum_blocks_per_sm(int K) { return K == 1 ? 3 : 2; }

/* One side: where its gradient goes, and its DoRA terms (dora false: dz = d). */
typedef struct dora_side {
    cuda_view dz, zsum, g, bias;
    bool dora, has_bias;
} dora_side;

template <int K> struct dora_sides {
    dora_side side[K];
};

/* A side for dz alone, or for dz with DoRA's terms when g is a tensor with
** data (bias may be absent). */
static inline dora_side dora_side_of(const dorac_tensor *dz, const dorac_tensor *zsum,
                                     const dorac_tensor *g, const dorac_tensor *bias) {
    cuda_view none = {NULL, DORAC_DTYPE_F32, 0};
    dora_side s;
    s.dz = cuda_view_of(dz);
    s.dora = g && g->data;
    s.has_bias = s.dora && bias && bias->data;
    s.zsum = s.dora ? cuda_view_of(zsum) : none;
    s.g = s.dora ? cuda_view_of(g) : none;
    s.bias = s.has_bias ? cuda_view_of(bias) : none;
    return s;
}

/* One input chunk between its load and its use: with BF16 inputs the raw 16
** bytes (widened at the use), otherwise the 8 floats (nothing to widen). */
template <bool BF16> struct colsum_chunk;
template <> struct colsum_chunk<true> {
    uint4 raw;
    __device__ __forceinline__ void load(cuda_view v, int64_t i, int64_t c0, int64_t n_cols) {
        raw = ld_chunk_bf16(v, i, c0, n_cols, row_aligned16(v, i));
    }
    __device__ __forceinline__ void widen(float z[CUDA_CHUNK]) const { widen_chunk_bf16(z, raw); }
};
template <> struct colsum_chunk<false> {
    float val[CUDA_CHUNK];
    __device__ __forceinline__ void load(cuda_view v, int64_t i, int64_t c0, int64_t n_cols) {
        ld_chunk(val, v, i, c0, n_cols, row_aligned16(v, i), 0.0f);
    }
    __device__ __forceinline__ void widen(float z[CUDA_CHUNK]) const {
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) z[k] = val[k];
    }
};

/* zsum[o] += (s_dyy - b s_dy) / g, in double as the CPU forms it. */
static __device__ __forceinline__ void dora_zsum_update(const dora_side &s, int64_t o, double s_dyy,
                                                        double s_dy) {
    float gval = ld_at(s.g, 0, o);
    double b = s.has_bias ? (double)ld_at(s.bias, 0, o) : 0.0;
    double sum = gval != 0.0f ? (s_dyy - b * s_dy) / (double)gval : 0.0;
    st_at(s.zsum, 0, o, (float)((double)ld_at(s.zsum, 0, o) + sum));
}

/* Pass 1. Producer: an enum N_IN, cuda_view in[N_IN] (each (N,out), read at
** row i's chunk at c0, 0 past out), and __device__ void operator()(const
** float x[N_IN][CUDA_CHUNK], float d[K][CUDA_CHUNK], float y[K][CUDA_CHUNK])
** const, turning one chunk's inputs into d and y. BF16: every in[] is BF16.
** partial is (K, 2, n_parts, out) floats (a part's sums of d y, then of d),
** NULL with one part. Grid (column blocks, parts), block (BX, BY) with
** BX BY = COLSUM_THREADS; thread ty sums rows part_start + ty run, ...,
** + (ty + 1) run - 1 of its part (those in the part). */
template <int K, class Producer, bool BF16>
static __global__ void __launch_bounds__(COLSUM_THREADS, colsum_blocks_per_sm(K))
dora_colsum_partial_kernel(Producer produce, dora_sides<K> s, float *partial, int64_t N, int64_t out,
                           int64_t rows_per_part, int64_t run, int64_t n_parts) {
    enum { N_IN = Producer::N_IN, AHEAD = BF16 ? COLSUM_AHEAD : 0, DEPTH = AHEAD + 1 };
    __shared__ __align__(16) float sums[2][COLSUM_THREADS * CUDA_CHUNK];
    int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CUDA_CHUNK;
    int64_t part0 = (int64_t)blockIdx.y * rows_per_part;
    int64_t part1 = part0 + rows_per_part < N ? part0 + rows_per_part : N;
    int64_t i0 = part0 + threadIdx.y * run;                /* this thread's run: rows [i0, i1) */
    int64_t i1 = i0 + run < part1 ? i0 + run : part1;      /* i0 >= i1: no rows */
    float acc_dyy[K][CUDA_CHUNK], acc_dy[K][CUDA_CHUNK];
#pragma unroll
    for (int j = 0; j < K; j++)
#pragma unroll
        for (int k = 0; k < CUDA_CHUNK; k++) acc_dyy[j][k] = acc_dy[j][k] = 0.0f;
    if (c0 < out && i0 < i1) {
        float gc[K][CUDA_CHUNK]; /* dz = g d; 1 for a side without DoRA */
#pragma unroll
        for (int j = 0; j < K; j++) {
            if (s.side[j].dora) {
                ld_chunk(gc[j], s.side[j].g, 0, c0, out, row_aligned16(s.side[j].g, 0), 0.0f);
            } else {
#pragma unroll
                for (int k = 0; k < CUDA_CHUNK; k++) gc[j][k] = 1.0f;
            }
        }
        /* row r's inputs are in in[(r - i0) % DEPTH] from AHEAD rows before
        ** it is worked on */
        colsum_chunk<BF16> in[DEPTH][N_IN];
#pragma unroll
        for (int u = 0; u < AHEAD; u++)
            if (i0 + u < i1)
#pragma unroll
                for (int a = 0; a < N_IN; a++) in[u][a].load(produce.in[a], i0 + u, c0, out);
        for (int64_t i = i0; i < i1; i += DEPTH) {
#pragma unroll
            for (int u = 0; u < DEPTH; u++) {
                int64_t r = i + u;
                if (r + AHEAD < i1)
#pragma unroll
                    for (int a = 0; a < N_IN; a++)
                        in[(u + AHEAD) % DEPTH][a].load(produce.in[a], r + AHEAD, c0, out);
                if (r >= i1) break;
                float x[N_IN][CUDA_CHUNK], d[K][CUDA_CHUNK], y[K][CUDA_CHUNK];
#pragma unroll
                for (int a = 0; a < N_IN; a++) in[u][a].widen(x[a]);
                produce(x, d, y);
#pragma unroll
                for (int j = 0; j < K; j++) {
#pragma unroll
                    for (int k = 0; k < CUDA_CHUNK; k++) {
                        acc_dyy[j][k] += d[j][k] * y[j][k];
                        acc_dy[j][k] += d[j][k];
                        d[j][k] *= gc[j][k];
                    }
                    st_chunk(s.side[j].dz, r, c0, out, row_aligned16(s.side[j].dz, r), d[j]);
                }
            }
        }
    }

    /* the block's BY runs of each column, added in ty order; each thread
    ** finishes columns t, t + COLSUM_THREADS, ... of the block's BX CUDA_CHUNK */
    int t = threadIdx.y * blockDim.x + threadIdx.x;
    int cols = blockDim.x * CUDA_CHUNK;
    float *mine = &sums[0][threadIdx.y * cols + threadIdx.x * CUDA_CHUNK];
#pragma unroll
    for (int j = 0; j < K; j++) {
        if (!s.side[j].dora) continue; /* uniform over the block */
        __syncthreads();
        ((float4 *)mine)[0] = make_float4(acc_dyy[j][0], acc_dyy[j][1], acc_dyy[j][2], acc_dyy[j][3]);
        ((float4 *)mine)[1] = make_float4(acc_dyy[j][4], acc_dyy[j][5], acc_dyy[j][6], acc_dyy[j][7]);
        ((float4 *)(mine + COLSUM_THREADS * CUDA_CHUNK))[0] =
            make_float4(acc_dy[j][0], acc_dy[j][1], acc_dy[j][2], acc_dy[j][3]);
        ((float4 *)(mine + COLSUM_THREADS * CUDA_CHUNK))[1] =
            make_float4(acc_dy[j][4], acc_dy[j][5], acc_dy[j][6], acc_dy[j][7]);
        __syncthreads();
        for (int c = t; c < cols; c += COLSUM_THREADS) {
            int64_t o = (int64_t)blockIdx.x * cols + c;
            if (o >= out) break;
            double s_dyy = 0.0, s_dy = 0.0;
            for (int r = 0; r < (int)blockDim.y; r++) {
                s_dyy += sums[0][r * cols + c];
                s_dy += sums[1][r * cols + c];
            }
            if (partial) {
                partial[((int64_t)(2 * j) * n_parts + blockIdx.y) * out + o] = (float)s_dyy;
                partial[((int64_t)(2 * j + 1) * n_parts + blockIdx.y) * out + o] = (float)s_dy;
            } else {
                dora_zsum_update(s.side[j], o, s_dyy, s_dy);
            }
        }
    }
}

/* Pass 2. partial (K, 2, n_parts, out) -> each DoRA side's zsum. Block
** (FINISH_COLS, FINISH_SLICES): thread (x, y) adds parts y, y + SLICES, ...
** of column x in order, in double, then thread y = 0 adds the SLICES
** results in y order: a fixed order for given sizes. */
enum { COLSUM_FINISH_COLS = 32, COLSUM_FINISH_SLICES = 8 };
template <int K>
static __global__ void __launch_bounds__(COLSUM_FINISH_COLS * COLSUM_FINISH_SLICES)
dora_colsum_finish_kernel(dora_sides<K> s, const float *partial, int64_t out, int64_t n_parts) {
    __shared__ double slice[2][COLSUM_FINISH_SLICES][COLSUM_FINISH_COLS];
    int64_t o = (int64_t)blockIdx.x * COLSUM_FINISH_COLS + threadIdx.x;
#pragma unroll
    for (int j = 0; j < K; j++) {
        if (!s.side[j].dora) continue; /* uniform over the grid */
        double s_dyy = 0.0, s_dy = 0.0;
        if (o < out)
            for (int64_t p = threadIdx.y; p < n_parts; p += COLSUM_FINISH_SLICES) {
                s_dyy += partial[((int64_t)(2 * j) * n_parts + p) * out + o];
                s_dy += partial[((int64_t)(2 * j + 1) * n_parts + p) * out + o];
            }
        __syncthreads();
        slice[0][threadIdx.y][threadIdx.x] = s_dyy;
        slice[1][threadIdx.y][threadIdx.x] = s_dy;
        __syncthreads();
        if (threadIdx.y == 0 && o < out) {
            s_dyy = s_dy = 0.0;
            for (int y = 0; y < COLSUM_FINISH_SLICES; y++) {
                s_dyy += slice[0][y][threadIdx.x];
                s_dy += slice[1][y][threadIdx.x];
            }
            dora_zsum_update(s.side[j], o, s_dyy, s_dy);
        }
    }
}

/* How pass 1 cuts (N,out) (the header comment says why). */
typedef struct colsum_plan {
    int bx, by;            /* block: chunk columns (32, 64, 128) x runs, bx by = COLSUM_THREADS */
    int64_t col_blocks;    /* grid x: bx-chunk column blocks */
    int64_t n_parts;       /* grid y: parts of rows, 1..65535 */
    int64_t rows_per_part; /* rows of every part but the last, which may have fewer */
    int64_t run;           /* rows of a thread's fp32 sums: rows_per_part / by, rounded up */
} colsum_plan;

/* The cut for (N, out) rows and columns (both > 0) with K sides: a function
** of these alone, so the sums' shape is too. */
static inline colsum_plan colsum_plan_of(int64_t N, int64_t out, int K) {
    int64_t chunks = cuda_chunks(out);
    int64_t want_threads = (int64_t)COLSUM_SM_WAVES * COLSUM_THREADS * colsum_blocks_per_sm(K);
    int64_t run = COLSUM_MAX_RUN;
    while (run > COLSUM_MIN_RUN && chunks * ((N + run - 1) / run) < want_threads) run /= 2;
    int bx = COLSUM_MAX_BX;
    while (bx > 32 && (bx / 2 >= chunks || COLSUM_THREADS / bx * run < COLSUM_PART_ROWS)) bx /= 2;
    colsum_plan p;
    p.bx = bx, p.by = COLSUM_THREADS / bx;
    p.col_blocks = (chunks + bx - 1) / bx;
    int64_t part_rows = p.by * run;
    p.n_parts = (N + part_rows - 1) / part_rows;
    if (p.n_parts > 65535) p.n_parts = 65535;
    p.rows_per_part = (N + p.n_parts - 1) / p.n_parts;
    p.n_parts = (N + p.rows_per_part - 1) / p.rows_per_part;
    p.run = (p.rows_per_part + p.by - 1) / p.by;
    return p;
}

/* Runs both passes over (N,out) on be's stream (the cut: colsum_plan_of).
** DORAC_E_NOMEM when the partials cannot be allocated. */
template <int K, class Producer>
static int dora_colsum_launch(dorac_backend *be, const Producer &produce, const dora_sides<K> &s,
                              int64_t N, int64_t out, const char *op) {
    if (N == 0 || out == 0) return DORAC_OK; /* zsum += 0 */
    colsum_plan p = colsum_plan_of(N, out, K);
    bool any_dora = false, bf16 = true;
    for (int j = 0; j < K; j++) any_dora = any_dora || s.side[j].dora;
    for (int a = 0; a < Producer::N_IN; a++) bf16 = bf16 && produce.in[a].type == DORAC_DTYPE_BF16;

    cudaStream_t stream = cuda_stream(be);
    float *partial = NULL;
    if (p.n_parts > 1 && any_dora) {
        partial = (float *)be->alloc(be, 2 * (size_t)K * (size_t)p.n_parts * (size_t)out * sizeof(float));
        if (!partial) return DORAC_E_NOMEM;
    }
    dim3 grid((unsigned)p.col_blocks, (unsigned)p.n_parts), block((unsigned)p.bx, (unsigned)p.by);
    if (bf16)
        dora_colsum_partial_kernel<K, Producer, true>
            <<<grid, block, 0, stream>>>(produce, s, partial, N, out, p.rows_per_part, p.run, p.n_parts);
    else
        dora_colsum_partial_kernel<K, Producer, false>
            <<<grid, block, 0, stream>>>(produce, s, partial, N, out, p.rows_per_part, p.run, p.n_parts);
    if (partial) {
        dim3 fblock(COLSUM_FINISH_COLS, COLSUM_FINISH_SLICES);
        dora_colsum_finish_kernel<K><<<cuda_blocks(out, COLSUM_FINISH_COLS), fblock, 0, stream>>>(s, partial, out,
                                                                                                 p.n_parts);
        be->free(be, partial); /* stream-ordered: after the kernels finish */
    }
    return cuda_launch_status(op);
}

#endif
