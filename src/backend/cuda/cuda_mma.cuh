/*
** cuda_mma.cuh — warp-level tensor-core building blocks: ldmatrix,
** mma.sync m16n8k16 (bf16 operands, fp32 accumulation) and bf16 packing,
** shared by the attention kernels and the low-rank product (cuda_lowrank.cu).
**
** The fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16"), with
** g = lane/4 and c = lane%4; each register holds two bf16, the lower
** column (or k) in the low half:
**   A (16x16, row-major): a0 (g, 2c..2c+1)   a1 (g+8, 2c..)
**                         a2 (g, 2c+8..)     a3 (g+8, 2c+8..)
**   B (16x8, k by n):     b0 (k 2c..2c+1, n g)   b1 (k 2c+8.., n g)
**   C (16x8, fp32):       c0,c1 (g, 2c..2c+1)    c2,c3 (g+8, 2c..2c+1)
*/
#ifndef DORAC_CUDA_MMA_CUH
#define DORAC_CUDA_MMA_CUH

#include "backend/cuda/cuda_impl.cuh"

typedef __nv_bfloat16 bf16;

static __device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* Four 8x8 bf16 matrices from shared memory; lane l gives the address of
** row l%8 of matrix l/8, and register i receives matrix i. */
static __device__ __forceinline__ void ldsm_x4(uint32_t r[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

/* The same, each matrix transposed. */
static __device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

/* c (16x8 fp32) += a (16x16 bf16) b (16x8 bf16). */
static __device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
                                                uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats as a bf16 pair, lo in the low half (the lower column). */
static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

/* Lane offsets into a 16x16 tile at (0, 0) of a row-major smem tile, for the
** two ways the kernels read one:
**   the A operand, or a B operand stored n by k (rows are n):
**     ldsm_x4 at (row_a, col_a) gives a0..a3 of A
**   a B operand stored n by k, two 8-wide n tiles:
**     ldsm_x4 at (row_nk, col_nk) gives b0,b1 of n tile 0 and b0,b1 of tile 1
**   a B operand stored k by n (rows are k), two 8-wide n tiles:
**     ldsm_x4_t at (row_kn, col_kn) gives b0,b1 of n tile 0 and b0,b1 of tile 1
*/
static __device__ __forceinline__ int lane_row_a(int lane) { return (lane & 7) + ((lane >> 3) & 1) * 8; }
static __device__ __forceinline__ int lane_col_a(int lane) { return (lane >> 4) * 8; }
static __device__ __forceinline__ int lane_row_nk(int lane) { return (lane & 7) + (lane >> 4) * 8; }
static __device__ __forceinline__ int lane_col_nk(int lane) { return ((lane >> 3) & 1) * 8; }
static __device__ __forceinline__ int lane_row_kn(int lane) { return (lane & 7) + ((lane >> 3) & 1) * 8; }
static __device__ __forceinline__ int lane_col_kn(int lane) { return (lane >> 4) * 8; }

#endif
