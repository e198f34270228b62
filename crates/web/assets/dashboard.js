// The dashboard's live parts: runs appear and change in the list as they are
// written, a run's page follows it while it runs, running times tick, and
// destroying a cluster asks first. Pages work without it, only not live.
"use strict";
(function () {
  function human(ms) {
    if (ms < 1000) return Math.max(0, Math.round(ms)) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    const pad = (n) => String(n).padStart(2, "0");
    if (ms < 3600000) return Math.floor(ms / 60000) + " min " + pad(Math.floor((ms % 60000) / 1000)) + " s";
    return Math.floor(ms / 3600000) + " h " + pad(Math.floor((ms % 3600000) / 60000)) + " min";
  }

  function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll("[data-running-since]")) {
      el.textContent = "running · " + human(now - Number(el.dataset.runningSince));
    }
    for (const el of document.querySelectorAll("[data-expires-at]")) {
      const left = Number(el.dataset.expiresAt) * 1000 - now;
      el.textContent = left > 0 ? human(Math.floor(left / 1000) * 1000) : "expired";
    }
  }
  setInterval(tick, 1000);
  tick();

  // An event stream that is closed while the page is hidden or cached for
  // going back, and opened again when it is shown: browsers give a server
  // only six connections, and streams of pages no one sees would use them up.
  function live(url) {
    const handlers = [];
    let source = null;
    let closed = false;
    function open() {
      source = new EventSource(url);
      for (const [name, handler] of handlers) source.addEventListener(name, handler);
    }
    window.addEventListener("pagehide", () => {
      if (source) source.close();
    });
    window.addEventListener("pageshow", (event) => {
      if (event.persisted && !closed) open();
    });
    open();
    return {
      on(name, handler) {
        handlers.push([name, handler]);
        source.addEventListener(name, handler);
      },
      close() {
        closed = true;
        source.close();
      },
    };
  }

  function fromHtml(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  // The runs list: each `runs` event carries the rows that changed.
  const table = document.getElementById("runs");
  if (table && table.dataset.events && window.EventSource) {
    const tbody = table.tBodies[0];
    const empty = document.getElementById("runs-empty");
    const source = live(table.dataset.events);
    source.on("runs", (event) => {
      // Newest first from the server: insert the oldest first so the newest ends on top.
      for (const change of JSON.parse(event.data).reverse()) {
        const old = document.getElementById("run-" + change.id);
        if (change.html === null) {
          if (old) old.remove();
          continue;
        }
        const row = fromHtml(change.html);
        if (old) old.replaceWith(row);
        else tbody.insertBefore(row, tbody.firstChild);
        row.classList.add("flash");
      }
      if (empty) empty.hidden = tbody.rows.length > 0;
      table.dataset.updates = String(Number(table.dataset.updates || 0) + 1);
      tick();
    });
  }

  // Expanded sections (outputs, prompts, code) stay expanded across a live
  // refresh: each is known by its summary's text and its rank among those with
  // the same text, which new steps and iterations (added after) do not change.
  function sectionKeys(root, visit) {
    const seen = new Map();
    for (const d of root.querySelectorAll("details")) {
      const summary = d.querySelector("summary");
      const text = summary ? summary.textContent.trim() : "";
      const n = (seen.get(text) || 0) + 1;
      seen.set(text, n);
      visit(d, text + "#" + n);
    }
  }
  function openSections(root) {
    const open = new Set();
    sectionKeys(root, (d, key) => {
      if (d.open) open.add(key);
    });
    return open;
  }
  function reopen(root, open) {
    sectionKeys(root, (d, key) => {
      if (open.has(key)) d.open = true;
    });
  }

  // A run's page: refetch its content whenever the run is written to.
  const body = document.getElementById("run-body");
  if (body && body.dataset.events && window.EventSource) {
    const source = live(body.dataset.events);
    let busy = false;
    let again = false;
    async function refresh() {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      try {
        const response = await fetch(body.dataset.body, { credentials: "same-origin" });
        if (response.ok) {
          const open = openSections(body);
          body.innerHTML = await response.text();
          reopen(body, open);
          tick();
        }
      } finally {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      }
    }
    source.on("changed", refresh);
    source.on("end", () => {
      source.close();
      refresh().then(() => {
        body.dataset.ended = "true";
      });
    });
  }

  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
})();
