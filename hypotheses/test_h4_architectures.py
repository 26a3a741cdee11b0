"""H4: the specialisation is consistent across architectures — two families' depth profiles agree."""


def test_H4(h4, judge):
    judge.hypothesis(h4)


def test_H4_depth(h4, depth, judge):
    judge.component(h4, depth)
