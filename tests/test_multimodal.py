"""Tests of tlcourse.multimodal: fusion, contrastive dual encoder, captioning, encoders."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.data.captions import make_captions
from tlcourse.multimodal import (
    Captioner,
    ConcatFusion,
    ContrastiveLoss,
    ConvImageEncoder,
    CrossAttentionFusion,
    DualEncoder,
    EmbeddingTable,
    LearnedLateFusion,
    TokenTextEncoder,
    WordTokenizer,
    attribute_accuracy,
    beam_search,
    check_probabilities,
    clip_loss,
    embed,
    fit_captioner,
    fit_dual_encoder,
    generate_captions,
    greedy_decode,
    late_fusion,
    recall_at_k,
    sentence_embeddings,
    tune_fusion_weight,
    zero_shot_logits,
)

torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------
# Contrastive loss
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 7, 64])
def test_clip_loss_of_uniform_logits_is_log_n(n):
    assert float(clip_loss(torch.zeros(n, n))) == pytest.approx(math.log(n), rel=1e-6)
    assert float(clip_loss(torch.full((n, n), 3.7))) == pytest.approx(math.log(n), rel=1e-6)


def test_clip_loss_of_perfect_alignment_is_near_zero():
    emb = torch.linalg.qr(torch.randn(32, 32))[0][:16]  # orthonormal rows: perfectly separable pairs
    loss = ContrastiveLoss(init_temperature=0.01)(emb, emb)
    assert float(loss.detach()) < 1e-3


def test_clip_loss_is_symmetric_and_matches_the_formula():
    torch.manual_seed(0)
    logits = torch.randn(9, 9) * 3
    assert float(clip_loss(logits)) == pytest.approx(float(clip_loss(logits.t())), rel=1e-6)
    # written out: mean of the row-wise and column-wise softmax cross-entropies
    log_rows = logits.log_softmax(dim=1).diagonal()
    log_cols = logits.log_softmax(dim=0).diagonal()
    expected = -0.5 * (log_rows.mean() + log_cols.mean())
    assert float(clip_loss(logits)) == pytest.approx(float(expected), rel=1e-6)
    # swapping the modalities does not change the loss
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    loss = ContrastiveLoss()
    assert float(loss(a, b).detach()) == pytest.approx(float(loss(b, a).detach()), rel=1e-6)


def test_temperature_init_clamp_and_gradient():
    loss = ContrastiveLoss()
    assert float(loss.logit_scale.detach()) == pytest.approx(math.log(1 / 0.07))
    assert loss.temperature == pytest.approx(0.07, rel=1e-5)
    with torch.no_grad():
        loss.logit_scale.fill_(10.0)  # e^10 >> 100
    assert float(loss.scale.detach()) == pytest.approx(100.0)
    with torch.no_grad():
        loss.logit_scale.fill_(1.0)
    out = loss(torch.randn(4, 6), torch.randn(4, 6))
    out.backward()
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad != 0


def test_contrastive_bad_input():
    with pytest.raises(ValueError, match="square"):
        clip_loss(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="logits_per_image"):
        clip_loss(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="embedding size"):
        ContrastiveLoss()(torch.randn(4, 6), torch.randn(4, 5))
    with pytest.raises(ValueError, match="same length"):
        ContrastiveLoss()(torch.randn(4, 6), torch.randn(3, 6))
    with pytest.raises(ValueError, match="init_temperature"):
        ContrastiveLoss(init_temperature=0.0)
    with pytest.raises(ValueError, match="max_scale"):
        ContrastiveLoss(init_temperature=0.001)


def _toy_dual(freeze_image: bool = False) -> DualEncoder:
    torch.manual_seed(0)
    images = EmbeddingTable(torch.randn(40, 12))
    return DualEncoder(images, nn.Linear(7, 10), 12, 10, embed_dim=16, freeze_image=freeze_image)


def test_dual_encoder_embeddings_and_freezing():
    model = _toy_dual()
    img = model.encode_image(torch.arange(5))
    txt = model.encode_text(torch.randn(5, 7))
    assert img.shape == (5, 16) and txt.shape == (5, 16)
    assert torch.allclose(img.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert model.logits(torch.arange(5), torch.randn(3, 7)).shape == (5, 3)
    frozen = DualEncoder(ConvImageEncoder(width=4, out_dim=6), nn.Linear(7, 10), 6, 10, freeze_image=True)
    frozen.train()
    assert not frozen.image_encoder.training and frozen.text_encoder.training
    frozen(torch.rand(4, 3, 32, 32), torch.randn(4, 7)).backward()
    assert all(p.grad is None for p in frozen.image_encoder.parameters())
    assert frozen.image_proj.weight.grad is not None and frozen.text_proj.weight.grad is not None
    with pytest.raises(TypeError, match="image_encoder"):
        DualEncoder(lambda x: x, nn.Linear(2, 2), 2, 2)


def test_fit_dual_encoder_learns_pairs():
    model = _toy_dual()
    torch.manual_seed(1)
    texts = model.image_encoder.table @ torch.randn(12, 7)  # the text is a linear view of the image
    history = fit_dual_encoder(model, torch.arange(40), texts, epochs=30, batch_size=20, lr=1e-2)
    assert len(history) == 30 and history["loss"][-1] < 0.5 * history["loss"][0]
    sim = model.logits(torch.arange(40), texts)
    assert recall_at_k(sim, ks=(1,))[1] > 0.8
    with pytest.raises(ValueError, match="pair up"):
        fit_dual_encoder(model, torch.arange(40), texts[:30])
    with pytest.raises(ValueError, match="batch_size"):
        fit_dual_encoder(model, torch.arange(10), texts[:10], batch_size=20)


# --------------------------------------------------------------------------------------------
# Retrieval and zero-shot
# --------------------------------------------------------------------------------------------


def test_recall_at_k():
    assert recall_at_k(torch.eye(6), ks=(1, 5)) == {1: 1.0, 5: 1.0}
    sim = torch.tensor([[0.1, 0.9, 0.0], [0.9, 0.1, 0.0], [0.0, 0.2, 0.8]])
    assert recall_at_k(sim, ks=(1, 2)) == {1: pytest.approx(1 / 3), 2: 1.0}
    # against a brute-force count
    torch.manual_seed(0)
    sim = torch.randn(30, 40)
    ranks = [int((sim[i] > sim[i, i]).sum()) for i in range(30)]
    got = recall_at_k(sim, ks=(1, 5, 10))
    for k in (1, 5, 10):
        assert got[k] == pytest.approx(sum(r < k for r in ranks) / 30)
    relevant = torch.zeros(3, 3, dtype=torch.bool)
    relevant[0, 1] = relevant[1, 0] = relevant[2, 2] = True
    assert recall_at_k(torch.tensor([[0.1, 0.9, 0.0], [0.9, 0.1, 0.0], [0.0, 0.2, 0.8]]), (1,), relevant)[1] == 1.0


def test_recall_and_zero_shot_bad_input():
    with pytest.raises(ValueError, match="Q <= C"):
        recall_at_k(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="relevant"):
        recall_at_k(torch.zeros(3, 3), relevant=torch.zeros(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="k must"):
        recall_at_k(torch.zeros(3, 3), ks=(0,))
    with pytest.raises(ValueError, match="dimensions"):
        recall_at_k(torch.zeros(3))
    logits = zero_shot_logits(torch.randn(5, 4), torch.randn(3, 4))
    assert logits.shape == (5, 3) and float(logits.abs().max()) <= 1.0 + 1e-6
    with pytest.raises(ValueError, match="embedding size"):
        zero_shot_logits(torch.randn(5, 4), torch.randn(3, 5))


def test_embed_in_batches_equals_one_pass():
    lin = nn.Linear(3, 2)
    x = torch.randn(11, 3)
    assert torch.allclose(embed(lin, x, batch_size=4), lin(x).detach())


# --------------------------------------------------------------------------------------------
# Fusion
# --------------------------------------------------------------------------------------------


def _probs(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed)).softmax(1)


def test_late_fusion_rules():
    a, b = _probs(6, 4, 0), _probs(6, 4, 1)
    assert torch.allclose(late_fusion([a, b]), (a + b) / 2)
    assert torch.allclose(late_fusion([a, b], weights=[3, 1]), 0.75 * a + 0.25 * b)
    prod = a * b
    assert torch.allclose(late_fusion([a, b], rule="product"), prod / prod.sum(1, keepdim=True), atol=1e-6)
    geo = (a * b).sqrt()
    assert torch.allclose(late_fusion([a, b], [0.5, 0.5], rule="product"), geo / geo.sum(1, keepdim=True), atol=1e-6)
    assert torch.allclose(late_fusion([a]), a)
    fused = late_fusion([a, b, _probs(6, 4, 2)], weights=torch.tensor([1.0, 0.0, 1.0]))
    assert torch.allclose(fused.sum(1), torch.ones(6))


def test_late_fusion_refuses_incompatible_label_spaces():
    """The source document averaged a 1-unit sigmoid with a 10-way softmax."""
    sigmoid = torch.rand(8, 1)
    softmax = _probs(8, 10, 0)
    with pytest.raises(ValueError, match="K >= 2"):
        late_fusion([sigmoid, softmax])
    binary = torch.cat([1 - sigmoid, sigmoid], dim=1)
    with pytest.raises(ValueError, match="common label space"):
        late_fusion([binary, softmax])
    with pytest.raises(ValueError, match="probabilities"):
        late_fusion([torch.randn(8, 10), softmax])  # logits, not probabilities
    with pytest.raises(ValueError, match="one entry per modality"):
        late_fusion([softmax, softmax], weights=[1.0])
    with pytest.raises(ValueError, match=">= 0"):
        late_fusion([softmax, softmax], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="rule"):
        late_fusion([softmax, softmax], rule="max")
    with pytest.raises(TypeError, match="list"):
        late_fusion(softmax)
    assert check_probabilities("p", softmax) is softmax


def test_fusion_weight_and_learned_fusion_prefer_the_informative_modality():
    torch.manual_seed(0)
    labels = torch.randint(0, 5, (400,))
    informative = (F.one_hot(labels, 5) * 4.0 + torch.randn(400, 5)).softmax(1)
    noise = torch.randn(400, 5).softmax(1)
    w = tune_fusion_weight([noise, informative], labels)
    assert 0.0 <= w < 0.5
    learned = LearnedLateFusion(2, 5).fit([noise, informative], labels)
    weight = learned.weight.detach()
    assert float(weight[1]) > float(weight[0])
    nll_learned = F.cross_entropy(learned([noise, informative]), labels)
    nll_mean = F.nll_loss(late_fusion([noise, informative]).log(), labels)
    assert float(nll_learned.detach()) < float(nll_mean)
    with pytest.raises(ValueError, match="exactly two"):
        tune_fusion_weight([noise, noise, noise], labels)
    with pytest.raises(ValueError, match="expected 2 tensors"):
        learned([noise])


def test_concat_fusion_shapes_and_errors():
    model = ConcatFusion(6, 4, 3)
    assert model(torch.randn(5, 6), torch.randn(5, 4)).shape == (5, 3)
    with pytest.raises(ValueError, match="image_dim=6"):
        model(torch.randn(5, 5), torch.randn(5, 4))
    with pytest.raises(ValueError, match="pair up"):
        model(torch.randn(5, 6), torch.randn(4, 4))
    e2e = ConcatFusion(
        8, 16, 25, image_encoder=ConvImageEncoder(width=4, out_dim=8), text_encoder=TokenTextEncoder(20, out_dim=16)
    )
    out = e2e(torch.rand(3, 3, 32, 32), torch.randint(1, 20, (3, 5)))
    out.sum().backward()
    assert out.shape == (3, 25) and e2e.image_encoder.pool.weight.grad is not None
    with pytest.raises(TypeError, match="text_encoder"):
        ConcatFusion(2, 2, 2, text_encoder="bert")


def test_cross_attention_fusion_shapes_mask_and_errors():
    torch.manual_seed(0)
    model = CrossAttentionFusion(image_dim=12, text_dim=6, num_classes=4, d_model=8, nhead=2).eval()
    image, text = torch.randn(3, 10, 12), torch.randn(3, 5, 6)
    out = model(image, text)
    assert out.shape == (3, 4)
    assert model.last_attention.shape == (3, 5, 10)
    assert torch.allclose(model.last_attention.sum(-1), torch.ones(3, 5), atol=1e-5)
    # padding tokens (masked) do not change the prediction
    padded = torch.cat([text, torch.randn(3, 2, 6)], dim=1)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[:, 5:] = True
    assert torch.allclose(model(image, padded, mask), out, atol=1e-5)
    with pytest.raises(ValueError, match="text_padding_mask"):
        model(image, padded, mask[:, :5])
    with pytest.raises(ValueError, match="image_dim=12"):
        model(torch.randn(3, 10, 11), text)
    with pytest.raises(ValueError, match="divisible"):
        CrossAttentionFusion(4, 4, 2, d_model=10, nhead=4)
    e2e = CrossAttentionFusion(
        64,
        16,
        25,
        image_encoder=ConvImageEncoder(width=16, output="tokens"),
        text_encoder=TokenTextEncoder(20, dim=16, output="tokens"),
    )
    ids = torch.randint(1, 20, (2, 6))
    assert e2e(torch.rand(2, 3, 32, 32), ids, ids == 0).shape == (2, 25)


# --------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------


def test_encoders_shapes_and_errors():
    enc = ConvImageEncoder(width=4, out_dim=10)
    x = torch.rand(2, 3, 32, 32)
    assert enc(x).shape == (2, 10) and enc.tokens(x).shape == (2, 64, 16)
    with pytest.raises(ValueError, match="images must have shape"):
        enc(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="output"):
        ConvImageEncoder(output="grid")
    text = TokenTextEncoder(30, dim=8, out_dim=5, num_layers=1)
    ids = torch.randint(1, 30, (4, 6))
    assert text(ids).shape == (4, 5) and text.tokens(ids).shape == (4, 6, 8)
    with pytest.raises(ValueError, match="token ids"):
        text(torch.full((1, 3), 30))
    with pytest.raises(TypeError, match="ids"):
        text(torch.rand(1, 3))
    table = EmbeddingTable(torch.randn(5, 3))
    assert torch.equal(table(torch.tensor([4, 0])), table.table[[4, 0]])
    assert not any(p.requires_grad for p in table.parameters())
    with pytest.raises(ValueError, match="index"):
        table(torch.tensor([5]))


def test_sentence_embeddings_dedupe_with_a_tiny_bert():
    transformers = pytest.importorskip("transformers")
    from tlcourse.models.text import packaged_model_path

    tokenizer = transformers.AutoTokenizer.from_pretrained(packaged_model_path())
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    torch.manual_seed(0)
    bert = transformers.BertModel(config).eval()
    texts = ["a red circle", "two blue boxes", "a red circle", "a star"]
    table, index = sentence_embeddings(texts, encoder=(tokenizer, bert))
    assert table.shape == (3, 16) and index.tolist() == [0, 1, 0, 2]
    assert torch.allclose(table.norm(dim=-1), torch.ones(3), atol=1e-5)
    with torch.no_grad():
        enc = tokenizer(["two blue boxes"], return_tensors="pt")
        direct = F.normalize(bert(**enc).last_hidden_state.mean(1), dim=-1)
    assert torch.allclose(table[1], direct[0], atol=1e-5)
    with pytest.raises(ValueError, match="empty"):
        sentence_embeddings([], encoder=(tokenizer, bert))
    with pytest.raises(TypeError, match="sequence"):
        sentence_embeddings("a red circle", encoder=(tokenizer, bert))


# --------------------------------------------------------------------------------------------
# Captioning
# --------------------------------------------------------------------------------------------


def test_word_tokenizer_roundtrip():
    tok = WordTokenizer.fit(["a red circle", "two red boxes", "a star"])
    assert len(tok) == 4 + 6 and tok.itos[4] == "a"  # most frequent first ("a", "red" twice)
    ids = tok.encode(["a red circle", "a purple star!"])
    assert ids.shape == (2, 5) and ids[0, 0] == tok.bos_id and ids[0, -1] == tok.eos_id
    assert ids[1, 2] == tok.unk_id  # "purple" was never seen
    assert tok.decode(ids[0]) == "a red circle"
    assert tok.decode_batch(ids)[1] == "a <unk> star"
    assert tok.encode("a star", add_special=False).tolist() == [[tok.stoi["a"], tok.stoi["star"]]]
    with pytest.raises(ValueError, match="non-empty"):
        WordTokenizer.fit([])
    with pytest.raises(ValueError, match="token ids"):
        tok.decode([99])


@pytest.fixture(scope="module")
def tiny_captioner():
    torch.manual_seed(0)
    model = Captioner(9, feature_dim=5, d_model=8, nhead=2, num_layers=1, dim_feedforward=16, max_len=8).eval()
    memory = torch.randn(6, 4, 5)  # precomputed region features: (N, S, feature_dim)
    return model, memory


def test_captioner_forward_and_training():
    torch.manual_seed(0)
    split = make_captions(64, 4, seed=0)
    tok = WordTokenizer.fit(split.train.captions)
    tokens = tok.encode(split.train.captions)
    encoder = ConvImageEncoder(width=4)
    model = Captioner(len(tok), image_encoder=encoder, feature_dim=16, d_model=16, max_len=tokens.shape[1])
    logits = model(split.train.images[:3], tokens[:3])
    assert logits.shape == (3, tokens.shape[1], len(tok))
    captions = generate_captions(model, tok, split.test.images, beam_width=2, max_len=tokens.shape[1] - 1)
    assert len(captions) == 4 and all(isinstance(c, str) for c in captions)
    # training on precomputed region features (no encoder) drives the loss down
    features = torch.randn(64, 4, 8)
    fast = Captioner(len(tok), feature_dim=8, d_model=16, max_len=tokens.shape[1])
    history = fit_captioner(fast, features, tokens, epochs=15, batch_size=16, lr=1e-2)
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    with pytest.raises(TypeError, match="tokens"):
        Captioner(10, image_encoder=nn.Linear(2, 2))
    with pytest.raises(ValueError, match="same length"):
        model(split.train.images[:2], tokens[:3])


def _valid(seqs: torch.Tensor, eos: int, pad: int, vocab: int) -> bool:
    for row in seqs.tolist():
        assert all(0 <= t < vocab for t in row)
        if eos in row:
            end = row.index(eos)
            assert all(t == pad for t in row[end + 1 :])
    return True


def test_greedy_and_beam_produce_valid_sequences(tiny_captioner):
    model, memory = tiny_captioner
    greedy = greedy_decode(model, memory, max_len=6)
    assert greedy.ndim == 2 and len(greedy) == 6 and greedy.shape[1] <= 6
    assert _valid(greedy, 2, 0, 9)
    beam = beam_search(model, memory, beam_width=3, max_len=6)
    assert len(beam) == 6 and _valid(beam, 2, 0, 9)


def test_beam_width_one_is_greedy(tiny_captioner):
    model, memory = tiny_captioner
    assert torch.equal(beam_search(model, memory, beam_width=1, max_len=6), greedy_decode(model, memory, max_len=6))


def _sequence_logprobs(model: Captioner, memory: torch.Tensor, seqs: list[list[int]]) -> torch.Tensor:
    """Log-probabilities of equal-length token sequences for one image (teacher forcing)."""
    tokens = torch.tensor([[1, *seq] for seq in seqs])  # <bos> first
    projected = model.memory(memory[None]).expand(len(seqs), -1, -1)
    logp = model.decode(projected, tokens[:, :-1]).log_softmax(-1)
    return logp.gather(2, tokens[:, 1:, None])[..., 0].sum(1)


def test_wide_beam_finds_the_most_probable_caption(tiny_captioner):
    """With a beam as wide as the search space, beam search is exhaustive search."""
    model, memory = tiny_captioner
    vocab, eos, max_len = 9, 2, 3
    with torch.no_grad():
        best = beam_search(model, memory, beam_width=vocab**max_len, max_len=max_len)
        for i in range(len(memory)):
            best_score = -math.inf
            for length in range(1, max_len + 1):
                seqs = [
                    list(seq)
                    for seq in itertools.product(range(vocab), repeat=length)
                    if eos not in seq[:-1] and (length == max_len or seq[-1] == eos)
                ]
                best_score = max(best_score, float(_sequence_logprobs(model, memory[i], seqs).max()))
            found = best[i].tolist()
            found = found[: found.index(eos) + 1] if eos in found else found
            assert float(_sequence_logprobs(model, memory[i], [found])[0]) == pytest.approx(best_score, abs=1e-4)


def test_decoding_bad_input(tiny_captioner):
    model, memory = tiny_captioner
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(model, memory, max_len=20)
    with pytest.raises(ValueError, match="beam_width"):
        beam_search(model, memory, beam_width=0, max_len=3)
    with pytest.raises(ValueError, match="eos_id"):
        greedy_decode(model, memory, eos_id=50, max_len=3)
    with pytest.raises(TypeError, match="Captioner"):
        greedy_decode(nn.Linear(2, 2), memory)
    with pytest.raises(ValueError, match="feature_dim"):
        greedy_decode(model, torch.randn(2, 4, 7), max_len=3)
    with pytest.raises(ValueError, match="empty"):
        greedy_decode(model, memory[:0], max_len=3)


def test_attribute_accuracy():
    split = make_captions(50, 2, seed=0)
    truth = attribute_accuracy(split.train.captions, split.train.attributes)
    assert truth["shape"] == truth["colour"] == truth["count"] == truth["shape+colour"] == 1.0
    assert 0.0 < truth["size"] < 1.0  # some templates do not mention the size
    wrong = ["three purple stars"] * 50
    bad = attribute_accuracy(wrong, split.train.attributes)
    assert bad["shape+colour"] < 0.2
    with pytest.raises(ValueError, match="missing"):
        attribute_accuracy(wrong, {"shape": split.train.attributes["shape"]})
    with pytest.raises(ValueError, match="captions"):
        attribute_accuracy(wrong[:10], split.train.attributes)
