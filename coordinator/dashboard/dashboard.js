// The coordinator's read-only dashboard. Reads the JSON API, draws its own SVG charts.
// Routes (the URL's hash): #/ market, #/provider/<address>, #/job/<id>,
// #/costs/<address>?ts=<unix>&sig=<hex> (a requester's own costs: a signed link).
"use strict";

const DECIMALS = 6n;
const TERMINAL = new Set(["settled", "finalized", "failed", "reclaimed", "cancelled"]);
const PHASES = ["queued", "matched", "assign_tx_mined", "delivered", "all_committed",
  "all_revealed", "settle_tx_mined"];
const HOUR = 3600;
const SVGNS = "http://www.w3.org/2000/svg";
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const JOB_ID = /^0x[0-9a-fA-F]{64}$/;
const streams = [];

// ------------------------------------------------------------------ helpers
function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined) continue;
    node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return node;
}

function svg(tag, attrs, ...kids) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined) continue;
    node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return node;
}

async function getJSON(path, headers) {
  const response = await fetch(path, { headers: headers || {} });
  if (!response.ok) {
    throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`);
  }
  return response.json();
}

function prices(p) {
  // A GPU seat is billed per GPU-hour; a seat of a job asking for no GPU per CPU-hour.
  const cpu = `${tokens(p.price_per_cpu_hour)} tokens / CPU-hour`;
  return p.gpu_count ? `${tokens(p.price_per_gpu_hour)} tokens / GPU-hour, ${cpu}` : cpu;
}

function tokens(base) {
  // Integer base units (a decimal string) as tokens with 6 decimals, exactly.
  if (base === null || base === undefined) return "-";
  let v = BigInt(base);
  const sign = v < 0n ? "-" : "";
  if (v < 0n) v = -v;
  const unit = 10n ** DECIMALS;
  const frac = (v % unit).toString().padStart(Number(DECIMALS), "0");
  return `${sign}${v / unit}.${frac}`;
}

function sumBase(values) {
  return values.reduce((acc, v) => acc + BigInt(v || "0"), 0n).toString();
}

function clock(unix) {
  return unix ? new Date(unix * 1000).toLocaleTimeString() : "-";
}

function dayHour(unix) {
  const d = new Date(unix * 1000);
  return `${String(d.getHours()).padStart(2, "0")}:00`;
}

function seconds(s) {
  if (s === null || s === undefined) return "-";
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function ago(unix) {
  if (!unix) return "never";
  return `${seconds(Math.max(0, Date.now() / 1000 - unix))} ago`;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return i ? `${v.toFixed(1)} ${units[i]}` : `${v} B`;
}

function pct(x) {
  return x === null || x === undefined ? "-" : `${(100 * x).toFixed(1)}%`;
}

function short(hex) {
  return hex && hex.length > 14 ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : hex || "-";
}

function link(href, text, attrs) {
  return el("a", { href, ...(attrs || {}) }, text);
}

function card(label, value, id) {
  return el("div", { class: "card", id }, el("div", { class: "label" }, label),
    el("div", { class: "value" }, value));
}

function table(id, headers, rows) {
  const head = el("tr", {}, headers.map(h => el("th", { class: h.endsWith("#") ? "num" : "" },
    h.replace(/#$/, ""))));
  return el("table", { id }, el("thead", {}, head), el("tbody", {}, rows));
}

function td(value, cls) {
  return el("td", { class: cls || "" }, value);
}

function utilizationOf(h) {
  if (h.gpu_offered_s > 0) return Math.min(1, h.gpu_sold_s / h.gpu_offered_s);
  if (h.slot_offered_s > 0) return Math.min(1, h.slot_sold_s / h.slot_offered_s);
  return null;
}

function hourSlots(since, count, hours) {
  // One entry per hour from `since`, the stored period or null.
  const byBucket = new Map(hours.filter(h => h.resolution === HOUR).map(h => [h.bucket, h]));
  return Array.from({ length: count }, (_, i) => {
    const bucket = since + i * HOUR;
    return { bucket, row: byBucket.get(bucket) || null };
  });
}

// ------------------------------------------------------------------ charts
function barChart(id, slots, valueOf, titleOf) {
  // Hourly bars of a value in [0, 1]; the grey bar behind each is the whole hour offered.
  const width = 720, height = 140, pad = 24, n = Math.max(1, slots.length);
  const step = (width - 2 * pad) / n;
  const chart = svg("svg", { class: "chart", id, width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img" });
  const inner = height - 2 * pad;
  slots.forEach((slot, i) => {
    const x = pad + i * step;
    const value = slot.row ? valueOf(slot.row) : null;
    if (slot.row) {
      chart.append(svg("rect", { class: "offered", x: x + 1, y: pad, width: step - 2,
        height: inner }));
    }
    if (value !== null) {
      const h = Math.max(1, value * inner);
      const bar = svg("rect", { class: "bar", x: x + 1, y: pad + inner - h, width: step - 2,
        height: h, "data-bucket": slot.bucket, "data-value": value.toFixed(4) });
      bar.append(svg("title", {}, titleOf(slot.row)));
      chart.append(bar);
    }
    if (i % Math.max(1, Math.ceil(n / 12)) === 0) {
      chart.append(svg("text", { x, y: height - 6 }, dayHour(slot.bucket)));
    }
  });
  chart.append(svg("text", { x: 2, y: pad - 8 }, "100%"));
  chart.append(svg("text", { x: 2, y: pad + inner }, "0"));
  return chart;
}

function sparkline(values) {
  // Hourly utilization as a small line; hours with nothing offered read as 0.
  const width = 120, height = 26, n = Math.max(2, values.length);
  const points = values.map((v, i) =>
    `${(i * (width - 2) / (n - 1) + 1).toFixed(1)},${(height - 2 - (v || 0) * (height - 4)).toFixed(1)}`);
  return svg("svg", { class: "sparkline", width, height, viewBox: `0 0 ${width} ${height}` },
    svg("line", { class: "base", x1: 0, y1: height - 2, x2: width, y2: height - 2 }),
    svg("polyline", { points: points.join(" ") }));
}

function timeline(phases) {
  // One row per phase reached: a bar from the previous phase to this one.
  const known = PHASES.filter(p => phases[p] !== undefined);
  const width = 720, row = 18, left = 130, right = 70;
  const height = known.length * row + 10;
  const start = phases.queued, end = Math.max(...known.map(p => phases[p]));
  const scale = (width - left - right) / Math.max(1e-3, end - start);
  const chart = svg("svg", { class: "timeline", id: "timeline", width, height,
    viewBox: `0 0 ${width} ${height}`, role: "img" });
  known.forEach((p, i) => {
    const y = 5 + i * row;
    const from = i ? phases[known[i - 1]] : start;
    const x0 = left + (from - start) * scale;
    const x1 = left + (phases[p] - start) * scale;
    chart.append(svg("text", { x: 2, y: y + 12 }, p.replaceAll("_", " ")));
    chart.append(svg("rect", { class: "step", x: x0, y: y + 3, width: Math.max(2, x1 - x0),
      height: row - 6, "data-phase": p }));
    chart.append(svg("text", { x: Math.max(x1, x0 + 2) + 4, y: y + 12 },
      `+${seconds(phases[p] - start)}`));
  });
  return chart;
}

// ------------------------------------------------------------------ pages
async function overview(root) {
  const hours = 24;
  const [market, book, provHist, jobList] = await Promise.all([
    getJSON(`/history/market?hours=${hours}`),
    getJSON("/providers?limit=200"),
    getJSON(`/history/providers?hours=${hours}`),
    getJSON("/jobs?limit=50"),
  ]);
  const totals = market.hours.reduce((t, h) => ({
    jobs: t.jobs + h.jobs, failed: t.failed + h.failed,
    gpuOffered: t.gpuOffered + h.gpu_offered_s, gpuSold: t.gpuSold + h.gpu_sold_s,
    slotOffered: t.slotOffered + h.slot_offered_s, slotSold: t.slotSold + h.slot_sold_s,
    waits: t.waits + h.queue_waits, wait: t.wait + (h.queue_wait_mean_s || 0) * h.queue_waits,
  }), { jobs: 0, failed: 0, gpuOffered: 0, gpuSold: 0, slotOffered: 0, slotSold: 0, waits: 0,
    wait: 0 });
  const earnings = sumBase(market.hours.map(h => h.earnings));
  const util = utilizationOf({ gpu_offered_s: totals.gpuOffered, gpu_sold_s: totals.gpuSold,
    slot_offered_s: totals.slotOffered, slot_sold_s: totals.slotSold });
  root.append(el("h1", {}, "Market"));
  root.append(el("div", { class: "cards", id: "market-cards" },
    card("providers live", book.total, "card-providers"),
    card(`jobs ended (${hours} h)`, totals.jobs, "card-jobs"),
    card("failed", totals.failed, "card-failed"),
    card("GPU-hours sold / offered", `${(totals.gpuSold / 3600).toFixed(2)} / ${(totals.gpuOffered / 3600).toFixed(2)}`, "card-gpu"),
    card("slot-hours sold / offered", `${(totals.slotSold / 3600).toFixed(3)} / ${(totals.slotOffered / 3600).toFixed(2)}`, "card-slots"),
    card("utilization", pct(util), "card-utilization"),
    card("paid to providers", tokens(earnings), "card-earnings"),
    card("mean queue wait", totals.waits ? seconds(totals.wait / totals.waits) : "-", "card-wait"),
  ));
  root.append(el("h2", {}, `Utilization, hour by hour (last ${hours} h)`));
  const slots = hourSlots(market.since, hours, market.hours);
  root.append(barChart("market-chart", slots, utilizationOf, h =>
    `${dayHour(h.bucket)}: ${pct(utilizationOf(h))} — GPU ${seconds(h.gpu_sold_s)} of ${seconds(h.gpu_offered_s)}, slots ${seconds(h.slot_sold_s)} of ${seconds(h.slot_offered_s)}, ${h.jobs} jobs`));

  const latest = new Map();
  for (const p of market.prices) latest.set(`${p.gpu_model}/${p.dtype}`, p);
  if (latest.size) {
    root.append(el("h2", {}, "Price per verified TFLOP-hour (latest hour)"));
    root.append(table("prices", ["GPU model", "dtype", "mean#", "lowest#", "samples#"],
      [...latest.values()].map(p => el("tr", { class: "price-row" }, td(p.gpu_model), td(p.dtype),
        td(tokens(Math.round(p.price_mean || 0).toString()), "num"),
        td(tokens(Math.round(p.price_min || 0).toString()), "num"), td(p.samples, "num")))));
  }

  const series = new Map(provHist.providers.map(p =>
    [p.address, hourSlots(provHist.since, hours, p.hours)]));
  root.append(el("h2", {}, `Providers (${book.total})`));
  root.append(table("providers",
    ["provider", "GPU", "speed", "price", "reputation#", "free slots#", `utilization ${hours} h`],
    book.providers.map(p => {
      const speed = Object.entries(p.tflops).map(([dtype, tf]) =>
        `${dtype} ${tf.toPrecision(3)} TFLOPS ${p.verified.includes(dtype)
          ? `(verified ${ago(p.verified_at)})` : "(self-reported)"}`).join("; ") || "-";
      const hist = series.get(p.address) || [];
      const values = hist.map(s => s.row ? utilizationOf(s.row) : null);
      const last = [...values].reverse().find(v => v !== null);
      return el("tr", { class: "provider-row", "data-address": p.address },
        td(link(`#/provider/${p.address}`, short(p.address)), "mono"),
        td(p.gpu_count ? `${p.gpu_model} × ${p.gpu_count}` : "CPU only"),
        td(speed, "speed"),
        td(prices(p), "price"),
        td(p.reputation.toFixed(3), "num"),
        td(p.free_slots, "num free-slots"),
        td([sparkline(values), ` ${pct(last)}`], "utilization"));
    })));

  root.append(el("h2", {}, "Jobs (newest 50, live)"));
  root.append(jobsTable("jobs", jobList.jobs));
  for (const job of jobList.jobs) {
    if (!TERMINAL.has(job.state)) follow(job.job_id, state => {
      const cell = document.querySelector(`tr[data-job="${job.job_id}"] td.state`);
      if (cell) {
        cell.textContent = state;
        cell.className = `state state-${state}`;
        cell.setAttribute("data-live", "sse");
      }
    });
  }
  return "overview";
}

function jobCost(job) {
  const paid = sumBase(job.providers.map(p => p.pay));
  const settled = job.state === "settled" || job.state === "finalized";
  return settled ? (BigInt(paid) + BigInt(job.fee)).toString() : null;
}

function jobsTable(id, jobs) {
  return table(id, ["job", "state", "requester", "seats#", "created", "cost"], jobs.map(job =>
    el("tr", { class: "job-row", "data-job": job.job_id },
      td(link(`#/job/${job.job_id}`, short(job.job_id)), "mono"),
      td(job.state, `state state-${job.state}`),
      td(short(job.requester), "mono"),
      td(job.providers.filter(p => p.assigned_at !== null).length, "num"),
      td(clock(job.created_at)),
      td(tokens(jobCost(job)), "num cost"))));
}

function follow(jobId, onState) {
  // Server-sent events of one job, closed at a terminal state. The server replays a job's
  // events from the start on every connection, so after a reconnect the ones already
  // delivered are skipped: each event reaches onState once.
  const source = new EventSource(`/jobs/${jobId}/events`);
  streams.push(source);
  let delivered = 0, index = 0;
  source.onopen = () => { index = 0; };
  source.onmessage = message => {
    index += 1;
    if (index <= delivered) return;
    delivered = index;
    const event = JSON.parse(message.data);
    onState(event.state, event);
    if (TERMINAL.has(event.state)) source.close();
  };
}

async function providerPage(root, address) {
  const hours = 48;
  const [hist, book, jobList] = await Promise.all([
    getJSON(`/history/providers/${address}?hours=${hours}`),
    getJSON("/providers?limit=1000"),
    getJSON("/jobs?limit=500"),
  ]);
  const live = book.providers.find(p => p.address === address);
  const t = hist.total;
  root.append(el("h1", {}, "Provider ", el("span", { class: "mono" }, address)));
  root.append(el("p", { class: "muted" }, live
    ? `${live.gpu_count ? `${live.gpu_model} × ${live.gpu_count}` : "CPU only"}; ${prices(live)}; reputation ${live.reputation.toFixed(3)}; ${live.free_slots} free slots; last advert ${ago(live.last_seen)}`
    : "not in the live book now"));
  const failures = Object.values(t.failures).reduce((a, b) => a + b, 0);
  root.append(el("div", { class: "cards", id: "provider-cards" },
    card("GPU-hours offered", (t.gpu_offered_s / 3600).toFixed(2)),
    card("GPU-hours sold", (t.gpu_sold_s / 3600).toFixed(3)),
    card("GPU-hours idle", (t.gpu_idle_s / 3600).toFixed(2)),
    card("slot-seconds sold / offered", `${t.slot_sold_s.toFixed(1)} / ${t.slot_offered_s.toFixed(0)}`),
    card("seats delivered", t.jobs, "card-seats"),
    card("failures", failures, "card-failures"),
    card("earnings", tokens(t.earnings), "card-provider-earnings"),
  ));
  root.append(el("h2", {}, `Utilization, hour by hour (last ${hours} h)`));
  root.append(barChart("provider-chart", hourSlots(hist.since, hours, hist.hours), utilizationOf,
    h => `${dayHour(h.bucket)}: ${pct(utilizationOf(h))}, ${h.jobs} seats, earned ${tokens(h.earnings)}`));
  root.append(table("provider-hours",
    ["hour", "GPU offered#", "GPU sold#", "GPU idle#", "slots offered#", "slots sold#",
      "utilization#", "seats#", "failures", "earnings#"],
    [...hist.hours].reverse().map(h => el("tr", { class: "hour-row", "data-bucket": h.bucket },
      td(h.resolution === HOUR ? `${new Date(h.bucket * 1000).toLocaleDateString()} ${dayHour(h.bucket)}`
        : new Date(h.bucket * 1000).toLocaleDateString()),
      td(seconds(h.gpu_offered_s), "num"), td(seconds(h.gpu_sold_s), "num"),
      td(seconds(h.gpu_idle_s), "num"), td(seconds(h.slot_offered_s), "num"),
      td(seconds(h.slot_sold_s), "num"), td(pct(h.utilization), "num"), td(h.jobs, "num"),
      td(Object.entries(h.failures).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(", ") || "-"),
      td(tokens(h.earnings), "num earnings")))));
  root.append(el("h2", {}, "Its jobs"));
  root.append(jobsTable("provider-jobs",
    jobList.jobs.filter(j => j.providers.some(p => p.address === address))));
  return "provider";
}

async function jobPage(root, jobId) {
  const [job, explain] = await Promise.all([
    getJSON(`/jobs/${jobId}`), getJSON(`/jobs/${jobId}/explain`)]);
  root.append(el("h1", {}, "Job ", el("span", { class: "mono" }, job.job_id)));
  root.append(el("p", {}, "state ", el("span", { id: "job-state", class: `state state-${job.state}` },
    job.state), ` · requester ${job.requester} · redundancy ${job.redundancy}`));

  root.append(el("h2", {}, "Timeline"));
  root.append(timeline(job.phases));
  const start = job.phases.queued;
  root.append(table("phases", ["phase", "at", "since queued#", "step#"],
    PHASES.filter(p => job.phases[p] !== undefined).map((p, i, known) =>
      el("tr", { class: "phase-row", "data-phase": p, "data-at": job.phases[p] },
        td(p.replaceAll("_", " ")), td(clock(job.phases[p])),
        td(seconds(job.phases[p] - start), "num"),
        td(i ? seconds(job.phases[p] - job.phases[known[i - 1]]) : "-", "num")))));

  root.append(el("h2", {}, "Providers"));
  root.append(table("seats",
    ["seat#", "provider", "state", "outcome", "runtime#", "billed#", "rate / h#", "pay#",
      "slashed#", "detail"],
    job.providers.map(p => el("tr", { class: "seat-row", "data-address": p.address },
      td(p.seat, "num"), td(link(`#/provider/${p.address}`, short(p.address)), "mono"),
      td(p.state), td(p.outcome || "-", `outcome-${p.outcome}`),
      td(p.runtime_ms === null ? "-" : seconds(p.runtime_ms / 1000), "num"),
      td(p.billed_ms === null ? "-" : seconds(p.billed_ms / 1000), "num"),
      td(tokens(p.rate_per_hour), "num"), td(tokens(p.pay), "num pay"),
      td(p.slashed ? tokens(p.slashed) : "-", "num"), td(p.detail || "")))));

  root.append(el("h2", {}, "Verification"));
  const paid = job.providers.filter(p => p.outcome === "paid");
  const slashed = job.providers.filter(p => p.outcome === "slashed");
  root.append(el("p", { id: "verification" },
    job.result_cid ? `result ${job.result_cid}: ` : "no result: ",
    `${paid.length} seat(s) paid, ${slashed.length} slashed`,
    job.failure ? ` — failed: ${job.failure.reason}` : ""));
  if (explain.declines.length) {
    root.append(el("p", { class: "muted" }, `declined: ${explain.declines.map(d =>
      `${short(d.address)} (${d.reason})`).join("; ")}`));
  }

  root.append(el("h2", {}, "Cost"));
  const pay = sumBase(job.providers.map(p => p.pay));
  const settled = job.state === "settled" || job.state === "finalized";
  root.append(table("costs", ["item", "tokens#"], [
    ...job.providers.filter(p => p.pay).map(p =>
      el("tr", {}, td(`seat ${p.seat} (${short(p.address)})`), td(tokens(p.pay), "num"))),
    el("tr", {}, td("coordinator fee"), td(settled ? tokens(job.fee) : "-", "num")),
    el("tr", { id: "cost-total" }, td("total"), td(tokens(jobCost(job)), "num total")),
    el("tr", {}, td("refunded"), td(tokens(job.refund), "num")),
    el("tr", {}, td("price cap per seat"), td(tokens(job.price_cap), "num")),
  ]));
  if (!settled) root.append(el("p", { class: "muted" }, `paid so far: ${tokens(pay)}`));

  root.append(el("h2", {}, "Events (live)"));
  const list = el("ul", { class: "events", id: "events" });
  root.append(list);
  follow(job.job_id, (state, event) => {
    list.append(el("li", { class: "event", "data-state": state },
      `${clock(event.at)} ${state} ${JSON.stringify(event.detail)}`));
    const badge = document.getElementById("job-state");
    if (badge) {
      badge.textContent = state;
      badge.className = `state state-${state}`;
    }
  });
  return "job";
}

async function costsPage(root, address, params) {
  const headers = {
    "X-Gpumarket-Address": address,
    "X-Gpumarket-Timestamp": params.get("ts") || "",
    "X-Gpumarket-Signature": params.get("sig") || "",
  };
  const hours = Number(params.get("hours") || 24 * 7);
  const hist = await getJSON(`/history/requesters/${address}?hours=${hours}`, headers);
  root.append(el("h1", {}, "Costs of ", el("span", { class: "mono" }, address)));
  const t = hist.total;
  root.append(el("div", { class: "cards", id: "costs-cards" },
    card("jobs ended", t.jobs), card("failed", t.failed),
    card("spent", tokens(t.spend), "card-spend"), card("of it fees", tokens(t.fees)),
    card("refunded", tokens(t.refunds), "card-refunds"),
    card("data moved", bytes(t.data_bytes), "card-data")));
  root.append(table("requester-hours",
    ["period", "jobs#", "failed#", "spent#", "refunded#", "data moved#"],
    [...hist.hours].reverse().map(h => el("tr", { class: "hour-row" },
      td(`${new Date(h.bucket * 1000).toLocaleDateString()} ${dayHour(h.bucket)}`),
      td(h.jobs, "num"), td(h.failed, "num"), td(tokens(h.spend), "num"),
      td(tokens(h.refunds), "num"), td(bytes(h.data_bytes), "num")))));
  return "costs";
}

// ------------------------------------------------------------------ router
async function route() {
  while (streams.length) streams.pop().close();
  const root = document.getElementById("app");
  root.replaceChildren();
  document.body.setAttribute("data-ready", "");
  const [path, query] = (location.hash.replace(/^#/, "") || "/").split("?");
  const parts = path.split("/").filter(Boolean);
  let page;
  try {
    if (parts[1] && !(parts[0] === "job" ? JOB_ID : ADDRESS).test(parts[1])) {
      throw new Error(`not ${parts[0] === "job" ? "a job id" : "an address"}: ${parts[1]}`);
    }
    if (parts[0] === "provider" && parts[1]) page = await providerPage(root, parts[1]);
    else if (parts[0] === "job" && parts[1]) page = await jobPage(root, parts[1]);
    else if (parts[0] === "costs" && parts[1]) {
      page = await costsPage(root, parts[1], new URLSearchParams(query || ""));
    } else page = await overview(root);
  } catch (error) {
    root.append(el("p", { class: "error", id: "error" }, String(error.message || error)));
    page = "error";
  }
  document.getElementById("updated").textContent = `as of ${new Date().toLocaleTimeString()}`;
  document.body.setAttribute("data-ready", page);
}

window.addEventListener("hashchange", route);
route();
