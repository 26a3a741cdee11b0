"""H3: MLP neurons are task-specific — per layer, the share of neurons whose activation differs between tasks."""


def test_H3(h3, judge):
    judge.hypothesis(h3)


def test_H3_layer(h3, layer, judge):
    judge.component(h3, layer)


def test_H3_figure(h3, figure, judge):
    judge.figure(h3, figure)
