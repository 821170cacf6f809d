"""BLEU-4 and CIDEr-D (tlcourse.multimodal.caption_metrics) against the papers and the reference tools.

* Papineni et al. (2002): the worked examples of Section 2.1 (modified unigram precision 2/7 for
  "the the the ..."; 17/18 unigram and 10/17 bigram precision for their candidate 1) and the
  brevity penalty of Section 2.2.3, by hand.
* Vedantam et al. (2015) / the COCO caption evaluation's CIDEr-D: two-image corpora whose scores
  follow by hand from the formula (IDF, clipping, Gaussian length penalty with σ = 6, ×10).
* ``nltk.translate.bleu_score.corpus_bleu`` and ``pycocoevalcap``'s ``Cider`` on a corpus of
  grammar captions: the numbers they gave (nltk 3.10.4, pycocoevalcap 1.2) are pinned here, and
  compared live when those packages are installed.
"""

from __future__ import annotations

import math

import pytest

from tlcourse.data.captions import make_captions
from tlcourse.multimodal.caption_metrics import caption_tokens, cider_d, corpus_bleu, ngram_counts

# Papineni et al. (2002), Section 2.1, Example 2 (candidate 1 and its three references).
CAND1 = "It is a guide to action which ensures that the military always obeys the commands of the party."
REFS1 = [
    "It is a guide to action that ensures that the military will forever heed Party commands.",
    "It is the guiding principle which guarantees the military forces always being under the command of the Party.",
    "It is the practical guide for the army always to heed the directions of the party.",
]


def test_tokens_and_ngrams():
    assert caption_tokens("Two red Discs, on the left.") == ["two", "red", "discs", "on", "the", "left"]
    assert caption_tokens(["a", "b"]) == ["a", "b"]
    assert ngram_counts(["a", "b", "a", "b"], 2) == {("a", "b"): 2, ("b", "a"): 1}
    assert ngram_counts(["a"], 2) == {}


def test_bleu_paper_examples():
    # "the the the the the the the": modified unigram precision 2/7 (clipped at 2, "the" twice in ref 1).
    refs = [["The cat is on the mat.", "There is a cat on the mat."]]
    r = corpus_bleu(["the the the the the the the"], refs, max_n=1)
    assert r.precisions == (pytest.approx(2 / 7),)
    r = corpus_bleu([CAND1], [REFS1])
    assert r.precisions[:2] == (pytest.approx(17 / 18), pytest.approx(10 / 17))
    assert r.brevity_penalty == 1.0 and r.candidate_length == 18 and r.reference_length == 18
    assert r.score == pytest.approx(math.exp(sum(math.log(p) for p in r.precisions) / 4))


def test_bleu_brevity_penalty_and_zero():
    r = corpus_bleu(["the cat"], [["the cat is on the mat"]], max_n=2)  # c = 2, r = 6, p1 = p2 = 1
    assert r.brevity_penalty == pytest.approx(math.exp(1 - 6 / 2)) and r.score == pytest.approx(math.exp(-2))
    # closest reference length, ties to the shorter one: c = 3, refs of length 2 and 4 -> r = 2
    assert corpus_bleu(["a b c"], [["a b", "a b c d"]], max_n=1).reference_length == 2
    assert corpus_bleu(["x y z w"], [["a b c d"]]).score == 0.0  # no matching n-gram: no smoothing


def test_cider_d_by_hand():
    refs = [["red disc"], ["blue box"]]  # 2 images: idf of every reference word is log 2 - log 1
    score, per = cider_d(["red disc", "blue box"], refs, max_n=1)
    assert score == pytest.approx(10.0) and per.tolist() == pytest.approx([10.0, 10.0])
    _, per = cider_d(["red box", "blue box"], refs, max_n=1)  # cosine 1/2
    assert per[0] == pytest.approx(5.0)
    # Clipping: "red disc red disc" has twice the reference's weights; min() keeps the
    # reference's, so the cosine-like term is 1/2 (not 1), times the length penalty exp(-2²/(2·6²)).
    _, per = cider_d(["red disc red disc", "blue box"], refs, max_n=1)
    assert per[0] == pytest.approx(10 * 0.5 * math.exp(-4 / 72))
    _, per = cider_d(["red disc red disc", "blue box"], refs, max_n=1, sigma=1e9)
    assert per[0] == pytest.approx(5.0)
    # An n-gram that every image's references contain has idf 0 and counts for nothing.
    _, per = cider_d(["a", "a"], [["a red"], ["a blue"]], max_n=1)
    assert per.tolist() == [0.0, 0.0]


def _grammar_corpus():
    d = make_captions(200, 50, seed=1)
    cands = d.test.captions
    refs = [[d.train.captions[(i * 7 + j) % 200] for j in range(3)] + [cands[(i + 1) % 50]] for i in range(50)]
    refs[0].append(cands[0])
    return cands, refs


# Computed with nltk 3.10.4 corpus_bleu and pycocoevalcap 1.2 Cider on _grammar_corpus() (tokenised
# with caption_tokens, joined by spaces for pycocoevalcap).
NLTK_BLEU4 = 0.13572334878787878
COCO_CIDER_D = 0.3343785550183456


def test_against_pinned_reference_values():
    cands, refs = _grammar_corpus()
    assert corpus_bleu(cands, refs).score == pytest.approx(NLTK_BLEU4, abs=1e-12)
    assert cider_d(cands, refs)[0] == pytest.approx(COCO_CIDER_D, abs=1e-12)


def test_against_nltk_live():
    bleu = pytest.importorskip("nltk.translate.bleu_score")
    cands, refs = _grammar_corpus()
    expected = bleu.corpus_bleu([[caption_tokens(x) for x in r] for r in refs], [caption_tokens(c) for c in cands])
    assert corpus_bleu(cands, refs).score == pytest.approx(expected, abs=1e-12)


def test_against_pycocoevalcap_live():
    cider = pytest.importorskip("pycocoevalcap.cider.cider")
    cands, refs = _grammar_corpus()
    gts = {i: [" ".join(caption_tokens(x)) for x in r] for i, r in enumerate(refs)}
    res = {i: [" ".join(caption_tokens(c))] for i, c in enumerate(cands)}
    expected, per = cider.Cider().compute_score(gts, res)
    score, mine = cider_d(cands, refs)
    assert score == pytest.approx(expected, abs=1e-12)
    assert mine.tolist() == pytest.approx(list(per), abs=1e-12)


def test_reference_captions_describe_the_same_scene():
    from tlcourse.data.captions import parse_caption, reference_captions

    test = make_captions(50, 40, seed=0).test
    refs = reference_captions(test, n=5, seed=0)
    assert len(refs) == 40 and all(len(r) == 5 for r in refs)
    assert [r[0] for r in refs] == test.captions and refs == reference_captions(test, n=5, seed=0)
    for i, r in enumerate(refs):
        for text in r:
            parsed = parse_caption(text)
            assert parsed["count"] in (None, int(test.attributes["count"][i]))
            assert parsed["colour"] is not None and parsed["shape"] is not None
    assert len({t for r in refs for t in r[1:]} - set(test.captions)) > 0  # new sentences


def test_subword_ids_use_the_pretrained_vocabulary():
    from tlcourse.models.text import load_text_encoder
    from tlcourse.multimodal.tokenizer import subword_ids

    tokenizer, _ = load_text_encoder()
    ids = subword_ids(tokenizer, ["a crimson disk", "two scarlet discs on the left"])
    assert ids.shape[0] == 2 and ids.dtype.is_floating_point is False
    assert (ids[0] == tokenizer.pad_token_id).sum() > 0  # padded to the longer sentence
    assert tokenizer.unk_token_id not in ids.tolist()[0]  # unseen words are known subwords, not [UNK]
    assert tokenizer.decode(ids[0][ids[0] != tokenizer.pad_token_id]) == "a crimson disk"


def test_cider_scorer_reuses_references():
    from tlcourse.multimodal.caption_metrics import CiderD

    cands, refs = _grammar_corpus()
    scorer = CiderD(refs)
    assert scorer.score(cands)[0] == pytest.approx(COCO_CIDER_D, abs=1e-12)
    assert scorer.score(cands[::-1])[0] == pytest.approx(cider_d(cands[::-1], refs)[0], abs=1e-12)
