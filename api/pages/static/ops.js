/* bikefleet ops console: every figure on these pages comes from the /v1 API
 * (the same answers the API gives), read with the session cookie; requests
 * that change something carry the page's CSRF token. Maps draw on one canvas
 * per map (Leaflet for panning, zooming and the scale bar), so a city of
 * 25,000 cells costs no DOM node per cell. */
(function () {
  "use strict";

  const body = document.body;
  const page = body.dataset.page || "";
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";
  const scopes = new Set((body.dataset.scopes || "").split(" ").filter(Boolean));
  const has = (s) => scopes.has(s);

  // ---------------------------------------------------------------- helpers
  class ApiError extends Error {
    constructor(status, data) {
      super(errorText(status, data));
      this.status = status;
    }
  }

  function errorText(status, data) {
    if (data && typeof data === "object") {
      const d = data.detail;
      if (Array.isArray(d)) {
        return d.map((x) => (x.field ? x.field + ": " : "") + x.reason).join("; ");
      }
      return (d && String(d)) || data.error || "HTTP " + status;
    }
    return "HTTP " + status + (data ? ": " + String(data).slice(0, 200) : "");
  }

  async function api(path, opts) {
    opts = opts || {};
    const method = opts.method || "GET";
    const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    let payload = opts.body;
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(opts.json);
    }
    const r = await fetch(path, {
      method: method,
      headers: headers,
      body: payload,
      credentials: "same-origin",
    });
    const type = r.headers.get("content-type") || "";
    const data = type.includes("json") ? await r.json() : await r.text();
    if (!r.ok) throw new ApiError(r.status, data);
    return data;
  }

  function el(tag, attrs) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (let i = 2; i < arguments.length; i++) {
      const c = arguments[i];
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const $ = (id) => document.getElementById(id);
  const int = (v) => Math.round(Number(v)).toLocaleString("en");
  const num = (v, d) =>
    Number(v).toLocaleString("en", { minimumFractionDigits: d, maximumFractionDigits: d });
  const kg = (mg) => num(Number(mg) / 1e6, 1);

  function say(target, text, cls) {
    target.replaceChildren(el("p", { class: cls || "error", role: "alert" }, text));
  }

  function totals(dl, pairs) {
    dl.replaceChildren();
    for (const [label, value, key] of pairs) {
      if (value === undefined || value === null) continue;
      dl.append(el("div", { class: "kv" }, el("dt", {}, label), el("dd", { "data-key": key || null }, value)));
    }
  }

  /* A sortable table that renders one page of rows at a time (a city's
   * 25,000 cells stay one table, never 25,000 rows in the document). */
  function dataTable(target, columns, rows, opts) {
    opts = opts || {};
    const size = opts.pageSize || 50;
    let order = opts.sort || null;
    let desc = !!opts.desc;
    let shown = size;
    function render() {
      const sorted = rows.slice();
      if (order) {
        const c = columns.find((x) => x.key === order);
        const v = c.value || ((r) => r[c.key]);
        sorted.sort((a, b) => {
          const x = v(a);
          const y = v(b);
          const cmp = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
          return desc ? -cmp : cmp;
        });
      }
      const head = el("tr", {});
      for (const c of columns) {
        const th = el("th", { scope: "col", "data-col": c.key }, c.label);
        if (c.key === order) th.setAttribute("aria-sort", desc ? "descending" : "ascending");
        if (c.sortable !== false) {
          th.classList.add("sortable");
          th.addEventListener("click", () => {
            desc = order === c.key ? !desc : c.numeric !== false;
            order = c.key;
            render();
          });
        }
        head.append(th);
      }
      const tbody = el("tbody", {});
      for (const r of sorted.slice(0, shown)) {
        const tr = el("tr", {});
        for (const c of columns) {
          const v = c.render ? c.render(r) : r[c.key];
          tr.append(el("td", { class: c.numeric !== false && !c.render ? "n" : null }, v));
        }
        tbody.append(tr);
      }
      const table = el("table", { class: "data" }, el("thead", {}, head), tbody);
      const parts = [el("div", { class: "scroll" }, table)];
      if (sorted.length > shown) {
        const more = el("button", { type: "button", class: "more" },
          "Show more (" + int(shown) + " of " + int(sorted.length) + " rows shown)");
        more.addEventListener("click", () => { shown += size; render(); });
        parts.push(more);
      } else {
        parts.push(el("p", { class: "count" }, int(sorted.length) + " rows"));
      }
      target.replaceChildren(...parts);
    }
    render();
  }

  // ------------------------------------------------------------------- maps
  const TRUCK_COLOURS = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
  ];
  const truckColour = (t) => TRUCK_COLOURS[(t - 1) % TRUCK_COLOURS.length];

  function makeMap(id) {
    const tiles = body.dataset.tileUrl;
    const map = L.map(id, { preferCanvas: true, attributionControl: !!tiles, zoomSnap: 0.5 });
    if (tiles) L.tileLayer(tiles, { maxZoom: 19 }).addTo(map);
    L.control.scale({ imperial: false }).addTo(map);
    map.setView([0, 0], 2);
    return map;
  }

  /* One canvas over the map, redrawn after every move or zoom (a page
   * without a map, such as a driver sheet, loads no Leaflet). */
  const CanvasOverlay = !window.L ? null : L.Layer.extend({
    initialize: function (draw) {
      this._draw = draw;
    },
    onAdd: function (map) {
      this._map = map;
      this._canvas = L.DomUtil.create("canvas", "leaflet-zoom-hide overlay");
      map.getPanes().overlayPane.appendChild(this._canvas);
      map.on("moveend zoomend resize viewreset", this.redraw, this);
      this.redraw();
    },
    onRemove: function (map) {
      L.DomUtil.remove(this._canvas);
      map.off("moveend zoomend resize viewreset", this.redraw, this);
    },
    redraw: function () {
      const map = this._map;
      if (!map) return;
      const size = map.getSize();
      const dpr = window.devicePixelRatio || 1;
      const c = this._canvas;
      L.DomUtil.setPosition(c, map.containerPointToLayerPoint([0, 0]));
      c.width = size.x * dpr;
      c.height = size.y * dpr;
      c.style.width = size.x + "px";
      c.style.height = size.y + "px";
      const ctx = c.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      const t0 = performance.now();
      // Spherical Mercator by hand (what Leaflet's CRS does), relative to the
      // container's top-left corner: a few multiplications per point.
      const scale = 256 * Math.pow(2, map.getZoom());
      const o = map.project(map.containerPointToLatLng([0, 0]));
      const k = Math.PI / 180;
      const xy = (lat, lng) => {
        const s = Math.sin(Math.max(-85.0511, Math.min(85.0511, lat)) * k);
        return {
          x: ((lng + 180) / 360) * scale - o.x,
          y: (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * scale - o.y,
        };
      };
      this._draw(ctx, xy, map, size);
      body.dataset.redrawMs = (performance.now() - t0).toFixed(1); // bench/console.py
    },
  });

  function metresPerPixel(map) {
    const lat = map.getCenter().lat;
    return (40075016.686 * Math.cos((lat * Math.PI) / 180)) / Math.pow(2, map.getZoom() + 8);
  }

  /* Cells as squares about the size of an H3 cell at `res`. */
  function cellSide(map, res) {
    const edge = { 7: 1406, 8: 531, 9: 201, 10: 76 }[res] || 201;
    return Math.max(2, (1.7 * edge) / metresPerPixel(map));
  }

  function fit(map, points) {
    if (!points.length) return;
    map.fitBounds(L.latLngBounds(points), { padding: [20, 20], maxZoom: 16 });
  }

  function nearestIndex(map, items, latlng, px) {
    const p = map.latLngToContainerPoint(latlng);
    let best = -1;
    let bestD = px * px;
    items.forEach((s, i) => {
      const q = map.latLngToContainerPoint([s.lat, s.lng]);
      const d = (q.x - p.x) * (q.x - p.x) + (q.y - p.y) * (q.y - p.y);
      if (d <= bestD) { bestD = d; best = i; }
    });
    return best;
  }

  // --------------------------------------------------------------- overview
  async function overview() {
    const fig = (p) => document.querySelector('[data-figure="' + p + '"]');
    if (has("plans:read")) {
      try {
        const plans = (await api("/v1/plans?limit=1")).plans;
        fig("plan").textContent = plans.length
          ? "Latest: plan " + plans[0].plan_id + " for " + plans[0].date + ", " +
            int(plans[0].totals.bikes_moved) + " bikes moved"
          : "No plan yet";
      } catch (e) { fig("plan").textContent = e.message; }
    }
    if (has("zones:read")) {
      try {
        const z = await api("/v1/zones");
        fig("parking").textContent = "Zone set v" + z.version + ": " + int(z.zones) + " zones";
      } catch (e) { fig("parking").textContent = e.message; }
    }
  }

  // ------------------------------------------------------------------- plan
  function dayBefore(iso) {
    const d = new Date(iso + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() - 1);
    return d.toISOString().slice(0, 10);
  }

  async function planPage() {
    const map = makeMap("map");
    let stops = [];
    let cells = [];
    let cellsCity = null;
    let res = 9;
    const overlay = new CanvasOverlay((ctx, xy, m) => {
      const side = cellSide(m, res);
      for (const c of cells) {
        const imbalance = c.surplus - c.deficit;
        if (!imbalance) continue;
        const p = xy(c.lat, c.lng);
        const a = Math.min(0.7, 0.15 + Math.abs(imbalance) / 20);
        ctx.fillStyle = imbalance > 0 ? "rgba(33,102,172," + a + ")" : "rgba(214,96,77," + a + ")";
        ctx.fillRect(p.x - side / 2, p.y - side / 2, side, side);
      }
      let truck = null;
      ctx.lineWidth = 2.5;
      for (const s of stops) {
        const p = xy(s.lat, s.lng);
        if (s.truck !== truck) {
          if (truck !== null) ctx.stroke();
          truck = s.truck;
          ctx.strokeStyle = truckColour(truck);
          ctx.beginPath();
          ctx.moveTo(p.x, p.y);
        } else {
          ctx.lineTo(p.x, p.y);
        }
      }
      if (truck !== null) ctx.stroke();
      const label = stops.length <= 400 || m.getZoom() >= 14;
      ctx.font = "bold 10px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      for (const s of stops) {
        const p = xy(s.lat, s.lng);
        const pick = s.action === "pickup";
        ctx.beginPath();
        ctx.arc(p.x, p.y, label ? 8 : 4, 0, 2 * Math.PI);
        ctx.fillStyle = pick ? truckColour(s.truck) : "#fff";
        ctx.fill();
        ctx.lineWidth = 2;
        ctx.strokeStyle = truckColour(s.truck);
        ctx.stroke();
        if (label) {
          ctx.fillStyle = pick ? "#fff" : truckColour(s.truck);
          ctx.fillText(String(s.seq), p.x, p.y);
        }
      }
    }).addTo(map);
    map.on("click", (e) => {
      const i = nearestIndex(map, stops, e.latlng, 12);
      if (i < 0) return;
      const s = stops[i];
      L.popup()
        .setLatLng([s.lat, s.lng])
        .setContent(
          "Truck " + s.truck + ", stop " + s.seq + ": " +
          (s.action === "pickup" ? "load " : "unload ") + Math.abs(s.bikes) +
          " bikes at " + s.unit + " (ETA " + String(s.eta).slice(11, 16) + " UTC)"
        )
        .openOn(map);
    });

    const pick = $("plan-pick");
    let list = [];
    async function loadList(select) {
      list = (await api("/v1/plans?limit=50")).plans;
      pick.replaceChildren(
        ...list.map((p) =>
          el("option", { value: p.plan_id }, "#" + p.plan_id + " · " + p.city + " · " + p.date +
            (p.current ? "" : " (superseded)"))
        )
      );
      if (!list.length) {
        say($("plan-trucks"), "No plan in the store yet: make one below.", "empty");
        return;
      }
      const first = select || (list.find((p) => p.current) || list[0]).plan_id;
      pick.value = String(first);
      await show(first);
    }
    pick.addEventListener("change", () => show(pick.value));

    async function show(id) {
      const plan = await api("/v1/plans/saved/" + id);
      stops = plan.stops;
      const t = plan.totals;
      $("plan-title").textContent = plan.city + ", " + plan.date + " (plan " + plan.plan_id + ")";
      totals($("plan-totals"), [
        ["Bikes moved", int(t.bikes_moved), "bikes_moved"],
        ["Truck km", num(t.truck_km, 1), "truck_km"],
        ["Imbalance left", int(t.imbalance_left) + " of " + int(t.imbalance_total), "imbalance_left"],
        ["Trucks", plan.trucks + " × " + plan.capacity_bikes + " bikes, " + num(plan.shift_h, 1) + " h", "trucks"],
        t.handling_bound ? ["Share of the handling bound", num((100 * (t.bikes_dropped || 0)) / t.handling_bound, 0) + " %", "share"] : [null, null],
        t.baseline_bikes_dropped !== undefined ? ["By-hand baseline", int(t.baseline_bikes_dropped) + " bikes, " + num(t.baseline_truck_km, 1) + " km", "baseline"] : [null, null],
        ["Solver", plan.method + ", " + num(t.seconds, 1) + " s", "method"],
      ]);
      $("plan-notes").textContent = (plan.notes || []).join(" ");
      const before = list.find((p) => p.city === plan.city && p.date === dayBefore(plan.date) && p.current);
      $("plan-compare").textContent = before
        ? "Yesterday (plan " + before.plan_id + ", " + before.date + "): " + int(before.totals.bikes_moved) +
          " bikes moved, " + num(before.totals.truck_km, 1) + " truck km"
        : "No plan for the day before " + plan.date + " to compare with.";
      const byTruck = new Map();
      for (const s of stops) {
        const r = byTruck.get(s.truck) || { truck: s.truck, stops: 0, picked_up: 0, dropped_off: 0, first: s.eta, last: s.eta };
        r.stops += 1;
        if (s.action === "pickup") r.picked_up += Math.abs(s.bikes); else r.dropped_off += Math.abs(s.bikes);
        r.last = s.eta;
        byTruck.set(s.truck, r);
      }
      for (const k of plan.truck_rows || []) {
        const r = byTruck.get(k.truck);
        if (r) { r.km = k.km; r.hours = k.hours; }
      }
      const hhmm = (v) => String(v).slice(11, 16);
      dataTable($("plan-trucks"), [
        { key: "truck", label: "Truck", render: (r) => el("span", { class: "truck", style: null }, el("i", { class: "sw t" + (((r.truck - 1) % 10) + 1) }), " " + r.truck) , value: (r) => r.truck },
        { key: "stops", label: "Stops" },
        { key: "picked_up", label: "Bikes loaded" },
        { key: "dropped_off", label: "Bikes unloaded" },
        { key: "first", label: "First ETA (UTC)", render: (r) => hhmm(r.first), numeric: false },
        { key: "last", label: "Last ETA (UTC)", render: (r) => hhmm(r.last), numeric: false },
        { key: "km", label: "km", render: (r) => (r.km === undefined ? "—" : num(r.km, 1)), value: (r) => r.km || 0 },
        { key: "sheet", label: "Driver sheet", sortable: false, render: (r) => el("span", {},
            el("a", { href: "/ops/plan/" + plan.plan_id + "/truck/" + r.truck }, "print"), " · ",
            el("a", { href: "/ops/plan/" + plan.plan_id + "/truck/" + r.truck + ".pdf" }, "PDF")) },
      ], Array.from(byTruck.values()), { sort: "truck", desc: false });
      if (has("fleet:read") && cellsCity !== plan.city) {
        cellsCity = plan.city; // a plan of another city shades that city's cells
        try {
          const f = await api("/v1/fleet/cells?city=" + encodeURIComponent(plan.city));
          cells = f.cells;
          res = f.res;
        } catch (e) { cells = []; }
      }
      const where = stops.length ? stops : cells;
      fit(map, where.map((s) => [s.lat, s.lng]));
      overlay.redraw();
    }

    const form = $("plan-form");
    if (!has("plans:write")) {
      say($("plan-job"), "Making a plan needs a key with the scope plans:write.", "note");
      form.querySelector("button").disabled = true;
    }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fd = new FormData(form);
      const json = {};
      for (const k of ["city", "date"]) if (fd.get(k)) json[k] = fd.get(k);
      for (const k of ["trucks", "capacity", "time_limit_s"]) if (fd.get(k)) json[k] = Number(fd.get(k));
      const out = $("plan-job");
      try {
        const job = await api("/v1/plans", { method: "POST", json: json });
        await follow(job.job_id, json.time_limit_s || 10, out);
      } catch (e) { say(out, e.message); }
    });

    async function follow(jobId, limit, out) {
      const bar = el("progress", { max: "100", value: "0" });
      const status = el("span", { class: "status", "data-status": "queued" }, "queued");
      const search = el("span", { class: "search" });
      out.replaceChildren(el("p", {}, "Plan job " + jobId + ": ", status, " ", search), bar);
      let started = null;
      for (;;) {
        const job = await api("/v1/plans/" + jobId);
        status.textContent = job.status;
        status.dataset.status = job.status;
        if (job.status === "running" && started === null) started = Date.now();
        if (job.improvements) {
          search.textContent = "· " + job.improvements + " better solutions found, the last " +
            num(job.progress_s, 1) + " s into the search";
        }
        const elapsed = started === null ? 0 : (Date.now() - started) / 1000;
        bar.value = job.status === "done" ? 100 : Math.min(95, (100 * elapsed) / (limit + 5));
        if (job.status === "done") {
          out.append(el("p", {}, "Done: plan " + job.plan_id + ", " + int(job.totals.bikes_moved) + " bikes moved."));
          await loadList(job.plan_id);
          return;
        }
        if (job.status === "failed") {
          out.append(el("p", { class: "error", role: "alert" }, "Failed: " + (job.error || "unknown error")));
          return;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    }

    await loadList(null);
  }

  // ---------------------------------------------------------------- parking
  const KIND_STYLE = {
    service_area: { stroke: "#555", fill: "rgba(0,0,0,0.03)", label: "service area" },
    parking: { stroke: "#1a7f37", fill: "rgba(26,127,55,0.35)", label: "parking" },
    no_parking: { stroke: "#b42318", fill: "rgba(180,35,24,0.35)", label: "no parking" },
    gbfs: { stroke: "#6b5bd2", fill: "rgba(107,91,210,0.2)", label: "other rules" },
  };

  async function parkingPage() {
    const map = makeMap("map");
    let zones = [];
    let here = null;
    const overlay = new CanvasOverlay((ctx, xy, m, size) => {
      // Zones outside the view are skipped; a zone smaller than 3 px is a dot
      // (100,000 bays of a city seen whole are dots, not polygons).
      const b = m.getBounds().pad(0.05);
      const s = b.getSouth(), n = b.getNorth(), w = b.getWest(), e = b.getEast();
      for (const kind of ["service_area", "gbfs", "parking", "no_parking"]) {
        const st = KIND_STYLE[kind];
        ctx.fillStyle = st.fill;
        ctx.strokeStyle = st.stroke;
        ctx.lineWidth = kind === "service_area" ? 2 : 1;
        const dots = [];
        for (const z of zones) {
          if (z.kind !== kind) continue;
          const bb = z.bbox;
          if (bb[0] > n || bb[1] < s || bb[2] > e || bb[3] < w) continue;
          const lo = xy(bb[0], bb[2]);
          const hi = xy(bb[1], bb[3]);
          if (hi.x - lo.x < 3 && lo.y - hi.y < 3) { dots.push(lo); continue; }
          ctx.beginPath();
          for (const ring of z.rings) {
            ring.forEach(([lng, lat], i) => {
              const p = xy(lat, lng);
              if (i) ctx.lineTo(p.x, p.y); else ctx.moveTo(p.x, p.y);
            });
            ctx.closePath();
          }
          ctx.fill();
          ctx.stroke();
        }
        ctx.fillStyle = st.stroke;
        for (const p of dots) ctx.fillRect(p.x - 1, p.y - 1, 2, 2);
      }
      if (here) {
        const p = xy(here.lat, here.lng);
        if (here.nearest) {
          const q = xy(here.nearest.lat, here.nearest.lng);
          ctx.setLineDash([4, 4]);
          ctx.strokeStyle = "#111";
          ctx.beginPath(); ctx.moveTo(p.x, p.y); ctx.lineTo(q.x, q.y); ctx.stroke();
          ctx.setLineDash([]);
          ctx.fillStyle = "#1a7f37";
          ctx.beginPath(); ctx.arc(q.x, q.y, 5, 0, 2 * Math.PI); ctx.fill();
        }
        ctx.fillStyle = "#111";
        ctx.beginPath(); ctx.arc(p.x, p.y, 6, 0, 2 * Math.PI); ctx.fill();
      }
    }).addTo(map);
    const legend = $("zone-legend");
    legend.replaceChildren(...Object.entries(KIND_STYLE).map(([k, s]) =>
      el("li", {}, el("i", { class: "sw " + k }), s.label)));

    async function loadZones() {
      try {
        const info = await api("/v1/zones");
        $("zones-title").textContent = "zone set v" + info.version + ", " + int(info.zones) + " zones";
        const drawing = await api("/v1/zones/map");
        zones = drawing.zones;
        let all = null;
        for (const z of zones) {
          // [south, north, west, east] of the zone, for culling and dots.
          const bb = [90, -90, 180, -180];
          for (const r of z.rings) {
            for (const [lng, lat] of r) {
              if (lat < bb[0]) bb[0] = lat;
              if (lat > bb[1]) bb[1] = lat;
              if (lng < bb[2]) bb[2] = lng;
              if (lng > bb[3]) bb[3] = lng;
            }
          }
          z.bbox = bb;
          all = all ? [Math.min(all[0], bb[0]), Math.max(all[1], bb[1]), Math.min(all[2], bb[2]), Math.max(all[3], bb[3])] : bb.slice();
        }
        if (all) fit(map, [[all[0], all[2]], [all[1], all[3]]]);
        overlay.redraw();
      } catch (e) { $("zones-title").textContent = "(" + e.message + ")"; }
    }

    map.on("click", async (e) => {
      const dl = $("decision");
      if (!has("parking:check")) {
        say(dl, "Checking a point needs a key with the scope parking:check.", "note");
        return;
      }
      const lat = Number(e.latlng.lat.toFixed(6));
      const lng = Number(e.latlng.lng.toFixed(6));
      try {
        const d = await api("/v1/parking/check", { method: "POST", json: { lat: lat, lng: lng } });
        here = { lat: lat, lng: lng, nearest: d.nearest };
        totals(dl, [
          ["Point", lat.toFixed(6) + ", " + lng.toFixed(6), "point"],
          ["Decision", d.decision, "decision"],
          ["Zone", d.zone_id ? d.zone_id + (d.zone_name ? " (" + d.zone_name + ")" : "") : "none", "zone"],
          ["Reason", d.reason, "reason"],
          ["Nearest legal spot", d.nearest ? d.nearest.zone_id + ", " + num(d.nearest.distance_m, 0) + " m away" : "here", "nearest"],
          ["Zone set", "v" + d.zone_version, "zone_version"],
        ]);
        overlay.redraw();
      } catch (err) { say(dl, err.message); }
    });

    try {
      const c = await api("/v1/zones/compliance");
      $("audit-title").textContent = "(" + c.city + ", snapshot " + String(c.taken_at).slice(0, 16) +
        ": " + int(c.legal) + " of " + int(c.bikes) + " bikes legally parked)";
      dataTable($("compliance"), [
        { key: "zone_id", label: "Zone", numeric: false },
        { key: "zone_name", label: "Name", numeric: false },
        { key: "bikes", label: "Bikes" },
        { key: "legal", label: "Legal" },
        { key: "share_legal", label: "Legal share", render: (r) => num(100 * r.share_legal, 1) + " %", value: (r) => r.share_legal },
      ], c.zones, { sort: "share_legal", desc: false });
    } catch (e) { say($("compliance"), e.message, "note"); }

    const form = $("zones-form");
    if (!has("zones:write")) {
      say($("zones-result"), "Swapping the zone set needs a key with the scope zones:write.", "note");
      form.querySelector("button").disabled = true;
    }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const file = form.querySelector("input[type=file]").files[0];
      const out = $("zones-result");
      if (!file) return;
      out.replaceChildren(el("p", {}, "Uploading " + file.name + " ..."));
      try {
        const info = await api("/v1/zones", {
          method: "PUT",
          body: await file.text(),
          headers: { "Content-Type": "application/json" },
        });
        const warn = info.warnings || [];
        out.replaceChildren(
          el("p", { class: "ok", role: "status" }, "Zone set v" + info.version + " is active: " + int(info.zones) + " zones, " + warn.length + " warnings."),
          el("ul", {}, ...warn.map((w) => el("li", {}, w)))
        );
        await loadZones();
      } catch (e) { say(out, "Refused: " + e.message); }
    });

    await loadZones();
  }

  // ----------------------------------------------------------------- carbon
  function barChart(canvas, rows) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width;
    const h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    ctx.font = "12px system-ui, sans-serif";
    if (!rows.length) {
      ctx.fillStyle = "#555";
      ctx.fillText("No credited rides in this period.", 20, h / 2);
      return;
    }
    const max = Math.max(...rows.map((r) => r.value), 1);
    const left = 60;
    const bottom = h - 30;
    const bw = (w - left - 10) / rows.length;
    ctx.strokeStyle = "#999";
    ctx.beginPath(); ctx.moveTo(left, 10); ctx.lineTo(left, bottom); ctx.lineTo(w - 5, bottom); ctx.stroke();
    ctx.fillStyle = "#555";
    ctx.textAlign = "right";
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      const y = bottom - ((bottom - 15) * i) / 4;
      ctx.fillText(num(v, v < 10 ? 1 : 0), left - 6, y + 4);
    }
    ctx.textAlign = "center";
    rows.forEach((r, i) => {
      const bh = ((bottom - 15) * r.value) / max;
      ctx.fillStyle = "#2e7d32";
      ctx.fillRect(left + i * bw + bw * 0.15, bottom - bh, bw * 0.7, bh);
      ctx.fillStyle = "#333";
      ctx.fillText(r.label, left + i * bw + bw / 2, bottom + 16);
    });
  }

  async function carbonPage() {
    const form = $("carbon-form");
    const year = new Date().getUTCFullYear();
    form.elements.from.value = year + "-01-01";
    form.elements.to.value = year + "-12-31";
    async function show() {
      const q = new URLSearchParams({ from: form.elements.from.value, to: form.elements.to.value });
      if (form.elements.city.value) q.set("city", form.elements.city.value);
      try {
        const r = await api("/v1/reports/emissions?" + q + "&format=json");
        const t = r.totals;
        totals($("carbon-totals"), [
          ["CO2 avoided (kg)", kg(t.co2_mg), "co2"],
          ["Net of operations (kg)", kg(t.net_co2_mg), "net_co2"],
          ["CO avoided (g)", num(t.co_mg / 1000, 1), "co"],
          ["HC avoided (g)", num(t.hc_mg / 1000, 1), "hc"],
          ["NOx avoided (g)", num(t.nox_mg / 1000, 1), "nox"],
          ["PM avoided (g)", num(t.pm_mg / 1000, 2), "pm"],
          ["Points granted", int(t.points), "points"],
          ["Rides credited", int(t.rides_credited), "rides_credited"],
          ["Rides reversed", int(t.rides_reversed), "rides_reversed"],
          ["Rides excluded", int(t.rides_excluded), "rides_excluded"],
          ["Passenger-km", num(t.distance_m / 1000, 0), "passenger_km"],
        ]);
        barChart($("carbon-chart"), r.monthly.map((m) => ({ label: m.month, value: m.co2_mg / 1e6 })));
        dataTable($("carbon-excluded"), [
          { key: "reason", label: "Reason", numeric: false },
          { key: "description", label: "What it means", numeric: false },
          { key: "rides", label: "Rides" },
        ], r.exclusions, { sort: "rides", desc: true });
        $("carbon-ops").textContent = "Rebalancing trucks: " + kg(r.operations.co2_mg) + " kg CO2 (" + r.operations.note + ")";
        const links = $("carbon-downloads");
        links.replaceChildren(...["csv", "xlsx", "pdf", "html"].map((f) =>
          el("a", { href: "/v1/reports/emissions?" + q + "&format=" + f, download: "", "data-format": f, class: "button" }, f.toUpperCase())));
      } catch (e) { say($("carbon-totals"), e.message); }
    }
    form.addEventListener("submit", (ev) => { ev.preventDefault(); show(); });
    const rider = $("rider-form");
    rider.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = $("rider-out");
      if (!has("carbon:read")) { say(out, "A rider lookup needs a key with the scope carbon:read.", "note"); return; }
      try {
        const c = await api("/v1/riders/" + encodeURIComponent(rider.elements.rider.value) + "/carbon?recent=20");
        const dl = el("dl", { class: "totals" });
        totals(dl, [["Points", int(c.points), "rider_points"], ["CO2 avoided (g)", num(c.co2_g, 1), "rider_co2"], ["Ledger entries", int(c.entries_total), "rider_entries"]]);
        const box = el("div", {});
        out.replaceChildren(dl, box);
        dataTable(box, [
          { key: "entry_id", label: "Entry" },
          { key: "kind", label: "Kind", numeric: false },
          { key: "trip_id", label: "Trip", numeric: false },
          { key: "points", label: "Points" },
          { key: "co2_mg", label: "CO2 (g)", render: (r) => num(r.co2_mg / 1000, 1), value: (r) => r.co2_mg },
          { key: "created_at", label: "When (UTC)", render: (r) => String(r.created_at).slice(0, 16).replace("T", " "), numeric: false },
        ], c.entries, { sort: "entry_id", desc: true });
      } catch (e) { say(out, e.message); }
    });
    await show();
  }

  // ------------------------------------------------------------------ fleet
  async function fleetPage() {
    const map = makeMap("map");
    let cells = [];
    let res = 9;
    const overlay = new CanvasOverlay((ctx, xy, m) => {
      const side = cellSide(m, res);
      for (const c of cells) {
        const have = c.stock + c.incoming;
        const p = xy(c.lat, c.lng);
        let colour = "rgba(46,125,50,0.45)";
        if (have < c.target_low) colour = "rgba(214,96,77," + Math.min(0.8, 0.25 + (c.target_low - have) / 15) + ")";
        else if (have > c.target_high) colour = "rgba(33,102,172," + Math.min(0.8, 0.25 + (have - c.target_high) / 15) + ")";
        ctx.fillStyle = colour;
        ctx.fillRect(p.x - side / 2, p.y - side / 2, side, side);
      }
    }).addTo(map);
    try {
      const f = await api("/v1/fleet/cells");
      cells = f.cells;
      res = f.res;
      $("fleet-title").textContent = f.city + ": " + int(f.bikes) + " bikes in " + int(cells.length) +
        " cells at " + String(f.at).slice(0, 16).replace("T", " ") + " UTC";
      fit(map, cells.map((c) => [c.lat, c.lng]));
      overlay.redraw();
      dataTable($("fleet-table"), [
        { key: "cell", label: "Cell", numeric: false },
        { key: "stock", label: "Bikes" },
        { key: "incoming", label: "Riding in" },
        { key: "target_low", label: "Target low" },
        { key: "target_high", label: "Target high" },
        { key: "surplus", label: "Surplus" },
        { key: "deficit", label: "Deficit" },
      ], cells, { sort: "deficit", desc: true });
    } catch (e) { say($("fleet-table"), e.message); }
  }

  // ----------------------------------------------------------------- start
  const printButton = document.querySelector("[data-print]");
  if (printButton) printButton.addEventListener("click", () => window.print());
  const pages = { overview: overview, plan: planPage, parking: parkingPage, carbon: carbonPage, fleet: fleetPage };
  if (pages[page]) {
    pages[page]().then(
      () => {
        body.dataset.readyMs = Math.round(performance.now()); // since navigation
        body.setAttribute("data-ready", "1");
      },
      (e) => {
        body.setAttribute("data-ready", "error");
        const main = document.querySelector("main");
        main.prepend(el("p", { class: "error", role: "alert" }, e.message));
      }
    );
  }
})();
