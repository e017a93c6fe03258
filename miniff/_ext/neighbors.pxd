# Declarations of the cell-list neighbour search, implemented in neighbors.pyx and shared with pairsearch.pyx
# (the fused search + pair-potential pass): the distance tests (C, inline), the grid and per-thread structs
# and the C functions that set up a grid, resolve and gather the candidates of a bin and free the grid (a
# cross-module C call: pairsearch imports miniff._ext.neighbors at load time and takes them from its C API).

from libc.stdint cimport int64_t, int32_t, uint64_t

cdef extern from *:
    """
    /* Distance tests over a gathered candidate list (miniff neighbour search). Every path evaluates
       r2 = (dx*dx + dy*dy) + dz*dz and r2 < rc2 per candidate with the same IEEE operations (no fused
       multiply-add), so that the count pass and the fill pass take identical decisions: two candidates
       at a time with SSE2 (every x86-64 CPU), else scalar. */
    #include <stdint.h>
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    #define MINIFF_NL_SSE2 1
    #endif
    #if defined(__GNUC__) || defined(__clang__)
    #define MINIFF_RESTRICT __restrict__
    #elif defined(_MSC_VER)
    #define MINIFF_RESTRICT __restrict
    #else
    #define MINIFF_RESTRICT
    #endif

    static inline int64_t miniff_nl_count_tail(const double* cx, const double* cy, const double* cz, int64_t c,
                                        int64_t nc, double xi, double yi, double zi, double rc2) {
        int64_t k = 0;
    #ifdef MINIFF_NL_SSE2
        __m128d X = _mm_set1_pd(xi), Y = _mm_set1_pd(yi), Z = _mm_set1_pd(zi), R = _mm_set1_pd(rc2);
        for (; c + 2 <= nc; c += 2) {
            __m128d dx = _mm_sub_pd(_mm_loadu_pd(cx + c), X);
            __m128d dy = _mm_sub_pd(_mm_loadu_pd(cy + c), Y);
            __m128d dz = _mm_sub_pd(_mm_loadu_pd(cz + c), Z);
            __m128d r2 = _mm_add_pd(_mm_add_pd(_mm_mul_pd(dx, dx), _mm_mul_pd(dy, dy)), _mm_mul_pd(dz, dz));
            int m = _mm_movemask_pd(_mm_cmplt_pd(r2, R));
            k += (m & 1) + (m >> 1);
        }
    #endif
        for (; c < nc; c++) {
            double dx = cx[c] - xi, dy = cy[c] - yi, dz = cz[c] - zi;
            double r2 = dx * dx + dy * dy;
            r2 = r2 + dz * dz;
            k += r2 < rc2;
        }
        return k;
    }

    static inline int64_t miniff_nl_select_tail(const double* cx, const double* cy, const double* cz, int64_t c,
                                         int64_t nc, double xi, double yi, double zi, double rc2, int32_t* hits,
                                         int64_t nh) {
    #ifdef MINIFF_NL_SSE2
        __m128d X = _mm_set1_pd(xi), Y = _mm_set1_pd(yi), Z = _mm_set1_pd(zi), R = _mm_set1_pd(rc2);
        for (; c + 2 <= nc; c += 2) {
            __m128d dx = _mm_sub_pd(_mm_loadu_pd(cx + c), X);
            __m128d dy = _mm_sub_pd(_mm_loadu_pd(cy + c), Y);
            __m128d dz = _mm_sub_pd(_mm_loadu_pd(cz + c), Z);
            __m128d r2 = _mm_add_pd(_mm_add_pd(_mm_mul_pd(dx, dx), _mm_mul_pd(dy, dy)), _mm_mul_pd(dz, dz));
            int m = _mm_movemask_pd(_mm_cmplt_pd(r2, R));
            hits[nh] = (int32_t) c;
            nh += m & 1;
            hits[nh] = (int32_t) (c + 1);
            nh += m >> 1;
        }
    #endif
        for (; c < nc; c++) {
            double dx = cx[c] - xi, dy = cy[c] - yi, dz = cz[c] - zi;
            double r2 = dx * dx + dy * dy;
            r2 = r2 + dz * dz;
            hits[nh] = (int32_t) c;
            nh += r2 < rc2;
        }
        return nh;
    }

    /* c[k] = p[k] + v for k < n, three coordinates (restrict: lets the compiler vectorise the copy). */
    static inline void miniff_nl_gather(const double* MINIFF_RESTRICT px, const double* MINIFF_RESTRICT py,
                                 const double* MINIFF_RESTRICT pz, int64_t n, double vx, double vy, double vz,
                                 double* MINIFF_RESTRICT cx, double* MINIFF_RESTRICT cy,
                                 double* MINIFF_RESTRICT cz) {
        int64_t k;
        for (k = 0; k < n; k++) {
            cx[k] = px[k] + vx;
            cy[k] = py[k] + vy;
            cz[k] = pz[k] + vz;
        }
    }

    /* Number of candidates closer than the cutoff to (xi, yi, zi). */
    static inline int64_t miniff_nl_count(const double* cx, const double* cy, const double* cz, int64_t nc,
                                   double xi, double yi, double zi, double rc2) {
        return miniff_nl_count_tail(cx, cy, cz, 0, nc, xi, yi, zi, rc2);
    }

    /* Indices (ascending) of the candidates closer than the cutoff -> hits (capacity nc + 1); returns
       their number. */
    static inline int64_t miniff_nl_select(const double* cx, const double* cy, const double* cz, int64_t nc,
                                    double xi, double yi, double zi, double rc2, int32_t* hits) {
        return miniff_nl_select_tail(cx, cy, cz, 0, nc, xi, yi, zi, rc2, hits, 0);
    }
    """
    int64_t miniff_nl_count(const double* cx, const double* cy, const double* cz, int64_t nc, double xi,
                            double yi, double zi, double rc2) noexcept nogil
    int64_t miniff_nl_select(const double* cx, const double* cy, const double* cz, int64_t nc, double xi,
                             double yi, double zi, double rc2, int32_t* hits) noexcept nogil
    void miniff_nl_gather(const double* px, const double* py, const double* pz, int64_t n, double vx, double vy,
                          double vz, double* cx, double* cy, double* cz) noexcept nogil


cdef struct _NLThr:
    # pieces of the current bin: atoms [t0, t1) seen with image shift q (Cartesian qv)
    int64_t* pc_t0
    int64_t* pc_t1
    int* pc_q            # [max_pieces, 3]
    double* pc_v         # [max_pieces, 3]
    int* pc_zero         # [max_pieces] q == 0
    int64_t* pc_c0       # [max_pieces + 1] first candidate of every piece
    int n_pieces
    # candidates of the current bin, gathered from its pieces: shifted positions, atom, piece
    double* cx
    double* cy
    double* cz
    int64_t n_c
    int64_t self_off     # candidate index of atom s of the bin is s + self_off (when has_self)
    int has_self
    # hits of the current atom: candidate indices (capacity = candidates + 1)
    int32_t* hits
    uint64_t* keys       # sort keys j << 32 | hit index
    uint64_t* keys2
    int32_t* hit_t       # per hit: neighbour position in bin order, piece
    int32_t* hit_p
    int64_t cap
    int failed           # 1: out of memory, 2: count and fill passes disagree (cannot happen)


cdef struct _NLGrid:
    int nb0
    int nb1
    int nb2
    int periodic0
    int periodic1
    int periodic2
    int n_cols
    int* col             # [n_cols, 4]: k0, k1, lo, hi
    int64_t* col_dlo     # [n_cols] flat delta of (k0, k1, lo) for interior bins
    int64_t* col_dhi     # [n_cols] flat delta of (k0, k1, hi)
    int m0               # interior margins: max |k0|, max |k1|, -min lo, max hi
    int m1
    int m2lo
    int m2hi
    int limited
    int lim0
    int lim1
    int lim2
    int sort_rows
    double rc2
    double* vec          # [3, 3] cell rows
    int64_t* bin_start   # [n_bins + 1]
    double* px           # [N] wrapped Cartesian positions in bin order (x, y, z arrays)
    double* py
    double* pz
    int exact_count      # count pass uses the fill scan (fallback: guaranteed identical decisions)
    int32_t* sorted_index  # [N] original index of the atoms in bin order
    int32_t* sorted_shift  # [N, 3] wrap offsets o in bin order
    int64_t* row_count   # [N] pairs of atom i (count pass)
    int64_t* indptr      # [N + 1] (fill pass)
    int32_t* j_out
    int32_t* s_out
    double* d_out
    double* dist_out
    _NLThr* thr          # [n_threads]


cdef int _nl_pieces(_NLGrid* g, _NLThr* th, int64_t flat, int64_t* n_cand) noexcept nogil
cdef void _nl_gather(_NLThr* th, _NLGrid* g, int n_pieces, int64_t s_begin, int64_t s_end) noexcept nogil
cdef int _nl_reserve(_NLThr* th, int64_t need) noexcept nogil
cdef void _nl_free(_NLGrid* g, int n_threads) noexcept
cdef tuple _nl_setup(_NLGrid* g, const double[:, ::1] frac, const double[:, ::1] xyz, const int32_t[:, ::1] shift,
                     const double[:, ::1] vectors, const int[::1] n_bins, const int[::1] periodic,
                     const double[::1] frac_min, const double[::1] bin_width, const int[:, ::1] offsets,
                     const int[::1] image_limit, double cutoff, int n_threads, unsigned char[::1] work)
cdef int _check_half_stencil(const int[:, ::1] offsets, str caller) except -1
