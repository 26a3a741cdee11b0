"""The ``circuitgate`` command: list models, build the organism, rebuild a report.

Errors a user can cause end in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from circuitgate import CircuitgateError


def _models(args: argparse.Namespace) -> int:
    from circuitgate.models import aliases
    from circuitgate.models.registry import default_alias

    default = default_alias()
    for name, spec in aliases().items():
        target = f"built-in ({spec.builtin})" if spec.builtin else spec.hub
        mark = " (default)" if name == default else ""
        print(f"{name:<16} {target:<36} {spec.description}{mark}")
    return 0


def _organism_build(args: argparse.Namespace) -> int:
    from circuitgate.organism import build, read_info

    for arch in args.arch:
        path = build(arch, cache_root=args.cache, force=args.force, progress=not args.quiet)
        acc = read_info(path)["accuracy"]
        print(f"{arch}: {path} (recall {acc['recall']:.2f}, reasoning {acc['reasoning']:.2f})")
    return 0


def _report(args: argparse.Namespace) -> int:
    from circuitgate.report import render_html
    from circuitgate.verdicts import read_verdicts

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
    sub.add_parser("models", help="list registry aliases").set_defaults(func=_models)
    org = sub.add_parser("organism", help="the built-in model organism")
    org_sub = org.add_subparsers(dest="action", required=True)
    b = org_sub.add_parser("build", help="(re)build the organism into its cache")
    b.add_argument("--arch", nargs="+", default=["qwen2", "llama"], choices=["qwen2", "llama"])
    b.add_argument("--cache", type=Path, default=None, help="cache root (default: $CIRCUITGATE_CACHE or ~/.cache/circuitgate)")
    b.add_argument("--force", action="store_true", help="rebuild even if a build exists")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_organism_build)
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
