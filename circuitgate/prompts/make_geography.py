"""Generate the built-in prompt sets ``geography`` (questions) and ``geography-completion`` (the default set
for real models: each prompt ends where its answer begins) from one list of facts.

``python -m circuitgate.prompts.make_geography`` rewrites both files; ``render(name)`` returns one's text (a
test checks that the committed files are exactly what this module renders, so edit here, not there).

What it fixes (docs/method.md, flaw 2): the paper's set asks every recall fact in one short template and every
reasoning fact in one template about 3x longer, so "recall vs reasoning" is also "short vs long" and
"template A vs template B". Here each task has three templates, each recall template is paired with a
reasoning template of exactly the same number of words (and the same number of characters, give or take
one), and the controls ask one task in two templates, so a test can be shown to come out negative where
only the template changes.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SEED = 42

# (country, capital, continent). The 30 facts of the paper's set first, in docs/method.md's order and with its
# conventions (Russia in Europe, Turkey in Asia, Brasília); then 100 more by the 7-continent convention
# (Central America and the Caribbean in North America). Capitals as English Wikipedia spells them.
# Left out on purpose: countries with contested, split or recently moved capitals (Bolivia, South Africa,
# Sri Lanka, Ivory Coast, Myanmar, Kazakhstan, Israel, Palestine, Taiwan, Tanzania, Benin, Burundi,
# Eswatini, Malaysia, Montenegro, Equatorial Guinea, Nauru, Sudan), countries whose continent is a matter of
# convention (Cyprus, Georgia, Armenia, Azerbaijan, Trinidad and Tobago),
# capitals named in or after their country, which a recall prompt would give away (Luxembourg, Singapore,
# Monaco, Kuwait City, Guatemala City, Panama City, San Salvador, Tunis, Djibouti, Andorra la Vella), and
# names spelled several ways in English (Kyiv/Kiev, Ulaanbaatar, Sanaa, Chișinău, N'Djamena, Nuku'alofa,
# Yaoundé, Lomé, Malé, Ivory Coast/Côte d'Ivoire, East Timor, the two Congos).
FACTS: tuple[tuple[str, str, str], ...] = (
    # the paper's 30
    ("France", "Paris", "Europe"), ("Germany", "Berlin", "Europe"), ("Japan", "Tokyo", "Asia"),
    ("Canada", "Ottawa", "North America"), ("Australia", "Canberra", "Oceania"),
    ("Brazil", "Brasília", "South America"), ("Egypt", "Cairo", "Africa"), ("India", "New Delhi", "Asia"),
    ("Italy", "Rome", "Europe"), ("Mexico", "Mexico City", "North America"), ("Russia", "Moscow", "Europe"),
    ("China", "Beijing", "Asia"), ("Spain", "Madrid", "Europe"), ("Argentina", "Buenos Aires", "South America"),
    ("South Korea", "Seoul", "Asia"), ("Turkey", "Ankara", "Asia"), ("the United Kingdom", "London", "Europe"),
    ("Indonesia", "Jakarta", "Asia"), ("Nigeria", "Abuja", "Africa"), ("Thailand", "Bangkok", "Asia"),
    ("Poland", "Warsaw", "Europe"), ("the Netherlands", "Amsterdam", "Europe"), ("Sweden", "Stockholm", "Europe"),
    ("Norway", "Oslo", "Europe"), ("Finland", "Helsinki", "Europe"), ("Denmark", "Copenhagen", "Europe"),
    ("Switzerland", "Bern", "Europe"), ("Austria", "Vienna", "Europe"), ("Belgium", "Brussels", "Europe"),
    ("Portugal", "Lisbon", "Europe"),
    # Europe
    ("Ireland", "Dublin", "Europe"), ("Iceland", "Reykjavík", "Europe"), ("Greece", "Athens", "Europe"),
    ("Hungary", "Budapest", "Europe"), ("the Czech Republic", "Prague", "Europe"),
    ("Slovakia", "Bratislava", "Europe"), ("Romania", "Bucharest", "Europe"), ("Bulgaria", "Sofia", "Europe"),
    ("Serbia", "Belgrade", "Europe"), ("Croatia", "Zagreb", "Europe"), ("Slovenia", "Ljubljana", "Europe"),
    ("Belarus", "Minsk", "Europe"), ("Lithuania", "Vilnius", "Europe"), ("Latvia", "Riga", "Europe"),
    ("Estonia", "Tallinn", "Europe"), ("Albania", "Tirana", "Europe"), ("North Macedonia", "Skopje", "Europe"),
    ("Bosnia and Herzegovina", "Sarajevo", "Europe"), ("Malta", "Valletta", "Europe"),
    ("Liechtenstein", "Vaduz", "Europe"),
    # Asia
    ("Vietnam", "Hanoi", "Asia"), ("the Philippines", "Manila", "Asia"), ("Pakistan", "Islamabad", "Asia"),
    ("Bangladesh", "Dhaka", "Asia"), ("Nepal", "Kathmandu", "Asia"), ("Afghanistan", "Kabul", "Asia"),
    ("Iran", "Tehran", "Asia"), ("Iraq", "Baghdad", "Asia"), ("Saudi Arabia", "Riyadh", "Asia"),
    ("Syria", "Damascus", "Asia"), ("Jordan", "Amman", "Asia"), ("Lebanon", "Beirut", "Asia"),
    ("Qatar", "Doha", "Asia"), ("Oman", "Muscat", "Asia"), ("the United Arab Emirates", "Abu Dhabi", "Asia"),
    ("Cambodia", "Phnom Penh", "Asia"), ("Laos", "Vientiane", "Asia"), ("North Korea", "Pyongyang", "Asia"),
    ("Uzbekistan", "Tashkent", "Asia"), ("Kyrgyzstan", "Bishkek", "Asia"), ("Tajikistan", "Dushanbe", "Asia"),
    ("Turkmenistan", "Ashgabat", "Asia"), ("Bhutan", "Thimphu", "Asia"), ("Bahrain", "Manama", "Asia"),
    # Africa
    ("Kenya", "Nairobi", "Africa"), ("Ethiopia", "Addis Ababa", "Africa"), ("Ghana", "Accra", "Africa"),
    ("Morocco", "Rabat", "Africa"), ("Algeria", "Algiers", "Africa"), ("Senegal", "Dakar", "Africa"),
    ("Uganda", "Kampala", "Africa"), ("Zimbabwe", "Harare", "Africa"), ("Zambia", "Lusaka", "Africa"),
    ("Angola", "Luanda", "Africa"), ("Mozambique", "Maputo", "Africa"), ("Libya", "Tripoli", "Africa"),
    ("Mali", "Bamako", "Africa"), ("Niger", "Niamey", "Africa"), ("Madagascar", "Antananarivo", "Africa"),
    ("Rwanda", "Kigali", "Africa"), ("Somalia", "Mogadishu", "Africa"), ("Namibia", "Windhoek", "Africa"),
    ("Botswana", "Gaborone", "Africa"), ("Malawi", "Lilongwe", "Africa"), ("Gabon", "Libreville", "Africa"),
    ("Liberia", "Monrovia", "Africa"), ("Sierra Leone", "Freetown", "Africa"), ("Guinea", "Conakry", "Africa"),
    ("Burkina Faso", "Ouagadougou", "Africa"), ("Eritrea", "Asmara", "Africa"),
    ("Mauritania", "Nouakchott", "Africa"), ("South Sudan", "Juba", "Africa"), ("Lesotho", "Maseru", "Africa"),
    # North America (with Central America and the Caribbean)
    ("the United States", "Washington, D.C.", "North America"), ("Cuba", "Havana", "North America"),
    ("Jamaica", "Kingston", "North America"), ("Honduras", "Tegucigalpa", "North America"),
    ("Nicaragua", "Managua", "North America"), ("Costa Rica", "San José", "North America"),
    ("the Dominican Republic", "Santo Domingo", "North America"), ("Haiti", "Port-au-Prince", "North America"),
    ("the Bahamas", "Nassau", "North America"), ("Belize", "Belmopan", "North America"),
    ("Barbados", "Bridgetown", "North America"),
    # South America
    ("Chile", "Santiago", "South America"), ("Peru", "Lima", "South America"),
    ("Colombia", "Bogotá", "South America"), ("Venezuela", "Caracas", "South America"),
    ("Ecuador", "Quito", "South America"), ("Uruguay", "Montevideo", "South America"),
    ("Paraguay", "Asunción", "South America"), ("Guyana", "Georgetown", "South America"),
    ("Suriname", "Paramaribo", "South America"),
    # Oceania
    ("New Zealand", "Wellington", "Oceania"), ("Fiji", "Suva", "Oceania"),
    ("Papua New Guinea", "Port Moresby", "Oceania"), ("Samoa", "Apia", "Oceania"),
    ("Vanuatu", "Port Vila", "Oceania"), ("the Solomon Islands", "Honiara", "Oceania"),
    ("the Marshall Islands", "Majuro", "Oceania"),
)

# Template k of one task is paired with template k of the other: both name the country twice and the
# continent once around 14 fixed words, so a pair has the same number of words whatever the country, and
# the same number of characters give or take one (the fixed text differs by at most one character).
# Recall states the country's continent as neutral context (never the capital); reasoning states the
# facts and asks for the continent of X, whose answer is in the prompt, as in the paper (s0 is the paper's).
RECALL = {
    "r0": "We all know {country} is in {continent}. So now tell me, what is the capital of {country}?",
    "r1": "{country} is a country in {continent}. Tell me, what is the name of the capital of {country}?",
    "r2": "Think of {country}, a land that is in {continent}. So which city is the capital of {country}?",
}
REASONING = {
    "s0": "If X is the capital of {country} and {country} is in {continent}, what continent is X in?",
    "s1": "Assume {country} is in {continent} and X is the capital of {country}. What continent is X in?",
    "s2": "X is the capital of {country}, and {country} lies in {continent}. So on which continent is X?",
}

# The completion form (geography-completion): the same facts and design, but each prompt ends where the
# answer begins, so a base or instruct model's next tokens are the answer. The question forms above end in
# "?", after which SmolLM2-135M-Instruct's next token is its end-of-turn token on every prompt (first-token
# accuracy 0.00 on both tasks, measured), so H5 could not score it.
# Both sides of pair k open with the same clause ("{country} is in {continent}." or "... lies in ...") and
# differ only in the second sentence, the task: recall asks for the capital, reasoning names the capital X
# and asks X's continent. Every one of the six templates has exactly the same number of tokens for every
# fact under the SmolLM2 (Llama), Gemma 3 and Qwen2 tokenizers (measured over the 130 facts; a test checks
# the two shipped as packages), so pairs and controls differ by 0 tokens whatever the family: length cannot
# separate the tasks, and the controls need not mirror a gap (docs/method.md, "Length matched per
# tokenizer"). Word counts are equal too (11 fixed words); character counts are not (tokens are what the
# model sees). Chosen among measured endings by whole-answer greedy accuracy over the 130 facts:
# SmolLM2-135M-Instruct recall 0.58 / 0.57 / 0.55 (c-r0, c-r1, c-r2; the model's knowledge is the limit:
# "So the capital city" scored 0.45-0.50), reasoning 0.88 / 0.84 / 0.88; Gemma 3 270M recall 0.70 with
# c-r0, reasoning 0.90 / - / 0.92. Gemma 3 completes the earlier ending "... Hence X is in" with "the"
# (reasoning 0.15), hence "the continent of".
COMPLETION_RECALL = {
    "c-r0": "{country} is in {continent}. And the capital city of {country} is the city of",
    "c-r1": "{country} lies in {continent}. And the capital city of {country} is the city of",
    "c-r2": "{country} is in {continent}. Now the capital city of {country} is the city of",
}
COMPLETION_REASONING = {
    "c-s0": "{country} is in {continent}. The capital X of {country} is on the continent of",
    "c-s1": "{country} lies in {continent}. The capital X of {country} is on the continent of",
    "c-s2": "{country} is in {continent}. The capital X of {country} is in the continent of",
}


@dataclass(frozen=True)
class Form:
    """One built-in set generated from the facts: its name, templates and how the header describes them."""

    name: str
    description: str
    recall: dict[str, str]
    reasoning: dict[str, str]
    about: str  # the header's paragraph on the templates


FORMS = {
    "geography": Form(
        "geography", "real country/capital/continent facts; three length-matched templates per task; null controls",
        RECALL, REASONING,
        """\
# - length-matched: r_k and s_k name the country twice and the continent once around the same number of
#   fixed words, so every pair has equal word counts and character counts within one;
# - recall carries the country's continent as neutral context but never the capital (it must come from the
#   weights); reasoning is the paper's in-context composition: the prompt states that X is the capital of
#   the country and that the country is in the continent, and the answer (the continent) is in the prompt.
# - questions, as in the paper: a model answers after the "?" (an instruct model often ends its turn there;
#   geography-completion is the form whose next tokens are the answer)."""),
    "geography-completion": Form(
        "geography-completion",
        "the geography facts in completion form (the prompt ends where the answer begins); length-matched; null controls",
        COMPLETION_RECALL, COMPLETION_REASONING,
        """\
# - token-matched: r_k and s_k open with the same clause and name the country twice and the continent once
#   around 11 fixed words; every template has the same number of tokens for every fact under the SmolLM2,
#   Gemma 3 and Qwen2 tokenizers, so pairs and controls differ by 0 tokens;
# - recall carries the country's continent as neutral context but never the capital (it must come from the
#   weights); reasoning states that X is the capital of the country and that the country is in the
#   continent, and the answer (the continent) is in the prompt;
# - completions: each prompt ends where its answer begins, so the model's next tokens are the answer, scored
#   over every answer token (multi-token answers such as "North America" or "New Delhi")."""),
}


HEADER = """\
# {n} real (country, capital, continent) facts, each asked as recall and as reasoning (the pairs), plus
# null controls. Generated by
# `python -m circuitgate.prompts.make_geography` (edit that, not this file); raw strings, no chat template.
#
# Why not the paper's set (geography-paper): it asks every recall fact in one short template and every reasoning
# fact in one template about 3x longer (docs/method.md, flaw 2), so any feature that depends on length or
# wording (attention entropy is bounded by ln(length)) separates "recall" from "reasoning" by construction.
# Here:
# - each task has three templates; pair i uses recall template r(i mod 3) with reasoning template s(i mod 3);
{about}
# Recall templates (answer: the capital):
{recall}
# Reasoning templates (answer: the continent):
{reasoning}
#
# Controls (the null control of flaw 2): the same task for the same fact under two templates, which a sound
# test must NOT call task-specific. Every fact has one of each, so the null control has as many items as
# the main comparison (equal power: a control that comes out negative only for lack of items proves nothing).
# They mirror the pairs' design: a = the fact's prompt as in its pair, b = the next template of the same task
# (r0 -> r1 -> r2 -> r0, s0 -> s1 -> s2 -> s0), equal in word count. Only the template changes, as between the
# two sides of a pair only the task does; a control that comes out "specialised" shows wording alone moves
# the features as much as the task, and the paired method then calls the hypothesis confounded.
#
# Facts: the paper's 30 with its conventions (Russia in Europe, Turkey in Asia), the rest by the 7-continent
# convention (Central America and the Caribbean in North America); contested, split or moved capitals,
# continent-ambiguous countries and capitals that contain their country's name are left out (list in the
# generator). Order: the facts shuffled with random.Random({seed}).shuffle; controls in the same order.
"""


def slug(country: str) -> str:
    return country.removeprefix("the ").lower().replace(" ", "-")


def fill(template: str, country: str, continent: str) -> str:
    text = template.format(country=country, continent=continent)
    return text[0].upper() + text[1:]  # "The Netherlands is ...", where a template starts with the country


def facts() -> list[tuple[str, str, str]]:
    """The facts in file order (shuffled with SEED)."""
    out = list(FACTS)
    random.Random(SEED).shuffle(out)
    return out


def _side(prompt: str, answer: str, template: str) -> str:
    return f"{{prompt: {json.dumps(prompt, ensure_ascii=False)}, answer: {json.dumps(answer, ensure_ascii=False)}, template: {template}}}"


def _listing(templates: dict[str, str]) -> str:
    return "\n".join(f"#   {k}: {v}" for k, v in templates.items())


def render(name: str = "geography") -> str:
    """The text of the built-in set ``name`` (a key of FORMS)."""
    form = FORMS[name]
    rec, rea = list(form.recall), list(form.reasoning)
    rows = facts()
    lines = [HEADER.format(n=len(rows), about=form.about, recall=_listing(form.recall),
                           reasoning=_listing(form.reasoning), seed=SEED).rstrip("\n")]
    lines += ["schema: 2", f"name: {form.name}", f"description: {form.description}", "pairs:"]
    for i, (country, capital, continent) in enumerate(rows):
        k = i % len(rec)
        lines += [f"  - id: {slug(country)}",
                  f"    recall:    {_side(fill(form.recall[rec[k]], country, continent), capital, rec[k])}",
                  f"    reasoning: {_side(fill(form.reasoning[rea[k]], country, continent), continent, rea[k])}"]
    lines.append("controls:")
    for task, templates, answer in (("recall", form.recall, 1), ("reasoning", form.reasoning, 2)):
        keys = list(templates)
        for i, fact in enumerate(rows):
            country, continent = fact[0], fact[2]
            k, k2 = keys[i % len(keys)], keys[(i + 1) % len(keys)]
            lines += [f"  - id: {slug(country)}-{task}", f"    task: {task}",
                      f"    a: {_side(fill(templates[k], country, continent), fact[answer], k)}",
                      f"    b: {_side(fill(templates[k2], country, continent), fact[answer], k2)}"]
    return "\n".join(lines) + "\n"


def builtin_path(name: str = "geography") -> Path:
    return Path(str(resources.files("circuitgate.prompts").joinpath("builtin", f"{name}.yaml")))


def main(argv: list[str] | None = None) -> int:
    """Rewrite every generated set (or, given a folder, write them there)."""
    args = sys.argv[1:] if argv is None else argv
    for name in FORMS:
        path = Path(args[0]) / f"{name}.yaml" if args else builtin_path(name)
        path.write_text(render(name), encoding="utf-8")
        print(f"wrote {path} ({len(FACTS)} facts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
