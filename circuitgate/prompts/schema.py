"""Load and validate prompt sets; every error names the file and the line (and the pair id if known)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import yaml

from circuitgate import CircuitgateError
from circuitgate.vocabulary import CONTROL_SIDES, SKILLS

SCHEMA = 2  # 2: controls are (task, a, b), the same task under two templates; schema 1 files still load
READS = (1, 2)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Built-in sets that were renamed, old name -> new; the old name still loads, and a document that
# names the old set with the old set's hash reads as the new one (same content, see ``renamed_prompts``).
RENAMED = {"geography-seed": "geography-paper"}


@dataclass(frozen=True)
class Prompt:
    prompt: str
    answer: str
    template: str | None = None
    # Other wordings of the same prompt (same template, same answer) that differ only in filler words:
    # ``PromptSet.matched`` picks, per tokenizer, the wordings that give both sides of a pair (and of a
    # control) the same number of tokens (docs/method.md, "Length matched per tokenizer").
    variants: tuple[str, ...] = ()

    @property
    def wordings(self) -> tuple[str, ...]:
        return (self.prompt, *self.variants)


@dataclass(frozen=True)
class Pair:
    """The same fact asked as recall and as reasoning."""

    id: str
    recall: Prompt
    reasoning: Prompt


@dataclass(frozen=True)
class Control:
    """The null control (docs/method.md flaw 2): the same task, for the same fact, under two templates.

    A test that compares ``a`` with ``b`` the way it compares recall with reasoning must come out
    negative; if it does not, the test separates templates, not tasks.
    """

    id: str
    task: str  # "recall" or "reasoning"
    a: Prompt
    b: Prompt


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")


@dataclass(frozen=True)
class PromptSet:
    name: str
    pairs: tuple[Pair, ...]
    controls: tuple[Control, ...]
    source: str  # file it was read from
    sha256: str  # of the canonical content (not the file bytes: comments and layout do not count)
    schema: int = SCHEMA  # the file's schema

    def prompts(self, side: str) -> list[str]:
        return [getattr(p, side).prompt for p in self.pairs]

    def answers(self, side: str) -> list[str]:
        return [getattr(p, side).answer for p in self.pairs]

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.pairs]

    def control_tasks(self) -> list[str]:
        """The tasks that have controls, in the order recall, reasoning."""
        present = {c.task for c in self.controls}
        return [t for t in SKILLS if t in present]

    def controls_of(self, task: str) -> list[Control]:
        """The controls of one task, in file order."""
        _check(task, SKILLS, "task")
        return [c for c in self.controls if c.task == task]

    def control_prompts(self, task: str, side: str) -> list[str]:
        """Side "a" or "b" of the task's controls, in file order."""
        _check(side, CONTROL_SIDES, "side")
        return [getattr(c, side).prompt for c in self.controls_of(task)]

    def control_answers(self, task: str, side: str) -> list[str]:
        _check(side, CONTROL_SIDES, "side")
        return [getattr(c, side).answer for c in self.controls_of(task)]

    def control_ids(self, task: str) -> list[str]:
        return [c.id for c in self.controls_of(task)]

    @property
    def has_variants(self) -> bool:
        return any(p.variants for pair in self.pairs for p in (pair.recall, pair.reasoning)) or \
            any(p.variants for c in self.controls for p in (c.a, c.b))

    def matched(self, count: Callable[[Sequence[str]], Sequence[int]]) -> "PromptSet":
        """The set as one tokenizer sees it: each pair's two sides (and each control's) in the wordings,
        among their variants, whose token counts by ``count`` (a list of texts -> their lengths) are
        closest, the earliest wordings on ties; variants are then dropped. Length then cannot separate
        the sides of a pair on any tokenizer, and a control differs from its pair only in template, as
        the pairs differ only in task (docs/method.md, "Length matched per tokenizer"). The name and
        hash stay the file's: the choice is a function of the file and the model's tokenizer."""
        if not self.has_variants:
            return self
        sides = [(p.recall, p.reasoning) for p in self.pairs] + [(c.a, c.b) for c in self.controls]
        texts = sorted({w for a, b in sides for w in a.wordings + b.wordings})
        n = dict(zip(texts, count(texts)))
        chosen = [_closest(a, b, n) for a, b in sides]
        pairs = tuple(replace(p, recall=a, reasoning=b) for p, (a, b) in zip(self.pairs, chosen))
        controls = tuple(replace(c, a=a, b=b) for c, (a, b) in zip(self.controls, chosen[len(self.pairs):]))
        return replace(self, pairs=pairs, controls=controls)


def _closest(a: Prompt, b: Prompt, n: dict[str, int]) -> tuple[Prompt, Prompt]:
    """The wordings of a and b with the closest token counts (then the earliest), without variants."""
    _, _, i, j = min((abs(n[x] - n[y]), i + j, i, j)
                     for i, x in enumerate(a.wordings) for j, y in enumerate(b.wordings))
    return replace(a, prompt=a.wordings[i], variants=()), replace(b, prompt=b.wordings[j], variants=())


# libyaml's parser where PyYAML has it: the same documents and marks, about 7x faster (geography.yaml
# 0.34 s -> 0.05 s; a run reads its prompt set twice).
_SafeLoader = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


class _LineLoader(_SafeLoader):
    """A YAML loader whose mappings remember the line they start on, for error messages."""


class _LineDict(dict):
    line: int = 0


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    d = _LineDict(loader.construct_mapping(node, deep=True))
    d.line = node.start_mark.line + 1
    return d


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def default_prompts(spec: Any, method: str) -> str:
    """The prompt set a model runs on when none is named: its registry entry's; an organism's own; the
    paper's 30 prompts under ``--method original`` (to replicate it); else ``geography-completion``, the
    length-matched set with controls the sound method needs (and so does the side-by-side run), in the
    completion form a real model's next tokens answer."""
    if spec.prompts:
        return spec.prompts
    if spec.expectations == "organism":
        return "organism"
    return "geography-paper" if method == "original" else "geography-completion"


def builtin_names() -> list[str]:
    folder = resources.files("circuitgate.prompts").joinpath("builtin")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _locate(name_or_file: str | Path) -> Path:
    path = Path(name_or_file).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise CircuitgateError(f"prompt file not found: {path}")
        return path
    name = RENAMED.get(str(name_or_file), str(name_or_file))
    if name in builtin_names():
        return Path(str(resources.files("circuitgate.prompts").joinpath("builtin", f"{name}.yaml")))
    raise CircuitgateError(
        f"unknown prompt set {str(name_or_file)!r}: not a file, not a built-in set ({', '.join(builtin_names())})"
    )


def _prompt(data: Any, src: str, line: int, context: str) -> Prompt:
    if not isinstance(data, dict):
        raise CircuitgateError(f"{src}:{line}: {context}: expected a mapping with prompt and answer")
    line = getattr(data, "line", line)
    where = f"{src}:{line}: {context}"
    unknown = set(data) - {"prompt", "answer", "template", "variants"}
    if unknown:
        raise CircuitgateError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("prompt", "answer"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise CircuitgateError(f"{where}: {key!r} must be a non-empty string")
    template = data.get("template")
    if template is not None and not isinstance(template, str):
        raise CircuitgateError(f"{where}: 'template' must be a string")
    variants = data.get("variants", [])
    if not isinstance(variants, list) or not all(isinstance(v, str) and v.strip() for v in variants):
        raise CircuitgateError(
            f"{where}: 'variants' must be a list of non-empty strings (other wordings of the prompt)")
    if len(set(variants) | {data["prompt"]}) != len(variants) + 1:
        raise CircuitgateError(f"{where}: 'variants' repeat a wording")
    return Prompt(prompt=data["prompt"], answer=data["answer"], template=template, variants=tuple(variants))


def _entries(items: Any, key: str, kind: str, fields: str, src: str, doc_line: int) -> Iterator[tuple[dict, int, str, str]]:
    """(entry, line, id, where) for each mapping of a list of ``kind``s with unique ids; ``where`` is the
    file:line: kind 'id' prefix of every later error about the entry."""
    if items is None:
        return
    if not isinstance(items, list):
        raise CircuitgateError(f"{src}:{doc_line}: {key!r} must be a list of {key}")
    seen: dict[str, int] = {}
    for n, item in enumerate(items):
        line = getattr(item, "line", doc_line)
        if not isinstance(item, dict):
            raise CircuitgateError(f"{src}:{line}: {key}[{n}] must be a mapping with {fields}")
        eid = item.get("id")
        if not isinstance(eid, str) or not _ID.match(eid):
            raise CircuitgateError(f"{src}:{line}: {key}[{n}] needs an id of letters, digits, '-', '_', '.'")
        where = f"{src}:{line}: {kind} {eid!r}"
        if eid in seen:
            raise CircuitgateError(f"{where}: duplicate id (first on line {seen[eid]})")
        seen[eid] = line
        yield item, line, eid, where


def _pairs(items: Any, key: str, src: str, doc_line: int) -> tuple[Pair, ...]:
    pairs = []
    for item, line, pid, where in _entries(items, key, "pair", "id, recall, reasoning", src, doc_line):
        missing = [side for side in SKILLS if side not in item]
        if missing:
            raise CircuitgateError(f"{where}: unpaired, missing {' and '.join(missing)}")
        unknown = set(item) - {"id", *SKILLS}
        if unknown:
            raise CircuitgateError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        pairs.append(Pair(pid, *(_prompt(item[side], src, line, f"pair {pid!r} {side}")
                                for side in SKILLS)))
    return tuple(pairs)


def _controls(items: Any, src: str, doc_line: int) -> tuple[Control, ...]:
    controls = []
    for item, line, cid, where in _entries(items, "controls", "control", "id, task, a, b", src, doc_line):
        unknown = set(item) - {"id", "task", *CONTROL_SIDES}
        if unknown:
            raise CircuitgateError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        task = item.get("task")
        if task not in SKILLS:
            raise CircuitgateError(f"{where}: 'task' must be recall or reasoning, not {task!r}")
        missing = [side for side in CONTROL_SIDES if side not in item]
        if missing:
            raise CircuitgateError(f"{where}: missing {' and '.join(missing)} (a control is one task in two templates)")
        a, b = (_prompt(item[side], src, line, f"control {cid!r} {side}") for side in CONTROL_SIDES)
        if a.prompt == b.prompt:
            raise CircuitgateError(f"{where}: a and b are the same prompt")
        if a.template is not None and a.template == b.template:
            raise CircuitgateError(f"{where}: a and b have the same template {a.template!r} (a control compares two templates)")
        controls.append(Control(cid, task, a, b))
    return tuple(controls)


def _canonical_hash(schema: int, name: str, pairs: tuple[Pair, ...], controls: tuple[Control, ...]) -> str:
    """sha256 of the content that matters: ids, prompts, their variants, answers, control tasks (not
    templates, comments, layout).

    A schema 1 file hashes exactly as it did under schema 1 (its controls are always empty), and a
    file without variants as it did before they existed.
    """
    def enc(p: Prompt) -> list:
        return [p.prompt, p.answer, list(p.variants)] if p.variants else [p.prompt, p.answer]

    enc_pairs = [[p.id, enc(p.recall), enc(p.reasoning)] for p in pairs]
    enc_controls = [[c.id, c.task, enc(c.a), enc(c.b)] for c in controls]
    blob = json.dumps({"schema": schema, "name": name, "pairs": enc_pairs, "controls": enc_controls})
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
    schema = doc.get("schema")
    if type(schema) is not int or schema not in READS:
        raise CircuitgateError(
            f"{src}:{doc.line}: unsupported schema {schema!r} (this version reads {', '.join(map(str, READS))})"
        )
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise CircuitgateError(f"{src}:{doc.line}: missing 'name'")
    unknown = set(doc) - {"schema", "name", "pairs", "controls", "description"}
    if unknown:
        raise CircuitgateError(f"{src}:{doc.line}: unknown key(s) {', '.join(sorted(unknown))}")
    pairs = _pairs(doc.get("pairs"), "pairs", src, doc.line)
    if not pairs:
        raise CircuitgateError(f"{src}:{doc.line}: prompt set {name!r} has no pairs")
    raw_controls = doc.get("controls")
    if schema == 1 and raw_controls not in (None, []):
        line = getattr(raw_controls[0], "line", doc.line) if isinstance(raw_controls, list) else doc.line
        raise CircuitgateError(
            f"{src}:{line}: controls need schema 2 (each control is id, task, a, b); this file is schema 1"
        )
    controls = _controls(raw_controls, src, doc.line)
    return PromptSet(name, pairs, controls, src, _canonical_hash(schema, name, pairs, controls), schema)


def renamed_prompts(name: str, sha256: str) -> tuple[str, str]:
    """A recorded prompt set (name, hash) under its current name: a renamed built-in whose hash under
    the old name matches its content is the same prompts, so a baseline kept before the rename still
    gates. Anything else (another set, edited content) is returned as it was."""
    if name not in RENAMED:
        return name, sha256
    current = load_prompt_set(RENAMED[name])
    if _canonical_hash(current.schema, name, current.pairs, current.controls) != sha256:
        return name, sha256
    return current.name, current.sha256
