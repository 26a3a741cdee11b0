"""Per-prompt features the hypotheses test: H1 layer features and H2 head metrics.

These are the original method's definitions (docs/method.md "H1", "H2"), vectorised over prompts,
layers and heads. Attention rows arrive right-aligned with zero padding before each prompt's start
(``Activations.attn``); the original read one unpadded prompt at a time, so every metric here is
computed over the prompt's real positions only and is invariant to the amount of padding.
"""

from __future__ import annotations

import numpy as np

from circuitgate.activations import Activations

H1_FEATURES: tuple[str, ...] = ("norm", "mean", "entropy", "concentration", "magnitude", "sparsity")
H2_METRICS: tuple[str, ...] = ("entropy", "max", "focus", "spread", "gini")

_LOG_EPS = 1e-10  # inside log(p + 1e-10), as in the original code
_SKIP_SUM = 1e-10  # a head whose row sums below this is skipped (docs/method.md "H2")
_SPARSE = 0.01  # |g| below this counts as inactive for "sparsity"
_ENTROPY_CLIP = 10.0


def real_positions(lengths: np.ndarray, seq: int) -> np.ndarray:
    """[P, S] mask of the positions that exist in each right-aligned prompt."""
    return np.arange(seq)[None, :] >= (seq - np.asarray(lengths))[:, None]


def h1_layer_features(acts: Activations) -> dict[str, np.ndarray]:
    """The six H1 features per prompt and layer, each [P, L] (docs/method.md "H1").

    ``a`` is the head-mean of the last-token attention row renormalised with +1e-10 in the
    denominator; zero padding contributes 0 to every sum, so no mask is needed here.
    """
    x = acts.resid
    a = acts.attn.mean(axis=2)  # [P, L, S]
    a = a / (a.sum(axis=-1, keepdims=True) + 1e-10)
    entropy = -(a * np.log(a + _LOG_EPS)).sum(axis=-1)
    g = np.abs(acts.gate)
    return {
        "norm": np.linalg.norm(x, axis=-1),
        "mean": x.mean(axis=-1),
        "entropy": entropy,
        # A monotone transform of entropy: identical p-values, opposite-sign d, so the two votes
        # cancel into "mixed" layers (docs/method.md flaw 4); kept because the original method voted with it.
        "concentration": 1.0 / (1.0 + entropy),
        "magnitude": g.mean(axis=-1),
        "sparsity": (g < _SPARSE).mean(axis=-1),
    }


def h2_head_metrics(acts: Activations) -> dict[str, np.ndarray]:
    """The five H2 metrics per prompt and head, each [P, L, H], NaN where the head is skipped
    (its row sums below 1e-10 or is non-finite; docs/method.md "H2").

    ``p`` is the row restricted to the prompt's n real positions and renormalised to sum 1. Spread is
    the population std over those n positions; Gini sorts them ascending with i = 1..n. Padding
    columns are zeroed and, sorted ascending, come first, so real position j of the padded sort is
    rank j - (S - n); a real zero shares the value of the padding and contributes 0 wherever it lands.
    """
    seq = acts.attn.shape[-1]
    mask = real_positions(acts.lengths, seq)[:, None, None, :]  # [P, 1, 1, S]
    n = np.asarray(acts.lengths, dtype=float)[:, None, None]  # [P, 1, 1]
    raw = np.where(mask, acts.attn, 0.0)
    total = raw.sum(axis=-1)
    skip = ~np.isfinite(total) | (total < _SKIP_SUM)
    p = np.where(skip[..., None], 0.0, raw / np.where(skip, 1.0, total)[..., None])
    psum = p.sum(axis=-1)  # 1 up to rounding; the Gini formula divides by it as the original did
    entropy = -(p * np.log(p + _LOG_EPS)).sum(axis=-1)
    centred = np.where(mask, p - (psum / n)[..., None], 0.0)
    spread = np.sqrt((centred * centred).sum(axis=-1) / n)
    rank = np.arange(1, seq + 1) - (seq - n)[..., None]  # [P, 1, 1, S]
    with np.errstate(invalid="ignore", divide="ignore"):  # skipped heads have psum 0; masked below
        gini = 2.0 * (rank * np.sort(p, axis=-1)).sum(axis=-1) / (n * psum) - (n + 1.0) / n
    metrics = {
        "entropy": np.clip(entropy, 0.0, _ENTROPY_CLIP),
        "max": np.clip(p.max(axis=-1), 0.0, 1.0),
        "focus": np.clip(p[..., -1], 0.0, 1.0),  # right-aligned: column -1 is the last token itself
        "spread": np.clip(spread, 0.0, 1.0),
        "gini": np.clip(gini, 0.0, 1.0),
    }
    return {k: np.where(skip, np.nan, v) for k, v in metrics.items()}
