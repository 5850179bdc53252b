// MyHealth patient app: a hash-routed single page over the reports API.
//
// Routes: #/ (latest values), #/trends/<code>, #/reports[?cursor=…], #/reports/<id>.
// Sign-in: a link whose fragment is #token=<jwt> (the fragment never reaches a server); the
// token moves to sessionStorage and leaves the URL at once. Everything is built with DOM calls
// and textContent: no text from the API is ever parsed as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "myhealth.token";
  const PAGE_SIZE = 10;
  const TREND_POINTS = 500;
  /** Seconds in a day: uPlot's time axis counts seconds. */
  const DAY = 86400;
  /** Codes drawn on one chart: blood pressure is read as systolic over diastolic. */
  const GROUPS = [{ title: "Blood pressure", codes: ["8480-6", "8462-4"] }];
  const FLAGS = {
    H: { text: "High", symbol: "▲", css: "high" },
    L: { text: "Low", symbol: "▼", css: "low" },
    N: { text: "Normal", symbol: "●", css: "normal" },
  };
  const INSTRUMENTS = {
    blood_pressure: "Blood pressure",
    pulse_oximeter: "Pulse oximeter",
    thermometer: "Thermometer",
    scale: "Scale",
    height_meter: "Height",
    glucometer: "Glucose meter",
    ecg: "ECG",
  };
  /** Series styles differ by dash as well as colour, so they stay apart without colour. */
  const SERIES_STYLES = [
    { stroke: "#1f5fa8", dash: [] },
    { stroke: "#b4461b", dash: [8, 4] },
  ];

  const main = document.getElementById("main");
  const signOut = document.getElementById("sign-out");
  const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  let charts = [];
  /** Counts route changes, so that a slow answer for an old route is not shown. */
  let generation = 0;

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value !== null && value !== undefined && value !== false) {
        node.setAttribute(name, value === true ? "" : String(value));
      }
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
    }
    return node;
  }

  function when(iso) {
    if (!iso) return "unknown time";
    return el("time", { datetime: iso }, dateTime.format(new Date(iso)));
  }

  function flagBadge(flag) {
    const known = FLAGS[flag];
    if (!known) return el("span", { class: "flag none" }, "No range");
    return el("span", { class: "flag " + known.css, "data-flag": flag },
      el("span", { "aria-hidden": "true" }, known.symbol + " "), known.text);
  }

  function valueText(value, unit) {
    if (value === null || value === undefined) return "—";
    return unit ? value + " " + unit : String(value);
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  /** Takes a #token=… fragment into sessionStorage and removes it from the URL and history. */
  function takeTokenFromUrl() {
    const match = /^#token=([^&]+)/.exec(location.hash);
    if (!match) return;
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search + "#/");
  }

  class SignedOut extends Error {}

  async function api(path) {
    const current = token();
    if (!current) throw new SignedOut("not signed in");
    const response = await fetch(path, {
      headers: { Authorization: "Bearer " + current, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      throw new SignedOut("your session has ended");
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const detail = body && body.detail ? body.detail : "the server answered " + response.status;
      const error = new Error(detail);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  /** What a route shows: its name, its content and what to do once it is on the page. */
  function screen(view, content, after) {
    return { view: view, content: content, after: after };
  }

  function show(view, ...content) {
    for (const chart of charts) chart.destroy();
    charts = [];
    main.replaceChildren(...content.filter((node) => node !== null));
    main.dataset.view = view;
    signOut.hidden = !token();
    main.focus({ preventScroll: true });
  }

  function showSignIn(reason) {
    show("signin",
      el("h1", {}, "Sign in"),
      reason ? el("p", { class: "notice", role: "alert" }, "You are signed out: " + reason + ".") : null,
      el("p", {}, "Open MyHealth from the sign-in link of your clinic's patient portal. " +
        "On a local development stack, open the link that make run printed."));
  }

  async function home() {
    const summary = await api("/v1/me/summary").catch((error) => {
      if (error.status === 404) return null;
      throw error;
    });
    if (!summary) {
      return screen("home", [el("h1", {}, "Your latest values"), el("p", {}, "No reports yet.")]);
    }
    const items = summary.latest.map((entry) =>
      el("li", { class: "value", "data-code": entry.code },
        el("h2", {}, entry.name || entry.code),
        el("p", { class: "reading" }, valueText(entry.value, entry.unit)),
        flagBadge(entry.flag),
        el("p", { class: "when" }, when(entry.taken_at)),
        el("p", { class: "links" },
          el("a", { href: "#/trends/" + encodeURIComponent(entry.code) }, "Trend"),
          entry.report_id
            ? el("a", { href: "#/reports/" + encodeURIComponent(entry.report_id) }, "Report")
            : null)));
    return screen("home", [
      el("h1", {}, "Your latest values"),
      el("p", { class: "patient", "data-patient": summary.id }, summary.full_name || ""),
      el("ul", { class: "values" }, items)]);
  }

  async function trends(code) {
    const group = GROUPS.find((known) => known.codes.includes(code));
    const codes = group ? group.codes : [code];
    const series = await Promise.all(codes.map((one) =>
      api("/v1/me/trends?code=" + encodeURIComponent(one) + "&limit=" + TREND_POINTS)));
    const title = group ? group.title : series[0].name;
    const figure = el("figure", { class: "chart", "data-codes": codes.join(" ") });
    const table = el("table", { class: "points" },
      el("caption", {}, "Every value"),
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "Taken"),
        series.map((trend) => el("th", { scope: "col" }, trend.name)))),
      el("tbody", {}, pointRows(series)));
    const ranges = series.map((trend) => trend.reference_range
      ? el("li", {}, trend.name + ": reference range " + trend.reference_range.low + "–" +
        trend.reference_range.high + " " + trend.unit)
      : el("li", {}, trend.name + ": no reference range"));
    const more = series.some((trend) => trend.next_cursor)
      ? el("p", { class: "notice" }, "Showing the newest " + TREND_POINTS + " values.")
      : null;
    return screen("trends",
      [el("h1", {}, title), figure, el("ul", { class: "ranges" }, ranges), more, table],
      () => draw(figure, series));
  }

  /** One row per time: blood pressure's two values of one reading share a row. */
  function pointRows(series) {
    const rows = new Map();
    series.forEach((trend, index) => {
      for (const point of trend.points) {
        const row = rows.get(point.taken_at) || { taken_at: point.taken_at, cells: [] };
        row.cells[index] = point;
        rows.set(point.taken_at, row);
      }
    });
    return [...rows.values()].reverse().map((row) =>
      el("tr", {},
        el("td", {}, when(row.taken_at)),
        series.map((_, index) => {
          const point = row.cells[index];
          return el("td", {}, point ? [valueText(point.value, point.unit), " ", flagBadge(point.flag)] : "—");
        })));
  }

  function draw(figure, series) {
    const times = [...new Set(series.flatMap((trend) => trend.points.map((p) => p.taken_at)))].sort();
    const columns = series.map((trend) => {
      const byTime = new Map(trend.points.map((p) => [p.taken_at, Number(p.value)]));
      return times.map((time) => (byTime.has(time) ? byTime.get(time) : null));
    });
    const points = columns.reduce((sum, column) => sum + column.filter((v) => v !== null).length, 0);
    figure.dataset.points = String(points);
    figure.append(el("figcaption", {}, points + " values, oldest to newest"));
    if (typeof uPlot !== "function" || times.length === 0) return;
    const xs = times.map((time) => Date.parse(time) / 1000);
    const width = Math.max(280, Math.min(figure.clientWidth || 320, 900));
    const options = {
      width: width,
      height: Math.round(Math.min(320, width * 0.6)),
      series: [{}].concat(series.map((trend, index) => ({
        label: trend.name + " (" + trend.unit + ")",
        stroke: SERIES_STYLES[index % SERIES_STYLES.length].stroke,
        dash: SERIES_STYLES[index % SERIES_STYLES.length].dash,
        width: 2,
        points: { show: true, size: 7 },
        spanGaps: true,
      }))),
      // uPlot spans a lone reading over the next thousand days, the reading at the left edge;
      // a month around it reads better.
      scales: xs.length === 1 ? { x: { range: [xs[0] - 15 * DAY, xs[0] + 15 * DAY] } } : {},
      axes: [{}, { size: 50 }],
      cursor: { drag: { x: false, y: false } },
    };
    const data = [xs].concat(columns);
    const chart = new uPlot(options, data, figure);
    // The plotted data and series, for the browser test to compare with what the API answered.
    figure.uplot = chart;
    charts.push(chart);
  }

  async function reports(cursor) {
    const query = "limit=" + PAGE_SIZE + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
    const page = await api("/v1/me/reports?" + query);
    const items = page.items.map((report) =>
      el("li", { class: "report", "data-report": report.id },
        el("a", { href: "#/reports/" + encodeURIComponent(report.id) },
          el("strong", {}, INSTRUMENTS[report.instrument.type] || report.instrument.type),
          " · ", when(report.taken_at)),
        el("p", { class: "clinic" }, report.clinic.name || ""),
        el("p", { class: "measures" }, report.measurements.map((m) =>
          el("span", { class: "measure" }, (m.name || m.code) + " " + valueText(m.value, m.unit) + " ",
            flagBadge(m.flag))))));
    const paging = el("p", { class: "paging" },
      cursor ? el("a", { href: "#/reports", class: "first" }, "Newest reports") : null,
      page.next_cursor
        ? el("a", { href: "#/reports?cursor=" + encodeURIComponent(page.next_cursor), class: "older" },
          "Older reports")
        : el("span", { class: "end" }, "No older reports"));
    return screen("reports", [
      el("h1", {}, "Your reports"),
      items.length ? el("ol", { class: "reports" }, items) : el("p", {}, "No reports yet."),
      paging]);
  }

  async function report(id) {
    const found = await api("/v1/me/reports/" + encodeURIComponent(id)).catch((error) => {
      if (error.status === 404) return null;
      throw error;
    });
    // Another patient's report is not found either: the API does not say whose it is.
    if (!found) return notFound();
    const rows = found.measurements.map((m) =>
      el("tr", { "data-code": m.code },
        el("th", { scope: "row" }, m.name || m.code),
        el("td", {}, valueText(m.value, m.unit)),
        el("td", {}, m.reference_range
          ? m.reference_range.low + "–" + m.reference_range.high
          : "—"),
        el("td", {}, flagBadge(m.flag))));
    const notes = el("p", { class: "notes" });
    // Notes are the clinic's free text: shown as text, never as markup.
    notes.textContent = found.notes || "No notes.";
    return screen("report", [
      el("h1", { "data-report": found.id },
        INSTRUMENTS[found.instrument.type] || found.instrument.type),
      el("dl", { class: "facts" },
        el("dt", {}, "Taken"), el("dd", {}, when(found.taken_at)),
        el("dt", {}, "Clinic"), el("dd", {}, found.clinic.name || "—"),
        el("dt", {}, "Status"), el("dd", {}, found.status || "—")),
      el("table", { class: "measurements" },
        el("thead", {}, el("tr", {},
          el("th", { scope: "col" }, "Measurement"),
          el("th", { scope: "col" }, "Value"),
          el("th", { scope: "col" }, "Reference"),
          el("th", { scope: "col" }, "Flag"))),
        el("tbody", {}, rows)),
      el("h2", {}, "Notes"),
      notes,
      el("p", {}, el("a", { href: "#/reports" }, "All reports"))]);
  }

  function load(path, query) {
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    if (parts.length === 0) return home();
    if (parts[0] === "trends" && parts.length === 2) return trends(parts[1]);
    if (parts[0] === "reports" && parts.length === 1) return reports(query.get("cursor"));
    if (parts[0] === "reports" && parts.length === 2) return report(parts[1]);
    return Promise.resolve(notFound());
  }

  /** What an unknown route shows, and a report id that is not this patient's. */
  function notFound() {
    return screen("missing",
      [el("h1", {}, "Not found"), el("p", {}, el("a", { href: "#/" }, "Latest values"))]);
  }

  async function route() {
    takeTokenFromUrl();
    const mine = ++generation;
    main.dataset.ready = "false";
    if (!token()) {
      showSignIn(null);
      ready();
      return;
    }
    const [path, search] = location.hash.replace(/^#/, "").split("?");
    let result;
    try {
      result = await load(path || "/", new URLSearchParams(search || ""));
    } catch (error) {
      result = error instanceof SignedOut ? null : screen("error", [
        el("h1", {}, "Something went wrong"),
        el("p", { class: "notice", role: "alert" }, error.message)]);
      if (!result && mine === generation) showSignIn(error.message);
    }
    if (mine !== generation) return;
    if (result) {
      show(result.view, ...result.content);
      if (result.after) result.after();
    }
    ready();
  }

  /** Marks the page rendered for the route in the address bar (what tests wait for). */
  function ready() {
    main.dataset.route = location.hash;
    main.dataset.ready = "true";
  }

  signOut.addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    generation++;
    showSignIn("you signed out");
  });
  window.addEventListener("hashchange", route);
  route();
})();
