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
# (ch01)=
# # Chapter 1 — Concepts: what transfers, when it helps, when it hurts
#
# A child who can read printed letters learns handwriting quickly; a person who knows Spanish
# picks up Italian faster than one who does not. Machine learning models can do the same:
# **transfer learning** reuses knowledge learned on a *source* problem to learn a *target*
# problem with less labelled data, less computation, or both {footcite}`pan2010survey`.
#
# This chapter fixes the vocabulary (domains, tasks, kinds of shift, kinds of transfer),
# places the rest of the course in it, and then measures the two facts every practitioner must
# know: transfer helps most when target labels are scarce, and transfer from the wrong source
# can hurt.

# %%
# Colab only: install the course package (does nothing elsewhere).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "tlcourse @ git+https://github.com/tlcourse/tlcourse@v0.1.0"], check=True)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from tlcourse.data import few_shot, load_mnist, load_mnistm, load_uci_digits
from tlcourse.data.glyphs import load_glyphs
from tlcourse.finetune import extract_features
from tlcourse.models import SmallResNet, load_pretrained
from tlcourse.strategies import compare, probe_accuracy, summarise
from tlcourse.train import fit
from tlcourse.utils import Timer, glue, seed_everything

seed_everything(0)
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# %% [markdown]
# ## Domains and tasks
#
# Following {footcite}`pan2010survey`, a **domain** $\mathcal{D} = \{\mathcal{X}, P(X)\}$ is an input
# space with a distribution over it, and a **task** $\mathcal{T} = \{\mathcal{Y}, f\}$ is a
# label space with the function we want to learn, $f(x) = P(Y \mid X = x)$. Transfer learning
# starts from a source pair $(\mathcal{D}_S, \mathcal{T}_S)$ with plenty of labels and aims at a
# target pair $(\mathcal{D}_T, \mathcal{T}_T)$ where $\mathcal{D}_S \neq \mathcal{D}_T$ or
# $\mathcal{T}_S \neq \mathcal{T}_T$. What differs decides which method fits:
#
# | what changes | formally | example in this course |
# |---|---|---|
# | covariate shift | $P_S(X) \neq P_T(X)$, same $f$ | MNIST digits → the same digits on photo textures (MNIST-M) |
# | another input space | $\mathcal{X}_S \neq \mathcal{X}_T$ | 8×8 UCI scans vs 28×28 MNIST (upsampling maps one into the other) |
# | label shift | $P_S(Y) \neq P_T(Y)$ | a target where some digits are rare |
# | new label space | $\mathcal{Y}_S \neq \mathcal{Y}_T$ | printed characters (53 classes) → handwritten digits (10 classes) |
#
# The course's offline datasets give a concrete picture of each. Here are the same ten classes
# in the three digit domains, and the source task of the pretrained backbone:

# %%
mnist, uci, mnistm = load_mnist(), load_uci_digits(), load_mnistm()
glyphs = load_glyphs(2, seed=0)
fig, axes = plt.subplots(4, 1, figsize=(9, 5.2))
rows = [("source task: printed characters (53 classes)", glyphs.images[:10]),
        ("target domain 1: MNIST handwriting", None), ("target domain 2: UCI 8×8 scans", None),
        ("target domain 3: MNIST-M-style photo textures", None)]
for ax, (title, imgs), split in zip(axes, rows, [None, mnist, uci, mnistm]):
    if imgs is None:
        imgs = torch.cat([split.train.images[split.train.labels == d][:1] for d in range(10)])
    imgs = imgs.expand(-1, 3, -1, -1)
    ax.imshow(torch.cat(list(imgs), dim=2).permute(1, 2, 0))
    ax.set_title(title, fontsize=10)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# Domains differ in ways one can measure. The histogram below shows the distribution of pixel
# intensities in each domain: MNIST is almost binary, UCI has 17 grey levels smeared by
# upsampling, MNIST-M spreads over the whole range. A classifier trained on one sees inputs
# from a different $P(X)$ in another.

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
for name, split in [("MNIST", mnist), ("UCI digits", uci), ("MNIST-M-style", mnistm)]:
    ax.hist(split.train.images[:500].flatten().numpy(), bins=40, density=True, histtype="step", lw=2, label=name)
ax.set(yscale="log", xlabel="pixel intensity", ylabel="density (log scale)", title="P(X) differs between domains")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## A taxonomy you can use
#
# *What* is transferred gives four families {footcite}`pan2010survey`:
#
# - **Instance transfer** re-weights or selects source examples that look like target ones
#   (importance weighting under covariate shift).
# - **Feature transfer** learns a representation in which source and target look alike, or
#   simply reuses pretrained features (feature extraction, domain adaptation: {doc}`06_adversarial_adaptation`).
# - **Parameter transfer** starts the target model from the source model's weights and
#   fine-tunes them, or shares parameters between tasks ({doc}`03_finetune_vision`,
#   {doc}`04_finetune_text`, {doc}`05_multitask`).
# - **Relational (structure) transfer** carries relations between entities across domains,
#   e.g. the alignment between images and sentences that lets text describe unseen image
#   classes ({doc}`07_multimodal`).
#
# *Which labels exist* gives the settings: **inductive** transfer has some labelled target
# data (fine-tuning, multi-task learning), **transductive** transfer has labels only in the
# source and unlabelled target data with the same task (domain adaptation), and
# **unsupervised** transfer has no labels in the target at all (clustering, self-supervised
# representation learning).
#
# ## Vision and language share the recipe
#
# Both fields converged on the same two-step recipe: *pretrain* a large model on a large source
# (ImageNet classification; masked-word prediction on web text {footcite}`devlin2019bert`), then
# *adapt* it to a small target by fine-tuning, by training a small head on frozen features, or
# by adding a few new parameters (LoRA, chapter 4). They differ in the input unit (pixels vs
# sub-word tokens, so text needs a tokenizer that must match the pretrained model), in the
# architecture (convolutions and vision transformers vs sequence transformers) and in how the
# label space is attached (a classification head vs text prompts, chapter 7). Images and text
# can only share features through a shared input space or paired data; chapter 7 shows how.
#
# ## Experiment 1 — the learning curve: transfer helps most when labels are scarce
#
# Target: the MNIST-M-style digits. From a pool of labelled target images we draw $k$ per
# class, train the same network three ways, and measure accuracy on 1,000 held-out target
# images:
#
# - **from scratch**: random weights, everything trained;
# - **linear probe** (feature extraction): the shipped pretrained backbone frozen, a logistic
#   regression on its features;
# - **full fine-tuning**: the pretrained weights as the starting point, everything trained.
#
# Each point is a mean over three seeds (a different $k$-shot sample each time). The small
# sets train for 50 optimizer steps of 16 images (dozens of epochs over a few images), the whole
# pool for one epoch in batches of 32, the same for every strategy.

# %%
SEEDS = [0, 1, 2]
STRATEGIES = ["scratch", "probe_sklearn", "full"]
pool = few_shot(mnistm.train, 200, seed=100)  # the labelled target pool: 200 images per class
with Timer() as t_curve:
    records = compare(STRATEGIES, pool, mnistm.test, [1, 5, 10], SEEDS, steps=50, batch_size=16)
    records += compare(STRATEGIES, pool, mnistm.test, [None], SEEDS, steps=len(pool) // 32, batch_size=32)
curve = summarise(records)
curve["labels per class"] = curve["k"].replace(-1, len(pool) // pool.num_classes)
table = curve.pivot(index="labels per class", columns="strategy", values="accuracy")
print(f"{len(records)} training runs in {t_curve.seconds:.0f} s")
table.style.format("{:.3f}")

# %%
names = {"scratch": "from scratch", "probe_sklearn": "linear probe (frozen)", "full": "full fine-tuning"}
fig, ax = plt.subplots(figsize=(6.5, 4))
for strategy, label in names.items():
    rows = curve[curve.strategy == strategy].sort_values("labels per class")
    ax.errorbar(rows["labels per class"], rows["accuracy"], yerr=rows["std"], marker="o", capsize=3, label=label)
ax.set(xscale="log", xlabel="labelled target images per class (log scale)", ylabel="target test accuracy",
       title="Transfer pays most when labels are scarce (MNIST-M-style)")
ax.grid(alpha=0.3)
ax.legend()
plt.tight_layout()
plt.show()

# %%
best_transfer = table[["probe_sklearn", "full"]].max(axis=1)
gap = (best_transfer - table["scratch"]) * 100
small_k = [1, 5, 10]
glue("ch01_gap_k1", gap.loc[1])
glue("ch01_gap_k10", gap.loc[10])
glue("ch01_gap_small_min", gap.loc[small_k].min())
glue("ch01_gap_all", gap.iloc[-1])
glue("ch01_scratch_k1", 100 * table["scratch"].loc[1])
glue("ch01_transfer_k1", 100 * best_transfer.loc[1])
glue("ch01_curve_seconds", t_curve.seconds)
glue("ch01_pool_per_class", len(pool) // pool.num_classes)
print(gap.round(1).to_string())

# %% [markdown]
# With a single labelled image per class the network trained from scratch reaches
# {glue:text}`ch01_scratch_k1:.1f`% while the best transfer strategy reaches
# {glue:text}`ch01_transfer_k1:.1f`%. For every budget of at most ten labels per class, transfer
# wins by at least {glue:text}`ch01_gap_small_min:.1f` accuracy points; with all
# {glue:text}`ch01_pool_per_class` labels per class of the pool the gap shrinks to {glue:text}`ch01_gap_all:.1f` points. The pretrained backbone
# never saw a handwritten digit nor a photo: what transfers is a vocabulary of strokes and
# shapes that is invariant to colour and texture, learned from printed characters.
#
# The next cell is the chapter's claim: if it stops holding, the notebook fails.

# %%
assert (gap.loc[small_k] >= 10).all(), f"transfer should win by >= 10 points at k <= 10: {gap.loc[small_k].to_dict()}"
assert gap.iloc[-1] < gap.loc[small_k].mean(), "the gap should narrow when labels are plentiful"

# %% [markdown]
# ## Experiment 2 — negative transfer: a source that misleads
#
# Transfer is not free. When the source teaches features that the target does not need, a
# pretrained start can be *worse* than no pretraining at all {footcite}`wang2019characterizing`.
# To see it, we pretrain the same architecture on a source that looks similar — the same kind
# of coloured, textured character images — but asks a question that needs no shape: *what
# colour is the background?* Its features are then probed on the target digits, next to the
# useful backbone and to training from scratch.

# %%
seed_everything(0)
misleading = SmallResNet(8)
source = load_glyphs(40, seed=1, task="background")
with Timer() as t_src:
    hist = fit(misleading, source, epochs=3, lr=2e-3, batch_size=64, seed=0)
print(f"misleading source task: train accuracy {hist.last['train_accuracy']:.3f} in {t_src.seconds:.1f} s")

# %%
K_NEG = 10
neg = []
for seed in SEEDS:
    subset = few_shot(pool, K_NEG, seed=seed)
    neg.append({
        "seed": seed,
        "misleading source, linear probe": probe_accuracy(misleading.backbone, subset, mnistm.test, seed=seed),
        "useful source, linear probe": probe_accuracy(load_pretrained(10).backbone, subset, mnistm.test, seed=seed),
    })
neg = pd.DataFrame(neg).set_index("seed")
neg["from scratch"] = [r["accuracy"] for r in records if r["strategy"] == "scratch" and r["k"] == K_NEG]
neg_summary = neg.agg(["mean", "std"]).T
neg_summary

# %%
fig, ax = plt.subplots(figsize=(6, 3))
order = ["misleading source, linear probe", "from scratch", "useful source, linear probe"]
ax.barh(order, neg_summary.loc[order, "mean"], xerr=neg_summary.loc[order, "std"], color=["tab:red", "tab:gray", "tab:green"])
ax.set(xlabel=f"target test accuracy ({K_NEG} labels per class)", title="Transfer from the wrong source hurts")
ax.grid(alpha=0.3, axis="x")
plt.tight_layout()
plt.show()

# %%
neg_gap = 100 * (neg_summary.loc["from scratch", "mean"] - neg_summary.loc["misleading source, linear probe", "mean"])
glue("ch01_neg_gap", neg_gap)
glue("ch01_neg_acc", 100 * neg_summary.loc["misleading source, linear probe", "mean"])
assert neg_summary.loc["misleading source, linear probe", "mean"] <= neg_summary.loc["from scratch", "mean"]

# %% [markdown]
# Features from the colour source reach only {glue:text}`ch01_neg_acc:.1f`% on the digits,
# {glue:text}`ch01_neg_gap:.1f` points *below* a network trained from scratch on the same ten
# labels per class. The colour task rewarded features that average colour over the whole image
# and ignore where the strokes are — exactly the information the digit task needs.
#
# How does a practitioner detect negative transfer? Always keep a **from-scratch baseline**
# (or a simple non-neural one) on the same target split; compare **linear-probe accuracy** of
# candidate sources before committing to one (cheap, and it ranks sources well
# {footcite}`kornblith2019better`); measure **domain distance** between source and target features
# (chapter 2's MMD and proxy A-distance); and look at the learning curve — a transferred model
# that falls behind scratch as labels grow is carrying the wrong bias.
#
# ```{admonition} Common pitfalls (and corrections to the source articles)
# :class: warning
# - *"Transfer learning vs traditional Transfer Learning"*: 迁移学习 **is** transfer learning;
#   there is no second, "traditional" kind.
# - *"Model transfer updates only the last layers, fine-tuning updates all"*: both are
#   fine-tuning strategies, partial vs full. Training only a new head on frozen features is
#   **feature extraction** (a linear probe).
# - *"Transfer learning needs large amounts of data"*: the large data sits in the **source**;
#   the point of transfer is to need **fewer** labelled target examples (Experiment 1).
# - *Training a new network from scratch with a borrowed optimizer* transfers nothing: only
#   weights, features or data carry knowledge.
# - *Zero-shot learning "needs no training data"*: it needs no labelled examples of the
#   **target classes**, but relies on side information such as text (chapter 7).
# ```
#
# ## Summary
#
# - A domain is an input space with its distribution, a task a label space with its labelling
#   function; transfer learning is needed when either differs between source and target.
# - Instance, feature, parameter and relational transfer answer *what* is reused; inductive,
#   transductive and unsupervised settings answer *which labels* exist.
# - With a general enough pretrained backbone, transfer beats training from scratch by a wide
#   margin when target labels are scarce, and the margin narrows as labels grow.
# - A source whose features do not serve the target can make things worse than scratch:
#   keep a scratch baseline and probe candidate sources before choosing one.
#
# ## Exercises
#
# ```{exercise}
# :label: ch1-ex1
# Classify each scenario as covariate shift, label shift or a new label space, and say whether
# it is inductive or transductive transfer: (a) a spam filter trained on 2020 e-mails used on
# 2026 e-mails, with no new labels; (b) an ImageNet backbone fine-tuned on 200 labelled X-ray
# images; (c) a digit recogniser deployed in a country where the digit 7 is written with a bar.
# ```
#
# ```{solution} ch1-ex1
# :class: dropdown
# (a) Covariate shift (the wording of e-mails changes, the notion of spam roughly does not)
# with unlabelled target data: transductive (domain adaptation). (b) A new label space and a
# new domain, with labelled target data: inductive transfer (fine-tuning). (c) Covariate shift
# for one class, same labels; with a few labelled local examples it is inductive, without them
# transductive.
# ```
#
# ```{exercise}
# :label: ch1-ex2
# Re-run Experiment 1 with `load_uci_digits()` as the target instead of the MNIST-M-style
# digits. Is the gap between transfer and scratch larger or smaller? Explain with what you know
# about the two domains.
# ```
#
# ```{solution} ch1-ex2
# :class: dropdown
# Smaller. The UCI digits are clean, high-contrast and low-resolution: a small network learns
# them well from scratch with a handful of labels, so there is less for transfer to add. The
# MNIST-M-style images hide the strokes in photo textures; learning to ignore colour and
# texture from ten examples per class is hard, and that invariance is precisely what the
# pretrained backbone brings.
# ```
#
# ```{exercise}
# :label: ch1-ex3
# In Experiment 2, fine-tune the misleading backbone fully (strategy `full` with
# `make_pretrained` returning it with a new head) instead of probing it. Does fine-tuning
# recover? What does that tell you about when negative transfer matters most?
# ```
#
# ```{solution} ch1-ex3
# :class: dropdown
# Fine-tuning partly recovers because all weights can move away from the misleading solution,
# but with few labels and few steps it usually stays at or below scratch. Negative transfer
# hurts most when the transferred part is frozen (feature extraction) or strongly regularised
# toward the source (L2-SP), and when target labels are too few to undo the source's bias.
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
