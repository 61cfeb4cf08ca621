// The govrpc console's page script: live rule checks, explain, save. No framework, no network but the console.
"use strict";

function csrf() {
  const meta = document.querySelector('meta[name="csrf"]');
  return meta ? meta.content : "";
}

async function post(path, data) {
  const response = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
    body: JSON.stringify(data),
  });
  let body = {};
  try { body = await response.json(); } catch (err) { body = {ok: false, error: response.statusText}; }
  return body;
}

function text(tag, value, cls) {
  const node = document.createElement(tag);
  node.textContent = value;
  if (cls) node.className = cls;
  return node;
}

// Shows the rule with the character at `position` marked, and its line and column.
function showError(box, source, error, position) {
  box.replaceChildren();
  box.className = "check error";
  let where = "";
  if (position !== null && position !== undefined) {
    const before = source.slice(0, position);
    const line = before.split("\n").length;
    const column = position - before.lastIndexOf("\n");
    where = `line ${line}, column ${column}: `;
    const pre = document.createElement("pre");
    pre.className = "where";
    pre.append(source.slice(0, position));
    const mark = text("mark", source.slice(position, position + 1) || " ");
    mark.id = "error-mark";
    pre.append(mark, source.slice(position + 1));
    box.append(text("div", where + error, "message"), pre);
  } else {
    box.append(text("div", error, "message"));
  }
  box.dataset.position = position === null || position === undefined ? "" : String(position);
}

function setupEditor(editor) {
  const service = editor.dataset.service;
  const category = document.getElementById("category");
  const name = document.getElementById("rule-name");
  const area = document.getElementById("rule-text");
  const check = document.getElementById("check");
  const data = JSON.parse(document.getElementById("rules-data").textContent);
  let timer = null;
  let sequence = 0;

  async function validate() {
    const mine = ++sequence;
    const source = area.value;
    if (!source.trim()) { check.replaceChildren(); check.className = "check"; return; }
    const result = await post("/api/check", {category: category.value, name: name.value, text: source});
    if (mine !== sequence) return;  // an older answer arriving late must not overwrite a newer one
    if (result.ok) {
      check.replaceChildren(text("span", "the rule parses", "ok"));
      check.className = "check ok";
      check.dataset.position = "";
    } else {
      showError(check, source, result.error, result.position);
    }
  }
  const later = () => { clearTimeout(timer); timer = setTimeout(validate, 150); };
  area.addEventListener("input", later);
  category.addEventListener("change", later);

  document.querySelectorAll("button.edit").forEach((button) => button.addEventListener("click", () => {
    category.value = button.dataset.category;
    name.value = button.dataset.name;
    area.value = data[button.dataset.category][button.dataset.name] || "";
    validate();
    area.focus();
  }));

  document.getElementById("explain-button").addEventListener("click", async () => {
    const out = document.getElementById("explain-result");
    const result = await post("/api/explain", {
      service, category: category.value, name: name.value, text: area.value,
      method: document.getElementById("explain-method").value,
      application: document.getElementById("explain-application").value,
      host: document.getElementById("explain-host").value,
      args: document.getElementById("explain-args").value,
    });
    out.replaceChildren();
    if (!result.ok) { showError(out, area.value, result.error, result.position); return; }
    out.className = "";
    const list = document.createElement("ol");
    for (const step of result.steps) {
      const item = text("li", `${step.router}: ${step.why} -> ${step.kept.join(", ") || "(none)"}`);
      item.className = "step";
      list.append(item);
    }
    const last = result.steps[result.steps.length - 1];
    out.append(list, text("p", `result: ${last ? last.kept.join(", ") || "(none)" : "(none)"}`, "explain-final"));
  });

  document.getElementById("save").addEventListener("click", async () => {
    const out = document.getElementById("save-result");
    const result = await post("/api/rule", {service, category: category.value, name: name.value, text: area.value});
    if (result.ok) {
      out.replaceChildren(text("span", `saved as version ${result.version}`, "ok"));
      setTimeout(() => window.location.reload(), 300);
    } else {
      showError(check, area.value, result.error, result.position);
      out.replaceChildren(text("span", "not saved", "error"));
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const editor = document.getElementById("editor");
  if (editor) setupEditor(editor);
});

// The traffic panel of a service page: fetch the charts every 2 s while the page is visible.
function setupTraffic(panel) {
  const service = panel.dataset.service;
  let busy = false;
  async function refresh() {
    if (busy || document.visibilityState !== "visible") return;
    busy = true;
    try {
      const response = await fetch("/api/traffic?" + new URLSearchParams({service}), {credentials: "same-origin"});
      const result = await response.json();
      if (result.ok) {
        const old = document.getElementById("traffic-charts");
        const box = document.createElement("div");
        box.innerHTML = result.svg;
        if (old && box.firstElementChild) old.replaceWith(box.firstElementChild);
        panel.dataset.refreshed = String(Number(panel.dataset.refreshed || "0") + 1);
      }
    } catch (err) {
      // the console is away; try again on the next tick
    } finally {
      busy = false;
    }
  }
  setInterval(refresh, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  const traffic = document.getElementById("traffic");
  if (traffic) setupTraffic(traffic);
});
