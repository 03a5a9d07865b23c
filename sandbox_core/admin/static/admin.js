// The sandbox-core admin page: the active provider's health and runtimes, provider cards, a config form rendered from each provider's
// JSON Schema, save and connection test. Every API call carries the admin token, which is kept
// in sessionStorage (this tab only). Validation is the server's: its 422 answers name the fields.
"use strict";

const API = "/api/v1/sandbox";
const TOKEN_KEY = "sandbox-admin-token";
const PROVIDER_KEY = "sandbox-admin-provider";
const MASK = "********";

const state = { providers: [], current: null, schema: null, etag: null, widgets: {} };

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.errors = (body && body.errors) || [];
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenPanel("The admin token was refused: enter it again.");
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// -- token ------------------------------------------------------------------------------------

function showTokenPanel(message) {
  $("workspace").hidden = true;
  $("forget-token").hidden = true;
  $("token-panel").hidden = false;
  $("token-error").textContent = message || "";
  $("token-input").setAttribute("aria-invalid", message ? "true" : "false");
  $("token-input").focus();
}

async function submitToken(event) {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!token) {
    $("token-error").textContent = "Enter the admin token.";
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-input").value = "";
  await openWorkspace();
}

function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  showTokenPanel("");
}

// -- providers --------------------------------------------------------------------------------

async function openWorkspace() {
  let listing;
  try {
    listing = await api("GET", "/providers");
  } catch (error) {
    if (error.status === 401) return;
    listing = null;
    $("providers-error").textContent = `Could not load the providers: ${error.message}`;
  }
  $("token-panel").hidden = true;
  $("workspace").hidden = false;
  $("forget-token").hidden = false;
  loadHealth();
  if (!listing) return;
  renderProviders(listing);
  const remembered = sessionStorage.getItem(PROVIDER_KEY);
  const names = state.providers.map((p) => p.name);
  const usable = state.providers.filter((p) => !p.error).map((p) => p.name);
  const pick = [remembered, listing.active, usable[0]].find((n) => n && names.includes(n));
  if (pick) await selectProvider(pick);
}

function renderProviders(listing) {
  state.providers = listing.providers;
  const installed = listing.providers.map((p) => p.name);
  $("providers-error").textContent = listing.active && !installed.includes(listing.active)
    ? `The active provider "${listing.active}" is not installed: executions fail until it is installed or another provider is activated.`
    : "";
  const badge = $("encryption");
  badge.hidden = false;
  badge.textContent = listing.encryption_at_rest ? "secrets encrypted at rest" : "secrets stored unencrypted";
  const list = $("provider-list");
  list.replaceChildren();
  for (const provider of listing.providers) {
    const title = el("span", { className: "title" },
      el("span", { text: provider.name }),
      el("span", { className: `badge status-${provider.status}`, text: provider.status }),
      provider.active ? el("span", { className: "badge active", text: "active" }) : null);
    const tags = el("div", { className: "meta" });
    for (const tag of provider.tags) tags.append(el("span", { className: "tag", text: tag }));
    const meta = el("div", { className: "meta", text: `${provider.package} ${provider.version}`.trim() + (provider.languages.length ? ` · ${provider.languages.join(", ")}` : "") });
    const card = el("button", {
      type: "button",
      className: "card",
      "data-provider": provider.name,
      "aria-pressed": provider.name === state.current ? "true" : "false",
    }, title, el("p", { className: "description", text: provider.description || "" }), tags, meta,
      provider.error ? el("p", { className: "card-error", text: provider.error }) : null);
    card.addEventListener("click", () => selectProvider(provider.name));
    list.append(card);
  }
}

// -- the active provider's health and runtimes ------------------------------------------------

function warmText(runtime) {
  if (!runtime.available) return "";
  const restore = runtime.restore;
  const preload = runtime.preload.length ? `preloads ${runtime.preload.join(", ")}` : "";
  if (!restore) return preload || "booted";
  const counts = `${restore.restores} restored, ${restore.plain_boots} booted`;
  const how = {
    ready: "restored from a checkpoint",
    pending: "checkpoint not made yet",
    failed: "booted: restoring failed",
    off: "booted (restore off)",
  }[restore.state] || restore.state;
  return [preload, `${how} (${counts})`].filter(Boolean).join("; ");
}

function renderHealth(health) {
  $("health-provider").textContent = health.provider || "none";
  const verdict = $("health-verdict");
  verdict.textContent = health.healthy ? "healthy" : "unhealthy";
  verdict.className = `badge ${health.healthy ? "status-available" : "status-broken"}`;
  $("health-message").textContent = health.message;
  const rows = $("runtime-rows");
  rows.replaceChildren();
  for (const runtime of health.runtimes) {
    const packages = Object.entries(runtime.packages).map(([name, version]) => `${name} ${version}`).join(", ");
    const problem = runtime.error || (runtime.restore && runtime.restore.error) || "";
    const name = el("th", { scope: "row" }, el("span", { text: runtime.name }),
      runtime.available ? null : el("span", { className: "badge status-broken", text: "unavailable" }));
    const warm = el("td", { className: "warm" }, warmText(runtime) ? el("span", { text: warmText(runtime) }) : null,
      problem ? el("p", { className: "card-error", text: problem }) : null);
    rows.append(el("tr", { "data-runtime": runtime.name }, name, el("td", { text: runtime.language || "" }),
      el("td", { className: "packages", text: packages || "(standard library)" }), warm));
  }
  $("runtimes").hidden = health.runtimes.length === 0;
}

async function loadHealth() {
  const section = $("health");
  section.setAttribute("aria-busy", "true");
  try {
    renderHealth(await api("GET", "/health"));
  } catch (error) {
    if (error.status === 401) return;
    $("health-message").textContent = `Could not check the active provider: ${error.message}`;
  } finally {
    section.setAttribute("aria-busy", "false");
  }
}

async function refreshProviders() {
  try {
    renderProviders(await api("GET", "/providers"));
  } catch (error) {
    if (error.status !== 401) $("providers-error").textContent = error.message;
  }
}

async function selectProvider(name) {
  if (name === state.current && !$("editor").hidden) return; // keep what is being edited
  const editor = $("editor");
  editor.setAttribute("aria-busy", "true");
  try {
    await loadProvider(name);
  } finally {
    if (state.current === name) editor.setAttribute("aria-busy", "false");
  }
}

async function loadProvider(name) {
  state.current = name;
  sessionStorage.setItem(PROVIDER_KEY, name);
  for (const card of document.querySelectorAll(".card")) {
    card.setAttribute("aria-pressed", card.dataset.provider === name ? "true" : "false");
  }
  const provider = state.providers.find((p) => p.name === name) || {};
  $("editor").hidden = false;
  $("editor-name").textContent = name;
  $("test-result").hidden = true;
  $("form-status").textContent = "";
  clearErrors();
  if (provider.error) {
    $("fields").replaceChildren();
    $("config-form").hidden = true;
    $("editor-note").textContent = `This provider is ${provider.status}: ${provider.error}`;
    return;
  }
  $("config-form").hidden = false;
  let schema, saved;
  try {
    [schema, saved] = await Promise.all([
      api("GET", `/providers/${encodeURIComponent(name)}/schema`),
      api("GET", `/providers/${encodeURIComponent(name)}/config`),
    ]);
  } catch (error) {
    $("fields").replaceChildren();
    $("editor-note").textContent = `Could not load ${name}: ${error.message}`;
    return;
  }
  if (state.current !== name) return; // the user picked another provider meanwhile
  state.schema = schema;
  renderForm(schema);
  fillForm(saved);
}

// -- the form ---------------------------------------------------------------------------------

function widgetKind(prop) {
  if (prop.type === "array") return "list";
  if (Array.isArray(prop.enum)) return "enum";
  if (prop["x-secret"] || prop.format === "password") return "secret";
  if (prop["x-widget"] === "json") return "json";
  if (prop.type === "boolean") return "boolean";
  if (prop.type === "integer" || prop.type === "number") return "number";
  if (prop.format === "uri") return "url";
  return "text";
}

function renderForm(schema) {
  const container = $("fields");
  container.replaceChildren();
  state.widgets = {};
  const required = new Set(schema.required || []);
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const kind = widgetKind(prop);
    const id = `field-${name}`;
    const hintId = `hint-${name}`;
    const errorId = `error-${name}`;
    const hints = [];
    if (prop.description) hints.push(prop.description);
    let input;
    if (kind === "list") {
      input = el("textarea", { id, name, rows: 3, spellcheck: "false" });
      const itemIsUrl = prop.items && prop.items.format === "uri";
      hints.push(itemIsUrl ? "One URL per line." : "One value per line.");
    } else if (kind === "json") {
      input = el("textarea", { id, name, rows: 4, spellcheck: "false" });
      hints.push("JSON.");
    } else if (kind === "enum") {
      input = el("select", { id, name });
      if (!required.has(name)) input.append(el("option", { value: "", text: prop.default !== undefined ? `(default: ${prop.default})` : "(not set)" }));
      prop.enum.forEach((choice, index) => input.append(el("option", { value: String(index), text: String(choice) })));
    } else if (kind === "boolean") {
      input = el("input", { id, name, type: "checkbox" });
    } else if (kind === "number") {
      input = el("input", {
        id, name, type: "number", inputmode: prop.type === "integer" ? "numeric" : "decimal",
        step: prop.type === "integer" ? "1" : "any", min: prop.minimum, max: prop.maximum,
      });
      if (prop.minimum !== undefined || prop.maximum !== undefined) {
        hints.push(`Between ${prop.minimum ?? "−∞"} and ${prop.maximum ?? "∞"}.`);
      }
    } else if (kind === "secret") {
      input = el("input", { id, name, type: "password", autocomplete: "new-password", spellcheck: "false" });
      hints.push(`Secret: never shown again once saved. Leave ${MASK} to keep the saved value.`);
      const bound = prop["x-bound-to"] || [];
      if (bound.length) hints.push(`It is kept only while ${bound.join(" and ")} stay the same; change those and enter it again.`);
    } else {
      input = el("input", { id, name, type: kind === "url" ? "url" : "text", spellcheck: "false", minlength: prop.minLength, maxlength: prop.maxLength });
      if (kind === "url") hints.push("An http(s) URL.");
    }
    if (prop.default !== undefined && kind !== "boolean" && kind !== "enum") {
      input.setAttribute("placeholder", kind === "list" ? [].concat(prop.default).join("\n") : typeof prop.default === "object" ? JSON.stringify(prop.default) : String(prop.default));
    }
    if (required.has(name)) input.setAttribute("aria-required", "true");
    input.setAttribute("aria-describedby", `${hintId} ${errorId}`);
    const label = el("label", { for: id, text: (prop.title || name) + (required.has(name) ? " (required)" : "") });
    const hint = el("span", { id: hintId, className: "hint", text: hints.join(" ") });
    const error = el("p", { id: errorId, className: "field-error", role: "alert" });
    const field = kind === "boolean"
      ? el("div", { className: "field checkbox", "data-field": name }, input, label, hint, error)
      : el("div", { className: "field", "data-field": name }, label, input, hint, error);
    container.append(field);
    state.widgets[name] = { kind, input, prop };
  }
}

function fillForm(view) {
  state.etag = view.etag;
  $("activate").checked = false;
  $("editor-note").textContent = view.active ? "This is the active provider." : "";
  const config = view.config || {};
  for (const [name, { kind, input, prop }] of Object.entries(state.widgets)) {
    const value = config[name];
    if (kind === "boolean") {
      input.checked = value !== undefined ? Boolean(value) : Boolean(prop.default);
    } else if (kind === "enum") {
      const index = value === undefined ? -1 : prop.enum.findIndex((c) => c === value);
      input.value = index >= 0 ? String(index) : (input.querySelector('option[value=""]') ? "" : "0");
    } else if (value === undefined || value === null) {
      input.value = "";
    } else if (kind === "list") {
      input.value = [].concat(value).join("\n");
    } else if (kind === "json") {
      input.value = JSON.stringify(value, null, 2);
    } else {
      input.value = String(value);
    }
  }
}

function collectConfig() {
  const config = {};
  for (const [name, { kind, input, prop }] of Object.entries(state.widgets)) {
    if (kind === "boolean") {
      config[name] = input.checked;
    } else if (kind === "enum") {
      if (input.value !== "") config[name] = prop.enum[Number(input.value)];
    } else if (kind === "list") {
      const items = input.value.split("\n").map((line) => line.trim()).filter(Boolean);
      if (items.length) config[name] = items;
    } else if (kind === "number") {
      const text = input.value.trim();
      // An unparsable entry is sent as typed, so the server's error names this field.
      if (text !== "") config[name] = Number.isFinite(Number(text)) ? Number(text) : text;
      else if (input.validity && input.validity.badInput) config[name] = "not a number";
    } else if (kind === "secret") {
      if (input.value !== "") config[name] = input.value;
    } else {
      const text = input.value.trim();
      if (text !== "") config[name] = text;
    }
  }
  return config;
}

function clearErrors() {
  $("form-error").textContent = "";
  for (const node of document.querySelectorAll("#fields .field-error")) node.textContent = "";
  for (const node of document.querySelectorAll("#fields [aria-invalid]")) node.removeAttribute("aria-invalid");
}

function showErrors(error) {
  const general = [];
  for (const problem of error.errors || []) {
    const root = (problem.field || "").replace(/^config\.?/, "").split(".")[0];
    const widget = state.widgets[root];
    if (widget) {
      const slot = $(`error-${root}`);
      slot.textContent = slot.textContent ? `${slot.textContent} ${problem.message}` : problem.message;
      widget.input.setAttribute("aria-invalid", "true");
    } else {
      general.push(problem.field ? `${problem.field}: ${problem.message}` : problem.message);
    }
  }
  if (general.length || !(error.errors || []).length) {
    $("form-error").textContent = general.length ? general.join(" ") : error.message;
  }
  const first = document.querySelector('#fields [aria-invalid="true"]');
  if (first) first.focus();
}

async function withBusy(label, work) {
  const buttons = [$("save-button"), $("test-button")];
  buttons.forEach((b) => { b.disabled = true; });
  $("form-status").textContent = label;
  try {
    await work();
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

async function save(event) {
  event.preventDefault();
  const name = state.current;
  clearErrors();
  await withBusy("Saving…", async () => {
    try {
      const view = await api("PUT", `/providers/${encodeURIComponent(name)}/config`, {
        config: collectConfig(), activate: $("activate").checked, etag: state.etag,
      });
      fillForm(view);
      $("form-status").textContent = view.changed.length ? `Saved (changed: ${view.changed.join(", ")}).` : "Saved (nothing changed).";
      await refreshProviders();
      loadHealth(); // the active provider or its config may have changed
    } catch (error) {
      $("form-status").textContent = "";
      if (error.status === 409) error.errors = [];
      if (error.status !== 401) showErrors(error);
    }
  });
}

async function testConnection() {
  const name = state.current;
  clearErrors();
  await withBusy("Testing…", async () => {
    try {
      const result = await api("POST", `/providers/${encodeURIComponent(name)}/test`, { config: collectConfig() });
      $("form-status").textContent = "";
      showResult(result);
    } catch (error) {
      $("form-status").textContent = "";
      if (error.status !== 401) showErrors(error);
    }
  });
}

function showResult(result) {
  const panel = $("test-result");
  panel.hidden = false;
  panel.className = `result ${result.success ? "ok" : "failed"}`;
  $("test-verdict").textContent = result.success ? "succeeded" : "failed";
  $("test-message").textContent = result.message;
  $("test-exit-code").textContent = result.exit_code === null ? "none" : String(result.exit_code);
  $("test-time").textContent = `${result.execution_time.toFixed(3)} s`;
  $("test-status").textContent = result.status;
  $("test-stdout").textContent = result.stdout || "(empty)";
  $("test-stderr").textContent = result.stderr || "(empty)";
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", submitToken);
  $("forget-token").addEventListener("click", forgetToken);
  $("config-form").addEventListener("submit", save);
  $("test-button").addEventListener("click", testConnection);
  $("health-refresh").addEventListener("click", loadHealth);
  if (sessionStorage.getItem(TOKEN_KEY)) openWorkspace();
  else showTokenPanel("");
});
