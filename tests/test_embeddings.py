"""Sentence embeddings (the packaged all-MiniLM-L6-v2) and diversity measures."""

from __future__ import annotations

import numpy as np
import pytest

from openended.embeddings import (
    Embedder,
    Projection,
    distinct_n,
    mean_pairwise_distance,
    vendi_score,
)


def test_diversity_measures_on_known_sets() -> None:
    same = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (4, 1))
    orthogonal = np.eye(4, dtype=np.float32)
    assert vendi_score(same) == pytest.approx(1.0, abs=1e-4)
    assert vendi_score(orthogonal) == pytest.approx(4.0, abs=1e-4)
    assert mean_pairwise_distance(same) == pytest.approx(0.0, abs=1e-6)
    assert mean_pairwise_distance(orthogonal) == pytest.approx(1.0)
    assert distinct_n(["a b c", "a b c"], 2) == 0.5
    assert distinct_n(["a b", "c d"], 2) == 1.0


@pytest.mark.slow  # loads the sentence-embedding model
def test_embeddings_put_similar_texts_close() -> None:
    texts = [
        "How do plants make food from sunlight?",
        "What is photosynthesis and how do plants use light?",
        "Who won the football world cup in 1998?",
    ]
    vectors = Embedder.shared().encode(texts)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    projection = Projection(vectors)
    coords = projection(vectors)
    assert coords.shape == (3, 2) and np.all(np.abs(coords) <= projection.limit)
    with pytest.raises(ValueError, match="at least 2"):
        Projection(vectors[:1])
