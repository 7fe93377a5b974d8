/*
** cuda_rope.cu — rotary position embeddings on the GPU, in place (contract
** in backend.h, shared code in cuda_impl.cuh; the CPU twin is in
** cpu_ops_model.c).
**
** Size letters: N rows (B*T), H heads, D head dimension.
**
** HF's rotate_half layout: in each head the pair (x[j], x[j + D/2]) turns by
** the angle of row pos[i] of the cos/sin tables, column j. One thread owns
** one pair, so the in-place update needs no synchronisation; inverse turns
** the other way, which is also the backward. Math is fp32, as on the CPU.
*/
#include "backend/cuda/cuda_impl.cuh"

#define ROPE_THREADS 256
#define GRID_Y_MAX 65535 /* CUDA's limit on gridDim.y */

/* x (N, H*D) in place; pos (N) already range-checked; cos_t, sin_t
** (max_pos, D/2). sign is -1 for the inverse. Grid: x over the H*D/2 pairs
** of a row, y over rows (strided). */
static __global__ void rope_kernel(cuda_view x, const int32_t *pos, cuda_view cos_t,
                                   cuda_view sin_t, int64_t N, int64_t n_pairs, int64_t half_dim,
                                   float sign) {
    int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs) return;
    int64_t h = p / half_dim, j = p % half_dim;
    int64_t c0 = h * 2 * half_dim + j, c1 = c0 + half_dim;
    for (int64_t i = blockIdx.y; i < N; i += gridDim.y) {
        int64_t row = pos[i];
        float a = ld_at(x, i, c0), b = ld_at(x, i, c1);
        float c = ld_at(cos_t, row, j), s = sign * ld_at(sin_t, row, j);
        st_at(x, i, c0, a * c - b * s);
        st_at(x, i, c1, b * c + a * s);
    }
}

int CUDA_OP(rope)(dorac_backend *be, const dorac_tensor *x, const dorac_tensor *pos,
                  const dorac_tensor *cos_t, const dorac_tensor *sin_t, int64_t n_heads,
                  int64_t head_dim, bool inverse) {
    const char *op = "rope";
    DORAC_TRY(cuda_check_float(x, op, "x"));
    if (head_dim <= 0 || head_dim % 2 || n_heads <= 0 || x->cols != n_heads * head_dim)
        return dorac_error(DORAC_E_INVALID,
                           "rope: x has %lld columns, expected %lld heads x %lld (even)",
                           (long long)x->cols, (long long)n_heads, (long long)head_dim);
    int64_t half_dim = head_dim / 2, N = x->rows;
    DORAC_TRY(cuda_check_shape(cos_t, cos_t->rows, half_dim, op, "cos"));
    DORAC_TRY(cuda_check_shape(sin_t, cos_t->rows, half_dim, op, "sin"));
    DORAC_TRY(cuda_check_index(be, pos, N, cos_t->rows, op, "positions"));
    if (N == 0) return DORAC_OK;
    int64_t n_pairs = n_heads * half_dim;
    dim3 grid(cuda_blocks(n_pairs, ROPE_THREADS), (unsigned)(N < GRID_Y_MAX ? N : GRID_Y_MAX));
    rope_kernel<<<grid, ROPE_THREADS, 0, cuda_stream(be)>>>(
        cuda_view_of(x), (const int32_t *)pos->data, cuda_view_of(cos_t), cuda_view_of(sin_t), N,
        n_pairs, half_dim, inverse ? -1.0f : 1.0f);
    return cuda_launch_status(op);
}
