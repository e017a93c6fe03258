# Shared declarations of miniff's compiled core: the family codes and compiled-in limits (the only
# definition of them: ``config.pyx`` exports them to Python as FAMILY_CODES and LIMITS) and the small
# inline helpers used by more than one extension module. Everything here is inline or compile-time, so
# cimporting this file creates no runtime dependency between the modules.

from libc.math cimport exp, cos, sin, pow, M_PI
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memset

# Family codes of the compiled reductions (read by miniff/potentials/backends.py through FAMILY_CODES).
cdef enum:
    RED_PAIR_HARMONIC = 0
    RED_PAIR_LJ = 1
    RED_PAIR_SW2 = 2
    RED_FC_BEHLER2 = 10
    RED_FC_SIGMOID = 11
    RED_TRIPLE_SW3 = 20
    RED_TRIPLE_BEHLER5X = 21
    RED_BATCH_BEHLER5 = 30
    RED_BATCH_BEHLER4 = 31

# Limits compiled into the kernels (fixed-size per-atom scratch; exported as LIMITS).
cdef enum:
    RED_MAX_GROUP = 64     # descriptors per batched call (and distinct eta, (l, zeta) of angular batches)
    RED_MOM_E = 4          # distinct eta per moment-kernel call (angular.pyx)
    RED_MOM_Z = 8          # largest integer zeta of the moment kernel
    LSP_MAX_RADIAL = 16    # distinct (r0, sigma) per LSP call (lsp.pyx)
    LSP_MAX_ORDER = 8      # largest Legendre order of the LSP


cdef extern from *:
    """
    /* exp(x) for x below this is < 1e-304: such radial factors are taken as 0 (no denormal slow paths) */
    #define MINIFF_RED_EXP_FLOOR (-700.0)
    #include <stdint.h>
    #include <string.h>

    /* exp(x) without a library call, so that loops calling it vectorise (SIMD): x = k ln2 + t with
       k = round(x / ln2) (the 1.5 * 2^52 shift trick) and |t| <= ln2 / 2, exp(t) by its Taylor series to
       t^13 (truncation < 5e-18 relative), 2^k assembled in the exponent bits. Agrees with libm's exp to a few
       units in the last place; x < MINIFF_RED_EXP_FLOOR gives 0 (as the kernels' floor), x > 709 is clamped. */
    static inline double miniff_exp(double x) {
        const double shift = 6755399441055744.0;
        double xc = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
        double kd = xc * 1.4426950408889634 + shift;
        uint64_t ki, sb;
        double t, p, s;
        memcpy(&ki, &kd, 8);
        kd -= shift;
        t = (xc - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10;
        {   /* Estrin's scheme: a short dependency chain (the loops are latency bound otherwise) */
            double t2 = t * t, t4 = t2 * t2, t8 = t4 * t4;
            double a0 = 1.0 + t, a1 = 0.5 + t * (1.0 / 6.0), a2 = 1.0 / 24.0 + t * (1.0 / 120.0);
            double a3 = 1.0 / 720.0 + t * (1.0 / 5040.0), a4 = 1.0 / 40320.0 + t * (1.0 / 362880.0);
            double a5 = 1.0 / 3628800.0 + t * (1.0 / 39916800.0), a6 = 1.0 / 479001600.0 + t * (1.0 / 6227020800.0);
            double b0 = a0 + t2 * a1, b1 = a2 + t2 * a3, b2 = a4 + t2 * a5;
            p = (b0 + t4 * b1) + t8 * (b2 + t4 * a6);
        }
        sb = (ki + 1023u) << 52;
        memcpy(&s, &sb, 8);
        return x < MINIFF_RED_EXP_FLOOR ? 0.0 : p * s;
    }

    /* The cosine cutoff f_c(r) = (1 + cos(pi r / a)) / 2 = cos^2(h), h = pi r / (2 a) in [0, pi / 2) for
       0 <= r < a, and f_c'(r) = -(pi / a) sin(h) cos(h), from the Taylor series of cos and sin to h^20 and h^21
       (truncation < 2e-17): no library call, no cancellation of 1 + cos near the cutoff. */
    static inline void miniff_cosine_cutoff(double r, double a, double* fc, double* dfc) {
        const double w = 1.5707963267948966 / a;
        double h = w * r;
        double h2 = h * h;
        double c, s;
        {   /* Estrin's scheme in x = h^2 (short dependency chains) */
            double x = h2, x2 = x * x, x4 = x2 * x2, x8 = x4 * x4;
            double c0 = 1.0 - 0.5 * x, c1 = 1.0 / 24.0 - x * (1.0 / 720.0);
            double c2 = 1.0 / 40320.0 - x * (1.0 / 3628800.0), c3 = 1.0 / 479001600.0 - x * (1.0 / 87178291200.0);
            double c4 = 1.0 / 20922789888000.0 - x * (1.0 / 6402373705728000.0);
            double c5 = 1.0 / 2432902008176640000.0;
            double s0 = 1.0 - x * (1.0 / 6.0), s1 = 1.0 / 120.0 - x * (1.0 / 5040.0);
            double s2 = 1.0 / 362880.0 - x * (1.0 / 39916800.0), s3 = 1.0 / 6227020800.0 - x * (1.0 / 1307674368000.0);
            double s4 = 1.0 / 355687428096000.0 - x * (1.0 / 121645100408832000.0);
            double s5 = 1.0 / 51090942171709440000.0;
            c = ((c0 + x2 * c1) + x4 * (c2 + x2 * c3)) + x8 * (c4 + x2 * c5);
            s = h * (((s0 + x2 * s1) + x4 * (s2 + x2 * s3)) + x8 * (s4 + x2 * s5));
        }
        *fc = c * c;
        *dfc = -2.0 * w * s * c;
    }
    """
    const double RED_EXP_FLOOR "MINIFF_RED_EXP_FLOOR"
    double _vexp "miniff_exp"(double x) noexcept nogil
    void _vcosine_cutoff "miniff_cosine_cutoff"(double r, double a, double* fc, double* dfc) noexcept nogil


# ---------------------------------------------------------------------------------------------
# Species selection and cutoffs
# ---------------------------------------------------------------------------------------------

cdef inline bint _match(int32_t s, int want) noexcept nogil:
    return want < 0 or s == want


cdef inline int32_t _nb_spec(const int32_t* spec_n, int32_t j, Py_ssize_t n) noexcept nogil:
    """Species code of neighbour ``j``, or -2 (matches no species) when ``j`` is outside [0, n)."""
    if j < 0 or j >= n:
        return -2
    return spec_n[j]


cdef inline bint _pair_weights(const double[:, ::1] weight_cs, const int32_t[::1] spec_n, int32_t j,
                               Py_ssize_t n, double* w) noexcept nogil:
    """Weights ``w[c] = weight_cs[c, spec_n[j]]`` of neighbour ``j`` in every weight table ("channel") c (0 for an
    index or code out of range); False when they are all 0. Used by the element-weighted and Chebyshev kernels."""
    cdef Py_ssize_t c
    cdef bint any = False
    cdef int32_t s = _nb_spec(&spec_n[0], j, n)
    for c in range(weight_cs.shape[0]):
        if s < 0 or s >= weight_cs.shape[1]:
            w[c] = 0.0
        else:
            w[c] = weight_cs[c, s]
        if w[c] != 0.0:
            any = True
    return any


cdef inline void _cosine_cutoff(double r, double a, double* fc, double* dfc) noexcept nogil:
    """f_c(r) = (1 + cos(pi r / a)) / 2 and its derivative (r < a assumed), without a library call
    (``miniff_cosine_cutoff`` above: vectorisable, accurate to rounding, also close to the cutoff)."""
    _vcosine_cutoff(r, a, fc, dfc)


cdef inline bint _weighted_pair(Py_ssize_t p, double a, const double[:, ::1] weight_cs, const int32_t[::1] spec_n,
                                const int32_t[::1] j_p, const double[::1] d_p, Py_ssize_t n, double* wc, double* fc,
                                double* dfc) noexcept nogil:
    """The set-up of pair ``p`` shared by every loop of the weighted and Chebyshev kernels (radial and angular):
    False when it is unusable (``d_p >= a`` or every weight 0); else the weights of the neighbour's species in
    every weight table into ``wc`` and the cosine cutoff and its derivative into ``fc``, ``dfc``."""
    cdef double r = d_p[p]
    if r >= a:
        return False
    if not _pair_weights(weight_cs, spec_n, j_p[p], n, wc):
        return False
    _cosine_cutoff(r, a, fc, dfc)
    return True


cdef inline bint _weighted_pair_setup(Py_ssize_t p, double a, const double[:, ::1] weight_cs,
                                     const int32_t[::1] spec_n, const int32_t[::1] j_p, const double[::1] d_p,
                                     const double[:, ::1] D_pc, Py_ssize_t n, double[:, ::1] u_pc,
                                     double[:, ::1] w_pc, double* fc, double* dfc) noexcept nogil:
    """:func:`_weighted_pair` for the triplet loops (``weighted`` and ``chebyshev`` angular kernels): the weights
    into ``w_pc[p]`` and the unit vector into ``u_pc[p]``."""
    cdef Py_ssize_t ch, m
    cdef double r = d_p[p]
    cdef double wc[RED_MAX_GROUP]
    if not _weighted_pair(p, a, weight_cs, spec_n, j_p, d_p, n, wc, fc, dfc):
        return False
    for ch in range(weight_cs.shape[0]):
        w_pc[p, ch] = wc[ch]
    for m in range(3):
        u_pc[p, m] = D_pc[p, m] / r
    return True


# ---------------------------------------------------------------------------------------------
# Small math
# ---------------------------------------------------------------------------------------------

cdef inline void _angular(double base, double l, double zeta, int izeta, double* v, double* dv) noexcept nogil:
    """(base)^zeta and its derivative by cos (base = 1 + l cos): the angular term of Behler types 4/5 and of
    the weighted angular family. ``izeta`` = zeta when it is an integer in [0, 64], else -1 (then pow())."""
    cdef int m
    cdef double pw
    if izeta == 1:
        v[0] = base
        dv[0] = l
    elif izeta == 2:
        v[0] = base * base
        dv[0] = 2.0 * l * base
    elif izeta == 4:
        pw = base * base * base
        v[0] = pw * base
        dv[0] = 4.0 * l * pw
    elif izeta >= 1:
        pw = 1.0
        for m in range(izeta - 1):
            pw = pw * base
        v[0] = pw * base
        dv[0] = izeta * l * pw
    elif izeta == 0:
        v[0] = 1.0
        dv[0] = 0.0
    elif base > 0.0:
        pw = pow(base, zeta - 1.0)
        v[0] = pw * base
        dv[0] = zeta * l * pw
    else:
        v[0] = 0.0
        dv[0] = 0.0



cdef inline double _ipow(double x, int n) noexcept nogil:
    """x ** n for an integer n >= 0 (n <= 4 unrolled, else repeated squaring)."""
    cdef double r = 1.0
    if n <= 4:
        if n == 0:
            return 1.0
        if n == 1:
            return x
        r = x * x
        if n == 2:
            return r
        if n == 3:
            return r * x
        return r * r
    while n > 0:
        if n & 1:
            r = r * x
        x = x * x
        n = n >> 1
    return r


cdef inline Py_ssize_t _nl_align(Py_ssize_t x) noexcept nogil:
    """x rounded up to a multiple of 64 (bytes)."""
    return (x + 63) & ~(<Py_ssize_t> 63)


# ---------------------------------------------------------------------------------------------
# Stillinger-Weber 2 pair term (pair.pyx, and fused with SW3 in triple.pyx)
# ---------------------------------------------------------------------------------------------

cdef struct SW2Const:
    double eps_a      # epsilon * gauge_a, eV
    double sigma      # Å
    double isig       # 1 / sigma, 1/Å
    double a          # reduced cutoff
    double b          # gauge_b
    double p          # exponents
    double q
    int ip            # p, q as integers >= 0, or -1 (then pow() is used)
    int iq


cdef inline SW2Const _sw2_const(const double* par) noexcept nogil:
    """SW2 constants from par = (epsilon, sigma, a, p, q, gauge_a, gauge_b, int p or -1, int q or -1)."""
    cdef SW2Const k
    k.eps_a = par[0] * par[5]
    k.sigma = par[1]
    k.isig = 1.0 / par[1]
    k.a = par[2]
    k.b = par[6]
    k.p = par[3]
    k.q = par[4]
    k.ip = <int>par[7]
    k.iq = <int>par[8]
    return k


cdef inline double _sw2_term(const SW2Const* k, double r, double ir, double ixa, double* g) noexcept nogil:
    """SW2 pair energy eps A (B x^-p - x^-q) exp(1 / (x - a)), x = r / sigma < a (eV), and g = (dE/dr) / r.

    ``ir`` = 1 / r; ``ixa`` = 1 / (x - a), or 0 to compute it here.
    """
    cdef double ex, xi, bp, xq, t
    if ixa == 0.0:
        ixa = 1.0 / (r * k.isig - k.a)
    if ixa < RED_EXP_FLOOR:  # at the cutoff the term and its derivative vanish
        g[0] = 0.0
        return 0.0
    ex = exp(ixa)
    xi = k.sigma * ir
    if k.ip >= 0:
        bp = k.b * _ipow(xi, k.ip)
    else:
        bp = k.b * pow(xi, k.p)
    if k.iq >= 0:
        xq = _ipow(xi, k.iq)
    else:
        xq = pow(xi, k.q)
    t = bp - xq
    # (dE/dr) / r = eps A e ((q x^-q - p B x^-p) / x - t / (x - a)^2) / sigma^2 / x
    g[0] = k.eps_a * ex * ((k.q * xq - k.p * bp) * xi - t * ixa * ixa) * k.isig * ir
    return k.eps_a * t * ex


# ---------------------------------------------------------------------------------------------
# Plain pair families (harmonic, Lennard-Jones, SW2) as f(r) and f'(r) / r: the one definition, used by the
# per-atom gather of pair.pyx and by the fused search + pair pass of pairsearch.pyx
# ---------------------------------------------------------------------------------------------

cdef struct PairConst:
    int fam           # RED_PAIR_HARMONIC, RED_PAIR_LJ or RED_PAIR_SW2
    double c0         # harmonic: epsilon / a^2; LJ: 4 epsilon
    double c1         # harmonic: a; LJ: sigma^2
    SW2Const k2       # SW2 only


cdef inline PairConst _pair_const(int fam, const double* par) noexcept nogil:
    """Constants of a pair family from its parameters: harmonic (a, epsilon); LJ (epsilon, sigma); SW2 as
    ``_sw2_const``."""
    cdef PairConst k
    memset(&k, 0, sizeof(PairConst))  # every field defined (only SW2 reads k2)
    k.fam = fam
    if fam == RED_PAIR_SW2:
        k.k2 = _sw2_const(par)
    elif fam == RED_PAIR_LJ:
        k.c0 = 4.0 * par[0]
        k.c1 = par[1] * par[1]
    else:
        k.c0 = par[1] / (par[0] * par[0])
        k.c1 = par[0]
    return k


cdef inline double _pair_term(const PairConst* k, double r, double ir, double* g) noexcept nogil:
    """Pair energy f(r) (eV) and g = f'(r) / r (eV/Å²) at distance r (Å), ir = 1 / r.

    Harmonic: f = eps (r - a)^2 / (2 a^2); LJ: f = 4 eps ((sigma / r)^12 - (sigma / r)^6); SW2: ``_sw2_term``.
    """
    cdef double s2, s6, t
    if k.fam == RED_PAIR_SW2:
        return _sw2_term(&k.k2, r, ir, 0.0, g)
    if k.fam == RED_PAIR_LJ:
        s2 = k.c1 * ir * ir
        s6 = s2 * s2 * s2
        g[0] = k.c0 * (6.0 * s6 - 12.0 * s6 * s6) * ir * ir
        return k.c0 * (s6 * s6 - s6)
    t = r - k.c1
    g[0] = k.c0 * t * ir
    return 0.5 * k.c0 * t * t


# ---------------------------------------------------------------------------------------------
# Per-atom sums of a pair term (gathered from the atom's own row of a full list): pair.pyx's per-atom gather
# and pairsearch.pyx's fused pass add pairs with ``_sums_add`` and write with ``_sums_store``
# ---------------------------------------------------------------------------------------------

cdef struct PairSums:
    double e          # energy of the atom, eV
    double gx         # sum of g D over its pairs (minus dE/dr_i), eV/Å
    double gy
    double gz
    double vxx        # its virial sum g D (x) D over the pairs it owns, eV
    double vyy
    double vzz
    double vxy
    double vxz
    double vyz


cdef inline void _sums_add(PairSums* a, int wt, double f, double g, double dx, double dy, double dz,
                           bint virial) noexcept nogil:
    """Add pair (f = energy, g = f'(r) / r, D = (dx, dy, dz)) with weight bits ``wt``: 1 = the pair is the
    atom's own term (energy and virial), 2 = the reverse pair's term (the neighbour's energy depends on it
    too); both bits set double the gradient."""
    if wt & 1:
        a.e = a.e + f
        if virial:
            a.vxx = a.vxx + g * dx * dx
            a.vyy = a.vyy + g * dy * dy
            a.vzz = a.vzz + g * dz * dz
            a.vxy = a.vxy + g * dx * dy
            a.vxz = a.vxz + g * dx * dz
            a.vyz = a.vyz + g * dy * dz
    if wt == 3:
        g = g + g
    a.gx = a.gx + g * dx
    a.gy = a.gy + g * dy
    a.gz = a.gz + g * dz


cdef inline void _sums_store(const PairSums* a, Py_ssize_t i, double* energy_n, double* grad_nc,
                             double* vir_n9) noexcept nogil:
    """energy_n[i] += e; grad_nc[i] -= (gx, gy, gz) and vir_n9[i] += the symmetric virial (each when not NULL)."""
    energy_n[i] += a.e
    if grad_nc != NULL:
        grad_nc[3 * i] -= a.gx
        grad_nc[3 * i + 1] -= a.gy
        grad_nc[3 * i + 2] -= a.gz
    if vir_n9 != NULL:
        vir_n9[9 * i] += a.vxx
        vir_n9[9 * i + 1] += a.vxy
        vir_n9[9 * i + 2] += a.vxz
        vir_n9[9 * i + 3] += a.vxy
        vir_n9[9 * i + 4] += a.vyy
        vir_n9[9 * i + 5] += a.vyz
        vir_n9[9 * i + 6] += a.vxz
        vir_n9[9 * i + 7] += a.vyz
        vir_n9[9 * i + 8] += a.vzz
