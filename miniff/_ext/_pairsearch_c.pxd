# C helpers of the fused search + pair-potential pass (pairsearch.pyx): the distance test selecting the hits
# of a centre among a bin's candidates (four at a time: SSE2 on every x86-64 CPU, AVX2 where the CPU has it,
# chosen at run time; scalar elsewhere), and the Lennard-Jones pairs of a centre, two at a time with SSE2
# or four with AVX2 (bit-identical: the same operations per pair, no FMA, pairs added in order).
# Inline C only: cimporting this file creates no runtime dependency.

from libc.stdint cimport int64_t, int32_t

cdef extern from *:
    """
    #include <stdint.h>
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    #define MINIFF_PS_SSE2 1
    #endif

    /* Indices (ascending) of the candidates c0 <= c < nc closer than the cutoff -> hits; returns their number.
       The distance test is miniff_nl_select's (same IEEE operations); four candidates at a time, every index
       written at its place among the hits so far (a rejected one is overwritten by the next or lies past the end),
       so that the count advances once per four candidates. hits holds nc + 1 entries. */
    static const unsigned char miniff_ps_before[16][4] = {
        {0, 0, 0, 0}, {0, 1, 1, 1}, {0, 0, 1, 1}, {0, 1, 2, 2}, {0, 0, 0, 1}, {0, 1, 1, 2}, {0, 0, 1, 2},
        {0, 1, 2, 3}, {0, 0, 0, 0}, {0, 1, 1, 1}, {0, 0, 1, 1}, {0, 1, 2, 2}, {0, 0, 0, 1}, {0, 1, 1, 2},
        {0, 0, 1, 2}, {0, 1, 2, 3}};
    static const unsigned char miniff_ps_count[16] = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};

    /* the scalar test of the candidates c0 <= c < nc, appended to hits[nh..]; returns the new count */
    static inline int64_t miniff_ps_select_tail(const double* cx, const double* cy, const double* cz, int64_t c,
                                                int64_t nc, double xi, double yi, double zi, double rc2, int32_t* hits,
                                                int64_t nh) {
        for (; c < nc; c++) {
            double dx = cx[c] - xi, dy = cy[c] - yi, dz = cz[c] - zi;
            double r2 = dx * dx + dy * dy;
            r2 = r2 + dz * dz;
            hits[nh] = (int32_t) c;
            nh += r2 < rc2;
        }
        return nh;
    }

    #if defined(MINIFF_PS_SSE2) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
    #include <immintrin.h>
    #define MINIFF_PS_AVX2 1
    /* AVX2 build of the test (four candidates in one register; no FMA: the same IEEE operations), chosen at run time
       on CPUs that have it */
    __attribute__((target("avx2")))
    static int64_t miniff_ps_select_avx2(const double* cx, const double* cy, const double* cz, int64_t c, int64_t nc,
                                         double xi, double yi, double zi, double rc2, int32_t* hits) {
        int64_t nh = 0;
        __m256d X = _mm256_set1_pd(xi), Y = _mm256_set1_pd(yi), Z = _mm256_set1_pd(zi), R = _mm256_set1_pd(rc2);
        for (; c + 4 <= nc; c += 4) {
            __m256d dx = _mm256_sub_pd(_mm256_loadu_pd(cx + c), X);
            __m256d dy = _mm256_sub_pd(_mm256_loadu_pd(cy + c), Y);
            __m256d dz = _mm256_sub_pd(_mm256_loadu_pd(cz + c), Z);
            __m256d r2 = _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(dx, dx), _mm256_mul_pd(dy, dy)),
                                       _mm256_mul_pd(dz, dz));
            int m = _mm256_movemask_pd(_mm256_cmp_pd(r2, R, _CMP_LT_OQ));
            const unsigned char* pos = miniff_ps_before[m];
            hits[nh] = (int32_t) c;
            hits[nh + pos[1]] = (int32_t) (c + 1);
            hits[nh + pos[2]] = (int32_t) (c + 2);
            hits[nh + pos[3]] = (int32_t) (c + 3);
            nh += miniff_ps_count[m];
        }
        return miniff_ps_select_tail(cx, cy, cz, c, nc, xi, yi, zi, rc2, hits, nh);
    }
    static int miniff_ps_has_avx2 = -1;
    #endif

    /* Indices (ascending) of the candidates c0 <= c < nc closer than the cutoff -> hits; returns their number.
       The distance test is miniff_nl_select's (same IEEE operations); four candidates at a time, every index
       written at its place among the hits so far (a rejected one is overwritten by the next or lies past the end),
       so that the count advances once per four candidates. hits holds nc + 1 entries. */
    static inline int64_t miniff_ps_select(const double* cx, const double* cy, const double* cz, int64_t c,
                                           int64_t nc, double xi, double yi, double zi, double rc2, int32_t* hits) {
        int64_t nh = 0;
    #ifdef MINIFF_PS_AVX2
        if (miniff_ps_has_avx2 < 0) miniff_ps_has_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;  /* idempotent */
        if (miniff_ps_has_avx2) return miniff_ps_select_avx2(cx, cy, cz, c, nc, xi, yi, zi, rc2, hits);
    #endif
    #ifdef MINIFF_PS_SSE2
        __m128d X = _mm_set1_pd(xi), Y = _mm_set1_pd(yi), Z = _mm_set1_pd(zi), R = _mm_set1_pd(rc2);
        for (; c + 4 <= nc; c += 4) {
            __m128d dx = _mm_sub_pd(_mm_loadu_pd(cx + c), X);
            __m128d dy = _mm_sub_pd(_mm_loadu_pd(cy + c), Y);
            __m128d dz = _mm_sub_pd(_mm_loadu_pd(cz + c), Z);
            __m128d r2 = _mm_add_pd(_mm_add_pd(_mm_mul_pd(dx, dx), _mm_mul_pd(dy, dy)), _mm_mul_pd(dz, dz));
            __m128d ex = _mm_sub_pd(_mm_loadu_pd(cx + c + 2), X);
            __m128d ey = _mm_sub_pd(_mm_loadu_pd(cy + c + 2), Y);
            __m128d ez = _mm_sub_pd(_mm_loadu_pd(cz + c + 2), Z);
            __m128d s2 = _mm_add_pd(_mm_add_pd(_mm_mul_pd(ex, ex), _mm_mul_pd(ey, ey)), _mm_mul_pd(ez, ez));
            int m = _mm_movemask_pd(_mm_cmplt_pd(r2, R)) | (_mm_movemask_pd(_mm_cmplt_pd(s2, R)) << 2);
            const unsigned char* pos = miniff_ps_before[m];
            hits[nh] = (int32_t) c;
            hits[nh + pos[1]] = (int32_t) (c + 1);
            hits[nh + pos[2]] = (int32_t) (c + 2);
            hits[nh + pos[3]] = (int32_t) (c + 3);
            nh += miniff_ps_count[m];
        }
    #endif
        return miniff_ps_select_tail(cx, cy, cz, c, nc, xi, yi, zi, rc2, hits, nh);
    }

    /* One Lennard-Jones pair met from the centre i (see miniff_ps_lj_atom): D = (dx, dy, dz), f and g = f'(r) / r
       already known; adds the centre's part to acc and the neighbour's to bt. */
    static inline void miniff_ps_lj_add(double f, double g, double dx, double dy, double dz, double gmul, int own,
                                        int other, int virial, double* acc, double* bt) {
        double gw = g * gmul;
        acc[1] += gw * dx;
        acc[2] += gw * dy;
        acc[3] += gw * dz;
        bt[1] += gw * dx;
        bt[2] += gw * dy;
        bt[3] += gw * dz;
        if (own) acc[0] += f;
        if (other) bt[0] += f;
        if (virial) {
            double vxx = g * dx * dx, vyy = g * dy * dy, vzz = g * dz * dz;
            double vxy = g * dx * dy, vxz = g * dx * dz, vyz = g * dy * dz;
            if (own) {
                acc[4] += vxx; acc[5] += vyy; acc[6] += vzz; acc[7] += vxy; acc[8] += vxz; acc[9] += vyz;
            }
            if (other) {
                bt[4] += vxx; bt[5] += vyy; bt[6] += vzz; bt[7] += vxy; bt[8] += vxz; bt[9] += vyz;
            }
        }
    }

    /* Lennard-Jones f = c0 (s^12 - s^6), g = f'(r) / r = c0 (6 s^6 - 12 s^12) / r^2 (s^2 = c1 / r^2) of the hits
       hits[0..nh) (candidate indices into cx, cy, cz) of the centre (xi, yi, zi), each pair counted once: the
       centre's sums go to acc[0..stride) (energy when own, sum of g gmul D, virial g D (x) D when own and virial)
       and the neighbour's to b[stride * ct[c] ..] (g gmul D, energy and virial when other). Pairs with
       r^2 <= r2c are skipped, the first one's candidate index in *coincident (left alone when none); pairs with
       r^2 >= cut2 are skipped. Two pairs at a time with SSE2 (the same IEEE operations per pair as the scalar
       loop, so each pair's f and g do not depend on the path). */
    static inline void miniff_ps_lj_atom_sse2(const double* cx, const double* cy, const double* cz,
                                              const int32_t* hits, int64_t nh, const int32_t* ct, double xi, double yi,
                                              double zi, double c0, double c1, double cut2, double r2c, double gmul,
                                              int own, int other, int virial, double* b, int stride, double* acc,
                                              int64_t* coincident) {
        int64_t a = 0;
    #ifdef MINIFF_PS_SSE2
        __m128d X = _mm_set1_pd(xi), Y = _mm_set1_pd(yi), Z = _mm_set1_pd(zi);
        __m128d CUT2 = _mm_set1_pd(cut2), R2C = _mm_set1_pd(r2c), C0 = _mm_set1_pd(c0), C1 = _mm_set1_pd(c1);
        __m128d ONE = _mm_set1_pd(1.0), SIX = _mm_set1_pd(6.0), TWELVE = _mm_set1_pd(12.0);
        for (; a + 2 <= nh; a += 2) {
            int32_t p = hits[a], q = hits[a + 1];
            __m128d dx = _mm_sub_pd(_mm_set_pd(cx[q], cx[p]), X);
            __m128d dy = _mm_sub_pd(_mm_set_pd(cy[q], cy[p]), Y);
            __m128d dz = _mm_sub_pd(_mm_set_pd(cz[q], cz[p]), Z);
            __m128d r2 = _mm_add_pd(_mm_add_pd(_mm_mul_pd(dx, dx), _mm_mul_pd(dy, dy)), _mm_mul_pd(dz, dz));
            if (_mm_movemask_pd(_mm_or_pd(_mm_cmple_pd(r2, R2C), _mm_cmpge_pd(r2, CUT2)))) {
                break;  /* a coincident pair or one beyond the term's cutoff: the scalar loop takes over */
            }
            __m128d ir2 = _mm_div_pd(ONE, r2);
            __m128d s6 = _mm_mul_pd(C1, ir2);
            s6 = _mm_mul_pd(_mm_mul_pd(s6, s6), s6);
            __m128d g = _mm_mul_pd(_mm_mul_pd(C0, _mm_sub_pd(_mm_mul_pd(SIX, s6), _mm_mul_pd(_mm_mul_pd(TWELVE, s6), s6))),
                                   ir2);
            __m128d f = _mm_mul_pd(C0, _mm_sub_pd(_mm_mul_pd(s6, s6), s6));
            double fv[2], gv[2], xv[2], yv[2], zv[2];
            _mm_storeu_pd(fv, f);
            _mm_storeu_pd(gv, g);
            _mm_storeu_pd(xv, dx);
            _mm_storeu_pd(yv, dy);
            _mm_storeu_pd(zv, dz);
            miniff_ps_lj_add(fv[0], gv[0], xv[0], yv[0], zv[0], gmul, own, other, virial, acc, b + (int64_t) stride * ct[p]);
            miniff_ps_lj_add(fv[1], gv[1], xv[1], yv[1], zv[1], gmul, own, other, virial, acc, b + (int64_t) stride * ct[q]);
        }
    #endif
        for (; a < nh; a++) {
            int32_t p = hits[a];
            double dx = cx[p] - xi, dy = cy[p] - yi, dz = cz[p] - zi;
            double r2 = dx * dx + dy * dy;
            r2 = r2 + dz * dz;
            if (r2 <= r2c) {
                if (*coincident < 0) *coincident = p;
                continue;
            }
            if (r2 >= cut2) continue;
            double ir2 = 1.0 / r2, s6 = c1 * ir2;
            s6 = s6 * s6 * s6;
            double g = c0 * (6.0 * s6 - 12.0 * s6 * s6) * ir2;
            double f = c0 * (s6 * s6 - s6);
            miniff_ps_lj_add(f, g, dx, dy, dz, gmul, own, other, virial, acc, b + (int64_t) stride * ct[p]);
        }
    }

    #ifdef MINIFF_PS_AVX2
    /* AVX2 build of the pairs (four at a time, the same IEEE operations per pair, no FMA); the last pairs, and every
       pair from a coincident one or one beyond the cutoff on, by miniff_ps_lj_atom_sse2 */
    __attribute__((target("avx2")))
    static void miniff_ps_lj_atom_avx2(const double* cx, const double* cy, const double* cz, const int32_t* hits,
                                       int64_t nh, const int32_t* ct, double xi, double yi, double zi, double c0,
                                       double c1, double cut2, double r2c, double gmul, int own, int other, int virial,
                                       double* b, int stride, double* acc, int64_t* coincident) {
        int64_t a = 0;
        int k;
        __m256d X = _mm256_set1_pd(xi), Y = _mm256_set1_pd(yi), Z = _mm256_set1_pd(zi);
        __m256d CUT2 = _mm256_set1_pd(cut2), R2C = _mm256_set1_pd(r2c), C0 = _mm256_set1_pd(c0);
        __m256d C1 = _mm256_set1_pd(c1), ONE = _mm256_set1_pd(1.0), SIX = _mm256_set1_pd(6.0);
        __m256d TWELVE = _mm256_set1_pd(12.0);
        for (; a + 4 <= nh; a += 4) {
            const int32_t* h = hits + a;
            __m256d dx = _mm256_sub_pd(_mm256_set_pd(cx[h[3]], cx[h[2]], cx[h[1]], cx[h[0]]), X);
            __m256d dy = _mm256_sub_pd(_mm256_set_pd(cy[h[3]], cy[h[2]], cy[h[1]], cy[h[0]]), Y);
            __m256d dz = _mm256_sub_pd(_mm256_set_pd(cz[h[3]], cz[h[2]], cz[h[1]], cz[h[0]]), Z);
            __m256d r2 = _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(dx, dx), _mm256_mul_pd(dy, dy)),
                                       _mm256_mul_pd(dz, dz));
            if (_mm256_movemask_pd(_mm256_or_pd(_mm256_cmp_pd(r2, R2C, _CMP_LE_OQ), _mm256_cmp_pd(r2, CUT2, _CMP_GE_OQ)))) {
                break;
            }
            __m256d ir2 = _mm256_div_pd(ONE, r2);
            __m256d s6 = _mm256_mul_pd(C1, ir2);
            s6 = _mm256_mul_pd(_mm256_mul_pd(s6, s6), s6);
            __m256d g = _mm256_mul_pd(_mm256_mul_pd(C0, _mm256_sub_pd(_mm256_mul_pd(SIX, s6),
                                                                      _mm256_mul_pd(_mm256_mul_pd(TWELVE, s6), s6))), ir2);
            __m256d f = _mm256_mul_pd(C0, _mm256_sub_pd(_mm256_mul_pd(s6, s6), s6));
            double fv[4], gv[4], xv[4], yv[4], zv[4];
            _mm256_storeu_pd(fv, f);
            _mm256_storeu_pd(gv, g);
            _mm256_storeu_pd(xv, dx);
            _mm256_storeu_pd(yv, dy);
            _mm256_storeu_pd(zv, dz);
            for (k = 0; k < 4; k++) {
                miniff_ps_lj_add(fv[k], gv[k], xv[k], yv[k], zv[k], gmul, own, other, virial, acc,
                                 b + (int64_t) stride * ct[h[k]]);
            }
        }
        miniff_ps_lj_atom_sse2(cx, cy, cz, hits + a, nh - a, ct, xi, yi, zi, c0, c1, cut2, r2c, gmul, own, other, virial,
                               b, stride, acc, coincident);
    }
    #endif

    /* miniff_ps_lj_atom_sse2, or its AVX2 build where the CPU has it (the same results bit for bit) */
    static inline void miniff_ps_lj_atom(const double* cx, const double* cy, const double* cz, const int32_t* hits,
                                         int64_t nh, const int32_t* ct, double xi, double yi, double zi, double c0,
                                         double c1, double cut2, double r2c, double gmul, int own, int other,
                                         int virial, double* b, int stride, double* acc, int64_t* coincident) {
    #ifdef MINIFF_PS_AVX2
        if (miniff_ps_has_avx2 < 0) miniff_ps_has_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;  /* idempotent */
        if (miniff_ps_has_avx2) {
            miniff_ps_lj_atom_avx2(cx, cy, cz, hits, nh, ct, xi, yi, zi, c0, c1, cut2, r2c, gmul, own, other, virial, b,
                                   stride, acc, coincident);
            return;
        }
    #endif
        miniff_ps_lj_atom_sse2(cx, cy, cz, hits, nh, ct, xi, yi, zi, c0, c1, cut2, r2c, gmul, own, other, virial, b,
                               stride, acc, coincident);
    }
    """
    int64_t miniff_ps_select(const double* cx, const double* cy, const double* cz, int64_t c, int64_t nc, double xi,
                             double yi, double zi, double rc2, int32_t* hits) noexcept nogil
    void miniff_ps_lj_atom(const double* cx, const double* cy, const double* cz, const int32_t* hits, int64_t nh,
                           const int32_t* ct, double xi, double yi, double zi, double c0, double c1, double cut2,
                           double r2c, double gmul, int own, int other, int virial, double* b, int stride,
                           double* acc, int64_t* coincident) noexcept nogil
