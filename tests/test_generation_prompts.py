"""Prompt lengths from --prompt-dist (measure/generation/prompts.py): fixed, uniform
within its bounds, a shipped histogram deterministic under a seed and within the room
the model leaves, and each histogram's file holding the published mean it claims."""

import numpy as np
import pytest

from gpubench.measure.generation.prompts import (
    describe, histogram, histogram_names, parse_prompt_dist, prompt_dist_error,
    prompt_lengths, prompt_tokens,
)


def test_fixed_gives_every_prompt_prompt_len():
    lengths = prompt_lengths(parse_prompt_dist("fixed"), 50, 17, 60, [0])
    assert lengths.tolist() == [17] * 50


def test_uniform_respects_its_bounds_and_reaches_both():
    d = parse_prompt_dist("uniform:5-9")
    lengths = prompt_lengths(d, 2000, 0, 60, [1])
    assert lengths.min() == 5 and lengths.max() == 9
    assert set(lengths.tolist()) == {5, 6, 7, 8, 9}
    assert d.mean(0, 60) == 7.0


@pytest.mark.parametrize("text", ["uniform:9-4", "uniform:0-3", "uniform:4", "lognormal",
                                  "uniform:a-b", ""])
def test_malformed_specs_name_nothing(text):
    assert parse_prompt_dist(text) is None


def test_histograms_are_shipped_with_their_provenance():
    assert {"sharegpt", "alpaca"} <= set(histogram_names())
    for name in histogram_names():
        h = histogram(name)
        assert "NOT the dataset" in h["what_it_is"] and "Kwon" in h["source"]
        assert len(h["weights"]) == len(h["edges"]) - 1
        assert sum(h["weights"]) == pytest.approx(1.0, abs=1e-4)
        # the published mean it claims to hold, with room for every length
        assert parse_prompt_dist(name).mean(0, 10**6) == pytest.approx(
            h["lognormal"]["mean_tokens"], rel=2e-3)


def test_a_histogram_is_deterministic_under_a_seed_and_within_the_room():
    d = parse_prompt_dist("sharegpt")
    a = prompt_lengths(d, 3000, 0, 48, [7, 0])
    b = prompt_lengths(d, 3000, 0, 48, [7, 0])
    c = prompt_lengths(d, 3000, 0, 48, [7, 1])
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 1 and a.max() <= 48
    # scaled, not clipped: the shape kept, no pile-up at the room
    assert (a == 48).mean() < 0.01
    assert a.mean() == pytest.approx(d.mean(0, 48), rel=0.1)
    assert describe(d, 0, 48)["scaled_by"] == pytest.approx(48 / 1024)
    # with room for every length the lengths are the histogram's own
    full = prompt_lengths(d, 20000, 0, 4096, [7, 0])
    assert full.mean() == pytest.approx(161.31, rel=0.05) and full.max() <= 1024


def test_prompt_tokens_are_in_the_vocab_and_seeded():
    a = prompt_tokens([3, 5], 64, [0])
    assert [len(t) for t in a] == [3, 5] and all(t.max() < 64 and t.min() >= 0 for t in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, prompt_tokens([3, 5], 64, [0])))


def test_prompts_that_cannot_fit_the_model_are_named():
    assert prompt_dist_error(parse_prompt_dist("uniform:10-40"), None, 30, 64) is not None
    assert prompt_dist_error(parse_prompt_dist("uniform:10-30"), None, 30, 64) is None
    assert prompt_dist_error(parse_prompt_dist("fixed"), 40, 30, 64) is not None
    assert prompt_dist_error(parse_prompt_dist("sharegpt"), None, 30, 64) is None  # scaled
    assert prompt_dist_error(parse_prompt_dist("sharegpt"), None, 64, 64) is not None
