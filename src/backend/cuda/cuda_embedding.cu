/*
** cuda_embedding.cu — token embeddings on the GPU: the forward gather and
** the backward scatter-add (contracts in backend.h, shared code in
** cuda_impl.cuh and cuda_chunk.cuh; the CPU twin is in cpu_ops_model.c).
**
** Size letters: N rows (B*T), C channels, V vocabulary.
**
** The backward is deterministic without float atomics, and adds no wait
** for the GPU beyond what the range check may need. The ids are sorted on
** the device, carrying their row numbers along (CUB's radix sort, which is
** stable: the rows of one id stay in increasing order). Then one thread
** per (run of equal ids, 16-byte column chunk) adds that id's rows one by
** one into registers that start from dtable's value: the very order of
** additions the CPU backend uses, whatever the launch shape, so F32
** results match it bit for bit and a BF16 dtable is rounded once.
*/
#include <cub/device/device_radix_sort.cuh>

#include "backend/cuda/cuda_chunk.cuh"

#define EMBEDDING_THREADS 256
#define EMBEDDING_BATCH 4 /* rows of a run loaded before they are added */

/* out (N,C) = table[ids] (or += table[ids]); table (V,C); ids (N) already
** range-checked. Grid: cuda_chunk_grid, a thread per 16-byte chunk. */
static __global__ void embedding_forward_kernel(cuda_view out, const int32_t *ids, cuda_view table,
                                                int64_t N, int64_t C, bool accumulate) {
    int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CUDA_CHUNK;
    if (c0 >= C) return;
    for (int64_t i = blockIdx.y; i < N; i += gridDim.y) {
        int64_t id = ids[i];
        float v[CUDA_CHUNK];
        ld_chunk(v, table, id, c0, C, row_aligned16(table, id), 0.0f);
        bool out_vec = row_aligned16(out, i);
        if (accumulate) {
            float o[CUDA_CHUNK];
            ld_chunk(o, out, i, c0, C, out_vec, 0.0f);
#pragma unroll
            for (int k = 0; k < CUDA_CHUNK; k++) v[k] += o[k];
        }
        st_chunk(out, i, c0, C, out_vec, v);
    }
}

int CUDA_OP(embedding_forward)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *ids,
                               const dorac_tensor *table, bool accumulate) {
    const char *op = "embedding_forward";
    DORAC_TRY(cuda_check_float(table, op, "table"));
    DORAC_TRY(cuda_check_shape(out, out->rows, table->cols, op, "out"));
    DORAC_TRY(cuda_check_index(be, ids, out->rows, table->rows, op, "ids"));
    int64_t N = out->rows, C = table->cols;
    if (N == 0 || C == 0) return DORAC_OK;
    embedding_forward_kernel<<<cuda_chunk_grid(N, C, EMBEDDING_THREADS), EMBEDDING_THREADS, 0,
                               cuda_stream(be)>>>(cuda_view_of(out), (const int32_t *)ids->data,
                                                  cuda_view_of(table), N, C, accumulate);
    return cuda_launch_status(op);
}

/* rows (N) = 0, 1, ..., N-1: the values the sort carries along. */
static __global__ void embedding_iota_kernel(int32_t *rows, int64_t N) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) rows[i] = (int32_t)i;
}

/* sorted_ids (N): the ids in ascending order; rows (N): the row of dout
** (N,C) each came from, increasing within a run of equal ids. The block at
** sorted position s starts a run (or exits: s is inside one) and adds the
** run's rows, in order, into dtable (V,C) at the run's id:
**   dtable[id, c] = (...(dtable[id, c] + dout[r0, c]) + dout[r1, c]) ...
** Rows are loaded EMBEDDING_BATCH at a time, so a frequent id (padding,
** say) keeps several reads in flight; the additions stay in row order.
** Grid: x over sorted positions, y over groups of chunks (strided). */
static __global__ void embedding_backward_kernel(cuda_view dtable, cuda_view dout,
                                                 const int32_t *sorted_ids, const int32_t *rows,
                                                 int64_t N, int64_t C) {
    int64_t s0 = blockIdx.x;
    int32_t id = sorted_ids[s0];
    if (s0 > 0 && sorted_ids[s0 - 1] == id) return;
    int64_t s1 = s0 + 1;
    while (s1 < N && sorted_ids[s1] == id) s1++;
    bool table_vec = row_aligned16(dtable, id);
    int64_t stride = (int64_t)gridDim.y * blockDim.x * CUDA_CHUNK;
    for (int64_t c0 = ((int64_t)blockIdx.y * blockDim.x + threadIdx.x) * CUDA_CHUNK; c0 < C;
         c0 += stride) {
        float acc[CUDA_CHUNK];
        ld_chunk(acc, dtable, id, c0, C, table_vec, 0.0f);
        int64_t s = s0;
        for (; s + EMBEDDING_BATCH <= s1; s += EMBEDDING_BATCH) {
            float g[EMBEDDING_BATCH][CUDA_CHUNK];
#pragma unroll
            for (int b = 0; b < EMBEDDING_BATCH; b++) {
                int64_t i = rows[s + b];
                ld_chunk(g[b], dout, i, c0, C, row_aligned16(dout, i), 0.0f);
            }
#pragma unroll
            for (int b = 0; b < EMBEDDING_BATCH; b++)
#pragma unroll
                for (int j = 0; j < CUDA_CHUNK; j++) acc[j] += g[b][j];
        }
        for (; s < s1; s++) {
            int64_t i = rows[s];
            float g[CUDA_CHUNK];
            ld_chunk(g, dout, i, c0, C, row_aligned16(dout, i), 0.0f);
#pragma unroll
            for (int j = 0; j < CUDA_CHUNK; j++) acc[j] += g[j];
        }
        st_chunk(dtable, id, c0, C, table_vec, acc);
    }
}

/* Bytes rounded up to 256, so each part of one scratch allocation is aligned. */
static size_t embedding_align(size_t n) { return (n + 255) / 256 * 256; }

int CUDA_OP(embedding_backward)(dorac_backend *be, const dorac_tensor *dtable,
                                const dorac_tensor *dout, const dorac_tensor *ids) {
    const char *op = "embedding_backward";
    DORAC_TRY(cuda_check_float(dtable, op, "dtable"));
    DORAC_TRY(cuda_check_shape(dout, dout->rows, dtable->cols, op, "dout"));
    DORAC_TRY(cuda_check_index(be, ids, dout->rows, dtable->rows, op, "ids"));
    int64_t N = dout->rows, C = dtable->cols, V = dtable->rows;
    if (N == 0 || C == 0) return DORAC_OK;
    if (N > INT32_MAX)
        return dorac_error(DORAC_E_INVALID, "%s: %lld rows, more than the sort takes (%d)", op,
                           (long long)N, INT32_MAX);
    cudaStream_t stream = cuda_stream(be);
    /* ids lie in [0, V): sort on their low key_bits bits only, as unsigned */
    int key_bits = 1;
    while (key_bits < 32 && ((int64_t)1 << key_bits) < V) key_bits++;
    const uint32_t *keys_in = (const uint32_t *)ids->data;
    size_t sort_bytes = 0; /* CUB's own scratch, asked for with a NULL buffer */
    cudaError_t e = cub::DeviceRadixSort::SortPairs(NULL, sort_bytes, keys_in, (uint32_t *)NULL,
                                                    (const int32_t *)NULL, (int32_t *)NULL, (int)N,
                                                    0, key_bits, stream);
    if (e != cudaSuccess) return cuda_status(e, op, "sizing the id sort");
    size_t index_bytes = embedding_align((size_t)N * sizeof(int32_t));
    char *scratch = (char *)be->alloc(be, 3 * index_bytes + sort_bytes);
    if (!scratch) return DORAC_E_NOMEM; /* alloc set the message */
    int32_t *rows_in = (int32_t *)scratch;
    uint32_t *sorted_ids = (uint32_t *)(scratch + index_bytes);
    int32_t *rows = (int32_t *)(scratch + 2 * index_bytes);
    void *sort_scratch = scratch + 3 * index_bytes;

    embedding_iota_kernel<<<cuda_blocks(N, 256), 256, 0, stream>>>(rows_in, N);
    int status = cuda_launch_status(op);
    if (status == DORAC_OK) {
        e = cub::DeviceRadixSort::SortPairs(sort_scratch, sort_bytes, keys_in, sorted_ids, rows_in,
                                            rows, (int)N, 0, key_bits, stream);
        if (e != cudaSuccess) status = cuda_status(e, op, "sorting the ids");
    }
    if (status == DORAC_OK) {
        unsigned chunk_blocks = cuda_blocks(cuda_chunks(C), EMBEDDING_THREADS);
        dim3 grid(cuda_blocks(N, 1) /* a block per sorted position */,
                  chunk_blocks < 65535 ? chunk_blocks : 65535);
        embedding_backward_kernel<<<grid, EMBEDDING_THREADS, 0, stream>>>(
            cuda_view_of(dtable), cuda_view_of(dout), (const int32_t *)sorted_ids, rows, N, C);
        status = cuda_launch_status(op);
    }
    be->free(be, scratch); /* stream-ordered: freed after the kernels ran */
    return status;
}
