"""Provenance evidence: every generator/credential/watermark fixture is made here and must be detected;
plain and malformed files must give "no provenance found" or error items, never a crash."""

from __future__ import annotations

import datetime as dt
import io
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from helpers import make_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from aivsreal import provenance as pv
from aivsreal.runtime import Prediction

AI_DST = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


# ---- fixtures ------------------------------------------------------------------------------------------
def png_bytes(
    img: Image.Image, texts: dict[str, str] | None = None, itxt: dict[str, str] | None = None, **kw
) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in (texts or {}).items():
        info.add_text(k, v)
    for k, v in (itxt or {}).items():
        info.add_itxt(k, v)
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=info, **kw)
    return buf.getvalue()


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def xmp_packet(dst: str = AI_DST, extra: str = "") -> str:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'xmlns:xmp="http://ns.adobe.com/xap/1.0/" Iptc4xmpExt:DigitalSourceType="{dst}"{extra}/>'
        "</rdf:RDF></x:xmpmeta>"
    )


def kinds(rep: dict, strength: str | None = None) -> list[tuple[str, str]]:
    return [
        (it["kind"], it["found"]) for it in rep["items"] if strength is None or it["strength"] == strength
    ]


def assert_ai(rep: dict, kind: str, strength: str = "strong") -> dict:
    hits = [
        it
        for it in rep["items"]
        if it["kind"] == kind and it["indicates"] == "ai" and it["strength"] == strength
    ]
    assert hits, pv.format_report(rep)
    assert rep["summary"].startswith("AI provenance" if strength == "strong" else "possible AI provenance")
    assert "error" not in rep
    return hits[0]


COMFY_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}},
}
COMFY_WORKFLOW = {
    "last_node_id": 9,
    "nodes": [{"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["sd_xl_base_1.0.safetensors"]}],
}
A1111 = (
    "a castle on a hill\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, "
    "Seed: 1234, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.9.4"
)


# ---- generator text chunks -----------------------------------------------------------------------------
def test_a1111_parameters():
    rep = pv.inspect_bytes(png_bytes(make_image("ai", 64), {"parameters": A1111}), "a1111.png")
    hit = assert_ai(rep, "png-text")
    assert "WebUI" in hit["found"] and "v1-5-pruned-emaonly" in hit["detail"]


def test_comfyui_prompt_and_workflow():
    data = png_bytes(
        make_image("ai", 64), {"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps(COMFY_WORKFLOW)}
    )
    rep = pv.inspect_bytes(data, "comfy.png")
    found = {it["found"]: it for it in rep["items"] if it["strength"] == "strong"}
    assert {"ComfyUI prompt graph", "ComfyUI workflow"} <= set(found)
    assert "sd_xl_base_1.0" in found["ComfyUI prompt graph"]["detail"]


def test_novelai_software_and_comment():
    comment = json.dumps(
        {"prompt": "1girl", "steps": 28, "sampler": "k_euler_ancestral", "scale": 5, "uc": "lowres"}
    )
    texts = {
        "Software": "NovelAI",
        "Source": "NovelAI Diffusion V4.5 4BDE2A90",
        "Comment": comment,
        "Title": "NovelAI generated image",
        "Description": "1girl",
    }
    rep = pv.inspect_bytes(png_bytes(make_image("ai", 64), texts), "nai.png")
    hit = assert_ai(rep, "png-text")
    assert hit["found"] == "NovelAI metadata" and "V4.5" in hit["detail"]


@pytest.mark.parametrize(
    "texts,found",
    [
        (
            {"invokeai_metadata": json.dumps({"positive_prompt": "x", "model": {"name": "sdxl"}})},
            "InvokeAI metadata",
        ),
        (
            {"Description": "a fox --v 6 Job ID: 0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", "Author": "someone"},
            "Midjourney job description",
        ),
        ({"Software": "Adobe Firefly"}, "PNG Software: Adobe Firefly"),
    ],
)
def test_other_generator_signatures(texts, found):
    rep = pv.inspect_bytes(png_bytes(make_image("ai", 64), texts), "g.png")
    assert assert_ai(rep, "png-text")["found"] == found


def test_sd_parameters_in_exif_user_comment_of_jpeg():
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111.encode("utf-16-be")
    rep = pv.inspect_bytes(jpeg_bytes(make_image("ai", 64), exif=exif), "a1111.jpg")
    assert "EXIF UserComment" in assert_ai(rep, "exif")["found"]


# ---- XMP and EXIF ---------------------------------------------------------------------------------------
def test_xmp_digital_source_type_in_jpeg_and_png():
    img = make_image("ai", 64)
    for name, data in (
        ("x.jpg", jpeg_bytes(img, xmp=xmp_packet().encode())),
        ("x.png", png_bytes(img, itxt={"XML:com.adobe.xmp": xmp_packet()})),
    ):
        rep = pv.inspect_bytes(data, name)
        assert assert_ai(rep, "xmp")["found"] == "IPTC DigitalSourceType trainedAlgorithmicMedia"


def test_xmp_creator_tool_and_capture_claim():
    pkt = xmp_packet(
        "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture", ' xmp:CreatorTool="Midjourney"'
    )
    rep = pv.inspect_bytes(jpeg_bytes(make_image("real", 64), xmp=pkt.encode()), "mj.jpg")
    assert assert_ai(rep, "xmp")["found"] == "XMP CreatorTool: Midjourney"
    capture = [it for it in rep["items"] if it["indicates"] == "real"]
    assert capture and capture[0]["strength"] == "weak"  # unsigned capture claims never count as proof


def test_exif_software_generator_and_camera():
    exif = Image.Exif()
    exif[0x0131] = "Adobe Firefly"
    rep = pv.inspect_bytes(jpeg_bytes(make_image("ai", 64), exif=exif), "ff.jpg")
    assert assert_ai(rep, "exif")["found"] == "EXIF Software: Adobe Firefly"

    cam = Image.Exif()
    cam[0x010F], cam[0x0110], cam[0x0131] = "Canon", "Canon EOS R5", "Adobe Lightroom 7.0"
    rep = pv.inspect_bytes(jpeg_bytes(make_image("real", 64), exif=cam), "cam.jpg")
    assert rep["summary"] == "no provenance found"
    assert ("exif", "EXIF camera: Canon Canon EOS R5") in kinds(rep, "weak")
    assert ("exif", "EXIF Software: Adobe Lightroom 7.0") in kinds(rep, "info")


def test_jpeg_comment():
    rep = pv.inspect_bytes(jpeg_bytes(make_image("ai", 64), comment=A1111.encode()), "c.jpg")
    assert assert_ai(rep, "jpeg-comment")
    rep = pv.inspect_bytes(jpeg_bytes(make_image("real", 64), comment=b"holiday 2019"), "c2.jpg")
    assert rep["summary"] == "no provenance found" and kinds(rep, "info") == [
        ("jpeg-comment", "JPEG comment")
    ]


# ---- invisible watermarks ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imwatermark():
    return pytest.importorskip("imwatermark", reason="invisible-watermark ([provenance] extra) not installed")


def watermarked(imwatermark, mark: str, seed: int = 1) -> Image.Image:
    """Mark a 512×512 image exactly as Stability's reference scripts do (BGR array, dwtDct)."""
    enc = imwatermark.WatermarkEncoder()
    if mark == "sdxl":
        enc.set_watermark("bits", pv.WATERMARKS["SDXL (48-bit mark)"])
    else:
        enc.set_watermark("bytes", b"StableDiffusionV1")
    bgr = np.ascontiguousarray(np.asarray(make_image("ai", 512, seed=seed))[:, :, ::-1])
    return Image.fromarray(np.ascontiguousarray(enc.encode(bgr, "dwtDct")[:, :, ::-1]))


@pytest.mark.parametrize("mark,name", [("v1", "Stable Diffusion v1"), ("sdxl", "SDXL")])
@pytest.mark.parametrize("fmt", ["png", "jpeg90"])
def test_invisible_watermarks(imwatermark, mark, name, fmt):
    img = watermarked(imwatermark, mark)
    # quality 90 with full-resolution chroma: 4:2:0 subsampling erases dwtDct marks (see README).
    data = png_bytes(img) if fmt == "png" else jpeg_bytes(img, quality=90, subsampling=0)
    rep = pv.inspect_bytes(data, f"wm.{fmt}")
    hit = assert_ai(rep, "watermark")
    assert name in hit["found"] and rep["checks"]["watermark"] == "done"
    others = [it for it in rep["items"] if it["kind"] == "watermark" and name not in it["found"]]
    assert not others  # the other marks do not match by chance


def test_plain_photo_has_no_provenance(imwatermark):
    for data in (
        jpeg_bytes(make_image("real", 512, seed=3), quality=92),
        png_bytes(make_image("real", 384, seed=4)),
    ):
        rep = pv.inspect_bytes(data, "photo")
        assert rep["summary"] == "no provenance found" and rep["items"] == [] and "error" not in rep
        assert rep["checks"]["watermark"] == "done"
        assert "no provenance found" in pv.format_report(rep)


def test_watermark_chance_statistics():
    assert pv.binomial_tail(48, 48) == pytest.approx(2.0**-48)
    assert pv.binomial_tail(0, 10) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    # random block bits match no mark beyond chance
    for _ in range(20):
        assert all(
            p > pv.WM_MODERATE_P for _, _, _, p in pv.match_marks(rng.integers(0, 2, 4096).astype(float))
        )
    exact = np.tile(np.asarray(pv.WATERMARKS["SDXL (48-bit mark)"], float), 50)
    res = {name: (k, n) for name, k, n, _ in pv.match_marks(exact)}
    assert res["SDXL (48-bit mark)"] == (48, 48)


# ---- C2PA -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def c2pa_signer():
    """A throwaway ES256 CA + end-entity certificate (digitalSignature, emailProtection), as c2pa requires."""
    c2pa = pytest.importorskip("c2pa", reason="c2pa-python ([provenance] extra) not installed")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(cn):
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aivsreal tests"),
            ]
        )

    def usage(ca: bool):
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

    def cert(subject, issuer, pub, signing_key, ca: bool, issuer_pub):
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(usage(ca), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        )
        if not ca:
            b = b.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            ).add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_pub), critical=False)
        return b.sign(signing_key, hashes.SHA256())

    ca_key, ee_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert(name("Test CA"), name("Test CA"), ca_key.public_key(), ca_key, True, None)
    ee = cert(name("Test Signer"), ca.subject, ee_key.public_key(), ca_key, False, ca_key.public_key())
    chain = ee.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    key = ee_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return c2pa, c2pa.C2paSignerInfo(alg="es256", sign_cert=chain, private_key=key, ta_url=None)


def c2pa_sign(c2pa_signer, data: bytes, mime: str, dst: str = AI_DST) -> bytes:
    c2pa, info = c2pa_signer
    manifest = {
        "claim_generator_info": [{"name": "aivsreal-test-generator", "version": "1.0"}],
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": dst}]},
            }
        ],
    }
    out = io.BytesIO()
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest) as builder:
        builder.sign(signer, mime, io.BytesIO(data), out)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_c2pa_signed_ai_image(c2pa_signer, fmt):
    img = make_image("ai", 96)
    raw = jpeg_bytes(img) if fmt == "jpeg" else png_bytes(img)
    rep = pv.inspect_bytes(c2pa_sign(c2pa_signer, raw, f"image/{fmt}"), f"signed.{fmt}")
    hit = assert_ai(rep, "c2pa")
    assert hit["found"] == "C2PA trainedAlgorithmicMedia"
    assert "c2pa.created" in hit["detail"] and "aivsreal-test-generator" in hit["detail"]
    assert "signature valid" in hit["detail"]
    assert rep["summary"] == "AI provenance: C2PA trainedAlgorithmicMedia"


def test_c2pa_tampered_and_corrupt(c2pa_signer):
    signed = c2pa_sign(c2pa_signer, png_bytes(make_image("ai", 96)), "image/png")
    # change the pixels but keep the manifest: the hard binding no longer matches
    im = Image.open(io.BytesIO(signed))
    start = signed.index(b"IDAT") + 4
    n = struct.unpack(">I", signed[start - 8 : start - 4])[0]
    pixels = bytearray(zlib.decompress(signed[start : start + n]))
    pixels[100] ^= 0xFF
    body = zlib.compress(bytes(pixels))
    chunk = struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body))
    tampered = signed[: start - 8] + chunk + signed[start + n + 4 :]
    assert im.size == (96, 96)
    rep = pv.inspect_bytes(tampered, "tampered.png")
    hit = assert_ai(rep, "c2pa", strength="moderate")
    assert "validation failed" in hit["detail"]
    # scramble the manifest store itself: an error item, no crash
    at = signed.index(b"c2pa.signature")
    broken = signed[: at - 40] + bytes(80) + signed[at + 40 :]
    rep = pv.inspect_bytes(broken, "broken.png")
    assert any(it["kind"] == "c2pa" and it["strength"] in ("error", "moderate") for it in rep["items"]), rep


def test_c2pa_missing_library_is_reported(c2pa_signer, monkeypatch):
    signed = c2pa_sign(c2pa_signer, jpeg_bytes(make_image("ai", 64)), "image/jpeg")
    monkeypatch.setitem(sys.modules, "c2pa", None)
    rep = pv.inspect_bytes(signed, "s.jpg")
    assert rep["checks"]["c2pa"].startswith("unavailable") and "[provenance]" in pv.format_report(rep)
    assert rep["summary"] == "no provenance found"


def test_watermark_missing_library_is_reported(monkeypatch):
    for mod in ("imwatermark", "imwatermark.maxDct"):
        monkeypatch.setitem(sys.modules, mod, None)
    rep = pv.inspect_bytes(png_bytes(make_image("ai", 300)), "x.png")
    assert rep["checks"]["watermark"].startswith("unavailable")
    assert "aivsreal[provenance]" in pv.format_report(rep)


# ---- malformed input --------------------------------------------------------------------------------------
def test_broken_chunk_huge_xmp_and_garbage(tmp_path):
    data = png_bytes(make_image("ai", 64), {"parameters": A1111})
    at = data.index(b"tEXt")
    broken_crc = bytearray(data)
    broken_crc[at + 10] ^= 0x55  # text changed, CRC not
    rep = pv.inspect_bytes(bytes(broken_crc), "crc.png")
    assert any(it["strength"] == "error" for it in rep["items"]) and rep["summary"].startswith(
        "no provenance"
    )

    huge = png_bytes(make_image("ai", 64), itxt={"XML:com.adobe.xmp": xmp_packet() + " " * (2 << 20)})
    rep = pv.inspect_bytes(huge, "huge.png")
    assert ("xmp", f"XMP packet of {len(xmp_packet()) + (2 << 20)} bytes not parsed") in kinds(rep, "error")

    bad_json = png_bytes(make_image("ai", 64), {"prompt": "{not json"})
    assert kinds(pv.inspect_bytes(bad_json, "j.png"), "error")

    for name, blob in (
        ("noise.bin", b"\x00\x01garbage" * 50),
        ("trunc.jpg", jpeg_bytes(make_image("ai", 300))[:900]),
    ):
        rep = pv.inspect_bytes(blob, name)
        assert isinstance(rep["summary"], str)
    assert pv.inspect_bytes(b"\x00\x01garbage", "n")["error"]["kind"] == "not_an_image"
    assert pv.inspect_bytes(b"", "e")["error"]["kind"] == "empty"
    assert pv.inspect_path(tmp_path / "missing.png")["error"]["kind"] == "not_found"
    assert pv.inspect_path(tmp_path)["error"]["kind"] == "is_directory"


_SEEDS = [
    png_bytes(
        make_image("ai", 64),
        {"parameters": A1111, "prompt": json.dumps(COMFY_PROMPT)},
        itxt={"XML:com.adobe.xmp": xmp_packet()},
    ),
    jpeg_bytes(make_image("ai", 64), xmp=xmp_packet().encode(), comment=b"hello"),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_SEEDS),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    st.integers(0, 10**6),
)
def test_mutated_files_never_crash(seed, flips, cut):
    data = bytearray(seed)
    for pos, val in flips:
        data[pos % len(data)] = val
    data = bytes(data[: max(1, cut % (len(data) + 1))])
    rep = pv.inspect_bytes(data, "fuzz")
    assert set(rep) >= {"path", "items", "summary"}
    assert all(it["strength"] in pv.STRENGTHS for it in rep["items"])
    json.dumps(rep)


# ---- verdict policy, attach, CLI --------------------------------------------------------------------------
def pred(label: str, uncertain: bool = False) -> Prediction:
    return Prediction(
        source="x",
        score=0.9 if label == "ai" else 0.1,
        label=label,
        uncertain=uncertain,
        threshold=0.5,
        model_id="m",
    )


@pytest.mark.parametrize(
    "model,items,expected",
    [
        (("real", False), [pv.item("c2pa", "C2PA trainedAlgorithmicMedia", "strong", indicates="ai")], "ai"),
        (("ai", False), [pv.item("c2pa", "C2PA digitalCapture", "strong", indicates="real")], "real"),
        (("real", False), [pv.item("watermark", "wm", "moderate", indicates="ai")], "uncertain"),
        (("ai", False), [pv.item("watermark", "wm", "moderate", indicates="ai")], "ai"),
        (("real", True), [pv.item("watermark", "wm", "moderate", indicates="ai")], "ai"),
        (("ai", False), [pv.item("exif", "EXIF camera: Canon", "weak", indicates="real")], "ai"),
        (("real", False), [], "real"),
        (("ai", True), [], "uncertain"),
        (
            ("real", False),
            [pv.item("x", "a", "strong", indicates="ai"), pv.item("y", "b", "strong", indicates="real")],
            "uncertain",
        ),
    ],
)
def test_combine_policy(model, items, expected):
    verdict = pv.combine(pred(*model), items)
    assert verdict.split(" ")[0] == expected, verdict
    assert pv.combine(Prediction(source="x", error={"kind": "corrupt", "message": "m"}), items).startswith(
        "error"
    )


def test_attach_and_cli(tmp_path, tiny_onnx):
    from typer.testing import CliRunner

    from aivsreal.cli import app
    from aivsreal.runtime import Detector

    comfy = tmp_path / "imgs" / "comfy.png"
    comfy.parent.mkdir()
    comfy.write_bytes(png_bytes(make_image("real", 64), {"prompt": json.dumps(COMFY_PROMPT)}))
    plain = tmp_path / "imgs" / "sub" / "plain.jpg"
    plain.parent.mkdir()
    plain.write_bytes(jpeg_bytes(make_image("real", 64)))
    (tmp_path / "imgs" / "sub" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)

    p = pv.attach(Detector.load(tiny_onnx).predict(str(comfy)))
    assert p.verdict == "ai (provenance: ComfyUI prompt graph)" and p.provenance[0]["strength"] == "strong"
    assert p.to_dict()["score"] == pytest.approx(p.score, abs=1e-6)  # the model score stays visible

    runner = CliRunner()
    r = runner.invoke(app, ["inspect", "-r", "--json", str(tmp_path / "imgs")])
    assert r.exit_code == 1  # the broken file counts as not processed
    reps = {json.loads(line)["path"].rsplit("/", 1)[-1]: json.loads(line) for line in r.stdout.splitlines()}
    assert reps["comfy.png"]["summary"].startswith("AI provenance")
    assert reps["plain.jpg"]["summary"] == "no provenance found"
    assert "error" in reps["bad.png"]
    r = runner.invoke(
        app, ["predict", "--provenance", "--json", "--model", str(tiny_onnx), str(comfy), str(plain)]
    )
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.exit_code == 0 and out[0]["verdict"].startswith("ai (provenance") and "score" in out[0]
    assert out[1]["verdict"].endswith("(model)") and out[1]["provenance"] == []


def test_import_is_light():
    code = (
        "import sys, aivsreal.provenance; bad = [m for m in ('torch', 'cv2', 'c2pa', 'imwatermark') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
