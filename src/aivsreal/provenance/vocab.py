"""What provenance fields name: IPTC digital source types and image-generator names."""

from __future__ import annotations

import re

# IPTC NewsCodes digital source types (cv.iptc.org/newscodes/digitalsourcetype) → (indicates, strength).
DIGITAL_SOURCE_TYPES: dict[str, tuple[str | None, str]] = {
    "trainedAlgorithmicMedia": ("ai", "strong"),
    "compositeWithTrainedAlgorithmicMedia": ("ai", "strong"),
    "algorithmicMedia": ("ai", "moderate"),
    "compositeSynthetic": ("ai", "moderate"),
    "digitalCapture": ("real", "weak"),
    "computationalCapture": ("real", "weak"),
    "negativeFilm": ("real", "weak"),
    "positiveFilm": ("real", "weak"),
    "print": ("real", "weak"),
    "compositeCapture": ("real", "weak"),
    "algorithmicallyEnhanced": (None, "info"),
    "minorHumanEdits": (None, "info"),
    "humanEdits": (None, "info"),
    "digitalArt": (None, "info"),
    "dataDrivenMedia": (None, "info"),
    "screenCapture": (None, "info"),
    "virtualRecording": (None, "info"),
}

# Names of image generators and generator front-ends, matched case-insensitively on word boundaries.
GENERATOR_NAMES = (
    r"stable[ _-]?diffusion",
    r"sdxl",
    r"midjourney",
    r"dall[·.\-_ ]?e",
    r"adobe firefly",
    r"firefly",
    r"imagen",
    r"nano[ -]?banana",
    r"novelai",
    r"comfyui",
    r"invokeai",
    r"fooocus",
    r"automatic1111",
    r"stable-diffusion-webui",
    r"sd\.next",
    r"leonardo\.ai",
    r"ideogram",
    r"flux\.?1?",
    r"kandinsky",
    r"craiyon",
    r"nightcafe",
    r"dreamstudio",
    r"diffusionbee",
    r"draw things",
    r"bing image creator",
    r"image creator from microsoft designer",
    r"gpt-4o",
    r"chatgpt",
    r"openai",
    r"made with google ai",
    r"google ai",
    r"seedream",
    r"hunyuanimage",
    r"qwen-image",
    r"recraft",
    r"playground v\d",
    r"krea",
    r"runway(?:ml)?",
    r"sora",
    r"easy diffusion",
    r"diffusers",
)
_GEN_RE = re.compile(r"(?<![\w])(" + "|".join(GENERATOR_NAMES) + r")(?![\w])", re.IGNORECASE)
