"""Validate the attribution screen (circuitgate/attribution.py) against exhaustive exact ablation.

For each model and task (recall, reasoning) it runs the screen in three variants: plain attribution
patching (atp, steps=1), integrated gradients along one joint path per site kind (ig-joint: EAP-IG's
path, and the research prototype's; --joint-steps) and the default, integrated gradients along
--groups paths per site kind (ig; --steps); and the exact sweep (``ablation_sweep``) over every head,
attention output, MLP output, an organism's neuron blocks and every single neuron (its own
``Target``). It reports per target group (components: heads, sublayers and blocks; neurons) how the
screen's mean estimated drop agrees with the exact mean drop (circuitgate.stats.agreement): recall of
the exact top-k within the screen's top-k and top-2k, AUROC and Spearman over the non-negligible
targets, against the exact logit_diff drop (the quantity the screen estimates) and the exact accuracy
drop (what H5 classifies by). k: components, the number of targets whose exact accuracy drop reaches
0.1 (H5's tau); neurons, --neuron-k. On an organism it also checks that every planted component that
hurts a skill in its ground truth (organism.json) is within the screen's top-2k for that skill.
Timing: each screen and the exact sweep against one plain forward and backward of the same batches.

Run from the repository root with circuitgate importable (installed, or PYTHONPATH=.):

    CIRCUITGATE_CACHE=/tmp/cg4 python benchmarks/validate_screen.py organism organism-llama --out screen.json
    python benchmarks/validate_screen.py --model smollm2 --prompts geography-completion --pairs known \
        --max-pairs 8 --neuron-layers 26 27 28 29 --variant atp=1x1 --variant ig-small=2x8 --variant ig=4x32

On a real model the exhaustive exact sweep over every single neuron is out of a CPU's reach (smollm2:
46,080 neurons at about 0.6 s each per 8 prompts), so ``--neuron-sample N`` measures N neurons drawn
at random (seeded) exactly and compares the screen with them on that sample, and ``--neuron-layers``
every neuron of the named layers (a late layer's ablation replays the clean layers below it, so it
costs a fraction of a forward): every head and sublayer is still measured (docs/validation.md's smollm2
figures are the command above; the random sample of 768 found no neuron with a non-negligible
effect). ``--pairs known`` keeps the pairs the clean model answers on both tasks (H5's ``pairs:
known``) and ``--max-pairs`` a stratified subsample of them (H5's ``max_pairs``).

Prints a markdown table per model; writes everything (per-target exact and estimated drops included)
to --out as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from circuitgate.analyses.h5_targets import chosen_pairs
from circuitgate.attribution import Attribution, attribution_screen
from circuitgate.expectations import neuron_sets
from circuitgate.extract import left_pad, tokenize
from circuitgate.interventions import Target, ablation_sweep, answer_token_ids, plan_batches, standard_targets
from circuitgate.models import load_model, resolve
from circuitgate.organism import ensure_built
from circuitgate.prompts import load_prompt_set
from circuitgate.stats import screen_agreement
from circuitgate.truth import is_organism_dir, read_info
from circuitgate.vocabulary import SKILLS
TAU_ACCURACY = 0.1  # H5's min_drop: a target hurts a skill when it costs 10% of the items


DEFAULT_VARIANTS = {"atp": (1, 1), "ig-joint": (16, 1), "ig": (4, 32)}  # name: (steps, groups)


def _targets(loaded: Any, model_dir: Path | None, neuron_sample: int = 0, seed: int = 0,
             neuron_layers: Sequence[int] = ()) -> tuple[list[Target], list[Target]]:
    """(components, single neurons): every head, sublayer and organism neuron block; every neuron (of
    ``neuron_layers`` if given), or ``neuron_sample`` of them drawn at random (in layer order)."""
    components = standard_targets(loaded.shape)
    if model_dir is not None and is_organism_dir(model_dir):
        components += [Target(tid, "neurons", layer, neurons=idx)
                       for tid, (layer, idx) in neuron_sets(read_info(model_dir)).items()]
    n_layers, ffn = loaded.shape.n_layers, loaded.shape.ffn
    flat = np.arange(n_layers * ffn)
    if neuron_layers:
        flat = flat[np.isin(flat // ffn, list(neuron_layers))]
    if 0 < neuron_sample < len(flat):
        flat = np.sort(np.random.default_rng(seed).choice(flat, size=neuron_sample, replace=False))
    neurons = [Target(f"n-L{i // ffn}N{i % ffn}", "neurons", int(i // ffn), neurons=(int(i % ffn),)) for i in flat]
    return components, neurons


def validated_pairs(loaded: Any, ps: Any, pairs: str, max_pairs: int, seed: int, batch_size: int) -> np.ndarray:
    """Indices of the pairs to validate on, as H5 chooses them (``h5.pairs``, ``h5.max_pairs``)."""
    scores = None
    if pairs == "known":
        scores = {side: ablation_sweep(loaded, ps.prompts(side), ps.answers(side), [], candidates=ps.answers(side),
                                       batch_size=batch_size).clean for side in SKILLS}
    return chosen_pairs(ps, pairs, max_pairs, seed, scores)


def forward_backward_seconds(loaded: Any, prompts: Sequence[str], answers: Sequence[str], batch_size: int) -> float:
    """One plain HF forward and backward (answer log-probability, weight gradients as in training) of
    the screen's batches: the unit the screen's cost is measured in."""
    rows = tokenize(loaded, prompts)
    answer_ids = answer_token_ids(loaded.tokenizer, answers)
    start = time.perf_counter()
    for batch in plan_batches([len(r) for r in rows], batch_size):
        ids, mask = left_pad([rows[i] for i in batch], loaded.tokenizer.pad_token_id)
        logits = loaded.hf(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1]
        logits.log_softmax(-1)[torch.arange(len(batch)), torch.as_tensor(answer_ids[batch])].sum().backward()
    seconds = time.perf_counter() - start
    loaded.hf.zero_grad(set_to_none=True)
    return seconds


def _agreements(est: np.ndarray, exact_ld: np.ndarray, exact_acc: np.ndarray, k: int, tau_logit: float) -> dict:
    out = {"logit_diff": dataclasses.asdict(screen_agreement(est, exact_ld, tau=tau_logit, k=k))}
    if (exact_acc >= TAU_ACCURACY).any():
        out["accuracy"] = dataclasses.asdict(screen_agreement(est, exact_acc, tau=TAU_ACCURACY))
    return out


def _planted(info: dict, ablation: str, task: str, ids: list[str], est: np.ndarray) -> dict:
    """Rank (1 = largest estimated drop) among the components of each target the ground truth says
    hurts ``task`` (its class is the task or mixed), and whether it is within the top 2k, k = their count."""
    rows = info["ground_truth"]["ablations"][ablation]
    planted = [tid for tid in ids if tid in rows and rows[tid]["class"] in (task, "mixed")]
    rank = {tid: int((est > est[ids.index(tid)]).sum() + (est == est[ids.index(tid)]).sum()) for tid in planted}
    k = len(planted)
    return {"k": k, "ranks": rank, "within_2k": all(r <= 2 * k for r in rank.values()),
            "missed": sorted(t for t, r in rank.items() if r > 2 * k)}


def validate_model(model: str, prompts_name: str, *, ablation: str = "zero",
                   variants: dict[str, tuple[int, int]] | None = None, batch_size: int = 16, neuron_k: int = 20,
                   tau_logit: float = 0.2, pairs: str = "all", max_pairs: int = 0, neuron_sample: int = 0,
                   neuron_layers: Sequence[int] = (), seed: int = 0, progress: bool = False) -> dict:
    """Every number of the validation for one model (an organism's directory, a model directory or a
    registry name), both tasks, every screen variant (name: (steps, groups))."""
    spec = resolve(model)
    loaded = load_model(spec, device="cpu", dtype="float32", progress=False)
    model_dir = Path(model) if Path(model).is_dir() else None
    ps = load_prompt_set(prompts_name)
    rows = validated_pairs(loaded, ps, pairs, max_pairs, seed, batch_size)
    components, neurons = _targets(loaded, model_dir, neuron_sample, seed, neuron_layers)
    comp_ids = [t.id for t in components]
    neuron_layer = np.array([t.layer for t in neurons])
    neuron_index = np.array([t.neurons[0] for t in neurons])
    info = read_info(model_dir) if model_dir is not None and is_organism_dir(model_dir) else None
    task_prompts = {task: [ps.prompts(task)[i] for i in rows] for task in SKILLS}
    reference = task_prompts["recall"] + task_prompts["reasoning"]  # mean ablation: both tasks alike, as H5
    variants = variants or DEFAULT_VARIANTS
    result: dict[str, Any] = {"model": model, "prompts": prompts_name, "ablation": ablation,
                              "variants": variants, "shape": dataclasses.asdict(loaded.shape),
                              "pairs": {"selection": pairs, "n": len(rows), "of": len(ps.pairs)},
                              "neurons_measured": len(neurons), "neuron_layers": list(neuron_layers), "tasks": {}}
    for task in SKILLS:
        prompts, answers = task_prompts[task], [ps.answers(task)[i] for i in rows]
        common = {"ablation": ablation, "reference": reference, "candidates": answers, "batch_size": batch_size,
                  "progress": progress}
        start = time.perf_counter()
        sweep = ablation_sweep(loaded, prompts, answers, components + neurons, max_rows=2048,
                               desc=f"exact ({task})", **common)
        exact_seconds = time.perf_counter() - start

        def drops(targets: list[Target], name: str) -> np.ndarray:
            clean = sweep.clean.get(name)
            return np.array([(clean - sweep.ablated[t.id].get(name)).mean() for t in targets])

        exact = {group: {m: drops(ts, m) for m in ("logit_diff", "accuracy")}
                 for group, ts in (("components", components), ("neurons", neurons))}
        k_comp = max(1, int((exact["components"]["accuracy"] >= TAU_ACCURACY).sum()))
        fb = min(forward_backward_seconds(loaded, prompts, answers, batch_size) for _ in range(3))
        task_out: dict[str, Any] = {
            "n_prompts": len(prompts), "exact_seconds": exact_seconds, "forward_backward_seconds": fb,
            "component_ids": comp_ids,
            "exact": {g: {m: v.tolist() for m, v in d.items()} for g, d in exact.items()},
            "clean_accuracy": float(sweep.clean.accuracy.mean()), "screens": {},
        }
        for variant, (n_steps, n_groups) in variants.items():
            start = time.perf_counter()
            screen: Attribution = attribution_screen(loaded, prompts, answers, steps=n_steps, groups=n_groups,
                                                     desc=f"{variant} ({task})", **common)
            seconds = time.perf_counter() - start
            est = {"components": screen.estimates(components).mean(0),
                   "neurons": screen.neurons[:, neuron_layer, neuron_index].mean(0, dtype=np.float64)}
            entry = {
                "steps": n_steps, "groups": n_groups, "seconds": seconds, "ratio_to_forward_backward": seconds / fb,
                "estimate": {g: v.tolist() for g, v in est.items()},
                "agreement": {
                    "components": _agreements(est["components"], exact["components"]["logit_diff"],
                                              exact["components"]["accuracy"], k_comp, tau_logit),
                    "neurons": _agreements(est["neurons"], exact["neurons"]["logit_diff"],
                                           exact["neurons"]["accuracy"], neuron_k, tau_logit),
                },
            }
            if info is not None:
                entry["planted"] = _planted(info, ablation, task, comp_ids, est["components"])
            task_out["screens"][variant] = entry
        result["tasks"][task] = task_out
    return result


def _fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.2f}"


def table(result: dict) -> str:
    """Markdown: one row per task x screen x target group x exact metric."""
    spec = ", ".join(f"{v}: {s} steps x {g} groups" for v, (s, g) in result["variants"].items())
    n_neurons = result["shape"]["n_layers"] * result["shape"]["ffn"]
    sample = result.get("neurons_measured", n_neurons)
    scope = f"{result['pairs']['n']} pairs" if "pairs" in result else "every pair"
    layers = result.get("neuron_layers")
    scope += "" if sample == n_neurons else f", {sample} of {n_neurons} neurons" + (
        f" (every neuron of layers {', '.join(map(str, layers))})" if layers else "")
    lines = [f"### {result['model']} ({result['ablation']} ablation; {scope}; {spec})", "",
             "| task | screen | targets | vs exact | k | recall@k | recall@2k | AUROC (n+) | Spearman (n) "
             "| planted in top-2k | screen s | x fwd+bwd |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for task, t in result["tasks"].items():
        for variant, s in t["screens"].items():
            for group, by_metric in s["agreement"].items():
                for metric, a in by_metric.items():
                    planted = ""
                    if group == "components" and "planted" in s and metric == "accuracy":
                        p = s["planted"]
                        missed = ", ".join(f"{m} #{p['ranks'][m]}" for m in p["missed"])
                        planted = "yes" if p["within_2k"] else f"no: {missed}"
                        planted += f" (k={p['k']})"
                    lines.append(
                        f"| {task} | {variant} | {group} | {metric} | {a['k']} | {_fmt(a['recall_k'])} | "
                        f"{_fmt(a['recall_2k'])} | {_fmt(a['auroc'])} ({a['n_positive']}) | {_fmt(a['spearman'])} "
                        f"({a['n_spearman']}) | {planted} | {s['seconds']:.1f} | "
                        f"{s['ratio_to_forward_backward']:.1f} |")
        lines.append(f"| {task} | exact | all | | | | | | | | {t['exact_seconds']:.1f} | "
                     f"{t['exact_seconds'] / t['forward_backward_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("organisms", nargs="*", default=[], help="built-in organisms (default: organism)")
    parser.add_argument("--model", action="append", default=[],
                        help="a model directory or registry name, e.g. smollm2 (repeatable)")
    parser.add_argument("--prompts", default="organism", help="prompt set (default: organism)")
    parser.add_argument("--ablation", default="zero", choices=("zero", "mean"))
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=STEPSxGROUPS",
                        help="a screen to validate (repeatable; default: atp=1x1, ig-joint=16x1 and ig=4x32, "
                             "the library's default)")
    parser.add_argument("--pairs", default="all", choices=("all", "known"), help="as h5.pairs (default all)")
    parser.add_argument("--max-pairs", type=int, default=0, help="as h5.max_pairs (default 0: every pair)")
    parser.add_argument("--neuron-sample", type=int, default=0,
                        help="measure this many single neurons, drawn at random (default 0: every neuron)")
    parser.add_argument("--neuron-layers", type=int, nargs="+", default=[], metavar="L",
                        help="measure every neuron of these layers only (an ablation in a late layer replays "
                             "the layers below it, so late layers are cheap)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--neuron-k", type=int, default=20, help="exact top-k of single neurons (default 20)")
    parser.add_argument("--tau-logit", type=float, default=0.2,
                        help="non-negligible exact logit_diff drop, for AUROC and Spearman (default 0.2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: docs/nnsight.md)")
    parser.add_argument("--out", type=Path, default=Path("screen_validation.json"))
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        variants = {name: (int(steps), int(groups)) for name, spec in (v.split("=", 1) for v in args.variant)
                    for steps, groups in [spec.lower().split("x", 1)]}
    except ValueError:
        parser.error(f"--variant takes NAME=STEPSxGROUPS, e.g. ig=4x32 (got {args.variant})")
    names = args.organisms or ([] if args.model else ["organism"])
    models = [str(ensure_built(name, progress=args.progress)) for name in names] + args.model
    results = []
    for model in models:
        res = validate_model(model, args.prompts, ablation=args.ablation, variants=variants or None,
                             batch_size=args.batch_size, neuron_k=args.neuron_k, tau_logit=args.tau_logit,
                             pairs=args.pairs, max_pairs=args.max_pairs, neuron_sample=args.neuron_sample,
                             neuron_layers=args.neuron_layers, seed=args.seed, progress=args.progress)
        results.append(res)
        print(table(res), end="\n\n", flush=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
