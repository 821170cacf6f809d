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
from tlcourse.data.glyphs import GLYPH_CLASSES, load_glyphs
from tlcourse.models import SmallResNet, load_pretrained, model_card
from tlcourse.protocol import validation_split
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
# MNIST holds {glue:text}`ch00_n_mnist` real handwritten digits. The UCI set holds
# {glue:text}`ch00_n_uci` digits written on forms by 43 other people: each form was scanned as a
# 32×32 black-and-white bitmap, and each 8×8 image counts the black pixels in a 4×4 block of that
# bitmap (so every pixel is an integer from 0 to 16, shown here as 17 grey levels). The loader
# upsamples them and frames them like MNIST. The MNIST-M-style images are the MNIST digits blended
# with patches of colour photographs as $|\text{patch} - \text{digit}|$, the recipe of
# {footcite}`ganin2016domain`. Their MNIST-M cut its patches from the 500 photographs of the
# BSDS500 benchmark; the course's builder (`tlcourse.data.make_mnistm`) cuts them from the **two**
# photographs that ship with scikit-learn (`load_sample_images`: a temple in China and a flower),
# so its backgrounds are far less varied than the original's.
#
# ## The shipped backbone: the course's stand-in for ImageNet weights
#
# Practitioners rarely train vision models from scratch: they start from weights pretrained on
# a large, varied source such as ImageNet. ImageNet weights need a download, so the course ships
# its own small stand-in: a residual network {footcite}`he2016deep` trained by
# `scripts/pretrain_backbone.py` to recognise printed characters rendered from 21 fonts, with
# random distortions, colours and textured backgrounds. Its model card records how:

# %%
card = model_card()
for key in ("source_task", "source_classes", "source_test_accuracy", "parameters", "file_bytes"):
    print(f"{key:22s} {card[key]}")
glue("ch00_source_acc", 100 * card["source_test_accuracy"], display=False)
glue("ch00_params", card["parameters"], display=False)
glue("ch00_n_source_classes", card["source_classes"], display=False)

# %% [markdown]
# Be clear about what this source contains, because it decides how to read every result of the
# course. Its {glue:text}`ch00_n_source_classes` classes are the letters **and the ten digits 0–9**
# (printed, not handwritten), and many of its images are coloured characters on colour and
# texture backgrounds, much like the MNIST-M-style digits:

# %%
print("source classes:", "".join(GLYPH_CLASSES))
source = load_glyphs(1, seed=0)
digits_first = torch.cat([torch.nonzero(source.labels == c).flatten() for c in range(20)])
fig, ax = plt.subplots(figsize=(9, 1.2))
ax.imshow(torch.cat(list(source.images[digits_first]), dim=2).permute(1, 2, 0))
ax.set_title("Source images of the shipped backbone: printed 0–9 and A–J (one each)", fontsize=10)
ax.axis("off")
plt.show()

# %% [markdown]
# So the shipped backbone has already learned to tell printed digits apart on busy backgrounds:
# the target tasks of this course share their *classes* with its source and differ in the
# *domain* (handwriting instead of fonts). ImageNet and a photo target often share classes in
# the same way (ImageNet has many dog breeds, cars and birds), which makes this a fair stand-in,
# but it also makes transfer easier than between unrelated classes. The vision chapters
# therefore also use a second backbone, `letters-resnet`, pretrained by the same script on the
# letters only, to measure how much transfer survives without shared classes
# ({doc}`03_finetune_vision`).
#
# The backbone has {glue:text}`ch00_params` parameters and recognises its source task with
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
# early stopping, safetensors checkpoints and a `History` that plots itself.
#
# One rule comes before any training: **the test set is for the final report only**. Every
# decision taken while training (when to stop, which learning rate, which model) is taken on a
# *validation* set cut from the labelled data we have. Here the labelled pool is 25 UCI digits
# per class; `tlcourse.protocol.validation_split` keeps 5 per class aside for validation, in
# every class:

# %%
pool = few_shot(uci.train, k=25, seed=0)  # the labelled data we are given
small_train, small_val = validation_split(pool, per_class=5, seed=0)
print(f"pool {len(pool)} → train {len(small_train)}, validation {len(small_val)}; test {len(uci.test)} (not touched)")
glue("ch00_n_train", len(small_train), display=False)
glue("ch00_n_val", len(small_val), display=False)

# %% [markdown]
# We fine-tune the pretrained model and, for comparison, the same architecture from random
# weights, with the same learning rate and budget. `early_stopping=5` watches the validation
# loss after every epoch, stops after five epochs without improvement and restores the best
# weights.

# %%
scratch = SmallResNet(10)
with Timer() as t_pre:
    hist_pre = fit(model, small_train, epochs=15, lr=1e-3, batch_size=32, val_data=small_val, early_stopping=5, seed=0)
with Timer() as t_scr:
    hist_scr = fit(scratch, small_train, epochs=15, lr=1e-3, batch_size=32, val_data=small_val, early_stopping=5, seed=0)
print(f"pretrained {t_pre.seconds:.1f} s, from scratch {t_scr.seconds:.1f} s")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for hist, name in [(hist_pre, "pretrained backbone"), (hist_scr, "from scratch")]:
    axes[0].plot(hist["epoch"], hist["train_loss"], marker=".", label=name)
    axes[1].plot(hist["epoch"], hist["val_accuracy"], marker=".", label=name)
axes[0].set(xlabel="epoch", ylabel="training loss", title=f"Loss on the {len(small_train)} training digits")
axes[1].set(xlabel="epoch", ylabel="validation accuracy", title=f"Accuracy on the {len(small_val)} validation digits")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Only now, with both models final, do we open the test set, once:

# %%
acc_pre = evaluate(model, uci.test)["accuracy"]
acc_scr = evaluate(scratch, uci.test)["accuracy"]
print(f"test accuracy: pretrained {acc_pre:.3f}   from scratch {acc_scr:.3f}")
glue("ch00_acc_pre", 100 * acc_pre, display=False)
glue("ch00_acc_scr", 100 * acc_scr, display=False)
assert acc_pre > 0.5 and acc_scr > 0.1, (acc_pre, acc_scr)  # both trained: a smoke test, not a claim

# %% [markdown]
# With 20 labels per class the pretrained backbone reaches {glue:text}`ch00_acc_pre:.1f`% on
# the held-out test digits, against {glue:text}`ch00_acc_scr:.1f`% for the same network trained
# from scratch. Treat this as a demonstration, not a measurement: it is one seed, one sample of
# labelled digits and one learning rate chosen by us for both networks, and a learning rate that
# suits fine-tuning need not suit training from scratch. {doc}`01_concepts` and
# {doc}`03_finetune_vision` make the comparison properly: every method's learning rate chosen on
# validation, the same step budget, several seeds and a confidence interval on the difference.
#
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
