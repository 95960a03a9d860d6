// Card → model input, the JavaScript twin of aivsreal/preprocess.py (and Pillow's resampling).
//
// Pure functions on raw pixels (no DOM, no ONNX Runtime), so Node can test them against vectors the
// Python side writes. Every step follows the Python numbers: Pillow's two-pass fixed-point
// resampling (horizontal then vertical, 8-bit intermediate), its alpha compositing on white, Python's
// round-half-even and float32 normalisation. Tests hold the two sides to the same tensors.

const PRECISION_BITS = 32 - 8 - 2; // Pillow's 8-bit resampling precision (Resample.c)
const ONE = 2 ** PRECISION_BITS;

function sinc(x) {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

/** Pillow's resampling filters: support radius and kernel (Resample.c). */
export const FILTERS = {
  bilinear: {
    support: 1,
    fn: (x) => {
      const a = Math.abs(x);
      return a < 1 ? 1 - a : 0;
    },
  },
  bicubic: {
    support: 2,
    fn: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
  lanczos: { support: 3, fn: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
};

/** Python's round(): halves go to the even neighbour. */
export function pyRound(x) {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Fixed-point kernel weights and bounds for one axis, as Pillow's precompute_coeffs + normalize. */
function coefficients(inSize, outSize, filter) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const kk = new Float64Array(outSize * ksize);
  const bounds = new Int32Array(outSize * 2);
  const pre = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.fn((x + xmin - center + 0.5) * ss);
      pre[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? pre[x] / ww : pre[x];
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { kk, bounds, ksize };
}

function clip8(v) {
  if (v >= ONE * 256) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / ONE);
}

/** One separable pass over an RGB (3 bytes per pixel) image along x (horizontal) or y. */
function pass(src, w, h, outLen, horizontal, filter) {
  const inSize = horizontal ? w : h;
  const { kk, bounds, ksize } = coefficients(inSize, outLen, filter);
  const ow = horizontal ? outLen : w;
  const oh = horizontal ? h : outLen;
  const out = new Uint8Array(ow * oh * 3);
  const half = ONE / 2;
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const o = horizontal ? x : y;
      const min = bounds[o * 2];
      const n = bounds[o * 2 + 1];
      const kb = o * ksize;
      let s0 = half;
      let s1 = half;
      let s2 = half;
      for (let i = 0; i < n; i++) {
        const k = kk[kb + i];
        const p = horizontal ? (y * w + min + i) * 3 : ((min + i) * w + x) * 3;
        s0 += src[p] * k;
        s1 += src[p + 1] * k;
        s2 += src[p + 2] * k;
      }
      const q = (y * ow + x) * 3;
      out[q] = clip8(s0);
      out[q + 1] = clip8(s1);
      out[q + 2] = clip8(s2);
    }
  }
  return out;
}

/** Pillow's NEAREST resize (an affine scale, sampling each output pixel's centre). */
function nearest(src, w, h, nw, nh) {
  const out = new Uint8Array(nw * nh * 3);
  const ax = w / nw;
  const ay = h / nh;
  const coord = (v) => (v < 0 ? -1 : Math.trunc(v));
  const xs = new Int32Array(nw);
  let xo = ax * 0.5;
  for (let x = 0; x < nw; x++) {
    xs[x] = Math.min(w - 1, Math.max(0, coord(xo)));
    xo += ax;
  }
  let yo = ay * 0.5;
  for (let y = 0; y < nh; y++) {
    const yi = Math.min(h - 1, Math.max(0, coord(yo)));
    yo += ay;
    for (let x = 0; x < nw; x++) {
      const p = (yi * w + xs[x]) * 3;
      const q = (y * nw + x) * 3;
      out[q] = src[p];
      out[q + 1] = src[p + 1];
      out[q + 2] = src[p + 2];
    }
  }
  return out;
}

/** Resize an RGB image like ``PIL.Image.resize((nw, nh), resample)`` for 8-bit RGB. */
export function resize(rgb, w, h, nw, nh, interpolation = "bilinear") {
  if (w === nw && h === nh) return rgb;
  if (interpolation === "nearest") return nearest(rgb, w, h, nw, nh);
  const filter = FILTERS[interpolation];
  if (!filter) throw new Error(`unknown interpolation ${interpolation}`);
  // Pillow >= 11 runs the vertical pass first when the height shrinks more than twice as much as the
  // width (the rounding of the 8-bit intermediate depends on the order). Upscaling, the only resampling
  // of the default native_crop policy, is horizontal-first in every Pillow version.
  const verticalFirst = h - nh > 0 && h - nh > (w - nw) * 2;
  if (verticalFirst) {
    const out = nh !== h ? pass(rgb, w, h, nh, false, filter) : rgb;
    return nw !== w ? pass(out, w, nh, nw, true, filter) : out;
  }
  const out = nw !== w ? pass(rgb, w, h, nw, true, filter) : rgb;
  return nh !== h ? pass(out, nw, h, nh, false, filter) : out;
}

/** RGBA (not premultiplied) → RGB composited on white, with Pillow's alpha_composite arithmetic. */
export function rgbaToRgb(rgba, w, h) {
  const n = w * h;
  const out = new Uint8Array(n * 3);
  const shift = (v) => ((v >> 8) + v) >> 8; // Pillow's SHIFTFORDIV255
  for (let i = 0; i < n; i++) {
    const a = rgba[i * 4 + 3];
    for (let c = 0; c < 3; c++) {
      const v = rgba[i * 4 + c];
      if (a === 255) out[i * 3 + c] = v;
      else if (a === 0) out[i * 3 + c] = 255;
      else {
        const coef1 = a * 128; // src.a * 255 * 255 * 2^7 / (255 * 255)
        const coef2 = 255 * 128 - coef1;
        out[i * 3 + c] = shift(v * coef1 + 255 * coef2 + (0x80 << 7)) >> 7;
      }
    }
  }
  return out;
}

// One geometry plan for every policy, the twin of aivsreal/geometry.py: a whole-image resize (or none), then
// size×size boxes [left, top, right, bottom] of the resized image, mirrored where flips says so.
export const POLICIES = ["resize", "center_crop", "native_crop"];
export const VIEWS = ["center", "tta", "patches", "random"];
export const PATCH_GRID = 3;

function shortSide(w, h, short) {
  if (w <= h) return [short, Math.max(short, pyRound((h * short) / w))];
  return [Math.max(short, pyRound((w * short) / h)), short];
}

/** The whole-image resize a policy asks for, or null when native pixels are kept. */
export function resizeTarget(w, h, pp) {
  const s = pp.size;
  let short;
  if (pp.policy === "resize") return w === s && h === s ? null : [s, s];
  if (pp.policy === "center_crop") short = Math.max(s, pyRound(s / pp.crop_pct));
  else if (pp.policy === "native_crop") {
    short = s;
    if (Math.min(w, h) >= s) return null;
  } else throw new Error(`unknown preprocessing policy ${pp.policy}`);
  return Math.min(w, h) === short ? null : shortSide(w, h, short);
}

const centre = (rw, rh, s) => {
  const l = Math.floor((rw - s) / 2);
  const t = Math.floor((rh - s) / 2);
  return [l, t, l + s, t + s];
};
const spread = (n, len, s) =>
  n <= 1 ? [Math.floor((len - s) / 2)] : Array.from({ length: n }, (_, i) => Math.floor((i * (len - s)) / (n - 1)));

/**
 * The views of a w×h image under the card's policy: {source, resize, boxes, flips}.
 * ``randint(a, b)`` (inclusive) draws the offset of the ``random`` training view (tests replay Python's draws).
 */
export function plan(w, h, pp, { views = "center", randint = null } = {}) {
  const s = pp.size;
  const resize = resizeTarget(w, h, pp);
  const [rw, rh] = resize || [w, h];
  let boxes;
  let flips;
  if (views === "center") {
    boxes = [centre(rw, rh, s)];
    flips = [false];
  } else if (views === "tta") {
    boxes = [centre(rw, rh, s), centre(rw, rh, s)];
    flips = [false, true];
    if (pp.policy === "native_crop" && !resize && (w > s || h > s)) {
      for (const [x, y] of [[0, 0], [w - s, 0], [0, h - s], [w - s, h - s]]) {
        boxes.push([x, y, x + s, y + s]);
        flips.push(false);
      }
    }
  } else if (views === "patches") {
    const nx = Math.min(PATCH_GRID, Math.ceil(rw / s));
    const ny = Math.min(PATCH_GRID, Math.ceil(rh / s));
    boxes = [];
    for (const y of spread(ny, rh, s)) for (const x of spread(nx, rw, s)) boxes.push([x, y, x + s, y + s]);
    flips = boxes.map(() => false);
  } else if (views === "random") {
    if (!randint) throw new Error("random views need a seeded randint");
    const [x, y] = pp.policy === "resize" ? [0, 0] : [randint(0, rw - s), randint(0, rh - s)];
    boxes = [[x, y, x + s, y + s]];
    flips = [false];
  } else throw new Error(`unknown views ${views}`);
  return { source: [w, h], resize, boxes, flips };
}

/** The part of the source a plan needs: everything when it resizes, else the union of its boxes. */
export function region(p) {
  if (p.resize) return [0, 0, p.source[0], p.source[1]];
  const xs = p.boxes.map((b) => b[0]);
  const ys = p.boxes.map((b) => b[1]);
  return [Math.min(...xs), Math.min(...ys), Math.max(...p.boxes.map((b) => b[2])), Math.max(...p.boxes.map((b) => b[3]))];
}

function crop(rgb, w, left, top, s, flip = false) {
  const out = new Uint8Array(s * s * 3);
  for (let y = 0; y < s; y++) {
    const from = ((top + y) * w + left) * 3;
    if (!flip) out.set(rgb.subarray(from, from + s * 3), y * s * 3);
    else {
      for (let x = 0; x < s; x++) {
        const src = from + (s - 1 - x) * 3;
        const dst = (y * s + x) * 3;
        out[dst] = rgb[src];
        out[dst + 1] = rgb[src + 1];
        out[dst + 2] = rgb[src + 2];
      }
    }
  }
  return out;
}

/**
 * The size×size RGB views of a plan (Python: preprocess.apply_plan). ``rgb`` may be only a region of the
 * planned image when nothing is resized: ``origin`` is where it sits and ``width`` its width.
 */
export function applyPlan(rgb, p, pp, { origin = [0, 0], width = null } = {}) {
  let img = rgb;
  let cw = width ?? p.source[0];
  if (p.resize) {
    if (origin[0] !== 0 || origin[1] !== 0) throw new Error("a resizing plan needs the whole image");
    img = resize(img, p.source[0], p.source[1], p.resize[0], p.resize[1], pp.interpolation);
    cw = p.resize[0];
  }
  return p.boxes.map((b, i) => crop(img, cw, b[0] - origin[0], b[1] - origin[1], pp.size, p.flips[i]));
}

/** RGB → size×size RGB, the policy's centre view (Python: preprocess.geometry). */
export function geometry(rgb, w, h, pp) {
  return applyPlan(rgb, plan(w, h, pp), pp)[0];
}

/** size×size RGB → float32 CHW, (x·(1/255) − mean) / std in float32 as numpy computes it. */
export function normalize(rgb, pp) {
  const s = pp.size;
  const n = s * s;
  const out = new Float32Array(3 * n);
  const f = Math.fround;
  const inv = f(1 / 255);
  for (let c = 0; c < 3; c++) {
    const m = f(pp.mean[c]);
    const sd = f(pp.std[c]);
    for (let i = 0; i < n; i++) out[c * n + i] = f(f(f(rgb[i * 3 + c] * inv) - m) / sd);
  }
  return out;
}

/** RGBA pixels → model input (Float32Array of 3·size·size), as Python's preprocess.to_input. */
export function toInput(rgba, w, h, pp) {
  return normalize(geometry(rgbaToRgb(rgba, w, h), w, h, pp), pp);
}

/** RGBA pixels → the model inputs of a view set (Python: preprocess.inputs / view_images). */
export function toInputs(rgba, w, h, pp, opts = {}) {
  const p = plan(w, h, pp, opts);
  return applyPlan(rgbaToRgb(rgba, w, h), p, pp).map((v) => normalize(v, pp));
}

export { scoreFromLogit } from "./decision.js";
