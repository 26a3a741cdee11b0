"""The seed method's H1/H2/H3 analyses on small synthetic activations (P=30, L=4, H=4, S=12, D=8, F=16):
planted effects, pure noise, thresholds, a loop-by-loop reference implementation, input validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests

from circuitgate import CircuitgateError
from circuitgate.activations import Activations
from circuitgate.config import H1Config, H2Config, H3Config, ScaledCount
from circuitgate.features import H1_FEATURES, H2_METRICS, h1_layer_features, h2_head_metrics
from circuitgate.methods.original import analyse_h1, analyse_h2, analyse_h3
from circuitgate.ids import head_id, layer_id, neuron_id

P, L, H, S, D, F = 30, 4, 4, 12, 8, 16
FAST_H1 = H1Config(n_bootstrap=200)  # the bootstrap never enters a classification


def rows(rng, n_prompts: int, lengths: np.ndarray, last_weight: float = 1.0) -> np.ndarray:
    """Right-aligned Dirichlet attention rows [P, S]; ``last_weight`` > 1 pulls mass onto the last token."""
    out = np.zeros((n_prompts, S))
    for i, n in enumerate(lengths):  # building test data only
        alpha = np.ones(n)
        alpha[-1] = last_weight
        out[i, S - n:] = rng.dirichlet(alpha)
    return out


def synthetic(seed: int, *, n_prompts: int = P, n_layers: int = L) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(6, S + 1, size=n_prompts)
    attn = np.stack([np.stack([rows(rng, n_prompts, lengths) for _ in range(H)], axis=1)
                     for _ in range(n_layers)], axis=1)
    return {"resid": rng.normal(size=(n_prompts, n_layers, D)), "attn": attn, "lengths": lengths,
            "neurons": rng.normal(size=(n_prompts, n_layers, F)), "gate": rng.normal(size=(n_prompts, n_layers, F))}


def pair(seed: int = 0, **kw) -> tuple[dict, dict]:
    return synthetic(2 * seed, **kw), synthetic(2 * seed + 1, **kw)


def acts(d: dict) -> Activations:
    return Activations(**d)


def planted_h1(seed: int = 0) -> tuple[Activations, Activations]:
    """Reasoning layers 1 and 2 (larger residual and gate), recall layer 3 (smaller ones)."""
    rec, rea = pair(seed)
    for layer in (1, 2):
        rea["resid"][:, layer] += 2.0  # norm and mean up
        rea["gate"][:, layer] *= 3.0  # magnitude up, sparsity down
    rea["resid"][:, 3] *= 0.2  # norm down
    rea["gate"][:, 3] *= 0.2  # magnitude down, sparsity up
    return acts(rec), acts(rea)


# --- H1 --------------------------------------------------------------------------------------------------

def test_h1_planted_layers_get_the_right_type():
    recall, reasoning = planted_h1()
    r = analyse_h1(recall, reasoning, FAST_H1)
    assert (r.hypothesis, r.method, r.verdict) == ("H1", "original", "supported")
    assert [c.cls for c in r.components.values()] == ["none", "reasoning", "reasoning", "recall"]
    s = r.summary
    assert (s["n_specialised"], s["n_recall"], s["n_reasoning"], s["n_mixed"]) == (3, 1, 2, 0)
    assert (s["recall_layers"], s["reasoning_layers"], s["mixed_layers"]) == ([3], [1, 2], [])
    assert (s["threshold"], s["n_pairs"], s["consistency"]) == (1, 30, 1.0)
    l1 = r.components[layer_id(1)]
    assert set(l1.details["votes"]) >= {"norm", "mean", "magnitude"}
    assert set(l1.details["votes"].values()) == {"reasoning"}
    assert r.components[layer_id(3)].details["votes"]["magnitude"] == "recall"
    assert l1.effect > 0 > r.components[layer_id(3)].effect


def test_h1_component_numbers_are_consistent():
    recall, reasoning = planted_h1(1)
    r = analyse_h1(recall, reasoning, FAST_H1)
    for c in r.components.values():
        feats, votes = c.details["features"], c.details["votes"]
        assert list(feats) == list(H1_FEATURES)
        d, p, ci = ({f: v[k] for f, v in feats.items()} for k in ("effect", "p_adj", "ci"))
        assert c.p_adj == min(p.values())
        pool = votes or d  # the strongest voting feature, or the strongest of all
        strongest = max(pool, key=lambda f: abs(d[f]))
        assert c.effect == d[strongest] and list(c.effect_ci) == ci[strongest]
        for f in votes:
            assert abs(d[f]) > FAST_H1.d_vote and p[f] <= FAST_H1.alpha
            assert ci[f][0] <= d[f] <= ci[f][1]
            # a reasoning vote: the feature's mean is larger on reasoning prompts
            assert (feats[f]["reasoning"] > feats[f]["recall"]) == (votes[f] == "reasoning")
        assert c.details["consistent"] == (c.details["fold_agreement"] >= FAST_H1.consistency)
        assert c.to_dict()["class"] == c.cls


def reference_h1_classes(recall: Activations, reasoning: Activations, cfg: H1Config) -> list[str]:
    """The seed's H1 written as the original loops: scipy per layer, statsmodels per feature."""
    fc, fr = h1_layer_features(recall), h1_layer_features(reasoning)
    votes = [[] for _ in range(recall.n_layers)]
    for f in H1_FEATURES:
        ds, ps = [], []
        for layer in range(recall.n_layers):
            a, b = fc[f][:, layer], fr[f][:, layer]
            ds.append((b.mean() - a.mean()) / (np.sqrt((a.var() + b.var()) / 2) + 1e-10))
            ps.append(scipy.stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
        reject = multipletests(ps, alpha=cfg.alpha, method="fdr_bh")[0]
        for layer, (d, rej) in enumerate(zip(ds, reject)):
            if rej and abs(d) > cfg.d_significant and abs(d) > cfg.d_vote:
                votes[layer].append("reasoning" if d > 0 else "recall")
    out = []
    for v in votes:
        if len(v) < cfg.min_votes:
            out.append("none")
        else:
            n_rea, n_rec = v.count("reasoning"), v.count("recall")
            out.append("reasoning" if n_rea > n_rec else "recall" if n_rec > n_rea else "mixed")
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_h1_matches_loop_reference_and_folds(seed):
    rec, rea = pair(seed)
    rng = np.random.default_rng(seed)
    # moderate, varied effects so that some layers are borderline
    rea["resid"] += rng.normal(0, 0.6, size=(1, L, 1))
    rea["gate"] *= rng.uniform(0.7, 1.5, size=(1, L, 1))
    recall, reasoning = acts(rec), acts(rea)
    cfg = H1Config(n_bootstrap=0)
    r = analyse_h1(recall, reasoning, cfg)
    assert [c.cls for c in r.components.values()] == reference_h1_classes(recall, reasoning, cfg)
    # sklearn's KFold(5, shuffle=True, random_state=42) test folds for n=30 (see test_stats.py)
    test_folds = [[8, 9, 15, 17, 23, 27], [0, 4, 12, 16, 24, 28], [1, 2, 5, 11, 13, 22], [3, 18, 21, 25, 26, 29],
                  [6, 7, 10, 14, 19, 20]]
    agree = np.zeros(L)
    for test in test_folds:
        train = np.setdiff1d(np.arange(P), test)
        fold = reference_h1_classes(recall.take(train), reasoning.take(train), cfg)
        agree += [fold[i] == r.components[layer_id(i)].cls for i in range(L)]
    assert [c.details["fold_agreement"] for c in r.components.values()] == pytest.approx(agree / 5)


def test_h1_pure_noise_gives_no_specialised_layers():
    for seed in range(3):
        recall, reasoning = (acts(d) for d in pair(seed + 10))
        r = analyse_h1(recall, reasoning, FAST_H1)
        assert r.summary["n_specialised"] == 0 and r.verdict == "not_supported"
        assert r.summary["consistency"] is None


def test_h1_entropy_and_concentration_votes_cancel_into_mixed():
    """Flaw 4 reproduced: an attention-entropy effect alone gives two opposite votes -> "mixed"."""
    rec, rea = pair(3)
    rng = np.random.default_rng(3)
    rea["attn"][:, 2] = np.stack([rows(rng, P, rea["lengths"], last_weight=20.0) for _ in range(H)], axis=1)
    r = analyse_h1(acts(rec), acts(rea), FAST_H1)
    l2 = r.components[layer_id(2)]
    assert l2.cls == "mixed"
    assert l2.details["votes"] == {"entropy": "recall", "concentration": "reasoning"}
    assert l2.details["features"]["entropy"]["p_adj"] == l2.details["features"]["concentration"]["p_adj"]
    assert r.summary["mixed_layers"] == [2]


def test_h1_threshold_scales_with_model_size():
    recall, reasoning = planted_h1()  # 3 of 4 layers specialised
    assert analyse_h1(recall, reasoning, dataclasses.replace(FAST_H1, min_layers=ScaledCount(3, 4))).verdict \
        == "supported"
    strict = analyse_h1(recall, reasoning, dataclasses.replace(FAST_H1, min_layers=ScaledCount(4, 4)))
    assert (strict.verdict, strict.summary["threshold"]) == ("not_supported", 4)
    big = analyse_h1(*(acts(d) for d in pair(4, n_layers=28)), FAST_H1)
    assert big.summary["threshold"] == 5 and len(big.components) == 28  # the paper's 5 of 28 layers


def test_h1_min_votes_config():
    recall, reasoning = planted_h1()
    r = analyse_h1(recall, reasoning, dataclasses.replace(FAST_H1, min_votes=6))
    assert r.summary["n_specialised"] == 0


# --- H2 --------------------------------------------------------------------------------------------------

def planted_h2(seed: int = 0) -> tuple[Activations, Activations]:
    """Head L00H01 focuses on the last token on recall, head L02H03 on reasoning."""
    rec, rea = pair(seed)
    rng = np.random.default_rng(seed + 100)
    rec["attn"][:, 0, 1] = rows(rng, P, rec["lengths"], last_weight=25.0)
    rea["attn"][:, 2, 3] = rows(rng, P, rea["lengths"], last_weight=25.0)
    return acts(rec), acts(rea)


def test_h2_planted_heads_get_the_right_type():
    recall, reasoning = planted_h2()
    r = analyse_h2(recall, reasoning, H2Config())
    assert (r.hypothesis, r.method, r.verdict) == ("H2", "original", "supported")
    assert len(r.components) == L * H and list(r.components)[5] == head_id(1, 1)
    classes = {k: c.cls for k, c in r.components.items() if c.cls != "none"}
    assert classes == {head_id(0, 1): "recall", head_id(2, 3): "reasoning"}
    s = r.summary
    assert (s["n_specialised"], s["n_recall"], s["n_reasoning"], s["n_mixed"], s["threshold"]) == (2, 1, 1, 0, 1)
    assert (s["top_recall"], s["top_reasoning"]) == ([head_id(0, 1)], [head_id(2, 3)])
    rec_head = r.components[head_id(0, 1)]
    assert len(rec_head.details["significant"]) >= H2Config().min_metrics
    d = {m: v["effect"] for m, v in rec_head.details["features"].items()}
    assert d["focus"] < 0 < d["entropy"]
    scores = [r.components[h].details["score"] for h in (head_id(0, 1), head_id(2, 3))]
    assert s["mean_abs_d"] == pytest.approx(np.mean(scores))


def reference_h2(recall: Activations, reasoning: Activations, cfg: H2Config) -> tuple[list[str], np.ndarray]:
    """The seed's H2 as the original loops over heads: per-head skip rules, scipy, statsmodels."""
    mc, mr = h2_head_metrics(recall), h2_head_metrics(reasoning)
    n_units = recall.n_layers * recall.n_heads
    d_all, p_all = np.zeros((5, n_units)), np.ones((5, n_units))
    for i, m in enumerate(H2_METRICS):
        for u in range(n_units):
            a = mc[m][:, u // recall.n_heads, u % recall.n_heads]
            b = mr[m][:, u // recall.n_heads, u % recall.n_heads]
            a, b = a[~np.isnan(a)], b[~np.isnan(b)]
            if len(a) < cfg.min_n or len(b) < cfg.min_n or (a.var(ddof=1) < cfg.min_variance
                                                            and b.var(ddof=1) < cfg.min_variance):
                continue
            d = (b.mean() - a.mean()) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
            d_all[i, u] = 0.0 if abs(d) > cfg.d_artifact else d
            p_all[i, u] = scipy.stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
    p_adj = np.stack([multipletests(p, alpha=cfg.alpha, method="fdr_bh")[1] for p in p_all])
    sig = (p_adj <= cfg.alpha) & (np.abs(d_all) >= cfg.d_significant)
    out = []
    for u in range(n_units):
        pos, neg = int((sig[:, u] & (d_all[:, u] > 0)).sum()), int((sig[:, u] & (d_all[:, u] < 0)).sum())
        if pos + neg < cfg.min_metrics:
            out.append("none")
        else:
            out.append("reasoning" if pos > neg else "recall" if neg > pos else "mixed")
    return out, p_adj


@pytest.mark.parametrize("seed", [0, 1])
def test_h2_matches_loop_reference(seed):
    rec, rea = pair(seed + 20)
    rng = np.random.default_rng(seed)
    for layer, head, w in [(0, 0, 4.0), (1, 2, 8.0), (3, 3, 2.5)]:  # graded effects, some borderline
        rea["attn"][:, layer, head] = rows(rng, P, rea["lengths"], last_weight=w)
    rec["attn"][:6, 2, 1] = 0.0  # a head skipped on 6 recall prompts: per-head sample sizes
    rec["attn"][:27, 3, 0] = 0.0  # ... and one left with too few prompts (p = 1)
    recall, reasoning = acts(rec), acts(rea)
    cfg = H2Config(alpha=1e-3, min_metrics=2)
    r = analyse_h2(recall, reasoning, cfg)
    classes, p_adj = reference_h2(recall, reasoning, cfg)
    assert [c.cls for c in r.components.values()] == classes
    got = np.array([[c.details["features"][m]["p_adj"] for c in r.components.values()] for m in H2_METRICS])
    np.testing.assert_allclose(got, p_adj, rtol=1e-9)
    assert r.components[head_id(3, 0)].details["skipped"] == list(H2_METRICS)
    assert {m: v["effect"] for m, v in r.components[head_id(3, 0)].details["features"].items()} == \
        dict.fromkeys(H2_METRICS, 0.0)


def test_h2_pure_noise_gives_no_specialised_heads():
    for seed in range(3):
        r = analyse_h2(*(acts(d) for d in pair(seed + 30)), H2Config())
        assert r.summary["n_specialised"] == 0 and r.verdict == "not_supported"
        assert r.summary["mean_abs_d"] is None and r.summary["top_recall"] == []


def test_h2_artifact_cap_hides_huge_effects():
    """Flaw 6 reproduced: a near-deterministic difference (|d| > 15) is zeroed and never significant."""
    rec, rea = pair(5)
    rng = np.random.default_rng(5)
    for side, last in ((rec, 0.3), (rea, 0.9)):
        side["lengths"][:] = S  # fixed length, so every metric is a near-constant per side
        row = np.full((P, S), (1 - last) / (S - 1))
        row[:, -1] = last
        side["attn"][:, 1, 1] = np.abs(row + rng.normal(0, 0.002, size=row.shape))
    r = analyse_h2(acts(rec), acts(rea), H2Config())
    head = r.components[head_id(1, 1)]
    assert head.cls == "none" and head.details["features"]["focus"]["effect"] == 0.0
    assert head.details["significant"] == []
    loose = analyse_h2(acts(rec), acts(rea), H2Config(d_artifact=1e9))
    # uncapped, the same head is a "reasoning" head: max, focus, spread and Gini up, entropy down
    assert loose.components[head_id(1, 1)].cls == "reasoning"


def test_h2_threshold_scales_with_model_size():
    recall, reasoning = planted_h2()
    assert analyse_h2(recall, reasoning, H2Config(min_heads=ScaledCount(20, 784))).summary["threshold"] == 1
    r = analyse_h2(recall, reasoning, H2Config(min_heads=ScaledCount(3, 16)))
    assert (r.summary["threshold"], r.verdict) == (3, "not_supported")


# --- validation ------------------------------------------------------------------------------------------

def _broken(change) -> tuple[Activations, Activations]:
    rec, rea = pair(6)
    change(rec, rea)
    return acts(rec), acts(rea)


def _set(side: str, key: str, index, value):
    def change(rec, rea):
        (rec if side == "recall" else rea)[key][index] = value
    return change


def _replace(key: str, fn):
    def change(rec, rea):
        rea[key] = fn(rea[key])
    return change


BROKEN = {
    "non-finite resid": _set("reasoning", "resid", (0, 0, 0), np.nan),
    "non-finite gate": _set("recall", "gate", (1, 2, 3), np.inf),
    "non-finite attention": _set("recall", "attn", (0, 0, 0, -1), np.nan),
    "length zero": _set("recall", "lengths", 0, 0),
    "length beyond S": _set("reasoning", "lengths", 0, S + 1),
    "different layer count": _replace("gate", lambda a: a[:, :3]),
    "different heads": _replace("attn", lambda a: a[:, :, :3]),
    "flat residual": _replace("resid", lambda a: a[:, 0, 0]),
    "attention for fewer prompts": _replace("attn", lambda a: a[:-1]),
}
H2_READS = ("non-finite attention", "length zero", "length beyond S", "different layer count", "different heads",
            "attention for fewer prompts")
H3_READS = ("non-finite gate", "length zero", "different layer count")


@pytest.mark.parametrize("case,analyse,cfg", [(c, analyse_h1, FAST_H1) for c in BROKEN]
                         + [(c, analyse_h2, H2Config()) for c in H2_READS]
                         + [(c, analyse_h3, H3Config()) for c in H3_READS])
def test_bad_input_raises_one_line_error(case, analyse, cfg):
    with pytest.raises(CircuitgateError) as e:
        analyse(*_broken(BROKEN[case]), cfg)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("analyse,cfg", [(analyse_h1, FAST_H1), (analyse_h2, H2Config()), (analyse_h3, H3Config())])
def test_unmatched_or_empty_sets_raise(analyse, cfg):
    rec, rea = pair(7)
    recall, reasoning = acts(rec), acts(rea)
    with pytest.raises(CircuitgateError, match="matched pairs"):
        analyse(recall, reasoning.take(np.arange(P - 1)), cfg)
    with pytest.raises(CircuitgateError, match="no prompts"):
        analyse(recall.take(np.arange(0)), reasoning.take(np.arange(0)), cfg)
    with pytest.raises(CircuitgateError, match="expected Activations"):
        analyse(rec, reasoning, cfg)


def test_h1_needs_enough_pairs_for_the_folds():
    recall, reasoning = planted_h1()
    with pytest.raises(CircuitgateError, match="n_folds"):
        analyse_h1(recall.take(np.arange(4)), reasoning.take(np.arange(4)), FAST_H1)


def test_different_prompt_lengths_per_side_are_fine():
    """Reasoning prompts are longer than recall ones: S may differ between the two sides."""
    rec, rea = pair(8)
    rea["attn"] = np.concatenate([np.zeros((P, L, H, 5)), rea["attn"]], axis=-1)
    assert analyse_h2(acts(rec), acts(rea), H2Config()).summary["n_specialised"] == 0
    assert analyse_h1(acts(rec), acts(rea), FAST_H1).summary["n_specialised"] == 0


# -- H3: neurons -----------------------------------------------------------------------------------

def planted_h3(seed: int = 0) -> tuple[Activations, Activations]:
    """Layer 1: neurons 0-5 fire more on reasoning; layer 2: neurons 0-3 more on recall."""
    rec, rea = pair(seed)
    rea["gate"][:, 1, :6] += 3.0
    rec["gate"][:, 2, :4] += 3.0
    return acts(rec), acts(rea)


H3_SMALL = H3Config(alpha=0.01)  # 64 neurons: Bonferroni at 1e-4 over 64 units is still reachable


def test_h3_planted_neurons_and_layers():
    rec, rea = planted_h3()
    r = analyse_h3(rec, rea, H3_SMALL)
    assert r.hypothesis == "H3" and r.method == "original"
    assert r.components[layer_id(1)].cls == "reasoning"
    assert r.components[layer_id(2)].cls == "recall"
    assert r.components[layer_id(0)].cls == r.components[layer_id(3)].cls == "none"
    assert r.components[layer_id(1)].details["n_reasoning"] == 6
    assert r.components[layer_id(2)].details["n_recall"] == 4
    s = r.summary
    assert (s["n_recall_neurons"], s["n_reasoning_neurons"], s["n_task_specific"]) == (4, 6, 10)
    assert s["most_specialised_layer"]["layer"] == 1
    assert s["n_top"] == 10 and s["n_validated"] == 10
    assert {t["id"] for t in s["top_neurons"]} == {neuron_id(1, j) for j in range(6)} | {neuron_id(2, j) for j in range(4)}
    assert r.verdict == "supported"


def reference_h3(recall: Activations, reasoning: Activations, cfg: H3Config):
    """Neuron by neuron with scipy and statsmodels, as the original notebook looped."""
    n, n_layers, n_neurons = recall.gate.shape
    d, p, specific = (np.zeros((n_layers, n_neurons)) for _ in range(3))
    for layer in range(n_layers):
        for j in range(n_neurons):
            a, b = reasoning.gate[:, layer, j], recall.gate[:, layer, j]
            va, vb = a.var(ddof=1), b.var(ddof=1)
            if (va < cfg.min_variance and vb < cfg.min_variance) or \
                    (np.abs(a).mean() < cfg.min_abs_mean and np.abs(b).mean() < cfg.min_abs_mean):
                p[layer, j] = 1.0
                continue
            d[layer, j] = (a.mean() - b.mean()) / np.sqrt((va + vb) / 2)
            p[layer, j] = scipy.stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
    reject = multipletests(p.ravel(), alpha=cfg.alpha, method="bonferroni")[0].reshape(p.shape)
    specific = reject & (np.abs(d) > cfg.d_significant)
    return d, p, specific


@pytest.mark.parametrize("seed", [0, 1])
def test_h3_matches_loop_reference(seed):
    rec, rea = planted_h3(seed)
    rng = np.random.default_rng(seed)
    rec.gate[:, 0, 8:12] *= 0.01  # skipped: tiny variance and magnitude on both sides
    rea.gate[:, 0, 8:12] *= 0.01
    rea.gate[:, 3, 5] += rng.normal(1.2, 0.1)  # a borderline neuron
    r = analyse_h3(rec, rea, H3_SMALL)
    d, p, specific = reference_h3(rec, rea, H3_SMALL)
    from circuitgate.methods.original import h3_neuron_stats

    st = h3_neuron_stats(rec.gate, rea.gate, H3_SMALL)
    np.testing.assert_allclose(st.d, d, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(st.p, p, rtol=1e-9)
    np.testing.assert_array_equal(st.specific, specific)
    assert st.skipped[0, 8:12].all()
    for layer in range(L):
        det = r.components[layer_id(layer)].details
        assert det["n_recall"] == int((specific[layer] & (d[layer] < 0)).sum())
        assert det["n_reasoning"] == int((specific[layer] & (d[layer] > 0)).sum())


def test_h3_top_neurons_ranked_by_firing_rate_gap_and_sign_checked():
    rec, rea = pair(5)
    rec, rea = acts(rec), acts(rea)
    # Neuron (1, 0): fires on every reasoning prompt and no recall prompt -> gap 1, ranked first.
    rea.gate[:, 1, 0] = np.abs(rea.gate[:, 1, 0]) + 2.0
    rec.gate[:, 1, 0] = -np.abs(rec.gate[:, 1, 0]) - 2.0
    # Neuron (2, 3): shifted, but fires on both sides often -> a smaller gap.
    rea.gate[:, 2, 3] += 4.0
    rec.gate[:, 2, 3] += 1.0
    r = analyse_h3(rec, rea, dataclasses.replace(H3_SMALL, top_k=1))
    top = r.summary["top_neurons"]
    assert [t["id"] for t in top] == [neuron_id(1, 0)]
    assert top[0]["rate_reasoning"] == 1.0 and top[0]["rate_recall"] == 0.0 and top[0]["validated"]
    assert r.summary["n_top"] == 1


def test_h3_pure_noise_is_not_supported():
    rec, rea = pair(7)
    r = analyse_h3(acts(rec), acts(rea), H3Config())
    assert r.summary["n_task_specific"] == 0 and r.verdict == "not_supported"
    assert all(c.cls == "none" for c in r.components.values())


def test_h3_layer_fraction_and_min_layers_decide():
    rec, rea = planted_h3()
    few = analyse_h3(rec, rea, dataclasses.replace(H3_SMALL, layer_fraction=0.5))  # 6/16 and 4/16 < 0.5
    assert all(c.cls == "none" for c in few.components.values()) and few.verdict == "not_supported"
    many = analyse_h3(rec, rea, dataclasses.replace(H3_SMALL, min_layers=ScaledCount(3, 4)))
    assert many.summary["threshold"] == 3 and many.verdict == "not_supported"


def test_h3_float32_input_and_sizes_validated():
    rec, rea = planted_h3()
    rec32 = Activations(rec.resid, rec.attn, rec.lengths, rec.neurons, rec.gate.astype(np.float32))
    rea32 = Activations(rea.resid, rea.attn, rea.lengths, rea.neurons, rea.gate.astype(np.float32))
    assert analyse_h3(rec32, rea32, H3_SMALL).summary["n_task_specific"] == 10
    with pytest.raises(CircuitgateError, match="n_folds"):
        analyse_h3(rec.take(np.arange(3)), rea.take(np.arange(3)), H3_SMALL)
