/*
** cuda_dora_magnitude_backward.cu — DoRA's magnitude gradient on the GPU
** (backend.h's dora_magnitude_backward), one thread per output row o:
**   dm[o] += zsum[o] / n[o]
**   w[o]   = -zsum[o] m[o] / n[o]^3   (only when w is present)
** w is the per-row weight of the exact (non-detached) norm gradient. The
** arithmetic is double, rounded once on the store, as on the CPU.
*/
#include "backend/cuda/cuda_impl.cuh"

/* dm, w, zsum, m, n (1,out); w and m used only when has_w. */
static __global__ void dora_magnitude_backward_kernel(cuda_view dm, cuda_view w, cuda_view zsum,
                                                      cuda_view m, cuda_view n, int64_t out,
                                                      bool has_w) {
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < out;
         o += (int64_t)gridDim.x * blockDim.x) {
        double nn = ld_at(n, 0, o), zs = ld_at(zsum, 0, o);
        st_at(dm, 0, o, (float)((double)ld_at(dm, 0, o) + zs / nn));
        if (has_w) st_at(w, 0, o, (float)(-zs * (double)ld_at(m, 0, o) / (nn * nn * nn)));
    }
}

int CUDA_OP(dora_magnitude_backward)(dorac_backend *be, const dorac_tensor *dm,
                                     const dorac_tensor *w, const dorac_tensor *zsum,
                                     const dorac_tensor *m, const dorac_tensor *n) {
    const char *op = "dora_magnitude_backward";
    int64_t out = zsum->cols;
    DORAC_TRY(cuda_check_shape(zsum, 1, out, op, "zsum"));
    DORAC_TRY(cuda_check_shape(dm, 1, out, op, "dm"));
    DORAC_TRY(cuda_check_shape(n, 1, out, op, "n"));
    DORAC_TRY(cuda_check_optional_vector(w, out, op, "w"));
    bool has_w = w && w->data;
    if (has_w) DORAC_TRY(cuda_check_shape(m, 1, out, op, "m"));
    if (out == 0) return DORAC_OK;
    cuda_view none = {NULL, DORAC_DTYPE_F32, 0};
    dora_magnitude_backward_kernel<<<cuda_blocks(out, 256), 256, 0, cuda_stream(be)>>>(
        cuda_view_of(dm), has_w ? cuda_view_of(w) : none, cuda_view_of(zsum),
        has_w ? cuda_view_of(m) : none, cuda_view_of(n), out, has_w);
    return cuda_launch_status(op);
}
