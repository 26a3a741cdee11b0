"""H5: causal interventions on a circuit selectively impair its own capability (task x target interaction)."""


def test_H5(h5, judge):
    judge.hypothesis(h5)


def test_H5_ablation(h5, target, judge):
    judge.component(h5, target)
