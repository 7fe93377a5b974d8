/* cpu64_ops_attention.c — the fp64 copy of cpu_ops_attention.c (see cpu_impl.h). */
#define CPU_BACKEND_F64 1
#include "cpu_ops_attention.c"
