"""Calls a server with KServe's own gRPC client (``kserve.InferenceGRPCClient``); prints JSON.

Run by test_kserve_client.py with the interpreter of KServe's venv (var/bench/venvs/kserve:
KServe pins protobuf and libraries of its own, so it never shares the project's venv):

    python kserve_client.py HOST:PORT PIXELS.npy
"""

from __future__ import annotations

import asyncio
import json
import sys

import grpc
import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest


async def main(target: str, pixels: np.ndarray) -> dict:
    client = InferenceGRPCClient(target, timeout=30)
    report: dict = {
        "live": await client.is_server_live(),
        "ready": await client.is_server_ready(),
        "model_ready": await client.is_model_ready("fashion"),
    }
    for datatype in ("UINT8", "FP32"):
        data = pixels if datatype == "UINT8" else pixels.astype(np.float32) / 255
        for raw in (True, False):
            tensor = InferInput("pixels", list(data.shape), datatype)
            tensor.set_data_from_numpy(data, binary_data=raw)
            response = await client.infer(InferRequest("fashion", [tensor], request_id=f"{datatype}-{raw}"))
            outputs = {out.name: out.as_numpy() for out in response.outputs}
            report[f"{datatype} {'raw' if raw else 'typed'}"] = {
                "id": response.id,
                "classes": outputs["class"].tolist(),
                "probabilities": outputs["probabilities"].reshape(len(data), 10).tolist(),
                "labels": [v.decode() if isinstance(v, bytes) else v for v in outputs["label"].tolist()],
            }
    bad = InferInput("pixels", [1, 27, 28], "UINT8")
    bad.set_data_from_numpy(np.zeros((1, 27, 28), np.uint8))
    for case, request in (
        ("bad shape", InferRequest("fashion", [bad])),
        ("unknown model", InferRequest("shoes", [tensor])),
    ):
        try:
            await client.infer(request)
            report[case] = "answered"
        except grpc.RpcError as exc:
            report[case] = {"code": exc.code().name, "details": exc.details()}
    await client.close()
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], np.load(sys.argv[2])))))
