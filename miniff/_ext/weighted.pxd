# Argument checks of the element-weighted reductions, implemented in weighted.pyx and shared with chebyshev.pyx
# (a cross-module C call: chebyshev imports miniff._ext.weighted at load time and takes this function from its
# C API).

from libc.stdint cimport int32_t, int64_t

cdef int _check_common(const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                       const double[:, ::1] D_pc, const int32_t[::1] spec_n, const int32_t[::1] cols,
                       const int32_t[::1] c_f, const double[:, ::1] weight_cs, double[:, ::1] values_nf,
                       double[:, ::1] jac_pf3, bint grad, int n_threads) except -1
