/*
** cuda_concat_weight.cu — the weight of a LoRA/DoRA linear's forward as one
** GEMM (backend.h's concat_weight, dorac_linear_forward_wide):
**
**     Wc (out,K) = [diag(g) W | s diag(g) B | 0 | bias]
**
** so that y = [x | u | 0 | 1] Wc^T is g ⊙ (x W^T + s u B^T) + bias: the
** adapter's up-projection and DoRA's scale ride in the frozen GEMM's inner
** dimension instead of a pass over y (N,out) of their own.
**
** A copy with a per-row scale: bandwidth bound, about 2 bytes read and 2
** written per weight (BF16). A thread owns one chunk of 8 columns of one
** row of Wc (cuda_chunk.cuh): chunks inside W's columns move as 16-byte
** vectors where the rows are aligned; the few chunks that straddle W's end,
** B's columns, the zeros and the bias are built element by element. Each
** output is g * w (or s * g * b) formed in fp32 and rounded once, so the
** result does not depend on alignment and repeats from run to run.
*/
#include "backend/cuda/cuda_chunk.cuh"

enum { THREADS = 256 };

/* Grid cuda_chunk_grid(out, K, THREADS); y strides the rows beyond 65535. */
static __global__ void concat_weight_kernel(cuda_view Wc, cuda_view W, cuda_view B, cuda_view g, bool has_g,
                                            cuda_view bias, bool has_bias, float s, int64_t out, int64_t in,
                                            int64_t r, int64_t K) {
    const int64_t c = (int64_t)blockIdx.x * THREADS + threadIdx.x, c0 = c * CUDA_CHUNK;
    if (c0 >= K) return;
    for (int64_t o = blockIdx.y; o < out; o += gridDim.y) {
        const float go = has_g ? ld_at(g, 0, o) : 1.0f;
        float z[CUDA_CHUNK];
        if (c0 + CUDA_CHUNK <= in) {
            ld_chunk(z, W, o, c0, in, row_aligned16(W, o), 0.0f);
#pragma unroll
            for (int k = 0; k < CUDA_CHUNK; k++) z[k] *= go;
        } else {
#pragma unroll
            for (int k = 0; k < CUDA_CHUNK; k++) {
                const int64_t j = c0 + k;
                float v = 0.0f;
                if (j < in) v = go * ld_at(W, o, j);
                else if (j < in + r) v = s * go * ld_at(B, o, j - in);
                else if (j == K - 1 && has_bias) v = ld_at(bias, 0, o);
                z[k] = v;
            }
        }
        st_chunk(Wc, o, c0, K, row_aligned16(Wc, o), z);
    }
}

extern "C" int CUDA_OP(concat_weight)(dorac_backend *be, const dorac_tensor *Wc, const dorac_tensor *W,
                                      const dorac_tensor *B, const dorac_tensor *g, double s,
                                      const dorac_tensor *bias) {
    /* dorac_concat_weight checked the sizes; here the types this backend takes */
    DORAC_TRY(cuda_check_float(Wc, "concat_weight", "Wc"));
    DORAC_TRY(cuda_check_float(W, "concat_weight", "W"));
    DORAC_TRY(cuda_check_float(B, "concat_weight", "B"));
    const int64_t out = W->rows, in = W->cols, r = B->cols, K = Wc->cols;
    DORAC_TRY(cuda_check_optional_vector(g, out, "concat_weight", "g"));
    DORAC_TRY(cuda_check_optional_vector(bias, out, "concat_weight", "bias"));
    if (out == 0) return DORAC_OK;
    const bool has_g = g && g->data, has_bias = bias && bias->data;
    const cuda_view none = {NULL, 0, 0};
    concat_weight_kernel<<<cuda_chunk_grid(out, K, THREADS), THREADS, 0, cuda_stream(be)>>>(
        cuda_view_of(Wc), cuda_view_of(W), cuda_view_of(B), has_g ? cuda_view_of(g) : none, has_g,
        has_bias ? cuda_view_of(bias) : none, has_bias, (float)s, out, in, r, K);
    return cuda_launch_status("concat_weight");
}
