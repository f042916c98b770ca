"""KServe Python ModelServer serving the LiteRT export over the V2 (Open Inference) protocol,
REST and gRPC.

    python kserve_server.py --model_dir model/ --http_port PORT --grpc_port PORT --workers 2

``--model_dir`` is the model store (``model/``); the other options are KServe's own. KServe
serves gRPC (``inference.GRPCInferenceService``) unless ``--enable_grpc false``, on
``--grpc_port`` (its default 8081: bench/peers.py always passes a free port), from the main
process only: ``--workers`` forks uvicorn processes for REST, not for gRPC.
"""

from __future__ import annotations

import argparse
import uuid

import kserve
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from litert_model import LiteRTClassifier, current_tflite

MODEL_NAME = "fashion"


class LiteRTFashion(Model):
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.load()

    def load(self) -> bool:
        self._model = LiteRTClassifier(current_tflite(self.model_dir))
        self.ready = True
        return self.ready

    # With --workers > 1 KServe pickles the registered models into spawned uvicorn processes: send
    # the path, and let each process load its own interpreter (which cannot be pickled).
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_model"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.load()

    # A plain def: the interpreter call is ~10 µs, cheaper than a thread hop off the event loop.
    def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        probabilities = self._model.predict(payload.inputs[0].as_numpy())
        # KServe's own rule for its cheapest path: raw bytes out when the request came over gRPC
        # with raw_input_contents; JSON numbers for a JSON request (as it was).
        binary = payload.use_binary_outputs
        output = InferOutput(name="probabilities", shape=list(probabilities.shape), datatype="FP32")
        output.set_data_from_numpy(probabilities, binary_data=binary)
        # KServe's response model requires an id; the request need not carry one.
        return InferResponse(
            model_name=self.name,
            infer_outputs=[output],
            response_id=payload.id or str(uuid.uuid4()),
            use_binary_outputs=binary,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True, help="the model store (model/)")
    args, _ = parser.parse_known_args()
    ModelServer().start([LiteRTFashion(MODEL_NAME, args.model_dir)])
