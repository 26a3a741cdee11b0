"""Load and validate prompt sets; every error names the file and the line (and the pair id if known)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from circuitgate import CircuitgateError

SCHEMA = 1
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Prompt:
    prompt: str
    answer: str
    template: str | None = None


@dataclass(frozen=True)
class Pair:
    """The same fact asked as recall and as reasoning (or, for a control, one task in two templates)."""

    id: str
    recall: Prompt
    reasoning: Prompt


@dataclass(frozen=True)
class PromptSet:
    name: str
    pairs: tuple[Pair, ...]
    controls: tuple[Pair, ...]
    source: str  # file it was read from
    sha256: str  # of the canonical content (not the file bytes: comments and layout do not count)

    def prompts(self, side: str) -> list[str]:
        return [getattr(p, side).prompt for p in self.pairs]

    def answers(self, side: str) -> list[str]:
        return [getattr(p, side).answer for p in self.pairs]

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.pairs]


class _LineLoader(yaml.SafeLoader):
    """A YAML loader whose mappings remember the line they start on, for error messages."""


class _LineDict(dict):
    line: int = 0


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    d = _LineDict(loader.construct_mapping(node, deep=True))
    d.line = node.start_mark.line + 1
    return d


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def builtin_names() -> list[str]:
    folder = resources.files("circuitgate.prompts").joinpath("builtin")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _locate(name_or_file: str | Path) -> Path:
    path = Path(name_or_file).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise CircuitgateError(f"prompt file not found: {path}")
        return path
    if str(name_or_file) in builtin_names():
        return Path(str(resources.files("circuitgate.prompts").joinpath("builtin", f"{name_or_file}.yaml")))
    raise CircuitgateError(
        f"unknown prompt set {str(name_or_file)!r}: not a file, not a built-in set ({', '.join(builtin_names())})"
    )


def _prompt(data: Any, src: str, line: int, context: str) -> Prompt:
    if not isinstance(data, dict):
        raise CircuitgateError(f"{src}:{line}: {context}: expected a mapping with prompt and answer")
    line = getattr(data, "line", line)
    where = f"{src}:{line}: {context}"
    unknown = set(data) - {"prompt", "answer", "template"}
    if unknown:
        raise CircuitgateError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("prompt", "answer"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise CircuitgateError(f"{where}: {key!r} must be a non-empty string")
    template = data.get("template")
    if template is not None and not isinstance(template, str):
        raise CircuitgateError(f"{where}: 'template' must be a string")
    return Prompt(prompt=data["prompt"], answer=data["answer"], template=template)


def _pairs(items: Any, key: str, src: str, doc_line: int) -> tuple[Pair, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise CircuitgateError(f"{src}:{doc_line}: {key!r} must be a list of pairs")
    pairs, seen = [], {}
    for n, item in enumerate(items):
        line = getattr(item, "line", doc_line)
        if not isinstance(item, dict):
            raise CircuitgateError(f"{src}:{line}: {key}[{n}] must be a mapping with id, recall, reasoning")
        pid = item.get("id")
        if not isinstance(pid, str) or not _ID.match(pid):
            raise CircuitgateError(f"{src}:{line}: {key}[{n}] needs an id of letters, digits, '-', '_', '.'")
        where = f"{src}:{line}: pair {pid!r}"
        if pid in seen:
            raise CircuitgateError(f"{where}: duplicate id (first on line {seen[pid]})")
        seen[pid] = line
        missing = [side for side in ("recall", "reasoning") if side not in item]
        if missing:
            raise CircuitgateError(f"{where}: unpaired, missing {' and '.join(missing)}")
        unknown = set(item) - {"id", "recall", "reasoning"}
        if unknown:
            raise CircuitgateError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        pairs.append(Pair(pid, *(_prompt(item[side], src, line, f"pair {pid!r} {side}")
                                for side in ("recall", "reasoning"))))
    return tuple(pairs)


def _canonical_hash(name: str, pairs: tuple[Pair, ...], controls: tuple[Pair, ...]) -> str:
    def enc(ps: tuple[Pair, ...]) -> list:
        return [[p.id, [p.recall.prompt, p.recall.answer], [p.reasoning.prompt, p.reasoning.answer]] for p in ps]

    blob = json.dumps({"schema": SCHEMA, "name": name, "pairs": enc(pairs), "controls": enc(controls)})
    return hashlib.sha256(blob.encode()).hexdigest()


def load_prompt_set(name_or_file: str | Path) -> PromptSet:
    path = _locate(name_or_file)
    src = str(path)
    try:
        doc = yaml.load(path.read_text(), Loader=_LineLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise CircuitgateError(f"{src}:{mark.line + 1 if mark else 1}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(doc, dict):
        raise CircuitgateError(f"{src}:1: a prompt set must be a mapping with schema, name, pairs")
    if doc.get("schema") != SCHEMA:
        raise CircuitgateError(f"{src}:{doc.line}: unsupported schema {doc.get('schema')!r} (this version reads {SCHEMA})")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise CircuitgateError(f"{src}:{doc.line}: missing 'name'")
    unknown = set(doc) - {"schema", "name", "pairs", "controls", "description"}
    if unknown:
        raise CircuitgateError(f"{src}:{doc.line}: unknown key(s) {', '.join(sorted(unknown))}")
    pairs = _pairs(doc.get("pairs"), "pairs", src, doc.line)
    if not pairs:
        raise CircuitgateError(f"{src}:{doc.line}: prompt set {name!r} has no pairs")
    controls = _pairs(doc.get("controls"), "controls", src, doc.line)
    return PromptSet(name, pairs, controls, src, _canonical_hash(name, pairs, controls))
