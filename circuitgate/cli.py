"""The ``circuitgate`` command: list models, build or perturb the organism, compare runs, rebuild a report.

Errors a user can cause end in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from circuitgate import CircuitgateError
from circuitgate.organism.recipe import VARIANTS
from circuitgate.vocabulary import ANALYSIS_METHODS


def _models(args: argparse.Namespace) -> int:
    from circuitgate.models import aliases
    from circuitgate.models.loading import weights_present
    from circuitgate.models.registry import default_alias

    default = default_alias()
    rows = [("alias", "source", "twin", "weights", "description")]
    for name, spec in aliases().items():
        if spec.builtin:
            recipe = VARIANTS[spec.builtin]
            source = f"built in ({recipe.arch}, {recipe.plan})"
        elif spec.packaged:
            source = f"pip {spec.packaged.package} (sha256 {spec.packaged.sha256[:12]})"
        else:
            source = f"hub {spec.hub}"
        mark = " (default)" if name == default else ""
        rows.append((name, source, spec.twin or "-", weights_present(spec), spec.description + mark))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    return 0


def _organism_build(args: argparse.Namespace) -> int:
    from circuitgate.organism import build, read_info

    for name in args.name:
        path = build(name, cache_root=args.cache, force=args.force, progress=not args.quiet, portable=args.portable)
        acc = read_info(path)["accuracy"]
        print(f"{name}: {path} (recall {acc['recall']:.2f}, reasoning {acc['reasoning']:.2f}; "
              f"built in {acc['build_seconds']:.0f} s)")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Exit 0: nothing regressed; 1: something did (the gate's contract, docs/gating.md); 2: bad input (main)."""
    from circuitgate.compare import FORMATS, compare, load_document

    a, b = load_document(args.a), load_document(args.b)
    comparison = compare(a, b, args.label[0], args.label[1], strict=True if args.strict else None)
    text = FORMATS[args.format](comparison)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return comparison.exit_code


def _organism_perturb(args: argparse.Namespace) -> int:
    from circuitgate.organism import ensure_built
    from circuitgate.organism.perturb import parse_targets, perturb

    parse_targets(args.zero)
    out = perturb(ensure_built(args.organism, cache_root=args.cache, progress=not args.quiet), args.out, args.zero,
                  force=args.force)
    print(f"{out}: {args.organism} with {', '.join(args.zero)} zeroed")
    return 0


def _organism_accuracy(args: argparse.Namespace) -> int:
    """Exit 0: every target met under paired (docs/organism.md); 1: a target missed."""
    import json

    from circuitgate import accuracy

    methods = accuracy.check_methods(args.method)
    report = accuracy.measure(methods, cache=args.cache, config=args.config)
    if args.format == "json":
        text = json.dumps({m: {"summary": report.summary(m), "models": [vars(s) for s in report.by_method(m)]}
                           for m in methods}, indent=2) + "\n"
    else:
        text = accuracy.markdown(report) + f"\n{len(report.scores)} runs in {report.seconds:.0f} s\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    short = report.meets_targets("paired") if "paired" in methods else []
    for line in short:
        print(f"circuitgate: target missed under paired: {line}", file=sys.stderr)
    return 1 if short else 0


def _report(args: argparse.Namespace) -> int:
    from circuitgate.report import render_html
    from circuitgate.judging import read_verdicts

    src = Path(args.verdicts)
    if not src.is_file():
        raise CircuitgateError(f"no such file: {src}")
    try:
        doc = read_verdicts(src)
    except ValueError as e:
        raise CircuitgateError(f"{src} is not valid JSON: {e}") from None
    try:
        html = render_html(doc)
    except (KeyError, TypeError, AttributeError) as e:
        raise CircuitgateError(f"{src} is not a verdicts document ({type(e).__name__}: {e})") from None
    out = Path(args.output) if args.output else src.with_name("report.html")
    out.write_text(html)
    print(out)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="circuitgate", description="Test hypotheses about a model's internals.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list registry aliases: source, H4 twin, whether the weights are here"
                   ).set_defaults(func=_models)
    org = sub.add_parser("organism", help="the built-in model organism")
    org_sub = org.add_subparsers(dest="action", required=True)
    b = org_sub.add_parser("build", help="(re)build organisms of the family into the cache")
    b.add_argument("--name", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                   help="which organisms (default: the whole family)")
    b.add_argument("--cache", type=Path, default=None, help="cache root (default: $CIRCUITGATE_CACHE or ~/.cache/circuitgate)")
    b.add_argument("--force", action="store_true", help="rebuild even if a build exists")
    b.add_argument("--portable", action="store_true",
                   help="the weights every x86-64 CPU builds (about 4x the time), cached apart (docs/organism.md)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_organism_build)
    pt = org_sub.add_parser("perturb", help="save a copy of the organism with components zeroed: a deliberately "
                                            "broken checkpoint to try a release gate on")
    pt.add_argument("--organism", default="organism", choices=list(VARIANTS), help="the organism to copy")
    pt.add_argument("--zero", nargs="+", required=True, metavar="TARGET",
                    help="components to zero: mlp-L<i> (down_proj), attn-L<i> (o_proj), head-L<i>H<h> (its o_proj "
                         "columns), neurons-L<i>-B<k> (a neuron block's down_proj columns), neuron-L<i>N<j> (one "
                         "down_proj column)")
    pt.add_argument("--out", type=Path, required=True, help="the new model directory (a plain local model)")
    pt.add_argument("--cache", type=Path, default=None, help="cache root of the organism build")
    pt.add_argument("--force", action="store_true", help="replace --out if it exists")
    pt.add_argument("--quiet", action="store_true", help="no progress bar if the organism must be built")
    pt.set_defaults(func=_organism_perturb)
    acc = org_sub.add_parser("accuracy", help="score the suite's verdicts against the organisms' known truth: the "
                                              "family and damaged copies; exit 1 if a target is missed")
    acc.add_argument("--method", nargs="+", default=list(ANALYSIS_METHODS),
                     help="analysis methods to score (seed: original)")
    acc.add_argument("--format", default="markdown", choices=["markdown", "json"])
    acc.add_argument("--cache", type=Path, default=None, help="cache root of the organism builds")
    acc.add_argument("--config", type=Path, default=None,
                     help="a config file (YAML) every run and the truth's thresholds take (default: none)")
    acc.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    acc.set_defaults(func=_organism_accuracy)
    c = sub.add_parser("compare", help="B judged against A by the gate's rule (skills, verdicts, units: regressed, "
                                       "unresolved, held, added); exit 1 when something regressed")
    c.add_argument("a", help="the reference run's verdicts.json (e.g. the released checkpoint)")
    c.add_argument("b", help="the run to check against it (e.g. the candidate)")
    c.add_argument("--format", default="table", choices=["table", "json", "markdown"],
                   help="markdown: for a pull-request comment")
    c.add_argument("--label", nargs=2, default=["A", "B"], metavar=("A", "B"), help="names of the two runs in the output")
    c.add_argument("--strict", action="store_true",
                   help="unresolved changes fail too (default: B's gate.strict setting)")
    c.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    c.set_defaults(func=_compare)
    r = sub.add_parser("report", help="rebuild report.html from a verdicts.json")
    r.add_argument("verdicts")
    r.add_argument("-o", "--output", default=None, help="default: report.html beside the verdicts file")
    r.set_defaults(func=_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except CircuitgateError as e:
        print(f"circuitgate: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
