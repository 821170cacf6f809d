"""Procedural image–caption data for chapter 7 (multimodal learning).

Every example is a small colour image of one to three identical objects and a sentence that
describes it. Five attributes define a scene:

=========  ===================================================
shape      circle, square, triangle, cross, star
colour     red, green, blue, yellow, purple
size       small, large
position   left, right, top, bottom (the half of the image the objects sit in)
count      one, two, three
=========  ===================================================

Images are drawn with anti-aliased analytic masks on crops of real photographs shipped with
scikit-learn (:func:`sklearn.datasets.load_sample_images`), entirely vectorised: thousands of
images take a fraction of a second. Captions come from a small grammar with several sentence
templates and synonyms ("two little scarlet discs on the left", "at the top there is one big
green box"), so that a text model has to read words, not match strings.

Compositional generalisation is tested by **holding out attribute combinations**: by default
five (shape, colour) pairs, one per shape and one per colour (e.g. *green circle*), never occur
in the training split, while every shape and every colour does. The test split mixes held-out
("novel") and seen combinations; ``dataset.novel`` marks the former.

Two more word lists are kept apart from the training grammar: :data:`UNSEEN_SYNONYMS`
("crimson", "disk", ...) and :data:`UNSEEN_TEMPLATES`, used only to phrase test prompts in ways
the training captions never did (chapter 7, locked-text tuning with a pretrained language model).

:func:`make_fusion_task` builds a task where **each modality alone is ambiguous**: the image is
seen through a grayscale camera (the colour is lost, the shape is visible) and the text is a
witness's note that names the colour but never the shape; the label is the (colour, shape) pair.

One module per part: :mod:`~tlcourse.data.captions.scenes` (attributes, sampling, rendering),
:mod:`~tlcourse.data.captions.grammar` (caption grammar, prompts, caption parser) and
:mod:`~tlcourse.data.captions.datasets` (the datasets and their builders).
"""

from tlcourse.data.captions.datasets import (
    CaptionDataset,
    CaptionSplit,
    FusionDataset,
    FusionSplit,
    make_captions,
    make_fusion_task,
    reference_captions,
)
from tlcourse.data.captions.grammar import (
    SYNONYMS,
    UNSEEN_SYNONYMS,
    UNSEEN_TEMPLATES,
    caption_scenes,
    class_prompts,
    parse_caption,
    zero_shot_prompts,
)
from tlcourse.data.captions.scenes import (
    ATTRIBUTES,
    COLOURS,
    COUNTS,
    DEFAULT_HOLDOUT,
    POSITIONS,
    SHAPES,
    SIZES,
    combo_index,
    combo_names,
    render_scenes,
    sample_scenes,
)

__all__ = [
    "SHAPES",
    "COLOURS",
    "SIZES",
    "POSITIONS",
    "COUNTS",
    "ATTRIBUTES",
    "DEFAULT_HOLDOUT",
    "SYNONYMS",
    "UNSEEN_SYNONYMS",
    "UNSEEN_TEMPLATES",
    "CaptionDataset",
    "CaptionSplit",
    "FusionDataset",
    "FusionSplit",
    "sample_scenes",
    "render_scenes",
    "caption_scenes",
    "make_captions",
    "make_fusion_task",
    "reference_captions",
    "combo_index",
    "combo_names",
    "class_prompts",
    "zero_shot_prompts",
    "parse_caption",
]
