// The extension's result page: fetch the right-clicked image, score it with the bundled model through the
// shared scoring module (the page's on-device mode uses the same one), and show it with the shared card.

import { Scorer } from "../src/score.js";
import { resultItem } from "../src/ui.js";

const status = document.getElementById("status");

function shortName(src) {
  if (src.startsWith("data:")) return "image (data URL)";
  try {
    const u = new URL(src);
    return decodeURIComponent(u.pathname.split("/").pop() || u.hostname);
  } catch {
    return src.slice(0, 80);
  }
}

async function main() {
  const src = new URLSearchParams(location.search).get("src");
  if (!src) {
    status.textContent = "No image given: right-click an image and choose \"Check with aivsreal\".";
    document.body.dataset.ready = "error";
    return;
  }
  const name = shortName(src);
  const item = resultItem(name, src.startsWith("data:") || src.startsWith("http") ? src : "");
  document.getElementById("results").append(item.li);
  let blob;
  try {
    const r = await fetch(src, { credentials: "omit" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    blob = await r.blob();
  } catch (e) {
    item.update({ path: name, error: { kind: "fetch_failed", message: `cannot download the image: ${e.message}` } });
    status.textContent = "";
    document.body.dataset.ready = "true";
    return;
  }
  let scorer;
  try {
    const card = await (await fetch(chrome.runtime.getURL("model/card.json"))).json();
    scorer = await Scorer.create(chrome.runtime.getURL("model/model.onnx"), card, card.model_id);
  } catch (e) {
    const msg = `no usable model in this build of the extension (${e.message || e}); rebuild with --model`;
    item.update({ path: name, error: { kind: "model_unavailable", message: msg } }, { mode: "device" });
    status.textContent = "";
    document.body.dataset.ready = "true";
    return;
  }
  status.textContent = "Scoring…";
  item.update(await scorer.scoreOrError(blob, name), { mode: "device" });
  status.textContent = "";
  document.body.dataset.ready = "true";
}

main();
