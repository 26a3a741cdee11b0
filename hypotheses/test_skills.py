"""The skills themselves, in a gate (--baseline): each task's clean accuracy against the baseline's,
pair by pair; a material drop fails here, named once, before the units that followed from it."""


def test_skill(task, judge):
    judge.skill(task)
