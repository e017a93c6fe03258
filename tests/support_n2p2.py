"""Direct numpy references of n2p2's symmetry functions for the tests of miniff.io.read_n2p2: one function of a
``symfunction_short`` line at one centre atom, by the formulas of n2p2's documentation, looping over neighbours
and pairs of neighbours (no pair list, no vectorisation); periodic structures through their images."""

import itertools
import math

import numpy as np

__all__ = ["cutoff", "compact", "symmetry_function", "periodic_neighbourhood", "Z"]

#: Atomic numbers of the elements the tests use (the weights of types 12, 13, 23-25).
Z = {"H": 1, "C": 6, "O": 8, "Cu": 29}


def cutoff(r, rc, kind, alpha):
    """The cutoff function of n2p2's type ``kind`` with inner cutoff ``alpha rc``."""
    if r >= rc:
        return 0.0
    if kind == 2:
        return math.tanh(1 - r / rc) ** 3
    if kind == 3:
        return math.tanh(1 - r / rc) ** 3 / math.tanh(1) ** 3
    rci = alpha * rc
    if r < rci:
        return 1.0
    x = (r - rci) / (rc - rci)
    return {0: lambda: 1.0, 1: lambda: 0.5 * (math.cos(math.pi * x) + 1), 4: lambda: math.exp(1 - 1 / (1 - x * x)),
            5: lambda: (2 * x - 3) * x**2 + 1, 6: lambda: ((15 - 6 * x) * x - 10) * x**3 + 1,
            7: lambda: (x * (x * (20 * x - 70) + 84) - 35) * x**4 + 1,
            8: lambda: (x * (x * ((315 - 70 * x) * x - 540) + 420) - 126) * x**5 + 1}[kind]()


def core(x, subtype):
    """n2p2's core functions on [0, 1]: polynomials p1-p4 and the exponential e."""
    return {"p1": (2 * x - 3) * x**2 + 1, "p2": ((15 - 6 * x) * x - 10) * x**3 + 1,
            "p3": (x * (x * (20 * x - 70) + 84) - 35) * x**4 + 1,
            "p4": (x * (x * ((315 - 70 * x) * x - 540) + 420) - 126) * x**5 + 1,
            "e": math.exp(1 - 1 / (1 - x * x)) if x < 1 else 0.0}[subtype]


def compact(a, left, right, subtype, asymmetric):
    """The compact function on [left, right] (the caller checks the interval)."""
    x = abs(a - (left + right) / 2) / ((right - left) / 2)
    return core((2 - x) * x if asymmetric else x, subtype)


def symmetry_function(line, i, pos, species, cutoff_type):
    """The value of the ``symfunction_short`` line at atom ``i`` of the cluster ``pos [n, 3]`` (every other atom
    is a neighbour); ``cutoff_type = (type, alpha)``."""
    w = line.split()
    kind = int(w[2])
    n_el = {2: 1, 3: 2, 9: 2, 20: 1, 21: 2, 22: 2}.get(kind, 0)
    elements = w[3:3 + n_el]
    numbers = [float(x) for x in w[3 + n_el:-1]] if kind >= 20 else [float(x) for x in w[3 + n_el:]]
    sub = w[-1] if kind >= 20 else None
    weighted = kind in (12, 13, 23, 24, 25)
    out, n = 0.0, len(pos)
    for j in range(n):
        rij = np.linalg.norm(pos[j] - pos[i])
        if j == i:
            continue
        if kind in (2, 12):
            eta, rs, rc = numbers
            if weighted or species[j] == elements[0]:
                weight = Z[species[j]] if weighted else 1.0
                out += weight * math.exp(-eta * (rij - rs) ** 2) * cutoff(rij, rc, *cutoff_type)
            continue
        if kind in (20, 23):
            rl, rc = numbers
            if (weighted or species[j] == elements[0]) and rl < rij < rc:
                weight = Z[species[j]] if weighted else 1.0
                out += weight * compact(rij, rl, rc, sub.rstrip("a") if sub != "e" else "e", sub.endswith("a"))
            continue
        for k in range(j + 1, n):
            if k == i or not (weighted or sorted((species[j], species[k])) == sorted(elements)):
                continue
            rik, rjk = np.linalg.norm(pos[k] - pos[i]), np.linalg.norm(pos[k] - pos[j])
            cos = (pos[j] - pos[i]) @ (pos[k] - pos[i]) / rij / rik
            weight = Z[species[j]] * Z[species[k]] if weighted else 1.0
            if kind in (3, 9, 13):
                if kind == 13:
                    eta, rs, lam, zeta, rc = numbers
                else:
                    eta, lam, zeta, rc = numbers[:4]
                    rs = numbers[4] if len(numbers) > 4 else 0.0
                with_jk = kind in (3, 13)
                expo = (rij - rs) ** 2 + (rik - rs) ** 2 + ((rjk - rs) ** 2 if with_jk else 0.0)
                fc = cutoff(rij, rc, *cutoff_type) * cutoff(rik, rc, *cutoff_type)
                fc *= cutoff(rjk, rc, *cutoff_type) if with_jk else 1.0
                out += weight * 2 ** (1 - zeta) * max(1 + lam * cos, 0.0) ** zeta * math.exp(-eta * expo) * fc
                continue
            rl, rc, left, right = numbers[0], numbers[1], math.radians(numbers[2]), math.radians(numbers[3])
            base, asym = (sub.rstrip("a") if sub != "e" else "e"), sub.endswith("a")
            theta = math.acos(cos)
            if not (rl < rij < rc and rl < rik < rc and left <= theta <= right):
                continue
            term = weight * compact(rij, rl, rc, base, asym) * compact(rik, rl, rc, base, asym)
            term *= compact(theta, left, right, base, False)
            if kind in (21, 24):
                term = term * compact(rjk, rl, rc, base, asym) if rl < rjk < rc else 0.0
            out += term
    return out


def periodic_neighbourhood(vectors, cart, species, i, radius):
    """Atom ``i`` of a periodic structure and every image of every atom within ``radius`` of it, as a cluster
    ``(pos [m, 3], species [m])`` whose atom 0 is ``i`` (for :func:`symmetry_function`)."""
    reach = [int(math.ceil(radius * np.linalg.norm(row))) + 1 for row in np.linalg.inv(vectors).T]
    pos, out = [cart[i]], [species[i]]
    for shift in itertools.product(*(range(-r, r + 1) for r in reach)):
        offset = np.array(shift, dtype=float) @ vectors
        for j, (p, s) in enumerate(zip(cart, species, strict=True)):
            if j == i and not any(shift):
                continue
            if np.linalg.norm(p + offset - cart[i]) < radius:
                pos.append(p + offset)
                out.append(s)
    return np.array(pos), out
