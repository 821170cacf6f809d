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
# (ch08)=
# # Chapter 8 — Distillation and transfer learning in practice
#
# A fine-tuned model that works is not yet a model you can ship or trust. It may be too large
# for the device it must run on; its accuracy may be a lucky seed or a number tuned on the test
# set; its confidence may not mean what it says; it may have over-fitted a small target set; and
# nobody may know what it looks at. This chapter takes the transfer recipe of
# {doc}`03_finetune_vision` to that last mile: **knowledge distillation** compresses a
# fine-tuned teacher into a student ten times smaller, then we evaluate both the way a
# practitioner should (per-class metrics, confidence intervals, calibration), control
# over-fitting on a small target set, look inside the models, and end with a guide to choosing
# a method from this course.

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
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import display
from torch.optim.lr_scheduler import OneCycleLR
from torch.utils.data import TensorDataset
from torchvision.transforms import v2

from tlcourse.calibration import (
    TemperatureScaler,
    bootstrap_ci,
    negative_log_likelihood,
    plot_reliability_diagram,
    reliability_diagram,
)
from tlcourse.data import few_shot, load_mnistm, stratified_split
from tlcourse.distill import distill, distillation_loss, teacher_logits
from tlcourse.finetune import count_parameters, extract_features
from tlcourse.metrics import confusion_matrix, format_mean_std, mean_std, per_class_report
from tlcourse.models import SmallResNet, load_pretrained
from tlcourse.plots import plot_confusion_matrix, show_images
from tlcourse.train import evaluate, fit, predict
from tlcourse.utils import Timer, glue, seed_everything

seed_everything(0)
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# %% [markdown]
# ## Data, and the rule that protects the test set
#
# The target is chapter 3's: MNIST digits blended into photo textures (MNIST-M style
# {footcite}`ganin2016domain`). We keep **1,000 labelled training images** (100 per class), a
# **validation split** of 800 images for every decision (hyper-parameters, temperature, early
# stopping), and a **test split** of 1,000 images that is opened exactly once, in the section
# "Evaluation you can trust". Choosing anything by its test score, even the best of a few seeds,
# turns the test score into a training score and makes it optimistic.

# %%
data = load_mnistm(seed=0)
pool_idx, val_idx = stratified_split(data.train.labels.numpy(), 0.2, seed=0)
pool, val = data.train.subset(pool_idx), data.train.subset(val_idx)
labelled = few_shot(pool, 100, seed=0)
test = data.test
classes = data.train.classes
pd.DataFrame({"split": ["train (labelled)", "validation", "test"],
              "images": [len(labelled), len(val), len(test)],
              "used for": ["fitting weights", "every choice: T, α, temperature scaling, early stopping",
                           "the final report, once"]}).style.hide(axis="index")

# %%
show_images(labelled.images[:16], labelled.labels[:16], ncols=16, title="Training images (label above)", size=0.7)
plt.show()

# %% [markdown]
# ## Knowledge distillation
#
# A classifier's output carries more than its top class. A teacher that gives a "7" 90 % and a
# "1" 9 % says something about what sevens look like that the label "7" does not: Hinton et al.
# call it *dark knowledge* {footcite}`hinton2015distilling`. Distillation trains a small **student**
# on the teacher's probabilities, softened by a **temperature** $T$,
# $p_k^{T}(z) = \exp(z_k/T) / \sum_j \exp(z_j/T)$, together with the usual labels
# (the idea goes back to *model compression*, {footcite}`bucila2006model`):
#
# $$
# \mathcal{L}_{\text{KD}} = \alpha\, T^2\, \mathrm{KL}\!\left(p^{T}(z_t)\,\middle\|\,p^{T}(z_s)\right)
#   + (1-\alpha)\, \mathrm{CE}(z_s, y)
# $$ (eq-ch8-kd)
#
# with teacher logits $z_t$, student logits $z_s$ and $\alpha\in[0,1]$. Why $T^2$? The gradient
# of the KL term with respect to a student logit is $\frac{1}{T}\,(p^{T}_k(z_s) - p^{T}_k(z_t))$;
# at high temperature the soft probabilities are nearly uniform,
# $p_k^{T}(z) \approx (1 + z_k/T)/K$ for zero-mean logits, so that gradient shrinks like
# $1/T^2$. Multiplying by $T^2$ keeps the soft term's pull the same size at every temperature,
# so $\alpha$ alone sets the balance with the hard labels. Below, the softened teacher outputs
# for one image (after we train the teacher), and the gradient sizes with and without $T^2$.
#
# First, Eq. {eq}`eq-ch8-kd` written out by hand, checked against the package's
# `tlcourse.distill.distillation_loss`:

# %%
def kd_loss_by_hand(student_logits, teacher_logits, labels, T, alpha):
    p_teacher = F.softmax(teacher_logits / T, dim=1)
    log_p_student = F.log_softmax(student_logits / T, dim=1)
    kl = (p_teacher * (p_teacher.log() - log_p_student)).sum(dim=1).mean()
    return alpha * T**2 * kl + (1 - alpha) * F.cross_entropy(student_logits, labels)


g = torch.Generator().manual_seed(0)
zs, zt = torch.randn(32, 10, generator=g), 3 * torch.randn(32, 10, generator=g)
y = torch.randint(0, 10, (32,), generator=g)
for T, alpha in [(1.0, 0.5), (4.0, 0.9), (8.0, 1.0)]:
    by_hand = kd_loss_by_hand(zs, zt, y, T, alpha)
    torch.testing.assert_close(by_hand, distillation_loss(zs, zt, y, temperature=T, alpha=alpha))

rows = []
for T in [1, 2, 4, 8, 16]:
    z = zs.clone().requires_grad_(True)
    distillation_loss(z, zt, None, temperature=T, alpha=1.0).backward()
    rows.append({"T": T, "gradient norm with T²": z.grad.norm().item(), "without T²": z.grad.norm().item() / T**2})
pd.DataFrame(rows).style.format({"gradient norm with T²": "{:.3f}", "without T²": "{:.5f}"}).hide(axis="index")

# %% [markdown]
# With the factor the gradient stays the same order of magnitude from $T=1$ to $T=16$; without
# it, it falls by two orders of magnitude.
#
# ### The teacher: chapter 3's recipe
#
# The teacher is the course's pretrained backbone (a small ResNet pretrained on printed
# characters, see {doc}`03_finetune_vision`) with a new 10-way head, fully fine-tuned on the
# 1,000 labelled images with AdamW (weight decay 0.05) and a one-cycle learning-rate schedule.

# %%
seed_everything(0)
teacher = load_pretrained(10, seed=0)
T_EPOCHS, T_LR, BATCH = 5, 2e-3, 64
opt = torch.optim.AdamW(teacher.parameters(), lr=T_LR, weight_decay=0.05)
sched = OneCycleLR(opt, T_LR, total_steps=T_EPOCHS * math.ceil(len(labelled) / BATCH))
with Timer() as t_teacher:
    fit(teacher, labelled, epochs=T_EPOCHS, optimizer=opt, scheduler=sched, scheduler_interval="step",
        batch_size=BATCH, seed=0, progress=False)
    _, _, z_train = teacher_logits(teacher, labelled)  # the teacher runs once; every student reuses its logits
teacher_val = evaluate(teacher, val)["accuracy"]
print(f"teacher: {count_parameters(teacher):,} parameters, validation accuracy {teacher_val:.3f}"
      f" ({t_teacher.seconds:.0f} s)")

# %%
x_one, y_one = val[0]
z_one = predict(teacher, TensorDataset(x_one[None], y_one[None]))[0]
fig, axes = plt.subplots(1, 4, figsize=(11, 2.4), gridspec_kw={"width_ratios": [1, 2, 2, 2]})
axes[0].imshow(x_one.permute(1, 2, 0))
axes[0].set_title(f"label {int(y_one)}")
axes[0].axis("off")
for ax, T in zip(axes[1:], [1, 4, 10]):
    ax.bar(range(10), F.softmax(z_one / T, dim=0), color="tab:blue")
    ax.set(title=f"teacher softmax at T = {T}", xlabel="class", ylabel="probability", xticks=range(10), ylim=(0, 1))
fig.suptitle("Raising the temperature reveals which wrong classes the teacher finds plausible")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### The student, and a sweep over $T$ and $\alpha$
#
# The student is the same residual architecture, much thinner (widths 8–16–40 instead of
# 32–64–128), trained from random weights. Every student, including the baseline, runs through
# the same `tlcourse.distill.distill` loop with the same data order, optimizer, schedule and
# number of steps: the baseline is simply $\alpha = 0$ (cross-entropy only). Only the loss
# differs, so any difference is the teacher's.

# %%
S_EPOCHS, S_LR, S_WIDTHS = 10, 2e-2, (8, 16, 40)


def train_student(temperature: float, alpha: float, seed: int) -> SmallResNet:
    seed_everything(seed)
    student = SmallResNet(10, widths=S_WIDTHS)
    steps = S_EPOCHS * math.ceil(len(labelled) / BATCH)
    distill(student, None, labelled, teacher_outputs=z_train, epochs=S_EPOCHS, temperature=temperature,
            alpha=alpha, lr=S_LR, batch_size=BATCH, seed=seed,
            scheduler=lambda o: OneCycleLR(o, S_LR, total_steps=steps), scheduler_interval="step")
    return student


n_teacher = count_parameters(teacher)
n_student = count_parameters(SmallResNet(10, widths=S_WIDTHS))
print(f"student: {n_student:,} parameters = {100 * n_student / n_teacher:.1f}% of the teacher's {n_teacher:,}")

# %% [markdown]
# We sweep the temperature at $\alpha = 0.9$ and the weight $\alpha$ at $T = 4$, with one seed,
# and pick the setting by **validation** accuracy.

# %%
sweep, students = [], {}
with Timer() as t_sweep:
    for T, alpha in [(4, 0.0), (1, 0.9), (2, 0.9), (4, 0.9), (8, 0.9), (4, 0.5), (4, 1.0)]:
        student = train_student(T, alpha, seed=0)
        students[(T, alpha)] = student
        sweep.append({"T": T, "alpha": alpha, "val_accuracy": evaluate(student, val)["accuracy"]})
sweep = pd.DataFrame(sweep)
alone_val = sweep.loc[sweep.alpha == 0, "val_accuracy"].item()
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
rows = sweep[sweep.alpha == 0.9]
axes[0].plot(rows["T"], rows["val_accuracy"], marker="o", label="distilled, α = 0.9")
axes[0].set(xscale="log", xlabel="temperature T (log scale)", ylabel="validation accuracy", title="Temperature sweep")
axes[0].set_xticks([1, 2, 4, 8], labels=["1", "2", "4", "8"])
axes[0].minorticks_off()
rows = sweep[(sweep["T"] == 4)].sort_values("alpha")
axes[1].plot(rows["alpha"], rows["val_accuracy"], marker="o", label="T = 4 (α = 0: student alone)")
axes[1].set(xlabel="weight α of the teacher's soft targets", title="α sweep")
for ax in axes:
    ax.axhline(alone_val, color="gray", ls="--", label="student alone")
    ax.axhline(teacher_val, color="black", ls=":", label="teacher")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
best = sweep[sweep.alpha > 0].sort_values("val_accuracy", ascending=False).iloc[0]
BEST_T, BEST_ALPHA = float(best["T"]), float(best["alpha"])
glue("ch08_best_T", BEST_T)
glue("ch08_best_alpha", BEST_ALPHA)
print(f"chosen on validation: T = {BEST_T:g}, alpha = {BEST_ALPHA:g} ({t_sweep.seconds:.0f} s)")

# %% [markdown]
# The validation split chose $T =$ {glue:text}`ch08_best_T:g` and
# $\alpha =$ {glue:text}`ch08_best_alpha:g`. Compare every point with the dashed line, the
# same student trained on the labels alone. With $\alpha = 1$ the student never sees a label
# and learns only what the teacher believes, errors included; with $T = 1$ the teacher's
# probabilities are nearly one-hot and carry little more than the labels.
#
# To report the comparison we retrain the chosen setting and the baseline with two more seeds
# (seed 0 is reused from the sweep): three seeds each, same settings, same seeds, so that the
# two can be compared seed by seed.

# %%
SEEDS = [0, 1, 2]
alone_models = [students[(4, 0.0)]] + [train_student(4, 0.0, s) for s in SEEDS[1:]]
kd_models = [students[(BEST_T, BEST_ALPHA)]] + [train_student(BEST_T, BEST_ALPHA, s) for s in SEEDS[1:]]

# %% [markdown]
# ## Evaluation you can trust
#
# Everything is now fixed. The test split is opened here, once, for every model.

# %%
y_test = test.labels
logits = {"teacher": predict(teacher, test)}
alone_logits = [predict(m, test) for m in alone_models]
kd_logits = [predict(m, test) for m in kd_models]


def acc(z: torch.Tensor) -> float:
    return (z.argmax(1) == y_test).float().mean().item()


teacher_acc = acc(logits["teacher"])
alone_accs, kd_accs = [acc(z) for z in alone_logits], [acc(z) for z in kd_logits]
results = pd.DataFrame([
    {"model": "teacher (fine-tuned, pretrained)", "parameters": n_teacher,
     "test accuracy": f"{teacher_acc:.3f}", "seeds": 1},
    {"model": "student alone (α = 0)", "parameters": n_student,
     "test accuracy": format_mean_std(alone_accs), "seeds": len(SEEDS)},
    {"model": f"distilled student (T = {BEST_T:g}, α = {BEST_ALPHA:g})", "parameters": n_student,
     "test accuracy": format_mean_std(kd_accs), "seeds": len(SEEDS)},
])
display(results.style.hide(axis="index"))
pd.DataFrame({"seed": SEEDS, "student alone": alone_accs, "distilled": kd_accs,
              "gain (points)": [100 * (k - a) for k, a in zip(kd_accs, alone_accs)]}).style.format(
    {"student alone": "{:.3f}", "distilled": "{:.3f}", "gain (points)": "{:+.1f}"}).hide(axis="index")

# %%
kd_mean, kd_std = mean_std(kd_accs)
alone_mean, alone_std = mean_std(alone_accs)
param_ratio = n_student / n_teacher
keep_ratio = kd_mean / teacher_acc
gain = 100 * (kd_mean - alone_mean)
glue("ch08_teacher_params", f"{n_teacher:,}")
glue("ch08_student_params", f"{n_student:,}")
glue("ch08_param_pct", 100 * param_ratio)
glue("ch08_teacher_acc", 100 * teacher_acc)
glue("ch08_kd_acc", 100 * kd_mean)
glue("ch08_kd_std", 100 * kd_std)
glue("ch08_alone_acc", 100 * alone_mean)
glue("ch08_alone_std", 100 * alone_std)
glue("ch08_keep_pct", 100 * keep_ratio)
glue("ch08_gain", gain)
# The chapter's claim.
assert param_ratio <= 0.1, f"the student must have at most 1/10 of the teacher's parameters, has {param_ratio:.3f}"
assert keep_ratio >= 0.85, f"the distilled student must keep most of the teacher's accuracy, keeps {keep_ratio:.3f}"
assert kd_mean > alone_mean, f"distillation must beat the student trained alone: {kd_mean:.3f} vs {alone_mean:.3f}"

# %% [markdown]
# **The claim, measured.** With {glue:text}`ch08_student_params` parameters
# ({glue:text}`ch08_param_pct:.1f`% of the teacher's {glue:text}`ch08_teacher_params`), the
# distilled student reaches {glue:text}`ch08_kd_acc:.1f` ± {glue:text}`ch08_kd_std:.1f`% test
# accuracy, which is **{glue:text}`ch08_keep_pct:.0f`% of the teacher's**
# {glue:text}`ch08_teacher_acc:.1f`%, and {glue:text}`ch08_gain:.1f` points more than the same
# student trained alone on the same images ({glue:text}`ch08_alone_acc:.1f` ±
# {glue:text}`ch08_alone_std:.1f`%, mean ± std over three seeds). With only 100 labels per class
# the soft targets act as a strong regulariser, as in Hinton et al.'s experiment where soft
# targets let a model trained on 3 % of the data approach the one trained on all of it
# {footcite}`hinton2015distilling`. Distillation also works from intermediate features
# (FitNets' "hints", {footcite}`romero2015fitnets`), and benefits from long training on augmented
# inputs that teacher and student see identically {footcite}`beyer2022knowledge`.
#
# ### Beyond accuracy: precision, recall, F1 and the confusion matrix
#
# Accuracy hides which classes fail. Per class, **precision** is the share of predictions of
# that class that are right, **recall** the share of that class's images that are found, and
# **F1** their harmonic mean; the *macro* average weights every class equally, whatever its size.

# %%
reports = {"teacher": per_class_report(y_test, logits["teacher"], classes),
           "student alone": per_class_report(y_test, alone_logits[0], classes),
           "distilled": per_class_report(y_test, kd_logits[0], classes)}
per_class = pd.DataFrame({
    (name, metric): [rep[c][metric] for c in classes]
    for name, rep in reports.items() for metric in ("precision", "recall", "f1-score")
}, index=pd.Index(classes, name="class"))
per_class.loc["macro avg"] = [reports[name]["macro avg"][metric] for name, metric in per_class.columns]
per_class.style.format("{:.2f}").background_gradient(cmap="RdYlGn", vmin=0.6, vmax=1.0)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
plot_confusion_matrix(confusion_matrix(y_test, alone_logits[0], 10), classes,
                      title="Student alone (seed 0)", ax=axes[0])
plot_confusion_matrix(confusion_matrix(y_test, kd_logits[0], 10), classes,
                      title="Distilled student (seed 0)", ax=axes[1])
plt.tight_layout()
plt.show()
macro_f1 = {name: rep["macro avg"]["f1-score"] for name, rep in reports.items()}
glue("ch08_f1_kd", macro_f1["distilled"])
_ = glue("ch08_f1_alone", macro_f1["student alone"])

# %% [markdown]
# Rows are true classes, columns predictions (normalised per row, seed 0). The macro F1 is
# {glue:text}`ch08_f1_alone:.3f` for the student alone and {glue:text}`ch08_f1_kd:.3f` for the
# distilled student. Read the table by rows as well as by averages: a class with a low recall
# is one the model misses, which matters more than the average when that class is the costly
# one.
#
# ### How sure are we? Seeds and confidence intervals
#
# Two different uncertainties hide in a test score. The **seed spread** (± std above) measures
# how much the *training run* varies. The **test-set uncertainty** measures how much the score
# would move on another 1,000 test images of the same kind; a percentile **bootstrap** resamples
# the test set with replacement to estimate it {footcite}`efron1994introduction`. Report both, and
# never report the best seed alone.

# %%
ci_rows = []
for name, z in [("teacher", logits["teacher"]), ("student alone (seed 0)", alone_logits[0]),
                ("distilled (seed 0)", kd_logits[0])]:
    est, low, high = bootstrap_ci((z.argmax(1) == y_test).float(), n_resamples=2000, seed=0)
    ci_rows.append({"model": name, "accuracy": est, "95% CI low": low, "95% CI high": high})
ci = pd.DataFrame(ci_rows)
glue("ch08_ci_low", 100 * ci.loc[2, "95% CI low"])
glue("ch08_ci_high", 100 * ci.loc[2, "95% CI high"])
ci.style.format({"accuracy": "{:.3f}", "95% CI low": "{:.3f}", "95% CI high": "{:.3f}"}).hide(axis="index")

# %% [markdown]
# The distilled student's 95 % interval is {glue:text}`ch08_ci_low:.1f`–{glue:text}`ch08_ci_high:.1f`%:
# with 1,000 test images, differences of a point or two between two models are within the noise
# of the test set itself, which is why we also compare over seeds, on the same test images.
#
# ### Calibration: does 90 % confidence mean 90 % right?
#
# Decisions that use the scores (abstain below a threshold, rank cases for a human) need
# *calibrated* confidences. A **reliability diagram** bins predictions by their confidence and
# plots each bin's accuracy; the **expected calibration error** is the average gap, weighted by
# bin size {footcite}`naeini2015obtaining,guo2017calibration`:
#
# $$
# \mathrm{ECE} = \sum_{m=1}^{M} \frac{|B_m|}{N}\,\bigl|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\bigr|.
# $$ (eq-ch8-ece)
#
# **Temperature scaling** {footcite}`guo2017calibration` divides the logits by one scalar $T$
# fitted on the *validation* split by minimising the negative log-likelihood,
#
# $$
# T^\star = \arg\min_{T>0}\; -\frac{1}{N_{\text{val}}}\sum_{i} \log \operatorname{softmax}(z_i/T)_{y_i},
# $$ (eq-ch8-ts)
#
# which changes no prediction (the arg-max of $z/T$ is the arg-max of $z$), only the confidences.

# %%
calib_rows = []
fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharey=True)
models_to_calibrate = [("teacher", teacher, logits["teacher"]), ("distilled student", kd_models[0], kd_logits[0])]
for ax, (name, model, z_test) in zip(axes, models_to_calibrate):
    scaler = TemperatureScaler().fit(predict(model, val), val.labels)  # fitted on validation, never on test
    with torch.no_grad():
        z_scaled = scaler(z_test)
    before = reliability_diagram(z_test.softmax(1), y_test)
    after = reliability_diagram(z_scaled.softmax(1), y_test)
    plot_reliability_diagram(before, ax=ax, label="before", color="tab:red", title=None, kind="line")
    plot_reliability_diagram(after, ax=ax, label=f"after (T = {scaler.temperature:.2f})", color="tab:blue",
                             title=f"{name}: reliability on the test split", kind="line")
    calib_rows.append({"model": name, "fitted T": scaler.temperature,
                       "NLL before": negative_log_likelihood(z_test, y_test),
                       "NLL after": negative_log_likelihood(z_scaled, y_test),
                       "ECE before": before.ece, "ECE after": after.ece,
                       "accuracy unchanged": bool((z_scaled.argmax(1) == z_test.argmax(1)).all())})
plt.tight_layout()
plt.show()
calib = pd.DataFrame(calib_rows)
assert calib["accuracy unchanged"].all()
glue("ch08_teacher_T", calib.loc[0, "fitted T"])
glue("ch08_student_T", calib.loc[1, "fitted T"])
glue("ch08_teacher_ece_before", 100 * calib.loc[0, "ECE before"])
glue("ch08_teacher_ece_after", 100 * calib.loc[0, "ECE after"])
calib.style.format({c: "{:.3f}" for c in ["fitted T", "NLL before", "NLL after", "ECE before", "ECE after"]}).hide(
    axis="index")

# %% [markdown]
# Points below the diagonal are over-confident bins, points above it under-confident ones. A
# fitted $T > 1$ means the model was over-confident and scaling softens it, $T < 1$ that it was
# under-confident and scaling sharpens it. The teacher's fitted temperature is
# {glue:text}`ch08_teacher_T:.2f` (the distilled student's {glue:text}`ch08_student_T:.2f`), and
# the teacher's ECE goes from {glue:text}`ch08_teacher_ece_before:.1f`% to
# {glue:text}`ch08_teacher_ece_after:.1f`% on the test split. Guo et al. found modern networks
# over-confident {footcite}`guo2017calibration`; small networks trained briefly with weight decay,
# as here, can err the other way, which is why you measure before you correct. One scalar,
# fitted on 800 validation images, fixes most of it. With a thousand test predictions in 15
# bins the ECE is itself noisy: compare models on the same test set with the same bins.
#
# ## Over-fitting on a small target set
#
# With ten labels per class, a 300,000-parameter network can memorise its training set in a
# few epochs. The learning curves show it: the training loss falls towards zero while the
# validation loss stalls far above it (or turns up). We fine-tune the pretrained model on 100
# images three ways: without any control; with weight decay, data augmentation and early
# stopping on the validation loss; and with the whole backbone frozen (a linear probe on
# extracted features, {doc}`03_finetune_vision`).

# %%
small = few_shot(pool, 10, seed=1)
val_small = val.subset(range(300))
augment = v2.Compose([v2.RandomAffine(degrees=12, translate=(0.1, 0.1), scale=(0.9, 1.1)),
                      v2.ColorJitter(brightness=0.3, contrast=0.3, hue=0.1)])
O_EPOCHS = 12
histories = {}
with Timer() as t_overfit:
    seed_everything(0)
    model = load_pretrained(10, seed=0)
    histories["no control"] = fit(model, small, epochs=O_EPOCHS, lr=1e-3, batch_size=25, val_data=val_small,
                                  seed=0, progress=False)
    seed_everything(0)
    model = load_pretrained(10, seed=0)
    histories["weight decay + augmentation + early stopping"] = fit(
        model, small.with_transform(augment), epochs=O_EPOCHS, lr=1e-3, weight_decay=0.05, batch_size=25,
        val_data=val_small, early_stopping=3, monitor="val_loss", seed=0, progress=False)
    seed_everything(0)
    model = load_pretrained(10, seed=0)
    train_feats = TensorDataset(*extract_features(model.backbone, small))  # frozen backbone: features computed once
    val_feats = TensorDataset(*extract_features(model.backbone, val_small))
    histories["frozen backbone (linear probe)"] = fit(model.head, train_feats, epochs=O_EPOCHS, lr=1e-2, batch_size=25,
                                                      val_data=val_feats, seed=0, progress=False)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), sharey=True)
for ax, (name, history) in zip(axes, histories.items()):
    epochs = range(1, len(history) + 1)
    ax.plot(epochs, history["train_loss"], marker=".", label="train loss")
    ax.plot(epochs, history["val_loss"], marker=".", label="validation loss")
    if history.best_epoch is not None and name.startswith("weight"):
        ax.axvline(history.best_epoch + 1, color="gray", ls="--", label="early-stopping choice")
    ax.set(title=name, xlabel="epoch", ylabel="cross-entropy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.suptitle("Fine-tuning on 10 labelled images per class: learning curves")
plt.tight_layout()
plt.show()
kept = {name: (h.best_epoch if name.startswith("weight") else len(h) - 1) for name, h in histories.items()}
overfit = pd.DataFrame([{"setting": name, "epochs run": len(h), "kept epoch": kept[name] + 1,
                         "train loss": h["train_loss"][kept[name]], "validation loss": h["val_loss"][kept[name]],
                         "gap (val − train)": h["val_loss"][kept[name]] - h["train_loss"][kept[name]],
                         "validation accuracy": h["val_accuracy"][kept[name]]}
                        for name, h in histories.items()])
glue("ch08_nc_train_loss", overfit.loc[0, "train loss"])
glue("ch08_nc_val_loss", overfit.loc[0, "validation loss"])
glue("ch08_ctrl_gap", overfit.loc[1, "gap (val − train)"])
glue("ch08_nc_gap", overfit.loc[0, "gap (val − train)"])
glue("ch08_nc_val_acc", overfit.loc[0, "validation accuracy"])
glue("ch08_ctrl_val_acc", overfit.loc[1, "validation accuracy"])
glue("ch08_probe_val_acc", overfit.loc[2, "validation accuracy"])
overfit.style.format({c: "{:.3f}" for c in ["train loss", "validation loss", "gap (val − train)",
                                             "validation accuracy"]}).hide(axis="index")

# %% [markdown]
# Without controls the training loss ends at {glue:text}`ch08_nc_train_loss:.3f` and the
# validation loss at {glue:text}`ch08_nc_val_loss:.3f`: the network has memorised its 100
# images, and the gap between the curves ({glue:text}`ch08_nc_gap:.2f`) is the over-fitting.
# Weight decay and augmentation keep the model from memorising exact pixels (gap
# {glue:text}`ch08_ctrl_gap:.2f` at the kept epoch), and early stopping keeps the weights of the
# epoch with the lowest validation loss: the validation split, not the test split, decides when
# to stop. Freezing the whole backbone removes the capacity to memorise, but also to adapt:
# features learned on printed characters need adjusting to digits in photo textures, and the
# probe reaches {glue:text}`ch08_probe_val_acc:.3f` validation accuracy against
# {glue:text}`ch08_nc_val_acc:.3f` without controls and {glue:text}`ch08_ctrl_val_acc:.3f` with
# them. A smaller gap is not automatically a better model: each control is a choice to check
# on the validation split, and with a pretrained start the cheapest protection is often
# simply to train briefly with a small learning rate. Partial freezing, L2-SP (chapter 2) and
# discriminative learning rates (chapter 3) sit between the two extremes.
#
# ## What did the models learn to look at?
#
# Two classic tools: a **gradient saliency map** shows how strongly each pixel affects the score
# of the predicted class, $|\partial z_c / \partial x|$ {footcite}`simonyan2014deep`; an **occlusion
# map** shows how much that score drops when a $7\times7$ grey patch hides each part of the
# image {footcite}`zeiler2014visualizing`. Both are computed here on validation images, for the
# teacher and for the distilled student.

# %%
def saliency(model, x):
    model.eval()
    x = x.clone().requires_grad_(True)
    scores = model(x)
    scores.gather(1, scores.argmax(1, keepdim=True)).sum().backward()
    return x.grad.abs().amax(dim=1)  # max over colour channels


@torch.no_grad()
def occlusion(model, x, patch=7):
    model.eval()
    base = model(x)
    cls = base.argmax(1)
    drop = torch.zeros(len(x), 28 // patch, 28 // patch)
    for i in range(0, 28, patch):
        for j in range(0, 28, patch):
            hidden = x.clone()
            hidden[:, :, i:i + patch, j:j + patch] = 0.5
            drop[:, i // patch, j // patch] = (base - model(hidden)).gather(1, cls[:, None])[:, 0]
    return drop


x_show = val.images[:6]
maps = {"teacher saliency": saliency(teacher, x_show), "student saliency": saliency(kd_models[0], x_show),
        "teacher occlusion": occlusion(teacher, x_show), "student occlusion": occlusion(kd_models[0], x_show)}
fig, axes = plt.subplots(5, 6, figsize=(9, 7.6))
for j in range(6):
    axes[0, j].imshow(x_show[j].permute(1, 2, 0))
    axes[0, j].set_title(f"label {int(val.labels[j])}", fontsize=9)
    for i, (name, m) in enumerate(maps.items(), start=1):
        axes[i, j].imshow(m[j], cmap="hot" if "saliency" in name else "viridis")
        if j == 0:
            axes[i, j].set_ylabel(name, fontsize=8)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Where the evidence is: gradient saliency and 7×7 occlusion (bright = important)")
plt.tight_layout()
plt.show()

# %% [markdown]
# Raw gradient maps are noisy, a known weakness (averaging the gradients of several noisy
# copies of the input, "SmoothGrad", is the usual remedy); the occlusion maps are coarse but
# easier to read: for most images the score falls most when the central strokes are hidden,
# not the textured corners. Teacher and student do not always rely on the same regions:
# distillation transfers *what* to answer, not necessarily *why*. Such maps are
# sanity checks (does the model look at the object or at a watermark?), not explanations.
#
# **Nearest neighbours before and after fine-tuning.** Another window on what transferred:
# embed images with the backbone and look at each query's nearest training images (cosine
# similarity). Before fine-tuning, the pretrained features group images by what the source task
# cared about (colour, texture, stroke shapes of printed characters); after, by digit.

# %%
pretrained = load_pretrained(10, seed=0)
queries = val.subset(range(400))
knn = {}
neighbours = {}
for name, backbone in [("pretrained (before)", pretrained.backbone), ("fine-tuned teacher (after)", teacher.backbone)]:
    f_train, y_train_f = extract_features(backbone, labelled)
    f_query, y_query = extract_features(backbone, queries)
    sims = F.normalize(f_query, dim=1) @ F.normalize(f_train, dim=1).T
    top = sims.topk(5, dim=1).indices
    neighbours[name] = top
    knn[name] = (y_train_f[top[:, 0]] == y_query).float().mean().item()
fig, axes = plt.subplots(2 * 3, 6, figsize=(7.5, 8))
for q in range(3):
    for r, (name, top) in enumerate(neighbours.items()):
        row = axes[2 * q + r]
        row[0].imshow(queries.images[q].permute(1, 2, 0))
        row[0].set_title("query" if r == 0 else "", fontsize=8)
        for k in range(5):
            row[k + 1].imshow(labelled.images[top[q, k]].permute(1, 2, 0))
        row[1].set_ylabel(name.split(" (")[1][:-1], fontsize=8)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Five nearest training images: pretrained features (before) vs fine-tuned (after)")
plt.tight_layout()
plt.show()
glue("ch08_knn_before", 100 * knn["pretrained (before)"])
_ = glue("ch08_knn_after", 100 * knn["fine-tuned teacher (after)"])

# %% [markdown]
# The 1-nearest-neighbour accuracy on 400 validation images is
# {glue:text}`ch08_knn_before:.1f`% with the pretrained features and
# {glue:text}`ch08_knn_after:.1f`% after fine-tuning: the pretrained features already hold much
# of what the target needs (that is why transfer works), and fine-tuning reorganises them
# around the target's classes.
#
# ## Choosing a method: a decision guide
#
# The course's methods answer different situations. The two questions that matter most are how
# many **labelled target examples** you have and how **similar** the target is to the source
# of your pretrained model {footcite}`pan2010survey,yosinski2014transferable`; a few other facts
# (unlabelled target data, related tasks, other modalities, deployment limits) point to
# specific chapters.

# %%
guide = [
    # (row: similarity, col: labelled data, text)
    (1, 0, "Linear probe / feature\nextraction (ch. 3)\nor zero-shot (ch. 7)"),
    (1, 1, "Partial fine-tuning,\ndiscriminative rates,\nLoRA for text (ch. 3–4)"),
    (1, 2, "Full fine-tuning\n(ch. 3–4); pretraining\nmainly saves time"),
    (0, 0, "Domain adaptation with\nunlabelled target data\n(ch. 6); few-shot probe"),
    (0, 1, "Fine-tune lower layers too,\nL2-SP / strong augmentation\n(ch. 2–3); check for\n"
           "negative transfer (ch. 1)"),
    (0, 2, "Full fine-tuning or train\nfrom scratch; compare both\n(ch. 1)"),
]
colors = {0: "#fde0c5", 1: "#c7e9c0", 2: "#c6dbef"}
fig, ax = plt.subplots(figsize=(10, 4.2))
for row, col, text in guide:
    ax.add_patch(plt.Rectangle((col, row), 1, 1, facecolor=colors[col], edgecolor="white", lw=3))
    ax.text(col + 0.5, row + 0.5, text, ha="center", va="center", fontsize=9)
ax.set(xlim=(0, 3), ylim=(0, 2), xticks=[0.5, 1.5, 2.5], yticks=[0.5, 1.5],
       xlabel="labelled target examples per class", ylabel="similarity of target to source",
       title="Which method to try first")
ax.set_xticklabels(["few (1–20)", "some (20–500)", "many (> 500)"])
ax.set_yticklabels(["different", "similar"])
ax.tick_params(length=0)
plt.tight_layout()
plt.show()

# %% [markdown]
# | situation | try first | chapter |
# |---|---|---|
# | model too large or slow to deploy | distil it into a small student; quantise or prune | this chapter |
# | several related tasks, few labels each | multi-task learning with a shared encoder | {doc}`05_multitask` |
# | labelled source, only *unlabelled* target | domain adaptation (DANN, CORAL, pixel-level) | {doc}`06_adversarial_adaptation` |
# | images *and* text for the same examples | fusion, or a joint contrastive space | {doc}`07_multimodal` |
# | new classes described only in words | zero-shot classification with a text encoder | {doc}`07_multimodal` |
# | large language model, little compute | LoRA / parameter-efficient fine-tuning | {doc}`04_finetune_text` |
#
# Whatever the cell says, the from-scratch baseline and a validation split decide: the guide
# tells you where to start, the measurements where to stop.

# %% [markdown]
# ## Summary
#
# - **Knowledge distillation** trains a small student on a teacher's temperature-softened
#   probabilities plus the labels, Eq. {eq}`eq-ch8-kd`; the $T^2$ factor keeps the soft term's
#   gradients comparable across temperatures. Here a student with
#   {glue:text}`ch08_param_pct:.1f`% of the teacher's parameters kept
#   {glue:text}`ch08_keep_pct:.0f`% of its accuracy and beat the same student trained alone by
#   {glue:text}`ch08_gain:.1f` points.
# - Choose hyper-parameters ($T$, $\alpha$, the temperature of temperature scaling, when to
#   stop) on a **validation split**; open the **test split once**.
# - Report **per-class** precision, recall and F1 and the confusion matrix, **mean ± std over
#   seeds**, and a **bootstrap confidence interval** for the test-set uncertainty.
# - Check **calibration** with a reliability diagram and the ECE, Eq. {eq}`eq-ch8-ece`;
#   **temperature scaling**, Eq. {eq}`eq-ch8-ts`, fixes much of the miscalibration without
#   changing a single prediction.
# - On small target sets, watch the learning curves; weight decay, augmentation, early stopping
#   and freezing are the controls.
# - **Saliency**, **occlusion** and **nearest neighbours** show what a model uses and what
#   fine-tuning changed.
# - Pick a method from the target's data size and similarity to the source, then let the
#   baselines decide.
#
# ## Exercises
#
# ```{exercise}
# :label: ch8-ex1
# Show that, for a large temperature $T$ and zero-mean logits, the gradient of
# $T^2\,\mathrm{KL}(p^T(z_t)\,\|\,p^T(z_s))$ with respect to $z_s$ is approximately
# $(z_s - z_t)/K$, where $K$ is the number of classes. What training objective does distillation
# reduce to in that limit?
# ```
#
# ```{solution} ch8-ex1
# :class: dropdown
# The gradient of the KL term with respect to $z_{s,k}$ is $\frac{1}{T}(p^T_k(z_s) - p^T_k(z_t))$.
# For large $T$, $\exp(z_k/T) \approx 1 + z_k/T$, so with $\sum_j z_j = 0$,
# $p^T_k(z) \approx (1 + z_k/T)/K$. The difference is $(z_{s,k} - z_{t,k})/(KT)$ and the gradient
# is $(z_{s,k} - z_{t,k})/(KT^2)$; multiplied by $T^2$ it is $(z_{s,k} - z_{t,k})/K$. This is
# the gradient of $\frac{1}{2K}\lVert z_s - z_t\rVert^2$: at high temperature distillation is
# **logit matching**, the objective of Buciluǎ et al.'s model compression {footcite}`bucila2006model`
# (Hinton et al., Section 2.1).
# ```
#
# ```{exercise}
# :label: ch8-ex2
# Temperature scaling leaves accuracy, precision, recall and F1 unchanged, yet changes the NLL
# and the ECE. Why? And what goes wrong if you fit the temperature on the test split?
# ```
#
# ```{solution} ch8-ex2
# :class: dropdown
# Dividing all logits of an example by the same $T > 0$ preserves their order, so the arg-max,
# hence every prediction and every metric computed from predictions, is unchanged. The
# probabilities change: $T > 1$ flattens them (less confident), $T < 1$ sharpens them, which
# changes the likelihood and the confidence–accuracy gap. Fitting $T$ on the test split uses
# the test labels to set a parameter: the reported NLL and ECE are then optimistic (they are
# training scores of $T$), and nothing is left to measure how well the calibration generalises.
# ```
#
# ```{exercise}
# :label: ch8-ex3
# Six predictions have confidences 0.55, 0.58, 0.70, 0.90, 0.95, 1.00 and are right, wrong,
# wrong, right, right, right. Compute their ECE with five equal-width bins by hand, then check
# with `tlcourse.calibration.expected_calibration_error`.
# ```
#
# ```{solution} ch8-ex3
# :class: dropdown
# Bins $(0.4, 0.6]$: confidences 0.55, 0.58 (mean 0.565), accuracy 0.5, gap 0.065, weight 2/6.
# $(0.6, 0.8]$: 0.70, accuracy 0, gap 0.70, weight 1/6. $(0.8, 1]$: mean 0.95, accuracy 1, gap
# 0.05, weight 3/6. ECE $= 0.065\cdot\frac{2}{6} + 0.70\cdot\frac{1}{6} + 0.05\cdot\frac{3}{6}
# \approx 0.163$. In code: `probs = torch.tensor([[c, 1 - c] for c in confs])`, labels 0 for
# right and 1 for wrong, `expected_calibration_error(probs, labels, n_bins=5)` (this exact case
# is one of the package's unit tests).
# ```
#
# ```{exercise}
# :label: ch8-ex4
# Train the student on the 1,000 labelled images *plus* the other 2,200 training images of the
# pool without their labels, using the teacher's soft targets alone for those ($\alpha = 1$ on
# unlabelled images). Does the student get closer to the teacher? Why is this a fair use of
# distillation but an unfair comparison with the "student alone" baseline?
# ```
#
# ```{solution} ch8-ex4
# :class: dropdown
# Compute the teacher's logits for the whole pool with `teacher_logits(teacher, pool)`, train
# one student with `distill(..., alpha=1.0)` on the pool (labels unused) and fine-tune or mix
# with the labelled loss. The extra images carry the teacher's knowledge to regions of input
# space that the labelled set does not cover, so the student usually gets closer to the teacher;
# this is how Buciluǎ et al. and Hinton et al. use *transfer sets*. The comparison is unfair to
# the baseline because the distilled student now sees 3.2 times more images; the fair baseline
# would be a semi-supervised student (e.g. self-training with pseudo-labels) on the same images.
# ```
#
# ```{exercise}
# :label: ch8-ex5
# A hospital has 40 labelled chest X-rays per class and an ImageNet-pretrained ResNet. Using
# the decision guide, what would you try first, which baselines would you report, and how would
# you report the uncertainty of the result?
# ```
#
# ```{solution} ch8-ex5
# :class: dropdown
# X-rays are far from ImageNet photos (different domain) and 40 labels per class is "some":
# start with partial fine-tuning (top stages + head) with discriminative learning rates, strong
# but plausible augmentation and early stopping; compare with a linear probe and with the same
# network trained from scratch (to detect negative transfer). Choose everything on a validation
# split (or by cross-validation, the data being small), report test accuracy and per-class
# recall (missed disease is costly) as mean ± std over several seeds with a bootstrap interval,
# and check calibration if the scores drive decisions.
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
