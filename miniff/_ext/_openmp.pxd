# The only file of miniff that touches OpenMP. Kernels cimport from here, so the
# same source compiles with and without OpenMP (then every call is a serial stand-in).
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define MINIFF_OPENMP_ENABLED 1
    #else
    #define MINIFF_OPENMP_ENABLED 0
    static int omp_get_max_threads(void) { return 1; }
    static int omp_get_thread_num(void) { return 0; }
    static int omp_get_num_threads(void) { return 1; }
    #endif
    """
    int MINIFF_OPENMP_ENABLED
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
