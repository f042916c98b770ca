"""A seeded generator of bad HTTP requests for every endpoint of the serving app.

Each :class:`BadRequest` is built from raw bytes (method, path, headers, body), so nothing in
the client "fixes" it on the way. Kinds: corrupt, truncated and foreign image files, empty and
missing file fields, decompression bombs, wrong JSON types and shapes, malformed JSON (also
too deep to parse), wrong tensor shapes/datatypes and binary framing, unknown model names and
versions, bad feedback and query values, wrong methods and content types, oversized bodies.
Header and URL size limits are gunicorn's, answered before the app sees the request
(:data:`PROTOCOL_KINDS`).
"""

from __future__ import annotations

import base64
import json
import random
import string
import struct
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

# Kinds answered by gunicorn's HTTP parser itself (with a JSON body, see server.protocol_errors), not by the app.
PROTOCOL_KINDS = frozenset({"huge-header", "many-headers", "long-url"})
JSON = "application/json"


@dataclass(frozen=True)
class BadRequest:
    kind: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def describe(self) -> str:
        head = {k: (v if len(v) < 80 else v[:80] + f"...({len(v)} chars)") for k, v in self.headers.items()}
        body = self.body[:120] + (b"..." if len(self.body) > 120 else b"")
        return f"[{self.kind}] {self.method} {self.path[:120]} {head} body({len(self.body)} B)={body!r}"


@dataclass(frozen=True)
class Assets:
    """Valid files to mutate: format name -> bytes, and one 28×28 image as 0–255 rows."""

    images: dict[str, bytes]
    pixels: list[list[int]]


def multipart(
    parts: list[tuple[str, str | None, str | None, bytes]], boundary: str = "fuzzb0undary"
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a multipart/form-data request; parts are (field, filename, type, data)."""
    chunks = []
    for name, filename, ctype, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        head = f"--{boundary}\r\nContent-Disposition: {disp}\r\n"
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        chunks.append(head.encode("utf-8", "surrogateescape") + b"\r\n" + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, b"".join(chunks)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny, well-formed PNG header that declares an enormous 8-bit gray image."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def gif_bomb() -> bytes:
    """A GIF whose logical screen and frame claim 65535×65535 pixels."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x08\x02\x4c\x01\x00\x3b"
    return screen + frame


class Generator:
    """``make(n)`` returns ``n`` bad requests, the same ones for the same seed."""

    def __init__(
        self,
        assets: Assets,
        *,
        seed: int,
        max_upload: int,
        model_name: str = "fashion",
        max_batch: int = 1024,
    ) -> None:
        self.rng = random.Random(seed)
        self.assets = assets
        self.max_upload = max_upload
        self.model = model_name
        self.max_batch = max_batch
        self.kinds: list[Callable[[], BadRequest]] = [
            self.corrupt_image,
            self.truncated_image,
            self.foreign_bytes,
            self.empty_or_missing_file,
            self.text_field_instead_of_file,
            self.hostile_filename,
            self.bomb,
            self.bad_instances,
            self.malformed_json,
            self.deep_json,
            self.bad_v2_tensor,
            self.bad_v2_binary,
            self.bad_v1_body,
            self.unknown_model,
            self.bad_feedback,
            self.bad_query,
            self.wrong_method,
            self.wrong_content_type,
            self.oversize_body,
            self.random_path,
            self.huge_header,
            self.many_headers,
            self.long_url,
        ]

    def make(self, n: int) -> list[BadRequest]:
        # Every kind at least n // len(kinds) times, the rest at random; then shuffled.
        per_kind = max(1, n // len(self.kinds))
        makers = [k for k in self.kinds for _ in range(per_kind)]
        makers += [self.rng.choice(self.kinds) for _ in range(max(0, n - len(makers)))]
        self.rng.shuffle(makers)
        return [make() for make in makers]

    # --- helpers ----------------------------------------------------------------------------
    def _image(self) -> tuple[str, bytes]:
        fmt = self.rng.choice(sorted(self.assets.images))
        return fmt, self.assets.images[fmt]

    def _json(self, kind: str, path: str, value: object) -> BadRequest:
        return BadRequest(kind, "POST", path, {"Content-Type": JSON, "Accept": JSON}, json.dumps(value).encode())

    def _upload(
        self,
        kind: str,
        data: bytes,
        filename: str | None = "upload.png",
        ctype: str | None = None,
        field_name: str = "file",
    ) -> BadRequest:
        path = self.rng.choice(["/api/v1/predict", "/api/v1/predict", "/"])
        headers, body = multipart([(field_name, filename, ctype, data)])
        return BadRequest(kind, "POST", path, {**headers, "Accept": JSON}, body)

    def _word(self, n: int | None = None) -> str:
        alphabet = string.ascii_letters + string.digits + "-_.~%é€😀/\\:;'\"<>"
        return "".join(self.rng.choice(alphabet) for _ in range(n or self.rng.randint(1, 24)))

    def _uuid(self) -> str:
        """A random version-4 UUID from the seeded generator (no prediction has it)."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _odd_value(self) -> object:
        return self.rng.choice(
            [
                None,
                True,
                False,
                0,
                -1,
                1.5,
                10**400,
                1e308,
                "",
                "x",
                "²",
                "NaN",
                [],
                {},
                [[]],
                [None],
                {"b64": 5},
                {"b64": "!!!"},
                [1] * 27,
                [[0] * 28] * 27,
                [[0] * 29] * 28,
                [[[0] * 28] * 28],
                [["a"] * 28] * 28,
                [[-1] * 28] * 28,
                [[300] * 28] * 28,
                [[float("inf")] * 28] * 28,
                [[0] * 28 for _ in range(27)] + [[0] * 27],
            ]
        )

    # --- kinds ------------------------------------------------------------------------------
    def corrupt_image(self) -> BadRequest:
        fmt, data = self._image()
        raw = bytearray(data)
        for _ in range(self.rng.randint(1, 24)):
            raw[self.rng.randrange(8 if len(raw) > 16 else 0, len(raw))] = self.rng.randrange(256)
        return self._upload("corrupt-image", bytes(raw), f"c.{fmt.lower()}")

    def truncated_image(self) -> BadRequest:
        fmt, data = self._image()
        return self._upload("truncated-image", data[: self.rng.randrange(1, len(data))], f"t.{fmt.lower()}")

    def foreign_bytes(self) -> BadRequest:
        data = self.rng.choice(
            [
                self.rng.randbytes(self.rng.randint(1, 4096)),
                b"%PDF-1.7\n",
                b"RIFF\x00\x00\x00\x00WEBPVP8 ",
                b"II*\x00",
                b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                b"\x00" * 100,
                b"BM",
                b"GIF89a",
                b"\xff\xd8\xff",
            ]
        )
        if self.rng.random() < 0.5:
            return self._upload("foreign-bytes", data, "x.png", "image/png")
        return BadRequest(
            "foreign-bytes",
            "POST",
            "/api/v1/predict",
            {
                "Content-Type": self.rng.choice(["image/png", "image/jpeg", "application/octet-stream"]),
                "Accept": JSON,
            },
            data,
        )

    def empty_or_missing_file(self) -> BadRequest:
        choice = self.rng.randrange(4)
        if choice == 0:
            return self._upload("empty-file", b"", "empty.png")
        if choice == 1:
            return self._upload("empty-file", b"", None)
        if choice == 2:
            return self._upload("missing-file", self.assets.images["PNG"], "a.png", field_name="image")
        headers, _ = multipart([])
        return BadRequest(
            "missing-file", "POST", "/api/v1/predict", {**headers, "Accept": JSON}, b"--fuzzb0undary--\r\n"
        )

    def text_field_instead_of_file(self) -> BadRequest:
        return self._upload("text-field", self._word().encode("utf-8", "surrogatepass"), None)

    def hostile_filename(self) -> BadRequest:
        name = self.rng.choice(
            [
                "../../../../etc/passwd",
                "/etc/shadow",
                "..\\..\\boot.ini",
                "a\x00b.png",
                "x" * 5000 + ".png",
                "<script>alert(1)</script>.png",
                "%2e%2e%2fx.png",
                "CON",
                "😀.png",
                "",
            ]
        )
        if self.rng.random() < 0.5:  # a valid image: the name must merely be harmless (2xx is fine)
            return self._upload("hostile-filename", self.assets.images["PNG"], name, "image/png")
        return self._upload("hostile-filename", b"not an image", name)

    def bomb(self) -> BadRequest:
        data = self.rng.choice([png_bomb(), png_bomb(20_000, 20_000), gif_bomb()])
        if self.rng.random() < 0.5:
            return self._upload("bomb", data, "bomb.png")
        b64 = base64.b64encode(data).decode()
        return self._json("bomb", "/api/v1/predict", {"instances": [{"b64": b64}]})

    def bad_instances(self) -> BadRequest:
        path = self.rng.choice(["/api/v1/predict", f"/v1/models/{self.model}:predict"])
        value = self.rng.choice(
            [
                {"instances": self._odd_value()},
                {"instances": [self._odd_value() for _ in range(self.rng.randint(1, 3))]},
                {"instances": []},
                {"instances": [self.assets.pixels, self._odd_value()]},
                {"instances": "".join(self.rng.choice("AZaz09+/=") for _ in range(40))},
                {"instances": [{"b64": "".join(self.rng.choice("AZaz09+/=-_") for _ in range(40))}]},
                {"instances": [[[0.0] * 28] * 28] * (self.max_batch + 1)},
                {"instance": [self.assets.pixels]},
                {"instances": [self.assets.pixels], "inputs": [self.assets.pixels]},
                self._odd_value(),
            ]
        )
        return self._json("bad-instances", path, value)

    def malformed_json(self) -> BadRequest:
        good = json.dumps({"instances": [self.assets.pixels]}).encode()
        body = self.rng.choice(
            [
                good[: self.rng.randrange(0, len(good))],
                b"{'instances': []}",
                b'{"instances": [NaN]}',
                b"\xff\xfe{\x00}",
                b"[1,2,",
                b"null",
                b"",
                self.rng.randbytes(64),
                b'{"a":' * 50,
                b'"\\ud800"',
                b"1e999999",
            ]
        )
        path = self.rng.choice(
            [
                "/api/v1/predict",
                f"/v1/models/{self.model}:predict",
                f"/v2/models/{self.model}/infer",
                "/api/v1/feedback",
            ]
        )
        return BadRequest("malformed-json", "POST", path, {"Content-Type": JSON, "Accept": JSON}, body)

    def deep_json(self) -> BadRequest:
        depth = self.rng.choice([2_000, 50_000, 200_000])
        body = (b"[" * depth) + (b"]" * depth) if self.rng.random() < 0.5 else b'{"instances":' + b"[" * depth
        path = self.rng.choice(
            [
                "/api/v1/predict",
                f"/v1/models/{self.model}:predict",
                f"/v2/models/{self.model}/infer",
                "/api/v1/feedback",
            ]
        )
        return BadRequest("deep-json", "POST", path, {"Content-Type": JSON, "Accept": JSON}, body)

    def bad_v2_tensor(self) -> BadRequest:
        tensor: dict[str, object] = {
            "name": "pixels",
            "shape": [1, 28, 28],
            "datatype": "FP32",
            "data": [0.0] * 784,
        }
        mutation = self.rng.randrange(12)
        if mutation == 0:
            tensor["shape"] = self.rng.choice(
                [
                    [1, 28, 27],
                    [28, 28],
                    [1, 784, 1],
                    [],
                    [-1, 784],
                    [1.5, 784],
                    [10**12, 784],
                    ["1", 784],
                    [True, 784],
                    None,
                    "1,28,28",
                ]
            )
        elif mutation == 1:
            tensor["datatype"] = self.rng.choice(["FP64", "INT8", "fp32", "", None, 7, "BOOL", "FP16"])
        elif mutation == 2:
            tensor["data"] = self.rng.choice(
                [
                    [0.0] * 783,
                    [0.0] * 785,
                    "x",
                    None,
                    [[0.0] * 28] * 27,
                    [2.0] * 784,
                    [-0.5] * 784,
                    [10**400] + [0] * 783,
                    {"a": 1},
                    [["a"]] * 784,
                ]
            )
        elif mutation == 3:
            tensor.update(datatype="UINT8", data=self.rng.choice([[256] * 784, [-1] * 784, [0.5] * 784]))
        elif mutation == 4:
            tensor.update(datatype="BYTES", shape=[1], data=self.rng.choice([["!!"], [5], ["aGVsbG8="], [], [None]]))
        elif mutation == 5:
            tensor.pop(self.rng.choice(["name", "shape", "datatype", "data"]))
        elif mutation == 6:
            tensor["name"] = self.rng.choice([None, 5, ["pixels"], {}])
        elif mutation == 7:
            tensor["parameters"] = self.rng.choice(
                [[], "x", {"binary_data_size": -1}, {"binary_data_size": "5"}, {"binary_data_size": 10**9}]
            )
        req: dict[str, object] = {"inputs": [tensor]}
        if mutation == 8:
            req = {"inputs": [tensor, tensor]}
        elif mutation == 9:
            req = {"inputs": self.rng.choice([[], {}, None, "pixels", [None], [[]]])}
        elif mutation == 10:
            req["outputs"] = self.rng.choice(
                [
                    [{"name": "logits"}],
                    "probabilities",
                    [{}],
                    [{"name": 5}],
                    [{"name": "class", "parameters": {"binary_data": "yes"}}],
                ]
            )
        elif mutation == 11:
            req = self.rng.choice(
                [
                    {"id": 5, "inputs": [tensor]},
                    {"parameters": [], "inputs": [tensor]},
                    {"parameters": {"binary_data_output": "true"}, "inputs": [tensor]},
                    [req],
                    "x",
                ]
            )
        version = self.rng.choice(["", "", f"/versions/{quote(self._word(8), safe='')}"])
        return self._json("bad-v2-tensor", f"/v2/models/{self.model}{version}/infer", req)

    def bad_v2_binary(self) -> BadRequest:
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "pixels",
                        "shape": [1, 28, 28],
                        "datatype": "UINT8",
                        "parameters": {"binary_data_size": 784},
                    }
                ]
            }
        ).encode()
        raw = bytes(784)
        length, body = str(len(header)), header + raw
        mutation = self.rng.randrange(6)
        if mutation == 0:
            length = self.rng.choice(["-1", "0", "abc", str(len(body) + 1), "1e3", "", "99999999999999999999"])
        elif mutation == 1:
            body = header + raw[: self.rng.randrange(0, 784)]
        elif mutation == 2:
            body = header + raw + b"\x00" * self.rng.randint(1, 64)
        elif mutation == 3:
            length = str(self.rng.randrange(1, len(header)))
        elif mutation == 4:
            header = header.replace(b'"UINT8"', b'"BYTES"').replace(b"[1, 28, 28]", b"[1]")
            body, length = header + struct.pack("<I", 10**6) + b"xx", str(len(header))
        else:
            header = header.replace(b'"UINT8"', b'"FP32"')
            body, length = header + bytes(784 * 4 - 3), str(len(header))
        headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": length,
            "Accept": JSON,
        }
        return BadRequest("bad-v2-binary", "POST", f"/v2/models/{self.model}/infer", headers, body)

    def bad_v1_body(self) -> BadRequest:
        value = self.rng.choice(
            [
                {"inputs": {"x": [self.assets.pixels]}},
                {"inputs": {"pixels": "x"}},
                {"inputs": self._odd_value()},
                {"signature_name": "serving_default"},
                {"inputs": {"b64": 5}},
                [],
                {"instances": {"b64": "x"}},
            ]
        )
        return self._json("bad-v1-body", f"/v1/models/{self.model}:predict", value)

    def unknown_model(self) -> BadRequest:
        name = self.rng.choice([self._word(), self.model.upper(), self.model + " ", "mnist", "%00", "..", "a" * 300])
        quoted = "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in name if ord(c) < 128) or "x"
        method, path = self.rng.choice(
            [
                ("POST", f"/v1/models/{quoted}:predict"),
                ("POST", f"/v2/models/{quoted}/infer"),
                ("GET", f"/v2/models/{quoted}"),
                ("GET", f"/v2/models/{quoted}/ready"),
                ("GET", f"/v1/models/{quoted}"),
                ("POST", f"/v2/models/{self.model}/versions/{quoted}/infer"),
                ("GET", f"/v2/models/{self.model}/versions/{quoted}"),
            ]
        )
        body = json.dumps({"instances": [self.assets.pixels]}).encode() if method == "POST" else b""
        return BadRequest("unknown-model", method, path, {"Content-Type": JSON, "Accept": JSON}, body)

    def bad_feedback(self) -> BadRequest:
        pid = self.rng.choice(
            [
                None,
                5,
                "",
                "not-a-uuid",
                self._uuid(),
                "8a5c3d2e-1f0b-11e0-8000-000000000000",
                "²",
                [],
                {"a": 1},
                "x" * 10_000,
            ]
        )
        label = self.rng.choice([None, -1, 10, 3.5, "Shoe", "²", "٣", "", True, [], "99999999999999999999"])
        if self.rng.random() < 0.3:  # the HTML form, asking for JSON
            form = f"prediction_id={pid}&true_label={label}".encode("utf-8", "surrogatepass")
            return BadRequest(
                "bad-feedback",
                "POST",
                "/feedback",
                {"Content-Type": "application/x-www-form-urlencoded", "Accept": JSON},
                form,
            )
        return self._json(
            "bad-feedback",
            "/api/v1/feedback",
            self.rng.choice(
                [
                    {"prediction_id": pid, "true_label": label},
                    {"prediction_id": pid},
                    {"true_label": label},
                    [pid, label],
                    pid,
                ]
            ),
        )

    def bad_query(self) -> BadRequest:
        day = self.rng.choice(
            [
                "",
                "2026-13-45",
                "yesterday",
                "2026-1-1",
                "²⁰²⁶-11-24",
                "٢٠٢٦-١١-٢٤",
                "9999-12-31",
                "0000-01-01",
                "2026-02-30",
                "%00",
                "2026-11-24%0A",
            ]
        )
        limit = self.rng.choice(["", "0", "-1", "abc", "²", "1001", "99999999999999999999", "1.5", "%00"])
        state = self.rng.choice(["", "garbage", "%00%ff", "A" * 3000, "eyJ4IjoxfQ=="])
        path = self.rng.choice(["/api/v1/predictions", "/api/v1/predictions/counts"])
        query = "&".join(
            f"{k}={quote(v, safe='%-_.~')}" for k, v in (("day", day), ("limit", limit), ("page_state", state))
        )
        if self.rng.random() < 0.3:
            tail = quote(self.rng.choice(["x", "²", "0" * 40, self._uuid()]))
            path, query = f"/api/v1/predictions/{tail}", ""
        return BadRequest("bad-query", "GET", f"{path}?{query}" if query else path, {"Accept": JSON})

    def wrong_method(self) -> BadRequest:
        method = self.rng.choice(["PUT", "DELETE", "PATCH", "GET", "POST"])
        path = self.rng.choice(
            [
                "/api/v1/predict",
                "/api/v1/feedback",
                f"/v2/models/{self.model}/infer",
                f"/v1/models/{self.model}:predict",
                "/v2/health/live",
                "/v2/health/ready",
                "/v2",
                "/openapi.json",
                "/model",
                "/predictions",
                "/api/v1/model",
            ]
        )
        if method == "GET" and path in (
            "/v2/health/live",
            "/v2/health/ready",
            "/v2",
            "/openapi.json",
            "/model",
            "/predictions",
            "/api/v1/model",
        ):
            method = "DELETE"
        if method == "POST" and path not in (
            "/api/v1/feedback",
            "/api/v1/predict",
            f"/v2/models/{self.model}/infer",
            f"/v1/models/{self.model}:predict",
        ):
            method = "PUT"
        if method == "GET":
            method = "PATCH"
        return BadRequest("wrong-method", method, path, {"Accept": JSON, "Content-Type": JSON}, b"{}")

    def wrong_content_type(self) -> BadRequest:
        path = self.rng.choice(
            [
                "/api/v1/predict",
                f"/v1/models/{self.model}:predict",
                "/api/v1/feedback",
                f"/v2/models/{self.model}/infer",
                "/",
            ]
        )
        ctype = self.rng.choice(
            [
                "text/plain",
                "application/xml",
                "multipart/form-data",
                "multipart/form-data; boundary=",
                'multipart/form-data; boundary="unterminated',
                "application/x-www-form-urlencoded",
                "",
                "application/json; charset=utf-16",
                "image/svg+xml",
                "*/*",
                "application/json; charset=bogus-9",
            ]
        )
        body = self.rng.choice(
            [
                b"file=abc",
                json.dumps({"instances": [self.assets.pixels]}).encode(),
                self.assets.images["PNG"],
                b"--x\r\n\r\n",
            ]
        )
        headers = {"Accept": JSON}
        if ctype:
            headers["Content-Type"] = ctype
        return BadRequest("wrong-content-type", "POST", path, headers, body)

    def oversize_body(self) -> BadRequest:
        size = self.max_upload + self.rng.randint(1, 4096)
        kind = self.rng.randrange(3)
        if kind == 0:
            headers, body = multipart([("file", "big.png", "image/png", self.assets.images["PNG"] + bytes(size))])
            return BadRequest(
                "oversize",
                "POST",
                self.rng.choice(["/api/v1/predict", "/"]),
                {**headers, "Accept": JSON},
                body,
            )
        if kind == 1:
            return BadRequest(
                "oversize",
                "POST",
                "/api/v1/predict",
                {"Content-Type": "image/png", "Accept": JSON},
                self.assets.images["PNG"] + bytes(size),
            )
        return BadRequest(
            "oversize",
            "POST",
            self.rng.choice([f"/v2/models/{self.model}/infer", "/api/v1/predict", "/api/v1/feedback"]),
            {"Content-Type": JSON, "Accept": JSON},
            b'{"instances": [' + b"0," * (size // 2) + b"0]}",
        )

    def random_path(self) -> BadRequest:
        prefix = self.rng.choice(["/api/v1/", "/v2/", "/v1/models/", "/model/", "/", "/v2/models/fashion/"])
        tail = quote(self._word(), safe="") + self.rng.choice(["", "%zz", "%", "%00", "%ff", "%C0%AE"])
        return BadRequest("random-path", self.rng.choice(["GET", "POST"]), prefix + tail, {"Accept": JSON})

    def huge_header(self) -> BadRequest:
        return BadRequest(
            "huge-header",
            "GET",
            "/v2/health/ready",
            {"Accept": JSON, "X-Fuzz": "a" * self.rng.randint(9_000, 70_000)},
        )

    def many_headers(self) -> BadRequest:
        return BadRequest(
            "many-headers",
            "GET",
            "/v2/health/ready",
            {"Accept": JSON, **{f"X-F{i}": "v" for i in range(self.rng.randint(101, 400))}},
        )

    def long_url(self) -> BadRequest:
        return BadRequest(
            "long-url",
            "GET",
            "/api/v1/predictions?day=" + "9" * self.rng.randint(9_000, 40_000),
            {"Accept": JSON},
        )
