// blobstore status page: polls status.json every 2 s and renders it.
// Plain DOM, no framework, no build step. Data goes in with textContent only.
"use strict";

(function () {
  const POLL_MS = 2000;
  const ROLE_ORDER = { meta: 0, storage: 1, gateway: 2 };
  const SVG_NS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function bytes(n) {
    if (!n) return "0 B";
    const units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return (n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }

  function percent(used, capacity) {
    return capacity > 0 ? Math.min(100, (100 * used) / capacity) : 0;
  }

  function clock(t) {
    return new Date(t * 1000).toLocaleTimeString([], { hour12: false });
  }

  function dash(value) {
    return value === null || value === undefined ? "—" : String(value);
  }

  function setBar(bar, pct) {
    bar.style.width = pct.toFixed(1) + "%";
    const parent = bar.parentElement;
    parent.classList.toggle("warn", pct >= 80 && pct < 90);
    parent.classList.toggle("full", pct >= 90);
  }

  function renderHeader(data) {
    $("gateway").textContent = data.gateway;
    $("updated").textContent = "updated " + clock(data.sampled_at || data.now);
    const health = $("health");
    const down = data.totals.nodes - data.totals.up;
    let text = "healthy", cls = "badge-ok";
    if (!data.meta.leader) { text = "meta has no leader"; cls = "badge-bad"; }
    else if (down > 0) { text = down + " node" + (down > 1 ? "s" : "") + " not up"; cls = "badge-warn"; }
    else if ((data.repair.degraded_segments || 0) > 0 || (data.repair.repair_backlog || 0) > 0) {
      text = "repairing"; cls = "badge-warn";
    }
    health.textContent = text;
    health.className = "badge " + cls;
  }

  function renderCards(data) {
    const meta = data.meta;
    $("meta-leader").textContent = meta.leader || "no leader";
    $("meta-sub").textContent = meta.leader
      ? "term " + dash(meta.term) + " · commit " + dash(meta.commit_index) +
        " · applied " + dash(meta.last_applied)
      : (meta.error || "election in progress");
    $("nodes-up").textContent = data.totals.up + " / " + data.totals.nodes;
    $("nodes-sub").textContent = data.zones.length + " zone" + (data.zones.length === 1 ? "" : "s") +
      (data.map ? " · map epoch " + data.map.epoch + " · EC " + data.map.data_shards + "+" +
        data.map.parity_shards : "");
    const t = data.totals;
    const pct = percent(t.used_bytes, t.capacity_bytes);
    $("capacity").textContent = pct.toFixed(1) + "%";
    setBar($("capacity-bar"), pct);
    $("capacity-sub").textContent = bytes(t.used_bytes) + " of " + bytes(t.capacity_bytes) +
      " · " + t.shards + " shards";
    const repair = data.repair;
    $("repair-backlog").textContent = dash(repair.repair_backlog);
    $("repair-sub").textContent = dash(repair.degraded_segments) + " degraded · " +
      dash(repair.segments) + " segments · " + dash(repair.objects) + " objects";
  }

  function nodeCard(node) {
    const card = el("div", "node state-" + node.state);
    card.dataset.nodeId = node.id;
    const head = el("div", "node-head");
    head.append(el("span", "node-id", node.id), el("span", "role", node.role));
    if (node.raft === "leader") head.append(el("span", "leader-tag", "leader"));
    head.append(el("span", "state", node.state));
    card.append(head);
    const detail = [node.address];
    if (node.role === "meta") detail.push("raft " + (node.raft || "unknown"));
    if (node.heartbeat_age_s !== null) detail.push("heartbeat " + node.heartbeat_age_s.toFixed(1) + " s ago");
    card.append(el("div", "node-detail", detail.join(" · ")));
    if (node.role === "storage") {
      const pct = percent(node.used_bytes, node.capacity_bytes);
      const bar = el("div", "bar");
      const fill = el("span");
      bar.append(fill);
      card.append(bar);
      setBar(fill, pct);
      let text = bytes(node.used_bytes) + " of " + bytes(node.capacity_bytes) + " (" +
        pct.toFixed(0) + "%) · " + node.shard_count + " shards";
      if (node.scrub) {
        text += " · scrub " + node.scrub.checked + "/" + node.scrub.total +
          (node.scrub.corrupt_found ? ", " + node.scrub.corrupt_found + " corrupt" : "");
      }
      card.append(el("div", "node-detail", text));
    }
    return card;
  }

  function renderZones(data) {
    const container = $("zones");
    const columns = data.zones.map((zone) => {
      const column = el("div", "zone");
      column.dataset.zone = zone.name;
      const up = zone.nodes.filter((n) => n.state === "up").length;
      const title = el("h3");
      title.append(el("span", "", "zone " + zone.name), el("span", "muted", up + "/" + zone.nodes.length + " up"));
      column.append(title);
      const nodes = zone.nodes.slice().sort((a, b) =>
        (ROLE_ORDER[a.role] - ROLE_ORDER[b.role]) || a.id.localeCompare(b.id, undefined, { numeric: true }));
      for (const node of nodes) column.append(nodeCard(node));
      return column;
    });
    container.replaceChildren(...columns);
  }

  function renderReplicas(data) {
    const rows = data.meta.replicas.map((replica) => {
      const tr = el("tr");
      tr.dataset.replica = replica.id;
      const reachable = replica.reachable;
      tr.append(el("td", "", replica.id), el("td", "", replica.zone), el("td", "", replica.role || "unknown"),
        el("td", reachable === true ? "yes" : reachable === false ? "no" : "",
          reachable === true ? "yes" : reachable === false ? "no" : "—"),
        el("td", "", dash(replica.match_index)));
      return tr;
    });
    document.querySelector("#replicas tbody").replaceChildren(...rows);
    const error = $("meta-error");
    error.hidden = !data.meta.error;
    error.textContent = data.meta.error || "";
  }

  function ago(seconds) {
    return seconds >= 120 ? Math.round(seconds / 60) + " min ago" : Math.round(seconds) + " s ago";
  }

  function renderChart(data) {
    // Drawn at the element's pixel size (no stretched text); the time axis covers the
    // gateway's history: since it started, up to the last hour.
    const chart = $("backlog-chart");
    const W = Math.max(chart.clientWidth || 600, 200), H = Math.max(chart.clientHeight || 150, 100);
    const left = 34, right = 10, top = 8, bottom = 20;
    chart.setAttribute("viewBox", "0 0 " + W + " " + H);
    const history = data.repair.history.filter((p) => p[1] !== null || p[2] !== null);
    const now = data.sampled_at || data.now;
    const first = history.length ? history[0][0] : now;
    const span = Math.min(3600, Math.max(30, now - first));
    const start = now - span;
    let max = 4;
    for (const p of history) max = Math.max(max, p[1] || 0, p[2] || 0);
    max = niceCeiling(max);
    const x = (t) => left + ((Math.max(t, start) - start) / span) * (W - left - right);
    const y = (v) => top + (1 - v / max) * (H - top - bottom);
    const parts = [];
    for (const frac of [0, 0.5, 1]) {
      const v = max * frac;
      parts.push(svg("line", { class: "grid", x1: left, x2: W - right, y1: y(v), y2: y(v) }));
      parts.push(svg("text", { class: "axis", x: left - 6, y: y(v) + 4, "text-anchor": "end" },
        String(Math.round(v))));
    }
    for (const [label, t, anchor] of [[ago(span), start, "start"], [ago(span / 2), now - span / 2, "middle"],
      ["now", now, "end"]]) {
      parts.push(svg("text", { class: "axis", x: x(t), y: H - 4, "text-anchor": anchor }, label));
    }
    for (const [index, cls] of [[2, "degraded"], [1, "backlog"]]) {
      const points = history.filter((p) => p[index] !== null && p[0] >= start)
        .map((p) => x(p[0]).toFixed(1) + "," + y(p[index]).toFixed(1));
      if (points.length === 1) points.unshift(x(start).toFixed(1) + "," + points[0].split(",")[1]);
      if (points.length) parts.push(svg("polyline", { class: cls, points: points.join(" ") }));
    }
    chart.replaceChildren(...parts);
  }

  function niceCeiling(v) {
    const power = Math.pow(10, Math.floor(Math.log10(v)));
    for (const step of [1, 2, 4, 6, 8, 10]) if (step * power >= v) return step * power;
    return 10 * power;
  }

  function renderEvents(data) {
    const list = $("events");
    if (!data.events.length) {
      list.replaceChildren(el("li", "muted", "none yet"));
      return;
    }
    list.replaceChildren(...data.events.map((event) => {
      const li = el("li");
      li.dataset.kind = event.kind;
      const time = el("time", "", clock(event.t));
      time.dateTime = new Date(event.t * 1000).toISOString();
      li.title = event.kind;
      li.append(el("span", "sev sev-" + event.severity), time, el("span", "", event.message));
      return li;
    }));
  }

  function render(data) {
    renderHeader(data);
    renderCards(data);
    renderZones(data);
    renderReplicas(data);
    renderChart(data);
    renderEvents(data);
    document.body.classList.remove("stale");
    document.body.dataset.rendered = "1";
  }

  async function poll() {
    try {
      const response = await fetch("status.json", { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
    } catch (error) {
      document.body.classList.add("stale");
      $("updated").textContent = "gateway unreachable: " + error.message;
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
