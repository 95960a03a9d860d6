// The page at "/": choose, drop or paste images; score them on the server (POST /v1/predict) or on this
// device with the same ONNX model (shared scoring module, onnxruntime-web).

import { Scorer } from "./score.js";
import { fmt2, resultItem } from "./ui.js";

const $ = (id) => document.getElementById(id);
const list = $("results");
const status = $("status");
const input = $("file-input");
const drop = $("drop");
const SERVER_CONCURRENCY = 3;

let modelInfo = null;
let scorerPromise = null;

function say(text) {
  status.textContent = text;
}

async function loadModelInfo() {
  const r = await fetch("/v1/model");
  if (!r.ok) throw new Error(`GET /v1/model: ${r.status}`);
  modelInfo = await r.json();
  const c = modelInfo.card;
  $("model-info").textContent =
    `Model ${modelInfo.model_id} · score = calibrated P(AI) · labelled AI at ≥ ${fmt2(c.threshold)}, ` +
    `real below · uncertain within ±${fmt2(c.uncertain_band)}`;
  if (!modelInfo.onnx_url) {
    const dev = document.querySelector('input[name="mode"][value="device"]');
    dev.disabled = true;
    dev.closest("label").title = "This server runs a checkpoint; on-device mode needs an ONNX model.";
  }
  return modelInfo;
}

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

function deviceScorer() {
  if (!scorerPromise) {
    say("Loading the model into this browser…");
    scorerPromise = (async () => {
      const info = modelInfo || (await loadModelInfo());
      const s = await Scorer.create(info.onnx_url, info.card, info.model_id);
      say("Model loaded in this browser.");
      return s;
    })();
    scorerPromise.catch(() => (scorerPromise = null));
  }
  return scorerPromise;
}

async function scoreOnServer(file) {
  const form = new FormData();
  form.append("files", file, file.name);
  let r;
  try {
    r = await fetch("/v1/predict", { method: "POST", body: form });
  } catch (e) {
    return { path: file.name, error: { kind: "network", message: "the server could not be reached" } };
  }
  let body = null;
  try {
    body = await r.json();
  } catch {
    /* not JSON: reported below */
  }
  if (body?.results?.length) return body.results[0];
  const err = body?.error || { kind: `http_${r.status}`, message: r.statusText || "request failed" };
  return { path: file.name, error: err };
}

/** Run ``fn`` over items with at most ``n`` at a time. */
async function pool(items, n, fn) {
  let next = 0;
  const work = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, work));
}

async function handleFiles(fileList) {
  const files = Array.from(fileList || []);
  if (!files.length) return;
  const m = mode();
  // Newest batch first, each batch in the order the files were chosen.
  const batch = document.createDocumentFragment();
  const jobs = files.map((file, i) => {
    const name = file.name || `pasted-${i + 1}`;
    const url = URL.createObjectURL(file);
    const item = resultItem(name, url);
    batch.append(item.li);
    return { file, name, item };
  });
  list.prepend(batch);
  say(`Scoring ${files.length} image${files.length > 1 ? "s" : ""} ${m === "device" ? "on this device" : "on the server"}…`);
  if (m === "device") {
    let scorer;
    try {
      scorer = await deviceScorer();
    } catch (e) {
      for (const j of jobs)
        j.item.update({ path: j.name, error: { kind: "model_unavailable", message: String(e.message || e) } }, { mode: m });
      say("The model could not be loaded in this browser.");
      return;
    }
    for (const j of jobs) j.item.update(await scorer.scoreOrError(j.file, j.name), { mode: m });
  } else {
    await pool(jobs, SERVER_CONCURRENCY, async (j) => j.item.update(await scoreOnServer(j.file), { mode: m }));
  }
  say(`Done: ${files.length} image${files.length > 1 ? "s" : ""} scored ${m === "device" ? "on this device" : "on the server"}.`);
}

input.addEventListener("change", () => {
  handleFiles(input.files);
  input.value = "";
});
for (const ev of ["dragenter", "dragover"])
  drop.addEventListener(ev, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  handleFiles(e.dataTransfer?.files);
});
drop.addEventListener("keydown", (e) => {
  if (e.target === drop && (e.key === "Enter" || e.key === " ")) {
    e.preventDefault();
    input.click();
  }
});
document.addEventListener("paste", (e) => {
  const files = Array.from(e.clipboardData?.files || []).filter((f) => f.type.startsWith("image/"));
  if (files.length) handleFiles(files);
});
$("clear").addEventListener("click", () => {
  for (const img of list.querySelectorAll("img.thumb")) URL.revokeObjectURL(img.src);
  list.replaceChildren();
  say("Cleared.");
});
for (const r of document.querySelectorAll('input[name="mode"]'))
  r.addEventListener("change", () => {
    if (mode() === "device") deviceScorer().catch((e) => say(`On-device mode unavailable: ${e.message || e}`));
  });

loadModelInfo()
  .then(() => (document.body.dataset.ready = "true"))
  .catch((e) => {
    $("model-info").textContent = `The model is unavailable: ${e.message || e}`;
    document.body.dataset.ready = "error";
  });
