// The HRMS console: live consumer-group lag, the live tail and the replay buttons.
// Plain DOM, no dependencies; every value is written with textContent (never as HTML).
"use strict";

(function () {
  const root = document.body.dataset.root;
  const GROUPS_EVERY_MS = 2000;
  const TAIL_EVERY_MS = 1000;
  const TAIL_ROWS = 500;

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "-" : String(text);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function showError(message) {
    const box = document.getElementById("live-error");
    if (!box) return;
    box.hidden = !message;
    box.textContent = message || "";
  }

  async function getJson(url, options) {
    const r = await fetch(url, options);
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) {
      const why = body && (body.error || body.detail) ? (body.error || body.detail) : r.statusText;
      throw new Error(String(why));
    }
    return body;
  }

  // -- consumer groups, refreshed every 2 s -------------------------------------------
  function renderGroups(groups) {
    const body = document.getElementById("group-rows");
    const rows = [];
    for (const g of groups) {
      const parts = g.partitions.length ? g.partitions : [null];
      for (const p of parts) {
        const tr = document.createElement("tr");
        tr.dataset.group = g.group;
        cell(tr, g.group);
        cell(tr, g.state);
        cell(tr, g.members).title = g.clients.join(", ");
        if (p) {
          tr.dataset.topic = p.topic;
          tr.dataset.partition = String(p.partition);
          cell(tr, p.topic);
          cell(tr, p.partition, "num");
          cell(tr, p.committed, "num committed");
          cell(tr, p.end, "num end");
          cell(tr, p.lag, "num lag" + (p.lag ? " behind" : ""));
        } else {
          cell(tr, "no committed offsets", "muted").colSpan = 5;
        }
        rows.push(tr);
      }
    }
    body.replaceChildren(...rows);
  }

  function pollGroups() {
    const stamp = document.getElementById("refreshed");
    const tick = async () => {
      try {
        renderGroups(await getJson(root + "/api/groups"));
        showError(null);
        stamp.textContent = "as of " + new Date().toLocaleTimeString();
      } catch (e) {
        showError(e.message);
      }
      setTimeout(tick, GROUPS_EVERY_MS);
    };
    setTimeout(tick, GROUPS_EVERY_MS);
  }

  // -- live tail ---------------------------------------------------------------------
  function tailRow(e) {
    const tr = document.createElement("tr");
    tr.dataset.topic = e.topic;
    tr.dataset.eventType = e.event_type || "";
    tr.dataset.key = e.key || "";
    tr.dataset.tenant = e.tenant_id || "";
    tr.dataset.eventId = e.event_id || "";
    cell(tr, e.timestamp);
    cell(tr, e.topic + "[" + e.partition + "]@" + e.offset);
    cell(tr, e.event_type, "type");
    cell(tr, e.key, "key");
    cell(tr, e.tenant_id, "tenant");
    cell(tr, JSON.stringify(e.data), "data");
    return tr;
  }

  async function startTail() {
    const table = document.getElementById("tail");
    const body = document.getElementById("tail-rows");
    const state = document.getElementById("tail-state");
    const d = table.dataset;
    let session;
    try {
      session = await getJson(root + "/api/tail", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Console": "1" },
        body: JSON.stringify({
          topics: d.topic ? [d.topic] : [],
          event_type: d.eventType || null,
          tenant: d.tenant || null,
          key: d.key || null,
        }),
      });
    } catch (e) {
      showError(e.message);
      state.textContent = "not started";
      return;
    }
    table.dataset.session = session.id;
    window.addEventListener("pagehide", () => {
      navigator.sendBeacon(root + "/api/tail/" + session.id + "/close");
    });
    let after = 0;
    const tick = async () => {
      try {
        const got = await getJson(root + "/api/tail/" + session.id + "?after=" + after);
        for (const e of got.events) {
          body.insertBefore(tailRow(e), body.firstChild);
          after = Math.max(after, e.seq);
        }
        while (body.children.length > TAIL_ROWS) body.lastChild.remove();
        showError(got.error);
        state.textContent = got.error ? "ended" : (got.ready ? "following" : "starting…");
        table.dataset.state = got.error ? "ended" : (got.ready ? "following" : "starting");
        if (got.error) return;
      } catch (e) {
        showError(e.message);
        state.textContent = "stopped";
        return;
      }
      setTimeout(tick, TAIL_EVERY_MS);
    };
    tick();
  }

  // -- replay buttons ----------------------------------------------------------------
  function wireReplays() {
    for (const button of document.querySelectorAll("button.replay")) {
      button.addEventListener("click", async () => {
        const out = button.parentElement.querySelector("output.replay-result");
        if (!window.confirm("Send this dead letter back to its original topic?")) return;
        button.disabled = true;
        out.textContent = "replaying…";
        try {
          const r = await getJson(button.dataset.url, {
            method: "POST", headers: { "X-Console": "1" },
          });
          out.textContent = r.ok
            ? "replayed to " + r.topic + " partition " + r.partition + " offset " + r.offset
            : "not replayed: " + r.error;
          out.className = "replay-result " + (r.ok ? "ok" : "bad");
        } catch (e) {
          out.textContent = "not replayed: " + e.message;
          out.className = "replay-result bad";
          button.disabled = false;
        }
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const page = document.body.dataset.page;
    if (page === "groups") pollGroups();
    if (page === "tail" && document.getElementById("tail")) startTail();
    wireReplays();
  });
})();
