// The page `ftk serve` shows at /: one input (a text box or a file upload,
// as the task's `page` setting says), sent to POST /predict, and the
// prediction drawn as top scores, boxes on the picture, or JSON.
"use strict";

const TOP = 5;
const $ = (id) => document.getElementById(id);
let settings = null;
let picture = null;  // the uploaded file as an <img>, for drawing boxes on

function show(element, visible) { element.hidden = !visible; }

function fail(message) {
  $("error").textContent = message;
  show($("error"), true);
}

async function describe() {
  const response = await fetch("/info");
  settings = await response.json();
  $("title").textContent = settings.name;
  $("subtitle").textContent = `Task: ${settings.task}`;
  $("rest-route").textContent = `POST /v1/models/${settings.name}:predict`;
  const file = settings.page.input === "file";
  show($("text-field"), !file);
  show($("file-field"), file);
  show($("min-score-field"), settings.page.show === "detections");
  show($("form"), true);
}

function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(",") + 1));
    reader.onerror = () => reject(new Error(`Cannot read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

function imageOf(file) {
  return new Promise((resolve) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => resolve(null);  // the server says what is wrong with it
    image.src = URL.createObjectURL(file);
  });
}

async function instance() {
  if (settings.page.input !== "file") {
    const text = $("input-text").value;
    if (!text.trim()) throw new Error("Type a text first.");
    return text;
  }
  const file = $("input-file").files[0];
  if (!file) throw new Error("Choose a file first.");
  picture = await imageOf(file);
  return { b64: await base64Of(file) };
}

function scoreRows(scores) {
  const top = Object.entries(scores).sort((a, b) => b[1] - a[1]).slice(0, TOP);
  const rows = document.createElement("div");
  for (const [name, score] of top) {
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${Math.max(1, score * 100)}%`;
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = score.toFixed(3);
    row.append(label, bar, value);
    rows.append(row);
  }
  return rows;
}

function drawDetections(detections) {
  const canvas = $("picture");
  if (!picture) return;
  canvas.width = picture.naturalWidth;
  canvas.height = picture.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(picture, 0, 0);
  const line = Math.max(2, canvas.width / 200);
  context.lineWidth = line;
  context.font = `${Math.max(12, canvas.width / 30)}px sans-serif`;
  for (const found of detections) {
    const [x1, y1, x2, y2] = found.box;
    context.strokeStyle = "#ff2d55";
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const caption = `${found.label} ${found.score.toFixed(2)}`;
    const width = context.measureText(caption).width + 2 * line;
    const height = parseInt(context.font, 10) + line;
    context.fillStyle = "#ff2d55";
    context.fillRect(x1, Math.max(0, y1 - height), width, height);
    context.fillStyle = "#fff";
    context.fillText(caption, x1 + line, Math.max(0, y1 - height) + height - line);
  }
  show(canvas, true);
}

function render(prediction) {
  const output = $("output");
  output.replaceChildren();
  show($("picture"), false);
  const kind = settings.page.show;
  if (kind === "scores" && prediction.scores) {
    const label = document.createElement("p");
    label.id = "label";
    label.textContent = `${prediction.label} (${prediction.score.toFixed(3)})`;
    output.append(label, scoreRows(prediction.scores));
  } else if (kind === "detections" && prediction.detections) {
    const least = Number($("min-score").value) || 0;
    const kept = prediction.detections.filter((found) => found.score >= least);
    drawDetections(kept);
    const count = document.createElement("p");
    count.id = "label";
    count.textContent = `${kept.length} found with a score of at least ${least}`;
    output.append(count);
    for (const found of kept) {
      const row = document.createElement("div");
      row.className = "row detection";
      row.textContent = `${found.label} ${found.score.toFixed(3)} at [${found.box.join(", ")}]`;
      output.append(row);
    }
  } else {
    const pre = document.createElement("pre");
    pre.id = "label";
    pre.textContent = JSON.stringify(prediction, null, 2);
    output.append(pre);
  }
}

async function submit(event) {
  event.preventDefault();
  show($("error"), false);
  $("submit").disabled = true;
  try {
    const body = JSON.stringify({ instances: [await instance()] });
    const started = performance.now();
    const response = await fetch("/predict", {
      method: "POST", headers: { "Content-Type": "application/json" }, body });
    const answer = await response.json();
    const roundTrip = performance.now() - started;
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
    last = answer.predictions[0];
    render(last);
    $("latency").textContent =
      `Server ${answer.latency_ms.toFixed(1)} ms, round trip ${roundTrip.toFixed(1)} ms`;
    show($("result"), true);
  } catch (error) {
    fail(error.message);
  } finally {
    $("submit").disabled = false;
  }
}

let last = null;  // the last prediction, drawn again when the minimum score changes
$("form").addEventListener("submit", submit);
$("min-score").addEventListener("input", () => { if (last) render(last); });
describe().catch((error) => fail(`Cannot describe the model: ${error.message}`));
