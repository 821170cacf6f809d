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
# (ch07)=
# # Chapter 7 — Multimodal learning: fusion, a shared space, and transfer across modalities
#
# An image and a sentence about it are two views of one situation. Multimodal learning uses
# both, and transfer learning crosses between them: a text can name classes that an image
# model was never trained on, and a language model pretrained on text can teach an image
# model words it never saw next to a picture. This chapter builds the four classic setups on
# one small, fully reproducible image–caption dataset: **independent models fused at the
# decision level**, **joint learning in a shared embedding space** (CLIP-style), **cross-modal
# transfer** (zero-shot classification, retrieval, and a pretrained language model as the text
# tower), and **image captioning** with cross-attention. A survey and taxonomy of the field is
# {footcite}`baltrusaitis2019multimodal`.

# %%
# Colab only: install the course package (does nothing elsewhere).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "tlcourse @ git+https://github.com/tlcourse/tlcourse@v0.1.0"], check=True)

# %%
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from sklearn.decomposition import PCA
from torch.utils.data import StackDataset, TensorDataset

from tlcourse.calibration import TemperatureScaler
from tlcourse.data.captions import (
    COLOURS, DEFAULT_HOLDOUT, SHAPES, UNSEEN_SYNONYMS, make_captions, make_fusion_task,
    zero_shot_prompts,
)
from tlcourse.models.text import load_text_encoder
from tlcourse.multimodal import (
    Captioner, ConcatFusion, ConvImageEncoder, CrossAttentionFusion, DualEncoder, EmbeddingTable,
    LearnedLateFusion, TokenTextEncoder, WordTokenizer, attribute_accuracy, average_prompts, beam_search,
    clip_loss, embed, fit_captioner, fit_dual_encoder, generate_captions, greedy_decode, late_fusion,
    recall_at_k, sentence_embeddings, tune_fusion_weight, zero_shot_logits,
)
from tlcourse.plots import show_images
from tlcourse.train import fit, predict
from tlcourse.utils import glue, seed_everything

seed_everything(0)
# One thread: these small models run many tiny operations, and on a shared 2-core machine two
# threads spend most of their time waiting for each other (measured: 3-4x slower under load).
torch.set_num_threads(1)


def caption_grid(images, captions, ncols=6, title=None, width=18):
    """Images with (wrapped) sentences as titles."""
    wrapped = ["\n".join(textwrap.wrap(c, width)) for c in captions]
    return show_images(images, wrapped, ncols=ncols, title=title, size=1.9)


# %% [markdown]
# ## 7.1 Data: pictures that come with sentences
#
# `tlcourse.data.make_captions` draws small 32×32 scenes: one to three identical objects with a
# **shape** ({glue:text}`ch07_shapes`), a **colour** ({glue:text}`ch07_colours`), a **size**,
# a **position** (the half of the image they sit in) and a **count**, on muted crops of real
# photographs. Each scene gets a sentence from a small grammar with several templates and
# synonyms ("scarlet" for red, "disc" for circle, "a pair of" for two ...). Everything is
# vectorised and seeded: the same call gives the same pixels and words on every machine.
#
# The split tests **compositional generalisation**: five (shape, colour) pairs — one per shape
# and one per colour — never occur in training, although every shape and every colour does.
# Half of the test set shows these *novel* combinations.

# %%
data = make_captions(3000, 1000, seed=0)
train, test = data
glue("ch07_shapes", ", ".join(SHAPES))
glue("ch07_colours", ", ".join(COLOURS))
glue("ch07_heldout", ", ".join(f"{c} {s}" for s, c in DEFAULT_HOLDOUT))
glue("ch07_n_train", len(train))
glue("ch07_n_test", len(test))
print(train, test, sep="\n")
print("held out of training:", ", ".join(f"{c} {s}" for s, c in DEFAULT_HOLDOUT))
caption_grid(train.images[:12], train.captions[:12], title="Training images and their captions")
plt.show()

# %% [markdown]
# The held-out combinations are {glue:text}`ch07_heldout`. There are
# {glue:text}`ch07_n_train` training pairs and {glue:text}`ch07_n_test` test pairs.
#
# ## 7.2 Independent models and late fusion
#
# The simplest multimodal system trains one model per modality and combines their *decisions*.
# To see when that helps, we need a task where **each modality alone is ambiguous**.
# `make_fusion_task` builds one: the image comes from a grayscale camera (the shape is
# visible, the colour is lost — object grey levels are random), and the text is a witness's
# note that names the colour but never the shape. The label is the (colour, shape) pair, 25
# classes. A perfect image model can be right only 1 time in 5, and so can a perfect text model.

# %%
fusion = make_fusion_task(2000, 500, 1000, seed=0)
caption_grid(fusion.train.images[:6], [f"“{t}” → {fusion.train.classes[y]}" for t, y in
             zip(fusion.train.texts[:6], fusion.train.labels[:6])], title="Fusion task: image, text → label")
plt.show()

# %% [markdown]
# We train an image-only CNN and a text-only bag-of-words model on the same 25 labels, each with
# the package's `fit` loop.

# %%
fusion_tok = WordTokenizer.fit(fusion.train.texts)
ids = {name: fusion_tok.encode(getattr(fusion, name).texts, add_special=False) for name in ("train", "val", "test")}
y = {name: getattr(fusion, name).labels for name in ("train", "val", "test")}


def one_cycle(epochs, n, batch_size=64, lr=3e-3):
    steps = epochs * -(-n // batch_size)
    return lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)


seed_everything(0)
image_model = nn.Sequential(ConvImageEncoder(width=16, out_dim=64), nn.ReLU(), nn.Linear(64, 25))
fit(image_model, TensorDataset(fusion.train.images, y["train"]), epochs=6, lr=3e-3,
    scheduler=one_cycle(6, 2000), scheduler_interval="step", seed=0, progress=False)
text_model = nn.Sequential(TokenTextEncoder(len(fusion_tok), dim=32, out_dim=64), nn.ReLU(), nn.Linear(64, 25))
fit(text_model, TensorDataset(ids["train"], y["train"]), epochs=5, lr=3e-3,
    scheduler=one_cycle(5, 2000), scheduler_interval="step", seed=0, progress=False)

logits = {
    "image": {s: predict(image_model, TensorDataset(getattr(fusion, s).images, y[s])) for s in ("val", "test")},
    "text": {s: predict(text_model, TensorDataset(ids[s], y[s])) for s in ("val", "test")},
}


def accuracy(scores, labels):
    return float((scores.argmax(1) == labels).float().mean())


shape_acc = float(((logits["image"]["test"].argmax(1) // 5) == (y["test"] // 5)).float().mean())
colour_acc = float(((logits["text"]["test"].argmax(1) % 5) == (y["test"] % 5)).float().mean())
glue("ch07_img_shape_acc", 100 * shape_acc)
glue("ch07_txt_colour_acc", 100 * colour_acc)
print(f"image model: {accuracy(logits['image']['test'], y['test']):.3f} on the 25 labels, shape right {shape_acc:.3f}")
print(f"text model:  {accuracy(logits['text']['test'], y['test']):.3f} on the 25 labels, colour right {colour_acc:.3f}")

# %% [markdown]
# Each model does its half of the job — the image model gets the shape right
# {glue:text}`ch07_img_shape_acc:.0f`% of the time, the text model the colour
# {glue:text}`ch07_txt_colour_acc:.0f`% — but neither can name the pair.
#
# **Late fusion** combines their output distributions over the *same* 25 labels. The mean rule
#
# $$ p(y \mid x_{\text{img}}, x_{\text{txt}}) = \sum_m w_m\, p_m(y \mid x_m),
#    \qquad w_m \ge 0,\ \textstyle\sum_m w_m = 1 $$ (eq-ch7-mean)
#
# and the product rule
#
# $$ p(y \mid x_{\text{img}}, x_{\text{txt}}) \propto \prod_m p_m(y \mid x_m)^{w_m} $$ (eq-ch7-product)
#
# (with $w_m = 1$ this is Bayes' rule when the two views are independent given $y$ and the
# classes are equally likely) both need **calibrated** probabilities: a model that is always
# 99% sure would drown the other one. We calibrate each model by temperature scaling
# {footcite}`guo2017calibration` on the validation split, then fuse with equal weights
# ({eq}`eq-ch7-mean`), with a weight tuned on validation, with the product rule
# ({eq}`eq-ch7-product`), and with a small *learned* combiner (stacking: a weight per modality
# on the log-probabilities plus a bias per class, fitted on validation).

# %%
probs = {}
for m in ("image", "text"):
    scaler = TemperatureScaler().fit(logits[m]["val"], y["val"])
    probs[m] = {s: scaler(logits[m][s]).softmax(1).detach() for s in ("val", "test")}
    print(f"{m}: temperature {scaler.temperature:.2f}")

pair = lambda s: [probs["image"][s], probs["text"][s]]  # noqa: E731
w_img = tune_fusion_weight(pair("val"), y["val"])
learned = LearnedLateFusion(2, 25).fit(pair("val"), y["val"])
results = {
    "image only": accuracy(probs["image"]["test"], y["test"]),
    "text only": accuracy(probs["text"]["test"], y["test"]),
    "late: mean, uncalibrated": accuracy(
        late_fusion([logits[m]["test"].softmax(1) for m in ("image", "text")]), y["test"]),
    "late: mean": accuracy(late_fusion(pair("test")), y["test"]),
    f"late: weighted (w_img = {w_img:.2f})": accuracy(late_fusion(pair("test"), [w_img, 1 - w_img]), y["test"]),
    "late: product": accuracy(late_fusion(pair("test"), rule="product"), y["test"]),
    "late: learned (stacking)": accuracy(learned(pair("test")).detach(), y["test"]),
}

# %% [markdown]
# Fusion can also happen earlier, on **features**. We reuse the two trained encoders, frozen,
# and train only the fusion layers: a concatenation followed by an MLP, and **cross-attention**,
# in which every word of the text queries the image regions with
# `nn.MultiheadAttention` {footcite}`vaswani2017attention`:
#
# $$ H = \mathrm{LN}\big(Q + \mathrm{MHA}(Q, K, V)\big),\quad Q = T W_Q,\ K = R W_K,\ V = R W_V, $$ (eq-ch7-xattn)
#
# with $T$ the word vectors and $R$ the region vectors, followed by a feed-forward block, a mean
# over the words and a linear classifier. Models such as ViLT {footcite}`kim2021vilt` instead
# concatenate word and patch tokens into *one* transformer; cross-attention between two streams
# is the other main design.

# %%
image_enc, text_enc = image_model[0].eval(), text_model[0].eval()
with torch.no_grad():
    feats = {s: (image_enc(getattr(fusion, s).images), text_enc(ids[s])) for s in ("train", "test")}
    toks = {s: (image_enc.tokens(getattr(fusion, s).images), text_enc.tokens(ids[s])) for s in ("train", "test")}

seed_everything(0)
concat = ConcatFusion(64, 64, 25)
fit(concat, StackDataset(image=feats["train"][0], text=feats["train"][1], labels=y["train"]),
    epochs=8, lr=3e-3, seed=0, progress=False)
cross = CrossAttentionFusion(image_dim=image_enc.token_dim, text_dim=32, num_classes=25)
fit(cross, StackDataset(image=toks["train"][0], text=toks["train"][1], text_padding_mask=ids["train"] == 0,
                        labels=y["train"]), epochs=8, lr=3e-3, seed=0, progress=False)
results["feature: concat + MLP"] = accuracy(
    predict(concat, StackDataset(image=feats["test"][0], text=feats["test"][1], labels=y["test"])), y["test"])
results["feature: cross-attention"] = accuracy(
    predict(cross, StackDataset(image=toks["test"][0], text=toks["test"][1], text_padding_mask=ids["test"] == 0,
                                labels=y["test"])), y["test"])

fusion_table = pd.Series(results, name="test accuracy").to_frame()
ax = fusion_table["test accuracy"].iloc[::-1].plot.barh(figsize=(6, 3.6), color=["C0"] * 7 + ["C1"] * 2)
ax.axvline(1 / 25, ls=":", c="k", label="chance (1/25)")
ax.set_xlabel("test accuracy (25 classes)")
ax.set_title("One modality vs fusing both")
ax.legend(loc="upper right")
plt.show()
fusion_table.round(3)

# %% [markdown]
# **Claim: fusion beats each single modality on a task that needs both.**

# %%
single = max(results["image only"], results["text only"])
fused = {k: v for k, v in results.items() if k not in ("image only", "text only")}
glue("ch07_fusion_single", 100 * single)
glue("ch07_fusion_mean", 100 * results["late: mean"])
glue("ch07_fusion_worst", 100 * min(fused.values()))
glue("ch07_fusion_uncal", 100 * results["late: mean, uncalibrated"])
glue("ch07_fusion_product", 100 * results["late: product"])
glue("ch07_fusion_learned", 100 * results["late: learned (stacking)"])
assert all(v > single + 0.3 for v in fused.values()), fused
assert max(fused.values()) > 0.75, fused

# %% [markdown]
# The best single modality reaches {glue:text}`ch07_fusion_single:.1f`%; every fusion method
# does far better, the weakest {glue:text}`ch07_fusion_worst:.1f`%. The rules are not equal,
# though. The mean rule ({glue:text}`ch07_fusion_mean:.1f`%) adds evidence like an "or": when the
# image model hesitates between two shapes, the text model's preferences among shapes — which
# carry no information, the text never names the shape — can tip the balance. The product rule
# multiplies evidence like an "and" and is Bayes' rule for two views that are independent given
# the label, which is exactly how this task was made; it and the learned combiner (which can
# learn the same thing) reach {glue:text}`ch07_fusion_product:.1f`% and
# {glue:text}`ch07_fusion_learned:.1f`%. Temperature scaling does not change any single model's
# decisions, only how much each one weighs in the mix; here the uncalibrated mean happens to do
# better ({glue:text}`ch07_fusion_uncal:.1f`%) — choose the fusion rule on validation data,
# not by habit. The feature-level models, which see both feature vectors and learn how they
# interact, are as accurate as the best decision rules.
#
# ```{admonition} Pitfall: averaging outputs that do not share a label space
# :class: warning
# One source document fused a text model ending in a one-unit sigmoid (IMDB sentiment:
# positive or negative) with an image model ending in a 10-way softmax (CIFAR-10 classes) by
# averaging the two outputs. The two numbers answer different questions, so their mean means
# nothing — and NumPy/TensorFlow broadcasting makes the `(N, 1)` and `(N, 10)` arrays add up
# without an error. Late fusion needs (1) a common label space, (2) the *same examples* seen by
# both models (IMDB reviews are not about CIFAR images), and (3) calibrated probabilities.
# `late_fusion` checks the first and refuses the rest of the mistake:
# ```

# %%
sigmoid_out = torch.rand(4, 1)  # P(positive review)
softmax_out = torch.rand(4, 10).softmax(1)  # P(CIFAR class)
print("silent broadcasting:", tuple(((sigmoid_out + softmax_out) / 2).shape))
try:
    late_fusion([sigmoid_out, softmax_out])
except ValueError as err:
    print("late_fusion:", err)

# %% [markdown]
# ## 7.3 Joint learning in a shared space: a CLIP-style dual encoder
#
# Instead of training the two models apart, **contrastive learning** trains them together so
# that an image and its caption land close to each other in one embedding space
# {footcite}`radford2021learning`. An image tower $f$ and a text tower $g$, each followed by a
# linear projection, map a batch of $N$ matching pairs to unit vectors $u_i$ and $v_j$; with a
# learnable temperature $T$ the similarity matrix is $S_{ij} = u_i^\top v_j / T$ and the loss is
# the symmetric InfoNCE {footcite}`oord2018representation`:
#
# $$ \mathcal{L} = \frac12\left[ -\frac1N \sum_{i} \log \frac{e^{S_{ii}}}{\sum_j e^{S_{ij}}}
#    - \frac1N \sum_{j} \log \frac{e^{S_{jj}}}{\sum_i e^{S_{ij}}} \right]. $$ (eq-ch7-infonce)
#
# Each row is a classification of "which caption belongs to this image?" over the batch, each
# column the reverse. As in CLIP, $1/T$ starts at $1/0.07$, is learned (as $\log(1/T)$) and
# is clamped at 100. Written out from {eq}`eq-ch7-infonce` and checked against the package:

# %%
def infonce_by_hand(image_emb, text_emb, temperature):
    u, v = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    s = u @ v.T / temperature
    rows = -(s.diagonal() - s.logsumexp(dim=1)).mean()  # image -> text
    cols = -(s.diagonal() - s.logsumexp(dim=0)).mean()  # text -> image
    return (rows + cols) / 2


u, v = torch.randn(8, 16), torch.randn(8, 16)
scaled = F.normalize(u, dim=-1) @ F.normalize(v, dim=-1).T / 0.07
assert torch.allclose(infonce_by_hand(u, v, 0.07), clip_loss(scaled), atol=1e-5)
print(f"uniform logits give log N: {clip_loss(torch.zeros(8, 8)):.4f} = {np.log(8):.4f}")

# %% [markdown]
# The image tower is the small CNN used above; the text tower a bag of word embeddings, both
# trained from scratch on the {glue:text}`ch07_n_train` training pairs.

# %%
tok = WordTokenizer.fit(train.captions)
train_ids = tok.encode(train.captions, add_special=False)
test_ids = tok.encode(test.captions, add_special=False)
seed_everything(0)
clip = DualEncoder(ConvImageEncoder(width=16, out_dim=128), TokenTextEncoder(len(tok), dim=64, out_dim=128),
                   image_dim=128, text_dim=128, embed_dim=64)
history = fit_dual_encoder(clip, train.images, train_ids, epochs=14, batch_size=128, lr=3e-3, seed=0)
glue("ch07_temperature", clip.loss_fn.temperature)
fig, ax = plt.subplots(figsize=(4.5, 3))
ax.plot(range(1, len(history) + 1), history["loss"], marker="o")
ax.axhline(np.log(128), ls=":", c="k", label="log N (chance)")
ax.set_xlabel("epoch")
ax.set_ylabel("contrastive loss")
ax.set_title("Dual encoder training")
ax.legend()
plt.show()
print(f"learned temperature: {clip.loss_fn.temperature:.3f} (started at 0.07)")

# %% [markdown]
# **Retrieval.** With both modalities in one space, search works in either direction: rank all
# test captions by similarity to an image (image → text) or all images for a caption (text →
# image). Recall@$k$ is the fraction of queries whose partner is among the top $k$. Many test
# scenes share all five attributes, so their captions are interchangeable; we therefore also
# count a hit when the retrieved item describes *the same scene attributes*.

# %%
img_emb = embed(clip.encode_image, test.images)
txt_emb = embed(clip.encode_text, test_ids)
sim = img_emb @ txt_emb.T
attrs = torch.stack([test.attributes[a] for a in ("shape", "colour", "size", "position", "count")], 1)
same_scene = (attrs[:, None, :] == attrs[None, :, :]).all(-1)
retrieval = pd.DataFrame({
    "image → text": recall_at_k(sim, (1, 5, 10)),
    "text → image": recall_at_k(sim.T, (1, 5, 10)),
    "image → text (same attributes)": recall_at_k(sim, (1, 5, 10), relevant=same_scene),
    "text → image (same attributes)": recall_at_k(sim.T, (1, 5, 10), relevant=same_scene),
    "image → text, novel scenes only": recall_at_k(sim[test.novel], (1, 5, 10),
                                                   relevant=torch.eye(len(test), dtype=torch.bool)[test.novel]),
    "chance (exact pair)": {k: k / len(test) for k in (1, 5, 10)},
}).T.rename(columns=lambda k: f"R@{k}")
glue("ch07_r1_i2t", 100 * retrieval.loc["image → text", "R@1"])
glue("ch07_r5_t2i", 100 * retrieval.loc["text → image", "R@5"])
retrieval.round(3)

# %% [markdown]
# The exact partner caption is the first hit for {glue:text}`ch07_r1_i2t:.0f`% of the test
# images, and a caption's own image is among the top five for {glue:text}`ch07_r5_t2i:.0f`% of
# the captions, among 1,000 candidates (chance: 0.1% and 0.5%). Most "misses" at rank 1 are
# captions of other scenes with the same attributes. Images of the held-out combinations are
# harder to match, but still far above chance (the "novel scenes only" row).
#
# Text → image search for a few queries, including combinations that never appeared in
# training (marked *novel*). Each row shows the five best test images.

# %%
queries = ["two large red stars", "a small blue triangle at the top", "three green circles",
           "a big purple square on the left", "one yellow cross near the bottom"]
q_emb = embed(clip.encode_text, tok.encode(queries, add_special=False))
top = (q_emb @ img_emb.T).topk(5, dim=1).indices
fig, axes = plt.subplots(len(queries), 5, figsize=(6.5, 1.45 * len(queries)))
for r, q in enumerate(queries):
    novel = any(c in q and s in q for s, c in DEFAULT_HOLDOUT)
    for c in range(5):
        axes[r, c].imshow(test.images[top[r, c]].permute(1, 2, 0).numpy())
        axes[r, c].set_xticks([])
        axes[r, c].set_yticks([])
    axes[r, 0].set_ylabel(textwrap.fill(q + (" (novel)" if novel else ""), 16), fontsize=7, rotation=0,
                          ha="right", va="center")
fig.suptitle("Text → image retrieval: top 5 test images per query")
fig.tight_layout()
plt.show()

# %% [markdown]
# The shared space is organised by attribute. Below, a 2-D PCA of the test image embeddings,
# coloured once by the object colour and once by the object shape, with the 25 class prompts
# ("a red circle", ...) projected into the same plane (black crosses). Colour dominates the first
# directions — it is the easiest attribute to see — and shape separates within each colour. The
# prompts sit apart from the images: contrastive training aligns *directions* and rankings, not
# positions, and a "modality gap" between the two clouds is typical of CLIP-style models
# {footcite}`liang2022mind`.

# %%
prompt_texts = [p[0] for p in zero_shot_prompts("combo", "train")]
prompt_emb = embed(clip.encode_text, tok.encode(prompt_texts, add_special=False))
pca = PCA(2, random_state=0).fit(img_emb.numpy())
xy_img, xy_txt = pca.transform(img_emb.numpy()), pca.transform(prompt_emb.numpy())
palette = ["tab:red", "tab:green", "tab:blue", "gold", "tab:purple"]
fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharex=True, sharey=True)
for ax, attr, names, colours in ((axes[0], "colour", COLOURS, palette),
                                 (axes[1], "shape", SHAPES, ["C0", "C1", "C2", "C7", "C9"])):
    for k, name in enumerate(names):
        rows = (test.attributes[attr] == k).numpy()
        ax.scatter(xy_img[rows, 0], xy_img[rows, 1], c=colours[k], s=8, alpha=0.5, label=name)
    ax.scatter(xy_txt[:, 0], xy_txt[:, 1], c="k", marker="x", s=20, label="class prompt")
    ax.set_xlabel("PCA 1")
    ax.set_title(f"test images coloured by {attr}")
    ax.legend(fontsize=7, markerscale=2)
axes[0].set_ylabel("PCA 2")
fig.suptitle("The shared embedding space (PCA of image embeddings)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 7.4 Cross-modal transfer
#
# ### Zero-shot classification of combinations never seen in training
#
# A dual encoder turns any set of sentences into a classifier: embed one prompt per class and
# give each image the class of its closest prompt. **Zero-shot learning does not mean "no
# training data"** (a claim in the source documents): the model was trained on plenty of
# image–text pairs; what it never saw are *labelled examples of the target classes*. The text
# is the side information that describes them. Here the target classes are the 25
# (colour, shape) pairs, and five of them never appeared in any training caption.

# %%
zs_logits = zero_shot_logits(img_emb, prompt_emb)
pred = zs_logits.argmax(1)
labels = test.labels
novel = test.novel
zs = {
    "novel combinations": float((pred[novel] == labels[novel]).float().mean()),
    "seen combinations": float((pred[~novel] == labels[~novel]).float().mean()),
    "  shape part right (novel)": float((pred[novel] // 5 == labels[novel] // 5).float().mean()),
    "  colour part right (novel)": float((pred[novel] % 5 == labels[novel] % 5).float().mean()),
    "chance": 1 / 25,
}
glue("ch07_zs_novel", 100 * zs["novel combinations"])
glue("ch07_zs_seen", 100 * zs["seen combinations"])
pd.Series(zs, name="zero-shot accuracy (25 classes)").round(3).to_frame()

# %% [markdown]
# **Claim: zero-shot accuracy on held-out combinations is far above chance.**

# %%
assert zs["novel combinations"] > 5 * zs["chance"], zs

# %% [markdown]
# On the held-out combinations the dual encoder is right {glue:text}`ch07_zs_novel:.1f`% of
# the time (chance: 4%; seen combinations: {glue:text}`ch07_zs_seen:.1f`%). Colour transfers
# almost perfectly; the shape part is harder — compositional generalisation of a small CNN has
# limits, and this is where most errors are.
#
# ### Borrowing a pretrained language model
#
# The text tower above only knows the {glue:text}`ch07_vocab` words of the training captions.
# Ask it about a "crimson disk" and it sees `<unk> <unk>`: no amount of image training can fix
# that. A **pretrained language model** has read about crimson things and disks. LiT
# ("locked-image tuning", {footcite}`zhai2022lit`) showed that the best way to combine a strong
# pretrained tower with contrastive training is to **lock** it and train the other side to
# match it. Here the pretrained tower is the text one: all-MiniLM-L6-v2
# {footcite}`reimers2019sentence,wang2020minilm`, a 22.7M-parameter sentence encoder that ships
# with the course and works offline. We lock it completely — no projection, its own
# geometry — and compute its sentence embeddings once. On the image side we reuse the image
# tower just trained, frozen, and train a fresh two-layer projection into MiniLM's space.
#
# The baseline is identical except for the text side: a bag-of-words tower trained from scratch
# against the same frozen image features. We test with prompts whose sentences **and** target
# words never occur in training captions ({glue:text}`ch07_unseen_words`), for three tasks:
# naming the colour (5 classes, prompt averaged over the five shapes), naming the shape, and the
# 25 combinations. Each tower is trained with three seeds.

# %%
glue("ch07_vocab", len(tok))
glue("ch07_unseen_words", ", ".join(w for a in ("colour", "shape") for ws in UNSEEN_SYNONYMS[a].values() for w in ws))
tasks = {(t, p): zero_shot_prompts(t, p) for t in ("colour", "shape", "combo") for p in ("train", "unseen")}
flat_prompts = [s for groups in tasks.values() for g in groups for s in g]
N_LIT = 800  # captions embedded by the language model (a forward pass per distinct sentence)
minilm = load_text_encoder("all-MiniLM-L6-v2")
lm_table, lm_rows = sentence_embeddings(train.captions[:N_LIT] + flat_prompts, encoder=minilm)
print(f"{len(lm_table)} distinct sentences embedded, dimension {lm_table.shape[1]}")

with torch.no_grad():
    frozen_train = clip.image_encoder(train.images[:N_LIT])
    frozen_test = embed(clip.image_encoder, test.images)
truth = {"colour": test.attributes["colour"], "shape": test.attributes["shape"], "combo": test.labels}


def image_head(out_dim):
    return nn.Sequential(EmbeddingTable(frozen_train), nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, out_dim))


def text_side(kind):
    if kind == "scratch":
        prompt_in = tok.encode(flat_prompts, add_special=False)
        tower = TokenTextEncoder(len(tok), dim=64, out_dim=128)
        model = DualEncoder(image_head(128), tower, 128, 128, embed_dim=64)
        return model, train_ids[:N_LIT], prompt_in
    model = DualEncoder(image_head(384), EmbeddingTable(lm_table), 384, 384, embed_dim=384,
                        project_image=False, project_text=False, freeze_text=True)
    return model, lm_rows[:N_LIT], lm_rows[N_LIT:]


lit = []
for kind in ("scratch text tower", "pretrained MiniLM (locked)"):
    for seed in range(3):
        seed_everything(seed)
        model, text_in, prompt_in = text_side("scratch" if kind.startswith("scratch") else "minilm")
        fit_dual_encoder(model, torch.arange(N_LIT), text_in, epochs=20, batch_size=128, lr=3e-3, seed=seed)
        model.image_encoder[0].table = frozen_test  # the same image head, now on the test images
        ie = embed(model.encode_image, torch.arange(len(test)))
        pe = embed(model.encode_text, prompt_in)
        start = 0
        for (target, phrasing), groups in tasks.items():
            counts = [len(g) for g in groups]
            classes = average_prompts(pe[start:start + sum(counts)], counts)
            start += sum(counts)
            acc = float((zero_shot_logits(ie, classes).argmax(1) == truth[target]).float().mean())
            lit.append({"text tower": kind, "seed": seed, "task": target, "prompts": phrasing, "accuracy": acc})
lit = pd.DataFrame(lit)
summary = lit.groupby(["prompts", "task", "text tower"])["accuracy"].agg(["mean", "std"]).unstack("text tower")
summary.round(3)

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.2))
unseen = summary.loc["unseen"]
x = np.arange(len(unseen))
for i, kind in enumerate(("scratch text tower", "pretrained MiniLM (locked)")):
    ax.bar(x + (i - 0.5) * 0.38, unseen[("mean", kind)], 0.38, yerr=unseen[("std", kind)], label=kind, capsize=3)
chance = {"colour": 0.2, "shape": 0.2, "combo": 0.04}
for j, t in enumerate(unseen.index):
    ax.hlines(chance[t], j - 0.4, j + 0.4, colors="k", linestyles=":")
ax.set_xticks(x, [f"{t}\n({5 if t != 'combo' else 25} classes)" for t in unseen.index])
ax.set_ylabel("zero-shot test accuracy")
ax.set_title("Prompts with unseen words and sentences (dotted: chance)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# **Claim: the pretrained text tower beats the scratch text tower on unseen phrasings.**

# %%
mean = summary[("mean", "pretrained MiniLM (locked)")], summary[("mean", "scratch text tower")]
gain = (mean[0] - mean[1]).loc["unseen"]
glue("ch07_lit_colour_pre", 100 * mean[0].loc[("unseen", "colour")])
glue("ch07_lit_colour_scr", 100 * mean[1].loc[("unseen", "colour")])
glue("ch07_lit_combo_pre", 100 * mean[0].loc[("unseen", "combo")])
glue("ch07_lit_combo_scr", 100 * mean[1].loc[("unseen", "combo")])
glue("ch07_lit_shape_pre", 100 * mean[0].loc[("unseen", "shape")])
glue("ch07_lit_shape_scr", 100 * mean[1].loc[("unseen", "shape")])
assert gain.mean() > 0.05, gain
assert gain["colour"] > 0.1 and mean[0].loc[("unseen", "combo")] > 2 * mean[1].loc[("unseen", "combo")], gain

# %% [markdown]
# With words it was never trained on, the scratch tower is at chance: every unknown word is the
# same `<unk>`. The locked language model names the colour {glue:text}`ch07_lit_colour_pre:.0f`%
# of the time (scratch: {glue:text}`ch07_lit_colour_scr:.0f`%, chance 20%) and the 25
# combinations {glue:text}`ch07_lit_combo_pre:.1f`% (scratch:
# {glue:text}`ch07_lit_combo_scr:.1f`%, chance 4%). Shape words transfer less
# ({glue:text}`ch07_lit_shape_pre:.0f`% vs {glue:text}`ch07_lit_shape_scr:.0f`%): "wedge" or
# "asterisk" are far from "triangle" and "star" in a sentence encoder trained on web text. With
# the training words, both towers are about equally good — the pretrained model's value is
# precisely what it knows *beyond* our captions. Locking matters: even a trained linear
# projection on top of MiniLM, fitted on 800 captions, keeps only the directions that separate
# the training words and loses much of this transfer (Exercise 3).
#
# Note what is *not* possible: feeding CNN image features straight into a text classifier, as a
# source document suggested. Features transfer only inside a shared input space, or — as here —
# through **paired data** that ties the two spaces together.
#
# ## 7.5 Image captioning with cross-attention
#
# A captioner *generates* the sentence word by word:
#
# $$ p(w_1, \dots, w_T \mid x) = \prod_{t=1}^{T} p(w_t \mid w_{<t}, x). $$ (eq-ch7-caption)
#
# The image encoder turns $x$ into region vectors; a small transformer decoder reads the words so
# far with causal self-attention and looks at the regions with cross-attention at every step —
# the attention-over-regions idea of Show, Attend and Tell {footcite}`xu2015show`. Training
# uses teacher forcing (the true previous words as input), plus *word dropout*
# {footcite}`bowman2016generating`: 30% of the input words are replaced by `<unk>`, which forces
# the decoder to look at the image instead of guessing from the words so far.
#
# ```{admonition} Pitfall: BertForConditionalGeneration does not exist
# :class: warning
# A source document captions images with `BertForConditionalGeneration.from_pretrained(...)`
# and `model.generate(...)` on the *tokenised caption*. There is no such class in
# `transformers`, and the code never passes the image to the model. BERT is an encoder: it has
# no decoder and no cross-attention, so it cannot condition text generation on an image.
# Captioning needs an encoder–decoder with cross-attention, as below (or, with `transformers`,
# a `VisionEncoderDecoderModel` that pairs a vision encoder with a text decoder).
# ```
#
# The region features come from the image tower of Section 7.3, frozen — one more transfer, from
# contrastive pretraining to generation. Only the decoder trains.

# %%
cap_tokens = tok.encode(train.captions)
region = lambda x: clip.image_encoder.tokens(x, pool=2, summary=True)  # noqa: E731
train_regions, test_regions = embed(region, train.images), embed(region, test.images)
seed_everything(0)
captioner = Captioner(len(tok), feature_dim=clip.image_encoder.token_dim, d_model=64, nhead=4, num_layers=1,
                      dim_feedforward=128, max_len=cap_tokens.shape[1] + 1)
cap_history = fit_captioner(captioner, train_regions, cap_tokens, epochs=8, batch_size=64, lr=3e-3,
                            word_dropout=0.3, seed=0)
print("loss per epoch:", np.round(cap_history["loss"], 3))

max_words = cap_tokens.shape[1] - 1
greedy_ids = greedy_decode(captioner, test_regions[:200], max_len=max_words)
assert torch.equal(beam_search(captioner, test_regions[:200], beam_width=1, max_len=max_words), greedy_ids)
generated = {
    "greedy": generate_captions(captioner, tok, test_regions, max_len=max_words),
    "beam (width 3)": generate_captions(captioner, tok, test_regions, beam_width=3, max_len=max_words),
}

# %% [markdown]
# Beam search with width 1 *is* greedy decoding (checked above). We score each generated
# caption by reading back the attributes it names (synonyms included) and comparing them with
# the scene; an attribute the caption does not mention counts as wrong.

# %%
cap_rows = []
for method, caps in generated.items():
    for part, mask in (("seen combinations", ~novel), ("novel combinations", novel)):
        acc = attribute_accuracy([c for c, m in zip(caps, mask) if m], {k: v[mask] for k, v in test.attributes.items()})
        cap_rows.append({"decoding": method, "test images": part, **acc})
    cap_rows.append({"decoding": method, "test images": "all", **attribute_accuracy(caps, test.attributes)})
cap_table = pd.DataFrame(cap_rows).set_index(["decoding", "test images"])
attr_cols = ["shape", "colour", "size", "position", "count"]
cap_table["mean of 5 attributes"] = cap_table[attr_cols].mean(axis=1)
cap_table.round(3)

# %%
order = torch.cat([torch.nonzero(~novel)[:6, 0], torch.nonzero(novel)[:6, 0]])
caption_grid(test.images[order], [("" if not novel[i] else "[novel] ") + generated["beam (width 3)"][i] for i in order],
             title="Generated captions (beam search) — top: seen combinations, bottom: novel")
plt.show()

# %% [markdown]
# **Claim: generated captions name the right attributes for most test images.**

# %%
best = cap_table.loc["beam (width 3)"]
glue("ch07_cap_mean_all", 100 * best.loc["all", "mean of 5 attributes"])
glue("ch07_cap_colour", 100 * best.loc["all", "colour"])
glue("ch07_cap_count", 100 * best.loc["all", "count"])
glue("ch07_cap_position", 100 * best.loc["all", "position"])
glue("ch07_cap_shape_seen", 100 * best.loc["seen combinations", "shape"])
glue("ch07_cap_shape_novel", 100 * best.loc["novel combinations", "shape"])
assert best.loc["all", "mean of 5 attributes"] > 0.6, best
assert best.loc["all", "colour"] > 0.9 and best.loc["all", "count"] > 0.7
assert best.loc["seen combinations", "shape"] > 0.5

# %% [markdown]
# Averaged over the five attributes, a generated caption names the right value
# {glue:text}`ch07_cap_mean_all:.0f`% of the time: the colour {glue:text}`ch07_cap_colour:.0f`%,
# the count {glue:text}`ch07_cap_count:.0f`%, the position
# {glue:text}`ch07_cap_position:.0f`%. The shape is right for
# {glue:text}`ch07_cap_shape_seen:.0f`% of the seen combinations but only
# {glue:text}`ch07_cap_shape_novel:.0f`% of the novel ones: after writing "green", a decoder
# that never read "green circle" prefers a shape it *has* seen in green. Generation inherits the
# co-occurrence statistics of its training captions; the dual encoder, which scores a whole
# sentence against the image instead of writing it word by word, transferred much better to the
# same held-out combinations (Section 7.4).
#
# ## Summary
#
# - **Late fusion** combines calibrated probability distributions over one common label space
#   (mean, weighted, product, learned). On a task where each modality holds half of the answer it
#   lifts accuracy from {glue:text}`ch07_fusion_single:.0f`% to
#   {glue:text}`ch07_fusion_product:.0f`% (product rule); feature-level fusion (concatenation,
#   cross-attention) does as well. Averaging outputs of different label spaces is meaningless.
# - **Contrastive learning** (symmetric InfoNCE with a learned temperature) builds a shared
#   space in which retrieval and **zero-shot classification** work: {glue:text}`ch07_zs_novel:.0f`%
#   on combinations never seen in training, against 4% chance.
# - A **locked pretrained language model** carries over what it knows about words: prompts with
#   unseen words are understood far better than by a tower trained from scratch, which cannot
#   read them at all.
# - **Captioning** needs a decoder with cross-attention to image regions; greedy and beam search
#   decode it. Generated captions get colour, count and position right most of the time, but
#   fall back on seen co-occurrences for novel combinations.
#
# ## Exercises
#
# ```{exercise}
# :label: ch7-ex1
# Make the image model of Section 7.2 over-confident by dividing its logits by 0.2, then fuse
# with the mean and the product rule, with and without temperature scaling. What changes, and
# why?
# ```
#
# ```{solution} ch7-ex1
# :class: dropdown
# The mean rule suffers: the sharpened image model puts almost all of its mass on a single
# (shape, colour) guess, and the text model's half of the mixture cannot outvote it, so
# accuracy falls towards that of the image model alone (it roughly halves). The product rule
# barely moves: in log space sharpening multiplies the image model's log-probabilities by 5,
# which keeps its ranking of the shapes, and the text model still vetoes every wrong colour.
# With temperature scaling nothing changes at all: the fitted temperature absorbs the factor
# exactly (it comes out five times larger) and the calibrated probabilities are the same as
# before. Calibration makes fusion independent of how sharp each model happens to be.
# ```
#
# ```{exercise}
# :label: ch7-ex2
# Train the dual encoder with a *fixed* temperature of 1 (`ContrastiveLoss(init_temperature=1.0,
# learnable=False)` in place of `clip.loss_fn`). What happens to the loss and to zero-shot
# accuracy, and why does CLIP learn the temperature?
# ```
#
# ```{solution} ch7-ex2
# :class: dropdown
# Cosine similarities lie in [−1, 1]; with $T = 1$ the logits differ by at most 2, so the
# softmax over 128 captions can never become confident and the loss cannot fall far below
# $\log N$. The gradients stay weak and the embeddings separate slowly, so accuracy typically
# drops. A learned temperature
# (here it falls to {glue:text}`ch07_temperature:.3f`) lets the model sharpen the softmax as
# the embeddings improve; the clamp at 100 prevents it from exploding.
# ```
#
# ```{exercise}
# :label: ch7-ex3
# In the locked-text experiment, add a trainable linear projection on the MiniLM side
# (`project_text=True`, `embed_dim=64`). Compare the zero-shot accuracy on unseen phrasings.
# ```
#
# ```{solution} ch7-ex3
# :class: dropdown
# Accuracy with the *training* words stays about the same, but with unseen words it drops
# towards the scratch tower (in our runs, colour naming lost about a quarter of its gain over
# chance and the 25-way accuracy about half): the projection is fitted only on directions that separate the training
# words, and squashes the others — including the ones that carry "crimson ≈ red". This is the
# LiT lesson in miniature: keep the pretrained tower locked and let the other side adapt.
# ```
#
# ```{exercise}
# :label: ch7-ex4
# Decode the test images with beam width 1, 3 and 10, and with `length_penalty=1`. How do the
# caption lengths and the attribute accuracies change?
# ```
#
# ```{solution} ch7-ex4
# :class: dropdown
# Wider beams find captions that the model finds more probable, which is not the same as more
# informative: the summed log-probability favours short sentences, so a wide beam may drop
# optional attributes (size, position) and lose accuracy on them, while `length_penalty=1`
# (the score divided by the length) counteracts the bias towards short captions. Measure
# rather than guess: the best width and penalty depend on the model and are tuned on
# validation data in captioning papers.
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
