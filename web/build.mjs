// Build the web page and the Chromium extension from web/src (one shared scoring module).
//
//   npm run build [-- --model PATH] [--only page|extension] [--no-zip]
//
// page      → ../src/aivsreal/web_static/ (index.html, assets/: bundles, style.css, ORT wasm, Swagger UI); served by
//             `aivsreal serve` and packaged by `pip install .`. This output is committed, so pip users never need
//             Node: rebuild and commit it with any change to web/src, web/page or the npm dependencies. Assets
//             over GZIP_MIN bytes are stored only gzipped (NAME.gz, deterministic) to keep the repository small;
//             the server sends them with Content-Encoding: gzip.
// extension → dist/extension/ (unpacked, loadable with "Load unpacked") and dist/aivsreal-extension.zip,
//             with the ONNX model from --model (default: ../src/aivsreal/models_dist/default.onnx) and
//             its card (the sidecar MODEL.card.json that `aivsreal export` writes).
// Everything comes from node_modules; nothing is fetched at build or run time.

import { build } from "esbuild";
import { zipSync } from "fflate";
import zlib from "node:zlib";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..");
const { values: args } = parseArgs({
  options: {
    only: { type: "string" },
    model: { type: "string", default: process.env.AIVSREAL_EXTENSION_MODEL || "" },
    "page-out": { type: "string", default: path.join(repo, "src/aivsreal/web_static") },
    "extension-out": { type: "string", default: path.join(here, "dist/extension") },
    "no-zip": { type: "boolean", default: false },
  },
});
const pkg = JSON.parse(fs.readFileSync(path.join(here, "package.json"), "utf8"));
const WASM = "ort-wasm-simd-threaded.wasm";
const wasmSrc = path.join(here, "node_modules/onnxruntime-web/dist", WASM);
const TARGET = ["chrome116", "firefox120", "safari17"];
const GZIP_MIN = 100_000;
const SWAGGER_FILES = ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE", "NOTICE"];

function fail(msg) {
  console.error(`build: error: ${msg}`);
  process.exit(2);
}

/** Empty ``dir`` and make it exist. */
function clean(dir) {
  fs.mkdirSync(dir, { recursive: true });
  for (const name of fs.readdirSync(dir)) {
    fs.rmSync(path.join(dir, name), { recursive: true, force: true });
  }
}

/** Write a file atomically (temp file + rename), so a reader never sees half of it. */
function writeAtomic(file, data) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

function copy(from, to) {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
}

async function buildPage() {
  const out = args["page-out"];
  clean(out);
  await build({
    entryPoints: { page: path.join(here, "src/page.js"), score: path.join(here, "src/score.js") },
    bundle: true,
    splitting: true,
    format: "esm",
    target: TARGET,
    minify: true,
    legalComments: "linked",
    outdir: path.join(out, "assets"),
    logLevel: "warning",
  });
  copy(path.join(here, "page/index.html"), path.join(out, "index.html"));
  copy(path.join(here, "page/style.css"), path.join(out, "assets/style.css"));
  copy(wasmSrc, path.join(out, "assets", WASM));
  // The API docs (/docs) load Swagger UI from here too, not from a CDN.
  const swagger = path.join(here, "node_modules/swagger-ui-dist");
  for (const name of SWAGGER_FILES) copy(path.join(swagger, name), path.join(out, "assets/swagger", name));
  gzipLarge(path.join(out, "assets"));
  console.log(`page      → ${path.relative(repo, out)}/ (with Swagger UI for /docs)`);
  console.log(
    "            served by `aivsreal serve` from an editable install (pip install -e .) after a restart, or by\n" +
      `            \`aivsreal serve --web-dir ${out}\` from any install`,
  );
}

/** Replace every file over GZIP_MIN bytes under ``dir`` by NAME.gz (gzip -9, no name or time: reproducible). */
function gzipLarge(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) gzipLarge(p);
    else if (!e.name.endsWith(".gz") && fs.statSync(p).size > GZIP_MIN) {
      writeAtomic(`${p}.gz`, zlib.gzipSync(fs.readFileSync(p), { level: 9 }));
      fs.rmSync(p);
    }
  }
}

function modelPath() {
  if (args.model) {
    const p = path.resolve(process.cwd(), args.model);
    if (!fs.existsSync(p)) fail(`--model ${args.model}: no such file`);
    return p;
  }
  const def = path.join(repo, "src/aivsreal/models_dist/default.onnx");
  return fs.existsSync(def) ? def : null;
}

async function buildExtension() {
  const out = args["extension-out"];
  clean(out);
  await build({
    entryPoints: {
      result: path.join(here, "extension/result.js"),
      background: path.join(here, "extension/background.js"),
    },
    bundle: true,
    format: "esm",
    target: ["chrome116"],
    minify: true,
    legalComments: "linked",
    outdir: out,
    logLevel: "warning",
  });
  const manifest = JSON.parse(fs.readFileSync(path.join(here, "extension/manifest.json"), "utf8"));
  manifest.version = pkg.version;
  writeAtomic(path.join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  copy(path.join(here, "extension/result.html"), path.join(out, "result.html"));
  copy(path.join(here, "page/style.css"), path.join(out, "style.css"));
  copy(wasmSrc, path.join(out, WASM));

  const model = modelPath();
  if (model) {
    const card = model.replace(/\.onnx$/, ".onnx.card.json");
    if (!fs.existsSync(card)) fail(`${model}: no card ${path.basename(card)} beside it (aivsreal export writes one)`);
    const parsed = JSON.parse(fs.readFileSync(card, "utf8"));
    if (!parsed.preprocess || !parsed.backbone) fail(`${card}: not an aivsreal model card`);
    copy(model, path.join(out, "model/model.onnx"));
    copy(card, path.join(out, "model/card.json"));
    console.log(`extension → ${path.relative(repo, out)}/ (model ${parsed.model_id || path.basename(model)})`);
  } else {
    console.warn(
      "build: warning: no model bundled into the extension (no src/aivsreal/models_dist/default.onnx); " +
        "pass --model PATH.onnx",
    );
  }
  if (!args["no-zip"]) {
    const files = {};
    const walk = (dir, rel = "") => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) walk(path.join(dir, e.name), r);
        else files[r] = new Uint8Array(fs.readFileSync(path.join(dir, e.name)));
      }
    };
    walk(out);
    const zip = path.join(path.dirname(out), "aivsreal-extension.zip");
    writeAtomic(zip, zipSync(files, { level: 6, mtime: new Date("2020-01-01T00:00:00Z") }));
    console.log(`extension → ${path.relative(repo, zip)}`);
  }
}

if (!fs.existsSync(wasmSrc)) fail(`${wasmSrc} missing: run npm ci first`);
if (!args.only || args.only === "page") await buildPage();
if (!args.only || args.only === "extension") await buildExtension();
if (args.only && !["page", "extension"].includes(args.only)) fail(`--only ${args.only}: use page or extension`);
