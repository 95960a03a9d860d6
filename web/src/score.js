// The shared scoring module: image file → pixels → model input → ONNX Runtime (wasm) → calibrated score.
//
// Used by the web page's on-device mode and by the browser extension; both get it through the build
// (esbuild), never as a copy. Preprocessing numbers come from the model card, the same ones Python uses.

import * as ort from "onnxruntime-web/wasm";
import { aggregate, scoreFromLogit } from "./decision.js";
import { applyPlan, normalize, plan, region, rgbaToRgb } from "./preprocess.js";

export { aggregate, scoreFromLogit } from "./decision.js";
export { toInput, toInputs } from "./preprocess.js";
export const MAX_PIXELS = 64_000_000; // same bomb limit as aivsreal.imageio.MAX_PIXELS

/** An input that cannot be scored; ``kind`` uses the same codes as the Python side. */
export class ScoreError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

let ortReady = false;
function setupOrt() {
  if (ortReady) return;
  // The wasm binary sits next to the bundle (copied by the build); never fetched from a CDN.
  ort.env.wasm.wasmPaths = { wasm: new URL("./ort-wasm-simd-threaded.wasm", import.meta.url).href };
  // Threads need cross-origin isolation (SharedArrayBuffer); without it one thread is used.
  const cores = globalThis.navigator?.hardwareConcurrency || 1;
  ort.env.wasm.numThreads = globalThis.crossOriginIsolated ? Math.min(4, cores) : 1;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = "error";
  ortReady = true;
}

/** What the first bytes say the file is (the browser's decoder gives no reason when it fails). */
export function sniff(bytes) {
  const b = (i) => bytes[i];
  if (b(0) === 0xff && b(1) === 0xd8 && b(2) === 0xff) return "JPEG";
  if (b(0) === 0x89 && b(1) === 0x50 && b(2) === 0x4e && b(3) === 0x47) return "PNG";
  if (b(0) === 0x47 && b(1) === 0x49 && b(2) === 0x46 && b(3) === 0x38) return "GIF";
  if (b(0) === 0x42 && b(1) === 0x4d) return "BMP";
  const ascii = (i, n) => String.fromCharCode(...bytes.subarray(i, i + n));
  if (ascii(0, 4) === "RIFF" && ascii(8, 4) === "WEBP") return "WEBP";
  if ((b(0) === 0x49 && b(1) === 0x49 && b(2) === 0x2a) || (b(0) === 0x4d && b(1) === 0x4d && b(3) === 0x2a))
    return "TIFF";
  if (ascii(4, 4) === "ftyp") {
    const brand = ascii(8, 4);
    if (brand === "avif" || brand === "avis") return "AVIF";
    if (["heic", "heix", "mif1", "msf1", "hevc"].includes(brand)) return "HEIF";
  }
  return null;
}

/** Width × height a PNG header declares (checked before decoding: decompression bombs). */
function pngSize(bytes) {
  if (bytes.length < 24) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return [v.getUint32(16), v.getUint32(20)];
}

/**
 * Decode an image file (Blob) into not-premultiplied RGBA pixels of the region the card's policy needs.
 * Native crops of big images read only the centre square, so a 12-megapixel photo costs what 224² does.
 */
export async function decodeImage(blob, pp, { maxPixels = MAX_PIXELS, views = "center" } = {}) {
  if (!blob || blob.size === 0) throw new ScoreError("empty", "empty input (0 bytes)");
  const head = new Uint8Array(await blob.slice(0, 32).arrayBuffer());
  const format = sniff(head);
  if (!format) throw new ScoreError("not_an_image", "not a recognised image format");
  if (format === "TIFF" || format === "HEIF")
    throw new ScoreError(
      "unsupported_format",
      `${format === "HEIF" ? "HEIC/HEIF" : "TIFF"} is not decodable in this browser: score it on the server`,
    );
  if (format === "PNG") {
    const size = pngSize(head);
    if (size && size[0] * size[1] > maxPixels)
      throw new ScoreError("too_many_pixels", `${size[0]}x${size[1]} exceeds the ${maxPixels} pixel limit`);
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, {
      imageOrientation: "from-image",
      premultiplyAlpha: "none",
      colorSpaceConversion: "none",
    });
  } catch (e) {
    throw new ScoreError("corrupt", `cannot decode ${format} image data`);
  }
  try {
    const { width: w, height: h } = bitmap;
    if (w * h > maxPixels) throw new ScoreError("too_many_pixels", `${w}x${h} exceeds the ${maxPixels} pixel limit`);
    // Only the region the plan's views cover is read when no resampling happens first.
    const [rl, rt, rr, rb] = region(plan(w, h, pp, { views }));
    const [sx, sy, sw, sh] = [rl, rt, rr - rl, rb - rt];
    const canvas = new OffscreenCanvas(sw, sh);
    const ctx = canvas.getContext("2d", { willReadFrequently: true, colorSpace: "srgb" });
    ctx.drawImage(bitmap, sx, sy, sw, sh, 0, 0, sw, sh);
    const data = ctx.getImageData(0, 0, sw, sh, { colorSpace: "srgb" }).data;
    return { rgba: data, width: sw, height: sh, origin: [sx, sy], originalSize: [w, h], format, cropped: sw !== w || sh !== h };
  } finally {
    bitmap.close();
  }
}

/** Decoded pixels → the model inputs of ``views`` (decodeImage may have read only the plan's region). */
export function inputsFromDecoded(decoded, pp, views = "center") {
  const { rgba, width, height, originalSize, origin = [0, 0] } = decoded;
  const p = plan(originalSize[0], originalSize[1], pp, { views });
  return applyPlan(rgbaToRgb(rgba, width, height), p, pp, { origin, width }).map((v) => normalize(v, pp));
}

/** The centre-view model input (one Float32Array), as Python's preprocess.to_input. */
export function inputFromDecoded(decoded, pp) {
  return inputsFromDecoded(decoded, pp, "center")[0];
}

/** One model, ready to score images in this browser. */
export class Scorer {
  constructor(session, card, modelId) {
    this.session = session;
    this.card = card;
    this.modelId = modelId || card.model_id || "model";
    this.inputName = session.inputNames[0];
    this.outputName = session.outputNames[0];
  }

  /** ``model``: URL or bytes of the ONNX file; ``card``: the model card (dict from /v1/model or card.json). */
  static async create(model, card, modelId) {
    setupOrt();
    let bytes = model;
    if (typeof model === "string" || model instanceof URL) {
      const r = await fetch(model);
      if (!r.ok) throw new ScoreError("model_unavailable", `cannot fetch the model (${r.status})`);
      bytes = new Uint8Array(await r.arrayBuffer());
    }
    const session = await ort.InferenceSession.create(bytes, {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    });
    return new Scorer(session, card, modelId);
  }

  /** Raw logit for one preprocessed input (Float32Array 3·s·s). */
  async logit(input) {
    const s = this.card.preprocess.size;
    const feeds = { [this.inputName]: new ort.Tensor("float32", input, [1, 3, s, s]) };
    const out = await this.session.run(feeds);
    return Number(out[this.outputName].data[0]);
  }

  /** Pixels → preprocessed input, exactly as aivsreal.preprocess.to_input. */
  input(decoded) {
    return inputFromDecoded(decoded, this.card.preprocess);
  }

  /** Score one image file; the result has the fields of ``aivsreal predict --json`` plus timings.
   * ``views``: "center", "tta" or "patches" (default: the card's ``preprocess.views``, else "center"), whose
   * view logits are aggregated as in Python. */
  async score(blob, name = blob?.name || "image", { views = null, threshold = null } = {}) {
    views = views || this.card.preprocess.views || "center";
    const t0 = performance.now();
    const decoded = await decodeImage(blob, this.card.preprocess, { views });
    const t1 = performance.now();
    const logits = [];
    for (const x of inputsFromDecoded(decoded, this.card.preprocess, views)) logits.push(await this.logit(x));
    const z = aggregate(logits);
    const t2 = performance.now();
    return {
      path: name,
      ...scoreFromLogit(z, this.card, { threshold }),
      model_id: this.modelId,
      logit: z,
      decode_ms: t1 - t0,
      infer_ms: t2 - t1,
      latency_ms: t2 - t0,
    };
  }

  /** Like ``score`` but errors become ``{path, error: {kind, message}}`` items, as the API returns. */
  async scoreOrError(blob, name = blob?.name || "image") {
    try {
      return await this.score(blob, name);
    } catch (e) {
      const kind = e instanceof ScoreError ? e.kind : "decode_failed";
      return { path: name, error: { kind, message: e.message || String(e) } };
    }
  }
}
