"""Embed texts with a saved model in a helper process, at a lower CPU priority.

A round embeds its training set and its unlabeled pool for expansion while its next stages
(gates, metrics, pools) run. In the round's own process that work took turns with those stages
for the interpreter lock and the two cores. :func:`embed` runs it in a
:class:`cartoflow.helpers.Helper` (``python -m cartoflow.embedder``: torch on one thread, as
training uses, and ``nice`` 3, so the stages the round waits for come first), or in this
process when the helper cannot. :func:`start` launches the helper ahead of time: it imports
torch on the cores that the training leaves.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from cartoflow.helpers import Helper, serve

__all__ = ["embed", "start", "stop"]


def _embed(model_path: str, *texts: Sequence[str]) -> list[np.ndarray]:
    """Load the model saved at ``model_path`` and embed each list of texts: (N_i, D) float32."""
    from cartoflow.train import load_model

    model: Any = load_model(model_path)  # a TextModel: embed(texts) -> (N, D)
    return [np.asarray(model.embed(batch), dtype=np.float32) for batch in texts]


_HELPER = Helper("cartoflow.embedder", {"embed": _embed})


def start() -> None:
    """Launch the helper now (it imports torch); returns at once."""
    _HELPER.start()


def embed(model_path: str | os.PathLike[str], *texts: Sequence[str]) -> list[np.ndarray]:
    """Each list of texts embedded with the model saved at ``model_path`` (by
    :func:`cartoflow.train.save_model`): one (N_i, D) float32 array per list, rows in order."""
    result: list[np.ndarray] = _HELPER.call("embed", str(model_path), *(list(t) for t in texts))
    return result


def stop() -> None:
    """Stop the helper; a later call starts it again."""
    _HELPER.stop()


atexit.register(stop)


def _warm_up() -> None:
    import torch

    torch.set_num_threads(1)
    import cartoflow.train  # noqa: F401  (the model classes, before the first request)

    # load_model builds the model on the meta device; the first module built there imports
    # torch's reference implementations (about 1.5 s), here rather than in the first request.
    with torch.device("meta"):
        torch.nn.EmbeddingBag(2, 2)


if __name__ == "__main__":
    serve(_HELPER.functions, warm_up=_warm_up, nice=3)
