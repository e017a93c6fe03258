# Argument checks of the pair reductions, implemented in pair.pyx and shared with triple.pyx, and the batched pair
# descriptors of one atom, shared with angular.pyx (cross-module C calls: those modules import miniff._ext.pair at
# load time and take these functions from its C API).

from libc.stdint cimport int32_t, int64_t

cdef int _check_indptr(const int64_t[::1] indptr, Py_ssize_t n_pairs, int n_threads) except -1

cdef int _check_reduce_args(int fam, const double[::1] par, const int64_t[::1] indptr, const int32_t[::1] j_p,
                            const double[::1] d_p, const double[:, ::1] D_pc, const int32_t[::1] spec_n,
                            double[::1] energy_n, double[:, ::1] grad_pc, bint grad, int n_threads=*,
                            bint check_rows=*) except -1

cdef void _batch_pair_atom(Py_ssize_t i, int fam, const double[:, ::1] par, const int32_t[::1] cols, double a,
                           const int64_t[::1] indptr, const int32_t[::1] j_p, const double[::1] d_p,
                           const double[:, ::1] D_pc, const int32_t[::1] spec_n, int sb,
                           double[:, ::1] values_nf, double[:, ::1] jac_pf3, bint grad) noexcept nogil
