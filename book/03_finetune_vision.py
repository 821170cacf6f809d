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
# (ch03)=
# # Chapter 3 — Fine-tuning for vision: from feature extraction to full fine-tuning
#
# The most common act of transfer learning is this: take a network pretrained on a large image
# dataset, replace its classifier with a new one for your classes, and train on your few
# labelled images. Which weights should move, and how fast? This chapter answers with
# measurements. It uses the course's pretrained backbone (our offline stand-in for ImageNet
# weights) and a hard target: digits hidden in photo textures, with only a handful of labels
# per class.

# %%
# Colab only: install the course package (does nothing elsewhere).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "tlcourse @ git+https://github.com/tlcourse/tlcourse@v0.1.0"], check=True)

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
from torchvision.transforms import v2

from tlcourse.data import few_shot, load_mnistm
from tlcourse.finetune import count_parameters, freeze
from tlcourse.models import load_pretrained, model_card, torchvision_backbone
from tlcourse.plots import show_images
from tlcourse.strategies import STRATEGIES, compare, run_strategy, summarise
from tlcourse.train import evaluate, fit
from tlcourse.utils import Timer, glue, seed_everything

seed_everything(0)
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
target = load_mnistm()

# %% [markdown]
# ## The pretrained backbone: our "ImageNet"
#
# The package ships a small residual network {footcite}`he2016deep` pretrained by
# `scripts/pretrain_backbone.py` on a source task unlike the target: 53 classes of printed
# characters in 21 fonts with random colours, textures and distortions. Its model card:

# %%
card = model_card()
pd.Series({k: card[k] for k in ("source_task", "source_classes", "source_test_accuracy", "parameters", "file_bytes")})

# %% [markdown]
# What has it learned? The first layer's 3×3 filters respond to oriented edges and colour
# contrasts; deeper stages respond to larger stroke patterns. Below, the filters and the
# feature maps of one target image at each stage (the strongest channels).

# %%
model = load_pretrained(10, seed=0).eval()
filters = model.backbone.stem[0].weight.detach()
filters = (filters - filters.amin(dim=(1, 2, 3), keepdim=True)) / (filters.amax(dim=(1, 2, 3), keepdim=True) - filters.amin(dim=(1, 2, 3), keepdim=True))
show_images(filters, ncols=16, title="First-layer filters of the pretrained backbone (3×3, RGB)", size=0.6)
plt.show()

x = target.test.images[:1]
with torch.no_grad():
    maps = model.backbone.forward_maps(x)
fig, axes = plt.subplots(1, 5, figsize=(11, 2.5))
axes[0].imshow(x[0].permute(1, 2, 0))
axes[0].set_title("input")
for ax, (name, fmap) in zip(axes[1:], maps.items()):
    strongest = fmap[0].flatten(1).norm(dim=1).argmax()
    ax.imshow(fmap[0, strongest], cmap="magma")
    ax.set_title(f"{name} {tuple(fmap.shape[-2:])}")
for ax in axes:
    ax.axis("off")
fig.suptitle("The same image through the backbone's stages")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Strategies
#
# All strategies start from the same recipe: keep the backbone, **replace the head** with a
# fresh linear layer for the ten digits. They differ in which weights train, and how fast:
#
# | strategy | what trains | idea |
# |---|---|---|
# | from scratch | everything, from random weights | the baseline transfer must beat |
# | linear probe | only the new head (backbone frozen) | *feature extraction*: reuse features as they are |
# | probe + logistic regression | a scikit-learn classifier on extracted features | the same, with a convex solver |
# | partial | top stage + head (lower stages frozen) | low-level features are general, top ones specific |
# | full | everything, one learning rate | adapt all features to the target |
# | discriminative rates | everything, rates decaying toward the input {footcite}`howard2018universal` | move general layers least |
# | gradual unfreezing | head first, then one stage more per phase {footcite}`howard2018universal` | avoid wrecking features with a random head's gradients |
# | L2-SP | everything, pulled toward the pretrained weights {footcite}`li2018explicit` | regularise toward the source, not toward zero |
#
# The discriminative rates give stage $\ell$ (counted from the top, head $=0$) the rate
# $\eta_\ell = \eta\,\gamma^{\ell}$; L2-SP adds
# $\frac{\alpha}{2}\lVert w_S - w_S^0\rVert^2 + \frac{\beta}{2}\lVert w_{\text{new}}\rVert^2$ to the loss
# (chapter 2 states and checks both). Every run below gets the same number of optimizer steps
# (50 steps of 16 images: `STEPS` and `BATCH` in the next cell).

# %%
K_TABLE, SEEDS, STEPS, BATCH = 10, [0, 1, 2], 50, 16
with Timer() as t_table:
    table_runs = compare(list(STRATEGIES), target.train, target.test, [K_TABLE], SEEDS, steps=STEPS, batch_size=BATCH)
table = summarise(table_runs).drop(columns=["k", "runs"])
full_params = table.loc[table.strategy == "full", "trainable"].item()
table["trainable %"] = 100 * table["trainable"] / full_params
table = table.sort_values("accuracy", ascending=False).reset_index(drop=True)
print(f"{len(table_runs)} runs in {t_table.seconds:.0f} s, {K_TABLE} labels per class, mean ± std over {len(SEEDS)} seeds")
table.style.format({"accuracy": "{:.3f}", "std": "{:.3f}", "seconds": "{:.1f}", "trainable %": "{:.2f}"}).hide(axis="index")

# %%
best = table.iloc[0]
probe_share = table.loc[table.strategy == "linear_probe", "trainable %"].item()
scratch_acc = table.loc[table.strategy == "scratch", "accuracy"].item()
glue("ch03_best_name", best.strategy)
glue("ch03_best_acc", 100 * best.accuracy)
glue("ch03_scratch_acc", 100 * scratch_acc)
glue("ch03_probe_share", probe_share)
assert best.strategy != "scratch", "the best strategy must be a transfer strategy"
assert probe_share < 5, "the linear probe trains < 5% of the parameters of full fine-tuning"

# %% [markdown]
# With the best strategy, {glue:text}`ch03_best_name`, the pretrained network reaches
# {glue:text}`ch03_best_acc:.1f`% on the target, against {glue:text}`ch03_scratch_acc:.1f`% from
# scratch, and a linear probe trains only {glue:text}`ch03_probe_share:.2f`% of the weights
# that full fine-tuning trains. Read the table along two axes. *Cost*: the probes train in a
# fraction of the time and store one small head per task, which is why feature extraction is the
# first thing to try. *Fit*: the target (digits on photo textures) is far from the source
# (printed characters on smooth colour fields), so letting the features adapt pays even with ten
# labels per class; with a target closer to the source, or fewer labels, the probe closes in
# (ch. 1's learning curve), and fine-tuning too aggressively can distort good features
# {footcite}`kumar2022fine`.
#
# ## How many labels does transfer save?
#
# The claim of this chapter: at every budget of at most ten labels per class, the best transfer
# strategy beats the same architecture trained from scratch, by at least ten points at the
# smallest budgets. We compare scratch with the two canonical strategies, fixed in advance
# rather than picked from the table above (picking the winners on the test set and then reporting
# their margin would flatter them): full fine-tuning and a linear probe. The gain is measured for
# full fine-tuning.

# %%
leaders = ["full", "probe_sklearn"]
with Timer() as t_curve:
    curve_runs = compare(["scratch", *leaders], target.train, target.test, [1, 5], SEEDS, steps=STEPS, batch_size=BATCH)
curve_runs += [r for r in table_runs if r["strategy"] in ("scratch", *leaders)]
curve = summarise(curve_runs)
pivot = curve.pivot(index="k", columns="strategy", values="accuracy")
pivot["gain (points)"] = 100 * (pivot["full"] - pivot["scratch"])
pivot.style.format("{:.3f}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.8))
for strategy in ["scratch", *leaders]:
    rows = curve[curve.strategy == strategy].sort_values("k")
    ax.errorbar(rows["k"], rows["accuracy"], yerr=rows["std"], marker="o", capsize=3, label=strategy)
ax.set(xlabel="labelled target images per class", ylabel="target test accuracy", xticks=[1, 5, 10],
       title="Transfer vs scratch (mean ± std, 3 seeds)")
ax.grid(alpha=0.3)
ax.legend()
plt.tight_layout()
plt.show()

# %%
gains = pivot["gain (points)"]
glue("ch03_gain_k1", gains.loc[1])
glue("ch03_gain_k5", gains.loc[5])
glue("ch03_gain_k10", gains.loc[10])
assert (gains > 0).all(), f"full fine-tuning must beat scratch at every k <= 10: {gains.to_dict()}"
assert gains.loc[1] >= 10 and gains.loc[5] >= 10, f"... and by >= 10 points at small k: {gains.to_dict()}"

# %% [markdown]
# Full fine-tuning gains {glue:text}`ch03_gain_k1:.1f`, {glue:text}`ch03_gain_k5:.1f` and
# {glue:text}`ch03_gain_k10:.1f` points at 1, 5 and 10 labels per class. For comparison, the
# *Dive into Deep Learning* fine-tuning chapter reports 0.94 for an ImageNet ResNet-18
# fine-tuned on a small hot-dog dataset against 0.85 from scratch {footcite}`zhang2023dive`. As the
# labelled set grows the advantage shrinks (chapter 1's learning curve): transfer stops paying
# when the target alone has enough labels to learn its own features, and when the source's
# features are not what the target needs (chapter 1's negative transfer).
#
# ## Data augmentation at small k
#
# With ten images per class, random small rotations, shifts and colour changes
# (`torchvision.transforms.v2`) create plausible new training images. Each augmented image is
# new, so the same 50 steps now face a harder, never-repeating training set.

# %%
augment = v2.Compose([v2.RandomAffine(degrees=12, translate=(0.1, 0.1), scale=(0.9, 1.1)),
                      v2.ColorJitter(brightness=0.3, contrast=0.3, hue=0.1)])
show_images(torch.stack([augment(target.train.images[0]) for _ in range(8)]), ncols=8, title="Eight augmentations of one image")
plt.show()
aug_rows = []
with Timer() as t_aug:
    for strategy in ["scratch", leaders[0]]:
        for seed in SEEDS:
            r = run_strategy(strategy, few_shot(target.train, K_TABLE, seed=seed), target.test, seed=seed, steps=STEPS,
                             batch_size=BATCH, augment=augment)
            plain = next(x for x in table_runs if x["strategy"] == strategy and x["seed"] == seed)
            aug_rows.append({"strategy": strategy, "seed": seed, "no augmentation": plain["accuracy"], "augmentation": r.accuracy})
aug = pd.DataFrame(aug_rows).groupby("strategy")[["no augmentation", "augmentation"]].mean()
aug["change (points)"] = 100 * (aug["augmentation"] - aug["no augmentation"])
glue("ch03_aug_scratch", aug.loc["scratch", "change (points)"])
glue("ch03_aug_transfer", aug.loc[leaders[0], "change (points)"])
aug.style.format("{:.3f}")

# %% [markdown]
# At this budget augmentation changes the fine-tuned model by
# {glue:text}`ch03_aug_transfer:+.1f` points and the scratch model by
# {glue:text}`ch03_aug_scratch:+.1f` points. Augmentation is a regulariser: it pays when
# training runs long enough to fit the harder data (try `STEPS = 300` in the exercises), and a
# pretrained backbone already carries much of the invariance it teaches. A network from scratch
# with fifty steps has not even fit the plain images, so extra variety mostly slows it down.

# %% [markdown]
# ## Which layers transfer? (Yosinski et al., 2014)
#
# {footcite}`yosinski2014transferable` asked how *general* or *specific* each layer's features are
# by copying the first $n$ layers of a trained network into a new one, re-initialising the
# rest, and either freezing the copied layers or fine-tuning them. We ask the same of our
# backbone: copy its first $n$ stages (stem, layer1, layer2, layer3), re-initialise the others,
# and train on the target with 20 labels per class.

# %%
from tlcourse.models import SmallResNet  # noqa: E402

STAGE_NAMES = ["stem", "layer1", "layer2", "layer3"]
subset20 = few_shot(target.train, 20, seed=0)
layer_rows = []
with Timer() as t_layers:
    for n in range(0, 5):
        for frozen in (True, False):
            if n == 0 and frozen:
                continue
            seed_everything(0)
            net = SmallResNet(10)
            pretrained = load_pretrained(10, seed=0)
            for name in STAGE_NAMES[:n]:
                getattr(net.backbone, name).load_state_dict(getattr(pretrained.backbone, name).state_dict())
            if frozen:
                freeze(net, [f"backbone.{s}" for s in STAGE_NAMES[:n]])
            fit(net, subset20, epochs=5, lr=1e-3, batch_size=32, seed=0)
            layer_rows.append({"stages copied": n, "copied stages": "frozen" if frozen else "fine-tuned",
                               "accuracy": evaluate(net, target.test)["accuracy"]})
layers = pd.DataFrame(layer_rows)
glue("ch03_layers_none", 100 * layers.loc[layers["stages copied"] == 0, "accuracy"].item())
glue("ch03_layers_all_frozen", 100 * layers.query("`stages copied` == 4 and `copied stages` == 'frozen'")["accuracy"].item())
glue("ch03_layers_all_tuned", 100 * layers.query("`stages copied` == 4 and `copied stages` == 'fine-tuned'")["accuracy"].item())
fig, ax = plt.subplots(figsize=(6, 3.6))
for mode, rows in layers.groupby("copied stages"):
    ax.plot(rows["stages copied"], rows["accuracy"], marker="o", label=f"copied stages {mode}")
ax.axhline(layers.loc[layers["stages copied"] == 0, "accuracy"].item(), color="gray", ls="--", label="no transfer")
ax.set(xlabel="number of pretrained stages copied (n)", ylabel="target test accuracy", xticks=range(5),
       title="Transferring the first n stages (20 labels per class)")
ax.grid(alpha=0.3)
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Without transfer the network reaches {glue:text}`ch03_layers_none:.1f`%; with all four stages
# copied it reaches {glue:text}`ch03_layers_all_frozen:.1f`% when they stay frozen and
# {glue:text}`ch03_layers_all_tuned:.1f`% when they are fine-tuned. The curve shows where the
# useful, general features live: each copied stage that raises the frozen curve carries features
# the target can use as they are; where the frozen curve bends down while the fine-tuned one
# keeps rising, the copied features are becoming *specific* to the source task. In
# {footcite}`yosinski2014transferable` (ImageNet halves) the top layers were specific and freezing
# them hurt, while fine-tuning the copied layers recovered and even helped. How general a layer
# is depends on how far the target is from the source.
#
# ```{admonition} Pitfall: batch norm in "frozen" layers
# :class: warning
# Setting `requires_grad=False` freezes the weights but **not** the batch-norm running
# statistics: in `model.train()` mode they keep updating from the small target batches, and the
# "frozen" features drift. `tlcourse.finetune.freeze` keeps frozen batch-norm layers in eval
# mode for this reason (its unit test checks the statistics do not move). When you fine-tune
# everything with tiny batches, consider freezing the statistics too.
# ```
#
# ## The same recipe with a torchvision ResNet-18
#
# With a network connection (Colab, a GPU machine) the recipe is identical with ImageNet
# weights. Offline, asking for them fails at once with a message saying what to do; the code
# path with random weights runs anywhere.

# %%
resnet = torchvision_backbone("resnet18", num_classes=10, weights=None)
print(f"ResNet-18 with a 10-way head: {count_parameters(resnet) / 1e6:.1f} M parameters")
try:
    resnet = torchvision_backbone("resnet18", num_classes=10, weights="imagenet")
    print("ImageNet weights loaded: fine-tune as above (upsample digits to 64×64 or more).")
except RuntimeError as err:
    print("offline:", str(err)[:220], "...")

# %% [markdown]
# ```python
# # Online (e.g. Colab with a GPU): the same strategies with ImageNet weights
# from tlcourse.finetune import discriminative_param_groups
# model = torchvision_backbone("resnet18", num_classes=10, weights="imagenet")
# groups = discriminative_param_groups(model, lr=1e-3, decay=0.3,
#                                      stages=("conv1", "layer1", "layer2", "layer3", "layer4", "fc"))
# fit(model, train_64px, epochs=5, optimizer=torch.optim.AdamW(groups), amp=True, device="cuda")
# ```
#
# ## Summary
#
# - Fine-tuning always replaces the head; strategies differ in which pretrained weights train
#   and at what rate. Feature extraction (linear probe) trains a tiny fraction of the weights.
# - With few labels, keeping the pretrained features close to their source values (probe,
#   discriminative rates, L2-SP) beats letting them move freely, and every transfer strategy
#   beats training from scratch by a wide margin.
# - Augmentation adds invariances the small target set cannot teach; a good backbone already
#   carries many of them.
# - Lower layers are general and higher ones more specific; how specific depends on the
#   distance between source and target.
# - Freeze batch-norm statistics together with the weights.
#
# ## Exercises
#
# ```{exercise}
# :label: ch3-ex1
# Run the strategy table with `K_TABLE = 50`. Which strategies gain most from the extra labels,
# and does the ranking change? Why?
# ```
#
# ```{solution} ch3-ex1
# :class: dropdown
# Strategies that adapt the features (full fine-tuning, discriminative rates, gradual
# unfreezing) gain most, and the linear probe falls behind: with 50 labels per class there is
# enough signal to adapt the features to the target instead of keeping them fixed. Scratch also
# improves a lot, so the gap to transfer narrows.
# ```
#
# ```{exercise}
# :label: ch3-ex2
# Fine-tune fully with a learning rate ten times larger (`lr=1e-2`). What happens to the
# accuracy at k = 5, and what does it say about the scale of updates to pretrained weights?
# ```
#
# ```{solution} ch3-ex2
# :class: dropdown
# Accuracy typically drops, sometimes below the linear probe: large updates driven by a
# randomly initialised head destroy the pretrained features before the head has learned
# anything useful. This is why fine-tuning uses small rates, discriminative rates, warm-up or
# a first phase that trains only the head (gradual unfreezing, or "linear probe then fine-tune").
# ```
#
# ```{exercise}
# :label: ch3-ex3
# Write a training loop that fine-tunes only the batch-norm affine parameters (γ, β) and the
# head. How many parameters train, and how well does it do at k = 10?
# ```
#
# ```{solution} ch3-ex3
# :class: dropdown
# Freeze everything with `freeze(model, bn_eval=False)`, then set `requires_grad_(True)` on the
# `weight` and `bias` of every `nn.BatchNorm2d` and on the head. Only a few hundred
# parameters plus the head train, yet accuracy usually lands between the linear probe and full
# fine-tuning: re-scaling and shifting channels is a cheap, surprisingly effective form of
# adaptation.
# ```
#
# ```{exercise}
# :label: ch3-ex4
# Repeat the augmentation experiment with `STEPS = 300`. How does the effect of augmentation
# on the scratch model change, and why?
# ```
#
# ```{solution} ch3-ex4
# :class: dropdown
# With five times more steps the scratch model can fit the augmented images, and augmentation
# turns from a handicap into a gain: it acts as a regulariser that only pays once the model has
# the capacity *and* the training time to learn the invariances it encodes. The fine-tuned model
# changes less, because its pretrained features already carry much of that invariance.
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
