import numpy as np
import pytest
import torch

from tlcourse import metrics, plots


def test_metrics_match_sklearn():
    from sklearn.metrics import confusion_matrix, f1_score

    y = np.array([0, 1, 2, 2, 1, 0])
    p = np.array([0, 2, 2, 2, 1, 1])
    assert metrics.accuracy(y, p) == pytest.approx(4 / 6)
    assert metrics.macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro"))
    assert (metrics.confusion_matrix(y, p) == confusion_matrix(y, p)).all()
    logits = torch.nn.functional.one_hot(torch.tensor(p), 3).float()
    assert metrics.accuracy(torch.tensor(y), logits) == pytest.approx(4 / 6)
    report = metrics.per_class_report(y, p, ["a", "b", "c"])
    assert report["c"]["recall"] == 1.0


def test_metrics_bad_input():
    with pytest.raises(ValueError, match="same length"):
        metrics.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        metrics.accuracy([], [])
    with pytest.raises(TypeError, match="integer"):
        metrics.accuracy(np.array([0.5, 1.0]), np.array([0, 1]))


def test_mean_std():
    assert metrics.mean_std([1.0, 3.0]) == (2.0, pytest.approx(np.sqrt(2)))
    assert metrics.mean_std([5.0]) == (5.0, 0.0)
    assert metrics.format_mean_std([0.5, 0.7], percent=True) == "60.0 ± 14.1"
    with pytest.raises(ValueError, match="empty"):
        metrics.mean_std([])


def test_plots_draw_and_validate():
    assert plots.show_images(torch.rand(5, 3, 8, 8), labels=[0, 1, 2, 3, 4], ncols=3, title="t") is not None
    with pytest.raises(ValueError, match="images"):
        plots.show_images(torch.rand(5, 8, 8))
    assert plots.plot_confusion_matrix(np.eye(3) * 5, ["a", "b", "c"]) is not None
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix(np.ones((2, 3)))
    feats = torch.randn(30, 5)
    assert plots.plot_embedding(feats, labels=torch.arange(30) % 3, domains=torch.arange(30) % 2) is not None
    with pytest.raises(ValueError, match="method"):
        plots.plot_embedding(feats, method="umap")
    assert plots.plot_curves([1, 2], {"a": ([0.1, 0.2], [0.01, 0.02])}, "x", "y") is not None
    with pytest.raises(ValueError, match="history is empty"):
        plots.plot_history([])
