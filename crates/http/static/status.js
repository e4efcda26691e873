// bootlab status page: keeps the server-rendered tables up to date by
// polling /api/v1/summary. Data goes into the page only through
// textContent and attributes set one by one: never parsed as HTML.
"use strict";

(function () {
  const POLL_MS = 1500;
  const MAX_BACKOFF_MS = 10000;
  let delay = POLL_MS;
  let updates = 0;
  // Row signatures, so an unchanged row is left alone (an open <details>,
  // a text selection survive).
  const signatures = new Map();

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }

  function text(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  function time(datetime, shown) {
    return el("time", { datetime: datetime }, text(shown));
  }

  function detailsOf(m) {
    const dl = el("dl");
    const pair = (k, v) => {
      if (v === null || v === undefined || v === "") return;
      dl.append(el("dt", null, k), el("dd", null, text(v)));
    };
    pair("FQDN", m.fqdn);
    pair("role", m.role);
    pair("profile", m.profile);
    pair("firmware", m.firmware);
    for (const v of m.vars) pair("vars." + v.key, v.value);
    if (m.recent.length) {
      const ol = el("ol", { class: "events" });
      for (const e of m.recent) {
        ol.append(el("li", null, time(e.at, e.age), " " + text(e.text)));
      }
      dl.append(el("dt", null, "recent events"), el("dd", null, ol));
    }
    return el("details", null, el("summary", null, "details"), dl);
  }

  function rowOf(m) {
    const stages = el("ol", { class: "stages" });
    for (const s of m.stages) {
      const li = el("li", { class: s.state, "data-stage": s.stage },
        el("span", { class: "mark" }, s.mark), " " + s.label);
      if (s.offset) li.append(" ", time(s.at, s.offset));
      stages.append(li);
    }
    const last = el("td", { class: "last", "data-label": "Last event" });
    if (m.last) {
      last.append(time(m.last.at, m.last.age), " ", el("span", { class: "what" }, text(m.last.text)));
    } else {
      last.textContent = "—";
    }
    const status = el("td", { class: "status", "data-label": "Status" });
    if (m.stall) {
      status.append(el("strong", { class: "warn" }, "⚠ " + text(m.status_text)));
    } else {
      status.textContent = text(m.status_text);
    }
    return el("tr", {
      id: m.id,
      class: "status-" + m.status,
      "data-mac": m.mac,
      "data-stage": m.stage || "",
      "data-status": m.status,
    },
      el("th", { scope: "row", class: "machine", "data-label": "Machine" },
        el("span", { class: "name" }, text(m.name || "unknown")), " ",
        el("span", { class: "mac" }, text(m.mac)), detailsOf(m)),
      el("td", { class: "ip", "data-label": "Address" }, text(m.ip || "—")),
      el("td", { class: "timeline", "data-label": "Boot stages" }, stages),
      el("td", { class: "stage", "data-label": "Stage" }, text(m.stage_label)),
      last,
      status);
  }

  // What a row shows, without the ages that change every second.
  function signature(m) {
    const strip = (e) => (e ? { at: e.at, text: e.text } : null);
    return JSON.stringify(Object.assign({}, m, {
      last: strip(m.last),
      recent: m.recent.map(strip),
      stall: m.stall ? m.stall.stage : null,
      status_text: m.stall ? null : m.status_text,
    }));
  }

  function updateMachines(machines) {
    const tbody = document.getElementById("machine-rows");
    if (!tbody) return;
    const wanted = [];
    const seen = new Set();
    for (const m of machines) {
      seen.add(m.id);
      const old = document.getElementById(m.id);
      const sig = signature(m);
      if (old && signatures.get(m.id) === sig) {
        // Only the ages (and a stall's duration) moved.
        const last = old.querySelector("td.last time");
        if (last && m.last) last.textContent = text(m.last.age);
        const status = old.querySelector("td.status");
        if (status && m.stall) {
          status.replaceChildren(el("strong", { class: "warn" }, "⚠ " + text(m.status_text)));
        }
        const ages = old.querySelectorAll("ol.events time");
        m.recent.forEach((e, i) => { if (ages[i]) ages[i].textContent = text(e.age); });
        wanted.push(old);
        continue;
      }
      const row = rowOf(m);
      const wasOpen = old && old.querySelector("details") && old.querySelector("details").open;
      if (wasOpen) row.querySelector("details").open = true;
      signatures.set(m.id, sig);
      wanted.push(row);
    }
    for (const id of Array.from(signatures.keys())) {
      if (!seen.has(id)) signatures.delete(id);
    }
    // Keep the server's order; move or replace only what changed.
    wanted.forEach((row, i) => {
      const at = tbody.children[i];
      if (at !== row) {
        const old = document.getElementById(row.id);
        if (old && old !== row) old.remove();
        tbody.insertBefore(row, tbody.children[i] || null);
      }
    });
    while (tbody.children.length > wanted.length) tbody.lastElementChild.remove();
  }

  function kvList(items, cls) {
    const ul = el("ul", { class: cls || "kv" });
    for (const [k, v] of items) {
      ul.append(el("li", null, el("span", { class: "k" }, text(k)), " ", el("span", { class: "v" }, text(v))));
    }
    return ul;
  }

  function updateServices(services) {
    const tbody = document.getElementById("service-rows");
    if (!tbody) return;
    tbody.replaceChildren(...services.map((s) => el("tr", { id: "svc-" + s.name.toLowerCase() },
      el("th", { scope: "row" }, text(s.name)),
      el("td", null, kvList(s.counters.map((c) => [c.label, c.text]))))));
  }

  function updateRecords(records) {
    const tbody = document.getElementById("record-rows");
    if (!tbody) return;
    tbody.replaceChildren(...records.map((r) =>
      el("tr", null, el("td", null, text(r.name)), el("td", null, text(r.rtype)),
        el("td", null, text(r.value)), el("td", null, text(r.ttl)))));
  }

  // A section the server leaves out when its report is absent: created
  // when the report appears, removed when it goes.
  function section(id, title, present) {
    let s = document.getElementById(id + "-section");
    if (!present) {
      if (s) s.remove();
      return null;
    }
    if (!s) {
      s = el("section", { id: id + "-section", "aria-labelledby": id + "-title" },
        el("h2", { id: id + "-title" }, title));
      document.querySelector("main").append(s);
    }
    return s;
  }

  function table(id, caption, heads, rows, empty) {
    const thead = el("thead", null, el("tr", null, ...heads.map((h) => el("th", { scope: "col" }, h))));
    const tbody = el("tbody", { id: id + "-rows" });
    if (rows.length) {
      tbody.append(...rows);
    } else {
      tbody.append(el("tr", null, el("td", { colspan: heads.length }, empty)));
    }
    return el("table", { id: id }, caption ? el("caption", null, caption) : null, thead, tbody);
  }

  function cell(label, value, cls) {
    return el("td", { "data-label": label, class: cls || null }, text(value));
  }

  function updateBalancers(balancers) {
    const s = section("balancers", "Balancers", balancers !== null && balancers !== undefined);
    if (!s) return;
    const rows = balancers.map((b) => {
      const state = el("td", { "data-label": "State", class: "state" }, text(b.state));
      if (b.last_error && b.state === "down") {
        state.append(" ", el("span", { class: "why" }, "(" + text(b.last_error) + ")"));
      }
      return el("tr", { class: "backend-" + b.state },
        el("th", { scope: "row", "data-label": "Balancer" }, text(b.balancer), " ",
          el("span", { class: "addr" }, text(b.listen))),
        el("td", { "data-label": "Backend" }, text(b.backend), " ",
          el("span", { class: "addr" }, text(b.addr))),
        state,
        cell("Open", b.active, "num"), cell("Connections", b.total, "num"),
        cell("In", b.bytes_in, "num"), cell("Out", b.bytes_out, "num"),
        cell("Connect failures", b.failures, "num"));
    });
    const t = table("balancers", null,
      ["Balancer", "Backend", "State", "Open", "Connections", "In", "Out", "Connect failures"],
      rows, "no backends");
    s.replaceChildren(s.querySelector("h2"), t);
  }

  function updateEgress(egress) {
    const s = section("egress", "Egress", egress !== null && egress !== undefined);
    if (!s) return;
    const parts = [s.querySelector("h2")];
    if (egress.error) parts.push(el("p", { id: "egress-error", class: "warn" }, text(egress.error)));
    parts.push(el("p", { id: "egress-summary" },
      egress.denied.length + " destinations refused in the last hour; " +
      egress.learned + " addresses learned from DNS."));
    parts.push(table("egress", "Refused destinations", ["Destination", "Protocol", "Port", "Forgotten in"],
      egress.denied.map((d) => el("tr", null, cell("Destination", d.addr), cell("Protocol", d.protocol),
        cell("Port", d.port), cell("Forgotten in", d.expires))), "none"));
    if (egress.counters.length) {
      const ul = kvList(egress.counters.map((c) => [c.name, c.packets + " packets, " + c.bytes]));
      ul.id = "egress-counters";
      parts.push(ul);
    }
    s.replaceChildren(...parts);
  }

  function setLive(ok, view) {
    const live = document.getElementById("live");
    if (!live) return;
    if (ok) {
      live.classList.remove("stale");
      live.replaceChildren("Live, updated ", time(view.generated_at, view.clock), ".");
    } else {
      live.classList.add("stale");
      const shown = live.querySelector("time");
      live.replaceChildren("Connection to bootlabd lost; retrying. Last update ",
        shown ? shown : "never", ".");
    }
    document.body.dataset.live = ok ? "ok" : "lost";
  }

  function apply(view) {
    const headline = document.getElementById("headline");
    if (headline) headline.textContent = text(view.headline);
    const rule = document.getElementById("stall-rule");
    if (rule) rule.textContent = text(view.stall_rule);
    updateMachines(view.machines);
    updateServices(view.services);
    updateRecords(view.records);
    updateBalancers(view.balancers);
    updateEgress(view.egress);
    setLive(true, view);
    updates += 1;
    document.body.dataset.updates = String(updates);
  }

  async function poll() {
    try {
      const r = await fetch("/api/v1/summary", { cache: "no-store", headers: { Accept: "application/json" } });
      if (!r.ok) throw new Error("HTTP " + r.status);
      apply(await r.json());
      delay = POLL_MS;
    } catch (e) {
      setLive(false, null);
      delay = Math.min(delay * 2, MAX_BACKOFF_MS);
    }
    setTimeout(poll, delay);
  }

  poll();
})();
