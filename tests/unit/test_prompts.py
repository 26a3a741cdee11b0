"""Prompt sets: loading, validation (file:line and pair/control id in every error), hashing, built-ins."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitgate import CircuitgateError
from circuitgate.prompts import Control, Pair, Prompt, builtin_names, load_prompt_set

GOOD = """\
schema: 2
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
    task: recall
    a: {prompt: "Name the capital of France.", answer: "Paris", template: r-short}
    b: {prompt: "France's capital is", answer: "Paris", template: r-long}
  - id: c2
    task: reasoning
    a: {prompt: "If X is the capital of Japan and Japan is in Asia, what continent is X in?", answer: "Asia"}
    b: {prompt: "Japan is in Asia and X is the capital of Japan. Which continent is X in?", answer: "Asia"}
  - id: c3
    task: recall
    a: {prompt: "Name the capital of Japan.", answer: "Tokyo"}
    b: {prompt: "Japan's capital is", answer: "Tokyo"}
"""

# a schema 1 file: the same pairs, no controls (schema 1 controls were pairs that nothing used)
GOOD1 = GOOD.replace("schema: 2", "schema: 1").split("controls:")[0] + "controls: []\n"


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
    assert ps.schema == 2
    assert [c.id for c in ps.controls] == ["c1", "c2", "c3"]
    assert ps.controls[0] == Control(
        "c1", "recall", Prompt("Name the capital of France.", "Paris", "r-short"),
        Prompt("France's capital is", "Paris", "r-long"),
    )
    assert ps.controls[1].task == "reasoning" and ps.controls[1].a.template is None
    # The hash is of the content: a comment and layout do not move it, an answer does.
    again = load_prompt_set(write(tmp_path, "# a comment\n" + GOOD, "again.yaml"))
    changed = load_prompt_set(write(tmp_path, GOOD.replace("Paris", "Lyon"), "changed.yaml"))
    assert re.fullmatch(r"[0-9a-f]{64}", ps.sha256) and again.sha256 == ps.sha256 != changed.sha256


def test_control_accessors(tmp_path):
    ps = load_prompt_set(write(tmp_path, GOOD, "good.yaml"))
    assert ps.control_tasks() == ["recall", "reasoning"]
    assert ps.control_ids("recall") == ["c1", "c3"] and ps.control_ids("reasoning") == ["c2"]
    assert ps.control_prompts("recall", "a") == ["Name the capital of France.", "Name the capital of Japan."]
    assert ps.control_prompts("recall", "b") == ["France's capital is", "Japan's capital is"]
    assert ps.control_answers("recall", "a") == ["Paris", "Tokyo"] == ps.control_answers("recall", "b")
    assert ps.control_answers("reasoning", "b") == ["Asia"]
    assert [c.id for c in ps.controls_of("reasoning")] == ["c2"]
    with pytest.raises(ValueError, match="side"):
        ps.control_prompts("recall", "recall")
    with pytest.raises(ValueError, match="task"):
        ps.control_answers("a", "a")


def test_control_tasks_are_in_task_order_not_file_order(tmp_path):
    doc = yaml.safe_load(GOOD)
    doc["controls"].reverse()  # reasoning control first now
    ps = load_prompt_set(write(tmp_path, yaml.safe_dump(doc), "good.yaml"))
    assert ps.control_tasks() == ["recall", "reasoning"]
    assert ps.control_ids("recall") == ["c3", "c1"]  # file order within a task
    doc["controls"] = [c for c in doc["controls"] if c["task"] == "reasoning"]
    ps = load_prompt_set(write(tmp_path, yaml.safe_dump(doc), "good.yaml"))
    assert ps.control_tasks() == ["reasoning"] and ps.control_prompts("recall", "a") == []


def test_schema_1_still_loads_with_its_pairs_unchanged(tmp_path):
    one = load_prompt_set(write(tmp_path, GOOD1, "one.yaml"))
    two = load_prompt_set(write(tmp_path, GOOD, "two.yaml"))
    assert one.schema == 1 and two.schema == 2
    assert one.pairs == two.pairs and one.controls == ()
    assert one.control_tasks() == [] and one.control_prompts("recall", "a") == []
    assert one.sha256 != two.sha256
    # without a controls key, or with an empty one, a schema 1 file reads the same
    bare = load_prompt_set(write(tmp_path, GOOD1.replace("controls: []\n", ""), "bare.yaml"))
    assert bare.pairs == one.pairs and bare.sha256 == one.sha256


def test_schema_1_hash_is_what_it_was():
    # the hash of a schema 1 file did not change with schema 2 (verdicts and caches name prompt sets by it)
    import hashlib
    import json

    ps = load_prompt_set("geography-paper")
    enc = [[p.id, [p.recall.prompt, p.recall.answer], [p.reasoning.prompt, p.reasoning.answer]] for p in ps.pairs]
    blob = json.dumps({"schema": 1, "name": ps.name, "pairs": enc, "controls": []})
    assert ps.sha256 == hashlib.sha256(blob.encode()).hexdigest()


def test_schema_1_controls_are_an_error(tmp_path):
    text = GOOD.replace("schema: 2", "schema: 1")
    msg = error_of(write(tmp_path, text))
    assert "bad.yaml:11" in msg and "controls need schema 2" in msg and "schema 1" in msg
    old_style = GOOD1.replace("controls: []\n", """controls:
  - id: c1
    recall: {prompt: "Name the capital of France.", answer: "Paris"}
    reasoning: {prompt: "France's capital is", answer: "Paris"}
""")
    assert "controls need schema 2" in error_of(write(tmp_path, old_style))


def test_controls_and_description_are_optional(tmp_path):
    text = GOOD.split("controls:")[0] + "description: a tiny set\n"
    ps = load_prompt_set(write(tmp_path, text, "good.yaml"))
    assert ps.controls == ()
    assert len(ps.pairs) == 2


@pytest.mark.parametrize("change", [
    lambda d: d["controls"][0]["a"].update(prompt="Name France's capital."),
    lambda d: d["controls"][0]["b"].update(answer="Lyon"),
    lambda d: d["controls"][1].update(task="recall"),
    lambda d: d["controls"][0].update(id="c9"),
    lambda d: d["controls"].reverse(),
    lambda d: d["controls"][0].update(a=d["controls"][0]["b"], b=d["controls"][0]["a"]),
    lambda d: d["controls"].pop(),
])
def test_hash_covers_controls(tmp_path, change):
    doc = yaml.safe_load(GOOD)
    a = load_prompt_set(write(tmp_path, yaml.safe_dump(doc), "a.yaml"))
    change(doc)
    b = load_prompt_set(write(tmp_path, yaml.safe_dump(doc), "b.yaml"))
    assert b.sha256 != a.sha256


def test_hash_leaves_templates_out(tmp_path):
    # templates are labels, as for pairs: renaming one does not change what is asked
    doc = yaml.safe_load(GOOD)
    a = load_prompt_set(write(tmp_path, yaml.safe_dump(doc), "a.yaml"))
    doc["controls"][0]["a"]["template"] = "renamed"
    doc["pairs"][1]["recall"]["template"] = "renamed"
    b = load_prompt_set(write(tmp_path, yaml.safe_dump(doc), "b.yaml"))
    assert b.sha256 == a.sha256


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
    assert {"geography", "geography-paper", "organism"} <= set(names)


def test_geography_paper_builtin():
    ps = load_prompt_set("geography-paper")
    assert ps.name == "geography-paper"
    assert len(ps.pairs) == 30 and len(set(ps.ids)) == 30
    first = ps.pairs[0]
    assert first.id == "thailand"
    assert first.recall == Prompt("What is the capital of Thailand?", "Bangkok", "paper-recall")
    assert first.reasoning.answer == "Asia" and first.reasoning.template == "paper-reasoning"
    assert all(p.startswith("What is the capital of ") for p in ps.prompts("recall"))
    assert set(ps.answers("reasoning")) <= {"Asia", "Europe", "Africa", "North America", "South America", "Oceania"}
    assert Path(ps.source).name == "geography-paper.yaml"


def test_the_paper_set_still_loads_by_its_first_name():
    assert load_prompt_set("geography-seed") == load_prompt_set("geography-paper")
    assert "geography-seed" not in builtin_names()


def test_builtin_loads_identically_by_name_and_by_path():
    by_name = load_prompt_set("organism")
    by_path = load_prompt_set(Path(by_name.source))
    assert by_path.pairs == by_name.pairs and by_path.sha256 == by_name.sha256


def test_every_builtin_loads():
    for name in builtin_names():
        ps = load_prompt_set(name)
        assert ps.name == name and ps.pairs


# -- the built-in sets geography and geography-completion (schema 2: several length-matched templates,
# null controls; generated from one list of facts) ---------------------------------------------------

CONTINENTS = {"Africa", "Asia", "Europe", "North America", "South America", "Oceania"}


@pytest.fixture(scope="module", params=["geography", "geography-completion"])
def geography(request):
    return load_prompt_set(request.param)


def words(text: str) -> int:
    return len(text.split())


def test_geography_loads_with_enough_facts(geography):
    ps = geography
    assert ps.schema == 2 and Path(ps.source).name == f"{ps.name}.yaml"
    assert len(ps.pairs) >= 100 and len(set(ps.ids)) == len(ps.ids)
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", i) for i in ps.ids)
    assert set(ps.answers("reasoning")) == CONTINENTS
    assert len(set(ps.answers("recall"))) == len(ps.pairs)  # one fact per country


def test_geography_has_at_least_three_templates_per_task_used_evenly(geography):
    for side in ("recall", "reasoning"):
        counts = Counter(getattr(p, side).template for p in geography.pairs)
        assert None not in counts and len(counts) >= 3
        assert max(counts.values()) - min(counts.values()) <= 1  # round-robin


def test_geography_pairs_are_length_matched(geography):
    for p in geography.pairs:
        assert words(p.recall.prompt) == words(p.reasoning.prompt), p.id
        assert abs(len(p.recall.prompt) - len(p.reasoning.prompt)) <= 2, p.id
    # and one template of a task is always paired with the same template of the other
    assert len({(p.recall.template, p.reasoning.template) for p in geography.pairs}) == 3


def test_geography_recall_needs_the_weights_and_reasoning_states_its_answer(geography):
    for p in geography.pairs:
        assert p.recall.answer.lower() not in p.recall.prompt.lower(), p.id
        assert p.reasoning.answer in p.reasoning.prompt, p.id
        if geography.name == "geography":  # questions
            assert p.recall.prompt.endswith("?") and p.reasoning.prompt.endswith("?")
        else:  # completions: the prompt ends where the answer begins
            assert p.recall.prompt.endswith(" of") and p.reasoning.prompt.endswith(" continent of"), p.id
    for c in geography.controls_of("recall"):
        for side in (c.a, c.b):
            assert side.answer.lower() not in side.prompt.lower(), c.id
    for c in geography.controls_of("reasoning"):
        for side in (c.a, c.b):
            assert side.answer in side.prompt and side.answer in CONTINENTS, c.id


def test_geography_controls(geography):
    ps = geography
    assert ps.control_tasks() == ["recall", "reasoning"]
    pairs = {p.id: p for p in ps.pairs}
    for task in ("recall", "reasoning"):
        controls = ps.controls_of(task)
        assert len(controls) >= 40
        for c in controls:
            assert c.a.template and c.b.template and c.a.template != c.b.template, c.id
            assert c.a.prompt != c.b.prompt
            pid = c.id.removesuffix(f"-{task}")
            assert c.id == f"{pid}-{task}" and pid in pairs  # a control asks a fact of the main pairs
            fact = getattr(pairs[pid], task)
            assert c.a.answer == c.b.answer == fact.answer
    # Both tasks: the pair's own prompt against the next template of the same task, equal in words, so
    # only the template changes (the controls mirror the pairs' length matching).
    for task in ("recall", "reasoning"):
        for c in ps.controls_of(task):
            assert c.a == getattr(pairs[c.id.removesuffix(f"-{task}")], task)
            assert words(c.a.prompt) == words(c.b.prompt)
    recall_templates = {p.recall.template for p in ps.pairs}
    assert {c.b.template for c in ps.controls_of("recall")} == recall_templates


def test_geography_keeps_the_paper_facts_and_conventions(geography):
    paper = load_prompt_set("geography-paper")
    ours = {p.id: (p.recall.answer, p.reasoning.answer) for p in geography.pairs}
    for p in paper.pairs:
        assert ours[p.id] == (p.recall.answer, p.reasoning.answer), p.id
    assert ours["russia"][1] == "Europe" and ours["turkey"][1] == "Asia"


def test_geography_is_what_its_generator_renders(geography):
    from circuitgate.prompts import make_geography

    assert Path(geography.source).read_text(encoding="utf-8") == make_geography.render(geography.name)
    assert len(make_geography.FACTS) == len(geography.pairs)
    assert len({slug for slug in map(make_geography.slug, (f[0] for f in make_geography.FACTS))}) == len(
        make_geography.FACTS
    )


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


@pytest.mark.parametrize("schema", ["3", "0", "'2'", "true", "2.0"])
def test_unsupported_schema(tmp_path, schema):
    msg = error_of(write(tmp_path, GOOD.replace("schema: 2", f"schema: {schema}")))
    assert "bad.yaml:1" in msg and "unsupported schema" in msg and "reads 1, 2" in msg


def test_missing_schema(tmp_path):
    msg = error_of(write(tmp_path, GOOD.replace("schema: 2\n", "")))
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


# -- errors in controls: file, line and the control's id ----------------------------------------

CONTROL_HEAD = """\
schema: 2
name: t
pairs:
  - id: a
    recall: {prompt: "p", answer: "x"}
    reasoning: {prompt: "q", answer: "y"}
controls:
"""


def control_error(tmp_path, body: str) -> str:
    return error_of(write(tmp_path, CONTROL_HEAD + body))


def test_control_missing_b(tmp_path):
    msg = control_error(tmp_path, """\
  - id: c1
    task: recall
    a: {prompt: "p", answer: "x"}
""")
    assert "bad.yaml:8" in msg and "control 'c1'" in msg and "missing b" in msg


def test_control_missing_a_and_b(tmp_path):
    msg = control_error(tmp_path, "  - {id: c1, task: reasoning}\n")
    assert "bad.yaml:8" in msg and "control 'c1'" in msg and "missing a and b" in msg


@pytest.mark.parametrize("task", ["null", "Recall", "both", "[recall]", "1"])
def test_control_task_must_be_recall_or_reasoning(tmp_path, task):
    msg = control_error(tmp_path, f"""\
  - id: c1
    task: {task}
    a: {{prompt: "p", answer: "x"}}
    b: {{prompt: "p2", answer: "x"}}
""")
    assert "bad.yaml:8" in msg and "control 'c1'" in msg and "'task' must be recall or reasoning" in msg


def test_control_without_task(tmp_path):
    msg = control_error(tmp_path, """\
  - id: c1
    a: {prompt: "p", answer: "x"}
    b: {prompt: "p2", answer: "x"}
""")
    assert "bad.yaml:8" in msg and "'task' must be recall or reasoning, not None" in msg


def test_control_with_the_same_prompt_twice(tmp_path):
    msg = control_error(tmp_path, """\
  - id: c1
    task: recall
    a: {prompt: "What is the capital of France?", answer: "Paris", template: r0}
    b: {prompt: "What is the capital of France?", answer: "Paris", template: r1}
""")
    assert "bad.yaml:8" in msg and "control 'c1'" in msg and "a and b are the same prompt" in msg


def test_control_with_the_same_template_twice(tmp_path):
    msg = control_error(tmp_path, """\
  - id: c1
    task: recall
    a: {prompt: "What is the capital of France?", answer: "Paris", template: r0}
    b: {prompt: "Name the capital of France.", answer: "Paris", template: r0}
""")
    assert "bad.yaml:8" in msg and "control 'c1'" in msg and "same template 'r0'" in msg


def test_control_templates_are_compared_only_when_both_are_given(tmp_path):
    ps = load_prompt_set(write(tmp_path, CONTROL_HEAD + """\
  - id: c1
    task: recall
    a: {prompt: "What is the capital of France?", answer: "Paris", template: r0}
    b: {prompt: "Name the capital of France.", answer: "Paris"}
""", "ok.yaml"))
    assert ps.controls[0].a.template == "r0" and ps.controls[0].b.template is None


def test_control_duplicate_ids(tmp_path):
    msg = control_error(tmp_path, """\
  - id: c1
    task: recall
    a: {prompt: "p", answer: "x"}
    b: {prompt: "p2", answer: "x"}
  - id: c1
    task: reasoning
    a: {prompt: "q", answer: "y"}
    b: {prompt: "q2", answer: "y"}
""")
    assert "bad.yaml:12" in msg and "control 'c1'" in msg and "duplicate id (first on line 8)" in msg


def test_control_ids_are_their_own_namespace(tmp_path):
    ps = load_prompt_set(write(tmp_path, CONTROL_HEAD + """\
  - id: a
    task: recall
    a: {prompt: "p", answer: "x"}
    b: {prompt: "p2", answer: "x"}
""", "ok.yaml"))
    assert ps.ids == ["a"] and [c.id for c in ps.controls] == ["a"]


@pytest.mark.parametrize("cid", ["", "-dash-first", "has space", "7", "null"])
def test_control_bad_ids(tmp_path, cid):
    msg = control_error(tmp_path, f"""\
  - id: {cid if cid else "''"}
    task: recall
    a: {{prompt: "p", answer: "x"}}
    b: {{prompt: "p2", answer: "x"}}
""")
    assert "bad.yaml:8" in msg and "controls[0] needs an id" in msg


def test_control_unknown_key(tmp_path):
    msg = control_error(tmp_path, """\
  - id: c1
    task: recall
    recall: {prompt: "p", answer: "x"}
    reasoning: {prompt: "p2", answer: "x"}
""")
    assert "bad.yaml:8" in msg and "control 'c1'" in msg and "unknown key(s) reasoning, recall" in msg


def test_control_side_errors_name_the_control_and_side(tmp_path):
    msg = control_error(tmp_path, """\
  - id: c1
    task: recall
    a: {prompt: "p", answer: "x"}
    b:
      prompt: "p2"
      answer: ""
""")
    # the b mapping starts on line 12
    assert "bad.yaml:12" in msg and "control 'c1' b" in msg and "'answer' must be a non-empty string" in msg
    msg = control_error(tmp_path, """\
  - id: c1
    task: recall
    a: {prompt: "p", answer: "x", answers: "y"}
    b: {prompt: "p2", answer: "x"}
""")
    assert "bad.yaml:10" in msg and "control 'c1' a" in msg and "unknown key(s) answers" in msg
    msg = control_error(tmp_path, """\
  - id: c1
    task: recall
    a: "What is the capital of France?"
    b: {prompt: "p2", answer: "x"}
""")
    assert "bad.yaml:8" in msg and "control 'c1' a" in msg and "expected a mapping" in msg


def test_controls_that_are_not_a_list(tmp_path):
    msg = control_error(tmp_path, "  c1: {task: recall}\n")
    assert "bad.yaml:1" in msg and "'controls' must be a list of controls" in msg


def test_control_that_is_not_a_mapping(tmp_path):
    msg = control_error(tmp_path, "  - just a string\n")
    assert "controls[0] must be a mapping with id, task, a, b" in msg


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(CircuitgateError, match="prompt file not found") as e:
        load_prompt_set(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(e.value)
    with pytest.raises(CircuitgateError) as e:
        load_prompt_set("no-such-set")
    msg = str(e.value)
    assert "unknown prompt set 'no-such-set'" in msg and "geography-paper" in msg and "organism" in msg


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


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(ids, st.sampled_from(["recall", "reasoning"]), text, text, text),
                min_size=1, max_size=5, unique_by=lambda t: t[0]))
def test_round_trip_controls(tmp_path_factory, rows):
    doc = {
        "schema": 2,
        "name": "generated",
        "pairs": [{"id": "p", "recall": {"prompt": "r", "answer": "x"}, "reasoning": {"prompt": "s", "answer": "y"}}],
        "controls": [
            {"id": i, "task": task, "a": {"prompt": pa, "answer": ans}, "b": {"prompt": pa + " (b)", "answer": ans}}
            for i, task, pa, _, ans in rows
        ],
    }
    p = tmp_path_factory.mktemp("rt") / "gen.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True))
    ps = load_prompt_set(p)
    assert [c.id for c in ps.controls] == [r[0] for r in rows]
    for task in ("recall", "reasoning"):
        mine = [r for r in rows if r[1] == task]
        assert ps.control_prompts(task, "a") == [r[2] for r in mine]
        assert ps.control_prompts(task, "b") == [r[2] + " (b)" for r in mine]
        assert ps.control_answers(task, "b") == [r[4] for r in mine]
        assert (task in ps.control_tasks()) == bool(mine)
    q = p.with_name("flow.yaml")
    q.write_text(yaml.safe_dump(doc, allow_unicode=True, default_flow_style=True))
    assert load_prompt_set(q).sha256 == ps.sha256


# -- variants: the wordings a tokenizer chooses among (PromptSet.matched) ------------------------------
GEOGRAPHY_SHA = "1dfd196fc6f7"  # the question form's hash before variants existed
VARIANTS = """\
schema: 2
name: v
pairs:
  - id: a
    recall: {prompt: "one two three", answer: x, template: r, variants: ["one two three four five", "one two three four"]}
    reasoning: {prompt: "six seven eight nine", answer: y, template: s, variants: ["six seven"]}
  - id: b
    recall: {prompt: "one two", answer: x, template: r}
    reasoning: {prompt: "three four", answer: y, template: s, variants: ["five"]}
controls:
  - id: a-recall
    task: recall
    a: {prompt: "one two three", answer: x, template: r, variants: ["one two three four"]}
    b: {prompt: "p q r s", answer: x, template: r2}
"""


def _words(texts):
    return [len(t.split()) for t in texts]


def test_matched_picks_the_wordings_with_equal_token_counts_earliest_first(tmp_path):
    f = tmp_path / "v.yaml"
    f.write_text(VARIANTS)
    ps = load_prompt_set(f)
    assert ps.has_variants and ps.pairs[0].recall.wordings[0] == "one two three"
    m = ps.matched(_words)
    # pair a: 3 vs 4 words is one apart; "one two three four" (4) meets the first reasoning wording (4)
    # before the 5-word one is tried; pair b is already equal in its first wordings
    assert [(p.recall.prompt, p.reasoning.prompt) for p in m.pairs] == [
        ("one two three four", "six seven eight nine"), ("one two", "three four")]
    assert m.controls[0].a.prompt == "one two three four" and m.controls[0].b.prompt == "p q r s"
    assert not m.has_variants and (m.name, m.sha256, m.source) == (ps.name, ps.sha256, ps.source)
    assert m.matched(_words) is m  # nothing left to choose


def test_matched_keeps_the_closest_when_no_wordings_are_equal(tmp_path):
    f = tmp_path / "v.yaml"
    f.write_text(VARIANTS)
    m = load_prompt_set(f).matched(lambda ts: [len(t) for t in ts])  # characters: no exact match for pair b
    b = m.pairs[1]
    assert (b.recall.prompt, b.reasoning.prompt) == ("one two", "three four")  # 7 against 10 or 4: a tie, the earliest
    assert abs(len(b.recall.prompt) - len(b.reasoning.prompt)) == min(
        abs(len("one two") - len(w)) for w in ("three four", "five"))


def test_variants_are_in_the_hash_and_a_set_without_them_hashes_as_before(tmp_path):
    f = tmp_path / "v.yaml"
    f.write_text(VARIANTS)
    with_variants = load_prompt_set(f).sha256
    f.write_text(VARIANTS.replace(', variants: ["six seven"]', ""))
    assert load_prompt_set(f).sha256 != with_variants
    # the question form has none: its hash is the one its documents have always recorded
    assert load_prompt_set("geography").sha256.startswith(GEOGRAPHY_SHA)


@pytest.mark.parametrize("variants, message", [
    ('"not a list"', "'variants' must be a list of non-empty strings"),
    ('[""]', "'variants' must be a list of non-empty strings"),
    ('["one two three"]', "'variants' repeat a wording"),
])
def test_bad_variants_name_the_file_and_line(tmp_path, variants, message):
    f = tmp_path / "v.yaml"
    f.write_text(VARIANTS.replace('["one two three four five", "one two three four"]', variants))
    with pytest.raises(CircuitgateError, match=f"v.yaml:5: pair 'a' recall: {re.escape(message)}"):
        load_prompt_set(f)
