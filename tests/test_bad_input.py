"""Table-driven bad-input tests: every case must raise ValueError/TypeError naming the argument.

Each row is (label, callable, expected exception, a regex the message must match). A learner's
typical mistakes: wrong type, wrong shape, wrong dtype, empty input, labels outside [0, C),
mismatched lengths, NaN/inf, unknown names, out-of-range hyper-parameters.
"""

from __future__ import annotations

import math

import pytest
import torch

from tlcourse import checks, metrics, plots
from tlcourse.adapt import LeNet, train_adaptation, train_gan_1d
from tlcourse.bench import bench_methods
from tlcourse.data import ArrayDataset, few_shot, load_mnist, load_uci_digits, make_mnistm
from tlcourse.data.glyphs import load_glyphs
from tlcourse.finetune import L2SPLoss, discriminative_param_groups, extract_features, freeze, trainable_stages
from tlcourse.models import SmallResNet, load_pretrained, model_card, replace_head, torchvision_backbone
from tlcourse.multimodal import DualEncoder, fit_dual_encoder
from tlcourse.strategies import compare, probe_accuracy, run_strategy
from tlcourse.train import Engine, evaluate, fit, predict
from tlcourse.utils import get_device, glue, seed_everything

X = torch.rand(8, 1, 28, 28)
Y = torch.arange(8) % 2
DS = ArrayDataset(X, Y)
EMPTY = DS.subset([])
NAN = ArrayDataset(torch.full((4, 1, 28, 28), float("nan")), torch.tensor([0, 1, 0, 1]))


def net(c: int = 2) -> SmallResNet:
    return SmallResNet(c, widths=(4, 8, 8))


def _dual() -> DualEncoder:
    return DualEncoder(torch.nn.Embedding(4, 2), torch.nn.Linear(2, 2), 2, 2, embed_dim=2)


CASES = [
    # utils
    ("seed negative", lambda: seed_everything(-3), ValueError, "seed"),
    ("seed float", lambda: seed_everything(0.5), TypeError, "seed"),
    ("device unknown", lambda: get_device("tpu"), ValueError, "device"),
    ("device wrong type", lambda: get_device(0), TypeError, "device"),
    ("glue empty name", lambda: glue("", 1), ValueError, "name"),
    # data
    ("ArrayDataset images not a tensor", lambda: ArrayDataset([[0.0]], Y), TypeError, "images"),
    ("ArrayDataset images 3-D", lambda: ArrayDataset(torch.rand(8, 28, 28), Y), ValueError, "images"),
    ("ArrayDataset integer images", lambda: ArrayDataset(torch.zeros(8, 1, 2, 2, dtype=torch.uint8), Y),
     TypeError, "images"),
    ("ArrayDataset length mismatch", lambda: ArrayDataset(X, Y[:3]), ValueError, "same length"),
    ("ArrayDataset negative label", lambda: ArrayDataset(X, Y - 1), ValueError, "labels"),
    ("ArrayDataset label >= classes", lambda: ArrayDataset(X, Y + 1, ["a", "b"]), ValueError, "labels"),
    ("ArrayDataset float labels", lambda: ArrayDataset(X, Y.float()), TypeError, "labels"),
    ("load_mnist channels=2", lambda: load_mnist(channels=2), ValueError, "channels"),
    ("load_mnist test_size=0", lambda: load_mnist(test_size=0.0), ValueError, "test_size"),
    ("load_mnist test_size=1.5", lambda: load_mnist(test_size=1.5), ValueError, "test_size"),
    ("load_mnist seed negative", lambda: load_mnist(seed=-1), ValueError, "seed"),
    ("load_uci_digits size too small", lambda: load_uci_digits(size=3), ValueError, "size"),
    ("load_uci_digits size float", lambda: load_uci_digits(size=28.0), TypeError, "size"),
    ("make_mnistm 2 channels", lambda: make_mnistm(torch.rand(2, 2, 28, 28)), ValueError, "images"),
    ("make_mnistm not a tensor", lambda: make_mnistm([1, 2]), TypeError, "images"),
    ("make_mnistm integer", lambda: make_mnistm(torch.zeros(1, 1, 28, 28, dtype=torch.long)), TypeError, "images"),
    ("few_shot k=0", lambda: few_shot(DS, 0), ValueError, "k"),
    ("few_shot k too large", lambda: few_shot(DS, 5), ValueError, "k must be <="),
    ("few_shot empty dataset", lambda: few_shot(EMPTY, 1), ValueError, "empty"),
    ("few_shot not a dataset", lambda: few_shot(X, 1), TypeError, "dataset"),
    ("load_glyphs n_per_class=0", lambda: load_glyphs(0), ValueError, "n_per_class"),
    ("load_glyphs unknown task", lambda: load_glyphs(1, task="font"), ValueError, "task"),
    # models
    ("SmallResNet num_classes=0", lambda: SmallResNet(0), ValueError, "num_classes"),
    ("SmallResNet num_classes float", lambda: SmallResNet(2.5), TypeError, "num_classes"),
    ("SmallResNet bad widths", lambda: SmallResNet(2, widths=(4, 0, 8)), ValueError, "widths"),
    ("SmallResNet 2-channel input", lambda: net()(torch.rand(1, 2, 28, 28)), ValueError, "x must have"),
    ("SmallResNet 3-D input", lambda: net()(torch.rand(1, 28, 28)), ValueError, "x must have"),
    ("SmallResNet integer input", lambda: net()(torch.zeros(1, 1, 28, 28, dtype=torch.uint8)), TypeError, "x must be"),
    ("replace_head no head", lambda: replace_head(torch.nn.Conv2d(1, 1, 1), 2), ValueError, "head"),
    ("replace_head num_classes=0", lambda: replace_head(net(), 0), ValueError, "num_classes"),
    ("load_pretrained unknown name", lambda: load_pretrained(name="vgg"), ValueError, "name"),
    ("model_card unknown name", lambda: model_card("nope"), ValueError, "name"),
    ("torchvision unknown model", lambda: torchvision_backbone("alexnet9", 2), ValueError, "name"),
    ("torchvision unknown weights", lambda: torchvision_backbone("resnet18", 2, weights="coco"), ValueError, "weights"),
    # train
    ("fit model not a module", lambda: fit("model", DS, epochs=1), TypeError, "model"),
    ("fit epochs=0", lambda: fit(net(), DS, epochs=0), ValueError, "epochs"),
    ("fit negative lr", lambda: fit(net(), DS, epochs=1, lr=-1e-3), ValueError, "lr"),
    ("fit nan lr", lambda: fit(net(), DS, epochs=1, lr=math.nan), ValueError, "lr"),
    ("fit negative weight decay", lambda: fit(net(), DS, epochs=1, weight_decay=-1.0), ValueError, "weight_decay"),
    ("fit batch_size=0", lambda: fit(net(), DS, epochs=1, batch_size=0), ValueError, "batch_size"),
    ("fit empty data", lambda: fit(net(), EMPTY, epochs=1), ValueError, "empty"),
    ("fit data not a dataset", lambda: fit(net(), [(X, Y)], epochs=1), TypeError, "data"),
    ("fit labels >= outputs", lambda: fit(net(1), DS, epochs=1), ValueError, "labels must be in"),
    ("fit unknown amp", lambda: fit(net(), DS, epochs=1, amp="int8"), ValueError, "amp"),
    ("fit unknown monitor", lambda: fit(net(), DS, epochs=1, monitor="auc"), ValueError, "monitor"),
    ("fit early stopping without val", lambda: fit(net(), DS, epochs=1, early_stopping=1), ValueError, "val_data"),
    ("fit early stopping zero", lambda: fit(net(), DS, epochs=1, early_stopping=0, val_data=DS),
     ValueError, "early_stopping"),
    ("fit resume without checkpoint", lambda: fit(net(), DS, epochs=1, resume=True), ValueError, "checkpoint"),
    ("fit negative grad_clip", lambda: fit(net(), DS, epochs=1, grad_clip=-1.0), ValueError, "grad_clip"),
    ("fit unknown scheduler interval", lambda: fit(net(), DS, epochs=1, scheduler_interval="batch"),
     ValueError, "scheduler_interval"),
    ("fit NaN inputs", lambda: fit(net(), NAN, epochs=1), FloatingPointError, "loss became nan"),
    ("evaluate empty", lambda: evaluate(net(), EMPTY), ValueError, "empty"),
    ("evaluate labels out of range", lambda: evaluate(net(1), DS), ValueError, "labels must be in"),
    ("predict not a dataset", lambda: predict(net(), 3), TypeError, "data"),
    # finetune
    ("freeze unknown stage", lambda: freeze(net(), ["backbone.layer7"]), ValueError, "no submodule"),
    ("trainable_stages too many", lambda: trainable_stages(net(), 9), ValueError, "train_top"),
    ("trainable_stages zero", lambda: trainable_stages(net(), 0), ValueError, "train_top"),
    ("discriminative lr=0", lambda: discriminative_param_groups(net(), 0.0), ValueError, "lr"),
    ("discriminative decay>1", lambda: discriminative_param_groups(net(), 1e-3, decay=1.5), ValueError, "decay"),
    ("discriminative negative weight decay", lambda: discriminative_param_groups(net(), 1e-3, weight_decay=-1.0),
     ValueError, "weight_decay"),
    ("L2SP negative alpha", lambda: L2SPLoss(net(), alpha=-0.1), ValueError, "alpha"),
    ("L2SP negative beta", lambda: L2SPLoss(net(), beta=-0.1), ValueError, "beta"),
    ("extract_features empty", lambda: extract_features(net().backbone, EMPTY), ValueError, "empty"),
    # strategies
    ("run_strategy unknown", lambda: run_strategy("magic", DS, DS), ValueError, "strategy"),
    ("run_strategy steps=0", lambda: run_strategy("scratch", DS, DS, steps=0), ValueError, "steps"),
    ("run_strategy negative lr", lambda: run_strategy("scratch", DS, DS, lr=-1.0), ValueError, "lr"),
    ("compare unknown strategy", lambda: compare(["magic"], DS, DS, [1]), ValueError, "strategies"),
    ("compare no budgets", lambda: compare(["scratch"], DS, DS, []), ValueError, "ks"),
    ("probe_accuracy C<=0", lambda: probe_accuracy(net().backbone, DS, DS, C=0.0), ValueError, "C"),
    # metrics and plots
    ("accuracy length mismatch", lambda: metrics.accuracy([0, 1], [0]), ValueError, "same length"),
    ("accuracy empty", lambda: metrics.accuracy([], []), ValueError, "empty"),
    ("accuracy float labels", lambda: metrics.accuracy([0.5], [1]), TypeError, "integer"),
    ("accuracy 3-D", lambda: metrics.accuracy(torch.zeros(2, 2, 2), [0, 1]), ValueError, "1-D"),
    ("macro_f1 mismatch", lambda: metrics.macro_f1([0, 1, 1], [0]), ValueError, "same length"),
    ("confusion_matrix empty", lambda: metrics.confusion_matrix([], []), ValueError, "empty"),
    ("mean_std empty", lambda: metrics.mean_std([]), ValueError, "empty"),
    ("show_images bad shape", lambda: plots.show_images(torch.rand(2, 5, 4, 4)), ValueError, "images"),
    ("show_images empty", lambda: plots.show_images(torch.rand(0, 1, 4, 4)), ValueError, "empty"),
    ("confusion plot not square", lambda: plots.plot_confusion_matrix([[1, 2, 3]]), ValueError, "square"),
    ("embedding unknown method", lambda: plots.plot_embedding(torch.rand(5, 3), method="umap"), ValueError, "method"),
    ("embedding too few rows", lambda: plots.plot_embedding(torch.rand(2, 3)), ValueError, "features"),
    ("history empty", lambda: plots.plot_history([]), ValueError, "history"),
    # the engine and the method loops
    ("fit accumulate=0", lambda: fit(net(), DS, epochs=1, accumulate=0), ValueError, "accumulate"),
    ("fit optimizer wrong type", lambda: fit(net(), DS, epochs=1, optimizer="adam"), TypeError, "optimizer"),
    ("fit scheduler wrong type", lambda: fit(net(), DS, epochs=1, scheduler=3), TypeError, "scheduler"),
    ("Engine resume without checkpoint", lambda: Engine({"m": net()}, {}, resume=True), ValueError, "checkpoint"),
    ("Engine unknown scheduler interval", lambda: Engine({"m": net()}, {}, scheduler_interval="batch"), ValueError,
     "scheduler_interval"),
    ("Engine epochs=0", lambda: Engine({"m": net()}, {}).run([], lambda b: {}, epochs=0), ValueError, "epochs"),
    ("Engine early stopping without monitor", lambda: Engine({"m": net()}, {}).run([], lambda b: {}, epochs=1,
                                                                                    early_stopping=2),
     ValueError, "monitor"),
    ("step without a loss", lambda: Engine({"m": net()}, {}).run([(X, Y)], lambda b: {"accuracy": 1.0}, epochs=1),
     ValueError, "'loss'"),
    ("engine option misspelt", lambda: train_adaptation(LeNet(2), DS, epochs=1, ampp=True),
     TypeError, "engine options"),
    ("adaptation model without features", lambda: train_adaptation(torch.nn.Linear(2, 2), DS, epochs=1), TypeError,
     "backbone"),
    ("adaptation source unlabelled", lambda: train_adaptation(LeNet(2), X, epochs=1), ValueError, "labels"),
    ("adaptation source wrong type", lambda: train_adaptation(LeNet(2), [1, 2, 3], epochs=1), TypeError, "source"),
    ("extract_features not a module", lambda: extract_features("backbone", DS), TypeError, "module"),
    ("dual encoder texts not paired", lambda: fit_dual_encoder(_dual(), torch.arange(4), torch.rand(3, 2)),
     ValueError, "pair up"),
    ("gan_1d option not taken", lambda: train_gan_1d(torch.randn(20), steps=2, channels_last=True), TypeError,
     "engine options"),
    ("bench unknown method", lambda: bench_methods(only=["sgd"]), ValueError, "only"),
    # checks (shared validators)
    ("check_positive zero", lambda: checks.check_positive("temperature", 0.0), ValueError, "temperature"),
    ("check_positive inf", lambda: checks.check_positive("temperature", math.inf), ValueError, "temperature"),
    ("check_probability above 1", lambda: checks.check_probability("alpha", 1.1), ValueError, "alpha"),
    ("check_finite nan", lambda: checks.check_finite("features", torch.tensor([math.nan])), ValueError, "features"),
]


@pytest.mark.parametrize("label, call, exc, match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(label, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_case_labels_are_unique():
    labels = [c[0] for c in CASES]
    assert len(labels) == len(set(labels)), sorted({x for x in labels if labels.count(x) > 1})
