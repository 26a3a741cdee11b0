"""H1: layers specialise — layer-level activation features differ between recall and reasoning."""


def test_H1(h1, judge):
    judge.hypothesis(h1)


def test_H1_layer(h1, layer, judge):
    judge.component(h1, layer)


def test_H1_figure(h1, figure, judge):
    judge.figure(h1, figure)
