"""Joint learning in a shared space: a CLIP-style dual encoder (Radford et al. 2021).

An image tower :math:`f` and a text tower :math:`g`, each followed by a linear projection, map
a batch of :math:`N` matching pairs to unit vectors :math:`u_i = f(x_i)/\\|f(x_i)\\|` and
:math:`v_j = g(t_j)/\\|g(t_j)\\|`. With the logit scale :math:`s = e^{\\tau'} = 1/T`, the
similarities are :math:`S_{ij} = s\\, u_i^\\top v_j` and the loss is the symmetric InfoNCE
(Oord et al. 2018), book Eq. (7.4):

.. math::

    \\mathcal L = \\tfrac12\\Big[-\\tfrac1N\\sum_i \\log\\frac{e^{S_{ii}}}{\\sum_j e^{S_{ij}}}
                  -\\tfrac1N\\sum_j \\log\\frac{e^{S_{jj}}}{\\sum_i e^{S_{ij}}}\\Big],

cross-entropy over rows (image → text) and over columns (text → image) with the diagonal as
targets. As in CLIP, :math:`\\tau'` is learned, initialised at :math:`\\log(1/0.07)` and the
scale is clamped at 100. Uniform logits give :math:`\\log N`; perfect alignment gives ≈ 0.

**Negatives across processes.** Every other pair of the batch is a negative, so a larger batch
is a harder, better-estimated task (CLIP trains with 32,768 pairs). Under ``torchrun`` each
process embeds only its slice of the global batch; :class:`ContrastiveLoss` gathers the
embeddings of every process *with their gradient*
(:func:`~tlcourse.distributed.gather_with_grad`, as open_clip's ``gather_with_grad``) and
scores its own rows against all columns, so the negatives span the global batch and the
gradients equal those of one process holding the whole batch.

Cross-modal transfer then needs no new training: **zero-shot classification** embeds one text
prompt per class and picks the closest (:func:`zero_shot_logits`), and **retrieval** ranks one
modality by similarity to the other (:func:`recall_at_k`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.checks import check_finite, check_int, check_positive, check_tensor
from tlcourse.distributed import gather_with_grad, rank, world_size
from tlcourse.utils import get_device

if TYPE_CHECKING:
    from tlcourse.train import History

__all__ = [
    "clip_loss",
    "ContrastiveLoss",
    "DualEncoder",
    "fit_dual_encoder",
    "embed",
    "zero_shot_logits",
    "average_prompts",
    "recall_at_k",
]


def clip_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of a square similarity matrix, book Eq. (7.4).

    ``logits_per_image[i, j]`` scores image ``i`` against text ``j``; pair ``i`` matches ``i``.
    """
    check_tensor("logits_per_image", logits_per_image, ndim=2, dtype="float")
    n, m = logits_per_image.shape
    if n != m or n == 0:
        raise ValueError(f"logits_per_image must be a non-empty square (N, N) matrix, got shape {(n, m)}")
    targets = torch.arange(n, device=logits_per_image.device)
    image_to_text = F.cross_entropy(logits_per_image, targets)
    text_to_image = F.cross_entropy(logits_per_image.t(), targets)
    return 0.5 * (image_to_text + text_to_image)


class ContrastiveLoss(nn.Module):
    """CLIP's loss with a learnable temperature: ``forward(image_emb, text_emb) -> loss``.

    Embeddings ``(N, D)`` are L2-normalised here; the logit scale is ``exp(logit_scale)`` with
    ``logit_scale`` initialised at ``log(1/init_temperature)`` (CLIP: 1/0.07) and the scale
    clamped at ``max_scale`` (CLIP: 100) so that training cannot make it explode.
    """

    def __init__(self, init_temperature: float = 0.07, max_scale: float = 100.0, learnable: bool = True) -> None:
        super().__init__()
        check_positive("init_temperature", init_temperature)
        check_positive("max_scale", max_scale)
        if 1.0 / init_temperature > max_scale:
            raise ValueError(f"1/init_temperature ({1 / init_temperature:.3g}) must not exceed max_scale ({max_scale})")
        value = torch.tensor(math.log(1.0 / init_temperature))
        self.logit_scale = nn.Parameter(value, requires_grad=learnable)
        self.max_log_scale = math.log(max_scale)

    @property
    def scale(self) -> torch.Tensor:
        """The clamped multiplicative scale :math:`s = 1/T`."""
        return self.logit_scale.clamp(max=self.max_log_scale).exp()

    @property
    def temperature(self) -> float:
        return float(1.0 / self.scale.detach())

    def logits(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """``(N_images, N_texts)`` scaled cosine similarities."""
        check_tensor("image_emb", image_emb, ndim=2, dtype="float")
        check_tensor("text_emb", text_emb, ndim=2, dtype="float")
        if image_emb.shape[1] != text_emb.shape[1]:
            raise ValueError(
                "image_emb and text_emb must have the same embedding size, "
                f"got {image_emb.shape[1]} and {text_emb.shape[1]}"
            )
        return self.scale * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).t()

    def forward(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        if len(image_emb) != len(text_emb):
            raise ValueError(
                f"image_emb and text_emb must pair up (same length), got {len(image_emb)} and {len(text_emb)}"
            )
        check_finite("image_emb", image_emb)
        check_finite("text_emb", text_emb)
        if world_size() == 1:
            return clip_loss(self.logits(image_emb, text_emb))
        # This process's rows against the global batch's columns (Eq. 7.4 over the global batch):
        # averaged over processes, the loss and its gradients are those of one process.
        self.logits(image_emb, text_emb)  # validates the shapes
        image, text = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
        all_image, all_text = gather_with_grad(image), gather_with_grad(text)
        targets = torch.arange(len(image), device=image.device) + rank() * len(image)
        image_to_text = F.cross_entropy(self.scale * image @ all_text.t(), targets)
        text_to_image = F.cross_entropy(self.scale * text @ all_image.t(), targets)
        return 0.5 * (image_to_text + text_to_image)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:.4f}, max_scale={math.exp(self.max_log_scale):g}"


class DualEncoder(nn.Module):
    """Two towers and two linear projections into one ``embed_dim``-dimensional space.

    ``image_encoder(images) -> (N, image_dim)`` and ``text_encoder(texts) -> (N, text_dim)`` can be
    any modules (a CNN, a word-embedding model, a frozen :class:`~tlcourse.multimodal.encoders.
    EmbeddingTable` of pretrained sentence vectors, ...). ``freeze_image`` / ``freeze_text`` lock a
    tower (its parameters stop training and it runs in eval mode): locked-image tuning, LiT
    (Zhai et al. 2022), trains only the text side against a fixed image embedding.

    ``forward(images, texts)`` returns the loss of the batch (:class:`ContrastiveLoss`), so any
    loop can do ``model(images, texts).backward()``.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        text_encoder: nn.Module,
        image_dim: int,
        text_dim: int,
        embed_dim: int = 64,
        init_temperature: float = 0.07,
        freeze_image: bool = False,
        freeze_text: bool = False,
        project_image: bool = True,
        project_text: bool = True,
    ) -> None:
        super().__init__()
        for name, module in (("image_encoder", image_encoder), ("text_encoder", text_encoder)):
            if not isinstance(module, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module, got {type(module).__name__}")
        check_int("image_dim", image_dim, minimum=1)
        check_int("text_dim", text_dim, minimum=1)
        check_int("embed_dim", embed_dim, minimum=1)
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        for flag, name, dim in ((project_image, "image_dim", image_dim), (project_text, "text_dim", text_dim)):
            if not flag and dim != embed_dim:
                raise ValueError(f"without a projection, {name} ({dim}) must equal embed_dim ({embed_dim})")
        self.image_proj = nn.Linear(image_dim, embed_dim) if project_image else nn.Identity()
        self.text_proj = nn.Linear(text_dim, embed_dim) if project_text else nn.Identity()
        self.loss_fn = ContrastiveLoss(init_temperature)
        self.freeze_image, self.freeze_text = bool(freeze_image), bool(freeze_text)
        for flag, module in ((self.freeze_image, image_encoder), (self.freeze_text, text_encoder)):
            if flag:
                module.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> DualEncoder:
        super().train(mode)
        if self.freeze_image:
            self.image_encoder.eval()
        if self.freeze_text:
            self.text_encoder.eval()
        return self

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length image embeddings ``(N, embed_dim)``."""
        return F.normalize(self.image_proj(self.image_encoder(images)), dim=-1)

    def encode_text(self, texts: torch.Tensor) -> torch.Tensor:
        """Unit-length text embeddings ``(N, embed_dim)``."""
        return F.normalize(self.text_proj(self.text_encoder(texts)), dim=-1)

    def logits(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """``(N_images, N_texts)`` scaled similarities (CLIP's ``logits_per_image``)."""
        return self.loss_fn.logits(self.encode_image(images), self.encode_text(texts))

    def forward(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.encode_image(images), self.encode_text(texts))


def fit_dual_encoder(
    model: DualEncoder,
    images: Any,
    texts: torch.Tensor | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = False,
    **engine_options: Any,
) -> History:
    """Train ``model`` on matching ``(images[i], texts[i])`` pairs; returns the :class:`~tlcourse.train.History`.

    AdamW, one-cycle learning-rate schedule, shuffled batches that drop the last incomplete one:
    the whole method is ``loss = model(x, t)`` on the engine (``history["loss"]`` per epoch).
    ``images`` and ``texts`` are whatever the towers eat (pixels, token ids ``(N, L)``, or row
    numbers ``(N,)`` of an :class:`~tlcourse.multimodal.encoders.EmbeddingTable`); a ``Dataset``
    of ``(image, text)`` pairs may be passed as ``images`` instead. ``batch_size`` is per
    process: under ``torchrun`` the model is wrapped in DDP and the loss contrasts every pair
    with the global batch (see the module docstring). ``engine_options`` go to the engine
    (``amp``, ``channels_last``, ``compile``, ``grad_clip``, ``sync_batchnorm``,
    ``checkpoint``, ``resume``, ``nan_check_every``).
    """
    from tlcourse.train import Engine
    from tlcourse.train.engine import check_engine_options
    from tlcourse.train.loaders import as_dataset, paired_loader

    if not isinstance(model, DualEncoder):
        raise TypeError(f"model must be a DualEncoder, got {type(model).__name__}")
    if texts is not None:
        check_tensor("images", images)
        check_tensor("texts", texts)
        if len(images) != len(texts):
            raise ValueError(f"images and texts must pair up (same length), got {len(images)} and {len(texts)}")
    pairs = as_dataset("images", (images, texts) if texts is not None else images)
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=2)
    if len(pairs) < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} pairs, got {len(pairs)}")
    check_positive("lr", lr)
    options = check_engine_options(engine_options, [k for k in ("amp", "channels_last", "compile", "grad_clip",
                                                                "sync_batchnorm", "checkpoint", "resume",
                                                                "nan_check_every")])
    loader = paired_loader(pairs, None, batch_size, torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader), pct_start=0.15)
    engine = Engine({"model": model}, {"optimizer": opt}, schedulers={"one_cycle": sched}, scheduler_interval="step",
                    device=device, progress=progress, desc="clip", **options)
    net = engine.prepare(model, ddp=True)

    def step(batch: Any) -> dict[str, torch.Tensor]:
        (x, t, *_), _ = batch
        return {"loss": net(x, t)}

    history = engine.run(loader, step, epochs=epochs)
    model.eval()
    return history


@torch.no_grad()
def embed(
    fn: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Apply ``fn`` (e.g. ``model.encode_image``) in batches without gradients; result on the CPU."""
    check_tensor("inputs", inputs)
    check_int("batch_size", batch_size, minimum=1)
    dev = get_device(device)
    return torch.cat([fn(inputs[i : i + batch_size].to(dev)).cpu() for i in range(0, len(inputs), batch_size)])


def zero_shot_logits(image_emb: torch.Tensor, prompt_emb: torch.Tensor) -> torch.Tensor:
    """Zero-shot class scores ``(N, K)``: cosine similarity of each image to each class prompt.

    ``prompt_emb[k]`` embeds a text prompt for class ``k`` (e.g. "a red circle"); the predicted
    class is the closest prompt (Radford et al. 2021, Sec. 3.1.2). No labelled example of the
    classes is used — the side information is the text.
    """
    check_tensor("image_emb", image_emb, ndim=2, dtype="float")
    check_tensor("prompt_emb", prompt_emb, ndim=2, dtype="float")
    if image_emb.shape[1] != prompt_emb.shape[1]:
        raise ValueError(
            "image_emb and prompt_emb must have the same embedding size, "
            f"got {image_emb.shape[1]} and {prompt_emb.shape[1]}"
        )
    return F.normalize(image_emb, dim=-1) @ F.normalize(prompt_emb, dim=-1).t()


def average_prompts(prompt_emb: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """Prompt ensembling (Radford et al. 2021, Sec. 3.1.4): one unit vector per class.

    ``prompt_emb`` stacks the embeddings of every class's prompts, class after class;
    ``counts[k]`` is how many belong to class ``k``. Returns ``(K, D)`` normalised means.
    """
    check_tensor("prompt_emb", prompt_emb, ndim=2, dtype="float")
    counts = [check_int("counts[k]", c, minimum=1) for c in counts]
    if sum(counts) != len(prompt_emb):
        raise ValueError(f"counts must add up to the number of prompts ({len(prompt_emb)}), got {sum(counts)}")
    groups = torch.split(F.normalize(prompt_emb, dim=-1), counts)
    return F.normalize(torch.stack([g.mean(0) for g in groups]), dim=-1)


def recall_at_k(
    similarity: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    relevant: torch.Tensor | None = None,
) -> dict[int, float]:
    """Retrieval Recall@k: the fraction of queries with a relevant item among the top ``k``.

    ``similarity`` is ``(Q, C)`` (queries × candidates). By default query ``i``'s only relevant
    candidate is ``i`` (paired data); ``relevant`` (bool ``(Q, C)``) marks any set of relevant
    candidates instead (e.g. every caption of the same scene).
    """
    check_tensor("similarity", similarity, ndim=2, dtype="float")
    q, c = similarity.shape
    if q == 0 or c == 0:
        raise ValueError("similarity is empty: expected at least one query and one candidate")
    if relevant is None:
        if q > c:
            raise ValueError(f"without relevant, query i must match candidate i: need Q <= C, got {(q, c)}")
        relevant = torch.zeros(q, c, dtype=torch.bool)
        relevant[torch.arange(q), torch.arange(q)] = True
    check_tensor("relevant", relevant, ndim=2, dtype=torch.bool)
    if relevant.shape != similarity.shape:
        raise ValueError(f"relevant must have the shape of similarity {(q, c)}, got {tuple(relevant.shape)}")
    ks = [check_int("k", k, minimum=1) for k in ks]
    if not ks:
        raise ValueError("ks must name at least one k")
    order = similarity.argsort(dim=1, descending=True)[:, : min(max(ks), c)]
    hits = relevant.to(order.device).gather(1, order)
    return {k: float(hits[:, :k].any(dim=1).float().mean()) for k in ks}
