"""toymodels.models.parentheses: tokens, the string table against theory.parentheses, the weighted
loss as the exact expected cross-entropy, the transformer's shapes and causality, ensemble
training equal to separate runs, the algorithm classifier, and errors."""

from fractions import Fraction

import pytest
import torch

from theory import parentheses as P
from toymodels.models.icl import ModelEnsemble
from toymodels.models.parentheses import (
    CLOSE,
    CLS,
    OPEN,
    PAD,
    ParenthesesConfig,
    ParenthesesTransformer,
    StringTable,
    accuracies,
    classify_algorithm,
    ensemble_probabilities,
    tokenize,
    train_ensemble,
    weighted_bce,
)


def _table(lengths=(2, 4, 6)):
    dists = {"train": P.train_distribution(lengths),
             "discriminating": P.discriminating_distribution(lengths),
             "deep": P.class_distribution([n for n in lengths if n >= 4], "deep")}
    return StringTable(dists, max(lengths))


def test_tokenize_left_pads_and_ends_with_cls():
    tokens = tokenize(["()", ")(()"], 4)
    assert tokens.tolist() == [[PAD, PAD, OPEN, CLOSE, CLS], [CLOSE, OPEN, OPEN, CLOSE, CLS]]
    with pytest.raises(ValueError, match="longer than max_length"):
        tokenize(["(((("], 2)
    with pytest.raises(ValueError, match="over"):
        tokenize(["(x"], 4)


def test_table_matches_theory():
    table = _table()
    for name in table.names:
        dist = {"train": P.train_distribution((2, 4, 6)),
                "discriminating": P.discriminating_distribution((2, 4, 6)),
                "deep": P.class_distribution([4, 6], "deep")}[name]
        w = table.weights(name)
        for s, p in dist.items():
            assert w[table.index[s]].item() == pytest.approx(float(p), rel=1e-15)
        assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert all(table.labels[i].item() == P.is_balanced(s) for i, s in enumerate(table.strings))
    assert all(table.equal_count[i].item() == P.is_equal_count(s) for i, s in enumerate(table.strings))
    mix = table.mixture({"train": 0.75, "deep": 0.25})
    assert mix.sum().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sum to 1"):
        table.mixture({"train": 0.5})
    with pytest.raises(ValueError, match="no distribution"):
        table.weights("nope")


def test_exact_accuracy_of_the_two_rules_through_accuracies():
    table = _table()
    # a "model" that is the rule itself: probabilities 0/1
    nested = table.labels[None].float()
    count = table.equal_count[None].float()
    assert accuracies(nested, table, "train").item() == pytest.approx(1.0)
    assert accuracies(count, table, "train").item() == pytest.approx(1.0)
    assert accuracies(nested, table, "discriminating").item() == pytest.approx(1.0)
    assert accuracies(count, table, "discriminating").item() == pytest.approx(0.0)
    assert classify_algorithm(1.0, 1.0) == "nested"
    assert classify_algorithm(1.0, 0.0) == "equal_count"
    assert classify_algorithm(1.0, 0.5) == "other" and classify_algorithm(0.5, 1.0) == "other"


def test_weighted_bce_is_the_expected_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(5, dtype=torch.float64)
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    p = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0], dtype=torch.float64)
    expected = sum(float(p[i]) * float(torch.nn.functional.binary_cross_entropy_with_logits(
        logits[i], labels[i])) for i in range(5))
    got = weighted_bce(logits, torch.stack([labels, p * 5], 1))
    assert got.item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="targets"):
        weighted_bce(logits, labels)


def test_transformer_is_causal_and_reads_the_last_position():
    cfg = ParenthesesConfig(max_length=6, d_model=8, num_heads=2, d_mlp=8)
    model = ParenthesesTransformer(cfg, torch.Generator().manual_seed(3))
    same = ParenthesesTransformer(cfg, torch.Generator().manual_seed(3))
    tokens = tokenize(["()()", "(())()", ")("], 6)
    out = model(tokens)
    assert out.shape == (3,)
    assert torch.equal(out, same(tokens))  # the generator fixes the initialisation
    # the last position sees every token: changing the first character changes the logit
    flipped = tokens.clone()
    flipped[1, 0] = CLOSE
    assert not torch.allclose(model(flipped)[1], out[1])
    with pytest.raises(ValueError, match="7 positions"):
        model(tokenize(["()"], 4))
    with pytest.raises(ValueError, match="divide"):
        ParenthesesConfig(d_model=6, num_heads=4)


def test_ensemble_training_equals_separate_runs():
    table = _table((2, 4))
    cfg = ParenthesesConfig(max_length=4, d_model=8, num_heads=2, d_mlp=8, num_layers=1)

    def make(g):
        return ParenthesesTransformer(cfg, g)

    w = table.weights("train")
    both = ModelEnsemble(make, [0, 1])
    run = train_ensemble(both, table, torch.stack([w, w]), steps=5, batch_size=8, lr=1e-2,
                         generator=torch.Generator().manual_seed(9), checkpoint_steps=(0, 5))
    assert set(run.checkpoints) == {0, 5} and run.losses.shape == (5, 2)
    # member 1 alone, with the same minibatch stream: draw the same indices as the ensemble did
    g = torch.Generator().manual_seed(9)
    alone = ModelEnsemble(make, [1])
    opt = torch.optim.AdamW(list(alone.params.values()), lr=1e-2, weight_decay=0.0)
    for _ in range(5):
        index = torch.multinomial(torch.stack([w, w]), 8, replacement=True, generator=g)[1:]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            alone(table.tokens[index]), table.labels[index].float()).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, p in alone.params.items():
        torch.testing.assert_close(p[0], both.params[name][1], rtol=1e-5, atol=1e-6)
    probs = ensemble_probabilities(both, table.tokens)
    assert probs.shape == (2, len(table.strings)) and bool(((probs > 0) & (probs < 1)).all())
    with pytest.raises(ValueError, match="weights must be"):
        train_ensemble(both, table, w[:3], steps=1, batch_size=2, lr=1e-3,
                       generator=torch.Generator())
    with pytest.raises(ValueError, match="sum to 1"):
        train_ensemble(both, table, 2 * w, steps=1, batch_size=2, lr=1e-3,
                       generator=torch.Generator())


def test_table_refuses_a_distribution_that_does_not_sum_to_one():
    with pytest.raises(ValueError, match="summing to 1"):
        StringTable({"bad": {"()": Fraction(1, 2)}}, 2)
