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
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# (ch02)=
# # Chapter 2 — The mathematics of transfer, every formula checked against code
#
# Transfer learning is built from a handful of formulas: a loss and its gradient, an update
# rule, an objective that starts from (or stays close to) pretrained weights, distances between
# the source and the target distributions, an adversarial game, weighted sums of losses, a
# contrastive loss and a distillation loss. This chapter states each one, says in words what it
# does, and then **checks it numerically**: every equation below is implemented once in the
# `tlcourse` package (the module of the chapter that uses it), and a code cell asserts that the
# implementation agrees with the formula, with an independent computation (autograd,
# `torch.optim`, a closed form, a library), or with a property the formula must have.
# If one of those asserts ever fails, this notebook fails.
#
# The later chapters and the package docstrings refer to these equations by their labels,
# e.g. "Eq. (eq-mmd) in chapter 2". The chapter is light: it runs in well under a minute on a
# laptop CPU.
#
# ## Notation
#
# | symbol | meaning |
# |---|---|
# | $x$, $y$ | an input and its label; $y \in \{1, \dots, K\}$ for $K$ classes |
# | $N$ | number of examples in a batch or a training set |
# | $f_\theta$, $\theta$ | a model and its parameters (weights) |
# | $z = f_\theta(x) \in \mathbb R^K$ | the logits (raw class scores) |
# | $p = \operatorname{softmax}(z)$ | predicted class probabilities |
# | $\ell(z, y)$, $\hat R(\theta)$ | loss of one example, empirical risk (mean loss over the data) |
# | $g = \nabla_\theta \hat R$, $\eta$ | gradient, learning rate |
# | $\mathcal D_S$, $\mathcal D_T$; $P_S$, $P_T$ | source and target data sets; their distributions |
# | $\theta_S$ | parameters pretrained on the source (the starting point of fine-tuning) |
# | $\phi(x) \in \mathbb R^d$ | features computed by a backbone (feature extractor) |
# | $k(\cdot,\cdot)$, $\mathcal H$ | a kernel and its feature space (RKHS) |
# | $C_S$, $C_T$ | feature covariance matrices of source and target |
# | $G$, $D$; $p_{\text{data}}$, $p_g$ | generator, discriminator; data and generator densities |
# | $\epsilon$, $\hat d_{\mathcal A}$ | held-out error of a domain classifier; proxy A-distance |
# | $\lambda$, $p$ | trade-off / gradient-reversal weight; training progress in $[0, 1]$ |
# | $w_t$, $L_t$, $\sigma_t$, $s_t = \log \sigma_t^2$ | weight, loss, noise scale, log-variance of task $t$ |
# | $u_i$, $v_j$, $T$ | unit image and text embeddings; a temperature |
# | $z_s$, $z_t$ | student and teacher logits (knowledge distillation) |
#
# Vectors are rows in code (a batch is an $N \times d$ matrix); $\|\cdot\|$ is the Euclidean
# norm, $\|\cdot\|_F$ the Frobenius norm, $\mathbb 1[\cdot]$ the indicator.

# %%
# Colab only: install the course package (does nothing elsewhere).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "tlcourse @ git+https://github.com/tlcourse/tlcourse@v0.1.0"], check=True)

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

from tlcourse.adapt.dann import DomainAdversarialLoss
from tlcourse.adapt.discrepancy import coral_loss, covariance, gaussian_kernel, mmd2
from tlcourse.adapt.distance import domain_classifier_error, proxy_a_distance
from tlcourse.adapt.gan import gan_value_at_optimum, gaussian_pdf, js_divergence, optimal_discriminator
from tlcourse.adapt.grl import dann_lambda, grad_reverse
from tlcourse.data import load_mnist, load_mnistm, load_uci_digits
from tlcourse.distill import distillation_loss
from tlcourse.finetune import L2SPLoss, discriminative_param_groups
from tlcourse.models import load_pretrained
from tlcourse.multimodal.contrastive import ContrastiveLoss, clip_loss
from tlcourse.multitask import EqualWeighting, UncertaintyWeighting
from tlcourse.optim import (
    adamw_step,
    cross_entropy,
    cross_entropy_grad,
    log_softmax,
    sgd_momentum_step,
    sgd_step,
    softmax,
)
from tlcourse.utils import glue, seed_everything

seed_everything(0)
# Every computation here is tiny: one thread (for PyTorch and for NumPy/scikit-learn's BLAS)
# avoids threading overheads that would cost more than they save.
torch.set_num_threads(1)
_ = threadpool_limits(1)

# %% [markdown]
# ## 1. Empirical risk and softmax cross-entropy
#
# Supervised learning wants parameters with a small expected loss on the data distribution,
# $R(\theta) = \mathbb E_{(x,y)\sim P}\,\ell(f_\theta(x), y)$. We only have a sample, so we
# minimise its average, the **empirical risk**
#
# $$
# \hat R(\theta) = \frac{1}{N} \sum_{i=1}^{N} \ell\big(f_\theta(x_i), y_i\big).
# $$ (eq-erm)
#
# Transfer learning is about the case where the target sample is small, so that minimising
# {eq}`eq-erm` on the target alone over-fits: the source supplies a better starting point, a
# better representation or a regulariser.
#
# For classification the model outputs logits $z \in \mathbb R^K$, turns them into
# probabilities with the softmax, and pays the negative log-probability of the true class:
#
# $$
# p_k = \operatorname{softmax}(z)_k = \frac{e^{z_k}}{\sum_{j=1}^{K} e^{z_j}}, \qquad
# \ell(z, y) = -\log p_y = -z_y + \log \sum_{j=1}^{K} e^{z_j}.
# $$ (eq-ce)
#
# Written with a one-hot target $t_k = \mathbb 1[k = y]$ this is $-\sum_k t_k \log p_k$, the
# cross-entropy between the target distribution and the prediction. Differentiating the second
# form (the derivative of $\log\sum_j e^{z_j}$ with respect to $z_k$ is $p_k$) gives the
# gradient that drives every classifier in this course:
#
# $$
# \frac{\partial \hat R}{\partial z_{ik}} = \frac{1}{N}\big(p_{ik} - \mathbb 1[k = y_i]\big).
# $$ (eq-ce-grad)
#
# In words: push up the true class and push down every class in proportion to the probability
# the model wrongly gives it. The gradient is bounded, its entries sum to zero for each example,
# and it vanishes only when the true class gets probability one. `tlcourse.optim` implements
# {eq}`eq-ce` (`softmax`, `cross_entropy`) and {eq}`eq-ce-grad` (`cross_entropy_grad`) by hand;
# we check them against PyTorch and autograd.

# %%
gen = torch.Generator().manual_seed(0)
logits = 3 * torch.randn(32, 10, generator=gen, dtype=torch.float64)
labels = torch.randint(10, (32,), generator=gen)

assert torch.allclose(softmax(logits), torch.softmax(logits, dim=1))
assert torch.allclose(cross_entropy(logits, labels), F.cross_entropy(logits, labels))
# Uniform logits: -log(1/K) = log K.
assert math.isclose(cross_entropy(torch.zeros(32, 10), labels).item(), math.log(10), rel_tol=1e-6)

z = logits.clone().requires_grad_(True)
F.cross_entropy(z, labels).backward()  # autograd's gradient of the mean loss
grad_err = (cross_entropy_grad(logits, labels) - z.grad).abs().max().item()
glue("ch02_ce_grad_err", grad_err, display=False)
print(f"max |hand-derived gradient - autograd| = {grad_err:.1e}")
assert grad_err < 1e-12
assert torch.allclose(cross_entropy_grad(logits, labels).sum(1), torch.zeros(32, dtype=torch.float64))

# %% [markdown]
# The hand-derived gradient matches autograd to {glue:text}`ch02_ce_grad_err:.1e`
# (float64 rounding). Computing {eq}`eq-ce` literally, with `exp` of the raw logits, breaks for
# large logits: $e^{1000}$ overflows to infinity and the ratio becomes `nan`. Softmax does not
# change when a constant is added to every logit, so implementations subtract the largest one
# first (the *log-sum-exp trick*):

# %%
big = torch.tensor([[1000.0, 0.0, -1000.0]])
naive = big.exp() / big.exp().sum(1, keepdim=True)
print("naive softmax:", naive, "\nstable softmax:", softmax(big))
assert torch.isnan(naive).any() and torch.isfinite(softmax(big)).all()
assert torch.allclose(log_softmax(big), torch.log_softmax(big, dim=1))

# %% [markdown]
# ## 2. Gradient descent, momentum and AdamW
#
# Training minimises {eq}`eq-erm` iteratively. **Gradient descent** steps against the gradient
# of the full empirical risk; **stochastic gradient descent** (SGD) uses the gradient $g_t$ of
# a random mini-batch $B_t$, an unbiased and much cheaper estimate of it:
#
# $$
# \theta_{t+1} = \theta_t - \eta\, g_t, \qquad g_t = \nabla_\theta \frac{1}{|B_t|}\sum_{i \in B_t} \ell\big(f_{\theta_t}(x_i), y_i\big).
# $$ (eq-sgd)
#
# **Momentum** accumulates a velocity, an exponentially weighted sum of past gradients, so that
# steps grow along directions where the gradients agree and noise cancels out. In PyTorch's
# convention ($v_0 = g_0$ on the first step):
#
# $$
# v_{t+1} = \mu\, v_t + g_t, \qquad \theta_{t+1} = \theta_t - \eta\, v_{t+1}, \qquad 0 \le \mu < 1.
# $$ (eq-momentum)
#
# Nesterov's variant steps along $g_t + \mu v_{t+1}$ instead, a look-ahead that damps
# oscillations {footcite}`sutskever2013importance`.
#
# **Adam** {footcite}`kingma2015adam` divides a momentum term by a running estimate of the
# gradient's scale, so each coordinate gets its own step size; the moments start at zero, so
# both are divided by $1-\beta^t$ (bias correction). **AdamW** {footcite}`loshchilov2019decoupled`
# shrinks the weights directly (decoupled weight decay) instead of adding $\lambda\theta$ to the
# gradient, where Adam would divide it by $\sqrt{\hat v}$ and weaken it for weights with large
# gradients:
#
# $$
# \begin{aligned}
# m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t, & \hat m_t &= m_t / (1-\beta_1^t),\\
# v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2, & \hat v_t &= v_t / (1-\beta_2^t),\\
# \theta_t &= \theta_{t-1} - \eta\lambda\,\theta_{t-1} - \eta\, \hat m_t / \big(\sqrt{\hat v_t} + \epsilon\big). & &
# \end{aligned}
# $$ (eq-adamw)
#
# (This is PyTorch's parametrisation, in which the decay is multiplied by the learning rate;
# the paper writes a separate schedule multiplier.) AdamW is the default optimiser for
# fine-tuning transformers and, in this course, for most fine-tuning.
#
# `tlcourse.optim` writes each rule as a function of plain tensors that returns the new
# parameter (and state). We train a linear softmax classifier $z = xW + b$ on the UCI digits
# (8×8 pixels, 64 features) with each rule, using the hand-derived gradient
# {eq}`eq-ce-grad` and the hand-written step, and side by side the same model with autograd and
# `torch.optim`. Both runs see the same mini-batches; we record the largest difference between
# their weights over all steps.

# %%
uci8 = load_uci_digits(size=8)
X_tr = uci8.train.images.flatten(1).double()  # float64: exact comparisons over many steps
y_tr = uci8.train.labels
STEPS, BATCH = 150, 64

OPTIMISERS = {  # name: (hand-written step, torch.optim optimiser, learning rate)
    "GD (full batch)": (lambda p, g, s: (sgd_step(p, g, lr=0.5), None), lambda ps: torch.optim.SGD(ps, lr=0.5)),
    "SGD": (lambda p, g, s: (sgd_step(p, g, lr=0.5), None), lambda ps: torch.optim.SGD(ps, lr=0.5)),
    "SGD + momentum": (lambda p, g, s: sgd_momentum_step(p, g, s, lr=0.1, momentum=0.9),
                       lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)),
    "SGD + Nesterov": (lambda p, g, s: sgd_momentum_step(p, g, s, lr=0.1, momentum=0.9, nesterov=True),
                       lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True)),
    "AdamW": (lambda p, g, s: adamw_step(p, g, s, lr=0.05, weight_decay=0.01),
              lambda ps: torch.optim.AdamW(ps, lr=0.05, weight_decay=0.01)),
}


def train_linear(name, X_tr=X_tr, steps=STEPS):
    hand_step, make_opt = OPTIMISERS[name]
    W, b = torch.zeros(64, 10, dtype=X_tr.dtype), torch.zeros(10, dtype=X_tr.dtype)
    W_ref, b_ref = W.clone().requires_grad_(True), b.clone().requires_grad_(True)
    opt = make_opt([W_ref, b_ref])
    states, risk, worst = [None, None], [], 0.0
    batches = torch.Generator().manual_seed(0)
    for _ in range(steps):
        full = name.startswith("GD")
        idx = torch.arange(len(X_tr)) if full else torch.randint(len(X_tr), (BATCH,), generator=batches)
        x, y = X_tr[idx], y_tr[idx]
        risk.append(cross_entropy(X_tr @ W + b, y_tr).item())  # empirical risk, Eq. (eq-erm)
        g_z = cross_entropy_grad(x @ W + b, y)  # Eq. (eq-ce-grad), then the chain rule:
        (W, states[0]), (b, states[1]) = hand_step(W, x.T @ g_z, states[0]), hand_step(b, g_z.sum(0), states[1])
        opt.zero_grad()
        F.cross_entropy(x @ W_ref + b_ref, y).backward()
        opt.step()
        worst = max(worst, (W - W_ref).abs().max().item(), (b - b_ref).abs().max().item())
    return risk, worst


runs = {name: train_linear(name) for name in OPTIMISERS}
step_err = max(worst for _, worst in runs.values())
print(pd.DataFrame({name: {"final empirical risk": r[-1], "max |hand - torch.optim|": w}
                    for name, (r, w) in runs.items()}).T.to_string(float_format="{:.3g}".format))
assert step_err < 1e-6, step_err
glue("ch02_step_err", step_err, display=False)
glue("ch02_steps", STEPS, display=False)
final = {name: r[-1] for name, (r, _) in runs.items()}
for name in ("SGD", "SGD + momentum", "AdamW"):
    glue(f"ch02_risk_{name.split()[-1].lower()}", final[name], display=False)
# What the prose below says of this run, checked:
assert final["SGD + momentum"] < final["SGD"] and final["AdamW"] == min(final.values()), final
# The same AdamW run in float32, a few steps: how far do the two orders of operations drift apart?
F32_STEPS = 20
_, drift32 = train_linear("AdamW", X_tr=X_tr.float(), steps=F32_STEPS)
glue("ch02_drift32", drift32, display=False)
glue("ch02_f32_steps", F32_STEPS, display=False)

fig, ax = plt.subplots(figsize=(6.5, 3.6))
for name, (risk, _) in runs.items():
    ax.plot(risk, label=name)
ax.set(xlabel="step", ylabel="training empirical risk (cross-entropy)", yscale="log",
       title="A linear classifier on the UCI digits, five update rules")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Over {glue:text}`ch02_steps` steps the hand-written rules and `torch.optim` never differ by
# more than {glue:text}`ch02_step_err:.1e`. We run in float64 on purpose: in float32 the two
# orders of floating-point operations drift apart, by {glue:text}`ch02_drift32:.1e` after
# {glue:text}`ch02_f32_steps` AdamW steps in this run, a rounding difference that
# `tests/test_optim.py` bounds over a few steps. Momentum ends at a lower risk than plain SGD in the
# same number of steps ({glue:text}`ch02_risk_momentum:.3f` against {glue:text}`ch02_risk_sgd:.3f`),
# and AdamW, whose per-coordinate step sizes suit the unevenly scaled pixel features, ends lowest of
# all five ({glue:text}`ch02_risk_adamw:.3f`); the cell above asserts both.
#
# ## 3. The fine-tuning objective, L2-SP and discriminative learning rates
#
# Parameter transfer solves two problems in sequence: pretraining on the source, then
# fine-tuning on the target **starting from the source solution**:
#
# $$
# \theta_S = \arg\min_\theta \hat R_S(\theta), \qquad
# \theta_T = \text{gradient descent on } \hat R_T(\theta) \text{ started at } \theta^{(0)} = \theta_S.
# $$ (eq-finetune)
#
# Nothing in $\hat R_T$ mentions the source: all the transfer is in the starting point (and in
# what we freeze, and in how few steps we take). A **linear probe** freezes the backbone and
# fits only a new head, $f(x) = W\phi_{\theta_S}(x) + b$, a convex problem on fixed features;
# **full fine-tuning** updates everything. Chapter 3 compares them.
#
# Because the target set is small, plain fine-tuning can wander far from $\theta_S$ and forget
# what made it useful. **L2-SP** {footcite}`li2018explicit` adds a penalty that pulls the
# transferred weights toward their *starting point* (SP) rather than toward zero, and ordinary
# weight decay on the new head:
#
# $$
# \min_\theta\; \hat R_T(\theta) + \frac{\alpha}{2}\,\big\|\theta_{\text{body}} - \theta_S\big\|^2 + \frac{\beta}{2}\,\big\|\theta_{\text{head}}\big\|^2 .
# $$ (eq-l2sp)
#
# Its gradient on the body is $\alpha(\theta - \theta_S)$, where weight decay's is
# $\alpha\theta$: L2-SP says "stay close to what you learned", weight decay says "stay small".
#
# **Discriminative learning rates** {footcite}`howard2018universal` encode the observation that low
# layers compute general features (edges, strokes) and high layers task-specific ones: the
# stage $d$ steps below the head learns with
#
# $$
# \eta_d = \eta\,\gamma^{d}, \qquad 0 < \gamma \le 1,
# $$ (eq-disc)
#
# so the head ($d = 0$) learns at $\eta$ and the stem of the network the slowest. With SGD the
# update of a parameter in stage $d$ is $-\eta_d g$. `tlcourse.finetune` implements
# {eq}`eq-l2sp` as `L2SPLoss` and {eq}`eq-disc` as `discriminative_param_groups`; we check both
# on the course's shipped pretrained network (chapter 3 uses them for real).

# %%
model = load_pretrained(num_classes=10, seed=0)
criterion = L2SPLoss(model, alpha=0.1, beta=0.01)
start = {n: p.detach().clone() for n, p in model.named_parameters()}

# At the starting point the body term of Eq. (eq-l2sp) is zero: only the head's decay remains.
head_sq = sum(p.pow(2).sum() for n, p in model.named_parameters() if n.startswith("head"))
assert torch.allclose(criterion.penalty(), 0.5 * 0.01 * head_sq)

# Move every weight a little (as fine-tuning would) and recompute the penalty by hand.
with torch.no_grad():
    for p in model.parameters():
        p.add_(0.01 * torch.randn(p.shape, generator=gen))
penalty = criterion.penalty()
by_hand = sum(0.5 * 0.1 * (p - start[n]).pow(2).sum() if not n.startswith("head") else 0.5 * 0.01 * p.pow(2).sum()
              for n, p in model.named_parameters())
assert torch.allclose(penalty, by_hand), (penalty, by_hand)

# Its gradient pulls toward theta_S (not toward 0): alpha (theta - theta_S) on the body.
model.zero_grad()
penalty.backward()
w = model.backbone.layer3.conv1.weight
assert torch.allclose(w.grad, 0.1 * (w.detach() - start["backbone.layer3.conv1.weight"]), atol=1e-7)
print(f"L2-SP penalty after the perturbation: {penalty.item():.4f} (by hand {by_hand.item():.4f})")

# %%
groups = discriminative_param_groups(model, lr=1e-2, decay=0.5)
table = [{"stage": g["name"], "depth d": d, "rate": g["lr"], "parameters": sum(p.numel() for p in g["params"])}
         for d, g in enumerate(groups)]
print(pd.DataFrame(table).to_string(index=False))
assert all(math.isclose(g["lr"], 1e-2 * 0.5**d) for d, g in enumerate(groups))
assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))  # each parameter once

# One SGD step with these groups moves a parameter of stage d by -eta_d * g, Eq. (eq-disc).
mnist_train = load_mnist(channels=3).train
images, digits = mnist_train.images[:32], mnist_train.labels[:32]
model.train()
model.zero_grad()
F.cross_entropy(model(images), digits).backward()
before = {id(p): (p.detach().clone(), p.grad.clone()) for p in model.parameters()}
torch.optim.SGD(groups).step()
for g in groups:
    for p in g["params"]:
        p0, grad = before[id(p)]
        assert torch.allclose(p.detach(), p0 - g["lr"] * grad, atol=1e-7)

# %% [markdown]
# ## 4. Measuring domain shift: MMD and CORAL
#
# Transfer works when the source and target distributions are close in the space where the
# model works, so we need numbers for "close". Two are used as *losses* by feature-alignment
# methods (chapter 6) and need no labels.
#
# **Maximum mean discrepancy** {footcite}`gretton2012kernel`. Map each point to a feature space
# $\mathcal H$ by $\psi$, average, and compare the averages (the *mean embeddings*
# $\mu_P = \mathbb E_{x\sim P}\,\psi(x)$). Expanding the squared norm leaves only inner products
# $k(x, y) = \langle\psi(x), \psi(y)\rangle$, so $\psi$ never has to be computed (the *kernel
# trick*):
#
# $$
# \operatorname{MMD}^2(P, Q) = \big\|\mu_P - \mu_Q\big\|_{\mathcal H}^2
# = \mathbb E_{x,x'\sim P}\, k(x, x') + \mathbb E_{y,y'\sim Q}\, k(y, y') - 2\,\mathbb E_{x\sim P,\, y\sim Q}\, k(x, y).
# $$ (eq-mmd-def)
#
# With the linear kernel $k(x,y) = x^\top y$ this is just the squared distance between the two
# means. With the Gaussian kernel
#
# $$
# k_\sigma(x, y) = \exp\!\big(-\|x - y\|^2 / (2\sigma^2)\big)
# $$ (eq-kernel)
#
# the feature space is infinite-dimensional and the mean embedding determines the distribution
# (the kernel is *characteristic*): $\operatorname{MMD} = 0$ exactly when $P = Q$. Replacing the
# expectations by sample averages over $x_{1..m} \sim P$ and $y_{1..n} \sim Q$ gives two
# estimators; the unbiased one leaves out the $i = j$ terms, whose $k(x_i, x_i) = 1$ inflates
# the biased one on small samples:
#
# $$
# \begin{aligned}
# \widehat{\operatorname{MMD}}{}^2_b &= \frac{1}{m^2}\sum_{i,j} k(x_i, x_j) + \frac{1}{n^2}\sum_{i,j} k(y_i, y_j) - \frac{2}{mn}\sum_{i,j} k(x_i, y_j),\\
# \widehat{\operatorname{MMD}}{}^2_u &= \frac{1}{m(m-1)}\sum_{i\ne j} k(x_i, x_j) + \frac{1}{n(n-1)}\sum_{i\ne j} k(y_i, y_j) - \frac{2}{mn}\sum_{i,j} k(x_i, y_j).
# \end{aligned}
# $$ (eq-mmd)
#
# DAN {footcite}`long2015learning` uses a sum of Gaussian kernels of several widths as the
# transfer loss. For two Gaussians $P = \mathcal N(0, I_d)$ and $Q = \mathcal N(\delta, I_d)$
# the expectations in {eq}`eq-mmd-def` have a closed form ({ref}`ch2-ex5`):
#
# $$
# \operatorname{MMD}^2 = 2\left(\frac{\sigma^2}{\sigma^2 + 2}\right)^{d/2}\left(1 - \exp\!\Big(-\frac{\|\delta\|^2}{2(\sigma^2 + 2)}\Big)\right),
# $$
#
# which lets us check `tlcourse.adapt.discrepancy.mmd2` against the truth, not just against
# itself.

# %%
def mmd2_gaussians(shift, sigma, d):
    """Population MMD^2 between N(0, I_d) and N(shift e_1, I_d) for the kernel of Eq. (eq-kernel)."""
    c = (sigma**2 / (sigma**2 + 2)) ** (d / 2)
    return 2 * c * (1 - math.exp(-shift**2 / (2 * (sigma**2 + 2))))


d, sigma, m = 2, 1.0, 400
x = torch.randn(m, d, generator=gen, dtype=torch.float64)
y0 = torch.randn(m, d, generator=gen, dtype=torch.float64)

# The biased estimator written out with the kernel matrices equals the package's.
K = lambda a, b: gaussian_kernel(a, b, bandwidths=sigma)  # noqa: E731
y1 = y0 + torch.tensor([1.0, 0.0], dtype=torch.float64)
by_hand = K(x, x).mean() + K(y1, y1).mean() - 2 * K(x, y1).mean()
assert torch.allclose(by_hand, mmd2(x, y1, bandwidths=[sigma]))
# The kernel trick with the linear kernel: the squared distance between the means.
lin = (x @ x.T).mean() + (y1 @ y1.T).mean() - 2 * (x @ y1.T).mean()
assert torch.allclose(lin, (x.mean(0) - y1.mean(0)).pow(2).sum())

shifts = np.linspace(0, 3, 13)
unbiased = [mmd2(x, y0 + torch.tensor([s, 0.0], dtype=torch.float64), [sigma], unbiased=True).item() for s in shifts]
biased = [mmd2(x, y0 + torch.tensor([s, 0.0], dtype=torch.float64), [sigma]).item() for s in shifts]
truth = [mmd2_gaussians(s, sigma, d) for s in shifts]

assert abs(unbiased[0]) < 0.01                      # two samples of one distribution: about 0
assert biased[0] > unbiased[0]                      # the diagonal terms bias it upward
assert all(b > a for a, b in zip(unbiased, unbiased[1:]))  # grows with the mean shift
assert max(abs(u - t) for u, t in zip(unbiased, truth)) < 0.02  # and matches the closed form
glue("ch02_mmd_same", unbiased[0], display=False)
glue("ch02_mmd_bias", biased[0], display=False)
glue("ch02_mmd_err", max(abs(u - t) for u, t in zip(unbiased, truth)), display=False)

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(shifts, truth, "k-", label="population value (closed form)")
ax.plot(shifts, unbiased, "o", label="unbiased estimate, Eq. (eq-mmd)")
ax.plot(shifts, biased, "x", label="biased estimate, Eq. (eq-mmd)")
ax.set(xlabel="mean shift $\\|\\delta\\|$", ylabel="MMD$^2$",
       title=f"MMD$^2$ between N(0, I) and N(δ, I), {m} samples each")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# On two samples of the *same* distribution the unbiased estimate is
# {glue:text}`ch02_mmd_same:.4f` while the biased one is {glue:text}`ch02_mmd_bias:.4f`; as the
# mean moves apart the estimate grows and follows the closed form to within
# {glue:text}`ch02_mmd_err:.3f`.
#
# **CORAL** {footcite}`sun2016deep` aligns only second-order statistics: the distance between the
# feature covariance matrices, scaled by the feature dimension $d$,
#
# $$
# \ell_{\text{CORAL}} = \frac{1}{4d^2}\,\big\|C_S - C_T\big\|_F^2, \qquad
# C = \frac{1}{n - 1}\,\big(X - \mathbf 1\bar x^\top\big)^\top \big(X - \mathbf 1\bar x^\top\big).
# $$ (eq-coral)
#
# Covariances ignore the means, so CORAL is blind to a pure shift, which MMD detects; it sees
# changes of scale and correlation. We check {eq}`eq-coral` against NumPy's covariance.

# %%
feats_s = torch.randn(200, 16, generator=gen, dtype=torch.float64)
scale = torch.diag(torch.linspace(0.5, 2.0, 16, dtype=torch.float64))  # the target's features are rescaled
feats_t = torch.randn(150, 16, generator=gen, dtype=torch.float64) @ scale
C_s, C_t = (torch.from_numpy(np.cov(f.numpy(), rowvar=False)) for f in (feats_s, feats_t))
assert torch.allclose(covariance(feats_s), C_s)
assert torch.allclose(coral_loss(feats_s, feats_t), (C_s - C_t).pow(2).sum() / (4 * 16**2))
assert coral_loss(feats_s, feats_s).item() == 0.0                 # identical batches
assert coral_loss(feats_s, feats_s + 5.0).item() < 1e-12          # blind to a mean shift ...
assert mmd2(feats_s, feats_s + 5.0, [4.0]).item() > 0.5           # ... which MMD sees
print(f"CORAL(scaled target) = {coral_loss(feats_s, feats_t).item():.4f}, "
      f"CORAL(shifted copy) = {coral_loss(feats_s, feats_s + 5.0).item():.1e}")

# %% [markdown]
# ## 5. GANs: the minimax game and the optimal discriminator
#
# A generative adversarial network {footcite}`goodfellow2014generative` trains a generator $G$
# (noise $z$ → sample) against a discriminator $D$ (sample → probability that it is real):
#
# $$
# \min_G \max_D\; V(D, G) = \mathbb E_{x\sim p_{\text{data}}}\big[\log D(x)\big] + \mathbb E_{z\sim p_z}\big[\log\big(1 - D(G(z))\big)\big].
# $$ (eq-gan)
#
# For a fixed generator with density $p_g$, $V = \int p_{\text{data}}\log D + p_g \log(1 - D)\,dx$,
# and maximising the integrand point by point ($a\log t + b\log(1-t)$ peaks at $t = a/(a+b)$)
# gives the **optimal discriminator**
#
# $$
# D^*(x) = \frac{p_{\text{data}}(x)}{p_{\text{data}}(x) + p_g(x)}.
# $$ (eq-dstar)
#
# Substituting it back shows what the generator minimises, a Jensen–Shannon divergence:
#
# $$
# V(D^*, G) = -\log 4 + 2\,\operatorname{JSD}\big(p_{\text{data}} \,\|\, p_g\big),
# $$ (eq-js)
#
# which is zero exactly when $p_g = p_{\text{data}}$; then $D^* \equiv \tfrac12$ and the
# discriminator can only guess. (One source document describes the GAN transfer recipe as a
# generator of *target* data judged against *source* data; in the formulation above the
# discriminator compares real data with generated data, and in adaptation the "real" side is
# whichever domain the generator must imitate.)
#
# We check these on one-dimensional Gaussians, where the densities are known: `tlcourse.adapt.gan`
# computes {eq}`eq-dstar` (`optimal_discriminator`), the value by quadrature
# (`gan_value_at_optimum`) and the JSD (`js_divergence`). As an independent check, a logistic
# regression trained on *samples* (with features $x$ and $x^2$, enough for the log-ratio of two
# Gaussians) must learn $D^*$.

# %%
from sklearn.linear_model import LogisticRegression  # noqa: E402

grid = np.linspace(-8, 12, 5001)
dx = grid[1] - grid[0]
data_mu, data_sd, gen_mu, gen_sd = 0.0, 1.0, 2.0, 1.5
p_data, p_g = gaussian_pdf(grid, data_mu, data_sd), gaussian_pdf(grid, gen_mu, gen_sd)
d_star = optimal_discriminator(p_data, p_g)

# Eq. (eq-dstar) is the sigmoid of the log density ratio.
def log_normal(v, mu, sd):
    return -0.5 * ((v - mu) / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)


log_ratio = log_normal(grid, data_mu, data_sd) - log_normal(grid, gen_mu, gen_sd)
assert np.allclose(d_star, 1 / (1 + np.exp(-log_ratio)))

# Eq. (eq-js): the value at the optimum is -log 4 + 2 JSD ...
v_star = gan_value_at_optimum(p_data, p_g, dx)
jsd = js_divergence(p_data, p_g, dx)
assert math.isclose(v_star, -math.log(4) + 2 * jsd, abs_tol=1e-6)
# ... and no other discriminator does better (random smooth perturbations of D*).
def value(D):
    return float(np.sum(p_data * np.log(D) + p_g * np.log(1 - D)) * dx)
for k in range(20):
    bump = 0.1 * np.sin((k + 1) * grid / 2 + k)
    assert value(np.clip(d_star + bump * d_star * (1 - d_star), 1e-9, 1 - 1e-9)) < v_star
# When the generator is perfect: D* = 1/2 everywhere and V = -log 4.
assert np.allclose(optimal_discriminator(p_data, p_data), 0.5)
assert math.isclose(gan_value_at_optimum(p_data, p_data, dx), -math.log(4), abs_tol=1e-6)

# A discriminator trained on samples approaches D*.
rng = np.random.default_rng(0)
real = rng.normal(data_mu, data_sd, 20000)
fake = rng.normal(gen_mu, gen_sd, 20000)
quad = lambda v: np.stack([v, v**2], axis=1)  # noqa: E731
clf = LogisticRegression(C=100.0).fit(quad(np.concatenate([real, fake])), np.r_[np.ones(20000), np.zeros(20000)])
d_learned = clf.predict_proba(quad(grid))[:, 1]
inside = (grid > -3) & (grid < 6)  # where the samples are
d_gap = np.abs(d_learned - d_star)[inside].max()
assert d_gap < 0.05, d_gap
glue("ch02_jsd", jsd, display=False)
glue("ch02_vstar", v_star, display=False)
glue("ch02_d_gap", d_gap, display=False)

fig, ax = plt.subplots(figsize=(6.5, 3.6))
ax.plot(grid, p_data, label="$p_{data} = N(0, 1)$")
ax.plot(grid, p_g, label="$p_g = N(2, 1.5^2)$")
ax.plot(grid, d_star, "k-", label="$D^*(x)$, Eq. (eq-dstar)")
ax.plot(grid[::80], d_learned[::80], "k.", label="logistic regression on samples")
ax.axhline(0.5, color="grey", lw=0.5)
ax.set(xlabel="x", ylabel="density / probability", title="The optimal discriminator on two 1-D Gaussians")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Here $\operatorname{JSD} =$ {glue:text}`ch02_jsd:.3f` nats, so $V(D^*, G) =$
# {glue:text}`ch02_vstar:.3f` $= -\log 4 + 2\operatorname{JSD}$, and the discriminator learned from
# samples stays within {glue:text}`ch02_d_gap:.3f` of $D^*$ where there is data. $D^*$ depends
# only on the density *ratio*: it peaks to the left of the data mean, away from the shifted
# generator, and it falls to 0 in *both* tails, because the wider generator puts more mass there
# than the data does.
#
# ## 6. Domain classifiers: the proxy A-distance and DANN
#
# The discriminator's view gives a third way to measure shift. Ben-David et al.
# {footcite}`bendavid2010theory` bound the target error of a classifier $h$ by its source error, a
# divergence between the domains that measures how well classifiers can tell them apart, and
# the error $\lambda^*$ of the best joint classifier:
# $\epsilon_T(h) \le \epsilon_S(h) + \tfrac12 d_{\mathcal H\Delta\mathcal H}(P_S, P_T) + \lambda^*$.
# The divergence is estimated by training a domain classifier (source vs target, equal sizes)
# and measuring its held-out error $\epsilon$:
#
# $$
# \hat d_{\mathcal A} = 2\,(1 - 2\epsilon).
# $$ (eq-adist)
#
# Chance ($\epsilon = \tfrac12$) gives 0, perfect separation ($\epsilon = 0$) gives 2. We
# measure it with `tlcourse.adapt.distance.proxy_a_distance` (a logistic regression) between
# MNIST and three targets: a disjoint sample of MNIST itself (no shift), the UCI digits
# (other writers; 32×32 bitmaps whose 4×4 blocks were counted into 8×8 images, then upsampled:
# blurry, thick strokes) and the MNIST-M-style
# digits (the MNIST digits blended with colour photographs). We measure it twice: on the
# pixels (averaged in 2×2 blocks to keep the classifier quick), and on the features of the course's pretrained backbone, whose source task used
# random colours and textured backgrounds.

# %%
mnist, uci, mnistm = load_mnist(channels=3).train, load_uci_digits(channels=3).train, load_mnistm().train
order = torch.randperm(len(mnist), generator=torch.Generator().manual_seed(0))
n = 600
domains = {"MNIST": mnist.images[order[:n]], "MNIST (other half)": mnist.images[order[n:2 * n]],
           "UCI digits": uci.images[:n], "MNIST-M-style": mnistm.images[order[n:2 * n]]}

fig, axes = plt.subplots(1, 4, figsize=(10, 1.7))
for ax, (name, imgs) in zip(axes, domains.items()):
    ax.imshow(torch.cat(list(imgs[:4]), dim=2).permute(1, 2, 0))
    ax.set_title(name, fontsize=9)
    ax.axis("off")
fig.suptitle("The source (left) and the three targets")
plt.tight_layout()
plt.show()

backbone = load_pretrained(seed=0).backbone.eval()
with torch.no_grad():
    spaces = {"pixels": {k: F.avg_pool2d(v, 2).flatten(1) for k, v in domains.items()},  # 3×14×14
              "pretrained features": {k: backbone(v) for k, v in domains.items()}}
rows = []
for space, feats in spaces.items():
    for target in ["MNIST (other half)", "UCI digits", "MNIST-M-style"]:
        vals = [proxy_a_distance(feats["MNIST"], feats[target], seed=s) for s in range(3)]
        rows.append({"space": space, "target": target, "mean": np.mean(vals), "std": np.std(vals)})
adist = pd.DataFrame(rows).set_index(["space", "target"])
print(adist.to_string(float_format="{:.3f}".format))
# Eq. (eq-adist) is 2(1 - 2 eps) of the domain classifier's error.
eps = domain_classifier_error(spaces["pixels"]["MNIST"], spaces["pixels"]["UCI digits"], seed=0)
assert math.isclose(proxy_a_distance(spaces["pixels"]["MNIST"], spaces["pixels"]["UCI digits"], seed=0),
                    2 * (1 - 2 * eps))

A = adist["mean"]
for space in spaces:
    # No shift: about 0. Real shifts: far above it, in both spaces.
    assert abs(A[space, "MNIST (other half)"]) < 0.3
    assert min(A[space, "UCI digits"], A[space, "MNIST-M-style"]) > A[space, "MNIST (other half)"] + 0.5
assert min(A["pixels", "UCI digits"], A["pixels", "MNIST-M-style"]) > 1.5
# The backbone, pretrained on random colours and textures, removes most of the colour shift
# but not the shape shift of the coarse UCI digits.
assert A["pretrained features", "MNIST-M-style"] < A["pixels", "MNIST-M-style"] - 0.5
assert A["pretrained features", "UCI digits"] > A["pretrained features", "MNIST-M-style"] + 0.3
for (space, target), v in A.items():
    key = {"MNIST (other half)": "same", "UCI digits": "uci", "MNIST-M-style": "mnistm"}[target]
    glue(f"ch02_adist_{'pix' if space == 'pixels' else 'feat'}_{key}", v, display=False)

# %% [markdown]
# Two samples of MNIST are indistinguishable ($\hat d_{\mathcal A} \approx$
# {glue:text}`ch02_adist_pix_same:.2f`), and both real shifts are obvious to a linear classifier
# on pixels ({glue:text}`ch02_adist_pix_uci:.2f` for the UCI digits,
# {glue:text}`ch02_adist_pix_mnistm:.2f` for MNIST-M, close to the maximum of 2). In the
# pretrained feature space the picture changes: the colour-and-texture shift of MNIST-M
# shrinks to {glue:text}`ch02_adist_feat_mnistm:.2f`, because the backbone learned to ignore
# backgrounds, while the UCI digits stay far away ({glue:text}`ch02_adist_feat_uci:.2f`).
# Shift is a property of a representation, not of the images alone, and a linear classifier on
# pixels saturates near 2, so it cannot rank two large shifts. The proxy A-distance is only a
# proxy: it depends on the classifier family and the sample size, and can dip below 0 by
# chance.
#
# **DANN** {footcite}`ganin2016domain` turns the bound into a training objective: learn features
# $\phi = F(x;\theta_f)$ that are good for the source labels (classifier $\theta_y$) and that a
# domain classifier $\theta_d$ *cannot* separate, the same game as {eq}`eq-gan` with the
# feature extractor as the generator:
#
# $$
# E(\theta_f, \theta_y, \theta_d) = \hat R_S(\theta_f, \theta_y) - \lambda\, L_d(\theta_f, \theta_d), \qquad
# (\hat\theta_f, \hat\theta_y) = \arg\min E, \quad \hat\theta_d = \arg\max E,
# $$ (eq-dann)
#
# where $L_d$ is the domain classifier's cross-entropy on source (label 1) and target (label 0)
# features. A **gradient reversal layer** $R_\lambda$ (identity forward, gradient multiplied by
# $-\lambda$ backward) placed between the features and the domain classifier lets one ordinary
# backward pass of $\hat R_S + L_d(D(R_\lambda(\phi)))$ do both: the domain classifier descends
# $L_d$ while the features receive $-\lambda\nabla L_d$, i.e. ascend it. Ganin et al. ramp
# $\lambda$ up with the training progress $p$ so that the noisy early domain classifier does
# not wreck the features:
#
# $$
# \lambda_p = \frac{2}{1 + \exp(-\gamma p)} - 1, \qquad \gamma = 10.
# $$ (eq-lambda)
#
# We check that one backward pass through `DomainAdversarialLoss` (which owns a gradient
# reversal layer) gives exactly the gradients of {eq}`eq-dann` computed term by term, and that
# `dann_lambda` is {eq}`eq-lambda`.

# %%
torch.manual_seed(0)
extractor, classifier, domain_clf = nn.Linear(20, 8), nn.Linear(8, 3), nn.Linear(8, 1)
xs, ys, xt = torch.randn(16, 20), torch.randint(3, (16,)), torch.randn(16, 20) + 1.0
lam = 0.7
dann_loss = DomainAdversarialLoss(domain_clf, lambda_=lam, schedule=False)

# One backward pass with gradient reversal ...
task_loss = F.cross_entropy(classifier(extractor(xs)), ys)
(task_loss + dann_loss(extractor(xs), extractor(xt))).backward()
grl_grads = [p.grad.clone() for p in (*extractor.parameters(), *domain_clf.parameters())]

# ... equals the gradients of Eq. (eq-dann) term by term: features get grad R_S - lam grad L_d,
# the domain classifier gets + grad L_d (it minimises L_d, i.e. maximises E).
def domain_loss():
    f = extractor(torch.cat([xs, xt]))
    return F.binary_cross_entropy_with_logits(domain_clf(f).squeeze(1), torch.cat([torch.ones(16), torch.zeros(16)]))

g_task = torch.autograd.grad(F.cross_entropy(classifier(extractor(xs)), ys), list(extractor.parameters()))
g_dom_f = torch.autograd.grad(domain_loss(), list(extractor.parameters()))
g_dom_d = torch.autograd.grad(domain_loss(), list(domain_clf.parameters()))
expected = [a - lam * b for a, b in zip(g_task, g_dom_f)] + list(g_dom_d)
assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grl_grads, expected))

# The layer itself: identity forward, -lambda times the gradient backward.
h = torch.randn(5, 3, requires_grad=True)
out = grad_reverse(h, 0.3)
assert torch.equal(out, h)
out.backward(torch.ones_like(out))
assert torch.allclose(h.grad, torch.full_like(h, -0.3))

# Eq. (eq-lambda)
progress = np.linspace(0, 1, 101)
lambdas = [dann_lambda(p) for p in progress]
assert all(math.isclose(dann_lambda(p), 2 / (1 + math.exp(-10 * p)) - 1) for p in progress)
assert lambdas[0] == 0.0 and math.isclose(lambdas[-1], math.tanh(5)) and np.all(np.diff(lambdas) > 0)

fig, ax = plt.subplots(figsize=(4.5, 2.8))
ax.plot(progress, lambdas)
ax.set(xlabel="training progress p", ylabel="$\\lambda_p$", title="DANN's adaptation weight, Eq. (eq-lambda)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7. Multi-task objectives and uncertainty weighting
#
# Multi-task learning shares an encoder $\theta_{\text{sh}}$ between tasks with their own heads
# $\theta_t$ and minimises a weighted sum of the task losses:
#
# $$
# L\big(\theta_{\text{sh}}, \theta_1, \dots, \theta_T\big) = \sum_{t=1}^{T} w_t\, L_t\big(\theta_{\text{sh}}, \theta_t\big).
# $$ (eq-mtl)
#
# The source documents' multimodal objectives are of this form too: *joint learning* adds
# to the two per-modality losses an alignment loss weighted by $\lambda$,
# $L = L_1 + L_2 + \lambda L_{\text{align}}$, which is {eq}`eq-mtl` with weights
# $(1, 1, \lambda)$; so is fine-tuning with an auxiliary source loss,
# $\hat R_T + \lambda \hat R_S$.
#
# Hand-tuning the $w_t$ is expensive, and the losses may have different units. Kendall et al.
# {footcite}`kendall2018multi` derive weights from a probabilistic model. If task $t$ predicts
# $f_t(x)$ and the target is Gaussian around it with a learned noise scale $\sigma_t$,
# $p(y_t \mid x) = \mathcal N(f_t(x), \sigma_t^2)$, the negative log-likelihood is
#
# $$
# -\log p(y_t \mid x) = \frac{1}{2\sigma_t^2}\,\big(y_t - f_t(x)\big)^2 + \log \sigma_t + \tfrac12\log 2\pi .
# $$
#
# Summing over tasks, writing $L_t$ for the squared error and $s_t = \log\sigma_t^2$ (which is
# unconstrained and numerically stable), and multiplying by 2 (the minimiser does not move):
#
# $$
# L_{\text{UW}} = \sum_{t=1}^{T} \Big( e^{-s_t}\, L_t + s_t \Big).
# $$ (eq-uw)
#
# This is {eq}`eq-mtl` with $w_t = e^{-s_t} = 1/\sigma_t^2$: a noisy task gets a small weight,
# and the $+s_t$ term stops the trivial solution $w_t \to 0$. Setting
# $\partial L_{\text{UW}}/\partial s_t = -e^{-s_t}L_t + 1 = 0$ gives $w_t^* = 1/L_t$. For
# classification, Kendall et al. reach the same form through a softmax with a temperature, up
# to an approximation. `tlcourse.multitask` implements {eq}`eq-mtl` (`EqualWeighting`, and the
# other weightings of chapter 5) and {eq}`eq-uw` (`UncertaintyWeighting`). We check the
# likelihood derivation with `torch.distributions` and the optimum by minimising over $s_t$.

# %%
losses = {"digit": torch.tensor(2.0), "parity": torch.tensor(0.25), "style": torch.tensor(0.8)}
assert torch.allclose(EqualWeighting(list(losses)).combine(losses), sum(losses.values()))

uw = UncertaintyWeighting(list(losses))
with torch.no_grad():
    uw.log_vars.copy_(torch.tensor([0.3, -1.0, 0.5]))
by_hand = sum(torch.exp(-s) * L + s for s, L in zip(uw.log_vars.detach(), losses.values()))
assert torch.allclose(uw.combine(losses), by_hand)

# The Gaussian likelihood: 2 * mean NLL = exp(-s) * MSE + s + log(2 pi).
pred = torch.randn(500, generator=gen, dtype=torch.float64)
target = pred + 1.5 * torch.randn(500, generator=gen, dtype=torch.float64)
s = torch.tensor(0.4, dtype=torch.float64)
nll = -torch.distributions.Normal(pred, torch.exp(s / 2)).log_prob(target).mean()
mse = (target - pred).pow(2).mean()
assert torch.allclose(2 * nll, torch.exp(-s) * mse + s + math.log(2 * math.pi))

# The optimal weights are 1 / L_t: minimise Eq. (eq-uw) over s with the losses held fixed.
uw = UncertaintyWeighting(list(losses))
opt = torch.optim.Adam(uw.parameters(), lr=0.05)
for _ in range(600):
    opt.zero_grad()
    uw.combine(losses).backward()
    opt.step()
learned = uw.weights
print({t: round(w, 4) for t, w in learned.items()}, "vs 1/L:", {t: round(1 / L.item(), 4) for t, L in losses.items()})
assert all(math.isclose(learned[t], 1 / losses[t].item(), rel_tol=1e-3) for t in losses)

# %% [markdown]
# ## 8. Contrastive learning: InfoNCE and CLIP's symmetric loss
#
# A CLIP-style model {footcite}`radford2021learning` embeds $N$ matching image–text pairs as unit
# vectors $u_i$ and $v_i$ and scores every image against every text,
# $S_{ij} = u_i^\top v_j / T$ with a temperature $T$. Each image must pick out its own text
# among the $N$ (a cross-entropy over the row), and each text its own image (over the column):
#
# $$
# \mathcal L = -\frac{1}{2N} \sum_{i=1}^{N} \left[ \log \frac{e^{S_{ii}}}{\sum_{j} e^{S_{ij}}} + \log \frac{e^{S_{ii}}}{\sum_{j} e^{S_{ji}}} \right].
# $$ (eq-infonce)
#
# Each half is the InfoNCE loss {footcite}`oord2018representation`, i.e. {eq}`eq-ce` with the
# matching index as the label; $\log N - \mathcal L$ lower-bounds the mutual information
# between the two views. If the model cannot tell pairs apart (all $S_{ij}$ equal) the loss is
# $\log N$; if $S = s I$ it is $\log(1 + (N-1)e^{-s})$, which tends to 0 as the matching
# pairs stand out. The temperature sets how sharply the model is punished for near-misses;
# CLIP learns it. `tlcourse.multimodal.contrastive` implements {eq}`eq-infonce` as `clip_loss`
# (given the similarity matrix) and `ContrastiveLoss` (given the embeddings, with a learnable
# temperature); we check both, and rebuild the loss from this chapter's `cross_entropy`.

# %%
N = 16
ids = torch.arange(N)
assert math.isclose(clip_loss(torch.zeros(N, N)).item(), math.log(N), rel_tol=1e-6)
scales = np.linspace(0, 20, 41)
infonce = [clip_loss(s * torch.eye(N, dtype=torch.float64)).item() for s in scales]
closed_form = [math.log(1 + (N - 1) * math.exp(-s)) for s in scales]
assert all(math.isclose(v, c, rel_tol=1e-6, abs_tol=1e-12) for v, c in zip(infonce, closed_form))
assert clip_loss(100 * torch.eye(N)).item() < 1e-6

# From the embeddings: the same loss as two cross-entropies (Eq. (eq-ce)) over rows and columns.
u = F.normalize(torch.randn(N, 32, generator=gen), dim=1)
v = F.normalize(u + 0.5 * torch.randn(N, 32, generator=gen), dim=1)
contrastive = ContrastiveLoss(init_temperature=0.07)
S = (u @ v.T) / 0.07
by_hand = 0.5 * (cross_entropy(S, ids) + cross_entropy(S.T, ids))
assert torch.allclose(contrastive(u, v), by_hand, atol=1e-5)
print(f"InfoNCE of noisy pairs at T = 0.07: {by_hand.item():.3f} (log N = {math.log(N):.3f})")

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(scales, infonce)
ax.axhline(math.log(N), color="grey", ls="--", label="log N (uniform logits)")
ax.set(xlabel="margin s of the matching pairs (S = s·I)", ylabel="symmetric InfoNCE",
       title=f"Eq. (eq-infonce) for N = {N} pairs")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 9. Knowledge distillation and the $T^2$ factor
#
# A small student learns from a large teacher's *soft* predictions
# {footcite}`hinton2015distilling`. Both logit vectors are softened with a temperature $T > 1$,
# $p^T(z) = \operatorname{softmax}(z / T)$, so that the small probabilities the teacher gives
# to wrong classes (which digits a "7" resembles) carry signal, and the student matches them
# while still fitting the labels:
#
# $$
# \mathcal L_{\text{KD}} = \alpha\, T^2\, \operatorname{KL}\big(p^T(z_t) \,\|\, p^T(z_s)\big) + (1 - \alpha)\, \ell(z_s, y).
# $$ (eq-kd)
#
# **Why $T^2$.** The gradient of the KL term with respect to a student logit is
# $\frac{1}{T}\big(p^T_k(z_s) - p^T_k(z_t)\big)$ (the softmax-cross-entropy gradient
# {eq}`eq-ce-grad` with soft targets, times $1/T$ from the chain rule). For large $T$,
# $p^T_k(z) \approx \frac{1}{K}\big(1 + (z_k - \bar z)/T\big)$, so the gradient is about
# $\frac{1}{KT^2}\big((z_{s,k} - \bar z_s) - (z_{t,k} - \bar z_t)\big)$: it shrinks like
# $1/T^2$. Multiplying by $T^2$ keeps the soft term's gradients on the same scale at every
# temperature, so changing $T$ does not silently change the balance $\alpha$ sets against the
# hard-label term. `tlcourse.distill.distillation_loss` implements {eq}`eq-kd`; we rebuild it
# from this chapter's `log_softmax` and `cross_entropy`, check the gradient formula with
# autograd, and measure how the gradient scales with $T$.

# %%
z_s = 2 * torch.randn(64, 10, generator=gen, dtype=torch.float64)
z_t = 2 * torch.randn(64, 10, generator=gen, dtype=torch.float64)
y = torch.randint(10, (64,), generator=gen)
T, alpha = 4.0, 0.7
log_ps, log_pt = log_softmax(z_s / T), log_softmax(z_t / T)
kl = (log_pt.exp() * (log_pt - log_ps)).sum(1).mean()
by_hand = alpha * T**2 * kl + (1 - alpha) * cross_entropy(z_s, y)
assert torch.allclose(distillation_loss(z_s, z_t, y, temperature=T, alpha=alpha), by_hand)
assert distillation_loss(z_t, z_t, None, temperature=T, alpha=1.0).abs().item() < 1e-12  # student = teacher

# Gradient of the KL term: (p^T(z_s) - p^T(z_t)) / (T N).
temps = [1, 2, 4, 8, 16, 32, 64]
with_t2, without_t2 = [], []
for T in temps:
    zs = z_s.clone().requires_grad_(True)
    soft = distillation_loss(zs, z_t, None, temperature=float(T), alpha=1.0)  # includes T^2
    (grad,) = torch.autograd.grad(soft, zs)
    assert torch.allclose(grad / T**2, (softmax(z_s / T) - softmax(z_t / T)) / (T * len(z_s)))
    with_t2.append(grad.norm().item())
    without_t2.append(grad.norm().item() / T**2)

centred = lambda z: z - z.mean(1, keepdim=True)  # noqa: E731
limit = ((centred(z_s) - centred(z_t)) / (10 * len(z_s))).norm().item()  # large-T gradient with T^2
assert abs(with_t2[-1] / limit - 1) < 0.01                      # with T^2: a constant scale ...
assert abs(without_t2[-2] / without_t2[-1] / 4 - 1) < 0.01      # ... without: 1/T^2 (x4 per doubling)
glue("ch02_kd_ratio", without_t2[temps.index(4)] / without_t2[temps.index(64)], display=False)

fig, ax = plt.subplots(figsize=(5.5, 3.3))
ax.loglog(temps, with_t2, "o-", label="with $T^2$ (Eq. (eq-kd))")
ax.loglog(temps, without_t2, "s-", label="without $T^2$")
ax.axhline(limit, color="grey", ls="--", label="large-T limit")
ax.set(xlabel="temperature T", ylabel="‖gradient of the soft term‖",
       title="Why distillation multiplies by $T^2$")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Without the factor, the soft term's gradient is {glue:text}`ch02_kd_ratio:.0f` times smaller at
# $T = 64$ than at $T = 4$; with it, the gradient settles at a constant scale.
#
# ## Summary
#
# Every formula of this chapter and the `tlcourse` function that implements it (each was checked
# above by an assertion):
#
# | equation | formula | implemented by |
# |---|---|---|
# | {eq}`eq-erm` | empirical risk | `tlcourse.optim.cross_entropy` (mean over the batch) |
# | {eq}`eq-ce` | softmax, cross-entropy | `tlcourse.optim.softmax`, `log_softmax`, `cross_entropy` |
# | {eq}`eq-ce-grad` | $(p - \text{onehot})/N$ | `tlcourse.optim.cross_entropy_grad` |
# | {eq}`eq-sgd` | (stochastic) gradient descent | `tlcourse.optim.sgd_step` |
# | {eq}`eq-momentum` | momentum, Nesterov | `tlcourse.optim.sgd_momentum_step` |
# | {eq}`eq-adamw` | AdamW | `tlcourse.optim.adamw_step` |
# | {eq}`eq-finetune` | pretrain, then fine-tune from $\theta_S$ | `tlcourse.models.load_pretrained` + `tlcourse.train.fit` |
# | {eq}`eq-l2sp` | L2-SP | `tlcourse.finetune.L2SPLoss` |
# | {eq}`eq-disc` | discriminative rates $\eta\gamma^d$ | `tlcourse.finetune.discriminative_param_groups` |
# | {eq}`eq-mmd-def`, {eq}`eq-kernel`, {eq}`eq-mmd` | MMD, Gaussian kernel, estimators | `tlcourse.adapt.discrepancy.gaussian_kernel`, `mmd2`, `MMDLoss` |
# | {eq}`eq-coral` | CORAL | `tlcourse.adapt.discrepancy.covariance`, `coral_loss`, `CORALLoss` |
# | {eq}`eq-gan` | GAN minimax value | `tlcourse.adapt.gan.gan_losses`, `train_gan_1d` |
# | {eq}`eq-dstar` | optimal discriminator | `tlcourse.adapt.gan.optimal_discriminator` |
# | {eq}`eq-js` | $V(D^*, G) = -\log 4 + 2\,\mathrm{JSD}$ | `tlcourse.adapt.gan.gan_value_at_optimum`, `js_divergence` |
# | {eq}`eq-adist` | proxy A-distance | `tlcourse.adapt.distance.proxy_a_distance`, `domain_classifier_error` |
# | {eq}`eq-dann` | DANN objective, gradient reversal | `tlcourse.adapt.grl.grad_reverse`, `GradientReversal`, `tlcourse.adapt.dann.DomainAdversarialLoss` |
# | {eq}`eq-lambda` | $\lambda_p$ schedule | `tlcourse.adapt.grl.dann_lambda` |
# | {eq}`eq-mtl` | weighted multi-task loss | `tlcourse.multitask.EqualWeighting` (and the weightings of chapter 5) |
# | {eq}`eq-uw` | uncertainty weighting | `tlcourse.multitask.UncertaintyWeighting` |
# | {eq}`eq-infonce` | symmetric InfoNCE | `tlcourse.multimodal.contrastive.clip_loss`, `ContrastiveLoss` |
# | {eq}`eq-kd` | distillation loss | `tlcourse.distill.distillation_loss`, `DistillationLoss` |
#
# - Training minimises an empirical risk; for classification its gradient with respect to the
#   logits is simply "predicted minus true probabilities".
# - Fine-tuning is the same minimisation started from pretrained weights; L2-SP and
#   discriminative rates are two ways of saying "do not move too far from them".
# - Domain shift can be measured without labels: MMD compares mean embeddings, CORAL compares
#   covariances, the proxy A-distance asks a classifier; the numbers depend on the
#   representation.
# - The GAN discriminator's optimum is a density ratio; DANN reuses the game to make features
#   domain-invariant, with a gradient reversal layer and a ramped weight.
# - Multi-task, multimodal and distillation objectives are weighted sums of losses; uncertainty
#   weighting learns the weights from a likelihood, and distillation's $T^2$ keeps its weights
#   meaningful across temperatures.
#
# ## Exercises
#
# ```{exercise}
# :label: ch2-ex1
# Derive Eq. {eq}`eq-ce-grad`: show that $\partial \ell / \partial z_k = p_k - \mathbb 1[k=y]$
# for $\ell(z, y) = -\log\operatorname{softmax}(z)_y$, and explain why the rows of the gradient
# sum to zero.
# ```
#
# ```{solution} ch2-ex1
# :class: dropdown
# Write $\ell = -z_y + \log\sum_j e^{z_j}$. The derivative of the first term with respect to
# $z_k$ is $-\mathbb 1[k = y]$; that of the second is $e^{z_k}/\sum_j e^{z_j} = p_k$. Hence
# $\partial\ell/\partial z_k = p_k - \mathbb 1[k=y]$, and averaging over $N$ examples divides
# by $N$. Summing over $k$ gives $\sum_k p_k - 1 = 0$: adding the same constant to every logit
# does not change the softmax, so the loss cannot change along that direction.
# ```
#
# ```{exercise}
# :label: ch2-ex2
# Derive the optimal discriminator {eq}`eq-dstar` and the value {eq}`eq-js`. Where does the
# derivation need $p_{\text{data}} + p_g > 0$?
# ```
#
# ```{solution} ch2-ex2
# :class: dropdown
# For fixed $G$, $V(D) = \int \big[p_{\text{data}}(x)\log D(x) + p_g(x)\log(1 - D(x))\big]dx$
# (the second expectation rewritten over $x = G(z)$). The integrand $a\log t + b\log(1-t)$ with
# $a, b \ge 0$, $a + b > 0$ is concave in $t\in(0,1)$ and its derivative $a/t - b/(1-t)$
# vanishes at $t = a/(a+b)$, which gives $D^*$ pointwise; where $a + b = 0$ the value of $D$
# does not matter. Substituting, with $m = (p_{\text{data}} + p_g)/2$:
# $V(D^*) = \int p_{\text{data}}\log\frac{p_{\text{data}}}{2m} + p_g\log\frac{p_g}{2m}
# = -\log 4 + \mathrm{KL}(p_{\text{data}}\|m) + \mathrm{KL}(p_g\|m) = -\log 4 + 2\,\mathrm{JSD}$.
# ```
#
# ```{exercise}
# :label: ch2-ex3
# Show that the gradient of $\mathrm{KL}(p^T(z_t)\,\|\,p^T(z_s))$ with respect to $z_s$ is
# $(p^T(z_s) - p^T(z_t))/T$ and that, for large $T$ and zero-mean logits, it is approximately
# $(z_s - z_t)/(KT^2)$. What happens to the balance between the two terms of {eq}`eq-kd` if
# the $T^2$ is dropped and $T$ is raised from 2 to 8?
# ```
#
# ```{solution} ch2-ex3
# :class: dropdown
# $\mathrm{KL} = \sum_k p^T_k(z_t)\log p^T_k(z_t) - \sum_k p^T_k(z_t)\log p^T_k(z_s)$; the first
# sum does not depend on $z_s$ and the second is a cross-entropy with soft targets evaluated at
# the logits $z_s/T$. By {ref}`ch2-ex1` (which holds for any target distribution) its
# gradient with respect to $z_s/T$ is $p^T(z_s) - p^T(z_t)$, and the chain rule adds $1/T$.
# For large $T$, $e^{z_k/T} \approx 1 + z_k/T$, so with $\sum_k z_k = 0$,
# $p^T_k(z) \approx (1 + z_k/T)/K$ and the gradient is $\approx (z_{s} - z_{t})/(KT^2)$.
# Without the factor, going from $T = 2$ to $T = 8$ shrinks the soft gradients about 16-fold,
# so the hard-label term dominates even with $\alpha$ unchanged; with $T^2$ the balance set by
# $\alpha$ is kept. (The plot above measures exactly this.)
# ```
#
# ```{exercise}
# :label: ch2-ex4
# Derive {eq}`eq-uw` from a Gaussian likelihood for two regression tasks, and find the
# minimiser in $s_t$. Why would learning the weights $w_t$ directly on $\sum_t w_t L_t$ fail?
# ```
#
# ```{solution} ch2-ex4
# :class: dropdown
# With independent outputs $y_t \sim \mathcal N(f_t(x), \sigma_t^2)$,
# $-\log p(y_1, y_2\mid x) = \sum_t \big[\frac{(y_t - f_t)^2}{2\sigma_t^2} + \log\sigma_t\big] + \text{const}$.
# Writing $L_t$ for the squared error, $s_t = \log\sigma_t^2$ (so $\log\sigma_t = s_t/2$) and
# multiplying by 2 gives $\sum_t e^{-s_t}L_t + s_t$ up to a constant. Its derivative in $s_t$ is
# $1 - e^{-s_t}L_t$, zero at $s_t = \log L_t$, i.e. $w_t = 1/L_t$ (a minimum, since the second
# derivative $e^{-s_t}L_t$ is positive). Minimising $\sum_t w_t L_t$ over $w_t \ge 0$ directly
# is solved by $w_t = 0$: nothing is learned. The $s_t$ term (the normalising constant of the
# likelihood) is what prevents that collapse.
# ```
#
# ```{exercise}
# :label: ch2-ex5
# Prove the closed form of $\operatorname{MMD}^2$ between $\mathcal N(0, I_d)$ and
# $\mathcal N(\delta, I_d)$ used in section 4. Hint: if $u \sim \mathcal N(\mu, 2I_d)$, then
# $\mathbb E\, e^{-\|u\|^2/(2\sigma^2)} = \big(\frac{\sigma^2}{\sigma^2+2}\big)^{d/2} e^{-\|\mu\|^2/(2(\sigma^2+2))}$.
# ```
#
# ```{solution} ch2-ex5
# :class: dropdown
# Every term of {eq}`eq-mmd-def` is $\mathbb E\,k_\sigma(a, b) = \mathbb E\, e^{-\|a - b\|^2/(2\sigma^2)}$
# with $a - b \sim \mathcal N(\mu, 2I_d)$: $\mu = 0$ for the two within-distribution terms and
# $\mu = -\delta$ for the cross term. By the hint (a Gaussian integral done coordinate by
# coordinate), the within terms are $c = (\sigma^2/(\sigma^2+2))^{d/2}$ each and the cross term
# is $c\,e^{-\|\delta\|^2/(2(\sigma^2+2))}$, so
# $\operatorname{MMD}^2 = 2c\big(1 - e^{-\|\delta\|^2/(2(\sigma^2+2))}\big)$. It grows with
# $\|\delta\|$ but saturates at $2c$: a too-small bandwidth makes all large shifts look alike.
# ```
#
# ```{exercise}
# :label: ch2-ex6
# Use `tlcourse.optim.adamw_step` and `torch.optim.Adam(..., weight_decay=λ)` on the same
# gradients and show that they differ. Which weights are decayed less by Adam with L2
# regularisation than by AdamW?
# ```
#
# ```{solution} ch2-ex6
# :class: dropdown
# Adam with L2 adds $\lambda\theta$ to the gradient *before* the division by
# $\sqrt{\hat v} + \epsilon$, so the decay of a weight with a large gradient history is divided
# by a large number: exactly the weights that move most are regularised least. AdamW applies
# $-\eta\lambda\theta$ outside the adaptive step, the same relative shrinkage for every weight.
# `tests/test_optim.py::test_adamw_differs_from_adam_with_l2` runs this comparison.
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
