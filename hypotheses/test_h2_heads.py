"""H2: attention heads specialise — head-level attention metrics differ between recall and reasoning."""


def test_H2(h2, judge):
    judge.hypothesis(h2)


def test_H2_head(h2, head, judge):
    judge.component(h2, head)


def test_H2_figure(h2, figure, judge):
    judge.figure(h2, figure)
