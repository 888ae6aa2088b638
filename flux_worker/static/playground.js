// The flux-worker playground: sends one chat message, streams the answer, shows the image.
// Vanilla JS with no build step. The page's CSP allows only this file, so nothing here uses
// inline code or styles, and everything user- or server-supplied goes into the DOM as text.
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const config = JSON.parse($("flux-config").textContent);
  const KEY_STORE = "flux-worker.api-key";
  const GALLERY_STORE = "flux-worker.gallery";
  const GALLERY_MAX = 12;
  // Expired entries stay (marked) for a day so people see what happened, then they go.
  const EXPIRED_KEEP_MS = 24 * 3600 * 1000;
  const NEVER = Number.MAX_SAFE_INTEGER;   // the "expires" of an image kept for ever
  // A ratio, a WxH size or --ar already in the prompt wins over the picker (the server
  // reads only the last ratio, so appending another would turn the first into prompt text).
  const HAS_SIZE = /(?:^|\s)(?:\d+\s*:\s*\d+|\d+\s*[x×]\s*\d+)\s*$|--ar\s/i;

  const form = $("pg-form");
  const keyInput = $("api-key"); // absent when the server needs no key
  const promptInput = $("prompt");
  const button = $("generate");
  const errorBox = $("error");
  const progress = $("progress");
  const result = $("result");
  const img = $("result-img");

  // localStorage throws in some private modes; the playground must work without it.
  function load(name, fallback) {
    try { return JSON.parse(localStorage.getItem(name)) ?? fallback; } catch (_) { return fallback; }
  }
  function save(name, value) {
    try { localStorage.setItem(name, JSON.stringify(value)); } catch (_) { /* not kept */ }
  }

  if (keyInput) {
    keyInput.value = load(KEY_STORE, "");
    keyInput.addEventListener("input", () => save(KEY_STORE, keyInput.value.trim()));
  }

  function buildPrompt() {
    let text = promptInput.value.trim();
    const seed = $("seed").value.trim();
    const steps = $("steps").value.trim();
    const ratio = form.querySelector("input[name=ratio]:checked");
    const hasSize = HAS_SIZE.test(text);
    if (seed) text += ` --seed ${seed}`;
    if (steps) text += ` --steps ${steps}`;
    if (ratio && !hasSize) text += ` ${ratio.value}`;
    return text;
  }

  // The service's messages quote values in markdown backticks (`a cute cat 16:9`): show those
  // as code. Every piece goes in as text, so nothing in a message can become markup.
  function setInlineText(element, text) {
    const parts = String(text).split(/`([^`\n]+)`/);
    element.replaceChildren(...parts.map((part, i) => {
      if (i % 2 === 0) return document.createTextNode(part);
      const code = document.createElement("code");
      code.textContent = part;
      return code;
    }));
  }

  function showError(message) {
    setInlineText(errorBox, message);
    errorBox.hidden = false;
  }

  function addProgress(line) {
    const item = document.createElement("li");
    setInlineText(item, line);
    progress.append(item);
  }

  // On a phone the result lies below the form: bring it into view once it is there.
  function bringIntoView(element) {
    const box = element.getBoundingClientRect();
    if (box.top >= 0 && box.bottom <= window.innerHeight) return;
    const still = matchMedia("(prefers-reduced-motion: reduce)").matches;
    element.scrollIntoView({ behavior: still ? "auto" : "smooth",
                             block: box.height > window.innerHeight ? "start" : "nearest" });
  }

  // ---- steps: the chosen model's range (from the page's JSON block, as /v1/models states it) ----

  const modelSelect = $("model");
  const stepsInput = $("steps");
  const stepsHint = $("steps-hint");

  function modelName() {
    const option = modelSelect.selectedOptions[0];
    return option ? option.textContent.split(" · ")[0].trim() : modelSelect.value;
  }

  // Follow the model's range; bring a value outside it in and say so (the server clamps too).
  function fitSteps() {
    const range = (config.steps || {})[modelSelect.value] || null;
    if (!range) {
      stepsInput.value = "";
      stepsInput.disabled = true;
      stepsInput.placeholder = "fixed";
      stepsHint.textContent = `${modelName()} always uses its own fixed number of steps.`;
      return;
    }
    stepsInput.disabled = false;
    stepsInput.min = String(range.min);
    stepsInput.max = String(range.max);
    stepsInput.placeholder = "default";
    const raw = stepsInput.value.trim();
    const value = Number(raw);
    const fitted = Math.min(range.max, Math.max(range.min, Math.round(value)));
    if (raw && Number.isFinite(value) && fitted !== value) {
      stepsInput.value = String(fitted);
      stepsHint.textContent =
        `Steps set to ${fitted}: ${modelName()} takes ${range.min}–${range.max}.`;
      return;
    }
    stepsHint.textContent = `${modelName()} takes ${range.min}–${range.max}.`;
  }

  // Turn an HTTP error into words: the service's JSON error.message, labelled by its kind.
  async function httpError(response) {
    let message = "";
    let code = "";
    try {
      const body = await response.json();
      message = (body.error && body.error.message) || "";
      code = (body.error && body.error.code) || "";
    } catch (_) { /* not JSON, e.g. a proxy's HTML page */ }
    message = message || `${response.status} ${response.statusText}`.trim();
    const label = response.status === 401 ? "The API key was not accepted"
      : code === "content_policy_violation" ? "Refused by the content policy"
      : code === "insufficient_quota" ? "The daily quota is used up"
      : response.status === 429 || code === "rate_limit_exceeded" ? "Rate limited"
      : `The service answered ${response.status}`;
    const retry = response.headers.get("Retry-After");
    return `${label}: ${message}${retry ? ` (try again in ${retry} s)` : ""}`;
  }

  // Read an SSE chat stream; call onPiece(text) for every non-empty content delta.
  async function readStream(response, onPiece) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      const lines = buffer.split("\n");
      buffer = done ? "" : lines.pop(); // keep a partial line for the next read
      for (const line of lines) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) onPiece(delta.content);
      }
      if (done) return;
    }
  }

  // Only http(s) links from the answer become src/href (never javascript: or data: URLs).
  function safeUrl(raw) {
    try {
      const url = new URL(raw, location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (_) { return null; }
  }

  async function generate() {
    const key = keyInput ? keyInput.value.trim() : "";
    if (keyInput && !key) { showError("Enter your API key first."); keyInput.focus(); return; }
    if (!promptInput.value.trim()) { showError("Write a prompt first."); promptInput.focus(); return; }
    const prompt = buildPrompt();
    const model = modelSelect.value;
    errorBox.hidden = true;
    progress.replaceChildren();
    result.hidden = true;
    $("placeholder").hidden = true;
    button.disabled = true;
    button.textContent = "Generating…";
    $("output").setAttribute("aria-busy", "true");
    const started = performance.now();
    try {
      await run(prompt, model, key);
    } catch (err) {
      // fetch() rejects only when no answer arrived at all (offline, DNS, dropped connection).
      showError(err instanceof TypeError
        ? `Network error: the service could not be reached or the connection dropped (${err.message}).`
        : err.message);
    } finally {
      button.disabled = false;
      button.textContent = "Generate";
      $("output").removeAttribute("aria-busy");
      $("placeholder").hidden = !result.hidden || progress.childElementCount > 0;
      $("elapsed").textContent = `${((performance.now() - started) / 1000).toFixed(1)} s`;
    }
  }

  async function run(prompt, model, key) {
    const headers = { "Content-Type": "application/json", Accept: "text/event-stream" };
    if (key) headers.Authorization = `Bearer ${key}`;
    // With an image to edit, the message carries it as an image_url part: the service edits it.
    const content = attachment
      ? [{ type: "text", text: prompt }, { type: "image_url", image_url: { url: attachment.url } }]
      : prompt;
    const response = await fetch(config.chat_url, {
      method: "POST", headers,
      body: JSON.stringify({ model, stream: true, messages: [{ role: "user", content }] }),
    });
    if (!response.ok) throw new Error(await httpError(response));

    // Pieces may hold several lines or end mid-line; show each whole line once.
    let answer = "";
    let pending = "";
    let last = "";
    const show = (line) => {
      const text = line.trim();
      if (text && !text.startsWith("![") && !text.startsWith("❌")) addProgress(text);
    };
    await readStream(response, (piece) => {
      answer += piece;
      last = piece;
      const lines = (pending + piece).split("\n");
      pending = lines.pop();
      lines.forEach(show);
    });
    show(pending);

    // A failure after the stream began is its last content chunk, starting with ❌.
    if (last.trim().startsWith("❌")) throw new Error(last.trim());
    const links = [...answer.matchAll(/!\[[^\]]*\]\(([^)\s]+)\)/g)];
    const url = links.length ? safeUrl(links[links.length - 1][1]) : null;
    if (!url) throw new Error("The answer ended without an image link; see the progress above.");

    const stated = answer.match(/📐[^\n]*?(\d+)\s*[x×]\s*(\d+)/);
    // IMAGE_EXPIRATION=0 keeps images for ever: a date no countdown reaches (JSON-safe).
    const expires = config.image_expiration ? Date.now() + config.image_expiration * 1000
      : NEVER;
    const loaded = new Promise((resolve) => {
      img.onload = () => resolve(true);
      img.onerror = () => resolve(false);
    });
    img.alt = promptInput.value.trim();
    img.src = url;
    $("result-open").href = url;
    $("result-download").href = url;
    $("result-expiry").dataset.expires = String(expires);
    $("result-size").textContent = stated ? `${stated[1]}×${stated[2]}` : "";
    result.hidden = false;
    tick();
    const ok = await loaded;
    const size = ok ? `${img.naturalWidth}×${img.naturalHeight}` : $("result-size").textContent;
    $("result-size").textContent = size;
    if (ok) bringIntoView(result);
    remember({ prompt: promptInput.value.trim(), model, size, url, expires });
    if (!ok) {
      throw new Error(`The image was made but this browser could not load ${url}. ` +
        "If the service is behind a proxy, check PUBLIC_BASE_URL.");
    }
  }

  // ---- gallery: the key's images kept by the server, else this browser's; newest first ----

  // The server's history for the key in the key field (GET /v1/images/history), or null while
  // the server keeps none for it (no key, IMAGE_HISTORY=off, an open server: 404
  // history_unavailable) or cannot be asked: then the gallery is this browser's own.
  let serverEntries = null;

  function currentKey() {
    return keyInput ? keyInput.value.trim() : "";
  }

  async function loadHistory() {
    const key = currentKey();
    let found = null;
    if (key) {
      try {
        const response = await fetch(`${config.history_url}?limit=${GALLERY_MAX}`,
          { headers: { Authorization: `Bearer ${key}` } });
        if (response.ok) found = ((await response.json()).data || []).map(fromServer);
      } catch (_) { /* unreachable: this browser's gallery */ }
    }
    if (key === currentKey()) {  // the field may have changed while the answer came
      serverEntries = found;
      renderGallery();
    }
  }

  function fromServer(item) {
    return {
      id: item.id, prompt: item.prompt, model: item.model, url: item.url,
      size: String(item.size).replace("x", "×"),
      expires: item.expires_at ? item.expires_at * 1000 : NEVER,
    };
  }

  async function forget(entry) {
    const response = await fetch(`${config.history_url}/${encodeURIComponent(entry.id)}`,
      { method: "DELETE", headers: { Authorization: `Bearer ${currentKey()}` } });
    if (!response.ok && response.status !== 404) {
      showError(await httpError(response));
      return;
    }
    await loadHistory();
  }

  function entries() {
    const now = Date.now();
    const list = serverEntries ?? load(GALLERY_STORE, []);
    return (Array.isArray(list) ? list : [])
      .filter((e) => e && safeUrl(e.url) && e.expires > now - EXPIRED_KEEP_MS);
  }

  function remember(entry) {
    const local = load(GALLERY_STORE, []);
    save(GALLERY_STORE, [entry, ...(Array.isArray(local) ? local : [])].slice(0, GALLERY_MAX));
    if (serverEntries === null) renderGallery();
    else loadHistory();
  }

  function renderGallery() {
    const list = entries();
    const gallery = $("gallery");
    gallery.replaceChildren(...list.map(card));
    const kept = serverEntries !== null;
    $("gallery-title").textContent = kept ? "Your recent images" : "Recent in this browser";
    $("gallery-empty").hidden = list.length > 0;
    // Clearing empties this browser's list; the server's entries are deleted one by one.
    $("gallery-clear").hidden = kept || list.length === 0;
    tick();
  }

  function card(entry) {
    const item = document.createElement("li");
    item.className = "shot";
    const link = document.createElement("a");
    link.href = safeUrl(entry.url);
    link.target = "_blank";
    link.rel = "noopener";
    link.className = "thumb";
    // Expired images answer 404: do not request them, show a marker instead.
    if (entry.expires > Date.now()) {
      const thumb = document.createElement("img");
      thumb.src = link.href;
      thumb.alt = entry.prompt;
      thumb.loading = "lazy";
      link.append(thumb);
    } else {
      link.textContent = "expired";
      link.removeAttribute("href");
    }
    const text = document.createElement("p");
    text.className = "shot-prompt";
    text.textContent = entry.prompt;
    let edit = null;
    if (entry.expires > Date.now()) {
      // Edit this image (the service reads its own link from storage).
      edit = document.createElement("button");
      edit.type = "button";
      edit.className = "ghost small shot-edit";
      edit.textContent = "Edit";
      edit.addEventListener("click", () => {
        attach({ url: safeUrl(entry.url), label: `recent: ${entry.prompt}` });
        promptInput.focus();
      });
    }
    const meta = document.createElement("p");
    meta.className = "shot-meta";
    meta.textContent = `${String(entry.model).replace(/^@cf\/[^/]+\//, "")} · ${entry.size} · `;
    const expiry = document.createElement("span");
    expiry.className = "expiry";
    expiry.dataset.expires = String(entry.expires);
    meta.append(expiry);
    item.append(link, text, meta);
    if (edit) item.append(edit);
    if (entry.id) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "ghost small shot-delete";
      remove.textContent = "Delete";
      remove.addEventListener("click", () => forget(entry));
      item.append(remove);
    }
    return item;
  }

  // Count down every expiry on the page; mark cards whose image has gone.
  function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll("[data-expires]")) {
      const left = Math.round((Number(el.dataset.expires) - now) / 1000);
      const shot = el.closest(".shot, .result");
      if (shot) shot.classList.toggle("expired", left <= 0);
      if (left <= 0) { el.textContent = "expired"; continue; }
      if (Number(el.dataset.expires) >= NEVER) { el.textContent = "kept for ever"; continue; }
      const h = Math.floor(left / 3600);
      const m = Math.floor((left % 3600) / 60);
      const s = String(left % 60).padStart(2, "0");
      el.textContent = h ? `expires in ${h} h ${m} min` : `expires in ${m}:${s}`;
    }
  }

  // ---- image input: the image to edit ----

  // Photos are scaled down in the browser first: the chat request is a JSON body under the
  // server's MAX_BODY_BYTES, and the models work on about a megapixel anyway.
  const ATTACH_MAX_SIDE = 1536;
  let attachment = null; // { url: data: URL or this service's link, label }

  function attach(next) {
    attachment = next && next.url ? next : null;
    // An edit keeps the input's proportions unless a ratio is picked afterwards, so no chip
    // stays checked; removing the image brings back the first one (1:1).
    const chips = form.querySelectorAll("input[name=ratio]");
    if (attachment) chips.forEach((chip) => { chip.checked = false; });
    else if (chips.length && !form.querySelector("input[name=ratio]:checked")) chips[0].checked = true;
    $("edit-preview").hidden = !attachment;
    if (attachment) {
      $("edit-img").src = attachment.url;
      $("edit-label").textContent = attachment.label;
    } else {
      $("edit-img").removeAttribute("src");
      $("edit-file").value = "";
    }
  }

  function shrink(file) {
    return new Promise((resolve, reject) => {
      const url = URL.createObjectURL(file);
      const picture = new Image();
      picture.onload = () => {
        const scale = Math.min(1, ATTACH_MAX_SIDE / Math.max(picture.width, picture.height));
        const canvas = document.createElement("canvas");
        canvas.width = Math.max(1, Math.round(picture.width * scale));
        canvas.height = Math.max(1, Math.round(picture.height * scale));
        canvas.getContext("2d").drawImage(picture, 0, 0, canvas.width, canvas.height);
        URL.revokeObjectURL(url);
        resolve(canvas.toDataURL("image/jpeg", 0.9));
      };
      picture.onerror = () => {
        URL.revokeObjectURL(url);
        reject(new Error(`${file.name} is not an image this browser can read.`));
      };
      picture.src = url;
    });
  }

  async function attachFile(file) {
    if (!file) return;
    errorBox.hidden = true;
    try {
      attach({ url: await shrink(file), label: file.name });
    } catch (err) {
      attach(null);
      showError(err.message);
    }
  }

  $("edit-file").addEventListener("change", (event) => attachFile(event.target.files[0]));
  $("edit-clear").addEventListener("click", () => attach(null));
  const drop = $("edit-drop");
  for (const name of ["dragenter", "dragover"]) {
    form.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("dragging");
    });
  }
  form.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  form.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) attachFile(file);
  });

  // ---- wiring ----

  form.addEventListener("submit", (event) => {
    event.preventDefault(); // the CSP has form-action 'none': the page never navigates
    if (!button.disabled) generate();
  });
  // Chat-like keys: Enter sends from the prompt, Ctrl/Cmd+Enter sends from any field.
  form.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.isComposing) return;
    const inPrompt = event.target === promptInput;
    if (event.ctrlKey || event.metaKey || (inPrompt && !event.shiftKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  modelSelect.addEventListener("change", fitSteps);
  stepsInput.addEventListener("change", fitSteps);
  $("gallery-clear").addEventListener("click", () => {
    save(GALLERY_STORE, []);
    renderGallery();
  });
  for (const copy of document.querySelectorAll("[data-copy]")) {
    copy.addEventListener("click", async () => {
      const text = $(copy.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
        copy.textContent = "Copied";
      } catch (_) {
        // No clipboard outside secure contexts: select the text so Ctrl+C works.
        getSelection().selectAllChildren($(copy.dataset.copy));
        copy.textContent = "Press Ctrl+C";
      }
      setTimeout(() => { copy.textContent = "Copy"; }, 2000);
    });
  }
  if (keyInput) keyInput.addEventListener("change", loadHistory);
  fitSteps();
  renderGallery();
  loadHistory();
  setInterval(tick, 1000);
})();
