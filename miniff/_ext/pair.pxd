# Argument checks of the pair reductions, implemented in pair.pyx and shared with triple.pyx (a cross-module
# C call: triple imports miniff._ext.pair at load time and takes these functions from its C API).

from libc.stdint cimport int32_t, int64_t

cdef int _check_indptr(const int64_t[::1] indptr, Py_ssize_t n_pairs, int n_threads) except -1

cdef int _check_reduce_args(int fam, const double[::1] par, const int64_t[::1] indptr, const int32_t[::1] j_p,
                            const double[::1] d_p, const double[:, ::1] D_pc, const int32_t[::1] spec_n,
                            double[::1] energy_n, double[:, ::1] grad_pc, bint grad, int n_threads=*,
                            bint check_rows=*) except -1
