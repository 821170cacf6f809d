"""Caption metrics: corpus BLEU-4 (Papineni et al. 2002) and CIDEr-D (Vedantam et al. 2015).

Both compare a generated caption with several human (here: grammar-written) reference captions
of the same image, through n-grams (runs of ``n`` consecutive words, ``n = 1..4``).

**BLEU-N** (book Eq. (7.6)). For every candidate ``c`` the count of each n-gram is *clipped* at
the largest count of that n-gram in any one reference; the modified precision ``p_n`` sums the
clipped counts over the whole corpus and divides by the candidates' total n-gram count. With
``c`` the total candidate length and ``r`` the sum of the reference lengths closest to each
candidate's length (ties go to the shorter one), the brevity penalty is
``BP = 1`` if ``c > r`` else ``exp(1 − r/c)``, and

.. math:: \\mathrm{BLEU} = \\mathrm{BP}\\cdot\\exp\\Big(\\sum_{n=1}^{N} w_n \\log p_n\\Big),\\quad w_n = 1/N.

Any ``p_n = 0`` gives 0 (no smoothing): BLEU is a corpus-level score, not a sentence score.

**CIDEr-D** (book Eq. (7.7)). Each sentence becomes, per ``n``, a TF-IDF vector ``g^n``: the
raw count of every n-gram times ``log(I / max(1, df))``, where ``I`` is the number of images and
``df`` the number of images whose references contain the n-gram (n-grams every image's
references use weigh nothing). The "-D" variant, as in the reference implementation of the
COCO caption evaluation, *clips* the candidate's weights at the reference's and multiplies by a
Gaussian penalty on the length difference ``δ = l_c − l_r`` with ``σ = 6``:

.. math:: \\mathrm{CIDEr\\text{-}D}_n(c, R) = \\frac{10}{|R|}\\sum_{r\\in R}
          e^{-\\delta^2/(2\\sigma^2)}\\,
          \\frac{\\sum_k \\min(g^n_k(c), g^n_k(r))\\, g^n_k(r)}{\\|g^n(c)\\|\\,\\|g^n(r)\\|},

and ``CIDEr-D`` is the mean over ``n = 1..4``, per image; the corpus score is the mean over
images. The factor 10 puts typical COCO scores near 1. Both metrics see *words*: a correct
caption that uses a synonym the references lack is penalised, which is why chapter 7 reports
them beside attribute accuracy (are the right colour, shape, ... named at all?).

Tested against hand-computed examples from the BLEU paper and against ``nltk``'s
``corpus_bleu`` and ``pycocoevalcap``'s CIDEr-D on small corpora (``tests/test_caption_metrics.py``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["caption_tokens", "ngram_counts", "BleuResult", "corpus_bleu", "CiderD", "cider_d"]

Text = str | Sequence[str]


def caption_tokens(text: Text) -> list[str]:
    """Lower-case word tokens without punctuation (``"Two red discs."`` → ``['two', 'red', 'discs']``).

    A list of tokens is returned as it is (already tokenised).
    """
    if isinstance(text, str):
        return re.findall(r"[a-z0-9']+", text.lower())
    if isinstance(text, Sequence) and all(isinstance(t, str) for t in text):
        return list(text)
    raise TypeError(f"a caption must be a str or a list of str tokens, got {type(text).__name__}")


def ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the n-grams (tuples of ``n`` consecutive tokens) of one sentence."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _check_candidates(candidates: Sequence[Text]) -> list[list[str]]:
    if isinstance(candidates, str) or not isinstance(candidates, Sequence) or len(candidates) == 0:
        raise ValueError("candidates must be a non-empty list of captions (one per image)")
    return [caption_tokens(c) for c in candidates]


def _check_references(references: Sequence[Sequence[Text]], n: int | None = None) -> list[list[list[str]]]:
    if isinstance(references, str) or not isinstance(references, Sequence) or len(references) == 0 \
            or (n is not None and len(references) != n):
        got = len(references) if isinstance(references, Sequence) else type(references).__name__
        raise ValueError(f"references must hold one list of reference captions per image"
                         f"{f' ({n})' if n is not None else ''}, got {got}")
    refs = []
    for i, r in enumerate(references):
        if isinstance(r, str) or not isinstance(r, Sequence) or len(r) == 0:
            raise ValueError(f"references[{i}] must be a non-empty list of captions, got {r!r}")
        refs.append([caption_tokens(x) for x in r])
    return refs


def _check_corpus(candidates: Sequence[Text], references: Sequence[Sequence[Text]]) -> tuple[list, list]:
    cands = _check_candidates(candidates)
    return cands, _check_references(references, len(cands))


@dataclass(frozen=True)
class BleuResult:
    """Corpus BLEU with its parts: modified precisions ``p_n``, brevity penalty, lengths."""

    score: float
    precisions: tuple[float, ...]
    brevity_penalty: float
    candidate_length: int
    reference_length: int


def corpus_bleu(candidates: Sequence[Text], references: Sequence[Sequence[Text]], max_n: int = 4) -> BleuResult:
    """Corpus-level BLEU-``max_n`` with uniform weights, Papineni et al. (2002), book Eq. (7.6).

    ``candidates[i]`` is the generated caption of image ``i`` (a string or a token list) and
    ``references[i]`` the list of its reference captions.
    """
    if isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 1:
        raise ValueError(f"max_n must be an int >= 1, got {max_n!r}")
    cands, refs = _check_corpus(candidates, references)
    matched, total = np.zeros(max_n), np.zeros(max_n)
    c_len = r_len = 0
    for cand, rs in zip(cands, refs):
        c_len += len(cand)
        r_len += min((len(r) for r in rs), key=lambda length: (abs(length - len(cand)), length))
        for n in range(1, max_n + 1):
            counts = ngram_counts(cand, n)
            most: Counter = Counter()
            for r in rs:
                most |= ngram_counts(r, n)  # element-wise maximum over the references
            matched[n - 1] += sum(min(k, most[g]) for g, k in counts.items())
            total[n - 1] += max(len(cand) - n + 1, 0)
    precisions = tuple(float(m / t) if t else 0.0 for m, t in zip(matched, total))
    bp = 1.0 if c_len > r_len else (math.exp(1.0 - r_len / c_len) if c_len else 0.0)
    score = 0.0 if min(precisions) == 0.0 else bp * math.exp(sum(math.log(p) for p in precisions) / max_n)
    return BleuResult(score, precisions, bp, c_len, r_len)


def _tfidf(tokens: list[str], n: int, idf: dict, log_images: float) -> tuple[dict, float]:
    vec = {g: k * idf.get(g, log_images) for g, k in ngram_counts(tokens, n).items()}
    return vec, math.sqrt(sum(v * v for v in vec.values()))


class CiderD:
    """CIDEr-D against fixed references: the IDF and the reference vectors are computed once,
    then :meth:`score` scores any number of systems' candidates (see :func:`cider_d`)."""

    def __init__(self, references: Sequence[Sequence[Text]], max_n: int = 4, sigma: float = 6.0) -> None:
        if isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 1:
            raise ValueError(f"max_n must be an int >= 1, got {max_n!r}")
        if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma > 0:
            raise ValueError(f"sigma must be a number > 0, got {sigma!r}")
        self.refs = _check_references(references)
        self.max_n, self.sigma = max_n, float(sigma)
        self.log_images = math.log(len(self.refs))
        self.idf = []
        for n in range(1, max_n + 1):
            df: Counter = Counter()
            for rs in self.refs:
                df.update({g for r in rs for g in ngram_counts(r, n)})
            self.idf.append({g: self.log_images - math.log(max(1.0, d)) for g, d in df.items()})
        self.ref_vectors = [[[_tfidf(r, n, self.idf[n - 1], self.log_images) for n in range(1, max_n + 1)]
                             for r in rs] for rs in self.refs]

    def score(self, candidates: Sequence[Text]) -> tuple[float, np.ndarray]:
        """``(mean score, per-image scores)`` of one candidate caption per image."""
        cands = _check_candidates(candidates)
        if len(cands) != len(self.refs):
            raise ValueError(f"candidates must hold one caption per image ({len(self.refs)}), got {len(cands)}")
        scores = np.zeros(len(cands))
        for i, (cand, rs) in enumerate(zip(cands, self.refs)):
            total = 0.0
            for n in range(1, self.max_n + 1):
                vc, norm_c = _tfidf(cand, n, self.idf[n - 1], self.log_images)
                for r, ref_vecs in zip(rs, self.ref_vectors[i]):
                    vr, norm_r = ref_vecs[n - 1]
                    if norm_c == 0.0 or norm_r == 0.0:
                        continue
                    overlap = sum(min(w, vr[g]) * vr[g] for g, w in vc.items() if g in vr)
                    penalty = math.exp(-((len(cand) - len(r)) ** 2) / (2 * self.sigma**2))
                    total += overlap / (norm_c * norm_r) * penalty / len(rs)
            scores[i] = 10.0 * total / self.max_n
        return float(scores.mean()), scores


def cider_d(
    candidates: Sequence[Text],
    references: Sequence[Sequence[Text]],
    max_n: int = 4,
    sigma: float = 6.0,
) -> tuple[float, np.ndarray]:
    """CIDEr-D of a corpus (Vedantam et al. 2015), book Eq. (7.7): ``(mean score, per-image scores)``.

    Document frequencies come from the references of *this* corpus (as in the COCO evaluation),
    so scores are comparable only between systems scored on the same images and references.
    To score several systems against the same references, build :class:`CiderD` once.
    """
    _check_corpus(candidates, references)
    return CiderD(references, max_n, sigma).score(candidates)
