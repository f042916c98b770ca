"""The Open Inference Protocol (KServe V2) over gRPC: ``inference.GRPCInferenceService``.

A process of its own beside gunicorn's workers (``server``), started and watched by the gunicorn
master when ``FC_GRPC_PORT`` is set (``supervisor``). It serves with the same model store (hot
reload included), prediction log and metrics as a worker: the REST ``/v2`` rules apply to its
inputs (``codec``), and its answers are logged with source ``grpc``. Also served: gRPC health
checking (``grpc.health.v1``, for Kubernetes gRPC probes) and server reflection.
"""
