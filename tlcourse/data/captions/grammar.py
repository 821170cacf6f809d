"""The caption grammar: synonyms, sentence templates, prompts, and a parser for captions.

Captions come from a small grammar with several templates and synonyms, so that a text model
has to read words, not match strings; :data:`UNSEEN_SYNONYMS` and :data:`UNSEEN_TEMPLATES` are
kept out of every training caption (for prompts phrased in a new way). :func:`parse_caption`
reads the attributes back from any caption (to score generated captions).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from tlcourse.checks import check_choice, check_int
from tlcourse.data.captions.scenes import COLOURS, POSITIONS, SHAPES, SIZES

__all__ = [
    "SYNONYMS",
    "UNSEEN_SYNONYMS",
    "UNSEEN_TEMPLATES",
    "caption_scenes",
    "class_prompts",
    "zero_shot_prompts",
    "parse_caption",
    "fusion_note",
]

#: Words of the training grammar, per attribute value (first entry = canonical word).
SYNONYMS: dict[str, dict] = {
    "shape": {
        "circle": ["circle", "disc"],
        "square": ["square", "box"],
        "triangle": ["triangle"],
        "cross": ["cross"],
        "star": ["star"],
    },
    "colour": {
        "red": ["red", "scarlet"],
        "green": ["green"],
        "blue": ["blue"],
        "yellow": ["yellow"],
        "purple": ["purple", "violet"],
    },
    "size": {"small": ["small", "little", "tiny"], "large": ["large", "big"]},
    "position": {
        "left": ["on the left", "at the left", "in the left half"],
        "right": ["on the right", "at the right", "in the right half"],
        "top": ["at the top", "near the top", "in the upper half"],
        "bottom": ["at the bottom", "near the bottom", "in the lower half"],
    },
    "count": {1: ["a", "one", "a single"], 2: ["two", "a pair of"], 3: ["three"]},
}

#: Words that never occur in training captions (for prompts phrased in an unseen way).
UNSEEN_SYNONYMS: dict[str, dict] = {
    "shape": {
        "circle": ["disk", "ring"],
        "square": ["block", "tile"],
        "triangle": ["wedge"],
        "cross": ["plus", "plus sign"],
        "star": ["asterisk"],
    },
    "colour": {
        "red": ["crimson"],
        "green": ["lime"],
        "blue": ["azure"],
        "yellow": ["golden"],
        "purple": ["lilac", "lavender"],
    },
}

#: Training sentence templates. Slots: {count} {size} {colour} {shape} {position} {be}.
_TEMPLATES: tuple[str, ...] = (
    "{count} {size} {colour} {shape} {position}",
    "{count} {colour} {shape} {position}",
    "{count} {size} {colour} {shape}",
    "there {be} {count} {size} {colour} {shape} {position}",
    "{position} there {be} {count} {colour} {shape}",
    "{position} {be} {count} {size} {colour} {shape}",
    "a picture of {count} {size} {colour} {shape} {position}",
    "{count} {shape} in {colour} {position}",
)

#: Prompt templates that never occur in training captions. Slots: {a} {colour} {shape}.
UNSEEN_TEMPLATES: tuple[str, ...] = (
    "i can see {a} {colour} {shape} here",
    "this image contains {a} {colour} {shape}",
    "look at {a} {colour} {shape}",
)

_PLURAL_EXCEPTIONS = {"box": "boxes", "cross": "crosses", "plus sign": "plus signs", "plus": "pluses"}


def _plural(noun: str) -> str:
    return _PLURAL_EXCEPTIONS.get(noun, noun + "s")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"



def _pick(rng: np.random.Generator, words: Sequence[str]) -> str:
    return words[int(rng.integers(len(words)))]


def caption_scenes(scenes: dict[str, np.ndarray], rng: np.random.Generator) -> list[str]:
    """One caption per scene from the training grammar (random template and synonyms)."""
    captions = []
    n = len(scenes["shape"])
    template_ids = rng.integers(0, len(_TEMPLATES), n)
    for i in range(n):
        count = int(scenes["count"][i])
        shape = _pick(rng, SYNONYMS["shape"][SHAPES[scenes["shape"][i]]])
        text = _TEMPLATES[template_ids[i]].format(
            count=_pick(rng, SYNONYMS["count"][count]),
            size=_pick(rng, SYNONYMS["size"][SIZES[scenes["size"][i]]]),
            colour=_pick(rng, SYNONYMS["colour"][COLOURS[scenes["colour"][i]]]),
            shape=shape if count == 1 else _plural(shape),
            position=_pick(rng, SYNONYMS["position"][POSITIONS[scenes["position"][i]]]),
            be="is" if count == 1 else "are",
        )
        captions.append(text)
    return captions


def class_prompts(phrasing: str = "train", template: str | None = None, synonym: int = 0) -> list[str]:
    """One text prompt per (shape, colour) class, in :func:`combo_index` order.

    ``phrasing="train"`` uses the canonical training words ("a red circle");
    ``phrasing="unseen"`` uses :data:`UNSEEN_SYNONYMS` and :data:`UNSEEN_TEMPLATES` (first
    template unless ``template`` is given): sentences and words that no training caption contains
    ("i can see a crimson disk here"). ``synonym`` picks the i-th word of each synonym list
    (cycling through shorter lists).
    """
    check_choice("phrasing", phrasing, ("train", "unseen"))
    synonym = check_int("synonym", synonym, minimum=0)
    if template is None:
        template = "{a} {colour} {shape}" if phrasing == "train" else UNSEEN_TEMPLATES[0]
    if not isinstance(template, str) or "{colour}" not in template or "{shape}" not in template:
        raise ValueError("template must be a str with {colour} and {shape} slots (and optionally {a})")
    words = SYNONYMS if phrasing == "train" else UNSEEN_SYNONYMS
    prompts = []
    for s in SHAPES:
        for c in COLOURS:
            colours, shapes = words["colour"][c], words["shape"][s]
            colour = colours[synonym % len(colours)]
            prompts.append(template.format(a=_article(colour), colour=colour, shape=shapes[synonym % len(shapes)]))
    return prompts


def zero_shot_prompts(target: str = "combo", phrasing: str = "train") -> list[list[str]]:
    """Prompts for zero-shot classification: one *list* of prompts per class (to be averaged).

    ``target``: ``"combo"`` (25 (shape, colour) classes, :func:`combo_index` order), ``"colour"``
    or ``"shape"`` (5 classes each). ``phrasing="train"`` uses the canonical training words in
    the sentence "a red circle"; ``phrasing="unseen"`` uses :data:`UNSEEN_TEMPLATES` and, for the
    target attribute(s), :data:`UNSEEN_SYNONYMS` (two variants each), so that no prompt sentence
    and no target word ever occurred in a training caption. For ``"colour"`` the prompts of a
    class run over all five shapes (named with training words), and vice versa for ``"shape"``.
    """
    check_choice("target", target, ("combo", "colour", "shape"))
    check_choice("phrasing", phrasing, ("train", "unseen"))
    unseen = phrasing == "unseen"

    def words(attr: str, value: str, k: int) -> str:
        new_word = unseen and target in (attr, "combo")
        options = (UNSEEN_SYNONYMS if new_word else SYNONYMS)[attr][value]
        return options[k % len(options)]

    def sentence(colour: str, shape: str, k: int) -> str:
        template = UNSEEN_TEMPLATES[k % len(UNSEEN_TEMPLATES)] if unseen else "{a} {colour} {shape}"
        return template.format(a=_article(colour), colour=colour, shape=shape)

    variants = (0, 1) if unseen else (0,)
    if target == "combo":
        return [
            [sentence(words("colour", c, k), words("shape", s, k), k) for k in variants]
            for s in SHAPES
            for c in COLOURS
        ]
    if target == "colour":
        return [
            [
                sentence(words("colour", c, k), SYNONYMS["shape"][s][0], i + k)
                for k in variants
                for i, s in enumerate(SHAPES)
            ]
            for c in COLOURS
        ]
    return [
        [sentence(COLOURS[i], words("shape", s, k), i + k) for k in variants for i, _ in enumerate(COLOURS)]
        for s in SHAPES
    ]


def _phrase_table() -> dict[str, dict[str, object]]:
    table: dict[str, dict[str, object]] = {}
    for attr in ("shape", "colour", "size", "position"):
        table[attr] = {}
        for source in (SYNONYMS, UNSEEN_SYNONYMS):
            for value, words in source.get(attr, {}).items():
                for w in words:
                    table[attr][w] = value
                    if attr == "shape":
                        table[attr][_plural(w)] = value
    table["count"] = {"one": 1, "a single": 1, "two": 2, "a pair of": 2, "three": 3}
    return table


_PHRASES = _phrase_table()


def parse_caption(text: str) -> dict[str, object | None]:
    """Read the attributes a caption names: ``{"shape": "circle", "colour": "red", ...}``.

    Synonyms (training and unseen) map to canonical values; an attribute the caption does not
    mention is ``None``; when a caption names two different values of one attribute, the first
    one (leftmost) wins. A count is a number word, or an article ("a", "an") right before the
    noun phrase ("a picture of two discs" counts two). Used to score generated captions (attribute accuracy).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    padded = " " + re.sub(r"\s+", " ", text.lower()).strip() + " "
    out: dict[str, object | None] = {}
    for attr, phrases in _PHRASES.items():
        best: tuple[int, int, object] | None = None  # (position, -length, value)
        for phrase, value in phrases.items():
            at = padded.find(" " + phrase + " ")
            if at >= 0 and (best is None or (at, -len(phrase)) < best[:2]):
                best = (at, -len(phrase), value)
        out[attr] = None if best is None else best[2]
    if out["count"] is None and out["shape"] is not None:
        # "a little red circle": an article right before the noun phrase means one object.
        noun_phrase = r" an? (?:(?:{}) )*(?:{}) ".format(
            "|".join(map(re.escape, list(_PHRASES["size"]) + list(_PHRASES["colour"]))),
            "|".join(map(re.escape, _PHRASES["shape"])),
        )
        if re.search(noun_phrase, padded):
            out["count"] = 1
    return out



_FUSION_TEMPLATES: tuple[str, ...] = (
    "it was {colour}",
    "something {colour} {position}",
    "{count} {size} {colour} {thing}",
    "i saw {count} {colour} {thing} {position}",
    "the {thing_} looked {colour} to me",
    "{colour} and {size}",
)



def fusion_note(scenes: dict[str, np.ndarray], rng: np.random.Generator) -> list[str]:
    """A witness's note per scene for the fusion task: names the colour, never the shape."""
    texts = []
    template_ids = rng.integers(0, len(_FUSION_TEMPLATES), len(scenes["shape"]))
    for i, t in enumerate(template_ids):
        count = int(scenes["count"][i])
        texts.append(
            _FUSION_TEMPLATES[t].format(
                colour=_pick(rng, SYNONYMS["colour"][COLOURS[scenes["colour"][i]]]),
                size=_pick(rng, SYNONYMS["size"][SIZES[scenes["size"][i]]]),
                position=_pick(rng, SYNONYMS["position"][POSITIONS[scenes["position"][i]]]),
                count=_pick(rng, SYNONYMS["count"][count]),
                thing="thing" if count == 1 else "things",
                thing_="thing" if count == 1 else "things",
            )
        )
    return texts
