"""The requests the service refuses, named by what is wrong with them, not by a protocol's status.

Each protocol maps these to its own answer once: ``web.errors`` to an HTTP status, and
``oip_grpc.service`` to a gRPC code. A message is written for the client.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A request the service refuses; ``str(error)`` is the message for the client."""


class InvalidInput(ServiceError):
    """A request that is malformed, or whose values are out of range."""


class TooLarge(ServiceError):
    """More images (or multipart parts) in one request than the service takes."""


class UnsupportedMediaType(ServiceError):
    """A body or an image file of a type the service does not read."""


class ModelNotFound(ServiceError):
    """A model name this server does not serve, or a version it has not loaded."""


class ModelNotReady(ServiceError):
    """No model is loaded yet."""


class ImageError(ServiceError):
    """The bytes of an image file are not a usable image: one of the three kinds below."""


class EmptyImage(ImageError, InvalidInput):
    """An image file of no bytes."""


class UnsupportedImageType(ImageError, UnsupportedMediaType):
    """A file that is not PNG, JPEG, GIF or BMP (by its magic bytes)."""


class UndecodableImage(ImageError):
    """A corrupt or truncated image, a decompression bomb, or one over the decode budget."""
