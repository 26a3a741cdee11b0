"""Prompt sets: loading, validation (file:line and pair id in every error), hashing, built-ins."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitgate import CircuitgateError
from circuitgate.prompts import Pair, Prompt, builtin_names, load_prompt_set

GOOD = """\
schema: 1
name: tiny
pairs:
  - id: france
    recall: {prompt: "What is the capital of France?", answer: "Paris"}
    reasoning: {prompt: "If X is the capital of France and France is in Europe, what continent is X in?", answer: "Europe"}
  - id: japan
    recall: {prompt: "What is the capital of Japan?", answer: "Tokyo", template: r}
    reasoning: {prompt: "If X is the capital of Japan and Japan is in Asia, what continent is X in?", answer: "Asia", template: s}
controls:
  - id: c1
    recall: {prompt: "Name the capital of France.", answer: "Paris"}
    reasoning: {prompt: "France's capital is", answer: "Paris"}
"""


def write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def error_of(path: Path) -> str:
    with pytest.raises(CircuitgateError) as e:
        load_prompt_set(path)
    msg = str(e.value)
    assert "\n" not in msg  # one line
    assert str(path) in msg  # always names the file
    return msg


# -- loading -------------------------------------------------------------------------------------


def test_load_a_valid_file(tmp_path):
    p = write(tmp_path, GOOD, "good.yaml")
    ps = load_prompt_set(p)
    assert ps.name == "tiny"
    assert ps.source == str(p)
    assert ps.ids == ["france", "japan"]
    assert ps.pairs[0] == Pair(
        "france",
        Prompt("What is the capital of France?", "Paris"),
        Prompt("If X is the capital of France and France is in Europe, what continent is X in?", "Europe"),
    )
    assert ps.pairs[1].recall.template == "r" and ps.pairs[1].reasoning.template == "s"
    assert ps.pairs[0].recall.template is None
    assert ps.prompts("recall") == ["What is the capital of France?", "What is the capital of Japan?"]
    assert ps.answers("recall") == ["Paris", "Tokyo"]
    assert ps.answers("reasoning") == ["Europe", "Asia"]
    assert [c.id for c in ps.controls] == ["c1"]
    assert ps.controls[0].reasoning == Prompt("France's capital is", "Paris")
    assert len(ps.sha256) == 64 and int(ps.sha256, 16) >= 0


def test_controls_and_description_are_optional(tmp_path):
    text = GOOD.split("controls:")[0] + "description: a tiny set\n"
    ps = load_prompt_set(write(tmp_path, text, "good.yaml"))
    assert ps.controls == ()
    assert len(ps.pairs) == 2


def test_hash_ignores_comments_and_layout_but_not_content(tmp_path):
    a = load_prompt_set(write(tmp_path, GOOD, "a.yaml"))
    doc = yaml.safe_load(GOOD)
    relaid = "# a comment\n" + yaml.safe_dump(doc, default_flow_style=False, sort_keys=True)
    b = load_prompt_set(write(tmp_path, relaid, "b.yaml"))
    assert b.pairs == a.pairs and b.sha256 == a.sha256
    doc["pairs"][0]["recall"]["answer"] = "Lyon"
    c = load_prompt_set(write(tmp_path, yaml.safe_dump(doc), "c.yaml"))
    assert c.sha256 != a.sha256
    doc["pairs"][0]["recall"]["answer"] = "Paris"
    doc["name"] = "other"
    d = load_prompt_set(write(tmp_path, yaml.safe_dump(doc), "d.yaml"))
    assert d.sha256 != a.sha256


def test_hash_depends_on_pair_order(tmp_path):
    doc = yaml.safe_load(GOOD)
    a = load_prompt_set(write(tmp_path, yaml.safe_dump(doc), "a.yaml"))
    doc["pairs"].reverse()
    b = load_prompt_set(write(tmp_path, yaml.safe_dump(doc), "b.yaml"))
    assert b.ids == ["japan", "france"] and b.sha256 != a.sha256


# -- built-in sets -------------------------------------------------------------------------------


def test_builtin_names():
    names = builtin_names()
    assert names == sorted(names)
    assert {"geography-seed", "organism"} <= set(names)


def test_geography_seed_builtin():
    ps = load_prompt_set("geography-seed")
    assert ps.name == "geography-seed"
    assert len(ps.pairs) == 30 and len(set(ps.ids)) == 30
    first = ps.pairs[0]
    assert first.id == "thailand"
    assert first.recall == Prompt("What is the capital of Thailand?", "Bangkok", "seed-recall")
    assert first.reasoning.answer == "Asia" and first.reasoning.template == "seed-reasoning"
    assert all(p.startswith("What is the capital of ") for p in ps.prompts("recall"))
    assert set(ps.answers("reasoning")) <= {"Asia", "Europe", "Africa", "North America", "South America", "Oceania"}
    assert Path(ps.source).name == "geography-seed.yaml"


def test_builtin_loads_identically_by_name_and_by_path():
    by_name = load_prompt_set("organism")
    by_path = load_prompt_set(Path(by_name.source))
    assert by_path.pairs == by_name.pairs and by_path.sha256 == by_name.sha256


def test_every_builtin_loads():
    for name in builtin_names():
        ps = load_prompt_set(name)
        assert ps.name == name and ps.pairs


# -- errors: every one names file, line and (when known) the pair ---------------------------------


def test_pair_missing_reasoning(tmp_path):
    p = write(tmp_path, """\
schema: 1
name: t
pairs:
  - id: a
    recall: {prompt: "p", answer: "x"}
""")
    msg = error_of(p)
    assert "bad.yaml:4" in msg and "pair 'a'" in msg and "unpaired" in msg and "missing reasoning" in msg


def test_pair_missing_both_sides(tmp_path):
    p = write(tmp_path, """\
schema: 1
name: t
pairs:
  - id: ok
    recall: {prompt: "p", answer: "x"}
    reasoning: {prompt: "q", answer: "y"}
  - id: lonely
""")
    msg = error_of(p)
    assert "bad.yaml:7" in msg and "pair 'lonely'" in msg and "missing recall and reasoning" in msg


def test_duplicate_ids(tmp_path):
    p = write(tmp_path, """\
schema: 1
name: t
pairs:
  - id: a
    recall: {prompt: "p", answer: "x"}
    reasoning: {prompt: "q", answer: "y"}
  - id: b
    recall: {prompt: "p", answer: "x"}
    reasoning: {prompt: "q", answer: "y"}
  - id: a
    recall: {prompt: "p2", answer: "x2"}
    reasoning: {prompt: "q2", answer: "y2"}
""")
    msg = error_of(p)
    assert "bad.yaml:10" in msg and "pair 'a'" in msg and "duplicate id" in msg and "first on line 4" in msg


@pytest.mark.parametrize("pairs", ["pairs: []\n", "pairs:\n", ""])
def test_empty_or_missing_pairs(tmp_path, pairs):
    p = write(tmp_path, "schema: 1\nname: empty\n" + pairs)
    msg = error_of(p)
    assert "bad.yaml:1" in msg and "'empty' has no pairs" in msg


@pytest.mark.parametrize("value", ["5", "true", "[Paris]", "''", "'   '", "null"])
def test_answer_must_be_a_non_empty_string(tmp_path, value):
    p = write(tmp_path, f"""\
schema: 1
name: t
pairs:
  - id: a
    recall: {{prompt: "p", answer: "x"}}
    reasoning: {{prompt: "q", answer: "y"}}
  - id: b
    recall: {{prompt: "p", answer: "x"}}
    reasoning:
      prompt: "q"
      answer: {value}
""")
    msg = error_of(p)
    assert "bad.yaml:10" in msg  # the reasoning mapping starts on line 10
    assert "pair 'b'" in msg and "reasoning" in msg and "'answer' must be a non-empty string" in msg


def test_prompt_must_be_present(tmp_path):
    p = write(tmp_path, """\
schema: 1
name: t
pairs:
  - id: a
    recall: {answer: "x"}
    reasoning: {prompt: "q", answer: "y"}
""")
    msg = error_of(p)
    assert "bad.yaml:5" in msg and "pair 'a'" in msg and "'prompt' must be a non-empty string" in msg


def test_side_that_is_not_a_mapping(tmp_path):
    p = write(tmp_path, """\
schema: 1
name: t
pairs:
  - id: a
    recall: "What is the capital of France?"
    reasoning: {prompt: "q", answer: "y"}
""")
    msg = error_of(p)
    assert "bad.yaml:4" in msg and "pair 'a'" in msg and "expected a mapping with prompt and answer" in msg


def test_template_must_be_a_string(tmp_path):
    p = write(tmp_path, """\
schema: 1
name: t
pairs:
  - id: a
    recall: {prompt: "p", answer: "x", template: 3}
    reasoning: {prompt: "q", answer: "y"}
""")
    msg = error_of(p)
    assert "bad.yaml:5" in msg and "pair 'a'" in msg and "'template' must be a string" in msg


def test_bad_yaml_syntax_names_the_line(tmp_path):
    p = write(tmp_path, """\
schema: 1
name: t
pairs:
  - id: a
    recall: {prompt: "p", answer: "x"
    reasoning: {prompt: "q", answer: "y"}
""")
    msg = error_of(p)
    assert "bad.yaml:6" in msg and "not valid YAML" in msg


def test_unknown_key_in_a_pair(tmp_path):
    p = write(tmp_path, """\
schema: 1
name: t
pairs:
  - id: a
    recall: {prompt: "p", answer: "x"}
    reasoning: {prompt: "q", answer: "y"}
    reasonning: {prompt: "q", answer: "y"}
""")
    msg = error_of(p)
    assert "bad.yaml:4" in msg and "pair 'a'" in msg and "unknown key(s) reasonning" in msg


def test_unknown_key_in_a_prompt(tmp_path):
    p = write(tmp_path, """\
schema: 1
name: t
pairs:
  - id: a
    recall: {prompt: "p", answer: "x"}
    reasoning: {prompt: "q", answer: "y", answers: "z"}
""")
    msg = error_of(p)
    assert "bad.yaml:6" in msg and "pair 'a'" in msg and "unknown key(s) answers" in msg


def test_unknown_top_level_key(tmp_path):
    p = write(tmp_path, GOOD.replace("name: tiny\n", "name: tiny\ncontrol: []\nextra: 1\n"))
    msg = error_of(p)
    assert "bad.yaml:1" in msg and "unknown key(s) control, extra" in msg


def test_unsupported_schema(tmp_path):
    msg = error_of(write(tmp_path, GOOD.replace("schema: 1", "schema: 2")))
    assert "bad.yaml:1" in msg and "unsupported schema 2" in msg
    msg = error_of(write(tmp_path, GOOD.replace("schema: 1\n", "")))
    assert "unsupported schema None" in msg


def test_missing_name(tmp_path):
    msg = error_of(write(tmp_path, GOOD.replace("name: tiny\n", "")))
    assert "bad.yaml:1" in msg and "missing 'name'" in msg


def test_document_that_is_not_a_mapping(tmp_path):
    msg = error_of(write(tmp_path, "- a\n- b\n"))
    assert "bad.yaml:1" in msg and "must be a mapping" in msg
    msg = error_of(write(tmp_path, ""))
    assert "bad.yaml:1" in msg


def test_pairs_that_are_not_a_list(tmp_path):
    msg = error_of(write(tmp_path, "schema: 1\nname: t\npairs: {a: 1}\n"))
    assert "bad.yaml:1" in msg and "'pairs' must be a list of pairs" in msg


def test_pair_that_is_not_a_mapping(tmp_path):
    msg = error_of(write(tmp_path, "schema: 1\nname: t\npairs:\n  - just a string\n"))
    assert "pairs[0] must be a mapping with id, recall, reasoning" in msg


@pytest.mark.parametrize("pid", ["", "-dash-first", "has space", "7", "{x: 1}", "null"])
def test_bad_ids(tmp_path, pid):
    p = write(tmp_path, f"""\
schema: 1
name: t
pairs:
  - id: {pid if pid else "''"}
    recall: {{prompt: "p", answer: "x"}}
    reasoning: {{prompt: "q", answer: "y"}}
""")
    msg = error_of(p)
    assert "bad.yaml:4" in msg and "pairs[0] needs an id" in msg


def test_errors_in_controls_name_the_control_pair(tmp_path):
    text = GOOD.replace('reasoning: {prompt: "France\'s capital is", answer: "Paris"}', "")
    msg = error_of(write(tmp_path, text))
    assert "bad.yaml:11" in msg and "pair 'c1'" in msg and "unpaired" in msg


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(CircuitgateError, match="prompt file not found") as e:
        load_prompt_set(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(e.value)
    with pytest.raises(CircuitgateError) as e:
        load_prompt_set("no-such-set")
    msg = str(e.value)
    assert "unknown prompt set 'no-such-set'" in msg and "geography-seed" in msg and "organism" in msg


def test_a_directory_is_not_a_prompt_file(tmp_path):
    with pytest.raises(CircuitgateError, match="prompt file not found"):
        load_prompt_set(tmp_path)


# -- property: what is written is what is read ---------------------------------------------------

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,8}", fullmatch=True)
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    lambda s: s.strip()
)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(ids, text, text, text, text), min_size=1, max_size=5, unique_by=lambda t: t[0]))
def test_round_trip(tmp_path_factory, rows):
    doc = {
        "schema": 1,
        "name": "generated",
        "pairs": [
            {"id": i, "recall": {"prompt": rp, "answer": ra}, "reasoning": {"prompt": sp, "answer": sa}}
            for i, rp, ra, sp, sa in rows
        ],
    }
    p = tmp_path_factory.mktemp("rt") / "gen.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True))
    ps = load_prompt_set(p)
    assert ps.ids == [r[0] for r in rows]
    assert ps.prompts("recall") == [r[1] for r in rows] and ps.answers("recall") == [r[2] for r in rows]
    assert ps.prompts("reasoning") == [r[3] for r in rows] and ps.answers("reasoning") == [r[4] for r in rows]
    # the hash is of content only: the same document written in flow style hashes the same
    q = p.with_name("flow.yaml")
    q.write_text(yaml.safe_dump(doc, allow_unicode=True, default_flow_style=True))
    assert load_prompt_set(q).sha256 == ps.sha256
