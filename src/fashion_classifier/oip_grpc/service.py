"""``inference.GRPCInferenceService``: the REST ``/v2`` endpoints (``web.oip``) as gRPC methods.

Errors are the REST ones with a gRPC status code instead of an HTTP status: each named error's
code is in :data:`CODES`, written once; an unexpected exception is logged and answered ``INTERNAL``. Each call is
counted in ``fc_grpc_requests_total`` (method, code) and timed in
``fc_grpc_request_duration_seconds``; predictions are counted and logged like REST ones, with
source ``grpc``. Methods run on the server's event loop: a call's CPU work never waits on I/O
(the decode budget bounds a call of encoded images), and a slow client holds no thread.

The methods are registered with the raw request bytes (:func:`add_to_server`) and parse them
themselves, so that a malformed message is an ``INVALID_ARGUMENT`` like other bad input, and counted.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any
from urllib.parse import unquote

import grpc
from google.protobuf.message import DecodeError

from fashion_classifier import __version__, errors, metrics
from fashion_classifier.inference.arms import check_model_name, choose_version, not_loaded
from fashion_classifier.inference.oip_tensors import SERVER_NAME
from fashion_classifier.inference.serving_state import ServingState
from fashion_classifier.oip_grpc import codec
from fashion_classifier.oip_grpc.codec import shown
from fashion_classifier.oip_grpc.stubs import grpc_predict_v2_pb2 as pb
from fashion_classifier.oip_grpc.stubs import grpc_predict_v2_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
SERVICE_NAME = _SERVICE.full_name
# method name -> (request message class, response message class), from the published proto
_TYPES = {m.name: (getattr(pb, m.input_type.name), getattr(pb, m.output_type.name)) for m in _SERVICE.methods}
SOURCE = "grpc"  # the predictions' source in the log and the metrics
# The metadata that assigns a call to a rollout's arm, in order (the REST headers' names).
ROLLOUT_KEY_METADATA = ("x-session-id", "x-request-id")


class DeadlineExceeded(errors.ServiceError):
    """A call that waited past its deadline before it was run: nobody reads its answer."""


# Each named error's gRPC code: the one place they are written. A request that would fail again
# as it is (malformed, too large, of an unsupported type, undecodable) is INVALID_ARGUMENT.
CODES: dict[type[errors.ServiceError], grpc.StatusCode] = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.TooLarge: grpc.StatusCode.INVALID_ARGUMENT,
    errors.UnsupportedMediaType: grpc.StatusCode.INVALID_ARGUMENT,
    errors.UndecodableImage: grpc.StatusCode.INVALID_ARGUMENT,
    errors.ModelNotFound: grpc.StatusCode.NOT_FOUND,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.ModelNotReady: grpc.StatusCode.UNAVAILABLE,
}


def status_code(exc: errors.ServiceError) -> grpc.StatusCode:
    """The code of a named error: its own class's, or its nearest base's (INTERNAL if none: a bug)."""
    for kind in type(exc).__mro__:
        found = CODES.get(kind)
        if found is not None:
            return found
    log.error("%s has no gRPC code; answered INTERNAL", type(exc).__name__)
    return grpc.StatusCode.INTERNAL


def _rpc(method: Callable[..., Any]) -> Callable[..., Any]:
    """Parse the request, run the method, answer a named error with its code, count and time the call."""
    name = method.__name__
    request_type = _TYPES[name][0]
    duration = metrics.GRPC_DURATION.labels(name)
    counters: dict[grpc.StatusCode, Any] = {}

    @functools.wraps(method)
    async def handler(self: InferenceService, raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        started = perf_counter()
        code, message = grpc.StatusCode.OK, ""
        try:
            try:
                request = request_type.FromString(raw)
            except DecodeError:
                raise errors.InvalidInput(f"the message is not a valid {request_type.DESCRIPTOR.full_name}") from None
            return method(self, request, context, started)
        except errors.ServiceError as exc:
            code, message = status_code(exc), str(exc)
        except Exception:
            log.exception("unhandled error in %s", name)
            code, message = grpc.StatusCode.INTERNAL, "internal error; the call was logged"
        finally:
            counter = counters.get(code)
            if counter is None:
                counter = counters[code] = metrics.GRPC_REQUESTS.labels(name, code.name)
            counter.inc()
            duration.observe(perf_counter() - started)
        await context.abort(code, message)  # raises: the call ends with this status

    return handler


def add_to_server(service: InferenceService, server: grpc.aio.Server) -> None:
    """Register the service's methods, taking raw request bytes (see ``_rpc``)."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(getattr(service, name), response_serializer=reply.SerializeToString)
        for name, (_, reply) in _TYPES.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, state: ServingState) -> None:
        self.state = state

    @_rpc
    def ServerLive(self, request: pb.ServerLiveRequest, context: Any, started: float) -> pb.ServerLiveResponse:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    @_rpc
    def ServerReady(self, request: pb.ServerReadyRequest, context: Any, started: float) -> pb.ServerReadyResponse:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.state.model is not None)

    @_rpc
    def ModelReady(self, request: pb.ModelReadyRequest, context: Any, started: float) -> pb.ModelReadyResponse:  # noqa: N802
        check_model_name(request.name, self.state.settings.model_name, shown)
        versions = self.state.versions
        return pb.ModelReadyResponse(ready=bool(versions) and (not request.version or request.version in versions))

    @_rpc
    def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: Any, started: float
    ) -> pb.ServerMetadataResponse:
        # No extensions: binary_tensor_data, which REST lists, is what raw contents are here.
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=[])

    @_rpc
    def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: Any, started: float
    ) -> pb.ModelMetadataResponse:
        check_model_name(request.name, self.state.settings.model_name, shown)
        versions = self.state.versions
        if request.version and request.version not in versions:
            raise not_loaded(request.name, request.version, shown)
        return codec.model_metadata(request.name, versions)

    @_rpc
    def ModelInfer(self, request: pb.ModelInferRequest, context: Any, started: float) -> pb.ModelInferResponse:  # noqa: N802
        state = self.state
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:  # waited past its deadline: nobody reads the answer
            raise DeadlineExceeded("the call's deadline passed before it was run")
        check_model_name(request.model_name, state.settings.model_name, shown)
        serving = state.classifier.serving()  # read once: this call uses this rollout throughout
        # A named version is answered by that exact version, whichever arm serves it.
        choice = choose_version(serving, request.model_name, request.model_version, _rollout_key(context), shown)
        req = codec.parse(request, state.settings.max_batch)
        outcome = state.classifier.classify(req.pixels, SOURCE, req.infos, started, choice=choice)
        response = codec.encode(outcome, req, request.model_name)
        state.classifier.log(outcome, peer_address(context.peer()))  # once the response is built
        return response


def _rollout_key(context: Any) -> str | None:
    metadata = dict(context.invocation_metadata() or ())
    for name in ROLLOUT_KEY_METADATA:
        value = metadata.get(name)
        if value:
            return value
    return None


def peer_address(peer: str | None) -> str | None:
    """The client's IP address from gRPC's peer string ("ipv4:10.0.0.7:51234",
    "ipv6:%5B::1%5D:51234"), as REST records it: an IPv4 client of a dual-stack socket
    ("[::ffff:10.0.0.7]") as its IPv4 address."""
    kind, _, rest = unquote(peer or "").partition(":")
    if kind not in ("ipv4", "ipv6"):  # unix sockets and the like: no address
        return None
    host = rest.rpartition(":")[0].strip("[]")
    if kind == "ipv6" and host.startswith("::ffff:") and "." in host:
        host = host.removeprefix("::ffff:")
    return host or None
