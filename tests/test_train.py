import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from tlcourse.checkpoint import load_checkpoint, load_weights, save_checkpoint, save_weights
from tlcourse.data import ArrayDataset
from tlcourse.models import SmallResNet
from tlcourse.train import History, NonFiniteLossError, evaluate, fit, predict


def small(n_classes=3):
    return SmallResNet(n_classes, widths=(8, 16, 16))


def test_fit_reduces_loss_and_learns(tiny_images):
    model = small()
    before = evaluate(model, tiny_images)["loss"]
    history = fit(model, tiny_images, epochs=5, lr=1e-2, batch_size=16, seed=0, val_data=tiny_images)
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert evaluate(model, tiny_images)["loss"] < before
    assert history["val_accuracy"][-1] > 0.9
    assert len(history) == 5 and history.last["epoch"] == 5


def test_fit_is_reproducible_with_a_seed(tiny_images):
    a, b = small(), small()
    b.load_state_dict(a.state_dict())
    fit(a, tiny_images, epochs=2, seed=1, batch_size=16)
    fit(b, tiny_images, epochs=2, seed=1, batch_size=16)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_predict_and_evaluate_agree(tiny_images):
    model = small()
    logits = predict(model, tiny_images, batch_size=10)
    assert logits.shape == (len(tiny_images), 3)
    acc = (logits.argmax(1) == tiny_images.labels).float().mean().item()
    assert evaluate(model, tiny_images)["accuracy"] == pytest.approx(acc)


def test_fit_accepts_dict_inputs():
    class DictModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, features, mask):
            return self.lin(features * mask)

    x = torch.randn(32, 4)
    y = (x[:, 0] > 0).long()
    batches = [({"features": x[i : i + 8], "mask": torch.ones(8, 4)}, y[i : i + 8]) for i in range(0, 32, 8)]
    history = fit(DictModel(), DataLoader(batches, batch_size=None), epochs=20, lr=0.05)
    assert history["train_accuracy"][-1] > 0.8


def test_early_stopping_stops_at_the_best_epoch_and_restores_its_weights(tiny_images):
    # Validation labels are the training labels shifted by one class: the better the model fits
    # the training set, the worse the validation loss, so the best epoch is the first one.
    shifted = ArrayDataset(tiny_images.images, (tiny_images.labels + 1) % 3)
    start = small().state_dict()
    model = small()
    model.load_state_dict(start)
    history = fit(model, tiny_images, epochs=30, lr=1e-2, val_data=shifted, early_stopping=2, seed=0, batch_size=32)
    assert history.best_epoch == 0
    assert len(history) == 3  # the best epoch, then two epochs without improvement
    assert history["val_loss"][1] > history["val_loss"][0] and history["val_loss"][2] > history["val_loss"][0]
    one_epoch = small()
    one_epoch.load_state_dict(start)
    fit(one_epoch, tiny_images, epochs=1, lr=1e-2, seed=0, batch_size=32)
    for (name, a), b in zip(model.state_dict().items(), one_epoch.state_dict().values()):
        assert torch.equal(a, b), name  # the restored weights are exactly those of epoch 1
    assert evaluate(model, shifted)["loss"] == pytest.approx(history["val_loss"][0], rel=1e-6)


def test_without_early_stopping_every_epoch_runs_and_the_best_is_noted(tiny_images):
    history = fit(small(), tiny_images, epochs=4, lr=1e-2, val_data=tiny_images, seed=0, batch_size=32)
    assert len(history) == 4
    assert history.best_epoch == min(range(4), key=lambda e: history["val_loss"][e])


def test_gradient_accumulation_equals_one_larger_batch():
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    b = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    b.load_state_dict(a.state_dict())
    fit(a, data, epochs=2, batch_size=16, seed=0, optimizer=torch.optim.SGD(a.parameters(), lr=0.5))
    ha = fit(b, data, epochs=2, batch_size=8, accumulate=2, seed=0, optimizer=torch.optim.SGD(b.parameters(), lr=0.5))
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    assert len(ha) == 2


def test_nan_check_every_n_steps_reports_where_it_looked(tiny_images):
    bad = ArrayDataset(tiny_images.images.clone(), tiny_images.labels)
    bad.images[:, 0, 0, 0] = float("nan")  # every batch is bad from the first step on
    from tlcourse.train import Engine

    model = small()
    engine = Engine({"model": model}, {"opt": torch.optim.SGD(model.parameters(), lr=0.1)}, nan_check_every=4)
    loader = torch.utils.data.DataLoader(bad, batch_size=8)

    def step(batch):
        x, y = batch
        return {"loss": torch.nn.functional.cross_entropy(model(x), y)}

    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 1, step 4 \(checked every 4 steps\)"):
        engine.run(loader, step, epochs=1)


def test_evaluate_reduces_its_sums_on_the_model_device(tiny_images, monkeypatch):
    import tlcourse.train.classification as classification

    seen = []

    def spy(tensor):
        seen.append((tensor.device, tensor.dtype))
        return tensor

    monkeypatch.setattr(classification, "all_reduce_sum", spy)
    model = small()
    result = evaluate(model, tiny_images, batch_size=40)
    assert seen == [(next(model.parameters()).device, torch.float64)]
    logits = predict(model, tiny_images)
    expected = torch.nn.functional.cross_entropy(logits, tiny_images.labels).item()
    assert result["loss"] == pytest.approx(expected, rel=1e-5)


def test_an_interrupted_run_resumes_bitwise(tiny_images, tmp_path, monkeypatch):
    from tlcourse.train.engine import Engine

    start = small().state_dict()
    kwargs = dict(epochs=4, seed=0, batch_size=16, val_data=tiny_images, lr=1e-2,
                  scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1, 0.7))
    reference = small()
    reference.load_state_dict(start)
    expected = fit(reference, tiny_images, **kwargs)

    save = Engine._save

    def crash_after_epoch_2(self, loader, history, best, epoch):
        save(self, loader, history, best, epoch)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(Engine, "_save", crash_after_epoch_2)
    ckpt = tmp_path / "run.safetensors"
    crashed = small()
    crashed.load_state_dict(start)
    with pytest.raises(KeyboardInterrupt):
        fit(crashed, tiny_images, checkpoint=ckpt, **kwargs)
    monkeypatch.setattr(Engine, "_save", save)
    resumed = small()
    resumed.load_state_dict(start)
    history = fit(resumed, tiny_images, checkpoint=ckpt, resume=True, **kwargs)
    assert history.records == expected.records
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_gives_bitwise_identical_weights(tiny_images, tmp_path):
    reference = small()
    start = {k: v.clone() for k, v in reference.state_dict().items()}
    fit(reference, tiny_images, epochs=4, seed=0, batch_size=16)

    interrupted = small()
    interrupted.load_state_dict(start)
    ckpt = tmp_path / "run.safetensors"
    fit(interrupted, tiny_images, epochs=2, seed=0, batch_size=16, checkpoint=ckpt)
    resumed = small()
    resumed.load_state_dict(start)  # a fresh process would start from scratch...
    history = fit(resumed, tiny_images, epochs=4, seed=0, batch_size=16, checkpoint=ckpt, resume=True)
    assert [r["epoch"] for r in history.records] == [1, 2, 3, 4]
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoint_round_trip_with_optimizer(tmp_path):
    model = small()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.rand(2, 1, 28, 28)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt, epoch=3, note="hi")
    other = small()
    other_opt = torch.optim.AdamW(other.parameters(), lr=1.0)
    state = load_checkpoint(path, other, other_opt)
    assert state["epoch"] == 3 and state["note"] == "hi"
    assert other_opt.param_groups[0]["lr"] == 1e-3
    assert torch.equal(other_opt.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file


def test_weights_round_trip_and_bad_files(tmp_path):
    model = small()
    save_weights(tmp_path / "w.safetensors", model, {"source": "test"})
    other = small()
    assert load_weights(tmp_path / "w.safetensors", other) == {"source": "test"}
    with pytest.raises(FileNotFoundError, match="path does not exist"):
        load_weights(tmp_path / "missing.safetensors", other)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_weights(bad, other)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "x.safetensors", model, when=object())


def test_nan_loss_stops_with_a_clear_error(tiny_images, tmp_path):
    bad = ArrayDataset(tiny_images.images.clone(), tiny_images.labels)
    bad.images[5, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 1, step \d+.*learning rate"):
        fit(small(), bad, epochs=1, batch_size=96)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 1, "lr": -1.0}, "lr"),
        ({"epochs": 1, "batch_size": 0}, "batch_size"),
        ({"epochs": 1, "early_stopping": 2}, "early_stopping needs val_data"),
        ({"epochs": 1, "resume": True}, "resume=True needs a checkpoint"),
        ({"epochs": 1, "amp": "fp8"}, "amp must be one of"),
        ({"epochs": 1, "monitor": "f1"}, "monitor must be one of"),
    ],
)
def test_fit_rejects_bad_arguments(tiny_images, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fit(small(), tiny_images, **kwargs)


def test_fit_rejects_bad_data_and_labels(tiny_images):
    with pytest.raises(ValueError, match="data is empty"):
        fit(small(), tiny_images.subset([]), epochs=1)
    with pytest.raises(TypeError, match="data must be a torch Dataset"):
        fit(small(), [1, 2, 3], epochs=1)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        fit(small(2), tiny_images, epochs=1)  # labels go up to 2 but the model has 2 outputs
    frozen = small()
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(frozen, tiny_images, epochs=1)


def test_history_plot_and_keys(tiny_images):
    history = fit(small(), tiny_images, epochs=2, val_data=tiny_images)
    assert history.plot() is not None
    with pytest.raises(KeyError, match="no metric"):
        history["f1"]
    assert History().last == {}
