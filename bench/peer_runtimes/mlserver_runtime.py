"""MLServer custom runtime serving the LiteRT export over the V2 (Open Inference) protocol.

bench/peers.py writes ``settings.json`` and ``model-settings.json`` next to a copy of this
directory and runs ``mlserver start`` on it; ``parameters.uri`` is the model store (``model/``).
"""

from __future__ import annotations

from litert_model import LiteRTClassifier, current_tflite
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class LiteRTFashion(MLModel):
    async def load(self) -> bool:
        self._model = LiteRTClassifier(current_tflite(self.settings.parameters.uri))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        pixels = NumpyCodec.decode_input(payload.inputs[0])
        probabilities = self._model.predict(pixels)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[NumpyCodec.encode_output("probabilities", probabilities)],
        )
