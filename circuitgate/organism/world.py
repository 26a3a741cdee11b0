"""The invented world the organism learns, its two tasks, and its prompt set.

Countries have two-word names ("vel mora"): with one-token names a probe found the capital lookup
did not live in the MLPs (attention copied it straight off the embedding), and the point of the
organism is a recall skill stored the way the paper assumes facts are stored. First and second words
are shared between countries, so a fact belongs to the combination, not to either word.

**Recall** asks a fact stored in the weights, after four filler facts about symbols only
("h0 is in q7 . w3 is in f2 . m1 is in c4 . k9 is in t6 . vel mora has the capital" -> its capital).
The filler names no country, capital or continent and is drawn afresh for every training item, so the
answer can only be the stored fact; it makes a recall prompt as long as a reasoning prompt.

**Reasoning** composes facts given in the prompt: a chain "a is in C . C is in b ." hidden among two
distractor facts "d is in e . f is in g .", in any order, then the query "a is in" -> b. No surface
statistic of the tokens gives the answer: every symbol but a is seen once, and e and g are objects of
"is in" like b. What singles b out is where it stands, after the country of a fact whose subject is a
country -- a relation between positions that one attention layer cannot read off its own input: a
layer must first write "a country stood three or four tokens back" into b's position (the organism's
layer 0), and a later layer must find the position carrying it (layer 2). The organism's ablation
ground truth measures that reasoning depends on attention in both (``groundtruth.measure``). Symbols
are invented tokens, and every (a, b) pair and (country, b) combination of a probe is held out of
training, so the answer can only come from the context.

Length and template (docs/method.md, flaw 2): the main pairs are equal in tokens -- a recall question
of 5 tokens (r1, r4) with a reasoning query of 3 ("a is in", s0, s1): 25 tokens; of 6 tokens (r2, r3)
with the query "so a is in" (s2, s3): 26 tokens. The controls mirror the pairs: the same item (the same
filler, the same probe and distractors) under the other template of equal length and the same kind of
question, so only the template changes, as between the two sides of a pair only the task does.

Run ``python -m circuitgate.organism`` to regenerate ``circuitgate/prompts/builtin/organism.yaml``.
"""

from __future__ import annotations

import functools
import random
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from circuitgate.organism.recipe import Recipe

# Recall questions: words, with "{c}" for the country's two words; the fact the question asks for.
RECALL_TEMPLATES: dict[str, tuple[str, str]] = {
    "r0": ("the capital of {c} is", "capital"),
    "r1": ("{c} has the capital", "capital"),
    "r2": ("the continent of {c} is", "continent"),
    "r3": ("{c} lies on the continent", "continent"),
    "r4": ("{c} is ruled from", "capital"),
}
RELATION_WORDS = ("capital", "continent")
N_FILLER = 4  # symbol facts before every recall question
# Reasoning: the chain's two facts (A1, A2), two distractor facts (F1, F2), then the query.
FACTS = ("A1", "A2", "F1", "F2")
FACT_TEXT = {"A1": "{a} is in {c} .", "A2": "{c} is in {b} .", "F1": "{d} is in {e} .", "F2": "{f} is in {g} ."}
QUERIES = {False: "{a} is in", True: "so {a} is in"}
# The reasoning templates of the prompt set: a fact order and whether the query starts with "so".
REASONING_TEMPLATES: dict[str, tuple[tuple[str, ...], bool]] = {
    "s0": (("A1", "A2", "F1", "F2"), False),
    "s1": (("F1", "A1", "F2", "A2"), False),
    "s2": (("A2", "F1", "A1", "F2"), True),
    "s3": (("F1", "F2", "A2", "A1"), True),
}
# The main pairs by token length (without <bos>): recall and reasoning templates of that length. Within a
# length the two templates of a task ask the same kind of fact, so each is the other's control partner.
# (r0, a 6-token capital question, is trained but in no pair: it has no 6-token capital partner.)
MAIN_TEMPLATES: dict[int, tuple[tuple[str, str], tuple[str, str]]] = {
    25: (("r1", "r4"), ("s0", "s1")),
    26: (("r2", "r3"), ("s2", "s3")),
}
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
    """One held-out reasoning item: the chain "a is in {country} . {country} is in b"."""

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
        return [*FUNCTION_WORDS, *parts, *(c.capital for c in self.countries), *self.continents, *self.symbols]

    def heldout_symbol_pairs(self) -> frozenset[frozenset[str]]:
        return _heldout_pairs(self.probes)

    def heldout_country_answers(self) -> frozenset[tuple[str, str]]:
        return frozenset((p.country, p.b) for p in self.probes)

    def recall_answers(self) -> list[str]:
        """Every answer a recall question can have: the capitals, then the continents."""
        return [*(c.capital for c in self.countries), *self.continents]


@dataclass(frozen=True)
class Item:
    """One prompt as words (after <bos>), its one-word answer, and the positions the organism's planted
    attention heads read (``marks``: name -> word indices, counted after <bos>)."""

    words: tuple[str, ...]
    answer: str
    marks: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False)

    @property
    def prompt(self) -> str:
        return " ".join(self.words)


@functools.cache
def _heldout_pairs(probes: tuple[Probe, ...]) -> frozenset[frozenset[str]]:
    # Asked for every symbol draw of training: computed once per world.
    return frozenset(frozenset((p.a, p.b)) for p in probes)


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
    """Token length of a recall prompt (filler and question) or a reasoning prompt of a template."""
    if template in RECALL_TEMPLATES:
        return N_FILLER * 5 + len(RECALL_TEMPLATES[template][0].replace("{c}", "c c").split())
    order, so = REASONING_TEMPLATES[template]
    facts = sum(len(FACT_TEXT[f].replace("{c}", "c c").split()) for f in order)
    return facts + len(QUERIES[so].split())


def draw_symbols(rng: random.Random, world: World, n: int, exclude: tuple[str, ...] = ()) -> list[str]:
    """``n`` distinct symbols, none in ``exclude``, where consecutive pairs (0, 1), (2, 3) ... never
    state a held-out probe's symbol pair (they become "x is in y" facts)."""
    held = _heldout_pairs(world.probes)
    pool = [s for s in world.symbols if s not in exclude]
    while True:
        out = rng.sample(pool, n)
        if all(frozenset(out[i:i + 2]) not in held for i in range(0, n - 1, 2)):
            return out


def recall_item(country: Country, template: str, filler: tuple[str, ...]) -> Item:
    """The filler's four facts ("{filler[0]} is in {filler[1]} . ..."), then the question.

    marks["gather"]: the question's country words and its relation word (what the planted recall head
    reads at the last position); marks["self"]: the last position itself."""
    if len(filler) != 2 * N_FILLER or len(set(filler)) != len(filler):
        raise ValueError(f"recall needs {2 * N_FILLER} distinct filler symbols, got {filler!r}")
    words = [w for i in range(0, len(filler), 2) for w in (filler[i], "is", "in", filler[i + 1], ".")]
    text, fact = RECALL_TEMPLATES[template]
    start = len(words)
    question = text.replace("{c}", country.name).split()
    c1, c2 = country.name.split()
    gather = tuple(start + i for i, w in enumerate(question) if w in (c1, c2) or w in RELATION_WORDS)
    n = len(words) + len(question)
    return Item(tuple(words + question), getattr(country, fact), {"gather": gather, "self": (n - 1,)})


def reasoning_item(a: str, country: str, b: str, distractors: tuple[str, str, str, str], order: tuple[str, ...],
                   so: bool) -> Item:
    """The chain a -> country -> b and the distractor facts d -> e, f -> g in ``order``, then the query.

    marks["select"]: b's position (the planted reasoning head reads it at the last position);
    marks["query"]: the query's a; marks["self"]: the last position itself."""
    d, e, f, g = distractors
    fill = {"a": a, "b": b, "c": country, "d": d, "e": e, "f": f, "g": g}
    words: list[str] = []
    select = -1
    for name in order:
        part = FACT_TEXT[name].format(**fill).split()
        if name == "A2":
            select = len(words) + part.index(b)
        words += part
    query = QUERIES[so].format(a=a).split()
    marks = {"select": (select,), "query": (len(words) + query.index(a),), "self": (len(words) + len(query) - 1,)}
    return Item(tuple(words + query), b, marks)


def _slug(name: str) -> str:
    return name.replace(" ", "-")


def main_templates(i: int) -> tuple[str, str]:
    """(recall, reasoning) template of main pair i: equal token lengths, every main template used.

    Even pairs are 25 tokens, odd pairs 26; within a length the four recall x reasoning combinations
    take turns, so every combination has the same number of pairs.
    """
    (recall, reasoning) = MAIN_TEMPLATES[sorted(MAIN_TEMPLATES)[i % 2]]
    k = i // 2
    return recall[k % 2], reasoning[(k // 2) % 2]


def _side(item: Item, template: str) -> dict:
    return {"prompt": item.prompt, "answer": item.answer, "template": template}


def probe_items(world: World) -> list[tuple[Item, Item, Item, Item]]:
    """Per country: (recall, recall control partner, reasoning, reasoning control partner) of the prompt
    set, as Items (the marks the build's measurements read)."""
    rng = random.Random(f"organism-prompt-set-{world.seed}")  # str seeds are stable across runs
    out = []
    for i, (country, probe) in enumerate(zip(world.countries, world.probes)):
        rt, st = main_templates(i)
        filler = tuple(draw_symbols(rng, world, 2 * N_FILLER))
        distractors = tuple(draw_symbols(rng, world, 4, exclude=(probe.a, probe.b)))
        recall = [recall_item(country, t, filler) for t in (rt, CONTROL_PARTNER[rt])]
        reasoning = [reasoning_item(probe.a, probe.country, probe.b, distractors, *REASONING_TEMPLATES[t])
                     for t in (st, CONTROL_PARTNER[st])]
        out.append((recall[0], recall[1], reasoning[0], reasoning[1]))
    return out


def organism_prompt_set(world: World) -> dict:
    """The organism's prompt set (schema 2).

    Pairs: pair i asks a stored fact about country i and reasons over the same country (its held-out
    probe) in templates of the same token length. Controls, one per country and task, mirror the
    pairs: side a is the pair's prompt, side b the same item under the template's control partner.
    """
    pairs, recall_controls, reasoning_controls = [], [], []
    for i, (country, items) in enumerate(zip(world.countries, probe_items(world))):
        slug = _slug(country.name)
        rt, st = main_templates(i)
        templates = (rt, CONTROL_PARTNER[rt], st, CONTROL_PARTNER[st])
        recall, recall_b, reasoning, reasoning_b = (_side(item, t) for item, t in zip(items, templates))
        pairs.append({"id": slug, "recall": recall, "reasoning": reasoning})
        recall_controls.append({"id": f"{slug}-recall", "task": "recall", "a": dict(recall), "b": recall_b})
        reasoning_controls.append({"id": f"{slug}-reasoning", "task": "reasoning", "a": dict(reasoning),
                                   "b": reasoning_b})
    return {"schema": 2, "name": "organism", "pairs": pairs, "controls": recall_controls + reasoning_controls}


def prompt_set_yaml(world: World) -> str:
    header = (
        "# Generated by `python -m circuitgate.organism` from the organism recipe's world "
        f"(seed {world.seed}); do not edit.\n"
        "# Pairs: four filler facts and a recall question, and a reasoning chain among two distractor facts\n"
        "# with its query, of the same token length: r1/r4 with s0/s1 (25 tokens), r2/r3 with s2/s3 (26).\n"
        "# Controls mirror the pairs: a = the pair's prompt, b = the same item under the other template of\n"
        "# its task, length and question (r1 <-> r4, r2 <-> r3 with the same filler; s0 <-> s1, s2 <-> s3).\n"
    )
    body = yaml.safe_dump(organism_prompt_set(world), sort_keys=False, default_flow_style=None, width=200)
    return header + body


def write_prompt_set() -> None:
    PROMPT_SET_PATH.write_text(prompt_set_yaml(world_for(Recipe())))
