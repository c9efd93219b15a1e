/* mediscope serve: the page. Plain JavaScript, no build step, no network beyond this server.

   The page asks the server for its models (GET api/models), sends images one after another
   (POST api/predict, with upload progress), and draws each result on a canvas that zooms
   and pans. Detection results hold every box above a low score floor, so the score
   threshold slider filters and recounts in the browser without asking the server again.
   A token in the page's own address (?token=T) goes with every request. */
"use strict";

(() => {
  const TOKEN = new URLSearchParams(window.location.search).get("token") || "";
  // The server's colours (runtime.drawing.class_colors); used when a model lists none.
  const PALETTE = [
    [0, 0, 0], [86, 180, 233], [240, 228, 66], [0, 158, 115], [204, 121, 167],
    [0, 114, 178], [213, 94, 0], [230, 159, 0], [31, 119, 180], [255, 127, 14],
    [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75], [227, 119, 194],
  ];
  const TASK_NAMES = {
    classification: "classification",
    detection: "detection (counts objects)",
    segmentation: "segmentation (areas)",
  };
  const METRIC_NAMES = {
    map_50: "mAP@0.5", map: "mAP@0.5:0.95", map_75: "mAP@0.75", dice_mean: "Dice (mean)",
    iou_mean: "IoU (mean)", f1_macro: "F1 (macro)", accuracy: "accuracy",
    balanced_accuracy: "balanced accuracy", auroc_macro: "AUROC (macro)",
    precision_macro: "precision (macro)", recall_macro: "recall (macro)",
    f1_weighted: "F1 (weighted)", ece: "calibration error (ECE)", map_small: "mAP small",
    map_medium: "mAP medium", map_large: "mAP large", f1_at_threshold: "F1 at the threshold",
  };
  const metricName = (key) => METRIC_NAMES[key] || key.replace(/_/g, " ");

  const $ = (id) => document.getElementById(id);
  const state = {
    models: [],
    model: null, // the selected model
    jobs: [], // every image sent: {n, file, model, status, progress, data, error, ...}
    current: null, // the job whose result is shown
    pinned: false, // the user chose the shown result: new results do not replace it
    running: false,
    threshold: {}, // model id -> the threshold slider's value
    opacity: {}, // task -> the overlay slider's value
    hidden: new Set(), // detection classes switched off
  };
  let jobCounter = 0;

  // -- addresses and requests --------------------------------------------------------------

  /** A server address relative to the page (so a reverse-proxy prefix keeps working), with
      the token and any extra query parameters. */
  function url(path, params) {
    const relative = path.startsWith("/api/") ? path.slice(1) : path;
    const address = new URL(relative, window.location.href);
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null) address.searchParams.set(key, String(value));
    }
    if (TOKEN) address.searchParams.set("token", TOKEN);
    return address.pathname + address.search;
  }

  function headers() {
    return TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
  }

  /** An error's message for people: what happened, the server's own line, what to do. */
  function describeError(status, body, fallback) {
    let message = "";
    let hint = "";
    if (body && typeof body === "object") {
      message = typeof body.error === "string" ? body.error : "";
      hint = typeof body.hint === "string" ? body.hint : "";
    }
    const joined = (...parts) => parts.filter(Boolean).join(" ");
    if (status === 429 || message === "busy") {
      const wait = body && Number(body.retry_after);
      const seconds = Number.isFinite(wait) && wait > 0 ? Math.ceil(wait) : null;
      return {
        message: "The server is busy with other images.",
        hint: seconds ? `Try again in ${seconds} s (the Retry button).` : "Try again in a moment (the Retry button).",
        retry: true,
      };
    }
    if (status === 401 || status === 403) {
      return {
        message: "This server needs an access token.",
        hint: joined(message && message !== "unauthorized" ? `(${message})` : "",
          "Open the page with the address the server printed, ending in ?token=…"),
      };
    }
    if (status === 413) {
      return { message: "The file is too large for this server.",
        hint: joined(message, hint || "Send a smaller image, or start the server with a higher upload limit.") };
    }
    if (status === 0) {
      return { message: fallback || "The server cannot be reached.",
        hint: "Check that `mediscope serve` still runs, then try again.", retry: true };
    }
    if (!message) {
      return { message: `${fallback || "The request failed"} (HTTP ${status}).`,
        hint: status >= 500 ? "The server's log says more." : "", retry: status >= 500 };
    }
    return { message, hint, retry: status >= 500 };
  }

  async function getJSON(path) {
    let response;
    try {
      response = await fetch(url(path), { headers: headers() });
    } catch (error) {
      throw describeError(0, null, "The server cannot be reached.");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (!response.ok) throw describeError(response.status, body, `${path} failed`);
    if (body === null) throw { message: `The server sent no JSON for ${path}.`, hint: "" };
    return body;
  }

  /** POST api/predict with upload progress; resolves to {status, body}. */
  function postImage(job) {
    return new Promise((resolve) => {
      const form = new FormData();
      form.append("model", job.model.id);
      form.append("image", job.file, job.file.name);
      if (job.model.task === "classification") form.append("cam", job.cam ? "true" : "false");
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url("api/predict"));
      for (const [key, value] of Object.entries(headers())) xhr.setRequestHeader(key, value);
      xhr.responseType = "text";
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) setProgress(job, "uploading", event.loaded / event.total);
      };
      xhr.upload.onload = () => setProgress(job, "predicting", null);
      xhr.onload = () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch (error) {
          body = null;
        }
        const retryAfter = Number(xhr.getResponseHeader("Retry-After"));
        if (body && typeof body === "object" && body.retry_after === undefined &&
            Number.isFinite(retryAfter) && retryAfter > 0) {
          body.retry_after = retryAfter;
        }
        resolve({ status: xhr.status, body });
      };
      xhr.onerror = () => resolve({ status: 0, body: null });
      xhr.ontimeout = () => resolve({ status: 0, body: null });
      setProgress(job, "uploading", 0);
      xhr.send(form);
    });
  }

  // -- small helpers -----------------------------------------------------------------------

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const rgb = (colour) => `rgb(${colour[0]}, ${colour[1]}, ${colour[2]})`;

  /** Colours of a model's classes, aligned with its class names. */
  function coloursOf(model, task, classes) {
    const given = Array.isArray(model && model.colors) ? model.colors : [];
    if (given.length === classes.length) return given;
    if (given.length === classes.length + 1 && task === "detection") return given.slice(1);
    const offset = task === "detection" ? 1 : 0;
    return classes.map((_, i) => PALETTE[(i + offset) % PALETTE.length]);
  }

  function swatch(colour) {
    return el("span", { class: "swatch", style: `background:${rgb(colour)}`, "aria-hidden": "true" });
  }

  const percent = (x, digits = 1) => `${(100 * x).toFixed(digits)} %`;
  const fixed = (x, digits = 3) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "–");
  const integer = (n) => Number(n).toLocaleString("en-US");

  function stem(name) {
    const dot = name.lastIndexOf(".");
    return (dot > 0 ? name.slice(0, dot) : name).replace(/[^\w.-]+/g, "_") || "image";
  }

  /** The children of an error box: the message in bold, the hint below it. */
  function errorParts(error) {
    const parts = [el("strong", { text: error.message || String(error) })];
    if (error.hint) parts.push(el("span", { class: "hint", text: error.hint }));
    return parts;
  }

  function showPageError(error) {
    $("page-error").replaceChildren(...errorParts(error));
    $("page-error").hidden = false;
  }

  function fileSize(bytes) {
    if (bytes < 1e3) return `${bytes} B`;
    if (bytes < 1e6) return `${Math.round(bytes / 1e3)} kB`;
    return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;
  }

  // -- a simple Markdown renderer for model cards (escaped text; no HTML passes through) ----

  function inline(text) {
    const node = document.createDocumentFragment();
    const pattern = /(`[^`]+`|\*\*[^*]+\*\*|\*[^*\s][^*]*\*)/g;
    let last = 0;
    for (const match of text.matchAll(pattern)) {
      if (match.index > last) node.append(text.slice(last, match.index));
      const token = match[0];
      if (token.startsWith("`")) node.append(el("code", { text: token.slice(1, -1) }));
      else if (token.startsWith("**")) node.append(el("strong", { text: token.slice(2, -2) }));
      else node.append(el("em", { text: token.slice(1, -1) }));
      last = match.index + token.length;
    }
    if (last < text.length) node.append(text.slice(last));
    return node;
  }

  function markdown(text) {
    const root = el("div", { class: "card-text" });
    const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
    const cells = (line) => line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) {
        i += 1;
      } else if (line.startsWith("```")) {
        const code = [];
        i += 1;
        while (i < lines.length && !lines[i].startsWith("```")) code.push(lines[i++]);
        i += 1;
        root.append(el("pre", {}, el("code", { text: code.join("\n") })));
      } else if (/^#{1,6}\s/.test(line)) {
        const level = Math.min(6, line.match(/^#+/)[0].length + 2); // under the page's h2/h3
        root.append(el(`h${level}`, {}, inline(line.replace(/^#+\s*/, ""))));
        i += 1;
      } else if (/^\s*[-*]\s/.test(line)) {
        const list = el("ul");
        while (i < lines.length && /^\s*[-*]\s/.test(lines[i])) {
          list.append(el("li", {}, inline(lines[i].replace(/^\s*[-*]\s/, ""))));
          i += 1;
        }
        root.append(list);
      } else if (line.trim().startsWith("|") && i + 1 < lines.length && /^\s*\|?\s*:?-{3,}/.test(lines[i + 1])) {
        const table = el("table");
        table.append(el("thead", {}, el("tr", {}, cells(line).map((c) => el("th", { scope: "col" }, inline(c))))));
        const body = el("tbody");
        i += 2;
        while (i < lines.length && lines[i].trim().startsWith("|")) {
          body.append(el("tr", {}, cells(lines[i]).map((c) => el("td", {}, inline(c)))));
          i += 1;
        }
        table.append(body);
        root.append(el("div", { class: "table-scroll" }, table));
      } else {
        const paragraph = [];
        while (i < lines.length && lines[i].trim() && !/^(#|```|\s*[-*]\s|\s*\|)/.test(lines[i])) {
          paragraph.push(lines[i].trim());
          i += 1;
        }
        if (!paragraph.length) {
          paragraph.push(lines[i].trim());
          i += 1;
        }
        root.append(el("p", {}, inline(paragraph.join(" "))));
      }
    }
    return root;
  }

  // -- the models ----------------------------------------------------------------------------

  async function loadModels() {
    try {
      const health = await getJSON("api/health");
      $("health").textContent = `server ${health.version || ""} · ${health.models} model${health.models === 1 ? "" : "s"}`;
    } catch (error) {
      $("health").textContent = "server not reachable";
    }
    let body;
    try {
      body = await getJSON("api/models");
    } catch (error) {
      showPageError(error);
      $("model").replaceChildren(el("option", { text: "no models" }));
      return;
    }
    state.models = Array.isArray(body.models) ? body.models : [];
    const select = $("model");
    select.replaceChildren(...state.models.map((model) =>
      el("option", { value: model.id, text: `${model.name || model.id}${model.task ? ` (${model.task})` : ""}${model.error ? " · failed to load" : ""}` })));
    if (!state.models.length) {
      select.append(el("option", { text: "no models" }));
      showPageError({ message: "The server has no models.", hint: "Start it with `mediscope serve RUN_DIR ...`." });
      return;
    }
    select.disabled = false;
    const wanted = new URLSearchParams(window.location.search).get("model");
    const first = state.models.find((m) => m.id === wanted) || state.models.find((m) => !m.error) || state.models[0];
    select.value = first.id;
    selectModel(first.id);
  }

  function selectModel(id) {
    const model = state.models.find((m) => m.id === id) || null;
    state.model = model;
    renderModel(model);
    const usable = model && !model.error;
    $("files").disabled = !usable;
    $("drop").classList.toggle("disabled", !usable);
    // Grad-CAM needs the PyTorch model (a run folder); exported files have none
    $("cam-option").hidden = !(usable && model.task === "classification" && (!model.format || model.format === "eager"));
    renderBatch();
  }

  function renderModel(model) {
    const box = $("model-info");
    box.replaceChildren();
    if (!model) return;
    if (model.error) {
      box.append(el("div", { class: "message error", role: "alert" },
        el("strong", { text: "This model failed to load." }), el("span", { class: "hint", text: model.error }),
        el("span", { class: "hint", text: "Choose another model, or fix this one and restart the server." })));
      if (!model.task) return;
    }
    const facts = el("dl", { class: "facts" });
    const fact = (term, ...value) => facts.append(el("dt", { text: term }), el("dd", {}, ...value));
    fact("Task", TASK_NAMES[model.task] || model.task || "unknown");
    if (Array.isArray(model.image_size)) fact("Input size", `${model.image_size[0]} × ${model.image_size[1]} px`);
    if (model.format) fact("Format", model.format);
    if (model.task === "detection" && typeof model.score_threshold === "number") {
      fact("Default threshold", formatThreshold(model.score_threshold));
    }
    box.append(facts);
    const classes = Array.isArray(model.classes) ? model.classes : [];
    if (classes.length) {
      const colours = coloursOf(model, model.task, classes);
      box.append(el("h3", { text: "Classes" }),
        el("ul", { class: "classes" }, classes.map((name, i) => el("li", {}, swatch(colours[i]), name))));
    }
    const metrics = model.metrics && model.metrics.values;
    if (metrics && Object.keys(metrics).length) {
      const rows = Object.entries(metrics).map(([key, m]) => {
        const value = m && typeof m === "object" ? m.value : m;
        const interval = m && typeof m === "object" && typeof m.low === "number" && typeof m.high === "number"
          ? `${fixed(m.low)} – ${fixed(m.high)}` : "–";
        return el("tr", {}, el("th", { scope: "row", text: metricName(key) }),
          el("td", { class: "num", text: fixed(value) }), el("td", { text: interval }));
      });
      const split = model.metrics.split || "validation";
      const images = typeof model.metrics.images === "number" ? `, ${integer(model.metrics.images)} images` : "";
      const level = typeof model.metrics.confidence === "number" ? Math.round(100 * model.metrics.confidence) : 95;
      box.append(el("h3", { text: `Metrics (${split}${images})` }),
        el("div", { class: "table-scroll" }, el("table", { class: "metrics" },
          el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "metric" }),
            el("th", { scope: "col", class: "num", text: "value" }), el("th", { scope: "col", text: `${level} % interval` }))),
          el("tbody", {}, rows))));
    } else if (!model.error) {
      box.append(el("p", { class: "small", text: "No validation metrics recorded for this model." }));
    }
    if (model.card) {
      box.append(el("details", { class: "card" }, el("summary", { text: "Model card" }), markdown(model.card)));
    }
  }

  // -- the images sent -------------------------------------------------------------------------

  function addFiles(files) {
    const model = state.model;
    if (!model || model.error) {
      showPageError({ message: "Choose a model that loaded first." });
      return;
    }
    for (const file of files) {
      jobCounter += 1;
      const job = { n: jobCounter, file, model, cam: !$("cam-option").hidden && $("cam").checked, status: "waiting", progress: 0 };
      job.item = el("li", { class: "job" });
      state.jobs.push(job);
      $("jobs").append(job.item);
      renderJob(job);
    }
    runQueue();
  }

  async function runQueue() {
    if (state.running) return;
    state.running = true;
    try {
      let job;
      while ((job = state.jobs.find((j) => j.status === "waiting"))) await runJob(job);
    } finally {
      state.running = false;
    }
  }

  async function runJob(job) {
    job.error = null;
    const { status, body } = await postImage(job);
    if (status === 200 && body && body.result) {
      job.status = "done";
      job.data = body;
      if (body.task === "detection" && state.threshold[job.model.id] === undefined &&
          typeof body.threshold === "number") {
        state.threshold[job.model.id] = body.threshold;
      }
      renderJob(job);
      renderBatch();
      if (!state.pinned || !state.current) await showResult(job, false);
      return;
    }
    const cut = status === 0 && job.status === "uploading"; // the connection closed mid-upload
    job.status = "failed";
    job.error = describeError(status, body, cut
      ? "The upload was cut off: the file may be too large for this server, or the server stopped."
      : "The image could not be predicted");
    renderJob(job);
  }

  function setProgress(job, status, fraction) {
    job.status = status;
    job.progress = fraction;
    renderJob(job);
  }

  function renderJob(job) {
    const item = job.item;
    item.className = `job ${job.status}${state.current === job ? " current" : ""}`;
    const name = el("span", { class: "job-name", text: job.file.name });
    const size = el("span", { class: "job-size", text: fileSize(job.file.size) });
    const parts = [el("div", { class: "job-head" }, name, size)];
    if (job.status === "waiting") {
      parts.push(el("div", { class: "job-status", text: "waiting…" }));
    } else if (job.status === "uploading") {
      const value = job.progress === null ? 0 : Math.round(100 * job.progress);
      parts.push(el("progress", { max: "100", value: String(value), "aria-label": `Uploading ${job.file.name}` }),
        el("div", { class: "job-status", text: `uploading… ${value} %` }));
    } else if (job.status === "predicting") {
      parts.push(el("progress", { "aria-label": `Predicting ${job.file.name}` }),
        el("div", { class: "job-status", text: "predicting…" }));
    } else if (job.status === "done") {
      parts.push(el("div", { class: "job-status" }, summaryLine(job),
        " ", el("button", { type: "button", class: "link", "aria-label": `Show the result of ${job.file.name}`,
          onclick: () => showResult(job, true) }, "Show")));
    } else if (job.status === "failed") {
      const error = job.error || {};
      parts.push(el("div", { class: "message error", role: "alert" }, errorParts({ message: error.message || "Failed.", hint: error.hint })));
      if (error.retry) {
        parts.push(el("button", { type: "button", class: "button secondary small-button",
          onclick: () => { job.status = "waiting"; renderJob(job); runQueue(); } }, "Retry"));
      }
    }
    item.replaceChildren(...parts);
  }

  function summaryLine(job) {
    const data = job.data;
    const result = data.result;
    if (data.task === "detection") {
      const counts = countBoxes(job, thresholdFor(job.model));
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      return `${total} object${total === 1 ? "" : "s"}`;
    }
    if (data.task === "classification") {
      return `${result.label} (${percent(result.probabilities[result.label] || 0)})`;
    }
    if (data.task === "segmentation") {
      const classes = result.classes || [];
      const shares = classes.slice(1).map((c) => `${c} ${percent(result.fractions[c] || 0)}`);
      return shares.join(", ");
    }
    return "done";
  }

  // -- the viewer: one canvas, zoom and pan ------------------------------------------------------

  const viewer = {
    canvas: null, ctx: null, image: null, layer: null, layerAlpha: 0.5,
    scale: 1, x: 0, y: 0, width: 0, height: 0, boxes: null, drag: null,

    init(canvas) {
      this.canvas = canvas;
      this.ctx = canvas.getContext("2d");
      new ResizeObserver(() => this.resize()).observe(canvas);
      canvas.addEventListener("wheel", (event) => {
        if (!this.image) return;
        event.preventDefault();
        const box = canvas.getBoundingClientRect();
        this.zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
      }, { passive: false });
      canvas.addEventListener("pointerdown", (event) => {
        if (!this.image) return;
        canvas.setPointerCapture(event.pointerId);
        this.drag = { x: event.clientX, y: event.clientY };
        canvas.classList.add("dragging");
      });
      canvas.addEventListener("pointermove", (event) => {
        if (!this.drag) return;
        this.x += event.clientX - this.drag.x;
        this.y += event.clientY - this.drag.y;
        this.drag = { x: event.clientX, y: event.clientY };
        this.draw();
      });
      const stop = () => { this.drag = null; canvas.classList.remove("dragging"); };
      canvas.addEventListener("pointerup", stop);
      canvas.addEventListener("pointercancel", stop);
      canvas.addEventListener("dblclick", () => this.fit());
      canvas.addEventListener("keydown", (event) => {
        const step = 60;
        const keys = {
          "+": () => this.zoomAt(1.25), "=": () => this.zoomAt(1.25), "-": () => this.zoomAt(0.8),
          0: () => this.fit(), 1: () => this.actualSize(),
          ArrowLeft: () => this.pan(step, 0), ArrowRight: () => this.pan(-step, 0),
          ArrowUp: () => this.pan(0, step), ArrowDown: () => this.pan(0, -step),
        };
        if (keys[event.key] && this.image) {
          event.preventDefault();
          keys[event.key]();
        }
      });
    },

    resize() {
      const ratio = window.devicePixelRatio || 1;
      const width = this.canvas.clientWidth;
      const height = this.canvas.clientHeight;
      if (!width || !height) return;
      const first = !this.width;
      const cx = (this.width / 2 - this.x) / this.scale;
      const cy = (this.height / 2 - this.y) / this.scale;
      this.canvas.width = Math.round(width * ratio);
      this.canvas.height = Math.round(height * ratio);
      this.width = width;
      this.height = height;
      if (first || !this.image) this.fit();
      else {
        this.x = width / 2 - cx * this.scale;
        this.y = height / 2 - cy * this.scale;
        this.draw();
      }
    },

    show(image, layer, layerAlpha, boxes) {
      this.image = image;
      this.layer = layer;
      this.layerAlpha = layerAlpha;
      this.boxes = boxes;
      // as tall as the image needs at this width, between 18 rem and 72 % of the window
      const wanted = (this.canvas.clientWidth * image.height) / image.width;
      const tallest = Math.max(288, 0.72 * window.innerHeight);
      this.canvas.style.height = `${Math.round(Math.min(Math.max(wanted, 288), tallest))}px`;
      this.resize();
      this.fit();
    },

    fit() {
      if (!this.image || !this.width) return this.draw();
      const scale = Math.min(this.width / this.image.width, this.height / this.image.height);
      this.scale = scale;
      this.x = (this.width - this.image.width * scale) / 2;
      this.y = (this.height - this.image.height * scale) / 2;
      this.draw();
    },

    actualSize() {
      this.zoomAt(1 / this.scale);
    },

    zoomAt(factor, cx, cy) {
      if (!this.image) return;
      const x = cx === undefined ? this.width / 2 : cx;
      const y = cy === undefined ? this.height / 2 : cy;
      const fitScale = Math.min(this.width / this.image.width, this.height / this.image.height);
      const scale = Math.min(Math.max(this.scale * factor, fitScale / 4), 40);
      this.x = x - ((x - this.x) * scale) / this.scale;
      this.y = y - ((y - this.y) * scale) / this.scale;
      this.scale = scale;
      this.draw();
    },

    pan(dx, dy) {
      this.x += dx;
      this.y += dy;
      this.draw();
    },

    draw() {
      const ctx = this.ctx;
      if (!ctx) return;
      const ratio = window.devicePixelRatio || 1;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
      $("zoom-level").textContent = this.image ? `${Math.round(this.scale * 100)} %` : "";
      if (!this.image) return;
      ctx.setTransform(ratio * this.scale, 0, 0, ratio * this.scale, ratio * this.x, ratio * this.y);
      ctx.imageSmoothingEnabled = this.scale < 3; // zoomed in: the image's own pixels
      ctx.drawImage(this.image, 0, 0);
      if (this.layer && this.layerAlpha > 0) {
        ctx.globalAlpha = this.layerAlpha;
        ctx.drawImage(this.layer, 0, 0, this.image.width, this.image.height);
        if (this.layer.outline) {
          ctx.globalAlpha = Math.min(1, 2 * this.layerAlpha);
          ctx.drawImage(this.layer.outline, 0, 0, this.image.width, this.image.height);
        }
        ctx.globalAlpha = 1;
      }
      const boxes = this.boxes ? this.boxes() : [];
      if (boxes.length) this.drawBoxes(boxes);
      // what is drawn, for people's tools and the browser tests
      this.canvas.dataset.boxes = String(boxes.length);
      this.canvas.dataset.opacity = this.layer ? String(this.layerAlpha) : "";
    },

    drawBoxes(boxes) {
      const ctx = this.ctx;
      const line = 2 / this.scale;
      ctx.lineJoin = "round";
      for (const box of boxes) { // a dark halo first: boxes stay visible on any stain
        ctx.strokeStyle = "rgba(0, 0, 0, 0.55)";
        ctx.lineWidth = line * 2.2;
        ctx.strokeRect(box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1);
      }
      for (const box of boxes) {
        ctx.strokeStyle = rgb(box.colour);
        ctx.lineWidth = line;
        ctx.strokeRect(box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1);
      }
      const fontSize = 12 / this.scale;
      if ((boxes.length < 400 || this.scale > 1.5) && this.scale * 20 > 12) {
        ctx.font = `${fontSize}px system-ui, sans-serif`;
        ctx.textBaseline = "bottom";
        for (const box of boxes) {
          const text = `${box.name} ${box.score.toFixed(2)}`;
          const width = ctx.measureText(text).width + 4 / this.scale;
          ctx.fillStyle = rgb(box.colour);
          ctx.fillRect(box.x1, box.y1 - fontSize * 1.25, width, fontSize * 1.25);
          ctx.fillStyle = textOn(box.colour);
          ctx.fillText(text, box.x1 + 2 / this.scale, box.y1 - fontSize * 0.1);
        }
      }
    },
  };

  /** Black or white, whichever reads better on the colour. */
  function textOn(colour) {
    const [r, g, b] = colour.map((c) => {
      const v = c / 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.18 ? "#000" : "#fff";
  }

  function loadImage(path) {
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => resolve(image);
      image.onerror = () => reject({ message: "An image of the result could not be loaded.",
        hint: "The server keeps results for a short while only: send the image again." });
      image.src = url(path);
    });
  }

  /** The class colours over the image from the result's run-length encodings (COCO,
      column-major), the background transparent; the outline of each object, in its full
      colour, rides on the layer as ``outline`` (drawn more strongly than the fill). */
  function maskLayer(result, colours) {
    const [height, width] = result.shape;
    const classes = new Uint16Array(width * height); // row-major class indices
    result.classes.forEach((name, index) => {
      const rle = index > 0 && result.rle && result.rle[name];
      if (!rle) return; // the background stays as it is
      let position = 0;
      rle.counts.forEach((run, k) => {
        if (k % 2 === 1) {
          for (let p = position; p < position + run; p += 1) {
            const y = p % height;
            classes[y * width + (p - y) / height] = index;
          }
        }
        position += run;
      });
    });
    const paint = (edgesOnly) => {
      const canvas = document.createElement("canvas");
      canvas.width = width;
      canvas.height = height;
      const ctx = canvas.getContext("2d");
      const pixels = ctx.createImageData(width, height);
      const data = pixels.data;
      for (let y = 0; y < height; y += 1) {
        for (let x = 0; x < width; x += 1) {
          const i = y * width + x;
          const c = classes[i];
          if (!c) continue;
          if (edgesOnly) {
            const edge = (x > 0 && classes[i - 1] !== c) || (x < width - 1 && classes[i + 1] !== c) ||
              (y > 0 && classes[i - width] !== c) || (y < height - 1 && classes[i + width] !== c);
            if (!edge) continue;
          }
          const [r, g, b] = colours[c];
          data[4 * i] = r;
          data[4 * i + 1] = g;
          data[4 * i + 2] = b;
          data[4 * i + 3] = 255;
        }
      }
      ctx.putImageData(pixels, 0, 0);
      return canvas;
    };
    const fill = paint(false);
    fill.outline = paint(true);
    return fill;
  }

  // -- one result --------------------------------------------------------------------------------

  /** A threshold as people read it: up to four decimals, no trailing zeros. */
  function formatThreshold(value) {
    return String(Number(Number(value).toFixed(4)));
  }

  /** The lowest score the server sent boxes for: min(threshold, 0.01) by the contract. */
  function floorOf(job) {
    const data = job.data;
    if (typeof data.floor === "number") return data.floor;
    const given = typeof data.threshold === "number" ? data.threshold : job.model.score_threshold;
    return Math.min(0.01, typeof given === "number" ? given : 0.01);
  }

  function thresholdFor(model) {
    if (state.threshold[model.id] !== undefined) return state.threshold[model.id];
    return typeof model.score_threshold === "number" ? model.score_threshold : 0.25;
  }

  function detectionBoxes(job) {
    if (job.boxes) return job.boxes;
    const result = job.data.result;
    const classes = result.classes || job.model.classes || [];
    const colours = coloursOf(job.model, "detection", classes);
    job.boxes = (result.boxes || []).map((b, i) => {
      const index = result.class_indices[i];
      return { x1: b[0], y1: b[1], x2: b[2], y2: b[3], score: result.scores[i], index,
        name: classes[index], colour: colours[index] };
    });
    return job.boxes;
  }

  /** Boxes scoring at least the threshold, per class (every class, zeros included). */
  function countBoxes(job, threshold) {
    const classes = job.data.result.classes || [];
    const counts = Object.fromEntries(classes.map((c) => [c, 0]));
    for (const box of detectionBoxes(job)) if (box.score >= threshold) counts[box.name] += 1;
    return counts;
  }

  async function showResult(job, pinned) {
    if (pinned) state.pinned = true;
    const previous = state.current;
    state.current = job;
    if (previous) renderJob(previous);
    renderJob(job);
    const data = job.data;
    const model = job.model;
    $("result-empty").hidden = true;
    $("result-body").hidden = false;
    $("result-title").replaceChildren(el("strong", { text: data.image && data.image.name ? data.image.name : job.file.name }),
      data.image ? ` · ${data.image.width} × ${data.image.height} px · ` : " · ",
      `${model.name || model.id}`);
    $("summary").replaceChildren(el("p", { class: "small", text: "loading the image…" }));
    let image;
    let layer = null;
    try {
      image = await loadImage(data.urls.image);
      if (data.task === "segmentation") {
        const result = data.result;
        if (result.rle && Array.isArray(result.shape)) {
          layer = maskLayer(result, coloursOf(model, "segmentation", result.classes));
        } else if (data.urls.overlay) {
          layer = await loadImage(data.urls.overlay);
        }
      } else if (data.task === "classification" && data.urls.cam) {
        layer = await loadImage(data.urls.cam).catch(() => null);
      }
    } catch (error) {
      $("summary").replaceChildren(el("div", { class: "message error", role: "alert" }, errorParts(error)));
      return;
    }
    if (state.current !== job) return; // another result was chosen meanwhile
    const task = data.task;
    $("threshold-option").hidden = task !== "detection";
    $("layer-option").hidden = !layer;
    const opacityLabel = { segmentation: "Mask opacity", classification: "Heatmap opacity" };
    $("opacity-label").textContent = opacityLabel[task] || "Overlay opacity";
    const opacity = state.opacity[task] !== undefined ? state.opacity[task] : task === "classification" ? 0.6 : 0.5;
    $("opacity").value = String(opacity);
    $("opacity-value").textContent = percent(opacity, 0);
    if (task === "detection") {
      const floor = floorOf(job);
      for (const input of [$("threshold"), $("threshold-number")]) input.min = String(floor);
      setThresholdInputs(thresholdFor(model));
    }
    $("viewer").dataset.layer = !layer ? "none" : task === "segmentation" ? "mask" : "cam";
    $("result-body").dataset.result = data.id;
    viewer.show(image, layer, opacity, task === "detection" ? () => visibleBoxes(job) : null);
    renderSummary(job);
    renderDownloads(job);
  }

  function visibleBoxes(job) {
    const threshold = thresholdFor(job.model);
    return detectionBoxes(job).filter((b) => b.score >= threshold && !state.hidden.has(b.name));
  }

  function renderSummary(job) {
    const task = job.data.task;
    const result = job.data.result;
    const box = $("summary");
    if (task === "detection") {
      const classes = result.classes || [];
      const colours = coloursOf(job.model, "detection", classes);
      const threshold = thresholdFor(job.model);
      const counts = countBoxes(job, threshold);
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      const rows = classes.map((name, i) => {
        const id = `show-${i}`;
        const check = el("input", { type: "checkbox", id, checked: !state.hidden.has(name),
          onchange: (event) => {
            if (event.target.checked) state.hidden.delete(name);
            else state.hidden.add(name);
            viewer.draw();
          } });
        return el("tr", {}, el("td", {}, check, el("label", { for: id }, swatch(colours[i]), name)),
          el("td", { class: "num", "data-class": name, text: integer(counts[name]) }));
      });
      box.replaceChildren(
        el("table", { class: "counts", id: "counts" },
          el("caption", { text: `Objects scoring at least ${formatThreshold(threshold)} (untick a class to hide its boxes)` }),
          el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "class" }), el("th", { scope: "col", class: "num", text: "count" }))),
          el("tbody", {}, rows),
          el("tfoot", {}, el("tr", {}, el("th", { scope: "row", text: "total" }), el("td", { class: "num", id: "count-total", text: integer(total) })))));
    } else if (task === "classification") {
      const probabilities = Object.entries(result.probabilities || {}).sort((a, b) => b[1] - a[1]);
      const colours = coloursOf(job.model, "classification", Object.keys(result.probabilities || {}));
      const order = Object.keys(result.probabilities || {});
      box.replaceChildren(
        el("p", { class: "verdict" }, "Predicted class: ", el("strong", { text: result.label }),
          ` (${percent(result.probabilities[result.label] || 0)})`),
        el("ul", { class: "bars", "aria-label": "Probability of each class", id: "bars" },
          probabilities.map(([name, p]) => el("li", { class: name === result.label ? "best" : "" },
            el("span", { class: "bar-name" }, swatch(colours[order.indexOf(name)]), name),
            el("span", { class: "bar-track", "aria-hidden": "true" },
              el("span", { class: "bar-fill", style: `width:${(100 * p).toFixed(2)}%` })),
            el("span", { class: "bar-value", text: percent(p) })))),
        job.data.urls.cam ? el("p", { class: "small", text: "The heatmap shows where the classifier looked for its answer (Grad-CAM): red most, blue least." })
          : el("p", { class: "small", text: "No Grad-CAM heatmap for this model or image." }));
    } else if (task === "segmentation") {
      const classes = result.classes || [];
      const colours = coloursOf(job.model, "segmentation", classes);
      const rows = classes.map((name, i) => el("tr", { "data-class": name },
        el("th", { scope: "row" }, swatch(colours[i]), name),
        el("td", { class: "num", text: integer(result.areas[name] || 0) }),
        el("td", { class: "num", text: percent(result.fractions[name] || 0, 2) })));
      box.replaceChildren(el("table", { class: "counts", id: "areas" },
        el("caption", { text: "Area per class" }),
        el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "class" }),
          el("th", { scope: "col", class: "num", text: "pixels" }), el("th", { scope: "col", class: "num", text: "share" }))),
        el("tbody", {}, rows)));
    }
  }

  function renderDownloads(job) {
    const urls = { ...(job.data.urls || {}) };
    const task = job.data.task;
    const name = stem(job.data.image && job.data.image.name ? job.data.image.name : job.file.name);
    const detection = task === "detection";
    const at = detection ? { threshold: String(thresholdFor(job.model)) } : null;
    // detection: the counts per class are the batch table of this one image (counts.csv's
    // columns); result.csv holds one row per box (predictions.csv's columns)
    if (detection && job.data.id) urls.counts = "api/batch.csv";
    if (task === "classification") delete urls.overlay; // the Grad-CAM picture, or the image
    const items = [
      ["counts", "Counts per class (CSV)", `${name}-counts.csv`, { ids: job.data.id, ...at }],
      ["csv", detection ? "Boxes (CSV)" : task === "segmentation" ? "Areas (CSV)" : "Label and probabilities (CSV)",
        `${name}.csv`, at],
      ["json", detection ? "Boxes (COCO JSON)" : "Result (JSON)", `${name}.json`, at],
      ["yolo", "Boxes (YOLO labels)", `${name}.txt`, at],
      ["mask", "Mask (PNG)", `${name}-mask.png`, null],
      ["overlay", detection ? "Boxes drawn (PNG)" : "Overlay (PNG)", `${name}-overlay.png`, at],
      ["cam", "Grad-CAM heatmap (PNG)", `${name}-cam.png`, null],
    ];
    $("downloads").replaceChildren(...items.filter(([key]) => urls[key]).map(([key, label, file, params]) =>
      el("li", {}, el("a", { href: url(urls[key], params), download: file, "data-kind": key, class: "button secondary" }, label))));
  }

  // -- the table of every image with the chosen model ---------------------------------------------

  function renderBatch() {
    const model = state.model;
    const jobs = model ? state.jobs.filter((j) => j.status === "done" && j.model.id === model.id) : [];
    $("batch").hidden = !jobs.length;
    if (!jobs.length) return;
    const first = jobs[0].data.result;
    const head = ["image"];
    let rows;
    if (model.task === "detection") {
      const classes = first.classes || [];
      head.push(...classes, "total");
      rows = jobs.map((job) => {
        const counts = countBoxes(job, thresholdFor(model));
        const values = classes.map((c) => counts[c] || 0);
        return [job.data.image.name, ...values.map(integer), integer(values.reduce((a, b) => a + b, 0))];
      });
    } else if (model.task === "classification") {
      const classes = Object.keys(first.probabilities || {});
      head.push("label", ...classes);
      rows = jobs.map((job) => [job.data.image.name, job.data.result.label,
        ...classes.map((c) => fixed(job.data.result.probabilities[c]))]);
    } else {
      const classes = first.classes || [];
      head.push(...classes.map((c) => `${c} %`));
      rows = jobs.map((job) => [job.data.image.name,
        ...classes.map((c) => (100 * (job.data.result.fractions[c] || 0)).toFixed(2))]);
    }
    $("batch-table").replaceChildren(
      el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { scope: "col", class: i ? "num" : "", text: h })))),
      el("tbody", {}, rows.map((row) => el("tr", {}, row.map((cell, i) => (i ? el("td", { class: "num", text: cell }) : el("th", { scope: "row", text: cell })))))));
    const params = { ids: jobs.map((j) => j.data.id).join(",") };
    if (model.task === "detection") params.threshold = String(thresholdFor(model));
    const link = $("batch-csv");
    link.href = url("api/batch.csv", params);
    link.setAttribute("download", `${stem(model.id)}-batch.csv`);
  }

  // -- wiring ----------------------------------------------------------------------------------------

  function setThresholdInputs(value, except) {
    if (except !== $("threshold")) $("threshold").value = String(value);
    if (except !== $("threshold-number")) $("threshold-number").value = formatThreshold(value);
  }

  function onThreshold(event) {
    const job = state.current;
    const input = event.target;
    let value = Number(input.value);
    if (input.value === "" || !Number.isFinite(value)) return; // typing: wait for a number
    const floor = job ? floorOf(job) : 0;
    value = Math.min(1, Math.max(floor, value));
    setThresholdInputs(value, event.type === "input" ? input : null);
    if (!job) return;
    state.threshold[job.model.id] = value;
    viewer.draw();
    renderSummary(job);
    renderDownloads(job);
    renderBatch();
    for (const other of state.jobs) if (other.status === "done" && other.model.id === job.model.id) renderJob(other);
  }

  function onOpacity() {
    const value = Number($("opacity").value);
    $("opacity-value").textContent = percent(value, 0);
    if (state.current) state.opacity[state.current.data.task] = value;
    viewer.layerAlpha = value;
    viewer.draw();
  }

  function init() {
    viewer.init($("viewer"));
    $("model").addEventListener("change", (event) => selectModel(event.target.value));
    $("files").addEventListener("change", (event) => {
      addFiles(Array.from(event.target.files || []));
      event.target.value = "";
    });
    // files dropped anywhere on the page are sent (the browser would open them instead)
    const drop = $("drop");
    document.addEventListener("dragover", (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
    document.addEventListener("dragleave", (event) => {
      if (!event.relatedTarget) drop.classList.remove("over");
    });
    document.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      const files = Array.from((event.dataTransfer && event.dataTransfer.files) || []);
      if (files.length) addFiles(files);
    });
    $("threshold").addEventListener("input", onThreshold);
    $("threshold-number").addEventListener("input", onThreshold);
    $("threshold-number").addEventListener("change", onThreshold);
    $("opacity").addEventListener("input", onOpacity);
    $("zoom-in").addEventListener("click", () => viewer.zoomAt(1.25));
    $("zoom-out").addEventListener("click", () => viewer.zoomAt(0.8));
    $("zoom-fit").addEventListener("click", () => viewer.fit());
    $("zoom-one").addEventListener("click", () => viewer.actualSize());
    loadModels();
  }

  window.addEventListener("error", (event) => {
    showPageError({ message: "Something went wrong in the page.", hint: `${event.message || ""} Reload the page to start again.` });
  });
  window.addEventListener("unhandledrejection", (event) => {
    const reason = event.reason || {};
    showPageError({ message: reason.message || "Something went wrong in the page.", hint: reason.hint || "Reload the page to start again." });
  });
  document.addEventListener("DOMContentLoaded", init);
})();
