// The decision rule, the JavaScript twin of aivsreal/decision.py (held to it by test vectors):
// view logits → mean → calibrated P(AI) = sigmoid(logit / temperature) → label and uncertain flag.

/** One logit for an image from the logits of its views (Python: decision.aggregate, the mean). */
export function aggregate(logits) {
  if (!logits.length) throw new Error("no view logits to aggregate");
  let s = 0;
  for (const z of logits) s += z;
  return s / logits.length;
}

/** Calibrated P(AI), numerically stable, as decision.calibrate. */
export function calibrate(logit, temperature) {
  const z = logit / temperature;
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

/** Calibrated P(AI), label and uncertain flag from a logit (or view logits), as Detector.postprocess. */
export function scoreFromLogit(logit, card, { threshold = null } = {}) {
  const z = Array.isArray(logit) ? aggregate(logit) : logit;
  const t = threshold ?? card.threshold;
  const score = calibrate(z, card.temperature);
  const labels = card.labels || ["real", "ai"];
  return {
    score,
    label: score >= t ? labels[1] : labels[0],
    uncertain: Math.abs(score - t) < card.uncertain_band,
    threshold: t,
  };
}
