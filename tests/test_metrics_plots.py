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


def test_plots_draw_what_they_are_given():
    images = torch.rand(5, 3, 8, 8)
    fig = plots.show_images(images, labels=[0, 1, 2, 3, 4], ncols=3, title="t", classes=list("abcde"))
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 6 and len(drawn) == 5  # 2 rows of 3, the last cell left empty
    np.testing.assert_allclose(drawn[2].images[0].get_array(), images[2].permute(1, 2, 0).numpy(), rtol=1e-6)
    assert [ax.get_title() for ax in drawn] == list("abcde")
    with pytest.raises(ValueError, match="images"):
        plots.show_images(torch.rand(5, 8, 8))

    cm = np.array([[3, 1, 0], [0, 4, 0], [2, 0, 2]])
    ax = plots.plot_confusion_matrix(cm, ["a", "b", "c"])
    np.testing.assert_allclose(ax.images[0].get_array(), cm / cm.sum(1, keepdims=True))  # rows normalised
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix(np.ones((2, 3)))

    feats = torch.randn(30, 5)
    ax = plots.plot_embedding(feats, labels=torch.arange(30) % 3, domains=torch.arange(30) % 2)
    assert [len(c.get_offsets()) for c in ax.collections] == [15, 15]  # one scatter per domain
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["source", "target"]
    with pytest.raises(ValueError, match="method"):
        plots.plot_embedding(feats, method="umap")

    ax = plots.plot_curves([1, 2], {"a": ([0.1, 0.2], [0.01, 0.02])}, "x", "y")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.1, 0.2])
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "y"
    with pytest.raises(ValueError, match="history is empty"):
        plots.plot_history([])
