// holdwatch dispatch board: polls the status API every few seconds and redraws the loads due at
// the border, grouped by port, soonest ETA first. No framework, no CDN: served by the worker.
"use strict";

(function () {
  const POLL_MS = 3000;
  const params = new URLSearchParams(window.location.search);
  const defaultHours = document.querySelector('meta[name="hw-board-hours"]').content;
  const state = {
    team: params.get("team") || "",
    port: params.get("port") || "",
    hours: params.get("hours") || defaultHours,
    teams: new Set(),
    ports: new Map(),
    focused: null,
  };

  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  };

  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  function countdown(minutes) {
    if (minutes == null) return "no ETA";
    const sign = minutes < 0 ? "−" : "";
    const total = Math.round(Math.abs(minutes));
    const h = Math.floor(total / 60), m = total % 60;
    const text = h ? `${h} h ${String(m).padStart(2, "0")} min` : `${m} min`;
    return minutes < 0 ? `${sign}${text} (past ETA)` : `in ${text}`;
  }

  function localTime(iso, tz) {
    if (!iso) return "";
    try {
      return new Date(iso).toLocaleTimeString("en-CA", {
        hour: "2-digit", minute: "2-digit", timeZone: tz || "UTC", timeZoneName: "short",
      });
    } catch (err) {
      return new Date(iso).toISOString().slice(11, 16) + " UTC";
    }
  }

  function brokerLine(load) {
    const parts = [];
    const contact = load.broker_contact;
    if (contact && (contact.phone_24h || contact.phone)) parts.push(`24 h ${contact.phone_24h || contact.phone}`);
    if (contact && contact.open_now === false) parts.push("office closed");
    if (load.dispatch_team) parts.push(`team ${load.dispatch_team}`);
    if (load.driver_name || load.driver_phone) parts.push(`driver ${[load.driver_name, load.driver_phone].filter(Boolean).join(" ")}`);
    return parts.join(" · ");
  }

  function row(load) {
    const severity = load.severity || "ok";
    const reasons = (load.reasons || []).length
      ? el("ul", {}, ...load.reasons.map((r) => el("li", { text: r.summary, title: r.action + (r.call ? " — " + r.call : "") })))
      : el("span", { class: "none", text: "ready: nothing missing" });
    const tr = el("tr", {
      class: `load ${severity}`, tabindex: "0", "data-ccn": load.ccn, "data-severity": severity,
      "aria-label": `${load.load_ref || load.ccn}, ${severity}, ${countdown(load.minutes_to_eta)}`,
    },
      el("td", {}, el("span", { class: `chip ${severity}`, text: severity === "ok" ? "ready" : severity })),
      el("td", {}, el("strong", { text: load.load_ref || "—" }), el("br"), el("span", { class: "muted", text: load.ccn })),
      el("td", {}, load.importer_name || load.importer_bn || "—", el("br"), el("span", { class: "muted", text: load.importer_bn || "" })),
      el("td", {}, load.broker_name || load.broker_code || "no broker", el("br"),
        el("span", { class: "muted", text: brokerLine(load) })),
      el("td", { class: "eta" }, el("span", { class: "countdown", text: countdown(load.minutes_to_eta) }), el("br"),
        el("span", { class: "muted", text: load.eta ? "ETA " + localTime(load.eta, load.port_tz) : "" })),
      el("td", { class: "reasons", tabindex: "-1" }, reasons),
    );
    tr.addEventListener("keydown", (event) => {
      if (event.key === "Enter") tr.querySelector("td.reasons").focus();
    });
    return tr;
  }

  function render(page) {
    const board = document.getElementById("board");
    const groups = new Map();
    for (const load of page.items) {
      const port = load.port_of_entry || "????";
      if (!groups.has(port)) groups.set(port, { name: load.port_name, loads: [] });
      groups.get(port).loads.push(load);
      if (load.dispatch_team) state.teams.add(load.dispatch_team);
      state.ports.set(port, load.port_name || port);
    }
    const sections = [];
    for (const [port, group] of groups) {
      const critical = group.loads.filter((l) => l.severity === "critical").length;
      sections.push(el("section", { "aria-label": `${group.name || port} (${port})` },
        el("h2", {}, `${group.name || "Office " + port} (${port}) `,
          el("span", { class: "count", text: `${plural(group.loads.length, "load")}, ${critical} critical` })),
        el("table", {},
          el("thead", {}, el("tr", {}, ...["", "Load", "Importer", "Broker", "ETA", "What is wrong"].map((h) => el("th", { scope: "col", text: h })))),
          el("tbody", {}, ...group.loads.map(row)))));
    }
    const focusedCcn = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.ccn : null;
    board.replaceChildren(...(sections.length ? sections : [el("p", { class: "empty", text: "No load due at the border in this window." })]));
    if (focusedCcn) {
      const again = board.querySelector(`tr[data-ccn="${CSS.escape(focusedCcn)}"]`);
      if (again) again.focus();
    }
    fillSelect("team", [...state.teams].sort().map((t) => [t, t]), state.team);
    fillSelect("port", [...state.ports].sort().map(([code, name]) => [code, `${name} (${code})`]), state.port);
    const asOf = new Date(page.as_of);
    document.getElementById("asof").textContent =
      `${plural(page.total, "load")} · as of ${asOf.toISOString().slice(0, 16).replace("T", " ")} UTC (worker clock)`;
  }

  function fillSelect(id, options, selected) {
    const select = document.getElementById(id);
    const wanted = ["", ...options.map(([value]) => value)].join("\u0000");
    const have = [...select.options].map((o) => o.value).join("\u0000");
    if (wanted !== have) {
      select.replaceChildren(el("option", { value: "", text: "all" }), ...options.map(([value, text]) => el("option", { value, text })));
    }
    select.value = selected;
  }

  async function refresh() {
    const query = new URLSearchParams({ open: "true", eta_within_h: state.hours, limit: "1000" });
    if (state.team) query.set("team", state.team);
    if (state.port) query.set("port", state.port);
    const banner = document.getElementById("banner");
    try {
      const response = await fetch("/v1/loads?" + query.toString(), { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        banner.textContent = `The status API answered ${response.status}: ${body.detail || response.statusText}`;
        banner.hidden = false;
        return;
      }
      banner.hidden = true;
      render(await response.json());
    } catch (err) {
      banner.textContent = "Connection to holdwatch lost; retrying…";
      banner.hidden = false;
    }
  }

  function onFilter() {
    state.team = document.getElementById("team").value;
    state.port = document.getElementById("port").value;
    state.hours = document.getElementById("hours-select").value;
    document.getElementById("hours").textContent = state.hours;
    const query = new URLSearchParams();
    if (state.team) query.set("team", state.team);
    if (state.port) query.set("port", state.port);
    if (state.hours !== defaultHours) query.set("hours", state.hours);
    history.replaceState(null, "", query.toString() ? "?" + query.toString() : window.location.pathname);
    refresh();
  }

  document.addEventListener("keydown", (event) => {
    if (!["ArrowDown", "ArrowUp", "j", "k"].includes(event.key) || event.target.tagName === "SELECT") return;
    const rows = [...document.querySelectorAll("tr.load")];
    if (!rows.length) return;
    const at = rows.indexOf(document.activeElement);
    const step = event.key === "ArrowDown" || event.key === "j" ? 1 : -1;
    rows[Math.max(0, Math.min(rows.length - 1, at < 0 ? 0 : at + step))].focus();
    event.preventDefault();
  });

  const hoursSelect = document.getElementById("hours-select");
  if (![...hoursSelect.options].some((o) => o.value === state.hours)) hoursSelect.append(el("option", { text: state.hours }));
  hoursSelect.value = state.hours;
  document.getElementById("hours").textContent = state.hours;
  for (const id of ["team", "port", "hours-select"]) document.getElementById(id).addEventListener("change", onFilter);
  refresh();
  setInterval(refresh, POLL_MS);
})();
