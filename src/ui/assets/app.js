// convirt console: the run page's live log (SSE) and the archive upload. No inline script:
// this file is the only script, served from the console itself (Content-Security-Policy).
"use strict";

function csrf() {
  const m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.content : "";
}

function watchRun(root) {
  const sections = {};
  root.querySelectorAll("section.vm").forEach((s) => { sections[s.dataset.vm] = s; });
  const runState = document.getElementById("run-state");
  const es = new EventSource(root.dataset.events);
  es.onmessage = (msg) => {
    const e = JSON.parse(msg.data);
    const s = sections[e.vm];
    if (!s) return;
    const state = s.querySelector(".state");
    if (e.kind === "line") {
      const log = s.querySelector(".log");
      const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.append(e.text + "\n");
      if (stick) log.scrollTop = log.scrollHeight;
    } else if (e.kind === "step") {
      s.querySelector(".step").textContent = e.text;
      if (e.step) s.dataset.step = e.step;
      state.textContent = "running";
      s.dataset.state = "running";
    } else {
      state.textContent = e.kind === "done" ? "done" : "failed";
      s.dataset.state = e.kind;
      s.querySelector(".result").textContent = e.text;
    }
  };
  es.addEventListener("end", () => {
    es.close();
    runState.textContent = "finished";
    root.dataset.finished = "true";
  });
}

function upload(form) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = form.querySelector('input[type="file"]');
    const out = document.getElementById("import-result");
    if (!input.files.length) return;
    const f = input.files[0];
    out.textContent = "importing " + f.name + " ...";
    try {
      const r = await fetch(form.action, {
        method: "POST",
        headers: { "X-CSRF-Token": csrf(), "X-Archive-Name": encodeURIComponent(f.name),
                   "Content-Type": "application/octet-stream" },
        body: f,
        credentials: "same-origin",
      });
      out.textContent = (r.ok ? "" : "failed: ") + (await r.text());
      out.dataset.ok = r.ok ? "true" : "false";
    } catch (e) {
      out.textContent = "failed: " + e;
      out.dataset.ok = "false";
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const run = document.getElementById("run");
  if (run) watchRun(run);
  const form = document.getElementById("import");
  if (form) upload(form);
});
