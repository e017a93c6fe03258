"""``examples/si_sw/elastic.py``: its elastic constants of Stillinger-Weber silicon equal the published ones.

Published (relaxed-ion, 1985 parameters; e.g. Balamane, Halicioglu and Tiller, Phys. Rev. B 46, 2250 (1992)):
C11 = 151.4, C12 = 76.4, C44 = 56.4 GPa, B = 101.4 GPa, a0 = 5.431 Å.
"""

import sys

import pytest
from support import REPO_ROOT

from miniff.potentials import stillinger_weber_si


@pytest.fixture()
def elastic(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "examples" / "si_sw"))
    import elastic

    yield elastic
    sys.modules.pop("elastic", None)
    sys.modules.pop("generate", None)


def test_stillinger_weber_elastic_constants(elastic):
    c = elastic.elastic_constants(stillinger_weber_si())
    assert c["a0"] == pytest.approx(5.431, abs=5e-4)
    for key, published in (("C11", 151.4), ("C12", 76.4), ("C44", 56.4), ("B", 101.4)):
        assert c[key] == pytest.approx(published, abs=0.1), key
