/*
** cpu64_backend.c — the fp64 twin of the CPU backend ("cpu64"), the oracle
** for finite-difference tests. It is cpu_backend.c compiled with every
** element a double; see the comment at the top of that file.
*/
#define CPU_BACKEND_F64 1
#include "cpu_backend.c"
