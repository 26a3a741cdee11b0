"""H5's plan (circuitgate/plan.py) against hand-computed values, and the CPU defaults of a model without
registry settings (session.Run.cpu_defaults, registry.yaml's cpu_config)."""

from __future__ import annotations

import math

import pytest

from circuitgate import CircuitgateError
from circuitgate.config import H5Config
from circuitgate.models.adapters import Shape
from circuitgate.plan import FIT, PASS_SLACK, Prompts, measured_targets, padded_tokens, plan_h5, screened_count

# 2 layers, 4 heads of 8, hidden 32, ffn 64: W = 32 + 4 x 8 + 64 = 128 values a token and layer.
SHAPE = Shape(n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, hidden=32, ffn=64)
VOCAB = 100
# Per task three prompts of 4, 4 and 6 tokens with one-token answers: at batch 2, a batch of the two
# 4-token prompts and a batch of the 6-token one.
SWEPT = [Prompts((4, 4, 6), (1, 1, 1))] * 2


def sweep_row(tokens: int, kept: int = 1) -> int:
    """A sweep row by hand: tokens x (7 W + 4 heads x tokens) float32 values + 4 float32 logit vectors."""
    return tokens * (7 * 128 + 4 * 4 * tokens) * 4 + kept * 4 * VOCAB * 4


def screen_row(tokens: int) -> float:
    """A screen row by hand: layers x tokens x (7 W + 3.4 heads x tokens) values + 4 logit vectors."""
    return 2 * tokens * (7 * 128 + 3.4 * 4 * tokens) * 4 + 4 * VOCAB * 4


def plan(**kw):
    args = dict(vocab=VOCAB, dtype_bytes=4, weights_bytes=1000, swept=SWEPT, screened=[], batch_size=2, device="cpu",
                path="exact", cfg=H5Config(), sweeps=[10], seconds_per_token=0.01, held_bytes=5000,
                available_bytes=None)
    return plan_h5(SHAPE, **{**args, **kw})


def budget_for(pass_bytes: float) -> int:
    """The memory available that leaves exactly ``pass_bytes`` for a pass."""
    return math.ceil((pass_bytes + PASS_SLACK) / FIT)


def test_an_exact_plan_counts_rows_time_and_memory_as_by_hand():
    p = plan()
    # At 2,048 rows a pass every batch's 10 targets and 2 patched layers go in one pass each, with a clean
    # copy: batch of 2: (10 + 1) x 2 and (2 + 1) x 2 rows; batch of 1: 11 and 3; per task 42, two tasks 84.
    assert (p.targets, p.pairs, p.sweep_rows, p.screen_rows) == (10, 3, 84, 0)
    assert p.sweep_pass_rows == 22 and p.sweep_max_rows == 2048
    # Sweep token-rows 2 x (22 x 4 + 11 x 6) = 308 at 0.5 forwards each; the patching, each batch once less
    # its last token and then one token a row, 2 x (2 x 3 + 6 + 1 x 5 + 3) = 40 at one; 0.01 s each.
    assert p.seconds == pytest.approx(0.01 * (0.5 * 308 + 40))
    # The fullest pass: 22 rows of 4 tokens (11 rows of 6 tokens hold less).
    assert p.pass_bytes == 22 * sweep_row(4) == 373_120 > 11 * sweep_row(6)
    assert p.peak_bytes == 5000 + PASS_SLACK + 373_120
    assert "10 targets measured exactly on 3 pairs (84 forward rows, 22 a pass)" in p.describe()


def test_the_screen_adds_its_forward_and_backward_rows_at_two_and_a_half_forwards_each():
    # Integrated gradients, 2 steps x 1 group: a clean copy and 2 x 1 x 2 path copies, 5 a prompt.
    p = plan(path="attribution", cfg=H5Config(screen_steps=2, screen_groups=1), screened=[(3, 5)] * 2, sweeps=[4, 2],
             at_most=True)
    assert (p.screen_pairs, p.screen_rows, p.screen_pass_rows) == (2, 20, 10)
    assert p.targets == 6 and p.at_most
    assert p.pass_bytes == pytest.approx(10 * screen_row(5))
    # Token-rows of the sweeps (4 targets and 2, a clean copy each), the patching (2 layers: as above) and
    # the screen.
    sweep = 2 * ((4 + 1) * 2 * 4 + (2 + 1) * 2 * 4 + (4 + 1) * 6 + (2 + 1) * 6)
    patching = 2 * (2 * 3 + (2 + 1) * 2 + 1 * 5 + (2 + 1))
    assert p.seconds == pytest.approx(0.01 * (0.5 * sweep + patching + 2.5 * 20 * 5))
    assert p.describe().startswith("attribution screen on 2 pairs (20 forward-and-backward rows")


def test_rows_per_pass_are_the_most_that_fit_the_memory_available():
    # 100,000 bytes for a pass: the 2-prompt batch takes its minimum, a clean copy and one target (4 rows,
    # 67,840 bytes); the 6-token prompt alone 3 copies (76,224), not 4 (101,632): max_rows 3.
    p = plan(available_bytes=budget_for(100_000))
    assert p.sweep_max_rows == 3 and p.pass_bytes == 3 * sweep_row(6) == 76_224
    # Passes of 3 rows: per task 2 x (10 + 10) + 2 x (2 + 2) rows for the 2-prompt batch (one target a pass),
    # 1 x (10 + 5) + 1 x (2 + 1) for the other (two a pass).
    assert p.sweep_rows == 2 * (40 + 8 + 15 + 3)


def test_a_passs_memory_does_not_grow_with_the_pairs():
    def pairs(n: int) -> list[Prompts]:
        return [Prompts((4,) * n, (1,) * n)] * 2

    few = plan(available_bytes=budget_for(100_000), swept=pairs(4))
    many = plan(available_bytes=budget_for(100_000), swept=pairs(400))
    assert many.pass_bytes == few.pass_bytes <= 100_000 and many.sweep_max_rows == few.sweep_max_rows
    assert many.sweep_rows > 50 * few.sweep_rows


def test_a_plan_that_cannot_fit_one_copy_of_one_batch_names_the_setting_in_one_line():
    # 60,000 bytes: batch 2's smallest pass (2 x 2 rows of 4 tokens: 67,840) does not fit; at batch 1 every
    # smallest pass (2 rows: at most 50,816) does.
    with pytest.raises(CircuitgateError) as e:
        plan(available_bytes=budget_for(60_000))
    message = str(e.value)
    assert "\n" not in message and message.startswith("H5 does not fit in memory: one exact sweep pass of 2 prompts")
    assert message.endswith("set --batch-size 1")
    assert plan(available_bytes=budget_for(60_000), batch_size=1).sweep_max_rows >= 1
    # Nothing fits at any batch in float32: a narrower dtype is the setting; in bfloat16 more memory.
    with pytest.raises(CircuitgateError, match=r"set --dtype bfloat16$"):
        plan(available_bytes=budget_for(1_000))
    with pytest.raises(CircuitgateError, match=r"more memory is free \(--device cuda\)$"):
        plan(available_bytes=budget_for(1_000), dtype_bytes=2)


def test_the_screen_too_must_fit():
    # 70,000 bytes hold the sweep's smallest pass (67,840), not the screen's (2 rows of 5 tokens: 80,320).
    cfg = H5Config(screen_steps=2, screen_groups=1)
    with pytest.raises(CircuitgateError, match=r"one attribution screen pass of 2 prompts x 5 tokens .* set --batch-size 1$"):
        plan(path="attribution", cfg=cfg, screened=[(3, 5)] * 2, available_bytes=budget_for(70_000))


def test_without_a_measured_memory_every_pass_takes_the_cap():
    assert plan(device="cuda").sweep_max_rows == 512 and plan(seconds_per_token=None).seconds is None


def test_targets_measured_are_counted_as_the_screen_picks_them():
    # The top 2 x top_k per skill (16 at most, over two skills) and the fraction of the rest.
    assert screened_count(330, 4, 0.05) == 16 + math.ceil(0.05 * 314) == 32
    assert screened_count(10, 4, 0.5) == 10 and screened_count(0, 4, 0.5) == 0
    cfg = H5Config(top_k=4, random_fraction=0.05, neuron_random_fraction=0.0005)
    # smollm2: 330 components, 46,080 neurons, 40 H3 sets (each with its control).
    assert measured_targets("attribution", cfg, 330, 46_080, 40) == (32 + 16 + 24, 2 * (16 + 2))
    assert measured_targets("exact", cfg, 330, 46_080, 40) == (330, 80)


def test_a_forward_is_timed_over_its_padded_tokens():
    assert padded_tokens([3, 5, 4], 2) == 2 * 4 + 1 * 5


# -- CPU defaults -----------------------------------------------------------------------------------
def config_only(directory, layers: int, heads: int):
    """A local model directory holding a config.json only (what the decision reads)."""
    from transformers import LlamaConfig

    LlamaConfig(num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads, hidden_size=4 * heads,
                intermediate_size=32, vocab_size=64).save_pretrained(directory)
    return directory


def test_an_unregistered_local_model_on_the_cpu_gets_the_cpu_defaults_which_a_config_file_overrides(tmp_path):
    from circuitgate.models.registry import aliases, cpu_config
    from circuitgate.session import Run, Settings

    big = config_only(tmp_path / "big", layers=8, heads=8)  # 8 x (2 + 8) = 80 targets > h5.exact_max 64
    run = Run(Settings(model=str(big), device="cpu"))
    h5 = run.config.h5
    assert run.cpu_defaults
    assert (h5.pairs, h5.max_pairs, h5.screen, h5.top_k, h5.screen_steps, h5.neuron_random_fraction) == \
        ("known", 24, "attribution", 4, 1, 0.0005)
    assert cpu_config() == aliases()["smollm2"].config  # smollm2's measured CPU-sized H5, one place
    override = tmp_path / "c.yaml"
    override.write_text("h5: {top_k: 6, pairs: all}\n")
    h5 = Run(Settings(model=str(big), device="cpu", config=str(override))).config.h5
    assert (h5.top_k, h5.pairs, h5.max_pairs, h5.screen_steps) == (6, "all", 24, 1)  # key by key


def test_the_cpu_defaults_leave_small_models_organisms_and_registered_models_alone(tmp_path):
    from circuitgate.session import Run, Settings

    small = config_only(tmp_path / "small", layers=2, heads=4)  # 12 targets: measured exactly, as by default
    assert not Run(Settings(model=str(small), device="cpu")).cpu_defaults
    assert Run(Settings(model=str(small), device="cpu")).config.h5 == H5Config()
    assert not Run(Settings(model="organism", device="cpu")).cpu_defaults
    assert not Run(Settings(model="smollm2", device="cpu")).cpu_defaults  # its own registry settings
    # A hub id the registry does not know is a pretrained model: its config need not be here to decide.
    assert Run(Settings(model="someone/some-model", device="cpu")).cpu_defaults
