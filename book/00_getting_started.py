# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
# ---

# %% [markdown]
# (ch00)=
# # Getting started: the offline data, the shipped model and `fit`
#
# Every chapter of this course runs with no network. This short notebook tours what makes that
# possible: three real digit *domains*, a vision backbone pretrained by the course and shipped
# inside the package, and the training loop the chapters share. It takes well under a minute on
# a laptop CPU.

# %%
# Colab only: install the course package (does nothing elsewhere).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "tlcourse @ git+https://github.com/tlcourse/tlcourse@v0.1.0"], check=True)

# %%
import matplotlib.pyplot as plt
import torch

import tlcourse
from tlcourse.data import few_shot, load_mnist, load_mnistm, load_uci_digits
from tlcourse.models import SmallResNet, load_pretrained, model_card
from tlcourse.train import evaluate, fit
from tlcourse.utils import Timer, glue, seed_everything

seed_everything(0)
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
print("tlcourse", tlcourse.__version__, "| torch", torch.__version__)

# %% [markdown]
# ## Three domains, one task
#
# All three datasets show the ten digits, so they share the *task*; they differ in how the
# images are made, so they are different *domains*. Each loader returns a `Split` of two
# in-memory datasets (`train`, `test`) of images in $[0, 1]$.

# %%
mnist, uci, mnistm = load_mnist(), load_uci_digits(), load_mnistm()
for name, split in [("MNIST", mnist), ("UCI digits", uci), ("MNIST-M-style", mnistm)]:
    print(f"{name:14s} train {split.train}  test {len(split.test)}")
glue("ch00_n_mnist", len(mnist.train) + len(mnist.test), display=False)
glue("ch00_n_uci", len(uci.train) + len(uci.test), display=False)

# %%
fig, axes = plt.subplots(3, 1, figsize=(9, 4.2))
for ax, (name, split) in zip(axes, [("MNIST", mnist), ("UCI digits (upsampled 8×8)", uci), ("MNIST-M-style", mnistm)]):
    row = torch.cat([split.train.images[split.train.labels == d][:1].expand(-1, 3, -1, -1) for d in range(10)])
    ax.imshow(torch.cat(list(row), dim=2).permute(1, 2, 0))
    ax.set_title(name, fontsize=10)
    ax.axis("off")
fig.suptitle("The digits 0–9 in the three offline domains")
plt.tight_layout()
plt.show()

# %% [markdown]
# MNIST holds {glue:text}`ch00_n_mnist` real handwritten digits; the UCI set holds
# {glue:text}`ch00_n_uci` digits scanned at 8×8 pixels by another group of writers. The
# MNIST-M-style images are the MNIST digits blended with patches of real photographs as
# $|\text{patch} - \text{digit}|$, exactly how {footcite}`ganin2016domain` built MNIST-M.
#
# ## The shipped backbone: the course's "ImageNet model"
#
# Practitioners rarely train vision models from scratch: they start from weights pretrained on
# a large, varied source such as ImageNet. ImageNet weights need a download, so the course ships
# its own small stand-in. A residual network {footcite}`he2016deep` was trained on a *different task*
# (recognising printed characters in 21 fonts, with random colours, textures and distortions)
# by `scripts/pretrain_backbone.py`. Its model card records how:

# %%
card = model_card()
for key in ("source_task", "source_classes", "source_test_accuracy", "parameters", "file_bytes"):
    print(f"{key:22s} {card[key]}")
glue("ch00_source_acc", 100 * card["source_test_accuracy"], display=False)
glue("ch00_params", card["parameters"], display=False)

# %% [markdown]
# It has {glue:text}`ch00_params` parameters and recognises its source task with
# {glue:text}`ch00_source_acc:.1f`% accuracy. For a new task we keep its `backbone` and give it a
# new `head`:

# %%
model = load_pretrained(num_classes=10, seed=0)
print(model.head, "| feature dimension:", model.feature_dim)

# %% [markdown]
# ## Training with `fit`
#
# `tlcourse.train.fit` is a plain PyTorch loop (loader → forward → loss → backward → step) with
# what one needs around it: device selection, mixed precision on request, a progress bar,
# early stopping, safetensors checkpoints and a `History` that plots itself. Here we fine-tune
# the pretrained model and, for comparison, the same architecture from random weights, on only
# 20 labelled UCI digits per class.

# %%
small_train = few_shot(uci.train, k=20, seed=0)
scratch = SmallResNet(10)
with Timer() as t_pre:
    hist_pre = fit(model, small_train, epochs=15, lr=1e-3, batch_size=32, val_data=uci.test, seed=0)
with Timer() as t_scr:
    hist_scr = fit(scratch, small_train, epochs=15, lr=1e-3, batch_size=32, val_data=uci.test, seed=0)
acc_pre = evaluate(model, uci.test)["accuracy"]
acc_scr = evaluate(scratch, uci.test)["accuracy"]
print(f"pretrained: {acc_pre:.3f} ({t_pre.seconds:.1f} s)   from scratch: {acc_scr:.3f} ({t_scr.seconds:.1f} s)")
glue("ch00_acc_pre", 100 * acc_pre, display=False)
glue("ch00_acc_scr", 100 * acc_scr, display=False)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for hist, name in [(hist_pre, "pretrained backbone"), (hist_scr, "from scratch")]:
    axes[0].plot(hist["epoch"], hist["train_loss"], marker=".", label=name)
    axes[1].plot(hist["epoch"], hist["val_accuracy"], marker=".", label=name)
axes[0].set(xlabel="epoch", ylabel="training loss", title="Loss on the 200 training digits")
axes[1].set(xlabel="epoch", ylabel="test accuracy", title="Accuracy on held-out UCI digits")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# With 20 labels per class the pretrained backbone reaches {glue:text}`ch00_acc_pre:.1f`% on
# held-out digits, against {glue:text}`ch00_acc_scr:.1f`% for the same network trained from
# scratch. The next chapters ask why, when this gap is large or small, and how to make the most
# of it. The check below makes the notebook fail if the pretrained start ever stops helping.

# %%
assert acc_pre > acc_scr, (acc_pre, acc_scr)

# %% [markdown]
# ## Using the package in your own code
#
# Everything above is ordinary PyTorch. The model is an `nn.Module`, the data are `Dataset`s,
# and you can replace `fit` with your own loop at any time:
#
# ```python
# import torch, torch.nn.functional as F
# from tlcourse.data import load_uci_digits, few_shot
# from tlcourse.models import load_pretrained
#
# data = few_shot(load_uci_digits().train, k=20)
# model = load_pretrained(num_classes=10)
# opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
# for x, y in torch.utils.data.DataLoader(data, batch_size=32, shuffle=True):
#     loss = F.cross_entropy(model(x), y)
#     opt.zero_grad(); loss.backward(); opt.step()
# ```
#
# ## References
#
# ```{footbibliography}
# ```


# %% [markdown]
# ---

# %% tags=["remove-input"]
from tlcourse.book import last_executed  # noqa: E402

last_executed()
