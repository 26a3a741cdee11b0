"""The seed's H1 layer features and H2 head metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitgate.activations import Activations
from circuitgate.features import H1_FEATURES, H2_METRICS, h1_layer_features, h2_head_metrics


def acts_from_rows(rows: np.ndarray, lengths, *, resid=None, gate=None) -> Activations:
    """Activations with the given attention rows [P, L, H, S]; the other arrays are placeholders."""
    p, l = rows.shape[:2]
    return Activations(resid=np.zeros((p, l, 2)) if resid is None else resid, attn=rows,
                       lengths=np.asarray(lengths), neurons=np.zeros((p, l, 3)),
                       gate=np.zeros((p, l, 3)) if gate is None else gate)


def seed_head_metrics(row: np.ndarray) -> dict[str, float]:
    """The original per-head code, one unpadded row at a time (docs/method.md "H2")."""
    p = row / row.sum()
    n = len(p)
    s = np.sort(p)
    gini = 2 * sum((i + 1) * s[i] for i in range(n)) / (n * s.sum()) - (n + 1) / n
    return {"entropy": float(np.clip(-np.sum(p * np.log(p + 1e-10)), 0, 10)), "max": float(np.clip(p.max(), 0, 1)),
            "focus": float(np.clip(p[-1], 0, 1)), "spread": float(np.clip(np.std(p), 0, 1)),
            "gini": float(np.clip(gini, 0, 1))}


def pad(row: np.ndarray, s: int) -> np.ndarray:
    return np.concatenate([np.zeros(s - len(row)), row])


# --- H1 --------------------------------------------------------------------------------------------------

def test_h1_features_hand_values():
    resid = np.array([[[3.0, 4.0]]])  # [P=1, L=1, D=2]
    # two heads over S=3 with one padding column: head mean [0, 0.25, 0.75]
    attn = np.array([[[[0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]]])
    gate = np.array([[[0.005, -0.2, 0.0, 1.0]]])
    f = h1_layer_features(acts_from_rows(attn, [2], resid=resid, gate=gate))
    assert set(f) == set(H1_FEATURES) and all(v.shape == (1, 1) for v in f.values())
    a = np.array([0.25, 0.75]) / (1 + 1e-10)
    entropy = -np.sum(a * np.log(a + 1e-10))
    assert f["norm"][0, 0] == pytest.approx(5.0)
    assert f["mean"][0, 0] == pytest.approx(3.5)
    assert f["entropy"][0, 0] == pytest.approx(entropy)
    assert f["entropy"][0, 0] == pytest.approx(-(0.25 * np.log(0.25) + 0.75 * np.log(0.75)), rel=1e-8)
    assert f["concentration"][0, 0] == pytest.approx(1 / (1 + entropy))
    assert f["magnitude"][0, 0] == pytest.approx((0.005 + 0.2 + 0.0 + 1.0) / 4)
    assert f["sparsity"][0, 0] == pytest.approx(0.5)  # 0.005 and 0.0 are below 0.01


def test_h1_entropy_padding_invariant():
    rng = np.random.default_rng(0)
    rows = rng.dirichlet(np.ones(5), size=(1, 1, 3))
    short = h1_layer_features(acts_from_rows(rows, [5]))
    long = h1_layer_features(acts_from_rows(np.concatenate([np.zeros((1, 1, 3, 4)), rows], axis=-1), [5]))
    assert short["entropy"][0, 0] == pytest.approx(long["entropy"][0, 0], rel=1e-12)


# --- H2 --------------------------------------------------------------------------------------------------

def test_h2_metrics_hand_values():
    row = np.array([0.1, 0.2, 0.3, 0.4])
    m = h2_head_metrics(acts_from_rows(row[None, None, None, :], [4]))
    assert set(m) == set(H2_METRICS) and all(v.shape == (1, 1, 1) for v in m.values())
    assert m["entropy"].item() == pytest.approx(-np.sum(row * np.log(row + 1e-10)))
    assert m["max"].item() == pytest.approx(0.4)
    assert m["focus"].item() == pytest.approx(0.4)  # the last column: the last token's self-attention
    assert m["spread"].item() == pytest.approx(np.sqrt(0.0125))  # population std of 0.1..0.4
    # sorted ascending, i = 1..4: 2 * (0.1 + 0.4 + 0.9 + 1.6) / 4 - 5/4 = 0.25
    assert m["gini"].item() == pytest.approx(0.25)


def test_h2_renormalises_and_bounds():
    n = 6
    one_hot = np.zeros(n)
    one_hot[2] = 3.0  # unnormalised on purpose
    uniform = np.full(n, 0.5)
    m = h2_head_metrics(acts_from_rows(np.stack([one_hot, uniform])[None, None], [n]))
    assert m["gini"][0, 0].tolist() == pytest.approx([(n - 1) / n, 0.0], abs=1e-12)
    assert m["max"][0, 0].tolist() == pytest.approx([1.0, 1 / n])
    assert m["focus"][0, 0].tolist() == pytest.approx([0.0, 1 / n])
    assert m["entropy"][0, 0, 1] == pytest.approx(np.log(n))


def test_h2_entropy_clipped_at_10():
    n = 30000  # ln(30000) = 10.3
    m = h2_head_metrics(acts_from_rows(np.full((1, 1, 1, n), 1.0 / n), [n]))
    assert m["entropy"].item() == 10.0


def test_h2_padded_row_equals_unpadded():
    rng = np.random.default_rng(1)
    rows = rng.dirichlet(np.ones(5), size=(2, 3))  # [L=2, H=3, n=5]
    short = h2_head_metrics(acts_from_rows(rows[None], [5]))
    long = h2_head_metrics(acts_from_rows(np.concatenate([np.zeros((2, 3, 7)), rows], axis=-1)[None], [5]))
    for k in H2_METRICS:
        np.testing.assert_allclose(long[k], short[k], rtol=1e-12, atol=1e-15, err_msg=k)
        want = [[seed_head_metrics(rows[l, h])[k] for h in range(3)] for l in range(2)]
        np.testing.assert_allclose(short[k][0], want, rtol=1e-12, atol=1e-15, err_msg=k)


def test_h2_garbage_in_padding_is_ignored():
    row = np.array([0.0, 0.0, 0.2, 0.3, 0.5])
    dirty = row.copy()
    dirty[:2] = 0.7  # positions before the prompt start
    clean = h2_head_metrics(acts_from_rows(row[None, None, None], [3]))
    messy = h2_head_metrics(acts_from_rows(dirty[None, None, None], [3]))
    for k in H2_METRICS:
        assert messy[k].item() == pytest.approx(clean[k].item(), rel=1e-12, abs=1e-15)


def test_h2_skipped_heads_are_nan_and_others_are_not():
    rows = np.array([[[[0.0, 0.0, 0.0], [0.0, np.nan, 0.5], [0.0, 0.5, 0.5], [0.0, 1e-11, 0.0]]]])
    with np.errstate(all="raise"):
        m = h2_head_metrics(acts_from_rows(rows, [2]))
    for k in H2_METRICS:
        assert np.isnan(m[k][0, 0]).tolist() == [True, True, False, True], k


def test_h2_per_prompt_lengths():
    rng = np.random.default_rng(2)
    raw = [rng.dirichlet(np.ones(n)) for n in (3, 8, 5)]
    rows = np.stack([pad(r, 8) for r in raw])[:, None, None, :]
    m = h2_head_metrics(acts_from_rows(rows, [3, 8, 5]))
    for k in H2_METRICS:
        np.testing.assert_allclose(m[k][:, 0, 0], [seed_head_metrics(r)[k] for r in raw], rtol=1e-12, atol=1e-15)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(0, 10), st.integers(0, 2**32 - 1), st.booleans())
def test_h2_padding_invariance_property(n, n_pad, seed, sparse):
    rng = np.random.default_rng(seed)
    row = rng.dirichlet(np.ones(n))
    if sparse:  # real zeros inside the prompt must not be confused with padding
        row[rng.random(n) < 0.4] = 0.0
        if row.sum() == 0:
            row[-1] = 1.0
    short = h2_head_metrics(acts_from_rows(row[None, None, None], [n]))
    long = h2_head_metrics(acts_from_rows(pad(row, n + n_pad)[None, None, None], [n]))
    ref = seed_head_metrics(row)
    for k in H2_METRICS:
        assert long[k].item() == pytest.approx(short[k].item(), rel=1e-9, abs=1e-12)
        assert long[k].item() == pytest.approx(ref[k], rel=1e-9, abs=1e-12)
        assert 0.0 <= long[k].item() <= (10.0 if k == "entropy" else 1.0)
