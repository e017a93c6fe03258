"""0.1.4: the descriptor recipes accept a scalar wherever they accept a sequence."""

import pytest

from miniff import ml_util


def _params(descriptors):
    return {k: [(d.family.tag, d.tag, sorted(d.get_all_parameters().items())) for d in v]
            for k, v in descriptors.items()}


@pytest.mark.parametrize("scalar, sequence", [
    (dict(eta=0.1, zeta=2), dict(eta=[0.1], zeta=[2])),
    (dict(eta=0, zeta=4, family=5), dict(eta=(0.0,), zeta=(4,), family=5)),
    (dict(eta=0.2, family="5x", cos_theta0=0.5), dict(eta=[0.2], family="5x", cos_theta0=[0.5])),
])
def test_behler_3_scalars(scalar, sequence):
    assert _params(ml_util.default_behler_descriptors_3(["Si", "C"], 4.0, **scalar)) == \
        _params(ml_util.default_behler_descriptors_3(["Si", "C"], 4.0, **sequence))
    # one species name is a list of one
    assert _params(ml_util.default_behler_descriptors_3("Si", 4.0, **scalar)) == \
        _params(ml_util.default_behler_descriptors_3(["Si"], 4.0, **sequence))


def test_radial_and_lsp_scalars():
    assert _params(ml_util.default_behler_descriptors({"Si-Si": 2.0}, 1, 5.0, eta=0.3)) == \
        _params(ml_util.default_behler_descriptors({"Si-Si": 2.0}, 1, 5.0, eta=[0.3]))
    assert _params(ml_util.default_lsp_descriptors("Si", r0=2.5, orders=2)) == \
        _params(ml_util.default_lsp_descriptors(["Si"], r0=[2.5], orders=[2]))


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(zeta="x"), TypeError, "zeta"),
    (dict(zeta=[]), ValueError, "zeta"),
    (dict(eta=float("nan")), ValueError, "eta"),
    (dict(cos_theta0=[0.1, None], family="5x"), ValueError, "cos_theta0"),
])
def test_bad_recipe_arguments_are_named(kwargs, error, name):
    with pytest.raises(error, match=name):
        ml_util.default_behler_descriptors_3(["Si"], 4.0, **kwargs)
