"""The confidence side: token confidence of texts and generation with it.

- :class:`~quco.lm.confidence.ConfidenceScorer`: (prompt, continuation) ->
  per-token logprobs and entropies (``quco.protocols.Scorer``).
- :class:`~quco.lm.generator.HFGenerator`: prompt -> text with the token
  confidences of the generation itself (``quco.protocols.Generator``).

Both run a ``transformers`` causal LM loaded by :func:`quco.models.load_causal_lm`
(default: SmolLM2-135M-Instruct from its packaged GGUF) and format prompts the
same way (:mod:`quco.lm.prompting`). Importing this package does not import torch.
"""

from __future__ import annotations

from quco.lm.confidence import ConfidenceScorer
from quco.lm.generator import HFGenerator, sentence_end

__all__ = ["ConfidenceScorer", "HFGenerator", "sentence_end"]
