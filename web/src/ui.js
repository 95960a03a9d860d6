// One result card (thumbnail, score bar, label, model id, errors in place), shared by the page and the
// extension so both show a score the same way.

const LABEL_TEXT = { ai: "AI-generated", real: "Real photo" };

/** A threshold or band as the page shows it: two decimals (0.8791862323012077 → "0.88"). */
export function fmt2(x) {
  return Number(x).toFixed(2);
}

/** The words shown for a result: label, or "Uncertain" with the side it leans to. */
export function verdictText(r) {
  const base = LABEL_TEXT[r.label] || r.label;
  return r.uncertain ? `Uncertain (leans ${base.toLowerCase()})` : base;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A list item for one file; ``update`` it with a result or an error. */
export function resultItem(name, thumbUrl) {
  const li = el("li", "result");
  li.dataset.state = "pending";
  li.dataset.name = name;
  const img = el("img", "thumb");
  img.alt = `Thumbnail of ${name}`;
  img.decoding = "async";
  // A file the browser cannot show (corrupt, not an image, HEIC ...) gets a labelled placeholder, not a blank.
  const noPreview = () => {
    const ph = el("div", "thumb placeholder", "No preview");
    ph.setAttribute("role", "img");
    ph.setAttribute("aria-label", `No preview of ${name}: the browser cannot display this file`);
    img.replaceWith(ph);
  };
  if (thumbUrl) img.src = thumbUrl;
  else queueMicrotask(noPreview);
  img.addEventListener("error", noPreview, { once: true });
  const body = el("div", "body");
  const title = el("h2", "name", name);
  title.title = name;
  const bar = el("div", "bar");
  bar.setAttribute("role", "meter");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  bar.setAttribute("aria-label", `AI score of ${name}`);
  const fill = el("span", "fill");
  const mark = el("span", "mark");
  mark.setAttribute("aria-hidden", "true");
  bar.append(fill, mark);
  const verdict = el("p", "verdict", "Scoring…");
  const meta = el("p", "meta");
  body.append(title, bar, verdict, meta);
  li.append(img, body);

  function update(r, { mode = "server" } = {}) {
    li.dataset.mode = mode;
    if (r.error) {
      li.dataset.state = "error";
      li.dataset.errorKind = r.error.kind;
      bar.hidden = true;
      verdict.textContent = "Could not score this file";
      verdict.className = "verdict error";
      meta.textContent = `${r.error.kind}: ${r.error.message}`;
      meta.setAttribute("role", "alert");
      return;
    }
    const pct = Math.round(r.score * 1000) / 10;
    li.dataset.state = "done";
    li.dataset.score = String(r.score);
    li.dataset.label = r.label;
    li.dataset.threshold = String(r.threshold);
    li.dataset.uncertain = String(Boolean(r.uncertain));
    li.dataset.modelId = r.model_id;
    bar.hidden = false;
    bar.setAttribute("aria-valuenow", String(pct));
    bar.setAttribute(
      "aria-valuetext",
      `score ${r.score.toFixed(3)}, labelled ${r.label} (AI at ${fmt2(r.threshold)} or more)`,
    );
    // The bar's colour is the label's (striped when uncertain), so a high score labelled real reads real.
    bar.dataset.label = r.label;
    bar.dataset.uncertain = String(Boolean(r.uncertain));
    fill.style.width = `${pct}%`;
    mark.style.left = `${r.threshold * 100}%`;
    mark.title = `decision line: AI at ${fmt2(r.threshold)} or more`;
    verdict.className = `verdict ${r.label}`;
    verdict.textContent = `${verdictText(r)} — score ${r.score.toFixed(3)}, AI at ≥ ${fmt2(r.threshold)}`;
    if (r.reason) verdict.textContent += ` (${r.reason})`;
    const where = mode === "device" ? `on this device, ${Math.round(r.latency_ms)} ms` : "on the server";
    if (r.latency_ms !== undefined) li.dataset.latencyMs = String(r.latency_ms);
    meta.textContent = `model ${r.model_id} · ${where}`;
  }

  return { li, update };
}
