// flux-worker admin page. Reads the admin JSON routes (/v1/admin/...) with the session cookie
// and sends the session's CSRF token with every change. Data goes into the page as text only
// (textContent, attributes), never as HTML: prompts and key names are whatever people typed.
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("admin-config").textContent);
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  async function api(path, options = {}) {
    const headers = {"Accept": "application/json"};
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    if (options.method && options.method !== "GET") headers["X-CSRF-Token"] = config.csrf;
    const response = await fetch(config.api + path, {
      method: options.method || "GET", headers, credentials: "same-origin",
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    if (response.status === 401) {
      window.location.assign(config.root + "/admin");  // signed out elsewhere, or expired
      throw new Error("signed out");
    }
    const body = response.status === 204 ? {} : await response.json();
    if (!response.ok) {
      const error = new Error((body.error && body.error.message) || response.statusText);
      error.code = body.error && body.error.code;
      throw error;
    }
    return body;
  }

  // --- formatting --------------------------------------------------------------------------

  function dollars(amount) {
    if (!amount) return "$0";
    if (amount >= 1) return "$" + amount.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
    return "$" + amount.toFixed(amount < 0.01 ? 6 : 4).replace(/0+$/, "").replace(/\.(\d)$/, ".$10");
  }

  function neurons(amount) {
    return (amount || 0).toLocaleString("en-US", {maximumFractionDigits: 1}) + " neurons";
  }

  function amount(value) {
    return value.neurons ? dollars(value.usd) + " · " + neurons(value.neurons) : dollars(value.usd);
  }

  function budget(value, unit) {
    if (value === null || value === undefined) return "";
    return unit === "usd" ? dollars(value) : neurons(value);
  }

  function when(seconds) {
    if (!seconds) return "never";
    return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC";
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function fill(tableId, rows, columns, empty) {
    const body = $(tableId).querySelector("tbody");
    body.replaceChildren();
    if (!rows.length) {
      const tr = body.insertRow();
      const td = cell(tr, empty, "empty");
      td.colSpan = $(tableId).querySelectorAll("th").length;
      return;
    }
    for (const item of rows) {
      const tr = body.insertRow();
      for (const column of columns) {
        const value = column(item, tr);
        if (value !== undefined) cell(tr, value);
      }
    }
  }

  // --- the overview: spend, budgets, providers and accounts ---------------------------------

  function drawChart(days) {
    const svg = $("chart");
    svg.replaceChildren();
    const most = Math.max(...days.map((d) => d.usd), 0);
    const width = 300 / days.length;
    days.forEach((day, i) => {
      const height = most ? Math.max(day.usd ? 1 : 0, (day.usd / most) * 78) : 0;
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("x", String(i * width + 0.5));
      bar.setAttribute("y", String(80 - height));
      bar.setAttribute("width", String(Math.max(1, width - 1)));
      bar.setAttribute("height", String(height));
      if (i === days.length - 1) bar.setAttribute("class", "today");
      const title = document.createElementNS(SVG, "title");
      title.textContent = day.day + ": " + amount(day);
      bar.appendChild(title);
      svg.appendChild(bar);
    });
    $("chart-caption").textContent = "Dollars per day, " + days[0].day + " to " +
      days[days.length - 1].day + " (most: " + dollars(most) + ")";
  }

  function keyLabel(item) {
    return item.name ? item.name + " (" + (item.owner || item.key) + ")" : (item.owner || item.key);
  }

  function budgetRow(who) {
    return [
      () => who,
      (line) => amount({usd: line.spent_usd, neurons: line.spent_neurons}),
      (line) => [budget(line.budget_usd, "usd"), budget(line.budget_neurons, "neurons")].filter(Boolean).join(" · ") || "none",
      (line) => [budget(line.left_usd, "usd"), budget(line.left_neurons, "neurons")].filter(Boolean).join(" · ") || "",
    ];
  }

  async function loadOverview() {
    const data = await api("/overview");
    const spend = data.spend;
    $("total-today").textContent = amount(spend.days[spend.days.length - 1]);
    $("total-30").textContent = amount(spend.total.last_30_days);
    drawChart(spend.days);
    fill("spend-keys", spend.keys, [keyLabel, (k) => amount(k.today), (k) => amount(k.last_30_days)],
      "No key spent anything in 30 days.");
    fill("spend-models", spend.models, [(m) => m.model, (m) => m.provider, (m) => amount(m.today),
      (m) => amount(m.last_30_days)], "No model drew in 30 days.");
    fill("spend-providers", spend.providers, [(p) => p.provider, (p) => amount(p.today),
      (p) => amount(p.last_30_days)], "Nothing spent in 30 days.");
    $("resets").textContent = "Budgets count per UTC day and reset at " + data.resets_at + ".";
    const service = budgetRow("The service");
    const lines = [{line: data.budgets.service, columns: service}].concat(
      data.budgets.keys.map((line) => ({line, columns: budgetRow(keyLabel(line))})));
    fill("budget-lines", lines, [0, 1, 2, 3].map((i) => (entry) => entry.columns[i](entry.line)), "");
    fill("providers", data.providers, [(p) => p.provider, (p, tr) => {
      cell(tr, p.state, p.state === "ok" ? "state-ok" : "state-bad");
    }], "No provider.");
    fill("accounts", data.accounts, [(a) => a.account, (a, tr) => {
      cell(tr, a.state, a.state === "ok" ? "state-ok" : "state-bad");
    }, (a) => neurons(a.spent_neurons), (a) => neurons(a.allocation_neurons)],
    "No Cloudflare accounts (another provider draws).");
  }

  // --- keys: list, create, change, revoke ------------------------------------------------------

  const keyFields = {name: "key-name", daily_usd: "key-usd", daily_neurons: "key-neurons",
    rate_limit: "key-rate", models: "key-models", expires_in_days: "key-days"};

  function keyBody() {
    const body = {};
    for (const [field, id] of Object.entries(keyFields)) {
      const text = $(id).value.trim();
      if (field === "name") body.name = text;
      else if (field === "models") body.models = text ? text.split(",").map((m) => m.trim()).filter(Boolean) : null;
      else if (field === "rate_limit") body.rate_limit = text || null;
      else if (field === "expires_in_days") { if (text) body.expires_in_days = Number(text); }
      else body[field] = text ? Number(text) : null;
    }
    return body;
  }

  function resetKeyForm() {
    $("key-form").reset();
    $("key-id").value = "";
    $("key-save").textContent = "Create key";
    $("key-cancel").hidden = true;
  }

  function editKey(key) {
    $("key-id").value = key.id;
    $("key-name").value = key.name || "";
    $("key-usd").value = key.daily_usd ?? "";
    $("key-neurons").value = key.daily_neurons ?? "";
    $("key-rate").value = key.rate_limit || "";
    $("key-models").value = (key.models || []).join(", ");
    $("key-days").value = "";
    $("key-save").textContent = "Save " + (key.name || key.prefix);
    $("key-cancel").hidden = false;
    $("key-name").focus();
  }

  function button(parent, text, className, action) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    if (className) b.className = className;
    b.addEventListener("click", action);
    parent.appendChild(b);
    return b;
  }

  async function loadKeys() {
    const list = await api("/keys");
    fill("key-list", list.data, [(k) => k.name, (k) => k.prefix, (k) => k.status,
      (k) => [budget(k.daily_usd, "usd"), budget(k.daily_neurons, "neurons")].filter(Boolean).join(" · ") || "none",
      (k) => k.rate_limit || "none", (k) => (k.models || ["all"]).join(", "), (k) => when(k.expires_at),
      (k, tr) => {
        const td = cell(tr, "", "actions");
        if (k.status === "revoked") return;
        button(td, "Change", "quiet", () => editKey(k)).dataset.key = k.id;
        button(td, "Revoke", "danger", () => revokeKey(k)).dataset.key = k.id;
      }], "No keys created here yet (API_KEY's keys are set in the environment).");
  }

  async function saveKey(event) {
    event.preventDefault();
    showError("");
    const id = $("key-id").value;
    try {
      const key = await api(id ? "/keys/" + encodeURIComponent(id) : "/keys",
        {method: id ? "PATCH" : "POST", body: keyBody()});
      if (!id) {
        $("secret-value").textContent = key.secret;
        $("secret").hidden = false;
      }
      resetKeyForm();
      await Promise.all([loadKeys(), loadOverview()]);
    } catch (error) {
      showError(error.message);
    }
  }

  async function revokeKey(key) {
    if (!window.confirm("Revoke " + (key.name || key.prefix) + "? Its next request is refused.")) return;
    showError("");
    try {
      await api("/keys/" + encodeURIComponent(key.id), {method: "DELETE"});
      await loadKeys();
    } catch (error) {
      showError(error.message);
    }
  }

  // --- recent generations and refusals ---------------------------------------------------------

  // Without a history (IMAGE_HISTORY=off) the list is empty and says why.
  async function listOrWhy(path, emptyId) {
    try {
      return (await api(path)).data;
    } catch (error) {
      if (error.code !== "history_unavailable") throw error;
      $(emptyId).textContent = error.message;
      return [];
    }
  }

  async function loadGenerations() {
    const data = await listOrWhy("/generations", "generations-empty");
    const shots = $("generation-list");
    shots.replaceChildren();
    $("generations-empty").hidden = data.length > 0;
    for (const item of data) {
      const li = document.createElement("li");
      li.className = "shot";
      const link = document.createElement("a");
      link.href = item.url;
      link.rel = "noreferrer";
      const img = document.createElement("img");
      img.src = item.url;
      img.alt = item.prompt;
      img.loading = "lazy";
      link.appendChild(img);
      const prompt = document.createElement("p");
      prompt.className = "prompt";
      prompt.textContent = item.prompt;
      prompt.title = item.prompt;
      const meta = document.createElement("p");
      meta.className = "meta";
      meta.textContent = [keyLabel(item), item.model, item.size, amount(item.cost || {usd: 0}),
        when(item.created)].join(" · ");
      li.append(link, prompt, meta);
      shots.appendChild(li);
    }
  }

  async function loadActivity() {
    const data = await listOrWhy("/activity", "activity-empty");
    $("activity-empty").hidden = data.length > 0;
    fill("activity-list", data, [(a) => when(a.created), keyLabel,
      (a) => a.status + " " + (a.code || "") + " · " + a.method + " " + a.path,
      (a) => a.message], "");
  }

  async function loadAll() {
    const parts = [loadOverview(), loadKeys(), loadGenerations(), loadActivity()];
    const failed = (await Promise.allSettled(parts)).filter((p) => p.status === "rejected");
    if (failed.length) showError(failed.map((p) => p.reason.message).join(" "));
  }

  $("key-form").addEventListener("submit", saveKey);
  $("key-cancel").addEventListener("click", resetKeyForm);
  $("secret-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("secret-value").textContent);
      $("secret-copy").textContent = "Copied";
    } catch (error) {
      window.getSelection().selectAllChildren($("secret-value"));  // select it for Ctrl+C
    }
  });
  loadAll();
  window.setInterval(loadAll, 30000);
})();
