# Argument checks of the element-weighted reductions (their arguments, the scratch buffers of the triplet loops),
# implemented in weighted.pyx and shared with chebyshev.pyx (a cross-module C call: chebyshev imports
# miniff._ext.weighted at load time and takes these functions from its C API).

from libc.stdint cimport int32_t, int64_t

cdef int _check_common(const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                       const double[:, ::1] D_pc, const int32_t[::1] spec_n, const int32_t[::1] cols,
                       const int32_t[::1] c_f, const double[:, ::1] weight_cs, double[:, ::1] values_nf,
                       double[:, ::1] jac_pf3, bint grad, int n_threads) except -1

cdef int _check_pair_scratch(Py_ssize_t n_pairs, const double[:, ::1] u_pc, const double[:, ::1] w_pc,
                             const int64_t[::1] sel_p, Py_ssize_t n_tables) except -1
