"""The HTTP contract of ``mote serve``: OpenAI's embeddings API, with the task named the way clients already do.

``POST /v1/embeddings`` takes OpenAI's body (``input``: a string or a list of strings, ``model``,
``encoding_format``: ``float`` | ``base64``, ``dimensions``) plus the task as ``input_type``: Cohere's four names
(``search_query``, ``search_document``, ``classification``, ``clustering``, the same four tasks as MoTE's) or a
task name of the served model; no ``input_type`` is the model's default task, as :func:`mote.encode`. ``truncate``
(default false) cuts inputs longer than the model's ``max_seq_length`` tokens instead of refusing them with a 413.

Bad input is an :class:`ApiError` (400, or 413 for too many / too long inputs) whose body is OpenAI's error object
with a one-line message. Nothing here imports Ray or torch.

Example:
    >>> req = EmbeddingRequest.model_validate({"input": "how do magnets work", "input_type": "search_query"})
    >>> resolve_task(req.input_type, ["query", "document"], "document")
    'query'
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

# Cohere's input_type names -> MoTE's task names (the same four tasks).
COHERE_INPUT_TYPES: dict[str, str] = {
    "search_query": "query",
    "search_document": "document",
    "classification": "classification",
    "clustering": "clustering",
}
DEFAULT_MAX_INPUTS = 2048  # OpenAI's limit on the inputs of one request
# A text with more characters than this many per allowed token is refused (or cut, with truncate) before it is
# tokenised: no tokeniser call on a megabyte of text.
CHARS_PER_TOKEN_LIMIT = 64


class ApiError(Exception):
    """A request the service refuses: HTTP ``status`` with OpenAI's error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.status, self.param, self.code)


def error_body(message: str, status: int, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class EmbeddingRequest(BaseModel):
    """The body of ``POST /v1/embeddings`` (unknown fields, such as OpenAI's ``user``, are ignored)."""

    model_config = ConfigDict(extra="ignore")

    input: StrictStr | list[StrictStr]
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(default=None)
    input_type: StrictStr | None = None
    truncate: StrictBool = False

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def validation_message(errors: Sequence[dict[str, Any]]) -> tuple[str, str | None]:
    """One line (and the parameter) for pydantic / FastAPI validation errors of a request body."""
    if not errors:
        return "invalid request body", None
    first = errors[0]
    loc = [str(x) for x in first.get("loc", ())]
    loc = loc[1:] if loc and loc[0] in ("body", "query") else loc
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    param = loc[0] if loc else None
    if first.get("type") == "model_attributes_type" or not loc:
        return "the request body must be a JSON object with an 'input' field", param
    if param == "input":
        return "'input' must be a string or a list of strings (token arrays are not accepted)", param
    return f"invalid '{'.'.join(loc)}': {first.get('msg', 'bad value')}", param


def resolve_task(input_type: str | None, tasks: Sequence[str], default_task: str) -> str:
    """The served task for ``input_type`` (a Cohere name or a task name; None: the default), else a 400."""
    if input_type is None:
        return default_task
    if input_type in tasks:
        return input_type
    mapped = COHERE_INPUT_TYPES.get(input_type)
    if mapped in tasks:
        return mapped
    names = [*tasks, *(k for k, v in COHERE_INPUT_TYPES.items() if v in tasks)]
    raise ApiError(400, f"unknown input_type {input_type!r}: this model serves {names}", "input_type",
                   "unknown_task")


def check_inputs(texts: list[str], max_inputs: int) -> None:
    """An empty list is a 400; more than ``max_inputs`` texts a 413."""
    if not texts:
        raise ApiError(400, "'input' is an empty list: send at least one string", "input")
    if len(texts) > max_inputs:
        raise ApiError(413, f"{len(texts)} inputs in one request; the limit is {max_inputs}", "input",
                       "too_many_inputs")


def check_dimensions(dimensions: int | None, full: int, matryoshka_dims: Sequence[int] | None) -> int | None:
    """The Matryoshka truncation ``dimensions`` asks for (None: the full embedding), else a 400."""
    if dimensions is None or dimensions == full:
        return None
    if not matryoshka_dims:
        raise ApiError(400, f"'dimensions' {dimensions}: this model was not trained with Matryoshka and gives only "
                            f"{full} dimensions", "dimensions")
    if not 1 <= dimensions < full:
        raise ApiError(400, f"'dimensions' must be 1..{full} (trained for {list(matryoshka_dims)}), got {dimensions}",
                       "dimensions")
    return dimensions


def too_long(index: int, size: int, limit: int, unit: str = "tokens") -> ApiError:
    what = "tokens (task prefix and special tokens included)" if unit == "tokens" else "characters"
    return ApiError(413, f"input {index} has {size} {what}; the model takes {limit} tokens: shorten it or send "
                         "\"truncate\": true", "input", "input_too_long")


def encode_embedding(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """One embedding as JSON floats, or base64 of its little-endian float32 bytes (what OpenAI's clients decode)."""
    row = np.asarray(vector, dtype="<f4")
    if encoding_format == "base64":
        return base64.b64encode(row.tobytes()).decode("ascii")
    return row.tolist()


def embeddings_response(vectors: Sequence[np.ndarray], model: str, encoding_format: str,
                        prompt_tokens: int) -> dict[str, Any]:
    """OpenAI's embeddings response body."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encode_embedding(v, encoding_format)}
                 for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": int(prompt_tokens), "total_tokens": int(prompt_tokens)},
    }
