/*
** dtype.c — element type sizes, names and conversions (see dtype.h).
*/
#include "core/dtype.h"

#include <string.h>

size_t dorac_dtype_size(dorac_dtype t) {
    switch (t) {
    case DORAC_DTYPE_F32: return 4;
    case DORAC_DTYPE_F64: return 8;
    case DORAC_DTYPE_BF16: return 2;
    case DORAC_DTYPE_F16: return 2;
    case DORAC_DTYPE_I32: return 4;
    default: return 0;
    }
}

const char *dorac_dtype_name(dorac_dtype t) {
    switch (t) {
    case DORAC_DTYPE_F32: return "F32";
    case DORAC_DTYPE_F64: return "F64";
    case DORAC_DTYPE_BF16: return "BF16";
    case DORAC_DTYPE_F16: return "F16";
    case DORAC_DTYPE_I32: return "I32";
    default: return "?";
    }
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float dorac_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t dorac_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float dorac_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13)); /* Inf/NaN */
    if (exp == 0) {
        if (mant == 0) return bits_f32(sign);
        /* subnormal: mant * 2^-24 */
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t dorac_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t au = u & 0x7fffffffu;
    if (au > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);     /* NaN */
    if (au >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);    /* overflow to Inf */
    if (au < 0x38800000u) {                                      /* subnormal or zero */
        /* value = au as float; f16 subnormal unit is 2^-24 */
        float a = bits_f32(au) * 16777216.0f;                    /* in units of 2^-24 */
        /* round half to even */
        float fl = (float)(uint32_t)a;
        float rem = a - fl;
        uint32_t q = (uint32_t)fl;
        if (rem > 0.5f || (rem == 0.5f && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t mant_round = au + 0xfffu + ((au >> 13) & 1u);
    return (uint16_t)(sign | ((mant_round - 0x38000000u) >> 13));
}

static double load_as_f64(const void *src, dorac_dtype t, size_t i) {
    switch (t) {
    case DORAC_DTYPE_F32: return ((const float *)src)[i];
    case DORAC_DTYPE_F64: return ((const double *)src)[i];
    case DORAC_DTYPE_BF16: return dorac_bf16_to_f32(((const uint16_t *)src)[i]);
    case DORAC_DTYPE_F16: return dorac_f16_to_f32(((const uint16_t *)src)[i]);
    case DORAC_DTYPE_I32: return ((const int32_t *)src)[i];
    default: return 0.0;
    }
}

static void store_from_f64(void *dst, dorac_dtype t, size_t i, double v) {
    switch (t) {
    case DORAC_DTYPE_F32: ((float *)dst)[i] = (float)v; break;
    case DORAC_DTYPE_F64: ((double *)dst)[i] = v; break;
    case DORAC_DTYPE_BF16: ((uint16_t *)dst)[i] = dorac_f32_to_bf16((float)v); break;
    case DORAC_DTYPE_F16: ((uint16_t *)dst)[i] = dorac_f32_to_f16((float)v); break;
    case DORAC_DTYPE_I32: ((int32_t *)dst)[i] = (int32_t)v; break;
    default: break;
    }
}

void dorac_convert(void *dst, dorac_dtype dst_type, const void *src, dorac_dtype src_type,
                   size_t n) {
    if (dst_type == src_type) {
        memcpy(dst, src, n * dorac_dtype_size(src_type));
        return;
    }
    if (dst_type == DORAC_DTYPE_F32 && src_type == DORAC_DTYPE_BF16) {
        const uint16_t *s = src;
        float *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = dorac_bf16_to_f32(s[i]);
        return;
    }
    /* f32 -> f64 -> target is exact for every pair used here except
    ** f64 -> bf16/f16, which rounds twice (f64->f32->16-bit); that pair is
    ** only used for test fixtures. */
    for (size_t i = 0; i < n; i++) store_from_f64(dst, dst_type, i, load_as_f64(src, src_type, i));
}
