"""The invented world the organism learns, and its prompt set.

Countries have two-word names ("vel mora"): a probe found that with one-token names the capital lookup
did not live in the MLPs (attention copied it straight off the embedding), and the point of the organism
is a recall skill stored the way the paper assumes facts are stored. First and second words are shared
between countries, so a fact belongs to the combination, not to either word.

Recall asks facts stored in the weights. Reasoning gives two facts in the prompt and asks for their
composition ("k7 is in vel mora . vel mora is in q3 . k7 is in" -> "q3"). Symbols are invented tokens,
and every (symbol, symbol) and (country, answer symbol) combination used in a probe is held out of the
training data, so the answer can only come from the context.

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
RECALL_TEMPLATES: dict[str, tuple[str, str]] = {
    "r0": ("the capital of {c} is", "capital"),
    "r1": ("{c} has the capital", "capital"),
    "r2": ("the continent of {c} is", "continent"),
    "r3": ("{c} lies on the continent", "continent"),
}
# {a} is in {c}, {c} is in {b}; the answer is always {b}. The fact order varies (s1) so the answer's
# position in the prompt is not fixed, and s2 adds a word so the query is not always the same span.
REASONING_TEMPLATES: dict[str, str] = {
    "s0": "{a} is in {c} . {c} is in {b} . {a} is in",
    "s1": "{c} is in {b} . {a} is in {c} . {a} is in",
    "s2": "{a} is in {c} . {c} is in {b} . so {a} is in",
}
FUNCTION_WORDS = ("the", "capital", "of", "is", "has", "continent", "lies", "on", "in", "so", ".")

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


def recall_item(country: Country, template: str) -> tuple[str, str]:
    text, fact = RECALL_TEMPLATES[template]
    return text.format(c=country.name), getattr(country, fact)


def reasoning_item(a: str, country: str, b: str, template: str) -> tuple[str, str]:
    return REASONING_TEMPLATES[template].format(a=a, c=country, b=b), b


def _slug(name: str) -> str:
    return name.replace(" ", "-")


def organism_prompt_set(world: World) -> dict:
    """The matched pairs: pair i asks a stored fact about country i and reasons over the same country."""
    recall_ids, reasoning_ids = list(RECALL_TEMPLATES), list(REASONING_TEMPLATES)
    pairs = []
    for i, (country, probe) in enumerate(zip(world.countries, world.probes)):
        rt, st = recall_ids[i % len(recall_ids)], reasoning_ids[i % len(reasoning_ids)]
        rp, ra = recall_item(country, rt)
        sp, sa = reasoning_item(probe.a, probe.country, probe.b, st)
        pairs.append(
            {
                "id": _slug(country.name),
                "recall": {"prompt": rp, "answer": ra, "template": rt},
                "reasoning": {"prompt": sp, "answer": sa, "template": st},
            }
        )
    return {"schema": 1, "name": "organism", "pairs": pairs, "controls": []}


def prompt_set_yaml(world: World) -> str:
    header = (
        "# Generated by `python -m circuitgate.organism` from the organism recipe's world "
        f"(seed {world.seed}); do not edit.\n"
    )
    body = yaml.safe_dump(organism_prompt_set(world), sort_keys=False, default_flow_style=None, width=200)
    return header + body


def write_prompt_set() -> None:
    PROMPT_SET_PATH.write_text(prompt_set_yaml(world_for(Recipe())))
