"""The invented world the organism learns, and its prompt set.

Countries have two-word names ("vel mora"): a probe found that with one-token names the capital lookup
did not live in the MLPs (attention copied it straight off the embedding), and the point of the organism
is a recall skill stored the way the paper assumes facts are stored. First and second words are shared
between countries, so a fact belongs to the combination, not to either word.

Recall asks facts stored in the weights. Reasoning gives two facts in the prompt and asks for their
composition ("k7 is in vel mora . vel mora is in q3 . k7 is in" -> "q3"). Symbols are invented tokens,
and every (symbol, symbol) and (country, answer symbol) combination used in a probe is held out of the
training data, so the answer can only come from the context.

Length and template (SEED_METHOD.md flaw 2): a short recall question (r0-r4, 5-6 words) is a third of
a reasoning prompt's length, so every recall template also has a long form (r5-r9: rK+5 is rK after
the filler) that puts two irrelevant facts of the reasoning form, about symbols only, before the same
question ("h0 is in q7 . w3 is in f2 . the continent of vel mora is" -> its continent). The filler
never names a country, a capital or a continent, and is drawn afresh for every training item, so the
answer is still a stored fact. The main pairs use long forms, each paired with a reasoning template
of exactly its token length (15 or 16 tokens). The controls mirror the pairs: the same task for the
same item under the other template of equal length and the same question type (recall r6 <-> r9,
r7 <-> r8 with the same filler; reasoning s0 <-> s1, s2 <-> s3 on the same held-out probe), so only
the template changes, as between the two sides of a pair only the task does.

Run ``python -m circuitgate.organism`` to regenerate ``circuitgate/prompts/builtin/organism.yaml``.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from pathlib import Path

import yaml

from circuitgate.organism.recipe import Recipe

# (template, fact) — the fact names the Country field that answers it.
SHORT_RECALL_TEMPLATES: dict[str, tuple[str, str]] = {
    "r0": ("the capital of {c} is", "capital"),
    "r1": ("{c} has the capital", "capital"),
    "r2": ("the continent of {c} is", "continent"),
    "r3": ("{c} lies on the continent", "continent"),
    "r4": ("{c} is ruled from", "capital"),
}
# Two facts of the reasoning form about four distinct symbols (10 tokens): neutral context, since no
# symbol answers a recall question. With it a recall question is as long as a reasoning prompt.
FILLER = "{d} is in {e} . {f} is in {g} . "
FILLER_FIELDS = ("d", "e", "f", "g")
# Long recall template -> the short one it extends: r5..r9 are r0..r4 after the filler (15 or 16 tokens).
SHORT_OF_LONG: dict[str, str] = {
    f"r{k + len(SHORT_RECALL_TEMPLATES)}": f"r{k}" for k in range(len(SHORT_RECALL_TEMPLATES))
}
LONG_OF_SHORT: dict[str, str] = {short: long for long, short in SHORT_OF_LONG.items()}
RECALL_TEMPLATES: dict[str, tuple[str, str]] = {
    **SHORT_RECALL_TEMPLATES,
    **{long: (FILLER + SHORT_RECALL_TEMPLATES[short][0], SHORT_RECALL_TEMPLATES[short][1])
       for long, short in SHORT_OF_LONG.items()},
}
# {a} is in {c}, {c} is in {b}; the answer is always {b}. The fact order varies (s1, s3) so the answer's
# position in the prompt is not fixed, and s2, s3 add a word so the query is not always the same span.
REASONING_TEMPLATES: dict[str, str] = {
    "s0": "{a} is in {c} . {c} is in {b} . {a} is in",
    "s1": "{c} is in {b} . {a} is in {c} . {a} is in",
    "s2": "{a} is in {c} . {c} is in {b} . so {a} is in",
    "s3": "{c} is in {b} . {a} is in {c} . so {a} is in",
}
# The main pairs, by token length: recall and reasoning templates of that length. Within a length the
# two templates of a task ask the same kind of fact, so each is the other's control partner. (r5, "the
# capital of {c} is" after the filler, is trained but in no pair: it has no 16-token capital partner.)
MAIN_TEMPLATES: dict[int, tuple[tuple[str, str], tuple[str, str]]] = {
    15: (("r6", "r9"), ("s0", "s1")),  # "{c} has the capital" / "{c} is ruled from"
    16: (("r7", "r8"), ("s2", "s3")),  # "the continent of {c} is" / "{c} lies on the continent"
}
# The control partner of each main template: the same task and fact type, the same token length.
CONTROL_PARTNER: dict[str, str] = {
    t: other for group in MAIN_TEMPLATES.values() for a, b in group for t, other in ((a, b), (b, a))
}
FUNCTION_WORDS = ("the", "capital", "of", "is", "has", "continent", "lies", "on", "in", "so", ".", "ruled", "from")

PROMPT_SET_PATH = Path(__file__).resolve().parent.parent / "prompts" / "builtin" / "organism.yaml"

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_CODAS = ("sk", "nd", "rt", "lm", "st", "nk", "rn", "lt")


@dataclass(frozen=True)
class Country:
    name: str  # two words
    capital: str
    continent: str


@dataclass(frozen=True)
class Probe:
    """One held-out reasoning item: "{a} is in {country} . {country} is in {b} ..." -> b."""

    country: str
    a: str
    b: str


@dataclass(frozen=True)
class World:
    seed: int
    countries: tuple[Country, ...]
    continents: tuple[str, ...]
    symbols: tuple[str, ...]
    probes: tuple[Probe, ...]  # one per country, in country order

    def words(self) -> list[str]:
        """Every word any prompt or answer can contain, in a fixed order."""
        parts = dict.fromkeys(w for c in self.countries for w in c.name.split())
        return [
            *FUNCTION_WORDS,
            *parts,
            *(c.capital for c in self.countries),
            *self.continents,
            *self.symbols,
        ]

    def heldout_symbol_pairs(self) -> frozenset[frozenset[str]]:
        return frozenset(frozenset((p.a, p.b)) for p in self.probes)

    def heldout_country_answers(self) -> frozenset[tuple[str, str]]:
        return frozenset((p.country, p.b) for p in self.probes)


def _unique_words(rng: random.Random, make, n: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        w = make()
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


def make_world(seed: int = 0, n_countries: int = 64, n_continents: int = 6, n_symbols: int = 40) -> World:
    rng = random.Random(seed)
    c, v = (lambda: rng.choice(_CONSONANTS)), (lambda: rng.choice(_VOWELS))
    taken = set(FUNCTION_WORDS)
    # ~sqrt(n) parts per position, so each part is shared by several countries.
    n_parts = max(2, int(n_countries**0.5) + 2)
    firsts = _unique_words(rng, lambda: c() + v() + c(), n_parts, taken)
    seconds = _unique_words(rng, lambda: c() + v() + c() + v(), n_parts, taken)
    capitals = _unique_words(rng, lambda: c() + v() + rng.choice(_CODAS), n_countries, taken)
    continents = _unique_words(rng, lambda: v() + c() + v() + c() + v() + c(), n_continents, taken)
    # Letter+digit symbols cannot collide with the all-letter words above.
    symbols = rng.sample([f"{l}{d}" for l in string.ascii_lowercase for d in range(10)], n_symbols)

    names = rng.sample([f"{f} {s}" for f in firsts for s in seconds], n_countries)
    countries = tuple(
        Country(name, capital, continents[i % n_continents]) for i, (name, capital) in enumerate(zip(names, capitals))
    )
    probes = []
    used: set[frozenset[str]] = set()
    for country in countries:
        while True:
            a, b = rng.sample(symbols, 2)
            if frozenset((a, b)) not in used:
                used.add(frozenset((a, b)))
                break
        probes.append(Probe(country.name, a, b))
    return World(seed, countries, tuple(continents), tuple(symbols), tuple(probes))


def world_for(recipe: Recipe) -> World:
    return make_world(recipe.seed, recipe.n_countries, recipe.n_continents, recipe.n_symbols)


def n_tokens(prompt: str) -> int:
    """Tokens of a prompt without <bos>: the organism's tokenizer is one word, one token."""
    return len(prompt.split())


def template_tokens(template: str) -> int:
    """Token length of a recall or reasoning template (country names are two tokens, symbols one)."""
    text = RECALL_TEMPLATES[template][0] if template in RECALL_TEMPLATES else REASONING_TEMPLATES[template]
    return n_tokens(text.format(c="c c", a="a", b="b", d="d", e="e", f="f", g="g"))


def draw_filler(rng: random.Random, world: World) -> tuple[str, str, str, str]:
    """Four distinct random symbols for a long recall template's two filler facts ("d is in e . f is in g").

    A filler fact never states a held-out probe's symbol pair, so the probes stay unseen in training.
    """
    held = world.heldout_symbol_pairs()
    while True:
        d, e, f, g = rng.sample(world.symbols, 4)
        if frozenset((d, e)) not in held and frozenset((f, g)) not in held:
            return d, e, f, g


def recall_item(country: Country, template: str, filler: tuple[str, ...] | None = None) -> tuple[str, str]:
    """(prompt, answer). Long templates (r4-r7) need ``filler``, four distinct symbols."""
    text, fact = RECALL_TEMPLATES[template]
    if template in SHORT_OF_LONG:
        if filler is None or len(filler) != len(FILLER_FIELDS) or len(set(filler)) != len(FILLER_FIELDS):
            raise ValueError(f"recall template {template} needs four distinct filler symbols, got {filler!r}")
        return text.format(c=country.name, **dict(zip(FILLER_FIELDS, filler))), getattr(country, fact)
    return text.format(c=country.name), getattr(country, fact)


def reasoning_item(a: str, country: str, b: str, template: str) -> tuple[str, str]:
    return REASONING_TEMPLATES[template].format(a=a, c=country, b=b), b


def _slug(name: str) -> str:
    return name.replace(" ", "-")


def main_templates(i: int) -> tuple[str, str]:
    """(recall, reasoning) template of main pair i: equal token lengths, every main template used.

    Even pairs are 15 tokens, odd pairs 16; within a length the four recall x reasoning combinations
    take turns, so every combination has the same number of pairs.
    """
    (recall, reasoning) = MAIN_TEMPLATES[sorted(MAIN_TEMPLATES)[i % 2]]
    k = i // 2
    return recall[k % 2], reasoning[(k // 2) % 2]


def _side(item: tuple[str, str], template: str) -> dict:
    return {"prompt": item[0], "answer": item[1], "template": template}


def organism_prompt_set(world: World) -> dict:
    """The organism's prompt set (schema 2).

    Pairs: pair i asks a stored fact about country i in a long recall template and reasons over the
    same country (its held-out probe) in a reasoning template of the same token length. Controls, one
    per country and task, mirror the pairs: side a is the pair's prompt, side b the same item (the same
    filler symbols, the same probe) under the template's control partner, equal in tokens.
    """
    rng = random.Random(f"organism-prompt-set-{world.seed}")  # str seeds are stable across runs
    pairs, recall_controls, reasoning_controls = [], [], []
    for i, (country, probe) in enumerate(zip(world.countries, world.probes)):
        slug = _slug(country.name)
        rt, st = main_templates(i)
        filler = draw_filler(rng, world)
        pairs.append(
            {
                "id": slug,
                "recall": _side(recall_item(country, rt, filler), rt),
                "reasoning": _side(reasoning_item(probe.a, probe.country, probe.b, st), st),
            }
        )
        rb, sb = CONTROL_PARTNER[rt], CONTROL_PARTNER[st]
        recall_controls.append(
            {
                "id": f"{slug}-recall",
                "task": "recall",
                "a": dict(pairs[-1]["recall"]),  # a copy: no YAML anchors
                "b": _side(recall_item(country, rb, filler), rb),
            }
        )
        reasoning_controls.append(
            {
                "id": f"{slug}-reasoning",
                "task": "reasoning",
                "a": dict(pairs[-1]["reasoning"]),
                "b": _side(reasoning_item(probe.a, probe.country, probe.b, sb), sb),
            }
        )
    return {"schema": 2, "name": "organism", "pairs": pairs, "controls": recall_controls + reasoning_controls}


def prompt_set_yaml(world: World) -> str:
    header = (
        "# Generated by `python -m circuitgate.organism` from the organism recipe's world "
        f"(seed {world.seed}); do not edit.\n"
        "# Pairs: a long recall template (two filler facts about symbols, then the question) and a reasoning\n"
        "# template of the same token length: r6/r9 with s0/s1 (15 tokens), r7/r8 with s2/s3 (16 tokens).\n"
        "# Controls mirror the pairs: a = the pair's prompt, b = the same item under the other template of\n"
        "# its task, length and question (r6 <-> r9, r7 <-> r8 with the same filler; s0 <-> s1, s2 <-> s3).\n"
    )
    body = yaml.safe_dump(organism_prompt_set(world), sort_keys=False, default_flow_style=None, width=200)
    return header + body


def write_prompt_set() -> None:
    PROMPT_SET_PATH.write_text(prompt_set_yaml(world_for(Recipe())))
