"""Provenance evidence (a package: ``items``, ``c2pa``, ``metadata``, ``watermark``, ``verdict``, and
``inspection`` running them all): what a file says about its own origin, next to (never instead of) the model score.

Checks, each on the bytes read once: C2PA content credentials (``c2pa-python``: claim generator, actions
and their IPTC digital source type, signature validation), XMP (IPTC ``DigitalSourceType``, ``CreatorTool``,
the Chinese ``AIGC`` label), EXIF (``Software``, ``Make``/``Model``, ``UserComment``, ``ImageDescription``),
JPEG comments, PNG text chunks of generators (Stable Diffusion WebUI ``parameters``, ComfyUI
``prompt``/``workflow``, NovelAI ``Software``/``Comment``, InvokeAI, Fooocus, Easy Diffusion, Midjourney)
and the invisible ``dwtDct`` watermarks of Stable Diffusion v1/v2 and SDXL (``invisible-watermark``).

Each finding is an item ``{"kind", "found", "strength", "detail", "indicates"}``; ``strength`` is
``strong`` (a generator's own structured output, a valid C2PA claim, a watermark that matches beyond
chance), ``moderate`` (a claim whose signature failed, a generator name in a tool field, a partial
watermark), ``weak`` (hints anyone can copy, e.g. camera EXIF), ``info`` (context) or ``error`` (a part of
the file that could not be parsed). ``indicates`` is ``"ai"``, ``"real"`` or ``None``.

Finding nothing is reported as "no provenance found", never as evidence of a real photo: most uploads
have their metadata stripped, and generators' marks do not survive resizing or most re-encoding.

Verdict policy (:func:`combine`), applied to a model prediction and the items; the score always stays visible:
  1. strong evidence overrides the model: strong AI evidence → ``ai``; strong capture evidence (a C2PA
     capture claim on a trusted certificate) → ``real``; strong evidence both ways → ``uncertain``;
  2. moderate evidence agreeing with the model confirms it; disagreeing with it → ``uncertain``; when the
     model is uncertain, moderate evidence decides;
  3. weak/info evidence, or none, leaves the model's label (``uncertain`` inside the card's band).
The verdict reads ``"<ai|real|uncertain> (<basis>)"``,
e.g. ``"ai (provenance: C2PA trainedAlgorithmicMedia)"``.

The base install needs only Pillow and numpy here; ``c2pa`` and ``imwatermark`` (torch, OpenCV) come with
the ``[provenance]`` extra and are imported lazily; a report says which checks were unavailable.
"""

from __future__ import annotations

from .c2pa import c2pa_items
from .inspection import inspect_bytes, inspect_path
from .items import STRENGTHS, format_report, item, summarize
from .metadata import MAX_TEXT_BYTES, MAX_XMP_BYTES, png_text_items
from .verdict import attach, combine
from .vocab import DIGITAL_SOURCE_TYPES, GENERATOR_NAMES
from .watermark import WATERMARKS, WM_MODERATE_P, WM_STRONG_P, binomial_tail, block_bits, match_marks

__all__ = [
    "inspect_path",
    "inspect_bytes",
    "format_report",
    "combine",
    "attach",
    "summarize",
    "c2pa_items",
    "png_text_items",
    "block_bits",
    "match_marks",
    "WATERMARKS",
    "DIGITAL_SOURCE_TYPES",
    "item",
    "STRENGTHS",
    "GENERATOR_NAMES",
    "WM_STRONG_P",
    "WM_MODERATE_P",
    "binomial_tail",
    "MAX_TEXT_BYTES",
    "MAX_XMP_BYTES",
]
