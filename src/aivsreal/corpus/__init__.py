"""The data engine: a declared catalog of image sources → a labelled corpus of native-resolution patches.

``catalog`` validates the YAML catalog, ``origins`` reads GitHub snapshots, Debian packages, PyPI files
and local folders offline, ``builder`` hashes, filters, de-duplicates, splits and cuts the originals into
patches (``patches``), ``fakes`` adds aligned (TAEF2) and synthetic-decoder fakes (the only part that
needs torch, imported lazily) and ``report`` writes ``report.json`` and ``originals.csv``.
"""

from __future__ import annotations

DEFAULT_CACHE = "~/.cache/aivsreal"
