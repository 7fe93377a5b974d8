/*
** dtype.h — element types and conversions between them.
**
** bf16 and f16 are stored as uint16_t bit patterns. Conversions to f32 are
** exact. Conversions from f32 round to nearest even, keep NaN a NaN and
** overflow to Inf, as PyTorch does.
*/
#ifndef DORAC_CORE_DTYPE_H
#define DORAC_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum dorac_dtype {
    DORAC_DTYPE_F32 = 0,
    DORAC_DTYPE_F64 = 1,
    DORAC_DTYPE_BF16 = 2,
    DORAC_DTYPE_F16 = 3,
    DORAC_DTYPE_I32 = 4, /* token ids and positions, never arithmetic */
    DORAC_DTYPE_COUNT
} dorac_dtype;

/* Bytes per element (0 for an invalid value). */
size_t dorac_dtype_size(dorac_dtype t);

/* "F32", "F64", "BF16", "F16", "I32" as safetensors spells them; "?" if invalid. */
const char *dorac_dtype_name(dorac_dtype t);

float dorac_bf16_to_f32(uint16_t h);
uint16_t dorac_f32_to_bf16(float f);
float dorac_f16_to_f32(uint16_t h);
uint16_t dorac_f32_to_f16(float f);

/* Converts n elements between any two dtypes; src and dst must not overlap. */
void dorac_convert(void *dst, dorac_dtype dst_type, const void *src, dorac_dtype src_type,
                   size_t n);

#endif
