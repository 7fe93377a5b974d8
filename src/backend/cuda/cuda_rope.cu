/*
** cuda_rope.cu — rotary position embeddings on the GPU, in place (rope) or
** into another tensor (rope_copy) (contracts in backend.h, shared code in
** cuda_impl.cuh; the CPU twin is in cpu_ops_model.c).
**
** Size letters: N rows (B*T), H heads, D head dimension.
**
** HF's rotate_half layout: in each head the pair (x[j], x[j + D/2]) turns by
** the angle of row pos[i] of the cos/sin tables, column j. A thread owns its
** pairs outright, so in place needs no synchronisation; inverse turns the
** other way, which is also the backward. Math is fp32, as on the CPU, with
** the same expressions in both kernels.
**
** Two kernels:
**   rope_octets_kernel  BF16 x and out whose rows can be read 16 bytes at a
**     time, D/2 a multiple of 8: a thread turns 8 pairs (j..j+7 and their
**     partners) with two 16-byte loads and stores and 8-float loads of the
**     tables. The one-pair-a-thread kernel moved 2 bytes a load and ran at
**     about 2.1 TB/s on an H200 (rope_kernel, 64 launches 2.05 ms a
**     Llama-1B step, plus a D2D copy of q and k before each forward turn).
**   rope_pairs_kernel   everything else: one pair a thread, any float type.
*/
#include "backend/cuda/cuda_impl.cuh"

typedef __nv_bfloat16 bf16;

#define ROPE_THREADS 256
#define GRID_Y_MAX 65535 /* CUDA's limit on gridDim.y */

/* out (N, H*D) <- rope(x); pos (N) already range-checked; cos_t, sin_t
** (max_pos, D/2). sign is -1 for the inverse. Grid: x over the H*D/2 pairs
** of a row, y over rows (strided). */
static __global__ void rope_pairs_kernel(cuda_view out, cuda_view x, const int32_t *pos, cuda_view cos_t,
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
        st_at(out, i, c0, a * c - b * s);
        st_at(out, i, c1, b * c + a * s);
    }
}

/* The same for BF16 rows read 16 bytes at a time: thread t of a row turns
** pairs j = 8 (t % (D/16)) .. + 7 of head t / (D/16). cos_t, sin_t F32
** rows of stride ld_cs (a multiple of 4 floats: 16-byte loads). Grid: x
** over (row, octet) items, strided. */
static __global__ void rope_octets_kernel(bf16 *out, int64_t ld_out, const bf16 *x, int64_t ld_x,
                                          const int32_t *pos, const float *cos_t, const float *sin_t,
                                          int64_t ld_cs, int64_t N, int64_t octets_per_row,
                                          int64_t octets_per_head, int64_t half_dim, float sign) {
    for (int64_t item = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; item < N * octets_per_row;
         item += (int64_t)gridDim.x * blockDim.x) {
    int64_t i = item / octets_per_row, t = item % octets_per_row;
    int64_t h = t / octets_per_head, j = 8 * (t % octets_per_head);
    int64_t c0 = h * 2 * half_dim + j, c1 = c0 + half_dim;
    int64_t row = pos[i];
    uint4 va = *(const uint4 *)(x + i * ld_x + c0), vb = *(const uint4 *)(x + i * ld_x + c1);
    float4 cl = *(const float4 *)(cos_t + row * ld_cs + j), ch = *(const float4 *)(cos_t + row * ld_cs + j + 4);
    float4 sl = *(const float4 *)(sin_t + row * ld_cs + j), sh = *(const float4 *)(sin_t + row * ld_cs + j + 4);
    float cs[8] = {cl.x, cl.y, cl.z, cl.w, ch.x, ch.y, ch.z, ch.w};
    float sn[8] = {sl.x, sl.y, sl.z, sl.w, sh.x, sh.y, sh.z, sh.w};
    const bf16 *a8 = (const bf16 *)&va, *b8 = (const bf16 *)&vb;
    uint4 ra, rb;
    bf16 *ra8 = (bf16 *)&ra, *rb8 = (bf16 *)&rb;
#pragma unroll
    for (int e = 0; e < 8; e++) {
        float a = __bfloat162float(a8[e]), b = __bfloat162float(b8[e]);
        float c = cs[e], s = sign * sn[e];
        ra8[e] = __float2bfloat16(a * c - b * s);
        rb8[e] = __float2bfloat16(b * c + a * s);
    }
    *(uint4 *)(out + i * ld_out + c0) = ra;
    *(uint4 *)(out + i * ld_out + c1) = rb;
    }
}

int CUDA_OP(rope_copy)(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *x,
                       const dorac_tensor *pos, const dorac_tensor *cos_t, const dorac_tensor *sin_t,
                       int64_t n_heads, int64_t head_dim, bool inverse) {
    const char *op = out->data == x->data ? "rope" : "rope_copy";
    DORAC_TRY(cuda_check_float(x, op, "x"));
    if (head_dim <= 0 || head_dim % 2 || n_heads <= 0 || x->cols != n_heads * head_dim)
        return dorac_error(DORAC_E_INVALID,
                           "%s: x has %lld columns, expected %lld heads x %lld (even)", op,
                           (long long)x->cols, (long long)n_heads, (long long)head_dim);
    DORAC_TRY(cuda_check_shape(out, x->rows, x->cols, op, "out"));
    if (out->data == x->data && out->ld != x->ld)
        return dorac_error(DORAC_E_INVALID, "%s: out is x with another row stride", op);
    int64_t half_dim = head_dim / 2, N = x->rows;
    DORAC_TRY(cuda_check_shape(cos_t, cos_t->rows, half_dim, op, "cos"));
    DORAC_TRY(cuda_check_shape(sin_t, cos_t->rows, half_dim, op, "sin"));
    DORAC_TRY(cuda_check_index(be, pos, N, cos_t->rows, op, "positions"));
    if (N == 0) return DORAC_OK;
    float sign = inverse ? -1.0f : 1.0f;
    const int32_t *p = (const int32_t *)pos->data;
    if (cuda_bf16_rows16(x) && cuda_bf16_rows16(out) && half_dim % 8 == 0 && cos_t->type == DORAC_DTYPE_F32 &&
        sin_t->type == DORAC_DTYPE_F32 && cos_t->ld == sin_t->ld && cos_t->ld % 4 == 0 &&
        (uintptr_t)cos_t->data % 16 == 0 && (uintptr_t)sin_t->data % 16 == 0) {
        int64_t per_head = half_dim / 8, per_row = n_heads * per_head;
        rope_octets_kernel<<<cuda_blocks(N * per_row, ROPE_THREADS), ROPE_THREADS, 0, cuda_stream(be)>>>(
            (bf16 *)out->data, out->ld, (const bf16 *)x->data, x->ld, p, (const float *)cos_t->data,
            (const float *)sin_t->data, cos_t->ld, N, per_row, per_head, half_dim, sign);
        return cuda_launch_status(op);
    }
    int64_t n_pairs = n_heads * half_dim;
    dim3 grid(cuda_blocks(n_pairs, ROPE_THREADS), (unsigned)(N < GRID_Y_MAX ? N : GRID_Y_MAX));
    rope_pairs_kernel<<<grid, ROPE_THREADS, 0, cuda_stream(be)>>>(
        cuda_view_of(out), cuda_view_of(x), p, cuda_view_of(cos_t), cuda_view_of(sin_t), N, n_pairs, half_dim,
        sign);
    return cuda_launch_status(op);
}

int CUDA_OP(rope)(dorac_backend *be, const dorac_tensor *x, const dorac_tensor *pos,
                  const dorac_tensor *cos_t, const dorac_tensor *sin_t, int64_t n_heads,
                  int64_t head_dim, bool inverse) {
    return CUDA_OP(rope_copy)(be, x, x, pos, cos_t, sin_t, n_heads, head_dim, inverse);
}
