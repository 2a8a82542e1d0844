"""go_emotions emotion classification, in Rust: texts or sentence embeddings in, 28 labels out.

>>> import emotions
>>> clf = emotions.Classifier()          # the compiled-in models
>>> clf(["Thank you so much!"])[0][0]["label"]
'gratitude'

No onnxruntime and no torch: the encoder (all-MiniLM-L6-v2) and the heads run on the
`emotions` Rust core inside this extension. Calls release the GIL, and one Classifier may be
shared between threads.
"""

from ._emotions import LABELS, Classifier, ModelError, Prediction, __version__, available_isas

__all__ = ["Classifier", "LABELS", "ModelError", "Prediction", "__version__", "available_isas"]
