"""Small numerical helpers (0.1.4's ``miniff.util``)."""

import itertools
import logging

import numpy as np

__all__ = [
    "positive_number",
    "num_grad",
    "central_differences",
    "cartesian",
    "lattice_up_to_radius",
    "dict_reduce",
    "masked_unique",
    "diag1",
    "default_logger",
    "rows_dot3",
]


def positive_number(name, value, unit=None, allow_none=False):
    """``value`` as a finite positive float, or a clear error naming ``name`` (the one check of this kind).

    Parameters
    ----------
    name : str
        The argument's name, for messages.
    value : object
    unit : str or None
        Unit named in messages (e.g. ``"Å"``).
    allow_none : bool
        Accept and return None.

    Raises
    ------
    TypeError
        Not a real number (booleans included).
    ValueError
        NaN, infinite, zero or negative.
    """
    if value is None and allow_none:
        return None
    what = "a positive number" + (f" ({unit})" if unit else "") + (" or None" if allow_none else "")
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}") from None
    if not (np.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be {what} (finite, > 0), got {number}")
    return number


def central_differences(f, x, eps):
    """Central finite differences ``(f(x + eps e_k) - f(x - eps e_k)) / (2 eps)`` by every entry of ``x``.

    The one finite-difference rule of miniff: :func:`num_grad` and the reference gradients of
    :mod:`miniff.numerical` (positions, strains, descriptors) are built on it.

    Parameters
    ----------
    f : callable
        ``f(point) -> number or array`` with ``point`` an array of ``x``'s shape.
    x : array-like
        The point.
    eps : float
        Step (positive, finite), in the units of ``x``.

    Returns
    -------
    ndarray, shape ``f(x).shape + x.shape``
        Evaluations happen in the order ``+eps``, ``-eps`` for ``k = 0, 1, ...`` (row-major over ``x``).

    Raises
    ------
    ValueError
        If ``eps`` is not a positive finite number.
    """
    eps = float(eps)
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite step, got {eps}")
    x = np.array(x, dtype=float)
    flat = x.reshape(-1)
    out = None
    for k in range(flat.size):
        plus, minus = flat.copy(), flat.copy()
        plus[k] += eps
        minus[k] -= eps
        fp = np.asarray(f(plus.reshape(x.shape)), dtype=float)
        fm = np.asarray(f(minus.reshape(x.shape)), dtype=float)
        if out is None:
            out = np.zeros(fp.shape + (flat.size,))
        out[..., k] = (fp - fm) / (2 * eps)
    if out is None:
        return np.zeros(np.shape(f(x)) + x.shape)
    return out.reshape(out.shape[:-1] + x.shape)


def num_grad(scalar_f, x, *args, x_name=None, eps=1e-4, **kwargs):
    """Central finite-difference derivative of ``f`` with respect to the array ``x``.

    Parameters
    ----------
    scalar_f : callable
        ``f(x, *args, **kwargs)`` (or ``f(*args, x_name=x, **kwargs)``) returning a number or array.
    x : array-like
        The point.
    x_name : str or None
        Pass ``x`` as this keyword instead of positionally (then no positional ``args`` allowed).
    eps : float
        Step.

    Returns
    -------
    ndarray, shape ``y.shape + x.shape``
    """
    if x_name is not None and args:
        raise ValueError("num_grad: positional args cannot be combined with x_name")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")

    def call(point):
        if x_name is None:
            return np.asarray(scalar_f(point, *args, **kwargs), dtype=float)
        return np.asarray(scalar_f(**{x_name: point}, **kwargs), dtype=float)

    return central_differences(call, x, eps)


def diag1(a):
    """Stack ``a`` [..., n] into diagonal matrices [..., n, n]."""
    a = np.asarray(a)
    out = np.zeros(a.shape + a.shape[-1:], dtype=a.dtype)
    idx = np.arange(a.shape[-1])
    out[..., idx, idx] = a
    return out


def masked_unique(a, return_inverse=False, fill_value=None):
    """Unique values of a masked array, ignoring masked entries (works with numpy 2).

    Parameters
    ----------
    a : array-like or numpy.ma.MaskedArray
    return_inverse : bool
        Also return the index of every entry in the unique values, with the input's shape, as a
        masked array (masked where ``a`` is masked; the data there is ``fill_value`` or 0).
    fill_value : int or None

    Returns
    -------
    ndarray, or (ndarray, MaskedArray)
    """
    a = np.ma.asarray(a)
    mask = np.ma.getmaskarray(a)
    data = np.asarray(a.data)
    valid = data[~mask]
    if not return_inverse:
        return np.unique(valid)
    unique, inverse = np.unique(valid, return_inverse=True)
    full = np.full(data.shape, 0 if fill_value is None else fill_value, dtype=np.int64)
    full[~mask] = np.asarray(inverse).reshape(-1)
    return unique, np.ma.masked_array(full, mask=mask)


def dict_reduce(dicts, op):
    """Combine dicts key by key: ``{k: op([d[k] for d in dicts if k in d])}`` (keys in first-seen order)."""
    dicts = list(dicts)
    keys = []
    for d in dicts:
        for k in d:
            if k not in keys:
                keys.append(k)
    return {k: op([d[k] for d in dicts if k in d]) for k in keys}


def cartesian(arrays):
    """Cartesian product of 1-D arrays as rows, ``[prod(len), len(arrays)]``."""
    arrays = [np.asarray(a) for a in arrays]
    if not arrays:
        return np.zeros((1, 0))
    grids = np.meshgrid(*arrays, indexing="ij")
    return np.stack([g.reshape(-1) for g in grids], axis=-1)


def lattice_up_to_radius(radius, lattice_vecs, cover=False, zero=True):
    """Lattice vectors (Cartesian) shorter than ``radius``.

    Parameters
    ----------
    radius : float
        Å (or 1/Å for reciprocal lattices).
    lattice_vecs : ndarray [3, 3]
        Basis vectors (rows).
    cover : bool
        Keep every lattice vector needed to cover a sphere of ``radius`` around any point of the
        cell, for pairs of points in the cell (all shifts ``n`` with ``|n_a| <= ceil(radius / h_a) + 1``,
        ``h_a`` the plane spacings), not only the short ones.
    zero : bool
        Keep the origin.

    Returns
    -------
    ndarray [K, 3]
    """
    vecs = np.asarray(lattice_vecs, dtype=float)
    if vecs.shape != (3, 3):
        raise ValueError(f"lattice_vecs must have shape (3, 3), got {vecs.shape}")
    radius = float(radius)
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be finite and non-negative, got {radius}")
    volume = abs(np.linalg.det(vecs))
    if volume == 0:
        raise ValueError("lattice_vecs are singular")
    h = np.array([volume / np.linalg.norm(np.cross(vecs[(a + 1) % 3], vecs[(a + 2) % 3])) for a in range(3)])
    reach = np.ceil(radius / h).astype(int) + (1 if cover else 0)
    n = np.array(list(itertools.product(*(range(-r, r + 1) for r in reach))), dtype=float)
    points = n @ vecs
    if cover:
        keep = np.ones(len(n), dtype=bool)
    else:
        keep = np.linalg.norm(points, axis=1) < radius
    if not zero:
        keep &= np.any(n != 0, axis=1)
    elif not keep[len(n) // 2]:
        keep[len(n) // 2] = True
    return points[keep]


def default_logger(name="main", fmt="[%(levelname)s] %(asctime)s %(message)s", date_fmt="%H:%M:%S",
                   lvl=logging.INFO):
    """A logger writing to stderr with miniff's default format (handlers added once)."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(fmt, date_fmt))
        logger.addHandler(handler)
    logger.setLevel(lvl)
    return logger


def rows_dot3(a, m):
    """``a @ m`` for ``a`` [N, 3] and ``m`` [3, 3], without BLAS.

    Tall-skinny products by a 3x3 matrix are memory bound; BLAS gains nothing on them but may stall
    waiting for its worker threads on a busy machine. A compiled loop does it in one pass.
    """
    a = np.asarray(a)
    m = np.ascontiguousarray(m, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3 or m.shape != (3, 3):
        return a @ m
    from miniff._ext import kernel_module
    from miniff._ext.threads import effective_n_threads

    a = np.ascontiguousarray(a, dtype=np.float64)
    out = np.empty(a.shape)
    kernel_module.rows_dot3(a, m, out, effective_n_threads(None))
    return out
