"""Bad input to chapter 7's caption metrics and reference captions: clear errors naming the argument."""

from __future__ import annotations

import pytest

from tlcourse.multimodal.caption_metrics import CiderD, caption_tokens, cider_d, corpus_bleu, ngram_counts

CASES = [
    ("caption not text", lambda: caption_tokens(3), TypeError, "caption"),
    ("ngram n=0", lambda: ngram_counts(["a"], 0), ValueError, "n must"),
    ("bleu empty candidates", lambda: corpus_bleu([], []), ValueError, "candidates"),
    ("bleu candidates a string", lambda: corpus_bleu("a b", [["a b"]]), ValueError, "candidates"),
    ("bleu references length", lambda: corpus_bleu(["a"], [["a"], ["b"]]), ValueError, "references"),
    ("bleu reference not a list", lambda: corpus_bleu(["a"], ["a"]), ValueError, r"references\[0\]"),
    ("bleu max_n 0", lambda: corpus_bleu(["a"], [["a"]], max_n=0), ValueError, "max_n"),
    ("cider sigma 0", lambda: cider_d(["a"], [["a"]], sigma=0), ValueError, "sigma"),
    ("cider empty refs", lambda: cider_d(["a"], [[]]), ValueError, r"references\[0\]"),
    ("CiderD wrong number of candidates", lambda: CiderD([["a"], ["b"]]).score(["a"]), ValueError, "per image"),
]


@pytest.mark.parametrize("label, call, exc, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input(label, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_bad_reference_and_subword_input():
    from tlcourse.data.captions import make_captions, reference_captions
    from tlcourse.multimodal.tokenizer import subword_ids

    with pytest.raises(TypeError, match="dataset"):
        reference_captions(["a red disc"])
    with pytest.raises(ValueError, match="n must"):
        reference_captions(make_captions(5, 5).test, n=0)
    with pytest.raises(TypeError, match="tokenizer"):
        subword_ids(None, ["a"])
