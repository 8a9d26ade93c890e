// lintorch demo page. It draws and it asks: every number shown (scores, losses, gradients, the
// winning class behind each pixel, steps, presets, random weights) comes from the server, which
// computes it with lintorch in float64. The page keeps the state (points, W and b) and sends it
// with each request; the API is described in lintorch/demo.py.
"use strict";

// matplotlib's tab20 pairs, as lintorch's figures use them: light fills the regions, strong marks
// points and lines, so a point stays visible on its own class's region.
const LIGHT = ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
               "#c7c7c7", "#dbdb8d", "#9edae5"];
const STRONG = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf"];
// Randomize W's spread for the linear model: at lintorch's 1e-3 every W would read 0.00x.
const RANDOM_STD = 0.5;
const $ = (id) => document.getElementById(id);

const state = {
  points: [], labels: [], classes: 3, preset: "separable", presetSeed: 0, randomSeed: 0,
  model: "linear",        // the model that params belong to (the select may be ahead of it)
  params: null,           // {W, b} or {W1, b1, W2, b2}, as the server sent them
  result: null,           // the last evaluation
  history: [], steps: 0,  // history[i]: the objective after i steps
  version: 0,             // bumped by every change, so a gradient check can tell it is stale
  gradVersion: -1, running: false, loops: 0, addClass: 0, drag: -1, hover: -1, evaluations: 0,
};

// ---------------------------------------------------------------------------------------------
// Talking to the server: one request at a time, in order, so no answer overtakes a newer one.

let queue = Promise.resolve();
let evaluationQueued = false;

async function api(path, body) {
  const res = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                 body: JSON.stringify(body)});
  const answer = await res.json();
  if (!res.ok) throw new Error(answer.error || `${res.status} ${res.statusText}`);
  return answer;
}

function enqueue(job) {
  queue = queue.then(job).then(() => setStatus(""), (err) => {
    state.running = false;
    updateRunButton();
    setStatus(err.message, true);
  });
  return queue;
}

function setStatus(text, error = false) {
  $("status").textContent = text || `${state.points.length} points, ${state.classes} classes, ` +
    `${model() === "linear" ? "linear classifier" : "sigmoid MLP"}, computed by lintorch`;
  $("status").classList.toggle("error", error);
}

function problem() {
  return {model: model(), loss: $("loss").value, reg: number("reg"), points: state.points,
          labels: state.labels, params: state.params};
}

function model() { return state.model; }

function number(id) {
  const v = Number($(id).value);
  return Number.isFinite(v) ? v : 0;
}

function changed() {
  state.version += 1;
  requestEvaluation();
}

function requestEvaluation() {
  if (evaluationQueued) return;  // the queued one will send the state as it is by then
  evaluationQueued = true;
  enqueue(async () => {
    evaluationQueued = false;
    const r = await api("/api/evaluate", problem());
    state.history[state.steps] = r.loss;
    show(r);
  });
}

function step(steps = 1) {
  return enqueue(async () => {
    const r = await api("/api/step", {...problem(), lr: number("lr"), steps});
    state.history[state.steps] = r.losses[0];  // before the step, on the data as they are now
    state.history.push(...r.losses.slice(1), r.loss);
    state.steps += steps;
    state.params = r.params;
    state.version += 1;
    show(r);
  });
}

async function run() {
  state.running = !state.running;
  updateRunButton();
  const loop = ++state.loops;  // a Pause and Run in quick succession leave one loop running
  while (state.running && loop === state.loops) {
    await step(model() === "linear" ? 1 : 5);  // the MLP needs many more steps to move
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
}

function updateRunButton() {
  $("run").textContent = state.running ? "Pause" : "Run";
  $("run").classList.toggle("on", state.running);
}

function resetHistory() {
  state.history = [];
  state.steps = 0;
}

function randomize() {
  return enqueue(async () => {
    const body = {model: $("model").value, classes: state.classes, seed: state.randomSeed++};
    if (body.model === "linear") body.std = RANDOM_STD;
    else body.hidden = Math.round(number("hidden"));
    state.params = (await api("/api/randomize", body)).params;
    state.model = body.model;
    resetHistory();
    buildEditor();
    changed();
  });
}

function loadPreset(name) {
  return enqueue(async () => {
    const r = await api("/api/preset", {name, seed: state.presetSeed++, classes: state.classes});
    state.preset = name;
    state.points = r.points;
    state.labels = r.labels;
    resetHistory();
    changed();
  });
}

function checkGradient() {
  return enqueue(async () => {
    const r = await api("/api/gradcheck", problem());
    state.gradVersion = state.version;
    showGradient(r);
  });
}

// ---------------------------------------------------------------------------------------------
// Showing an evaluation

function show(r) {
  state.result = r;
  state.evaluations += 1;
  document.body.dataset.evaluations = state.evaluations;
  $("data-loss").textContent = r.data_loss.toFixed(6);
  $("reg-loss").textContent = r.reg_loss.toFixed(6);
  $("total-loss").textContent = r.loss.toFixed(6);
  $("accuracy").textContent = `${(100 * r.accuracy).toFixed(1)} %`;
  $("step-count").textContent = `step ${state.steps}`;
  $("grad-panel").classList.toggle("stale", state.gradVersion !== state.version);
  showPoints(r);
  fillEditor();
  drawPlane();
  drawPlot();
}

function showPoints(r) {
  const C = state.classes;
  const head = ["#", "y", "x₁", "x₂", ...Array.from({length: C}, (_, k) => `s<sub>${k}</sub>`),
                "L<sub>i</sub>"];
  const rows = r.scores.map((s, i) => {
    const win = s.indexOf(Math.max(...s));
    const [x1, x2] = state.points[i];
    const L = r.L_i[i];
    return `<tr data-i="${i}"><td>${i}</td><td>${dot(state.labels[i])}</td>` +
      `<td>${x1.toFixed(2)}</td><td>${x2.toFixed(2)}</td>` +
      s.map((v, k) => `<td${k === win ? ' class="win"' : ""}>${v.toFixed(2)}</td>`).join("") +
      `<td class="loss${L === 0 ? " zero" : ""}">${L.toFixed(3)}</td></tr>`;
  });
  $("points").innerHTML = `<thead><tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr></thead>` +
    `<tbody>${rows.join("")}</tbody>`;
}

function dot(k) { return `<span class="dot" style="background:${STRONG[k]}"></span>`; }

// The W and b editor: one row per class, w_k1, w_k2, b_k. Typing re-evaluates at once.
function buildEditor() {
  const editor = $("editor");
  if (model() === "mlp") {
    const H = state.params.W1.length;
    $("params-title").textContent = "Parameters";
    editor.innerHTML = `<p>f(x) = W₂ σ(W₁x + b₁) + b₂ with ${H} sigmoid units: ` +
      `${H * 3 + state.classes * (H + 1)} numbers and no single line per class, so the lines, ` +
      `arrows and this W, b editor give way to its curved regions (the background), ` +
      `the winning class of its scores.</p>`;
    return;
  }
  $("params-title").textContent = "W and b (editable)";
  const rows = state.params.W.map((_, k) => `<tr><th>${dot(k)} k = ${k}</th>` +
    ["0", "1", "b"].map((j) => `<td><input type="number" step="0.1" data-k="${k}" data-j="${j}"` +
                                `></td>`).join("") + "</tr>");
  editor.innerHTML = `<table><tr><th></th><th>w<sub>k1</sub></th><th>w<sub>k2</sub></th>` +
    `<th>b<sub>k</sub></th></tr>${rows.join("")}</table>`;
  for (const input of editor.querySelectorAll("input")) {
    input.addEventListener("input", () => {
      const v = Number(input.value);
      if (input.value === "" || !Number.isFinite(v)) return;
      const k = Number(input.dataset.k);
      if (input.dataset.j === "b") state.params.b[k] = v;
      else state.params.W[k][Number(input.dataset.j)] = v;
      changed();
    });
  }
  fillEditor();
}

function fillEditor() {
  if (model() !== "linear") return;
  for (const input of $("editor").querySelectorAll("input")) {
    if (input === document.activeElement) continue;  // never rewrite what is being typed
    const k = Number(input.dataset.k);
    const v = input.dataset.j === "b" ? state.params.b[k] : state.params.W[k][input.dataset.j];
    input.value = String(Number(v.toFixed(4)));
  }
}

// Entries whose gradients are both under the server's floor are 0 up to rounding: their
// relative error is noise (up to 1), shown greyed and left out of the headline figure.
function showGradient(r) {
  const err = (e) => e.toExponential(1);
  const zero = (a, n) => Math.max(Math.abs(a), Math.abs(n)) <= r.floor;
  const figure = r.max_rel_error_above_floor;
  const verdict = figure < 1e-6 ? "good" : "bad";
  let html = `<p class="headline">largest relative error <span class="${verdict}">` +
    `${err(figure)}</span> <span class="hint">(centred differences, h = ${r.h})</span></p>`;
  if (r.max_rel_error !== figure) {
    html += `<p class="hint">over the entries above the rounding floor ${err(r.floor)}; ` +
      `with the entries that are 0 to rounding, lintorch.grad_check gives ` +
      `${err(r.max_rel_error)}, which is noise</p>`;
  }
  const rows = [];
  for (const [name, g] of Object.entries(r.params)) {
    const analytic = g.analytic.flat(), numerical = g.numerical.flat(), rel = g.rel_error.flat();
    if (model() === "mlp") {  // hundreds of numbers: one line per matrix
      const all = g.max_rel_error === g.max_rel_error_above_floor ? ""
        : ` <span class="zero" title="with the entries that are 0 to rounding">` +
          `(${err(g.max_rel_error)})</span>`;
      rows.push(`<tr><td>${name}</td><td>${analytic.length}</td>` +
                `<td>${err(g.max_rel_error_above_floor)}${all}</td></tr>`);
      continue;
    }
    const cols = Array.isArray(g.analytic[0]) ? g.analytic[0].length : 0;
    analytic.forEach((a, i) => {
      const n = numerical[i];
      const where = cols ? `${Math.floor(i / cols)},${i % cols}` : `${i}`;
      rows.push(`<tr><td>${name}[${where}]</td><td>${a.toPrecision(6)}</td>` +
                `<td>${n.toPrecision(6)}</td><td${zero(a, n) ? ' class="zero" title="both 0 ' +
                'to rounding"' : ""}>${err(rel[i])}</td></tr>`);
    });
  }
  const head = model() === "mlp" ? ["", "entries", "max rel. error"]
                                 : ["∂/∂", "analytic", "numerical", "rel. error"];
  html += `<div class="scroll"><table class="numbers"><tr>${head.map((h) => `<th>${h}</th>`)
    .join("")}</tr>${rows.join("")}</table></div>`;
  $("grad").innerHTML = html;
  $("grad-panel").classList.remove("stale");
}

// ---------------------------------------------------------------------------------------------
// The plane: regions, class lines and their w_k arrows, points

const plane = $("plane");
const plot = $("lossplot");
const regions = document.createElement("canvas");  // one pixel per grid point, then stretched

function context(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return [ctx, w, h];
}

function extent() { return state.result ? state.result.grid.extent : [-4, 4, -4, 4]; }

function toPixel([x, y]) {
  const [xmin, xmax, ymin, ymax] = extent();
  return [(x - xmin) / (xmax - xmin) * plane.clientWidth,
          (ymax - y) / (ymax - ymin) * plane.clientHeight];
}

function toData(event) {
  const [xmin, xmax, ymin, ymax] = extent();
  const box = plane.getBoundingClientRect();
  const round = (v) => Math.round(v * 1000) / 1000;
  return [round(xmin + (event.clientX - box.left) / box.width * (xmax - xmin)),
          round(ymax - (event.clientY - box.top) / box.height * (ymax - ymin))];
}

function hexRGB(hex) { return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)); }

function drawPlane() {
  const [ctx, w, h] = context(plane);
  const r = state.result;
  if (r) {
    const n = r.grid.size;
    regions.width = regions.height = n;
    const rctx = regions.getContext("2d");
    const image = rctx.createImageData(n, n);
    r.grid.classes.forEach((k, i) => {
      image.data.set([...hexRGB(LIGHT[k]), 255], 4 * i);
    });
    rctx.putImageData(image, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(regions, 0, 0, w, h);
  }
  drawAxes(ctx, w, h);
  const lines = model() === "linear" && state.params ? drawLines(ctx) : [];
  plane.dataset.lines = JSON.stringify(lines);
  state.points.forEach((p, i) => {
    const [px, py] = toPixel(p);
    ctx.beginPath();
    ctx.arc(px, py, i === state.hover ? 8 : 5.5, 0, 2 * Math.PI);
    ctx.fillStyle = STRONG[state.labels[i]];
    ctx.fill();
    ctx.lineWidth = i === state.hover ? 2.5 : 1.5;
    ctx.strokeStyle = i === state.hover ? "#111" : "#fff";
    ctx.stroke();
  });
  $("legend").innerHTML = model() === "linear"
    ? "background: the class whose score s<sub>k</sub> = w<sub>k</sub>·x + b<sub>k</sub> wins · " +
      "line k: s<sub>k</sub> = 0 · arrow: w<sub>k</sub>, where s<sub>k</sub> grows"
    : "background: the class whose MLP score wins (curved regions: no line per class)";
}

function drawAxes(ctx, w, h) {
  const [xmin, xmax, ymin, ymax] = extent();
  ctx.lineWidth = 1;
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "rgba(0, 0, 0, 0.45)";
  for (let v = Math.ceil(xmin); v <= xmax; v++) {
    const [px] = toPixel([v, 0]);
    ctx.strokeStyle = v === 0 ? "rgba(0, 0, 0, 0.35)" : "rgba(0, 0, 0, 0.08)";
    ctx.beginPath(); ctx.moveTo(px, 0); ctx.lineTo(px, h); ctx.stroke();
    if (v !== xmin && v !== xmax) ctx.fillText(String(v), px + 2, h - 4);
  }
  for (let v = Math.ceil(ymin); v <= ymax; v++) {
    const [, py] = toPixel([0, v]);
    ctx.strokeStyle = v === 0 ? "rgba(0, 0, 0, 0.35)" : "rgba(0, 0, 0, 0.08)";
    ctx.beginPath(); ctx.moveTo(0, py); ctx.lineTo(w, py); ctx.stroke();
    if (v !== ymin && v !== ymax && v !== 0) ctx.fillText(String(v), 3, py - 3);
  }
}

// Each line w_k . x + b_k = 0, clipped to the view, then an arrow along w_k (toward s_k > 0)
// drawn over all the lines, about 2 units from the line's point nearest 0, on the side with
// fewer points around it, as lintorch's figures place them.
function drawLines(ctx) {
  const [xmin, xmax, ymin, ymax] = extent();
  const {W, b} = state.params;
  const drawn = [], arrows = [];
  W.forEach(([w1, w2], k) => {
    const norm = Math.hypot(w1, w2);
    if (!(norm > 1e-12)) return;
    const u = [w1 / norm, w2 / norm], d = [-u[1], u[0]];
    const foot = [-b[k] * u[0] / norm, -b[k] * u[1] / norm];
    let lo = -Infinity, hi = Infinity;  // foot + t d lies in the view for t in [lo, hi]
    for (const [p, dp, a, z] of [[foot[0], d[0], xmin, xmax], [foot[1], d[1], ymin, ymax]]) {
      if (Math.abs(dp) < 1e-12) {
        if (p < a || p > z) return;
      } else {
        lo = Math.max(lo, Math.min((a - p) / dp, (z - p) / dp));
        hi = Math.min(hi, Math.max((a - p) / dp, (z - p) / dp));
      }
    }
    if (!(hi > lo)) return;
    const at = (t) => [foot[0] + t * d[0], foot[1] + t * d[1]];
    drawn.push([...at(lo), ...at(hi)]);
    stroke(ctx, [[toPixel(at(lo)), toPixel(at(hi))]], STRONG[k], 2.5);
    const crowd = (t) => state.points.filter(([x, y]) => {
      const [px, py] = at(t);
      return Math.hypot(x - px, y - py) < 1;
    }).length;
    const clamp = (t) => Math.min(Math.max(t, lo + 0.4), hi - 0.4);
    const t = [2, -2].map(clamp).reduce((best, t) => (crowd(t) < crowd(best) ? t : best));
    arrows.push([k, u, toPixel(at(t))]);
  });
  for (const [k, u, tail] of arrows) {
    const head = [tail[0] + 34 * u[0], tail[1] - 34 * u[1]];  // pixels grow downwards
    const wing = (s) => [head[0] - 9 * u[0] + s * 5 * u[1], head[1] + 9 * u[1] + s * 5 * u[0]];
    stroke(ctx, [[tail, head], [wing(1), head], [wing(-1), head]], STRONG[k], 3);
    ctx.font = "italic 600 13px system-ui, sans-serif";
    ctx.lineWidth = 3;
    ctx.strokeStyle = "#fff";
    const label = `w${"₀₁₂₃₄₅₆₇₈₉"[k]}`;
    const [lx, ly] = [head[0] + 8 * u[0] - 6, head[1] - 8 * u[1] + 5];
    ctx.strokeText(label, lx, ly);
    ctx.fillStyle = STRONG[k];
    ctx.fillText(label, lx, ly);
  }
  return drawn;
}

function stroke(ctx, segments, colour, width) {
  ctx.lineCap = "round";
  for (const [style, lw] of [["#fff", width + 3], [colour, width]]) {  // a white halo first
    ctx.strokeStyle = style;
    ctx.lineWidth = lw;
    for (const [[x0, y0], [x1, y1]] of segments) {
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The objective over the steps

function drawPlot() {
  const [ctx, w, h] = context(plot);
  const values = state.history.filter(Number.isFinite);
  const left = 48, right = 10, top = 10, bottom = 20;
  const top_ = Math.max(...values, 1e-9) * 1.08;
  const x = (i) => left + (state.history.length > 1 ? i / (state.history.length - 1) : 0) *
    (w - left - right);
  const y = (v) => top + (1 - v / top_) * (h - top - bottom);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#666";
  ctx.strokeStyle = "#e4e4e4";
  ctx.lineWidth = 1;
  for (const v of [0, top_ / 2, top_]) {
    ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(w - right, y(v)); ctx.stroke();
    ctx.fillText(v.toPrecision(3), 4, y(v) + 4);
  }
  ctx.fillText("0", left, h - 5);
  const last = String(Math.max(state.history.length - 1, 0));
  ctx.fillText(last, w - right - ctx.measureText(last).width, h - 5);
  ctx.strokeStyle = "#1f3b73";
  ctx.lineWidth = 2;
  ctx.beginPath();
  state.history.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
  ctx.stroke();
  if (state.history.length === 1) {
    ctx.fillStyle = "#1f3b73";
    ctx.beginPath(); ctx.arc(x(0), y(state.history[0]), 3, 0, 2 * Math.PI); ctx.fill();
  }
}

// ---------------------------------------------------------------------------------------------
// Editing the points with the mouse

function pointAt(event) {
  const box = plane.getBoundingClientRect();
  const [mx, my] = [event.clientX - box.left, event.clientY - box.top];
  let best = -1, bestDistance = 9;  // pixels
  state.points.forEach((p, i) => {
    const [px, py] = toPixel(p);
    const distance = Math.hypot(px - mx, py - my);
    if (distance < bestDistance) [best, bestDistance] = [i, distance];
  });
  return best;
}

plane.addEventListener("contextmenu", (e) => e.preventDefault());
plane.addEventListener("pointerdown", (e) => {
  const i = pointAt(e);
  if (i >= 0 && (e.shiftKey || e.button === 2)) {
    if (state.points.length === 1) return setStatus("keep at least one point", true);
    state.points.splice(i, 1);
    state.labels.splice(i, 1);
    state.hover = -1;
  } else if (e.button !== 0) {
    return;
  } else if (i >= 0) {
    state.drag = i;
    plane.setPointerCapture(e.pointerId);
    return;
  } else if (state.points.length >= 1000) {
    return setStatus("at most 1,000 points", true);
  } else {
    state.points.push(toData(e));
    state.labels.push(state.addClass);
  }
  drawPlane();
  changed();
});
plane.addEventListener("pointermove", (e) => {
  if (state.drag < 0) return;
  const [xmin, xmax, ymin, ymax] = extent();
  const [x, y] = toData(e);
  state.points[state.drag] = [Math.min(Math.max(x, xmin), xmax), Math.min(Math.max(y, ymin), ymax)];
  drawPlane();
  changed();
});
plane.addEventListener("pointerup", () => { state.drag = -1; });

$("points").addEventListener("mouseover", (e) => {
  const row = e.target.closest("tr[data-i]");
  state.hover = row ? Number(row.dataset.i) : -1;
  drawPlane();
});
$("points").addEventListener("mouseleave", () => { state.hover = -1; drawPlane(); });

// ---------------------------------------------------------------------------------------------
// Controls

function buildClassControls() {
  $("add-class").innerHTML = Array.from({length: state.classes}, (_, k) =>
    `<button class="swatch${k === state.addClass ? " on" : ""}" data-k="${k}" ` +
    `title="class ${k}" style="background:${STRONG[k]}"></button>`).join("");
}

$("add-class").addEventListener("click", (e) => {
  if (!e.target.dataset.k) return;
  state.addClass = Number(e.target.dataset.k);
  buildClassControls();
});

$("classes").innerHTML = Array.from({length: 9}, (_, i) => `<option>${i + 2}</option>`).join("");
$("classes").value = "3";
$("classes").addEventListener("change", () => {
  state.classes = Number($("classes").value);
  state.addClass = Math.min(state.addClass, state.classes - 1);
  buildClassControls();
  loadPreset(state.preset);
  randomize();
});

$("model").addEventListener("change", () => {
  $("hidden-label").hidden = $("model").value === "linear";
  randomize();
});
$("hidden").addEventListener("change", () => randomize());
$("loss").addEventListener("change", () => { resetHistory(); changed(); });
$("reg").addEventListener("input", () => changed());
$("step").addEventListener("click", () => step(1));
$("run").addEventListener("click", () => run());
$("randomize").addEventListener("click", () => randomize());
$("check").addEventListener("click", () => checkGradient());
for (const button of document.querySelectorAll("[data-preset]")) {
  button.addEventListener("click", () => loadPreset(button.dataset.preset));
}

buildClassControls();
loadPreset("separable");
randomize();
