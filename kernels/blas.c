// OpenBLAS thread control for the CPU backend.
//
// Debian's OpenBLAS (pthread build) splits a large GEMM over its own threads, and the bits
// of the result depend on how many it uses. The CPU backend promises the same bits for any
// thread count, so OpenBLAS runs on one thread (in the calling thread, which is safe from
// several threads at once) and the ops get their parallelism from OpenMP over partitions
// that do not depend on the thread count.
#include "cpu.h"

#include <cblas.h>

// Called at the entry of every CPU twin that calls BLAS, not once: anything else in the
// process (a library, a test) may have raised OpenBLAS's thread count since the last call.
// Both calls cost about 10 ns; the count is only written when it is wrong.
void tmix_cpu_blas_init(void)
{
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
}
