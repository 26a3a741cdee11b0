"""Thresholds config: YAML -> frozen dataclasses that validate themselves (circuitgate.config)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from circuitgate import CircuitgateError
from circuitgate.config import Config, H1Config, H2Config, ScaledCount, load_config

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "thresholds.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# -- defaults ------------------------------------------------------------------------------------


def test_none_gives_the_seed_defaults():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.h1.alpha == 0.01 and cfg.h1.d_significant == 0.5 and cfg.h1.d_vote == 0.8
    assert cfg.h1.min_votes == 2 and cfg.h1.min_layers == ScaledCount(5, 28)
    assert cfg.h1.n_folds == 5 and cfg.h1.consistency == 0.8 and cfg.h1.seed == 42
    assert cfg.h2.alpha == 1e-4 and cfg.h2.d_significant == 1.0 and cfg.h2.d_artifact == 15.0
    assert cfg.h2.min_metrics == 3 and cfg.h2.min_heads == ScaledCount(20, 784) and cfg.h2.min_n == 5
    assert dict(cfg.expected) == {}


def test_paper_thresholds_are_exact_on_the_paper_model_and_scale_elsewhere():
    h1, h2 = H1Config(), H2Config()
    assert h1.min_layers.for_size(28) == 5  # "H1 supported if >= 5 of 28 layers"
    assert h2.min_heads.for_size(28 * 28) == 20  # "H2 if >= 20 of 784 heads"
    assert h1.min_layers.for_size(56) == 10
    assert h1.min_layers.for_size(4) == 1  # ceil(5 * 4 / 28) = ceil(0.71)
    assert h1.min_layers.for_size(6) == 2  # ceil(30 / 28)
    assert h2.min_heads.for_size(8) == 1  # ceil(160 / 784)
    assert h2.min_heads.for_size(1568) == 40


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "# only a comment\n")) == Config()


def test_configs_are_frozen():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.h1 = H1Config()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.h1.alpha = 0.5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.h1.min_layers.count = 3  # type: ignore[misc]


# -- loading -------------------------------------------------------------------------------------


def test_load_overrides_only_what_is_given(tmp_path):
    p = write(tmp_path, """
h1:
  alpha: 0.05
  d_vote: 1          # an int for a float field becomes a float
  min_layers: {count: 3, of: 10}
h2:
  min_metrics: 4
expected:
  H2: not_supported
""")
    cfg = load_config(p)
    assert cfg.h1.alpha == 0.05
    assert cfg.h1.d_vote == 1.0 and isinstance(cfg.h1.d_vote, float)
    assert cfg.h1.min_layers == ScaledCount(3, 10)
    assert cfg.h1.min_layers.for_size(28) == 9  # ceil(84 / 10)
    assert cfg.h1.min_votes == 2 and cfg.h1.d_significant == 0.5  # untouched defaults
    assert cfg.h2.min_metrics == 4 and isinstance(cfg.h2.min_metrics, int)
    assert cfg.h2.alpha == 1e-4
    assert dict(cfg.expected) == {"H2": "not_supported"}


def test_integral_float_for_an_int_field_is_accepted_as_int(tmp_path):
    cfg = load_config(write(tmp_path, "h1: {min_votes: 3.0}\n"))
    assert cfg.h1.min_votes == 3 and isinstance(cfg.h1.min_votes, int)


def test_the_defaults_file_in_the_repo_is_the_built_in_config():
    cfg = load_config(REPO / "hypotheses" / "configs" / "defaults.yaml")
    assert cfg == Config()  # the file spells out the built-in defaults, the paired section included


def test_paired_defaults_and_overrides(tmp_path):
    p = Config().paired
    assert (p.alpha, p.correction, p.d_min, p.n_splits, p.stability, p.require_controls) == \
        (0.05, "bh", 0.5, 20, 0.5, True)
    cfg = load_config(write(tmp_path, "paired: {correction: by, n_splits: 5, require_controls: false}\n"))
    assert cfg.paired.correction == "by" and cfg.paired.n_splits == 5 and cfg.paired.require_controls is False


@given(
    alpha=st.floats(0.001, 0.5),
    d_sig=st.floats(0.0, 2.0),
    extra=st.floats(0.0, 2.0),
    votes=st.integers(1, 6),
    count=st.integers(1, 30),
    of_extra=st.integers(0, 100),
    expected=st.dictionaries(st.sampled_from(["H1", "H2"]),
                             st.sampled_from(["supported", "not_supported", "inconclusive"])),
)
def test_to_dict_round_trips_through_yaml(tmp_path_factory, alpha, d_sig, extra, votes, count, of_extra, expected):
    cfg = Config(
        h1=H1Config(alpha=alpha, d_significant=d_sig, d_vote=d_sig + extra, min_votes=votes,
                    min_layers=ScaledCount(count, count + of_extra)),
        expected=expected,
    )
    p = tmp_path_factory.mktemp("rt") / "c.yaml"
    p.write_text(yaml.safe_dump(cfg.to_dict()))
    assert load_config(p) == cfg


# -- errors --------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(CircuitgateError, match="config file not found") as e:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(e.value)


def test_invalid_yaml_names_file_and_line(tmp_path):
    p = write(tmp_path, "h1:\n  alpha: 0.1\n  d_vote: : x\n")
    with pytest.raises(CircuitgateError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "line 3" in msg and "not valid YAML" in msg
    assert "\n" not in msg


def test_unknown_top_level_key_is_named_with_the_known_ones(tmp_path):
    p = write(tmp_path, "h6: {alpha: 0.1}\n")
    with pytest.raises(CircuitgateError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "unknown key(s) h6" in msg and "h1, h2, h3, h4, h5, paired, gate, expected" in msg


def test_unknown_nested_key_is_named_with_its_path(tmp_path):
    p = write(tmp_path, "h1:\n  alfa: 0.1\n")
    with pytest.raises(CircuitgateError) as e:
        load_config(p)
    msg = str(e.value)
    assert f"{p}.h1" in msg and "alfa" in msg and "alpha" in msg  # the known keys are listed


@pytest.mark.parametrize("text, fragment", [
    ("- 1\n- 2\n", "expected a mapping, got list"),
    ("h1: 3\n", "h1: expected a mapping, got int"),
    ("h1: {alpha: high}\n", "h1.alpha: expected a number, got 'high'"),
    ("h1: {alpha: true}\n", "h1.alpha: expected a number, got True"),
    ("h1: {min_votes: 2.5}\n", "h1.min_votes: expected an integer"),
    ("h1: {min_layers: 5}\n", "h1.min_layers: expected {count: N, of: M}"),
    ("h1: {min_layers: {count: 5}}\n", "h1.min_layers: expected {count: N, of: M}"),
    ("h1: {min_layers: {count: five, of: 28}}\n", "h1.min_layers: expected {count: N, of: M}"),
    ("expected: [H1]\n", "expected: expected a mapping"),
    ("paired: {require_controls: 1}\n", "paired.require_controls: expected true or false"),
])
def test_malformed_values(tmp_path, text, fragment):
    with pytest.raises(CircuitgateError) as e:
        load_config(write(tmp_path, text))
    assert fragment in str(e.value)


@pytest.mark.parametrize("text, fragment", [
    ("h1: {alpha: 0}\n", "h1.alpha must be in (0, 1)"),
    ("h1: {alpha: 1}\n", "h1.alpha must be in (0, 1)"),
    ("h1: {d_significant: 0.9, d_vote: 0.8}\n", "d_significant <= d_vote"),
    ("h1: {d_significant: -0.1}\n", "d_significant <= d_vote"),
    ("h1: {min_votes: 0}\n", "h1.min_votes must be >= 1"),
    ("h1: {n_bootstrap: -1}\n", "h1.n_bootstrap"),
    ("h1: {n_folds: 1}\n", "h1.n_folds must be >= 2"),
    ("h1: {consistency: 0}\n", "h1.consistency"),
    ("h1: {consistency: 1.5}\n", "h1.consistency"),
    ("h1: {min_layers: {count: 0, of: 28}}\n", "bad scaled count 0/28"),
    ("h1: {min_layers: {count: 29, of: 28}}\n", "bad scaled count 29/28"),
    ("h2: {alpha: 2}\n", "h2.alpha must be in (0, 1)"),
    ("h2: {d_artifact: 1.0}\n", "h2 d thresholds out of order"),
    ("h2: {d_significant: -1}\n", "h2 d thresholds out of order"),
    ("h2: {min_metrics: 6}\n", "h2.min_metrics must be in 1..5"),
    ("h2: {min_metrics: 0}\n", "h2.min_metrics must be in 1..5"),
    ("h2: {min_n: 1}\n", "h2.min_n must be >= 2"),
    ("expected: {h2: supported}\n", "unknown hypothesis 'h2'"),  # H2 in another case: a typo, not an own id
    ("expected: {6-heads: supported}\n", "unknown hypothesis '6-heads'"),
    ("expected: {H6: passed}\n", "expected.H6: 'passed' is not one of"),
    ("h5: {ablation: shuffle}\n", "h5.ablation must be one of zero, mean, resample"),
    ("h5: {metric: 3}\n", "h5.metric: expected a string"),
    ("h5: {pairs: some}\n", "h5.pairs must be one of known, all, got 'some'"),
    ("h5: {max_pairs: -1}\n", "h5.max_pairs must be >= 0 (0: every pair)"),
    ("h5: {min_pairs: 1}\n", "h5.min_pairs must be >= 2"),
    ("h4: {alpha: 1.5}\n", "h4.alpha must be in (0, 1)"),
    ("h3: {layer_fraction: 0}\n", "h3.layer_fraction must be in (0, 1]"),
    ("paired: {correction: holm}\n", "paired.correction must be one of bh, by"),
    ("paired: {stability: 0}\n", "paired.stability must be in (0, 1]"),
    ("paired: {alpha: 1.5}\n", "paired.alpha must be in (0, 1)"),
    ("paired: {n_splits: 0}\n", "paired.n_splits must be >= 1"),
    ("paired: {d_min: -1}\n", "paired.d_min must be >= 0"),
    ("expected: {H1: passed}\n", "expected.H1: 'passed' is not one of supported, not_supported, inconclusive"),
])
def test_out_of_range_values_are_rejected(tmp_path, text, fragment):
    with pytest.raises(CircuitgateError) as e:
        load_config(write(tmp_path, text))
    assert fragment in str(e.value)


def test_expected_takes_an_own_hypothesis():
    """A project's own hypothesis (docs/own-hypothesis.md) is expected by its id like H1-H5."""
    assert Config(expected={"H6": "not_supported", "CodeHeads": "supported"}).expected["H6"] == "not_supported"


def test_boundaries_that_are_allowed():
    assert H1Config(consistency=1.0, d_significant=0.8, d_vote=0.8, n_bootstrap=0).consistency == 1.0
    assert H2Config(min_metrics=5, min_n=2, d_significant=0.0).min_metrics == 5
    assert ScaledCount(3, 3).for_size(3) == 3


# -- ScaledCount properties ----------------------------------------------------------------------

counts = st.integers(1, 1000).flatmap(lambda c: st.tuples(st.just(c), st.integers(c, 10_000)))


@given(counts)
def test_scaled_count_is_exact_at_its_own_size(co):
    count, of = co
    assert ScaledCount(count, of).for_size(of) == count


@given(counts, st.integers(0, 100_000), st.integers(0, 100_000))
def test_scaled_count_is_monotone(co, a, b):
    sc = ScaledCount(*co)
    lo, hi = sorted((a, b))
    assert sc.for_size(lo) <= sc.for_size(hi)


@given(counts, st.integers(0, 100_000))
def test_scaled_count_is_the_integer_ceiling_and_at_least_one(co, n):
    count, of = co
    got = ScaledCount(count, of).for_size(n)
    assert got == max(1, -(-count * n // of))  # exact integer ceiling of count * n / of
    assert got >= 1
    if n:
        assert got >= count * n / of - 1e-9  # never below the proportional share
        assert got == 1 or (got - 1) < count * n / of


@given(st.integers(-5, 0), st.integers(1, 10))
def test_scaled_count_rejects_nonpositive_count(count, of):
    with pytest.raises(CircuitgateError):
        ScaledCount(count, of)


@given(st.integers(2, 100).flatmap(lambda c: st.tuples(st.just(c), st.integers(1, c - 1))))
def test_scaled_count_rejects_of_below_count(co):
    with pytest.raises(CircuitgateError, match="bad scaled count"):
        ScaledCount(*co)

