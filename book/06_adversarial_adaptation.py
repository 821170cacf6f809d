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
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# (ch06)=
# # Chapter 6 — Adversarial domain adaptation: from GANs to DANN, ADDA and pixel-level transfer
#
# A model trained on one *domain* loses accuracy on another, even when the task is the same:
# a digit classifier trained on clean white-on-black MNIST digits {footcite}`lecun1998gradient`
# reads held-out MNIST digits almost perfectly, yet misreads a large share of the *same* digits
# once they are blended with colour photographs. This chapter studies **unsupervised domain
# adaptation**: we have labelled
# *source* images and *unlabelled* images of the *target* domain, and we want a classifier
# for the target. The source documents of this course describe one answer — "use a GAN to
# generate data that looks like the target domain, then train on it". We build that method,
# together with the feature-level adversarial methods that made the idea practical (DANN and
# ADDA), a class-aware one (CDAN) and the statistical baselines they are measured against (MMD
# and CORAL), and we measure all of them on the benchmark of Ganin et al.
# {footcite}`ganin2016domain`: MNIST → MNIST-M. Since the target has no labels, nothing in this
# chapter — no trade-off, learning rate, checkpoint or the method reported as best — is chosen
# with target labels: a declared label-free criterion makes every choice, and we measure what
# that costs against choosing with labels.

# %%
# Colab only: install the course package (does nothing elsewhere).
import sys

if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "tlcourse @ git+https://github.com/tlcourse/tlcourse@v0.1.0"], check=True)

# %%
import copy
import os
import re
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from tlcourse.adapt import (
    CORALLoss,
    DomainAdversarialLoss,
    DomainDiscriminator,
    ImageDiscriminator,
    LeNet,
    MMDLoss,
    PixelGenerator,
    accuracy_on,
    adapt_batchnorm,
    coral_loss,
    dann_lambda,
    dann_lr,
    gan_value_at_optimum,
    gaussian_pdf,
    grad_reverse,
    js_divergence,
    kde,
    mmd2,
    optimal_discriminator,
    outputs_of,
    proxy_a_distance,
    train_adaptation,
    train_adda,
    train_dann,
    train_gan_1d,
    train_pixel_da,
    translate,
)
from tlcourse.data import load_mnist, load_mnistm, load_uci_digits
from tlcourse.plots import show_images
from tlcourse.protocol import Claim, Study, validation_split
from tlcourse.utils import glue, seed_everything

START = time.perf_counter()
seed_everything(0)
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# The book runs a short schedule on a 2-core CPU; on a GPU, raise the epochs of the protocol
# below (Ganin et al. train for tens of thousands of steps) and add seeds.
DEVICE = None       # None picks cuda → mps → cpu

# %% [markdown]
# ## The benchmark: MNIST → MNIST-M
#
# Ganin et al. built MNIST-M by blending each MNIST digit with a random patch of a colour photo:
# every pixel and channel becomes $|\text{patch} - \text{digit}|$, so the background shows the
# photo and the stroke shows its colour negative. `tlcourse.data` builds it the same way, offline,
# from the photos that ship with scikit-learn. The two domains hold **the same digits**, so the
# only difference between them is the domain — exactly the paper's setting:
#
# * **source**: 4,000 labelled MNIST digits (`load_mnist(channels=3).train`);
# * **target, for adaptation**: the same 4,000 digits restyled, used *without labels*
#   (`load_mnistm().train`), except for two named uses of a few of their labels described
#   below (a small labelled target set, and an audit set that measures what our choices cost);
# * **target, for evaluation**: 1,000 held-out restyled digits with labels (`load_mnistm().test`),
#   sealed until the end and opened once per selected model.

# %%
source = load_mnist(channels=3)
target = load_mnistm()
print(f"source: {source.train}   target (unlabelled): {tuple(target.train.images.shape)}   target test: {target.test}")
show_images(source.train.images[:16], source.train.labels[:16], ncols=16, title="Source: MNIST (labelled)", size=0.8)
plt.show()
show_images(target.train.images[:16], ncols=16, title="Target: MNIST-M-style (unlabelled)", size=0.8)
plt.show()

# %% [markdown]
# ### What theory asks of an adapted model
#
# Ben-David et al. {footcite}`bendavid2010theory` bound the target error of any classifier $h$ from
# a hypothesis class $\mathcal{H}$ by
#
# $$
# \varepsilon_T(h) \le \varepsilon_S(h) + \tfrac12\, d_{\mathcal{H}\Delta\mathcal{H}}(\mathcal{D}_S, \mathcal{D}_T) + \lambda^\ast,
# $$ (eq-ch6-bound)
#
# the source error, plus a divergence between the two input distributions *as seen through*
# $\mathcal{H}$, plus the error $\lambda^\ast$ of the best joint classifier (small when one
# classifier can do well on both domains). If we learn a representation $g$ and classify
# $h(g(x))$, the middle term is measured on features: features that keep the source error low
# **and** leave the domains hard to tell apart make the bound small. The divergence can be
# estimated by training a domain classifier (source vs target) and reading its held-out error
# $\epsilon$: the **proxy A-distance**
#
# $$
# \hat d_A = 2\,(1 - 2\epsilon)
# $$ (eq-ch6-adist)
#
# is 0 for indistinguishable features ($\epsilon = 0.5$) and 2 for perfectly separable ones
# (`tlcourse.adapt.proxy_a_distance`, logistic regression on a held-out split). Every method of
# this chapter reduces the divergence term; they differ in how they measure it.
#
# ```{admonition} Pitfall: aligned features are not enough
# :class: warning
# The bound also contains $\lambda^\ast$. Features that map every source "3" onto target "8"s
# are perfectly aligned and useless. Nothing in a purely marginal alignment loss forbids this;
# the source classification loss and the network's inductive bias are what keep classes
# apart — and why adaptation can fail, or hurt, when the shift is large.
# ```
#
# ## GAN basics: a generator, a discriminator and their game
#
# A generative adversarial network {footcite}`goodfellow2014generative` pits a generator
# $G$ (noise $z$ → sample) against a discriminator $D$ (sample → probability of being real):
#
# $$
# \min_G \max_D\; V(D, G) = \mathbb{E}_{x\sim p_{\text{data}}}[\log D(x)] + \mathbb{E}_{z\sim p_z}[\log(1 - D(G(z)))].
# $$ (eq-ch6-gan)
#
# For a fixed generator with density $p_g$ the best discriminator is
#
# $$
# D^\ast(x) = \frac{p_{\text{data}}(x)}{p_{\text{data}}(x) + p_g(x)},
# \qquad V(D^\ast, G) = -\log 4 + 2\,\mathrm{JSD}(p_{\text{data}} \,\|\, p_g),
# $$ (eq-ch6-dstar)
#
# so the generator minimises a Jensen–Shannon divergence, which vanishes exactly when
# $p_g = p_{\text{data}}$; there $D^\ast \equiv \tfrac12$. (Chapter 2 derives both.) Below, a
# two-layer generator learns a one-dimensional Gaussian; we compare the trained discriminator
# with $D^\ast$ computed from the two densities. Generator and discriminator are trained with
# alternating Adam steps and the *non-saturating* generator loss $-\log D(G(z))$, which has the
# same fixed point as {eq}`eq-ch6-gan` but does not stall when $D$ wins early.

# %%
threads = torch.get_num_threads()
torch.set_num_threads(1)  # a model this small runs fastest on one thread
data_1d = torch.randn(4000, generator=torch.Generator().manual_seed(0)) * 0.5 + 2.0
hist_1d = train_gan_1d(data_1d, steps=800, seed=0)  # a History; the networks are attributes of it
gen_1d, disc_1d = hist_1d.generator, hist_1d.discriminator
with torch.no_grad():
    samples_1d = gen_1d(torch.randn(4000, gen_1d.noise_dim, generator=torch.Generator().manual_seed(1))).squeeze(1)
torch.set_num_threads(threads)
grid = np.linspace(-2, 6, 801)
dx = grid[1] - grid[0]
p_data, p_g = gaussian_pdf(grid, 2.0, 0.5), kde(samples_1d, grid)
p_g = p_g / (p_g.sum() * dx)  # the KDE's mass on the plotted grid, renormalised
with torch.no_grad():
    d_trained = torch.sigmoid(disc_1d(torch.tensor(grid, dtype=torch.float32))).squeeze(1).numpy()
d_star = optimal_discriminator(p_data, p_g)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
axes[0].plot(grid, p_data, label="$p_{data}$ = N(2, 0.5²)")
axes[0].plot(grid, p_g, label="$p_g$ (KDE of 4,000 generated samples)")
axes[0].plot(grid, d_trained, "--", label="trained D(x)")
axes[0].plot(grid, d_star, ":", label="$D^*(x)$ from the densities")
axes[0].set(xlabel="x", ylabel="density / probability", title="After 800 steps")
axes[0].legend(fontsize=7, loc="lower left", framealpha=0.9)
axes[1].plot(np.convolve(hist_1d.steps["d_real"], np.ones(50) / 50, "valid"), label="mean D(real)")
axes[1].plot(np.convolve(hist_1d.steps["d_fake"], np.ones(50) / 50, "valid"), label="mean D(G(z))")
axes[1].axhline(0.5, color="grey", lw=0.8)
axes[1].set(xlabel="step", ylabel="probability (moving average)", title="The game settles near D = 1/2")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

value = gan_value_at_optimum(p_data, p_g, dx)
jsd = js_divergence(p_data, p_g, dx)
# V(D*, G) = -log 4 + 2 JSD, up to the mass of N(2, 0.5²) outside the grid (below 1e-9)
assert abs(value - (-np.log(4) + 2 * jsd)) < 1e-6
glue("ch06_gan_mean", samples_1d.mean().item())
glue("ch06_gan_std", samples_1d.std().item())
glue("ch06_gan_jsd", jsd)
print(f"generated mean {samples_1d.mean():.3f}, std {samples_1d.std():.3f};  JSD(p_data || p_g) = {jsd:.4f} nats")

# %% [markdown]
# The generated samples have mean {glue:text}`ch06_gan_mean:.2f` and standard deviation
# {glue:text}`ch06_gan_std:.2f` (the data: 2 and 0.5), the Jensen–Shannon divergence left is
# {glue:text}`ch06_gan_jsd:.4f` nats, and both discriminators hover around ½ where the densities
# overlap. Every adversarial adaptation method in this chapter reuses this game: **DANN** and
# **ADDA** play it on *features* (the "real" and "fake" samples are source and target features),
# **pixel-level** methods play it on *images*.
#
# %% [markdown]
# ## Baselines: source-only, train-on-target, and AdaBN
#
# Every network in this chapter is a narrow version of the digit network of Ganin et al. — two
# 5×5 convolutions (here 16 and 32 channels instead of 32 and 48, to afford several seeds on a
# CPU) with max-pooling, then a 64-unit feature layer (the *backbone* $g$) and a linear classifier
# (the *head* $h$) — with batch normalisation after each layer (`tlcourse.adapt.LeNet`). Two
# baselines bracket every result:
#
# * **source-only**: train on labelled source images, apply to the target — the lower bound;
# * **train-on-target ("oracle")**: train on the *labelled* target training images until the
#   accuracy on held-out labelled target images stops improving — the upper bound no
#   unsupervised method is expected to reach. Its labels are used nowhere else.
#
# A third is free. Li et al. {footcite}`li2016revisiting` observed that much of a domain's
# "style" lives in the batch-normalisation statistics: **AdaBN** recomputes each layer's mean and
# variance on unlabelled target images (`adapt_batchnorm`) and leaves every weight alone. It is
# the baseline every adapted model below must beat: adapted models are themselves evaluated
# with target statistics, so a gain over plain source-only would partly be AdaBN's.

# %% [markdown]
# ## Statistical alignment: MMD and CORAL
#
# The simplest way to shrink the divergence term of {eq}`eq-ch6-bound` is to add a
# differentiable distance between the source and target *features* of each batch to the
# classification loss:
#
# $$
# \min_{g,h}\; \frac{1}{n_s}\sum_{i=1}^{n_s} \mathrm{CE}\big(h(g(x^s_i)), y^s_i\big) + \beta\, \mathcal{D}\big(g(X_s), g(X_t)\big).
# $$ (eq-ch6-objective)
#
# **MMD** {footcite}`gretton2012kernel` (used for adaptation by DAN {footcite}`long2015learning`) compares the mean embeddings of
# the two samples in a kernel's feature space. With a Gaussian kernel
# $k(x, y) = \exp(-\lVert x - y\rVert^2 / 2\sigma^2)$, averaged over several bandwidths $\sigma$,
#
# $$
# \widehat{\mathrm{MMD}}^2 = \frac{1}{m^2}\sum_{i,j} k(x_i, x_j) + \frac{1}{n^2}\sum_{i,j} k(y_i, y_j) - \frac{2}{mn}\sum_{i,j} k(x_i, y_j).
# $$ (eq-ch6-mmd)
#
# This is the biased (V-statistic) estimate; dropping the $i = j$ terms of the first two sums
# (and dividing by $m(m-1)$, $n(n-1)$) gives the unbiased one, `mmd2(..., unbiased=True)`.
# **Deep CORAL** {footcite}`sun2016deep` matches second-order statistics only:
#
# $$
# \mathcal{L}_{\text{CORAL}} = \frac{1}{4d^2}\,\lVert C_S - C_T \rVert_F^2,
# $$ (eq-ch6-coral)
#
# with $C$ the $d\times d$ feature covariance matrices. Both are written out below from their
# definitions and checked against the package.

# %%
g = torch.Generator().manual_seed(0)
fs, ft = torch.randn(50, 8, generator=g), torch.randn(60, 8, generator=g) * 1.5 + 0.3
sig = 2.0
k = lambda a, b: torch.exp(-torch.cdist(a, b).pow(2) / (2 * sig**2))  # noqa: E731
mmd_scratch = k(fs, fs).mean() + k(ft, ft).mean() - 2 * k(fs, ft).mean()
cs, ct = np.cov(fs.numpy(), rowvar=False), np.cov(ft.numpy(), rowvar=False)
coral_scratch = ((cs - ct) ** 2).sum() / (4 * 8**2)
assert torch.isclose(mmd_scratch, mmd2(fs, ft, bandwidths=[sig]), atol=1e-6)
assert np.isclose(coral_scratch, coral_loss(fs, ft).item(), rtol=1e-5)
print(f"MMD² = {mmd_scratch:.4f}, CORAL = {coral_scratch:.4f}: the package agrees")

# %% [markdown]
# In {eq}`eq-ch6-objective` each loss is a plain module called as `loss(f_s, f_t)`;
# `train_adaptation` is the whole loop (`adaptation_step` is one step, for readers who keep their
# own loop; any model that exposes `.backbone` and `.head`, or timm's `forward_features` and
# `forward_head`, and any labelled map-style dataset will do). Source and target batches go
# through the network *separately*, so each domain is normalised with its own batch statistics
# during training — the training-time side of AdaBN — and the adapted models are evaluated with
# target statistics. The trade-off $\beta$ has no default that transfers across losses (CORAL's
# value is tiny by construction, $1/4d^2$): it is chosen below by a label-free criterion.


# %% [markdown]
# ## DANN: a discriminator on features, and a gradient that changes sign
#
# Domain-adversarial training {footcite}`ganin2016domain` replaces the fixed distance by a learned
# one: a **domain discriminator** $d$ classifies features as source (1) or target (0), and the
# feature extractor is trained to make it fail, while the label classifier keeps the features
# useful:
#
# $$
# \min_{g, h}\max_{d}\;\; \mathcal{L}_{\text{cls}}(h \circ g) - \lambda\,\mathcal{L}_{\text{dom}}(d \circ g),\qquad
# \mathcal{L}_{\text{dom}} = -\tfrac12\,\mathbb{E}_s[\log d(g(x^s))] - \tfrac12\,\mathbb{E}_t[\log(1 - d(g(x^t)))].
# $$ (eq-ch6-dann)
#
# This is the GAN game of {eq}`eq-ch6-gan` with the feature extractor as the generator. Instead
# of alternating updates, DANN inserts a **gradient reversal layer** between $g$ and $d$: the
# identity going forward, a multiplication by $-\lambda$ going back,
#
# $$
# R_\lambda(x) = x, \qquad \frac{\partial R_\lambda}{\partial x} = -\lambda I,
# $$ (eq-ch6-grl)
#
# so one backward pass of $\mathcal{L}_{\text{cls}} + \mathcal{L}_{\text{dom}}$ makes $d$ descend
# its loss while $g$ *ascends* it. Early on the discriminator is noise, so the paper ramps
# $\lambda$ up and anneals the learning rate over the training progress $p \in [0, 1]$:
#
# $$
# \lambda_p = \frac{2}{1 + \exp(-\gamma p)} - 1\;\; (\gamma = 10), \qquad \mu_p = \frac{\mu_0}{(1 + \alpha p)^{\beta}}\;\; (\alpha = 10,\ \beta = 0.75).
# $$ (eq-ch6-schedules)

# %%
x = torch.randn(4, 3, requires_grad=True)
y = grad_reverse(x, 0.5)
(y * torch.arange(3.0)).sum().backward()
assert torch.equal(y, x) and torch.equal(x.grad, -0.5 * torch.arange(3.0).expand(4, 3))

p = np.linspace(0, 1, 101)
fig, ax = plt.subplots(figsize=(5.5, 3.2))
ax.plot(p, [dann_lambda(v) for v in p], label=r"$\lambda_p$ (γ = 10)")
ax.plot(p, [dann_lr(v, lr0=1.0) for v in p], label=r"$\mu_p / \mu_0$ (α = 10, β = 0.75)")
ax.set(xlabel="training progress p", ylabel="value", title="DANN's schedules")
ax.legend()
plt.show()

# %% [markdown]
# `DomainAdversarialLoss` follows TLlib's design: it owns its gradient reversal layer and its
# discriminator, steps $\lambda_p$ itself, returns one scalar to add to the classification
# loss, and reports the discriminator's accuracy (½ means the features fool it). For this
# short schedule we use Adam at its usual rate instead of the paper's annealed SGD (which is
# `train_adaptation(..., optimizer="sgd", lr=0.01, lr_schedule=True)`; {ref}`ch6-ex3`
# compares them), and a discriminator with two hidden layers of 500 units.


# %% [markdown]
# ## ADDA: untie the encoders, then play the GAN game
#
# ADDA {footcite}`tzeng2017adversarial` splits DANN's joint objective into two stages. First a
# source encoder $M_s$ and classifier $C$ are trained on the source (our source-only model).
# Then a **separate** target encoder $M_t$, initialised from $M_s$, plays a standard GAN
# against a feature discriminator while $M_s$ and $C$ stay frozen:
#
# $$
# \min_D\; -\mathbb{E}_s[\log D(M_s(x^s))] - \mathbb{E}_t[\log(1 - D(M_t(x^t)))], \qquad
# \min_{M_t}\; -\mathbb{E}_t[\log D(M_t(x^t))].
# $$ (eq-ch6-adda)
#
# The target encoder uses the non-saturating "inverted label" loss instead of a reversed
# gradient, and, having untied weights, it may move further from the source encoder. Target
# images are classified by $C(M_t(x))$; since $M_t$ only sees target batches, its
# batch-normalisation statistics are target statistics.


# %% [markdown]
# ## Pixel-level adaptation: generate target-style images, then train on them
#
# The source documents' recipe works in *image* space: a generator $G(x^s, z)$ restyles a
# labelled source image (the noise $z$ picks one of many plausible renderings), an image
# discriminator $D$ learns to tell generated images from **real target images** — not from
# source images, as the source text has it: the point is to make $G$'s output look like the
# target — and a task classifier $T$ learns the source labels on the generated images. The
# generator is also trained to keep $T$ right, a **content-preserving** loss: it may change
# the style, not the digit. This is PixelDA {footcite}`bousmalis2017unsupervised` (CyCADA
# {footcite}`hoffman2018cycada` adds cycle consistency and feature-level alignment):
#
# $$
# \min_{G, T}\max_D\;\; \mathbb{E}_t[\log D(x^t)] + \mathbb{E}_{s,z}[\log(1 - D(G(x^s, z)))]
# + \mathbb{E}_{s,z}\big[\mathrm{CE}\big(T(G(x^s, z)), y^s\big)\big].
# $$ (eq-ch6-pixel)
#
# Our generator is deliberately small (`PixelGenerator`): the noise is mapped to a coarse
# 4×4 "texture", upsampled and concatenated with the image, then one 3×3 and two 1×1
# convolutions recolour every pixel from its neighbourhood. It can change colours and
# textures but cannot move strokes — the assumption behind every pixel-level method is that
# the domains differ in *appearance*, not in geometry. The discriminator uses spectral
# normalisation {footcite}`miyato2018spectral` and a minibatch-deviation feature
# {footcite}`karras2018progressive`, two standard guards against an unstable game and a collapsed
# generator.
#
# Pixel-level and feature-level adaptation fix different things, so CyCADA uses both (with a
# cycle-consistency loss we do not implement). We combine them in one joint run and call the
# result what it is, **PixelDA + DANN feature loss**: $T$'s features of generated and real
# target images are also aligned by a `DomainAdversarialLoss` (the DANN loss of
# {eq}`eq-ch6-dann`, passed as `feature_loss`); {ref}`ch6-ex6` takes the two halves
# apart.


# %% [markdown]
# ## A class-aware method: CDAN with entropy conditioning
#
# The pitfall above is real: DANN's discriminator only sees features, so a feature extractor
# that maps source "3"s onto target "8"s satisfies it. **CDAN** {footcite}`long2018conditional`
# conditions the discriminator on the classifier's prediction $g = \mathrm{softmax}(h(f))$: it
# sees the *multilinear map* $f \otimes g$ (the outer product of features and class
# probabilities, flattened), so fooling it requires aligning features **class by class**:
#
# $$
# \min_{g,h}\max_{d}\;\; \mathcal{L}_{\text{cls}} - \lambda\,\frac{\sum_i w_i\, \mathrm{BCE}\big(d(f_i \otimes g_i), \text{domain}_i\big)}{\sum_i w_i},
# \qquad w_i = 1 + e^{-H(g_i)} .
# $$ (eq-ch6-cdan)
#
# The weights $w_i$ (the "+E", *entropy conditioning*) count confident predictions more than
# uncertain ones, whose $g_i$ says little about the class. `CDANLoss` is a
# `DomainAdversarialLoss` that asks the training loop for the logits too (`uses_logits`); the
# prediction enters the map as a constant, the features receive the reversed gradient.

# %%
from tlcourse.adapt.cdan import CDANLoss, entropy_weights, multilinear_map

f_demo, p_demo = torch.randn(2, 3), torch.tensor([[0.9, 0.1], [0.5, 0.5]])
h_demo = multilinear_map(f_demo, p_demo)            # (2, 3·2): vec(f gᵀ) per example
assert torch.allclose(h_demo[0].view(3, 2), torch.outer(f_demo[0], p_demo[0]))
print("entropy weights (confident, uncertain):", entropy_weights(p_demo).numpy().round(3))

# %% [markdown]
# ## Choosing without target labels
#
# Every method above has settings — $\beta$ for MMD and CORAL, the discriminator's learning rate
# of the pixel-level GAN, how long to train — and a practitioner must also choose *which method*
# to deploy. The labels that would settle it are exactly the ones the problem says we do not
# have. A criterion that scores a trained candidate without target labels is needed; the
# candidate with the best score is selected (`tlcourse.adapt.selection`):
#
# * **Source validation accuracy**: label-free for the target, but it measures the wrong domain.
# * **IWCV** {footcite}`sugiyama2007covariate`: under covariate shift the target risk is a
#   weighted source risk, $\mathbb{E}_t[\ell] = \mathbb{E}_s[w(x)\,\ell(x)]$ with
#   $w = p_t / p_s$, estimated on labelled *source validation* examples:
#
#   $$
#   \hat R_{\text{IW}} = \frac1n \sum_{i=1}^n w_i\,\ell_i .
#   $$ (eq-ch6-iwcv)
#
# * **DEV** {footcite}`you2019towards` (deep embedded validation) estimates $w$ on the
#   candidate's *features* and adds a control variate: since $\mathbb{E}_s[w] = 1$ is known,
#
#   $$
#   \hat R_{\text{DEV}} = \overline{w\ell} + \eta\,(\bar w - 1), \qquad
#   \eta = -\frac{\widehat{\mathrm{Cov}}(w\ell,\, w)}{\widehat{\mathrm{Var}}(w)}
#   $$ (eq-ch6-dev)
#
#   has a smaller variance than IWCV's. Both take the density ratio from a domain classifier
#   (logistic regression, target vs source features): $w(x) = \tfrac{n_s}{n_t}\,P(t\mid x)/P(s\mid x)$
#   (`density_ratio`).
# * **SND** {footcite}`saito2021tune` (soft neighbourhood density) looks at the target only: a
#   good model's target predictions form dense, consistent clusters. With L2-normalised class
#   probabilities $p_i$, each example's soft neighbourhood is $\mathrm{softmax}_{j\ne i}(p_i^\top
#   p_j / \tau)$ ($\tau = 0.05$) and SND is its mean entropy (higher is better).
# * **Prediction entropy** (lower is better): the simplest target-only signal. Its failure mode
#   is known — a model that predicts one class with confidence scores best — so a pick made
#   with it needs a label-free check that the predictions have not collapsed: the entropy of
#   the *average* prediction over target images, which is $\log 10$ for ten equally frequent
#   predicted classes and 0 for one.
#
# The practical alternative is not label-free, and we name it as such: **a small labelled
# target validation set**, here 10 labelled images per class taken from the target *training*
# images (never from the target test set). To *measure* how good each choice is we also need
# what selection with target labels would have picked: an **audit** set of 1,000 other target
# training images whose labels are read only for that comparison (the regret table), never to
# choose anything that is reported as a method.
#
# IWCV and DEV rest on an assumption worth checking before trusting them: the weights are
# only as good as the overlap of the two feature distributions. When the domain classifier
# separates the domains almost perfectly (a proxy A-distance near 2), a few source examples get
# huge weights and the estimates become noisy.
#
# First, a one-dimensional shift where the answer is known: source $\mathcal{N}(0,1)$, target
# $\mathcal{N}(1,1)$, a loss $\ell(x) = x^2$ whose target risk is 2 and source risk 1.

# %%
from tlcourse.adapt.selection import (
    CRITERIA,
    density_ratio,
    dev_risk,
    iwcv_risk,
    labelled_target_validation,
    score_candidate,
    select,
)

rng = np.random.default_rng(0)
x_fit_s, x_fit_t, x_val = rng.normal(0, 1, (2000, 1)), rng.normal(1, 1, (2000, 1)), rng.normal(0, 1, (500, 1))
w_demo = density_ratio(x_fit_s, x_fit_t, x_val)
loss_demo = x_val[:, 0] ** 2
estimates = {"source risk (unweighted)": loss_demo.mean(), "IWCV": iwcv_risk(loss_demo, w_demo),
             "DEV": dev_risk(loss_demo, w_demo), "true target risk": 2.0}
assert abs(estimates["DEV"] - 2.0) < abs(estimates["source risk (unweighted)"] - 2.0)
pd.Series(estimates, name="risk estimate").round(3).to_frame()

# %% [markdown]
# ## One protocol for every method
#
# Every number of the method table below comes from the same protocol (`tlcourse.protocol`,
# {ref}`ch03` introduced it):
#
# * **splits**: 50 labelled source images per class are set aside as source validation (for
#   the source-based criteria); 10 labelled target *training* images per class form the small
#   labelled target set; 1,000 other target training images are the audit set; the 1,000 target
#   test images are sealed in a `Study` and opened once per selected model;
# * **shared pretraining**: for each seed, one source-only network is trained; every
#   adaptation method starts from it and trains for the same number of steps (the criterion
#   sees a checkpoint after each epoch);
# * **declared grids**: MMD's and CORAL's trade-off $\beta$ and the pixel-level GAN's
#   discriminator learning rate each take two declared values; DANN, CDAN+E and ADDA run with
#   their papers' settings, and for these three the criterion also picks the checkpoint (epoch).
#   Every (setting, checkpoint) of every method is a *candidate*;
# * **one declared criterion, prediction entropy**, picks each method's setting and checkpoint
#   and the chapter's reported method (the lowest entropy among all candidates, source-only
#   ones included); the other criteria are compared with it in the regret table;
# * **3 seeds** for every method, 95% confidence intervals from a bootstrap over seeds and test
#   images, paired differences for comparisons.
#
# **How the criterion, the schedule and the thresholds were fixed.** Choosing the criterion is
# itself a choice, and it cannot be made on the seeds and test images that report the result.
# This whole protocol was run twice before writing the cells below (with two, then three
# adaptation epochs; `scripts/pilot_ch06.py` reruns it), on three *other* seeds (100, 101 and 102, used nowhere here), and judged
# on the audit set only — the target test set was not involved. In that pilot, with two
# adaptation epochs, DEV picked MMD on one of the three seeds while the pixel-level method was
# far better on the audit set, SND picked plain source-only on every seed (its target
# predictions are uncertain and crowd into a few classes, so every target image resembles every
# other: the dense neighbourhoods SND rewards), and even the best pick's gain over source-only +
# AdaBN varied too much across seeds for the first claim below to be supported by its interval;
# with three epochs the pixel-level method became the clear best on every pilot seed, and
# prediction entropy picked, on each seed, the very candidate the audit labels picked, while DEV
# and IWCV still picked MMD. So the chapter declares **prediction entropy** as its criterion and
# three adaptation epochs, and keeps the thresholds the course set for this chapter before any
# run. Every criterion stays in the regret table, so the choice is checked again on the
# chapter's own seeds. In fairness: an earlier draft of this chapter had declared DEV, and its
# run on these seeds did not support the claims; the pilot came after it, so this choice is not
# blind to that outcome; DEV's row in the regret table shows how it fares under the final
# protocol. The claims are declared before the test set is opened:
#
# 1. the entropy-selected method beats source-only + AdaBN by at least
#    {glue:text}`ch06_claim_gain:.0f` points (CI lower bound);
# 2. the regret of entropy selection — the accuracy lost against selecting the same pool with
#    target labels — is at most {glue:text}`ch06_claim_regret:.0f` points (CI upper bound).
#
# The share of the source-only → oracle gap the selected method closes is *reported* next to
# Ganin et al.'s, not asserted: our schedule is hundreds of steps, theirs tens of thousands.

# %%
SEEDS = [0, 1, 2]
NET = dict(widths=(16, 32), feature_dim=64)   # a narrow LeNet, to afford 3 seeds of every method
PRE_EPOCHS, ADAPT_EPOCHS, ORACLE_EPOCHS, BATCH = 2, 3, 4, 128
GRIDS = {"MMD": {"trade_off": [1.0, 4.0]}, "CORAL": {"trade_off": [10.0, 100.0]}, "DANN": {"trade_off": [1.0]},
         "CDAN+E": {"trade_off": [1.0]}, "PixelDA + DANN": {"lr_d": [5e-4, 2e-3]}}
CHECKPOINTED = ("DANN", "CDAN+E", "ADDA")   # methods whose checkpoint (epoch) is chosen too; others: last epoch
CRITERION = "entropy"                  # declared from the pilot on seeds 100-102, before these seeds ran
CLAIM_GAIN, CLAIM_REGRET = 8.0, 5.0    # points
glue("ch06_claim_gain", CLAIM_GAIN)
glue("ch06_claim_regret", CLAIM_REGRET)

src_train, src_val = validation_split(source.train, per_class=50, seed=0)
rest, tval = labelled_target_validation(target.train.labels, per_class=10, seed=0)
target_val = (target.train.images[tval], target.train.labels[tval])   # the small labelled target set
crit_images = target.train.images[rest[:500]]                            # unlabelled, for criteria and AdaBN
audit = (target.train.images[rest[1000:2000]], target.train.labels[rest[1000:2000]])  # regret table only
oracle_train, oracle_val = target.train.subset(rest[:3000]), target.train.subset(rest[3000:])
src_fit = src_train.images[:500]       # source images for the domain classifier of IWCV/DEV

study = Study("target test accuracy", test=target.test, seeds=SEEDS)
picked = {c: f"selected by {c}" for c in list(CRITERIA) + ["audit"]}
study.declare(
    Claim("the entropy-selected method beats source-only + AdaBN", a=picked[CRITERION], b="source-only + AdaBN",
          at_least=CLAIM_GAIN / 100),
    Claim("entropy selection's regret against target-label selection", a=picked["audit"], b=picked[CRITERION],
          at_most=CLAIM_REGRET / 100),
)
print(f"source train/val {len(src_train)}/{len(src_val)}; labelled target set {len(tval)}; audit {len(audit[1])}")

# %%
def views(model, source_like=None):
    """The model as it sees each domain: batch-norm statistics of source(-like) and of target images."""
    return adapt_batchnorm(model, src_fit if source_like is None else source_like), adapt_batchnorm(model, crit_images)


candidates = {seed: {} for seed in SEEDS}   # seed → candidate → {method, model, criteria...}


def add(seed, method, name, source_view, target_view, source_like=None):
    """Score one candidate with every criterion (and the audit set, for the regret table only)."""
    fit, val = (src_fit, src_val.images) if source_like is None else source_like
    scores_ = score_candidate(source_view, target_view, fit, (val, src_val.labels), crit_images, target_val, seed=seed)
    scores_["audit"] = accuracy_on(target_view, audit)
    candidates[seed][name] = {"method": method, "model": target_view, **scores_}


def checkpoints(method, label, store):
    """A callback that keeps a copy of the model after every epoch."""
    def callback(epoch, model):
        store.append((f"{method} {label} ep{epoch}".replace("  ", " "), copy.deepcopy(model)))
        return {}
    return callback


def transfer_loss(method):
    return {"MMD": MMDLoss, "CORAL": CORALLoss, "CDAN+E": lambda: CDANLoss(NET["feature_dim"], 10),
            "DANN": lambda: DomainAdversarialLoss(DomainDiscriminator(NET["feature_dim"], hidden=(500, 500)))}[method]()


def run_pixel(seed, net, lr_d):
    """PixelDA + DANN feature loss; its criteria see restyled source images as its source domain."""
    gen, disc = PixelGenerator(width=16, noise_res=4), ImageDiscriminator(width=16)
    feature_loss = DomainAdversarialLoss(DomainDiscriminator(NET["feature_dim"]))
    train_pixel_da(gen, disc, net, src_train, target.train.images, feature_loss=feature_loss, seed=seed,
                   device=DEVICE, epochs=ADAPT_EPOCHS, batch_size=32, lr=2e-3, lr_d=lr_d)
    fit, val = translate(gen, src_fit, seed=seed), translate(gen, src_val.images, seed=seed)
    return gen, (fit, val), views(net, fit)


pretrained, oracle_curves, generators = {}, {}, {}


def run_seed(seed):
    """Every method for one seed, from one shared source-only pretraining; each checkpoint becomes a candidate."""
    t0 = time.perf_counter()
    seed_everything(seed)
    base = LeNet(**NET)   # shared source-only pretraining: every method of this seed starts here
    train_adaptation(base, src_train, epochs=PRE_EPOCHS, batch_size=BATCH, seed=seed, device=DEVICE)
    pretrained[seed] = base
    add(seed, "source-only", "source-only", base, base)
    add(seed, "source-only + AdaBN", "source-only + AdaBN", *views(base))
    for method, grid in GRIDS.items():
        (key, values), = grid.items()
        for value in values:
            seed_everything(seed)
            net, store, label = copy.deepcopy(base), [], f"{key}={value:g}"
            if method == "PixelDA + DANN":
                generators[seed, label], source_like, both = run_pixel(seed, net, value)
                add(seed, method, f"{method} {label}", *both, source_like=source_like)
                continue
            train_adaptation(net, src_train, target.train.images, transfer_loss(method), epochs=ADAPT_EPOCHS,
                             batch_size=BATCH, trade_off=value, seed=seed, device=DEVICE,
                             callback=checkpoints(method, label, store))
            for name, snapshot in store if method in CHECKPOINTED else store[-1:]:
                add(seed, method, name, *views(snapshot))
    store = []
    train_adda(base, src_train, target.train.images, epochs=ADAPT_EPOCHS, batch_size=BATCH, seed=seed, device=DEVICE,
               callback=checkpoints("ADDA", "", store))
    for name, snapshot in store:   # ADDA's target encoder only ever sees target batches
        add(seed, "ADDA", name, base, snapshot)
    seed_everything(seed)          # the oracle: target labels, trained until held-out target accuracy stops rising
    oracle, store = copy.deepcopy(base), []
    train_adaptation(oracle, oracle_train, epochs=ORACLE_EPOCHS, batch_size=BATCH, seed=seed, device=DEVICE,
                     callback=checkpoints("oracle", "", store))
    curve = [accuracy_on(m, oracle_val) for _, m in store]
    oracle_curves[seed] = curve
    candidates[seed]["oracle"] = {"method": "oracle", "model": store[int(np.argmax(curve))][1]}
    print(f"seed {seed}: {len(candidates[seed]) - 1} candidates ({time.perf_counter() - t0:.0f} s)")


# %% [markdown]
# One cell per seed (each takes about a third of the chapter's run time):

# %%
run_seed(SEEDS[0])

# %%
run_seed(SEEDS[1])

# %%
run_seed(SEEDS[2])

oracle_last = np.mean([c[-1] - max(c[:-1]) for c in oracle_curves.values()])
glue("ch06_oracle_last", 100 * oracle_last)
glue("ch06_oracle_epochs", ORACLE_EPOCHS)

# %% [markdown]
# ## Results: one table, every choice made by prediction entropy
#
# Now, and only now, the target test set is opened: once for each model that a rule selects
# (the fixed baselines, each method's entropy-selected setting and checkpoint, and each criterion's
# overall pick); a model picked twice is read once. "DANN (fixed budget)" is plain DANN at the
# paper's settings read at the last epoch, with nothing selected: the measured baseline for the
# selected recipes. The oracle is the checkpoint with the best accuracy on held-out labelled
# target images (it is allowed labels); over its {glue:text}`ch06_oracle_epochs` epochs from the
# shared pretraining, its last epoch changed that accuracy by {glue:text}`ch06_oracle_last:+.1f`
# points over the best earlier one (mean over seeds; a change near zero or below means the
# oracle has converged for this network). "Gap closed" is
# $(\text{acc} - \text{acc}_{\text{source-only}}) / (\text{acc}_{\text{oracle}} - \text{acc}_{\text{source-only}})$.

# %%
opened = {seed: {} for seed in SEEDS}


def open_test(seed, cand, name=None):
    """Open the sealed test set once for a candidate model; a second use of the same model reuses it."""
    if cand in opened[seed]:
        if name is not None and name != opened[seed][cand]:
            study.pick(name, seed, opened[seed][cand])
        return
    model = candidates[seed][cand]["model"]
    name = name or f"[{cand}]"
    study.evaluate(name, seed, lambda test: outputs_of(model, test.images)[1].argmax(1))
    opened[seed][cand] = name


METHODS = ["MMD", "CORAL", "DANN", "CDAN+E", "ADDA", "PixelDA + DANN"]
fixed_dann = f"DANN trade_off=1 ep{ADAPT_EPOCHS}"
for seed in SEEDS:
    pool = {n: c for n, c in candidates[seed].items() if c["method"] != "oracle"}
    for name in ["source-only", "source-only + AdaBN", "oracle"]:
        open_test(seed, name, name)
    open_test(seed, fixed_dann, "DANN (fixed budget)")
    for method in METHODS:   # each method's setting and checkpoint, chosen by the declared criterion
        open_test(seed, select({n: c for n, c in pool.items() if c["method"] == method}, CRITERION), method)
    for crit in CRITERIA:    # each criterion's overall pick: the method it would report
        open_test(seed, select(pool, crit), picked[crit])
    open_test(seed, max(pool, key=lambda n: pool[n]["audit"]), picked["audit"])   # target-label selection

rows = ["source-only", "source-only + AdaBN", "MMD", "CORAL", "DANN (fixed budget)", "DANN", "CDAN+E", "ADDA",
        "PixelDA + DANN", picked[CRITERION], "oracle"]
table = study.table(glue_prefix="ch06", baseline="source-only + AdaBN", methods=rows)
table["gap closed % (vs source-only)"] = [
    "—" if m in ("source-only", "oracle") else study.share_of_gain(m, "oracle", "source-only").format(100, 0)
    for m in rows]
table.style.set_caption("Target test accuracy (%), mean ± 95% CI over 3 seeds; every choice made by prediction entropy")

# %% [markdown]
# The regret table puts each criterion to the test: its overall pick (over all candidates of a
# seed, source-only ones included) against the pick of target-label selection on the audit set,
# on the same seeds and test images. A regret near 0 means the criterion chose about as well as
# labels would have.

# %%
regret_rows = {}
for crit in list(CRITERIA) + ["audit"]:
    chosen = []
    for s in SEEDS:
        pool = {n: c for n, c in candidates[s].items() if c["method"] != "oracle"}
        chosen.append(pool[select(pool, crit) if crit != "audit" else max(pool, key=lambda n: pool[n]["audit"])]["method"])
    label = "target labels (audit set)" if crit == "audit" else CRITERIA[crit][2]
    regret_rows[label] = {
        "uses target labels": "yes" if crit == "audit" or CRITERIA[crit][1] else "no",
        "picked methods (per seed)": ", ".join(chosen),
        "test accuracy of the pick": study.interval(picked[crit]).format(100, 1),
        "regret (points)": "—" if crit == "audit" else study.compare(picked["audit"], picked[crit]).format(
            100, 1, signed=True),
    }
    glue(f"ch06_regret_{crit}", study.compare(picked["audit"], picked[crit]).mean * 100 if crit != "audit" else 0.0)
regret_table = pd.DataFrame(regret_rows).T
regret_table.style.set_caption("Selection regret: what each criterion's pick loses against target-label selection")

# %%
# The declared claims, checked on the CI bounds. The first is asserted (the pilot left it a
# margin); the second depends on which of two close candidates a criterion picks, which can
# change with the number of threads, so its verdict is reported as measured, not asserted.
checked = {r.claim.name: r for r in study.check_claims()}
for r in checked.values():
    print(r.message)
best = picked[CRITERION]
gap = study.share_of_gain(best, "oracle", "source-only")
over_adabn = study.compare(best, "source-only + AdaBN")
regret = study.compare(picked["audit"], best)
dann_gap = study.share_of_gain("DANN (fixed budget)", "oracle", "source-only")
dann_over_adabn = study.compare("DANN (fixed budget)", "source-only + AdaBN")
adabn_over_src = study.compare("source-only + AdaBN", "source-only")
glue("ch06_cdan_vs_dann", study.compare("CDAN+E", "DANN").format(100, 1, signed=True))
ganin_gap = 100 * (0.7666 - 0.5225) / (0.9596 - 0.5225)   # Ganin et al. (2016), Table 2, MNIST → MNIST-M
glue("ch06_best_methods", regret_rows[CRITERIA[CRITERION][2]]["picked methods (per seed)"])
glue("ch06_best_acc", study.interval(best).format(100, 1))
glue("ch06_over_adabn", over_adabn.format(100, 1, signed=True))
glue("ch06_over_adabn_low", 100 * over_adabn.ci_low)
glue("ch06_regret", regret.format(100, 1, signed=True))
glue("ch06_regret_high", 100 * regret.ci_high)
glue("ch06_gap", gap.format(100, 0))
glue("ch06_gap_mean", 100 * gap.mean)
glue("ch06_dann_gap", dann_gap.format(100, 0))
glue("ch06_dann_over_adabn", dann_over_adabn.format(100, 1, signed=True))
glue("ch06_adabn_over_src", adabn_over_src.format(100, 1, signed=True))
glue("ch06_ganin_gap", ganin_gap)
glue("ch06_vs_ganin", "larger than" if gap.ci_low > ganin_gap / 100 else
     "smaller than" if gap.ci_high < ganin_gap / 100 else "not distinguishable from")
for i, name in enumerate(checked):
    glue(f"ch06_claim{i + 1}_status", "holds" if checked[name].passed else "is not supported by the interval")
glue("ch06_claims_held", f"{sum(r.passed for r in checked.values())} of the {len(checked)}")

# The label-free guard of entropy selection: the pick's average prediction over unlabelled
# target images must not have collapsed onto a few classes (log 10 = 2.30 nats for ten classes).
marginal = []
for seed in SEEDS:
    pool = {n: c for n, c in candidates[seed].items() if c["method"] != "oracle"}
    mean_pred = outputs_of(pool[select(pool, CRITERION)]["model"], crit_images)[1].softmax(1).mean(0)
    marginal.append(float(-(mean_pred * mean_pred.log()).sum()))
glue("ch06_marginal_entropy_min", min(marginal))
assert min(marginal) > 0.9 * np.log(10), f"an entropy pick has collapsed predictions: {marginal}"
assert checked[study.claims[0].name].passed, checked[study.claims[0].name].message

# Every adapted method against source-only + AdaBN: the verdict of each paired interval.
vs_adabn = {m: study.compare(m, "source-only + AdaBN") for m in ["MMD", "CORAL", "DANN (fixed budget)", "DANN",
                                                                   "CDAN+E", "ADDA", "PixelDA + DANN"]}
verdict = lambda d: "above" if d.ci_low > 0 else "below" if d.ci_high < 0 else "not distinguishable"  # noqa: E731
glue("ch06_above_adabn", ", ".join(m for m, d in vs_adabn.items() if d.ci_low > 0) or "none of them")
glue("ch06_not_above_adabn", ", ".join(m for m, d in vs_adabn.items() if d.ci_low <= 0) or "none")
for m in ["MMD", "CORAL", "PixelDA + DANN"]:   # the pilot's clearest gains, asserted on the mean
    assert vs_adabn[m].mean > 0, f"{m} is below source-only + AdaBN on average: {vs_adabn[m]}"
pd.DataFrame({m: {"paired difference (points)": d.format(100, 1, signed=True), "95% CI": f"[{100 * d.ci_low:+.1f}, "
                  f"{100 * d.ci_high:+.1f}]", "verdict": verdict(d)} for m, d in vs_adabn.items()}).T

# **What the protocol measured.** Prediction entropy picked {glue:text}`ch06_best_methods` (one
# pick per seed) and its picks reach {glue:text}`ch06_best_acc`% on the target test set, a
# paired difference of {glue:text}`ch06_over_adabn` points over source-only + AdaBN — which is
# itself {glue:text}`ch06_adabn_over_src` points above plain source-only, with no weight
# changed. The first claim (at least {glue:text}`ch06_claim_gain:.0f` points over source-only +
# AdaBN, on the CI's lower bound, {glue:text}`ch06_over_adabn_low:.1f`)
# {glue:text}`ch06_claim1_status`. The regret of entropy selection against selecting the same
# candidates with 1,000 labelled target images is {glue:text}`ch06_regret` points (upper bound
# {glue:text}`ch06_regret_high:.1f`): the second claim (at most
# {glue:text}`ch06_claim_regret:.0f` points) {glue:text}`ch06_claim2_status`. In all,
# {glue:text}`ch06_claims_held` declared claims hold; a claim the interval does not support is
# reported with its verdict, never re-declared with a smaller margin after the test set has
# been seen. The pick's predictions did not collapse: the entropy of its average prediction is
# at least {glue:text}`ch06_marginal_entropy_min:.2f` nats on every seed ($\log 10 \approx 2.30$).
#
# Against source-only + AdaBN, the paired intervals lie above zero for
# {glue:text}`ch06_above_adabn`; they do not for {glue:text}`ch06_not_above_adabn`. Entropy
# favours a pixel-level candidate when its classifier, trained on target-like images, is
# confident on real target images; it does not follow that entropy ranks the other candidates
# well, and the scatter plots below show how it orders them. Musgrave et al.
# {footcite}`musgrave2021realitycheck` found, over many adaptation tasks, that the label-free
# validators of the literature are poorly correlated with target accuracy and that the
# accuracy lost to validation dwarfs the differences between adaptation algorithms. DEV and
# IWCV assume covariate shift in the candidate's feature space — the same class posterior given
# the features in both domains, the density ratio carrying all the difference. An alignment loss
# makes the two feature distributions hard to tell apart (next section), so the weights come out
# close to 1 and both criteria fall back towards the source validation loss, which is low for
# every candidate and says nothing about whether the classes line up on the target (the
# $\lambda^\ast$ of {eq}`eq-ch6-bound`). When the features are instead easy to separate, a few
# source examples carry most of the weight and the estimate is noisy, the variance DEV's control
# variate reduces {footcite}`you2019towards` but cannot remove. A criterion that works on this
# shift is not thereby validated for the next one.
#
# The selected model closes {glue:text}`ch06_gap`% of the source-only → oracle gap. Ganin et al.
# {footcite}`ganin2016domain` report 52.25% (source-only), 76.66% (DANN) and 95.96%
# (train-on-target) on the real MNIST-M, so DANN closes {glue:text}`ch06_ganin_gap:.1f`% of the
# gap there; our selected model's share is {glue:text}`ch06_vs_ganin` theirs. Plain DANN at our
# fixed budget closes {glue:text}`ch06_dann_gap`% and adds {glue:text}`ch06_dann_over_adabn`
# points to source-only + AdaBN — the number to quote for "what DANN adds", since every adapted
# model here already enjoys per-domain normalisation. Three differences matter when comparing
# with the paper:
#
# * **data and steps**: they adapt with 60,000 MNIST digits and tens of thousands of steps; we
#   use 3,500 digits, a narrower network and a few hundred steps after a shared source-only
#   pretraining;
# * **the target**: our MNIST-M is built from two scikit-learn photos rather than BSDS500, so
#   its textures are less varied than the original's — easier for a generator to imitate;
# * **selection**: the paper's numbers, like most of the literature's, were tuned with target
#   labels; here no target label chose anything that is reported as a method.
#
# ```{admonition} Pitfall: selecting with target labels
# :class: warning
# Reporting the best epoch, seed or hyper-parameter *as measured on the labelled target test
# set* uses exactly the labels the problem says we do not have, and on a noisy adversarial game
# it adds points that will not be there on a new problem. The regret table shows the other
# side: a label-free criterion costs something against labels, and different criteria cost
# different amounts. Three choices in this chapter were still made while writing it — the
# declared grids, the pixel-level GAN's architecture (sizes and noise resolution, settled on
# earlier trial runs) and the criterion itself, chosen on the pilot seeds with the audit labels
# (a selection with target labels one level up, which is why it was made on other seeds). A new
# problem would need a few labelled target images to check any such choice: the "small
# labelled target set" row shows what 100 of them are worth.
# ```
#
# ## What the criteria see
#
# Each point below is one candidate (every method, setting and checkpoint, seed 0): its score
# under a criterion against its accuracy on the labelled audit set (read here only to draw the
# plot). A good criterion orders the candidates like the audit accuracy does.

# %%
frame = pd.DataFrame([{"candidate": n, **{k: v for k, v in c.items() if k != "model"}}
                      for s in SEEDS for n, c in candidates[s].items() if c["method"] != "oracle" and s == SEEDS[0]])
fig, axes = plt.subplots(1, 4, figsize=(14, 3.4), sharey=True)
for ax, crit in zip(axes, ["dev", "snd", "entropy", "target_val"]):
    for method, part in frame.groupby("method", sort=False):
        ax.scatter(part[crit], part["audit"], s=18, label=method)
    ax.set(xlabel=CRITERIA[crit][2] + (" (lower is better)" if not CRITERIA[crit][0] else ""),
           title=crit.replace("_", " "))
axes[0].set_ylabel("target accuracy (audit set)")
axes[-1].legend(fontsize=7, loc="lower right")
plt.tight_layout()
plt.show()
rank_corr = frame[["source_val", "dev", "snd", "entropy", "target_val", "audit"]].corr("spearman")["audit"]
glue("ch06_corr_dev", -rank_corr["dev"])
glue("ch06_corr_snd", rank_corr["snd"])
glue("ch06_corr_entropy", -rank_corr["entropy"])
glue("ch06_corr_src", rank_corr["source_val"])
glue("ch06_corr_tval", rank_corr["target_val"])
rank_corr.drop("audit").rename("Spearman correlation with audit accuracy (seed 0)").round(2).to_frame()

# %% [markdown]
# On seed 0, the rank correlation of a criterion with the audit accuracy (sign flipped for the
# risks and for entropy, so that positive is good) is {glue:text}`ch06_corr_dev:.2f` for DEV,
# {glue:text}`ch06_corr_snd:.2f` for SND, {glue:text}`ch06_corr_entropy:.2f` for prediction
# entropy, {glue:text}`ch06_corr_src:.2f` for the source
# validation accuracy and {glue:text}`ch06_corr_tval:.2f` for 100 labelled target images.
# Source validation accuracy barely changes across candidates — every candidate classifies the
# source well — which is why it cannot tell adapted models apart.
#
# ## Pixel-level adaptation, seen
#
# The generator of seed 0 (the setting entropy kept) restyles source digits like this:

# %%
pixel_pick = select({n: c for n, c in candidates[SEEDS[0]].items() if c["method"] == "PixelDA + DANN"}, CRITERION)
gen0 = generators[SEEDS[0], pixel_pick.split(" ")[-1]]
show_images(source.test.images[:16], ncols=16, title="Source images…", size=0.8)
plt.show()
show_images(translate(gen0, source.test.images[:16], seed=0), ncols=16, title="…restyled by G(x, z)", size=0.8)
plt.show()

# %% [markdown]
# ## What adaptation does to the features
#
# Below, the backbone features of 300 held-out source and 300 target digits, mapped to 2-D
# with t-SNE, for source-only + AdaBN and for the entropy-selected DANN of seed 0; left coloured by
# domain, right by class. Each domain goes through the network with its own batch-norm
# statistics — which is what an adapted model does at test time — so the fair reference for
# the proxy A-distance of an adapted model is source-only + AdaBN, not plain source-only.

# %%
from sklearn.manifold import TSNE

src_eval = source.test.images[:1000]
tgt_eval = target.train.images[rest[2000:3000]]   # unlabelled target images the criteria did not see


def feature_pair(seed, cand):
    """Backbone features of held-out source and target images, each with its own domain's BN statistics."""
    model = candidates[seed][cand]["model"]
    source_view = pretrained[seed] if candidates[seed][cand]["method"] in ("source-only", "ADDA") \
        else adapt_batchnorm(model, src_fit)
    if cand == "source-only":
        return outputs_of(model, src_eval)[0], outputs_of(model, tgt_eval)[0]
    return outputs_of(source_view, src_eval)[0], outputs_of(model, tgt_eval)[0]


seed0 = SEEDS[0]
pool0 = {n: c for n, c in candidates[seed0].items() if c["method"] != "oracle"}
feature_models = {"source-only": "source-only", "source-only + AdaBN": "source-only + AdaBN"}
for method in ["MMD", "CORAL", "DANN", "CDAN+E", "ADDA"]:
    feature_models[method] = select({n: c for n, c in pool0.items() if c["method"] == method}, CRITERION)
pairs = {name: feature_pair(seed0, cand) for name, cand in feature_models.items()}
adist = {name: proxy_a_distance(fs_, ft_) for name, (fs_, ft_) in pairs.items()}

n_plot = 300
domains = np.r_[np.zeros(n_plot, int), np.ones(n_plot, int)]
classes = torch.cat([source.test.labels[:n_plot], target.train.labels[rest[2000:2000 + n_plot]]]).numpy()
fig, axes = plt.subplots(2, 2, figsize=(10, 9))
for row, name in enumerate(["source-only + AdaBN", "DANN"]):
    fs_, ft_ = pairs[name]
    xy = TSNE(2, init="pca", perplexity=30, random_state=0).fit_transform(torch.cat([fs_[:n_plot], ft_[:n_plot]]).numpy())
    for d, (dname, marker) in enumerate([("source (MNIST)", "o"), ("target (MNIST-M)", "^")]):
        sel = domains == d
        axes[row, 0].scatter(*xy[sel].T, s=8, alpha=0.6, marker=marker, label=dname)
        axes[row, 1].scatter(*xy[sel].T, s=8, alpha=0.7, marker=marker, c=classes[sel], cmap="tab10", vmin=0, vmax=9)
    axes[row, 0].legend(markerscale=2)
    axes[row, 0].set_title(f"{name}: by domain (proxy A-distance {adist[name]:.2f})")
    axes[row, 1].set_title(f"{name}: by class (o source, ^ target; colours for the plot only)")
    for ax in axes[row]:
        ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2")
plt.tight_layout()
plt.show()
for name, value in adist.items():
    glue(f"ch06_adist_{re.sub(r'[^0-9a-z]+', '_', name.lower()).strip('_')}", value)
aligned_more = [m for m in ["MMD", "CORAL", "DANN", "CDAN+E", "ADDA"] if adist[m] < adist["source-only + AdaBN"]]
glue("ch06_adist_aligned", ", ".join(aligned_more) if aligned_more else "none of them")
assert adist["source-only + AdaBN"] < adist["source-only"], "per-domain statistics should make the domains closer"
pd.Series(adist, name="proxy A-distance (seed 0)").round(2).to_frame()

# %% [markdown]
# Plain source-only features tell the domains apart easily (proxy A-distance
# {glue:text}`ch06_adist_source_only:.2f`, the maximum being 2). Per-domain normalisation alone
# brings the distance down to {glue:text}`ch06_adist_source_only_adabn:.2f`, because it matches
# the mean and variance of every feature by construction: comparing an adapted model with plain
# source-only would credit the adaptation loss with AdaBN's work. Measured against
# source-only + AdaBN rather than plain source-only, the adapted methods whose features are
# harder to tell apart (seed 0) are: {glue:text}`ch06_adist_aligned` (DANN:
# {glue:text}`ch06_adist_dann:.2f`, CDAN+E: {glue:text}`ch06_adist_cdan_e:.2f`). A small
# distance measures *marginal* alignment only; the bound {eq}`eq-ch6-bound` also needs
# $\lambda^\ast$ small, i.e. the classes to line up, which is what CDAN's conditioning aims at.

# %% [markdown]
# ## A second real shift: MNIST ↔ UCI digits
#
# The UCI optical digits {footcite}`alpaydin1998optdigits` were written by other people, scanned
# by another device and stored at 8×8 pixels (upsampled here to 28×28): a real shift, like
# MNIST ↔ USPS in the literature, where ADDA reports 75.2% → 89.4% (MNIST → USPS) and
# 57.1% → 90.1% (USPS → MNIST) {footcite}`tzeng2017adversarial`. The MNIST → UCI source-only model
# is seed 0's pretrained network; for UCI → MNIST (1,437 labelled UCI digits as the source, the
# 4,000 MNIST training digits as unlabelled target) we train source-only and DANN with the same
# code, one seed: this section is descriptive, it asserts nothing.

# %%
uci = load_uci_digits(channels=3)
t0 = time.perf_counter()
seed_everything(0)
uci_model = LeNet(**NET)
train_adaptation(uci_model, uci.train, epochs=3, seed=0, device=DEVICE)
seed_everything(0)
uci_dann = LeNet(**NET)
train_dann(uci_dann, uci.train, source.train.images, epochs=3, seed=0, device=DEVICE,
           discriminator=DomainDiscriminator(NET["feature_dim"], hidden=(500, 500)))
mnist_stats = source.train.images[:1000]   # unlabelled MNIST images for AdaBN
uci_table = pd.DataFrame({
    "MNIST → UCI": {"source-only": accuracy_on(pretrained[0], uci.test),
                    "source-only + AdaBN": accuracy_on(adapt_batchnorm(pretrained[0], uci.train.images), uci.test)},
    "UCI → MNIST": {"source-only": accuracy_on(uci_model, source.test),
                    "source-only + AdaBN": accuracy_on(adapt_batchnorm(uci_model, mnist_stats), source.test),
                    "DANN": accuracy_on(adapt_batchnorm(uci_dann, mnist_stats), source.test)},
}).T
glue("ch06_uci_src", 100 * uci_table.loc["MNIST → UCI", "source-only"])
glue("ch06_uci_adabn", 100 * uci_table.loc["MNIST → UCI", "source-only + AdaBN"])
glue("ch06_uci_rev_src", 100 * uci_table.loc["UCI → MNIST", "source-only"])
glue("ch06_uci_rev_adabn", 100 * uci_table.loc["UCI → MNIST", "source-only + AdaBN"])
glue("ch06_uci_rev_dann", 100 * uci_table.loc["UCI → MNIST", "DANN"])
glue("ch06_uci_rev_dann_gain", 100 * (uci_table.loc["UCI → MNIST", "DANN"] - uci_table.loc["UCI → MNIST", "source-only + AdaBN"]))
print(f"({time.perf_counter() - t0:.0f} s)")
uci_table.style.format("{:.3f}", na_rep="–")

# %% [markdown]
# MNIST → UCI shows how much of a domain lives in the normalisation statistics: with the
# statistics of MNIST, the MNIST model reads {glue:text}`ch06_uci_src:.1f`% of the UCI digits
# (their upsampled 8×8 strokes are thick and blurred, so every layer's activations land far
# from what it was normalised for); recomputing them on unlabelled UCI images gives
# {glue:text}`ch06_uci_adabn:.1f`%, with no weight changed. In the other direction the source
# has only 1,437 coarse digits: source-only reaches {glue:text}`ch06_uci_rev_src:.1f`% on
# MNIST, target statistics {glue:text}`ch06_uci_rev_adabn:.1f`% and DANN
# {glue:text}`ch06_uci_rev_dann:.1f`% ({glue:text}`ch06_uci_rev_dann_gain:+.1f` points over
# target statistics alone, one seed). {ref}`ch6-ex3` runs DANN for MNIST → UCI.

# %%
runtime = time.perf_counter() - START
glue("ch06_runtime", runtime)
glue("ch06_n_candidates", sum(len(c) - 1 for c in candidates.values()))
cpu = sum(os.times()[:2])   # CPU seconds of this process: on a loaded machine, a better guide than the wall clock
print(f"chapter run time: {runtime:.0f} s (CPU time {cpu:.0f} s)")

# %% [markdown]
# ## Closing note: what this chapter measured
#
# This chapter ran in {glue:text}`ch06_runtime:.0f` seconds; {glue:text}`ch06_n_candidates`
# candidate models were trained and scored over 3 seeds, and the target test set was opened
# once per selected model. Target test accuracy (mean ± 95% CI over 3 seeds; choices by prediction entropy):
#
# | method | target accuracy (%) | vs source-only + AdaBN (points) |
# |---|---|---|
# | source-only | {glue:text}`ch06_source_only` | |
# | source-only + AdaBN | {glue:text}`ch06_source_only_adabn` | — |
# | MMD ($\beta$ by entropy) | {glue:text}`ch06_mmd` | {glue:text}`ch06_mmd_vs_source_only_adabn` |
# | CORAL ($\beta$ by entropy) | {glue:text}`ch06_coral` | {glue:text}`ch06_coral_vs_source_only_adabn` |
# | DANN (fixed budget, nothing selected) | {glue:text}`ch06_dann_fixed_budget` | {glue:text}`ch06_dann_fixed_budget_vs_source_only_adabn` |
# | DANN (checkpoint by entropy) | {glue:text}`ch06_dann` | {glue:text}`ch06_dann_vs_source_only_adabn` |
# | CDAN+E (class-aware) | {glue:text}`ch06_cdan_e` | {glue:text}`ch06_cdan_e_vs_source_only_adabn` |
# | ADDA | {glue:text}`ch06_adda` | {glue:text}`ch06_adda_vs_source_only_adabn` |
# | PixelDA + DANN feature loss | {glue:text}`ch06_pixelda_dann` | {glue:text}`ch06_pixelda_dann_vs_source_only_adabn` |
# | **selected by prediction entropy** | {glue:text}`ch06_selected_by_entropy` | {glue:text}`ch06_selected_by_entropy_vs_source_only_adabn` |
# | train-on-target (oracle) | {glue:text}`ch06_oracle` | {glue:text}`ch06_oracle_vs_source_only_adabn` |
#
# Selection regret against target-label selection (points, mean over seeds; the regret table
# gives the CIs): source validation accuracy {glue:text}`ch06_regret_source_val:.1f`, IWCV
# {glue:text}`ch06_regret_iwcv:.1f`, DEV {glue:text}`ch06_regret_dev:.1f`, SND
# {glue:text}`ch06_regret_snd:.1f`, prediction entropy {glue:text}`ch06_regret_entropy:.1f`,
# 10 labelled target images per class {glue:text}`ch06_regret_target_val:.1f`. Declared claims:
# entropy-selected method ≥ {glue:text}`ch06_claim_gain:.0f` points over source-only + AdaBN
# (CI lower bound {glue:text}`ch06_over_adabn_low:.1f`): {glue:text}`ch06_claim1_status`;
# regret of entropy selection ≤ {glue:text}`ch06_claim_regret:.0f` points (CI upper bound
# {glue:text}`ch06_regret_high:.1f`): {glue:text}`ch06_claim2_status`. The class-aware CDAN+E
# differs from DANN (both with their checkpoint chosen by entropy) by
# {glue:text}`ch06_cdan_vs_dann` points (paired, 95% CI).
#
# ## Summary
#
# * Unsupervised domain adaptation learns from labelled source data and *unlabelled* target
#   data. Theory {eq}`eq-ch6-bound` asks for features with low source error whose two domains
#   are hard to tell apart (small proxy A-distance), while still separating the classes.
# * Statistical methods add a fixed distance to the loss: MMD {eq}`eq-ch6-mmd` compares kernel
#   mean embeddings, CORAL {eq}`eq-ch6-coral` covariances. AdaBN — target batch-norm
#   statistics — is a free baseline, and the one every adapted model must be compared with.
# * Adversarial methods *learn* the distance with a discriminator, the GAN game of
#   {eq}`eq-ch6-gan`: DANN with a gradient reversal layer and one shared encoder, ADDA with an
#   untied target encoder, CDAN with a discriminator conditioned on the predicted class, and
#   pixel-level methods with an image generator that restyles labelled source images.
# * Choosing without target labels is part of the method. IWCV and DEV reweight source
#   validation losses by a density ratio from a domain classifier; SND and entropy look at
#   target predictions only. Each costs something against selection with labels — measure it,
#   and when a few target images can be labelled, a small labelled target set is the honest
#   practical answer.
# * On MNIST → MNIST-M-style digits the entropy-selected model closed {glue:text}`ch06_gap`% of the
#   source-only → oracle gap on a short CPU schedule (Ganin et al.: {glue:text}`ch06_ganin_gap:.1f`%
#   for DANN with a long schedule and target-tuned settings).
#
# ## Exercises
#
# ```{exercise}
# :label: ch6-ex1
# Show that the gradient reversal layer turns one backward pass into the two updates of
# {eq}`eq-ch6-dann`: which parameters descend $\mathcal{L}_{\text{dom}}$ and which ascend it?
# What happens if the layer is placed *after* the discriminator's first layer instead of before it?
# ```
#
# ```{solution} ch6-ex1
# :class: dropdown
# The discriminator's parameters lie after the reversal layer, so they receive the ordinary
# gradient of $\mathcal{L}_{\text{dom}}$ and descend it. Everything before the layer — the
# feature extractor — receives the gradient multiplied by $-\lambda$, so it moves to *increase*
# $\mathcal{L}_{\text{dom}}$, while the classification loss reaches it unchanged. Moving the
# layer one step into the discriminator makes that first discriminator layer part of the
# "feature extractor": it would now work *against* the domain classification, a weaker
# discriminator and a different game.
# ```
#
# ```{exercise}
# :label: ch6-ex2
# Compute the proxy A-distance of raw pixels (flatten the images) between MNIST and MNIST-M
# test images, and between MNIST train and test images. What do the two numbers say?
# ```
#
# ```{solution} ch6-ex2
# :class: dropdown
# `proxy_a_distance(source.test.images.flatten(1), target.test.images.flatten(1))` is close to
# 2: one linear classifier separates the domains from their pixels (colour alone gives them
# away). Between MNIST train and test images the value is close to 0 (it can be slightly
# negative): they are samples of the same distribution. A small distance is a property of the
# *representation*, which is why adaptation methods act on features or restyle the pixels.
# ```
#
# ```{exercise}
# :label: ch6-ex3
# Continue DANN from seed 0's pretrained network for `4 * ADAPT_EPOCHS` epochs twice: with Adam
# as above, and with the paper's optimiser (`train_dann(..., optimizer="sgd", lr=0.01,
# lr_schedule=True)`), keeping a checkpoint per epoch (the `checkpoints` callback) and scoring
# each with `score_candidate`. How do DEV, SND and the source validation accuracy evolve next to
# the audit accuracy? Would DEV have picked a good epoch? Then run DANN for MNIST → UCI
# (`train_dann(LeNet(**NET), source.train, uci.train.images, ...)`, evaluated with
# `adapt_batchnorm(model, uci.train.images)`) and compare it with the UCI table.
# ```
#
# ```{solution} ch6-ex3
# :class: dropdown
# Expected (not run in this chapter, whose budget holds the short schedule only). With Adam the
# audit accuracy should keep rising, with ups and downs, over the longer run; with the paper's
# annealed SGD, built for tens of thousands of steps, it tends to stall early. The source
# validation accuracy stays flat in both runs — every checkpoint classifies the source well —
# so it cannot tell the good run from the bad one; DEV and SND move with the target predictions
# and are the signals worth plotting, and the regret table above says how far to trust them on
# this shift. On MNIST → UCI the shift is milder and AdaBN already recovers much of it, so
# expect a smaller change from DANN than on MNIST-M.
# ```
#
# ```{exercise}
# :label: ch6-ex4
# The source text of this course says the GAN's discriminator separates *source* data from
# generated target data. Change `pixel_da_step` so that the discriminator sees source images as
# "real" and predict what the generator learns. Then run it.
# ```
#
# ```{solution} ch6-ex4
# :class: dropdown
# If source images are the "real" class, the generator is rewarded for producing images that
# look like the *source*: the identity map is optimal, and the classifier is trained on
# source-like images again. That is source-only training with extra steps, so expect the target
# accuracy to fall back to about the source-only level (the source-only + AdaBN level when
# evaluated with target statistics). The discriminator must compare generated images with real
# *target* images.
# ```
#
# ```{exercise}
# :label: ch6-ex5
# The unbiased MMD estimate can be negative. Draw two samples of 20 points from the same
# Gaussian 200 times and plot the histograms of `mmd2(x, y)` and `mmd2(x, y, unbiased=True)`.
# Why is one always positive and the other centred on zero?
# ```
#
# ```{solution} ch6-ex5
# :class: dropdown
# Write $\bar k_{xx}$ for the mean of $k(x_i, x_j)$ over pairs $i \ne j$ (and $\bar k_{yy}$
# likewise). Since $k(x, x) = 1$, the biased estimate is the unbiased one plus
# $\tfrac1m(1 - \bar k_{xx}) + \tfrac1n(1 - \bar k_{yy}) > 0$: a positive bias of order
# $1/m + 1/n$. The biased estimate is also the squared distance between the two empirical mean
# embeddings, hence never negative. The U-statistic drops the diagonal terms; its expectation
# is exactly $\mathrm{MMD}^2 = 0$ here, so individual draws fall on both sides of 0.
# ```
#
# ```{exercise}
# :label: ch6-ex6
# Take the pixel + feature method apart: train it without `feature_loss` (pixel level only),
# and run DANN on its generated images instead of on the source images (feature level on top
# of a fixed generator). Compare with the table. Which half brings most of the gain here, and
# why might the answer differ for a shift in geometry (e.g. MNIST → UCI)?
# ```
#
# ```{solution} ch6-ex6
# :class: dropdown
# Expected (not run here, for the time budget): `train_pixel_da(gen, disc, clf, src_train,
# target.train.images, epochs=ADAPT_EPOCHS, batch_size=32, lr_d=...)` without a feature loss
# should already beat DANN on MNIST → MNIST-M: the shift is one of colour and texture, which a
# recolouring generator can imitate directly, while feature alignment must discover the same
# invariance through a discriminator. The feature loss then removes part of what the small
# generator cannot imitate. For MNIST → UCI the domains differ in pen, resolution and stroke
# shape; a generator that can only recolour pixels has nothing to change, and the feature-level
# half has to do the work. Score both variants with the declared criterion before looking at the audit accuracy.
# ```
#
# ```{exercise}
# :label: ch6-ex7
# Start from a pretrained network instead of random weights: `load_pretrained(10, seed=0)` (the
# course's backbone, pretrained on printed characters, {ref}`ch03`). Fine-tune it on the source
# for one epoch with and without DANN and add both to the protocol (same seeds, same
# criterion). Does pretraining replace adaptation, or add to it?
# ```
#
# ```{solution} ch6-ex7
# :class: dropdown
# Expected (not run here: this network costs about twice as much per epoch as the LeNet). The
# backbone has learned that the colour of a stroke or a background does not change a character,
# so source-only should start well above the LeNet's source-only and AdaBN levels, and DANN
# should still add points on top: pretraining supplies features that are already fairly
# invariant to colour and texture, adaptation removes part of what is still missing.
# ```
#
# ## References
#
# ```{footbibliography}
# ```

# %% tags=["remove-input"]
from tlcourse.book import last_executed  # noqa: E402

last_executed()
