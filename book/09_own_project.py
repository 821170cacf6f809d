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
# (own-project)=
# # Using tlcourse in your own project
#
# The chapters run on the course's data. This page is about *yours*: a folder of your own images,
# a handful of your own sentences, your own training loop. It shows the few things the package
# expects from your data, what it tells you when something does not fit, and how a trained model
# is saved, loaded and asked for predictions *by class name*. It runs in well under a minute on a
# laptop CPU, with no network.
#
# | you have | the package gives you |
# |---|---|
# | a folder of images, one sub-folder per class | `load_pretrained(class_names=...)`, `model.preprocess` for `ImageFolder` |
# | sentences with intent names | `TextDataset(texts, names, classes=...)`, `TextClassifier`, LoRA |
# | your own PyTorch loop | the losses as plain modules: `MMDLoss`, `CORALLoss`, `L2SPLoss`, ... |
# | a trained model | `predict` / `predict_names` in dataset order, `save_weights` / `save_lora` |

# %%
# Colab only: install the course package (does nothing elsewhere).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "tlcourse @ git+https://github.com/tlcourse/tlcourse@v0.1.0"], check=True)

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torchvision.datasets import ImageFolder

import tlcourse
from tlcourse.utils import glue, seed_everything

seed_everything(0)
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
workdir = Path(tempfile.mkdtemp(prefix="tlcourse-own-"))
print("tlcourse", tlcourse.__version__, "| working in", workdir)

# %% [markdown]
# ## 1. Your own images
#
# Any folder laid out as `root/<class name>/<image file>` is a dataset for torchvision's
# `ImageFolder`. To keep this page offline we *draw* such a folder: 64×64 colour pictures of three
# shapes — discs, squares and triangles — of random colour, size and position on a blurred, noisy
# background. Think of them as your photos; nothing else in the book uses them.

# %%
SHAPES = ["disc", "square", "triangle"]


def draw(shape: str, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """One picture: a shape of random colour, size and place on a noisy, blurred background."""
    background = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    img = Image.fromarray(background).resize((size, size), Image.BILINEAR).filter(ImageFilter.GaussianBlur(2))
    pen = ImageDraw.Draw(img)
    r = rng.integers(size // 6, size // 3)
    cx, cy = rng.integers(r, size - r, 2)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    if shape == "disc":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        pen.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    else:
        pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return img


def write_folder(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        (root / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(shape, rng).save(root / shape / f"{i:03d}.png")
    return root


write_folder(workdir / "train", per_class=40, seed=1)
write_folder(workdir / "test", per_class=20, seed=2)
print(sorted(p.name for p in (workdir / "train").iterdir()), len(list((workdir / "train").rglob("*.png"))), "files")

# %%
fig, axes = plt.subplots(1, 9, figsize=(10, 1.5))
for ax, path in zip(axes, sorted((workdir / "train").rglob("00[0-2].png"))):
    ax.imshow(Image.open(path))
    ax.set_title(path.parent.name, fontsize=8)
    ax.axis("off")
fig.suptitle("Your own images (drawn for this page)", y=1.08)
plt.show()

# %% [markdown]
# ### The model's input contract
#
# The shipped backbone, like torchvision's ImageNet models, expects a particular input, and it is
# written down in code and in the model card: float images in $[0, 1]$, at least 8×8 pixels
# (it was pretrained at 28×28), and **no normalisation by you** — the model normalises inside.
# `model.preprocess` is the transform that produces exactly that from a PIL image (resize,
# convert to a tensor), the counterpart of torchvision's `weights.transforms()`.

# %%
from tlcourse.models import load_pretrained, model_card

model = load_pretrained(class_names=SHAPES, seed=0)   # pretrained backbone + a new 3-way head, named
print(model.preprocess)
print(model_card()["input"])
print("class names:", model.class_names)

# %% [markdown]
# Pass it as the dataset's `transform`, and `ImageFolder` hands out tensors the model accepts
# (its `classes` come from the folder names, in sorted order — the same as `SHAPES` here):

# %%
train = ImageFolder(workdir / "train", transform=model.preprocess)
test = ImageFolder(workdir / "test", transform=model.preprocess)
x, y = train[0]
print(train.classes, "| one item:", tuple(x.shape), x.dtype, f"range [{x.min():.2f}, {x.max():.2f}]", "label", y)
assert train.classes == SHAPES

# %% [markdown]
# ### What happens when an input does not fit
#
# Three common slips — forgetting the transform, feeding 0–255 pixel values, normalising with
# ImageNet's statistics — used to train or predict silently on garbage. Now each stops with a
# message that says what the input looks like and what to do:

# %%
from tlcourse.train import evaluate, fit, predict, predict_names

raw = ImageFolder(workdir / "train")                       # no transform: PIL images
batch = torch.stack([train[i][0] for i in range(8)])
slips = {
    "no transform": lambda: fit(load_pretrained(3), raw, epochs=1, progress=False),
    "0-255 values": lambda: model(batch * 255),
    "ImageNet-normalised": lambda: model((batch - 0.45) / 0.225),
}
for name, call in slips.items():
    try:
        call()
    except (TypeError, ValueError) as err:
        print(f"{name:20s} → {type(err).__name__}: {str(err)[:150]}...")
    else:
        raise AssertionError(f"{name} was accepted")

# %% [markdown]
# ### Train, evaluate, predict by name
#
# Fine-tune with `fit` (here: the top stage and the head, with the lower stages frozen). The
# history, the evaluation and the predictions are ordinary Python and tensors. `predict` accepts
# a dataset, a loader, a tensor batch, or — as below — a list of PIL images straight from disk, and
# `predict_names` answers with class names.

# %%
from tlcourse.finetune import trainable_stages

trainable_stages(model, train_top=2)
history = fit(model, train, epochs=5, lr=3e-3, batch_size=32, seed=0, progress=False)
image_acc = evaluate(model, test)["accuracy"]
glue("own_image_acc", f"{image_acc:.2f}", display=False)
print(f"test accuracy {image_acc:.3f}")

files = sorted((workdir / "test").rglob("01[0-1].png"))
pictures = [Image.open(f) for f in files]
print([f"{f.parent.name}/{f.name} → {name}" for f, name in zip(files, predict_names(model, pictures))])

# %% [markdown]
# The model learnt the three shapes from 40 pictures each, to a test accuracy of
# {glue:text}`own_image_acc`. The predictions come back **in the order of the data** whatever
# loader you pass (a shuffled `DataLoader` included), so they line up with your labels:

# %%
from torch.utils.data import DataLoader

shuffled = DataLoader(test, batch_size=16, shuffle=True)
same = torch.equal(predict(model, shuffled).argmax(1), predict(model, test).argmax(1))
print("shuffled loader, same predictions in dataset order:", same)
assert same

# %% [markdown]
# ### Save and load, with the class names
#
# `save_weights` writes one safetensors file (nothing is pickled) and keeps `class_names` in its
# metadata; `load_weights` puts them back. The reloaded model gives the same logits.

# %%
from tlcourse.checkpoint import load_weights, save_weights

save_weights(workdir / "shapes.safetensors", model)
reloaded = load_pretrained(3)                    # same architecture, a fresh head, no names
load_weights(workdir / "shapes.safetensors", reloaded)
print("names after loading:", reloaded.class_names)
assert torch.equal(predict(reloaded, test), predict(model, test))

# %% [markdown]
# ## 2. Your own sentences
#
# Three intents a voice assistant might meet, written as plain lists of strings with their intent
# *names*. `TextDataset` maps the names to indices through `classes`; a `TextClassifier` on the
# packaged MiniLM encoder learns them with LoRA adapters (chapter 4), which train
# {glue:text}`own_lora_share`% of its weights.

# %%
INTENTS = ["weather", "alarm", "music"]
examples = {
    "weather": ["will it rain tomorrow", "how cold is it outside", "is it sunny in lisbon today",
                "do i need an umbrella this afternoon", "what's the forecast for the weekend",
                "how windy will it be tonight", "is snow expected on monday", "tell me the temperature right now",
                "will there be a storm later", "is it going to be humid today", "how hot will it get on friday",
                "what is the weather like in oslo"],
    "alarm": ["wake me up at six thirty", "set an alarm for 7 am", "cancel my morning alarm",
              "remind me to leave in twenty minutes", "change the alarm to half past eight",
              "turn off all alarms", "set a timer for ten minutes", "snooze the alarm for five minutes",
              "i need to get up at 5 tomorrow", "delete the alarm for saturday", "ring me at noon",
              "start a countdown of three minutes"],
    "music": ["play some jazz", "put on my running playlist", "skip this song", "turn the music up",
              "play the latest album by that band", "pause the music", "shuffle my favourites",
              "play something relaxing for dinner", "who is singing this track", "repeat the last song",
              "stop the song", "play classical piano music"],
}
texts = [t for intent in INTENTS for t in examples[intent]]
names = [intent for intent in INTENTS for _ in examples[intent]]

# %%
from tlcourse.data import TextDataset, make_text_loader
from tlcourse.models import TextClassifier, apply_lora, load_text_encoder
from tlcourse.utils import count_parameters

sentences = TextDataset(texts, names, classes=INTENTS)   # names → indices through `classes`
print(sentences)
try:
    TextDataset(texts, names)                              # names without `classes`: a clear error
except TypeError as err:
    print("TypeError:", err)

tokenizer, encoder = load_text_encoder()
torch.manual_seed(0)
text_model = TextClassifier(encoder, num_classes=3, class_names=INTENTS, tokenizer=tokenizer)
apply_lora(text_model, ("query", "value"), r=4, trainable_modules=("head",))
n_trainable, n_all = count_parameters(text_model, trainable_only=True), count_parameters(text_model)
glue("own_lora_share", f"{100 * n_trainable / n_all:.2f}", display=False)
print(f"trainable parameters: {n_trainable:,} of {n_all:,}")

loader = make_text_loader(sentences, tokenizer, batch_size=18, seed=0)
text_history = fit(text_model, loader, epochs=5, lr=3e-3, seed=0, progress=False)
print("last training accuracy:", round(text_history.last["train_accuracy"], 3))

# %% [markdown]
# New sentences go straight in as strings: the model carries its tokenizer and class names.

# %%
new = ["could you set an alarm for six", "is it going to rain in paris", "play the song from that film",
       "how warm is it this evening", "switch off the alarm", "put on some rock music"]
for sentence, intent in zip(new, predict_names(text_model, new)):
    print(f"{sentence!r:40s} → {intent}")

# %% [markdown]
# ### Save and load the adapters with their head
#
# `save_lora` writes the adapters, their configuration **and every trainable non-LoRA module**
# (here the new head) into a folder laid out as `peft` lays it out (`adapter_config.json`,
# `adapter_model.safetensors`). `load_lora` rebuilds the adapters on a fresh copy of the base
# model; the logits are identical.

# %%
from tlcourse.models import load_lora, save_lora

save_lora(text_model, workdir / "intent-adapter")
print(sorted(p.name for p in (workdir / "intent-adapter").iterdir()))
_, fresh_encoder = load_text_encoder()
fresh = load_lora(TextClassifier(fresh_encoder, num_classes=3, tokenizer=tokenizer), workdir / "intent-adapter")
print("class names after loading:", fresh.class_names)
assert torch.equal(predict(fresh, new), predict(text_model, new))

# %% [markdown]
# ## 3. The package's losses in your own loop
#
# Nothing forces you to use `fit`. Every loss is a plain `nn.Module` or function you can add to
# any objective. Below is an ordinary PyTorch loop that fine-tunes a fresh model on the drawn
# shapes while aligning its features with *unlabelled* pictures from a shifted domain (colours
# inverted) through CORAL (chapter 6), and keeps the transferred weights near their pretrained
# values with L2-SP (chapter 3). As above, only the top stage and the head are trained.

# %%
from tlcourse.adapt import CORALLoss
from tlcourse.finetune import L2SPLoss

inverted = ImageFolder(workdir / "test", transform=lambda im: 1 - model.preprocess(im))  # target domain, no labels used
net = trainable_stages(load_pretrained(class_names=SHAPES, seed=0), train_top=2)
coral, l2sp = CORALLoss(), L2SPLoss(net, alpha=0.01, beta=0.0)
opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
source_batches = DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
target_batches = DataLoader(inverted, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(1))
losses = []
for _epoch in range(2):
    for (xs, ys), (xt, _) in zip(source_batches, target_batches):
        fs, ft = net.backbone(xs), net.backbone(xt)
        loss = l2sp(net.head(fs), ys) + 0.5 * coral(fs, ft)   # L2SPLoss = cross-entropy + the L2-SP penalty
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
plt.figure(figsize=(5, 2.5))
plt.plot(losses)
plt.xlabel("step")
plt.ylabel("CE + L2-SP + 0.5 CORAL")
plt.title("A plain PyTorch loop with the package's losses")
plt.show()

# %% [markdown]
# The losses check what they are given: a NaN in the features, an empty batch, a two-output
# discriminator or features that have collapsed to one point get a message naming the argument
# instead of a silent NaN. (These checks read a value on the host; on a GPU that is a device
# sync, so `tlcourse.checks.set_value_checks(False)` turns them off once a pipeline is known to be
# sound.)

# %%
try:
    coral(torch.full_like(fs, float("nan")), ft)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## Summary
#
# - Images: `ImageFolder(root, transform=model.preprocess)`; the backbone wants $[0, 1]$ input of
#   at least 8×8 pixels and normalises it itself, and says so when it gets something else.
# - Sentences: `TextDataset(texts, names, classes=...)`, a `TextClassifier` with LoRA, and
#   `predict_names(model, ["a new sentence"])`.
# - Predictions come back in dataset order for any loader; `predict_names` gives class names.
# - `save_weights`/`load_weights` and `save_lora`/`load_lora` keep the class names, the head and
#   the adapters; reloading gives the same logits.
# - The losses are plain modules for your own loop, and refuse inputs that would make them NaN.

# %% [markdown]
# ---

# %% tags=["remove-input"]
from tlcourse.book import last_executed  # noqa: E402

last_executed()
