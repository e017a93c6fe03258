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
    typedef void (*miniff_phase_fn)(void* ctx, int tid, int n_threads);
    /* Phase a on every thread, then, once every thread has finished it, phase b: ONE parallel region of
       n_threads threads (sleeping threads are woken once, not once per phase). Each phase gets the thread's
       number and the team's size. Without OpenMP, or with one thread: a then b on the calling thread. */
    static inline void miniff_two_phases(miniff_phase_fn a, miniff_phase_fn b, void* ctx, int n_threads) {
    #ifdef _OPENMP
        if (n_threads > 1) {
            #pragma omp parallel num_threads(n_threads)
            {
                int nt = omp_get_num_threads(), tid = omp_get_thread_num();
                a(ctx, tid, nt);
                #pragma omp barrier
                b(ctx, tid, nt);
            }
            return;
        }
    #endif
        a(ctx, 0, 1);
        b(ctx, 0, 1);
    }
    """
    ctypedef void (*miniff_phase_fn)(void* ctx, int tid, int n_threads) noexcept nogil
    int MINIFF_OPENMP_ENABLED
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
    void miniff_two_phases(miniff_phase_fn a, miniff_phase_fn b, void* ctx, int n_threads) noexcept nogil
