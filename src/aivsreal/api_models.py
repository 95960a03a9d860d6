"""Pydantic models of the HTTP API's requests and responses: what ``/openapi.json`` documents.

The server writes its JSON itself (streamed uploads, provenance values without a JSON type), so these
models describe the shapes, and tests validate real responses against them. Every error, whatever the
status code, is ``{"error": {"kind", "message"}}``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema


class ErrorInfo(BaseModel):
    kind: str = Field(description="Stable short code, e.g. not_an_image, too_large, busy, invalid_request.")
    message: str = Field(description="What went wrong, for people.")


class EvidenceItem(BaseModel):
    """One provenance finding (see ``aivsreal inspect``)."""

    model_config = ConfigDict(extra="allow")
    kind: str = Field(description="c2pa, xmp, exif, png-text, jpeg-comment, watermark or file.")
    found: str
    strength: Literal["strong", "moderate", "weak", "info", "error"]
    detail: str | None = None
    indicates: Literal["ai", "real"] | None = None


class Heatmap(BaseModel):
    """Grad-CAM heatmap (``?heatmap=true``): a PNG, or why there is none."""

    png_base64: str | None = Field(None, description="PNG of the heatmap overlaid on the image, base64.")
    error: ErrorInfo | None = None


class _Extras(BaseModel):
    provenance: list[EvidenceItem] | None = Field(None, description="With ?provenance=true: evidence items.")
    verdict: str | None = Field(
        None,
        description="With ?provenance=true: model label combined with the evidence, e.g. 'real (model)'.",
    )
    heatmap: Heatmap | None = Field(None, description="With ?heatmap=true.")


class ScoredFile(_Extras):
    path: str = Field(description="The uploaded file's name.")
    score: float = Field(ge=0, le=1, description="Calibrated probability that the image is AI-generated.")
    label: Literal["ai", "real"] = Field(description="ai when score >= threshold.")
    uncertain: bool = Field(
        description="The score lies within the card's uncertain band of the threshold, or see reason."
    )
    reason: str | None = Field(None, description="Why it is uncertain whatever the score, e.g. too small.")
    threshold: float = Field(gt=0, lt=1, description="The model's decision line on the score.")
    model_id: str


class FailedFile(_Extras):
    path: str
    error: ErrorInfo


class PredictResponse(BaseModel):
    """200: at least one file was scored; one result per file, in upload order."""

    model_id: str
    results: list[ScoredFile | FailedFile]


class ErrorResponse(BaseModel):
    """Every error. When files were read but none could be scored (413, 415, 422), ``model_id`` and
    ``results`` say why for each file; a bad query (422) adds ``detail``."""

    error: ErrorInfo
    model_id: str | None = None
    results: list[ScoredFile | FailedFile] | None = None
    detail: list[dict[str, Any]] | None = None


class Health(BaseModel):
    status: Literal["ok"]
    model_id: str
    pending: int = Field(description="Requests waiting for or in the inference pool.")
    workers: int


class ModelInfo(BaseModel):
    model_id: str
    card: dict[str, Any] = Field(
        description="The model card: preprocessing, threshold, uncertain band, metrics."
    )
    format: Literal["onnx", "checkpoint"]
    onnx_url: str | None = Field(description="Where to download the ONNX file for on-device scoring.")
    onnx_sha256: str | None
    version: str = Field(description="aivsreal package version.")


# A file: contentMediaType is OpenAPI 3.1's word for it, format: binary the one Swagger UI (and 3.0 tools)
# turn into a file input. Swagger UI then looks up a JsonSchema_string_binary component, which the /docs
# page registers (serve.DOCS_INIT_JS) so try-it-out logs no "Could not find component".
UploadFile = Annotated[
    bytes,
    WithJsonSchema({"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}),
]


class PredictUpload(BaseModel):
    """multipart/form-data body of ``POST /v1/predict``."""

    files: list[UploadFile] = Field(min_length=1, description="One or more image files (field repeated).")


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for ``codes``, all with the ErrorResponse shape."""
    what = {
        400: "Malformed multipart body, no 'files' field, or the client went away",
        404: "Not found",
        408: "The request body arrived too slowly",
        413: "Body over the upload limit, too many files, or every file over the pixel limit",
        415: "Not multipart/form-data, or every file of an unsupported type",
        422: "Bad query parameter, or no file could be scored",
        503: "Too many requests waiting (retry after the Retry-After seconds)",
    }
    return {c: {"model": ErrorResponse, "description": what.get(c, "Error")} for c in codes}
