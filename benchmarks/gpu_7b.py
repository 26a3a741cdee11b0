"""GPU benchmark at Qwen2.5-7B's shape: random bf16 weights, no download, one JSON of figures.

Times, on the device, each part of a real run at the paper's scale: activation extraction (H1-H3's
input), H3's statistics over all 530,432 neurons, the attribution screen (plain attribution patching
and the default grouped integrated gradients), and the exact confirmation of targets by the ablation
engine, each as a ratio to a plain HF forward (and forward+backward) of the same batch measured in the
same process. Peak allocated memory is recorded.

    python benchmarks/gpu_7b.py --out gpu-7b.json            # on a GPU machine
    python benchmarks/gpu_7b.py --smoke --device cpu --out x  # a tiny shape: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

# Qwen2.5-7B-Instruct's config (hidden 3584, 28 layers, 28 query heads over 4 KV heads, 18,944 MLP
# neurons per layer, a 152k vocabulary).
QWEN7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
              num_key_value_heads=4, vocab_size=152064)
SMOKE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=512)
N_WORDS = 500  # the word-level tokenizer's vocabulary: prompts are random words


def random_model(shape: dict[str, int], device: str, dtype: str, seed: int = 0) -> Any:
    """A LoadedModel around a randomly initialised Qwen2 of ``shape`` with a word-level tokenizer."""
    from nnsight.modeling.transformers import TransformersModel
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from circuitgate.models.adapters import Shape, adapter_for
    from circuitgate.models.loading import DTYPES, LoadedModel
    from circuitgate.models.registry import ModelSpec

    words = ["<pad>", "<unk>", "<eos>"] + [f"w{i}" for i in range(N_WORDS)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                        eos_token="<eos>", padding_side="left")
    config = Qwen2Config(**shape, pad_token_id=0, eos_token_id=2, attn_implementation="eager")
    torch.manual_seed(seed)
    with torch.device(device):
        hf = Qwen2ForCausalLM(config).to(DTYPES[dtype]).eval()
    model = TransformersModel(hf, task="text-generation", tokenizer=tokenizer, dispatch=True)
    return LoadedModel(spec=ModelSpec(name="random-qwen2.5-7b-shape"), model=model, hf=hf, tokenizer=tokenizer,
                       adapter=adapter_for("qwen2"), shape=Shape.from_config(config), device=device, dtype=dtype,
                       model_id="random", sha256="0" * 64)


def prompts(n: int, length: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    texts = [" ".join(f"w{j}" for j in rng.integers(3, N_WORDS, length)) for _ in range(n)]
    return texts, [f"w{j}" for j in rng.integers(3, N_WORDS, n)]


def timed(fn: Callable[[], Any], device: str, repeat: int = 1) -> float:
    """Median seconds of ``fn`` (after one warm-up call), synchronised on a GPU."""
    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()
    fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from circuitgate.activations import Activations
    from circuitgate.attribution import attribution_screen
    from circuitgate.config import H3Config
    from circuitgate.extract import extract, left_pad, tokenize
    from circuitgate.ids import head_target
    from circuitgate.interventions import Target, ablation_sweep
    from circuitgate.methods.original import analyse_h3

    shape = SMOKE if args.smoke else QWEN7B
    loaded = random_model(shape, args.device, args.dtype)
    texts, answers = prompts(args.prompts, args.length, seed=1)
    b = args.batch_size
    ids, mask = left_pad(tokenize(loaded, texts[:b]), 0)
    ids, mask = ids.to(args.device), mask.to(args.device)

    def forward() -> None:
        with torch.no_grad():
            loaded.hf(input_ids=ids, attention_mask=mask, logits_to_keep=1)

    def forward_backward() -> None:
        loaded.hf.zero_grad(set_to_none=True)
        with torch.enable_grad():
            out = loaded.hf(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits
            out[:, -1].logsumexp(-1).sum().backward()
        loaded.hf.zero_grad(set_to_none=True)

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fig: dict[str, Any] = {"shape": shape, "device": args.device, "dtype": args.dtype, "batch": b,
                           "prompt_words": args.length, "n_prompts": args.prompts}
    fig["forward_s"] = timed(forward, args.device, args.repeat)
    fig["forward_backward_s"] = timed(forward_backward, args.device, args.repeat)
    fig["extract_batch_s"] = timed(lambda: extract(loaded, texts[:b], batch_size=b, progress=False), args.device,
                                   args.repeat)
    acts = extract(loaded, texts, batch_size=b, progress=False)
    half = len(texts) // 2
    side = [Activations(acts.resid[s], acts.attn[s], acts.lengths[s], acts.neurons[s], acts.gate[s])
            for s in (slice(0, half), slice(half, 2 * half))]
    fig["h3_statistics_s"] = timed(lambda: analyse_h3(side[0], side[1], H3Config()), args.device)
    for name, steps, groups in (("screen_atp", 1, 1), ("screen_grouped_ig", 4, 32)):
        fig[f"{name}_batch_s"] = timed(lambda: attribution_screen(loaded, texts[:b], answers[:b], steps=steps,
                                                                  groups=groups, batch_size=b, progress=False),
                                       args.device)
    targets = [Target(head_target(i, 0), "head", i, head=0) for i in range(min(8, shape["num_hidden_layers"]))]
    sweep = timed(lambda: ablation_sweep(loaded, texts[:b], answers[:b], targets, batch_size=b, progress=False),
                  args.device, args.repeat)
    clean = timed(lambda: ablation_sweep(loaded, texts[:b], answers[:b], [], batch_size=b, progress=False),
                  args.device, args.repeat)
    fig["confirmation_per_target_s"] = (sweep - clean) / len(targets)
    for key in ("extract_batch_s", "confirmation_per_target_s"):
        fig[key.replace("_s", "_per_forward")] = fig[key] / fig["forward_s"]
    for key in ("screen_atp_batch_s", "screen_grouped_ig_batch_s"):
        fig[key.replace("_s", "_per_forward_backward")] = fig[key] / fig["forward_backward_s"]
    if args.device == "cuda":
        fig["max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        fig["gpu"] = torch.cuda.get_device_name()
    fig["torch"] = torch.__version__
    fig["platform"] = platform.platform()
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="the JSON file of figures")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--prompts", type=int, default=64, help="prompts for extraction and H3 (half per task)")
    p.add_argument("--length", type=int, default=20, help="words per prompt")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="a tiny shape instead of Qwen2.5-7B's")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device (use --device cpu --smoke to check the script)")
    figures = run(args)
    args.out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
