/* cpu64_ops_decode.c — the fp64 copy of cpu_ops_decode.c (see cpu_impl.h). */
#define CPU_BACKEND_F64 1
#include "cpu_ops_decode.c"
