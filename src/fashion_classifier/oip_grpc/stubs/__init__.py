"""The Open Inference Protocol's gRPC messages and service, generated from its published
``grpc_predict_v2.proto`` by ``scripts/grpc-stubs`` (do not edit; ``--check`` finds drift)."""
