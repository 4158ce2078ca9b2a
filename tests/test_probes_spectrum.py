"""spectrum / spectrum_summary against SVD and eigenvalues of W (float64)."""
import math

import numpy as np
import pytest
import torch

from stability import RecurrentNet
from stability.transitions import DenseTransition, SpectralTransition

from stability.probes import spectrum, spectrum_summary
from test_probes_common import Fixed, probes_one_thread  # noqa: F401 (autouse fixture)


@pytest.mark.parametrize("name", ["dense", "spectral", "exprnn", "cayley", "householder"])
def test_matches_svd_and_eigenvalues(name):
    torch.manual_seed(0)
    opts = {"reflectors": 5, "margin": 0.4} if name == "spectral" else {}
    model = RecurrentNet(3, 9, 1, name, **opts).double()
    if name == "spectral":
        with torch.no_grad():
            model.transition.p.normal_()
    w = model.transition.matrix().detach().numpy()
    sv = np.linalg.svd(w, compute_uv=False)
    df = spectrum(model)
    assert list(df.columns) == ["index", "singular_value"] and df["index"].tolist() == list(range(9))
    assert np.abs(df.singular_value.to_numpy() - sv).max() < 1e-12
    a = df.attrs
    assert abs(a["sigma_max"] - sv[0]) < 1e-12 and abs(a["sigma_min"] - sv[-1]) < 1e-12
    assert abs(a["condition"] - sv[0] / sv[-1]) < 1e-9
    assert abs(a["spectral_radius"] - np.abs(np.linalg.eigvals(w)).max()) < 1e-12
    assert abs(a["orthogonality_error"] - np.linalg.norm(w.T @ w - np.eye(9))) < 1e-12
    if name in ("exprnn", "cayley", "householder"):
        assert a["orthogonality_error"] < 1e-12 and abs(a["condition"] - 1) < 1e-12
        assert abs(a["spectral_radius"] - 1) < 1e-12
    assert spectrum_summary(model) == a


def test_transition_accepted_and_radius_differs_from_norm():
    w = torch.tensor([[0.5, 3.0], [0.0, 0.5]], dtype=torch.float64)  # ρ = 0.5, σ_max > 3
    s = spectrum_summary(Fixed(w))
    assert abs(s["spectral_radius"] - 0.5) < 1e-12 and s["sigma_max"] > 3
    singular = spectrum_summary(Fixed(torch.zeros(3, 3, dtype=torch.float64)))
    assert singular["condition"] == math.inf
    t = SpectralTransition(6, margin=0.2)  # every σ starts at the center
    assert spectrum(t).singular_value.tolist() == [1.0] * 6
    assert len(spectrum(DenseTransition(4))) == 4


def test_bad_input():
    with pytest.raises(TypeError, match=r"model must be a recurrent model with .transition.matrix\(\)"):
        spectrum(torch.nn.Linear(2, 2))
