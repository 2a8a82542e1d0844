"""Type stubs for `emotions`, the Rust go_emotions classifier (bindings/python/src/lib.rs)."""

import os
from typing import Dict, Iterable, List, Literal, Mapping, Optional, Sequence, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str
LABELS: List[str]
"""The 28 go_emotions labels, in the order of the score columns."""

Texts = Union[str, Iterable[str]]
PathLike = Union[str, "os.PathLike[str]"]

class ModelError(Exception):
    """A model, encoder or head file that was found but refused."""

class Prediction:
    """One text's labels and scores, as `emotions classify` prints them."""

    @property
    def labels(self) -> List[str]:
        """The predicted labels, highest score first."""
    @property
    def scores(self) -> Dict[str, float]:
        """Every label's score, in go_emotions label order."""
    def to_dict(self) -> Dict[str, object]:
        """`{"labels": [...], "scores": {...}}`, the CLI's JSON line."""

class Classifier:
    """A go_emotions classifier: an encoder, a head and a decision policy.

    With no arguments, the compiled-in models: all-MiniLM-L6-v2 with the fine-tuned adapter and
    head for texts, and the plain head for embeddings given to `scores(embeddings=...)`.

    Raises `FileNotFoundError` for a missing file, `ValueError` for a bad argument or bad
    thresholds, `ModelError` for a model that is refused.
    """

    def __init__(
        self,
        model: Optional[PathLike] = None,
        encoder: Optional[PathLike] = None,
        thresholds: Union[PathLike, Mapping[str, float], Sequence[float], None] = None,
        threshold: Optional[float] = None,
        top_k: Optional[int] = None,
        precision: Optional[Literal["int16", "int8", "f32"]] = None,
        threads: Optional[int] = None,
        long_texts: Literal["truncate", "chunk"] = "truncate",
        stride: Optional[int] = None,
        aggregate: Optional[Literal["max", "mean"]] = None,
    ) -> None:
        """`model`: a head ONNX file (the card's `model.onnx`, or one `emotions train` wrote),
        with `thresholds.json` beside it if there is one. `encoder`: a sentence-transformers
        folder. At most one of `thresholds` (a `thresholds.json` path, a dict or a list of 28),
        `threshold` (one for every label) and `top_k` (1 to 28). `precision`: the default is
        the faster on this CPU. `threads`: per call, default the number of cores.
        `long_texts`: a text longer than the encoder's window (256 tokens) is cut to it
        (`"truncate"`, as sentence-transformers does) or read whole in overlapping windows
        (`"chunk"`, each next one repeating `stride` tokens, default a quarter of a window); its
        scores are then each label's highest window's (`aggregate="max"`) or their mean, and its
        embedding the windows' token-weighted mean."""
    @overload
    def predict(self, texts: str) -> Prediction: ...
    @overload
    def predict(self, texts: Iterable[str]) -> List[Prediction]: ...
    @overload
    def __call__(self, texts: str) -> List[Dict[str, Union[str, float]]]: ...
    @overload
    def __call__(self, texts: Iterable[str]) -> List[List[Dict[str, Union[str, float]]]]:
        """transformers' `pipeline("text-classification", top_k=None)` shape: every label as
        `{"label": ..., "score": ...}`, highest score first."""
    def scores(
        self,
        texts: Optional[Texts] = None,
        *,
        embeddings: Optional[npt.ArrayLike] = None,
    ) -> npt.NDArray[np.float32]:
        """float32 `[N, 28]` in label order (`[28]` for a single `str`), of texts or of
        `[N, dim]` float32/float64 embeddings."""
    def embed(self, texts: Texts) -> npt.NDArray[np.float32]:
        """The plain encoder's embeddings, float32 `[N, dim]` (`[dim]` for a single `str`)."""
    @property
    def labels(self) -> List[str]: ...
    @property
    def thresholds(self) -> Optional[Dict[str, float]]:
        """The per-label thresholds texts are decided with; `None` under `top_k`."""
    @property
    def precision(self) -> Literal["int16", "int8", "f32"]: ...
    @property
    def threads(self) -> int: ...
    @property
    def isa(self) -> str:
        """The instruction-set class the kernels run (`EMOTIONS_ISA` forces one)."""

def available_isas() -> List[str]:
    """The instruction-set classes this CPU runs, widest first: what `EMOTIONS_ISA` may name."""
