/*
 * umt serve: the page. Plain ES2020, no dependencies, no build step.
 *
 * It talks to the server's JSON API only: GET /v1/model on load, POST /v1/tag (multipart:
 * text, optional file "image", explain=true|false), GET /v1/predictions?filter&type&offset&limit
 * and GET /v1/images/<index> (fetched with the token, shown as an object URL). Any /v1 call that
 * answers 401 shows the access-token form; the token is kept in sessionStorage ("umt.token")
 * and sent as "Authorization: Bearer <token>" on every /v1 call.
 *
 * Stable hooks (for tests and scripts; do not rename without updating tests/test_serve_browser.py):
 *
 *   header   #model-info[data-state=loading|ready|error]  #model-name #model-kind #model-dataset
 *            #model-f1 ("82.00 %" or "–") #model-images ("reads images" | "text only")
 *            #auth-form (shown on a 401)  #token-input  #token-save
 *   tabs     #tab-tag #tab-browse (role=tab, aria-selected; arrow keys / Home / End move between
 *            them)  panels #view-tag #view-browse (role=tabpanel, hidden when not selected)
 *
 *   tag view #tag-form  #post-text (textarea; Ctrl/Cmd+Enter submits)  #post-image (file input)
 *            #image-clear  #image-preview-box > #image-preview  #image-note  #explain (checkbox)
 *            #tag-button  #tag-error (role=alert, the server's {"error"} message)
 *            #tag-result[data-state=idle|busy|done|error]
 *            #legend > .legend-item[data-type]
 *            #tagged-text > mark.entity[data-type][data-start][data-end][data-entity=<i>]
 *                [data-score][aria-pressed] > .entity-words, .entity-label > .entity-type, .entity-score
 *            #entity-table tbody > tr[data-entity=<i>][data-type][data-selected] (cells: #, type, words, score,
 *                chars, tokens)  #no-entities (shown when there are none)
 *            #attention-panel (shown for an image-reading model and a post with an image)
 *            #attention-canvas[data-drawn=none|image|overlay][data-entity=<i> of the overlay]
 *            #attention-caption (> #attention-peak: the brightest cell's share)  #attention-scale
 *
 *   browse   #filter (all|errors)  #type-filter ("" or a type)  #prev-page #next-page
 *            #page-info ("k–m of N")  #browse-error  #browse-unavailable (shown on a 404)
 *            #post-list[data-state=idle|loading|done|error|unavailable][data-total]
 *            #post-list > article.post[data-index][data-correct=true|false]
 *              .post-row[data-row=gold|pred] > .row-text > mark.entity[data-type][data-start]
 *                  [data-end][data-status=correct|wrong (pred) | found|missed (gold)]
 *              img.thumb[data-thumb=<index>][data-loaded=false|true] (when image_url is set; replaced
 *                  by div.thumb.missing[data-loaded=error] when the server has no such image)
 */
"use strict";

(() => {
  const TOKEN_KEY = "umt.token";
  const PAGE_SIZE = 20;
  const KNOWN_TYPES = ["PER", "LOC", "ORG", "MISC"];
  const OVERLAY_ALPHA = 0.55;
  const CANVAS_MAX_W = 420;
  const CANVAS_MAX_H = 340;
  // An "inferno"/"magma"-like perceptual ramp: near-black violet -> red -> orange -> yellow.
  const RAMP = [
    [0.0, [0, 0, 4]],
    [0.14, [31, 12, 72]],
    [0.29, [85, 15, 109]],
    [0.43, [136, 34, 106]],
    [0.57, [186, 54, 85]],
    [0.71, [227, 89, 51]],
    [0.86, [249, 140, 10]],
    [1.0, [252, 255, 164]],
  ];

  const $ = (id) => document.getElementById(id);

  const state = {
    model: null,
    record: null, // the last /v1/tag answer
    imageFile: null,
    imageUrl: null, // object URL of the attached file
    taggedImageUrl: null, // object URL of the image sent with the shown record
    imageElement: null, // decoded <img> of taggedImageUrl
    selected: -1, // entity index pinned by a click
    shown: -1, // entity index on the canvas (hover may differ from selected)
    browse: { filter: "all", type: "", offset: 0, total: 0, loaded: false, typesFilled: false },
    thumbUrls: [],
  };

  // ------------------------------------------------------------------ API ----

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function authHeaders() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
    } catch (e) {
      throw new ApiError(0, `the server could not be reached (${e.message})`);
    }
    if (response.status === 401) {
      askForToken(sessionStorage.getItem(TOKEN_KEY) ? "That token was refused: enter the right one." : null);
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`.trim();
      try {
        const body = await response.json();
        if (body && typeof body.error === "string") message = body.error;
      } catch (_) {
        /* not JSON: keep the status line */
      }
      throw new ApiError(response.status, message);
    }
    return response;
  }

  const apiJson = async (path, options) => (await api(path, options)).json();

  function askForToken(message) {
    const form = $("auth-form");
    form.hidden = false;
    const input = $("token-input");
    input.setAttribute("aria-invalid", message ? "true" : "false");
    if (message) input.title = message;
    if (document.activeElement !== input) input.focus();
  }

  function onTokenSubmit(event) {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("auth-form").hidden = true;
    $("token-input").value = "";
    hideError("tag-error");
    loadModel();
    if (state.browse.loaded || currentView() === "browse") loadPredictions();
  }

  // ---------------------------------------------------------------- helpers ----

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role" || key === "tabindex" ||
               key === "title" || key === "scope" || key === "alt") node.setAttribute(key, String(value));
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function typeClass(type) {
    return KNOWN_TYPES.includes(type) ? type : "OTHER";
  }

  function showError(id, message) {
    const box = $(id);
    box.textContent = message;
    box.hidden = false;
  }

  function hideError(id) {
    const box = $(id);
    box.hidden = true;
    box.textContent = "";
  }

  const fmtScore = (score) => (typeof score === "number" && isFinite(score) ? score.toFixed(2) : "");

  /** Text with the spans marked: spans [{start, end, ...}] sorted, overlaps skipped. */
  function markedText(text, spans, makeMark) {
    const frag = document.createDocumentFragment();
    const order = spans.map((span, i) => ({ span, i })).sort((a, b) => a.span.start - b.span.start || a.span.end - b.span.end);
    let cursor = 0;
    for (const { span, i } of order) {
      const start = Math.max(0, Math.min(text.length, span.start));
      const end = Math.max(start, Math.min(text.length, span.end));
      if (start < cursor || end === start) continue;
      if (start > cursor) frag.append(text.slice(cursor, start));
      frag.append(makeMark(span, i, text.slice(start, end)));
      cursor = end;
    }
    if (cursor < text.length) frag.append(text.slice(cursor));
    return frag;
  }

  function entityMark(span, words, extra = {}) {
    const type = span.entity_group;
    const label = el("span", { class: "entity-label" }, el("span", { class: "entity-type", text: type }));
    if (extra.score !== undefined && extra.score !== "") label.append(el("span", { class: "entity-score", text: extra.score }));
    return el(
      "mark",
      {
        class: `entity t-${typeClass(type)}`,
        "data-type": type,
        "data-start": span.start,
        "data-end": span.end,
        ...extra.attrs,
      },
      el("span", { class: "entity-words", text: words }),
      label,
    );
  }

  function renderLegend(types) {
    const legend = $("legend");
    legend.replaceChildren(
      ...types.map((type) =>
        el("span", { class: `legend-item t-${typeClass(type)}`, "data-type": type },
          el("span", { class: "swatch", "aria-hidden": "true" }), type),
      ),
    );
  }

  // ------------------------------------------------------------------ model ----

  async function loadModel() {
    const info = $("model-info");
    info.dataset.state = "loading";
    try {
      const model = await apiJson("/v1/model");
      state.model = model;
      $("model-name").textContent = model.name || "–";
      $("model-name").title = model.name || "";
      $("model-kind").textContent = model.model || "–";
      $("model-dataset").textContent = model.dataset || "–";
      const test = model.scores && model.scores.test;
      $("model-f1").textContent = test && typeof test.f1 === "number" ? `${(test.f1 * 100).toFixed(2)} %` : "–";
      const dev = model.scores && model.scores.dev;
      $("model-f1").title = dev && typeof dev.f1 === "number" ? `dev F1 ${(dev.f1 * 100).toFixed(2)} %` : "";
      $("model-images").textContent = model.reads_images ? "reads images" : "text only";
      $("model-images").dataset.readsImages = String(!!model.reads_images);
      const explain = $("explain");
      explain.checked = !!model.reads_images;
      explain.disabled = !model.reads_images;
      const note = $("image-note");
      note.hidden = !!model.reads_images;
      note.textContent = model.reads_images ? "" : "This model is text-only: it does not read images.";
      renderLegend(model.types && model.types.length ? model.types : KNOWN_TYPES);
      info.dataset.state = "ready";
      document.title = `umt · ${model.name || "multimodal NER"}`;
    } catch (e) {
      info.dataset.state = "error";
      $("model-name").textContent = e.status === 401 ? "token needed" : "unavailable";
      if (e.status !== 401) showError("tag-error", `Could not read the model: ${e.message}`);
    }
  }

  // ------------------------------------------------------------------- tabs ----

  function currentView() {
    return $("tab-browse").getAttribute("aria-selected") === "true" ? "browse" : "tag";
  }

  function selectTab(view, focus = false) {
    for (const tab of document.querySelectorAll('[role="tab"]')) {
      const on = tab.dataset.view === view;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
      $(tab.getAttribute("aria-controls")).hidden = !on;
      if (on && focus) tab.focus();
    }
    if (history.replaceState) history.replaceState(null, "", `#${view}`);
    if (view === "browse" && !state.browse.loaded) loadPredictions();
  }

  function onTabKey(event) {
    const tabs = [...document.querySelectorAll('[role="tab"]')];
    const at = tabs.indexOf(event.currentTarget);
    let next = null;
    if (event.key === "ArrowRight") next = tabs[(at + 1) % tabs.length];
    else if (event.key === "ArrowLeft") next = tabs[(at - 1 + tabs.length) % tabs.length];
    else if (event.key === "Home") next = tabs[0];
    else if (event.key === "End") next = tabs[tabs.length - 1];
    if (next) {
      event.preventDefault();
      selectTab(next.dataset.view, true);
    }
  }

  // --------------------------------------------------------------- tag view ----

  function onImageChange() {
    const file = $("post-image").files[0] || null;
    if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
    state.imageFile = file;
    state.imageUrl = file ? URL.createObjectURL(file) : null;
    $("image-preview").src = state.imageUrl || "";
    $("image-preview-box").hidden = !file;
    $("image-clear").hidden = !file;
  }

  function clearImage() {
    $("post-image").value = "";
    onImageChange();
  }

  async function onTag(event) {
    if (event) event.preventDefault();
    const text = $("post-text").value;
    hideError("tag-error");
    if (!text.trim()) {
      showError("tag-error", "Type a post to tag.");
      $("post-text").focus();
      return;
    }
    const form = new FormData();
    form.append("text", text);
    const file = state.imageFile;
    if (file) form.append("image", file, file.name);
    const explain = $("explain").checked && !$("explain").disabled;
    form.append("explain", explain ? "true" : "false");

    const result = $("tag-result");
    const button = $("tag-button");
    button.disabled = true;
    button.textContent = "Tagging…";
    result.dataset.state = "busy";
    try {
      let record = await apiJson("/v1/tag", { method: "POST", body: form });
      if (Array.isArray(record)) record = record[0];
      else if (record && Array.isArray(record.posts)) record = record.posts[0];
      await showRecord(record, file);
      result.dataset.state = "done";
    } catch (e) {
      result.dataset.state = "error";
      showError("tag-error", e.status === 401 ? "This server wants an access token: enter it above." : e.message);
    } finally {
      button.disabled = false;
      button.textContent = "Tag";
    }
  }

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("the image could not be decoded by the browser"));
      img.src = url;
    });
  }

  async function showRecord(record, file) {
    state.record = record;
    const entities = Array.isArray(record.entities) ? record.entities : [];
    state.selected = entities.length ? 0 : -1;
    const modelTypes = (state.model && state.model.types) || KNOWN_TYPES;
    renderLegend([...modelTypes, ...entities.map((e) => e.entity_group).filter((t) => !modelTypes.includes(t))]
      .filter((t, k, all) => all.indexOf(t) === k));
    state.shown = -1;

    $("tagged-text").replaceChildren(
      markedText(record.text || "", entities, (entity, i, words) =>
        entityMark(entity, words, {
          score: fmtScore(entity.score),
          attrs: {
            "data-entity": i,
            "data-score": entity.score,
            role: "button",
            tabindex: 0,
            "aria-pressed": String(i === state.selected),
            title: `${entity.entity_group} · ${entity.word ?? words} · score ${fmtScore(entity.score)}`,
          },
        }),
      ),
    );
    const body = $("entity-table").tBodies[0];
    body.replaceChildren(
      ...entities.map((entity, i) =>
        el(
          "tr",
          { "data-entity": i, "data-type": entity.entity_group, tabindex: 0, "data-selected": String(i === state.selected) },
          el("td", { class: "num", text: i + 1 }),
          el("td", {}, el("span", { class: `chip t-${typeClass(entity.entity_group)}`, text: entity.entity_group })),
          el("td", { class: "words", text: entity.word ?? (record.text || "").slice(entity.start, entity.end) }),
          el("td", { class: "num", text: fmtScore(entity.score) }),
          el("td", { class: "num", text: `${entity.start}–${entity.end}` }),
          el("td", { class: "num", text: entity.token_start !== undefined ? `${entity.token_start}–${entity.token_end}` : "" }),
        ),
      ),
    );
    $("entity-table").hidden = !entities.length;
    $("no-entities").hidden = !!entities.length;

    if (state.taggedImageUrl) URL.revokeObjectURL(state.taggedImageUrl);
    state.taggedImageUrl = null;
    state.imageElement = null;
    const panel = $("attention-panel");
    const readsImages = state.model ? !!state.model.reads_images : true;
    if (file && readsImages) {
      state.taggedImageUrl = URL.createObjectURL(file);
      try {
        state.imageElement = await loadImage(state.taggedImageUrl);
      } catch (e) {
        state.imageElement = null;
      }
    }
    panel.hidden = !state.imageElement;
    $("tag-result").hidden = false;
    drawAttention(state.selected);
  }

  function selectEntity(i, pin) {
    if (pin) {
      state.selected = i;
      for (const node of document.querySelectorAll("#tagged-text mark.entity")) {
        node.setAttribute("aria-pressed", String(Number(node.dataset.entity) === i));
      }
      for (const row of $("entity-table").tBodies[0].rows) {
        row.dataset.selected = String(Number(row.dataset.entity) === i);
      }
    }
    drawAttention(i);
  }

  function entityFromEvent(event) {
    const target = event.target.closest("[data-entity]");
    return target ? Number(target.dataset.entity) : null;
  }

  // ---------------------------------------------------------- attention ----

  function rampColour(v) {
    const x = Math.max(0, Math.min(1, v));
    for (let k = 1; k < RAMP.length; k++) {
      const [x1, c1] = RAMP[k];
      if (x <= x1) {
        const [x0, c0] = RAMP[k - 1];
        const t = (x - x0) / (x1 - x0 || 1);
        return c0.map((c, j) => Math.round(c + (c1[j] - c) * t));
      }
    }
    return RAMP[RAMP.length - 1][1];
  }

  /** The attention grid as a small H x W canvas: each cell its weight / max on the ramp. */
  function gridCanvas(grid) {
    const rows = grid.length;
    const cols = Math.max(...grid.map((row) => (Array.isArray(row) ? row.length : 0)));
    if (!rows || !cols) return null;
    let max = 0;
    for (const row of grid) for (const v of row) if (isFinite(v) && v > max) max = v;
    const small = document.createElement("canvas");
    small.width = cols;
    small.height = rows;
    const ctx = small.getContext("2d");
    const pixels = ctx.createImageData(cols, rows);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const raw = Number(grid[r][c]);
        const v = max > 0 && isFinite(raw) ? Math.max(0, raw) / max : 0;
        const [red, green, blue] = rampColour(v);
        const at = (r * cols + c) * 4;
        pixels.data[at] = red;
        pixels.data[at + 1] = green;
        pixels.data[at + 2] = blue;
        // Low weights stay faint and dark ("transparent-dark"), the peak is opaque yellow.
        pixels.data[at + 3] = Math.round(255 * (0.6 + 0.4 * v));
      }
    }
    ctx.putImageData(pixels, 0, 0);
    return small;
  }

  /** The share of the attention in the brightest cell, and the number of cells. */
  function gridStats(grid) {
    let sum = 0;
    let max = 0;
    let cells = 0;
    for (const row of grid) {
      for (const raw of row) {
        const v = Math.max(0, Number(raw));
        if (!isFinite(v)) continue;
        sum += v;
        max = Math.max(max, v);
        cells += 1;
      }
    }
    return sum > 0 && cells ? { peak: max / sum, cells } : null;
  }

  function drawAttention(i) {
    const canvas = $("attention-canvas");
    const caption = $("attention-caption");
    const scale = $("attention-scale");
    const img = state.imageElement;
    if (!img) {
      canvas.dataset.drawn = "none";
      delete canvas.dataset.entity;
      return;
    }
    const ratio = img.naturalWidth / img.naturalHeight || 1;
    let width = CANVAS_MAX_W;
    let height = Math.round(width / ratio);
    if (height > CANVAS_MAX_H) {
      height = CANVAS_MAX_H;
      width = Math.round(height * ratio);
    }
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);

    const entities = (state.record && state.record.entities) || [];
    const entity = i >= 0 ? entities[i] : null;
    const grid = entity && Array.isArray(entity.attention) ? entity.attention : null;
    const small = grid ? gridCanvas(grid) : null;
    state.shown = small ? i : -1;
    if (small) {
      ctx.save();
      ctx.globalAlpha = OVERLAY_ALPHA;
      ctx.imageSmoothingEnabled = true; // bilinear: the 7 x 7 cells blend into a smooth map
      ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
      ctx.restore();
      canvas.dataset.drawn = "overlay";
      canvas.dataset.entity = String(i);
      const words = entity.word ?? (state.record.text || "").slice(entity.start, entity.end);
      caption.replaceChildren(
        "Attention of ",
        el("mark", { class: `chip t-${typeClass(entity.entity_group)}`, text: entity.entity_group }),
        " ",
        el("strong", { text: words }),
        ` over the ${small.height} × ${small.width} image grid`,
      );
      const stats = gridStats(grid);
      if (stats) {
        caption.append(
          el("span", { class: "peak", id: "attention-peak" },
            `Brightest cell: ${(stats.peak * 100).toFixed(1)} % of the attention ` +
            `(uniform would be ${(100 / stats.cells).toFixed(1)} %)` +
            (stats.peak * stats.cells < 1.05 ? " — nearly uniform, so the overlay is flat." : "")),
        );
      }
      scale.hidden = false;
      canvas.setAttribute("aria-label", `The attached image with the attention of ${entity.entity_group} “${words}”`);
    } else {
      canvas.dataset.drawn = "image";
      delete canvas.dataset.entity;
      scale.hidden = true;
      let why = "The attached image.";
      if (!entities.length) why = "The attached image (no entities, so no attention to show).";
      else if (entities.some((e) => Array.isArray(e.attention))) why = "Select an entity to see its attention.";
      else why = "The attached image. Tick “Explain” and tag again to see each entity's attention.";
      caption.textContent = why;
      canvas.setAttribute("aria-label", "The attached image");
    }
  }

  // ------------------------------------------------------------ browse view ----

  function spanKey(span) {
    return `${span.entity_group}|${span.start}|${span.end}`;
  }

  function renderPostRow(kind, post, spans, others) {
    const otherKeys = new Set(others.map(spanKey));
    const text = markedText(post.text, spans, (span, i, words) => {
      const hit = otherKeys.has(spanKey(span));
      const status = kind === "pred" ? (hit ? "correct" : "wrong") : hit ? "found" : "missed";
      const titles = { correct: "correct", wrong: "wrong or spurious prediction", found: "found", missed: "missed by the model" };
      return entityMark(span, words, { attrs: { "data-status": status, title: `${span.entity_group}: ${titles[status]}` } });
    });
    return el(
      "div",
      { class: `post-row row-${kind}`, "data-row": kind },
      el("span", { class: "row-label", text: kind === "gold" ? "gold" : "predicted" }),
      el("div", { class: "row-text entities-text compact" }, text),
    );
  }

  function renderPost(post) {
    const header = el(
      "header",
      { class: "post-head" },
      el("span", { class: "post-index", text: `#${post.index}` }),
      el("span", { class: `badge ${post.correct ? "ok" : "bad"}`, text: post.correct ? "✓ correct" : "✗ errors" }),
    );
    const body = el("div", { class: "post-body" }, renderPostRow("gold", post, post.gold || [], post.pred || []),
      renderPostRow("pred", post, post.pred || [], post.gold || []));
    const article = el("article", { class: "post", "data-index": post.index, "data-correct": String(!!post.correct) },
      el("div", { class: "post-main" }, header, body));
    if (post.image_url) {
      const img = el("img", { class: "thumb", alt: `Image of test post ${post.index}`, "data-thumb": post.index, "data-loaded": "false" });
      article.append(el("div", { class: "thumb-box" }, img));
      loadThumb(img, post.image_url);
    }
    return article;
  }

  async function loadThumb(img, url) {
    const missing = (why) => {
      const box = el("div", { class: "thumb missing", "data-thumb": img.dataset.thumb, "data-loaded": "error", title: why },
        "no image");
      img.replaceWith(box);
    };
    try {
      const blob = await (await api(url)).blob();
      const objectUrl = URL.createObjectURL(blob);
      state.thumbUrls.push(objectUrl);
      img.onload = () => (img.dataset.loaded = "true");
      img.onerror = () => missing("the browser could not decode this image");
      img.src = objectUrl;
    } catch (e) {
      missing(e.message);
    }
  }

  function fillTypes(types) {
    if (state.browse.typesFilled || !Array.isArray(types)) return;
    const select = $("type-filter");
    for (const type of types) select.append(el("option", { value: type, text: type }));
    select.value = state.browse.type;
    state.browse.typesFilled = true;
  }

  async function loadPredictions() {
    const list = $("post-list");
    const b = state.browse;
    b.loaded = true;
    list.dataset.state = "loading";
    list.setAttribute("aria-busy", "true");
    hideError("browse-error");
    const query = new URLSearchParams({ filter: b.filter, type: b.type, offset: String(b.offset), limit: String(PAGE_SIZE) });
    try {
      const page = await apiJson(`/v1/predictions?${query}`);
      fillTypes(page.types);
      for (const url of state.thumbUrls) URL.revokeObjectURL(url);
      state.thumbUrls = [];
      b.total = page.total;
      const posts = page.posts || [];
      const first = posts.length ? page.offset + 1 : 0;
      const last = page.offset + posts.length;
      $("page-info").textContent = page.total ? `${first}–${last} of ${page.total}` : "0 of 0";
      $("prev-page").disabled = page.offset <= 0;
      $("next-page").disabled = last >= page.total;
      list.replaceChildren(...posts.map(renderPost));
      if (!posts.length) {
        list.append(el("p", { class: "card empty", text: b.filter === "errors" ? "No errors: every post matches its gold entities." : "No posts match." }));
      }
      list.dataset.total = String(page.total);
      list.dataset.state = "done";
      $("browse-unavailable").hidden = true;
    } catch (e) {
      if (e.status === 404) {
        list.replaceChildren();
        list.dataset.state = "unavailable";
        $("browse-unavailable").hidden = false;
        $("page-info").textContent = "–";
        $("prev-page").disabled = true;
        $("next-page").disabled = true;
        $("filter").disabled = true;
        $("type-filter").disabled = true;
      } else {
        list.dataset.state = "error";
        showError("browse-error", e.status === 401 ? "This server wants an access token: enter it above." : e.message);
      }
    } finally {
      list.removeAttribute("aria-busy");
    }
  }

  // ------------------------------------------------------------------ wiring ----

  function init() {
    for (const tab of document.querySelectorAll('[role="tab"]')) {
      tab.addEventListener("click", () => selectTab(tab.dataset.view));
      tab.addEventListener("keydown", onTabKey);
    }
    $("auth-form").addEventListener("submit", onTokenSubmit);
    $("tag-form").addEventListener("submit", onTag);
    $("post-text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) onTag(event);
    });
    $("post-image").addEventListener("change", onImageChange);
    $("image-clear").addEventListener("click", clearImage);

    const pick = (event) => {
      const i = entityFromEvent(event);
      if (i !== null) selectEntity(i, true);
    };
    const keyPick = (event) => {
      if (event.key === "Enter" || event.key === " ") {
        const i = entityFromEvent(event);
        if (i !== null) {
          event.preventDefault();
          selectEntity(i, true);
        }
      }
    };
    const hover = (event) => {
      const i = entityFromEvent(event);
      if (i !== null && i !== state.shown) drawAttention(i);
    };
    const unhover = () => {
      if (state.shown !== state.selected) drawAttention(state.selected);
    };
    for (const id of ["tagged-text", "entity-table"]) {
      const node = $(id);
      node.addEventListener("click", pick);
      node.addEventListener("keydown", keyPick);
      node.addEventListener("mouseover", hover);
      node.addEventListener("mouseleave", unhover);
    }

    $("filter").addEventListener("change", (event) => {
      state.browse.filter = event.target.value;
      state.browse.offset = 0;
      loadPredictions();
    });
    $("type-filter").addEventListener("change", (event) => {
      state.browse.type = event.target.value;
      state.browse.offset = 0;
      loadPredictions();
    });
    $("prev-page").addEventListener("click", () => {
      state.browse.offset = Math.max(0, state.browse.offset - PAGE_SIZE);
      loadPredictions();
    });
    $("next-page").addEventListener("click", () => {
      if (state.browse.offset + PAGE_SIZE < state.browse.total) {
        state.browse.offset += PAGE_SIZE;
        loadPredictions();
      }
    });

    loadModel();
    selectTab(location.hash === "#browse" ? "browse" : "tag");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
