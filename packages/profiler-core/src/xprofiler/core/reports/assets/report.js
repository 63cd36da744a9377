/* xprofiler trace waterfall. Reads the JSON in #xp-data; builds the DOM with textContent only. */
(function () {
  "use strict";
  var ROW_H = 22, OVERSCAN = 15, INDENT = 14, MAX_INDENT = 40, OPEN_BUDGET = 2000;
  var F_ERR = 1, F_NOSTOP = 2, F_NOSTART = 4, F_ORPHAN = 8;
  var PALETTE = 12;

  var t0 = window.performance.now();
  var D = JSON.parse(document.getElementById("xp-data").textContent);
  var tParsed = window.performance.now();
  var S = D.strings, R = D.spans, n = R.length, total = D.duration > 0 ? D.duration : 0;
  var viewport = document.getElementById("xp-viewport");
  var canvas = document.getElementById("xp-canvas");
  var details = document.getElementById("xp-details");
  var status = document.getElementById("xp-status");

  var svcColor = {};
  D.services.forEach(function (si, k) { svcColor[si] = k % PALETTE; });

  // Structure: rows are depth-first, so a subtree is the run [i, end[i]).
  var parent = new Int32Array(n), depth = new Int32Array(n), end = new Int32Array(n);
  var kids = new Int32Array(n), errs = new Int32Array(n), expanded = new Uint8Array(n);
  var i, p;
  for (i = 0; i < n; i++) {
    p = R[i][0];
    parent[i] = p;
    depth[i] = p < 0 ? 0 : depth[p] + 1;
    if (p >= 0) kids[p]++;
  }
  for (i = n - 1; i >= 0; i--) {
    if (end[i] < i + 1) end[i] = i + 1;
    if (R[i][7] & F_ERR) errs[i]++;
    p = parent[i];
    if (p >= 0) {
      if (end[p] < end[i]) end[p] = end[i];
      errs[p] += errs[i];
    }
  }

  // Open levels while the visible rows stay within budget; deeper subtrees start collapsed.
  var perDepth = [];
  for (i = 0; i < n; i++) perDepth[depth[i]] = (perDepth[depth[i]] || 0) + 1;
  var level = 0, shown = perDepth[0] || 0;
  while (level + 1 < perDepth.length && shown + perDepth[level + 1] <= OPEN_BUDGET) {
    level++;
    shown += perDepth[level];
  }
  for (i = 0; i < n; i++) expanded[i] = depth[i] < level ? 1 : 0;
  // Errors matter most: open the path to the first few.
  var opened = 0;
  for (i = 0; i < n && opened < 20; i++) {
    if (R[i][7] & F_ERR) { revealAncestors(i); opened++; }
  }

  var vis = new Int32Array(n), visN = 0, sel = -1, pending = false;

  function rebuild() {
    visN = 0;
    var k = 0;
    while (k < n) {
      vis[visN++] = k;
      k = expanded[k] ? k + 1 : end[k];
    }
    canvas.style.height = (visN * ROW_H) + "px";
  }

  function revealAncestors(k) {
    for (var a = parent[k]; a >= 0; a = parent[a]) expanded[a] = 1;
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function fmt(ns) {
    if (ns === null || ns === undefined) return "?";
    var a = Math.abs(ns), sg = ns < 0 ? "-" : "";
    if (a < 1e3) return sg + a + " ns";
    if (a < 1e6) return sg + (a / 1e3).toPrecision(3) + " \u00b5s";
    if (a < 1e9) return sg + (a / 1e6).toPrecision(3) + " ms";
    if (a < 6e10) return sg + (a / 1e9).toPrecision(3) + " s";
    var m = Math.floor(a / 6e10);
    return sg + m + " min " + ((a - m * 6e10) / 1e9).toFixed(1) + " s";
  }

  function where(r) {
    var svc = S[r[2]], host = S[r[3]];
    return host ? svc + "@" + host : svc;
  }

  function durText(r) {
    if (r[5] === null) return "no start";
    if (r[6] === null) return "unfinished";
    return fmt(r[6] - r[5]);
  }

  function rowEl(pos) {
    var k = vis[pos], r = R[k], f = r[7];
    var row = el("div", "xp-row");
    row.dataset.i = String(k);
    row.setAttribute("role", "treeitem");
    row.setAttribute("aria-level", String(depth[k] + 1));
    row.setAttribute("aria-selected", k === sel ? "true" : "false");
    row.style.top = (pos * ROW_H) + "px";
    if (f & F_ERR) row.classList.add("err");
    if (f & (F_NOSTOP | F_NOSTART)) row.classList.add("open");
    if (k === sel) row.classList.add("sel");

    var name = el("div", "xp-c-name");
    name.style.paddingLeft = (Math.min(depth[k], MAX_INDENT) * INDENT) + "px";
    var tw = el("span", "xp-tw", kids[k] ? (expanded[k] ? "\u25be" : "\u25b8") : "");
    if (kids[k]) {
      tw.dataset.toggle = "1";
      row.setAttribute("aria-expanded", expanded[k] ? "true" : "false");
    }
    name.appendChild(tw);
    name.appendChild(el("span", "xp-nm", S[r[1]]));
    if (kids[k] && !expanded[k]) {
      name.appendChild(el("span", "xp-badge", "+" + (end[k] - k - 1)));
      var inner = errs[k] - (f & F_ERR ? 1 : 0);
      if (inner > 0) name.appendChild(el("span", "xp-badge xp-e", inner + " err"));
    }
    if (f & F_ORPHAN) name.appendChild(el("span", "xp-badge", "orphan"));
    if (depth[k] > MAX_INDENT) name.title = "depth " + depth[k];

    var tl = el("div", "xp-c-tl");
    var bar = el("div", "xp-bar xp-s" + (svcColor[r[2]] || 0));
    var s0 = r[5] === null ? 0 : r[5];
    var s1 = r[6] === null ? total : r[6];
    if (r[6] === null) bar.classList.add("xp-open-end");
    if (r[5] === null) bar.classList.add("xp-open-start");
    if (total > 0) {
      bar.style.left = (100 * s0 / total) + "%";
      bar.style.width = (100 * Math.max(0, s1 - s0) / total) + "%";
    } else {
      bar.style.left = "0";
      bar.style.width = "100%";
    }
    tl.appendChild(bar);

    row.appendChild(name);
    row.appendChild(el("div", "xp-c-svc", where(r)));
    row.appendChild(el("div", "xp-c-dur", durText(r)));
    row.appendChild(tl);
    return row;
  }

  function render() {
    pending = false;
    var top = viewport.scrollTop, h = viewport.clientHeight || 600;
    var first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    var last = Math.min(visN, Math.ceil((top + h) / ROW_H) + OVERSCAN);
    var frag = document.createDocumentFragment();
    for (var pos = first; pos < last; pos++) frag.appendChild(rowEl(pos));
    canvas.replaceChildren(frag);
  }

  function schedule() {
    if (!pending) {
      pending = true;
      window.requestAnimationFrame(render);
    }
  }

  function posOf(k) {
    for (var q = 0; q < visN; q++) if (vis[q] === k) return q;
    return -1;
  }

  function scrollTo(k) {
    var q = posOf(k);
    if (q < 0) return;
    var top = q * ROW_H, h = viewport.clientHeight || 600;
    if (top < viewport.scrollTop || top + ROW_H > viewport.scrollTop + h) {
      viewport.scrollTop = Math.max(0, top - Math.floor(h / 3));
    }
  }

  function toggle(k, open) {
    if (!kids[k]) return;
    expanded[k] = open === undefined ? (expanded[k] ? 0 : 1) : (open ? 1 : 0);
    rebuild();
    render();
  }

  function pre(text, cls) {
    var e = el("pre", cls, text);
    return e;
  }

  function show(value) {
    if (value === undefined || value === null) return "";
    return typeof value === "string" ? value : JSON.stringify(value, null, 2);
  }

  function fn(info) {
    return info && typeof info === "object" && info.function && typeof info.function === "object"
      ? info.function : null;
  }

  function select(k) {
    sel = k;
    var r = R[k], f = r[7], si = r[9] || {}, so = r[10] || {};
    var box = document.createDocumentFragment();
    box.appendChild(el("h2", null, S[r[1]]));
    var dl = el("dl");
    function field(label, value) {
      dl.appendChild(el("dt", null, label));
      dl.appendChild(el("dd", null, value));
    }
    field("status", f & F_ERR ? "error" : (f & F_NOSTOP ? "unfinished (no stop recorded)"
      : (f & F_NOSTART ? "no start recorded" : "ok")));
    field("service", S[r[2]]);
    field("host", S[r[3]]);
    if (S[r[4]]) field("project", S[r[4]]);
    field("started", r[5] === null ? "not recorded" : "+" + fmt(r[5]));
    field("duration", durText(r));
    field("span id", r[8]);
    field("parent", parent[k] >= 0 ? S[R[parent[k]][1]] + " (" + R[parent[k]][8] + ")"
      : (f & F_ORPHAN ? "not in this trace: " + r[11] : "top level"));
    if (kids[k]) field("children", kids[k] + " (" + (end[k] - k - 1) + " spans below)");
    box.appendChild(dl);

    var fs = fn(si), fe = fn(so);
    if (fs && fs.name) { box.appendChild(el("h3", null, "function")); box.appendChild(pre(show(fs.name))); }
    if (fs && (fs.args !== undefined || fs.kwargs !== undefined)) {
      box.appendChild(el("h3", null, "arguments"));
      if (fs.args !== undefined) box.appendChild(pre("args: " + show(fs.args)));
      if (fs.kwargs !== undefined) box.appendChild(pre("kwargs: " + show(fs.kwargs)));
    }
    if (fe && fe.result !== undefined) {
      box.appendChild(el("h3", null, "result"));
      box.appendChild(pre(show(fe.result)));
    }
    if (f & F_ERR) {
      box.appendChild(el("h3", null, "exception"));
      box.appendChild(pre(show(so.etype) + ": " + show(so.message), "xp-exc"));
    }
    box.appendChild(el("h3", null, "start info"));
    box.appendChild(pre(show(r[9] || {})));
    box.appendChild(el("h3", null, "stop info"));
    box.appendChild(pre(r[6] === null ? "(no stop point)" : show(r[10] || {})));
    details.replaceChildren(box);
    details.dataset.span = r[8];
    render();
  }

  function reveal(k) {
    revealAncestors(k);
    rebuild();
    scrollTo(k);
    select(k);
  }

  function next(pred, from) {
    for (var step = 1; step <= n; step++) {
      var k = (from + step) % n;
      if (pred(k)) return k;
    }
    return -1;
  }

  function say(text, bad) {
    status.textContent = text;
    status.className = bad ? "xp-status-err" : "";
  }

  canvas.addEventListener("click", function (ev) {
    var row = ev.target.closest(".xp-row");
    if (!row) return;
    var k = Number(row.dataset.i);
    if (ev.target.closest("[data-toggle]")) toggle(k);
    else select(k);
    viewport.focus({ preventScroll: true });
  });
  canvas.addEventListener("dblclick", function (ev) {
    var row = ev.target.closest(".xp-row");
    if (row && !ev.target.closest("[data-toggle]")) toggle(Number(row.dataset.i));
  });
  viewport.addEventListener("scroll", schedule, { passive: true });
  window.addEventListener("resize", schedule);
  viewport.addEventListener("keydown", function (ev) {
    if (!visN) return;
    var q = sel >= 0 ? posOf(sel) : -1, k;
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      q = ev.key === "ArrowDown" ? Math.min(visN - 1, q + 1) : Math.max(0, q - 1);
      k = vis[q];
    } else if (ev.key === "ArrowRight" && sel >= 0) {
      if (kids[sel] && !expanded[sel]) { toggle(sel, true); ev.preventDefault(); return; }
      k = kids[sel] ? sel + 1 : sel;
    } else if (ev.key === "ArrowLeft" && sel >= 0) {
      if (kids[sel] && expanded[sel]) { toggle(sel, false); ev.preventDefault(); return; }
      k = parent[sel] >= 0 ? parent[sel] : sel;
    } else if (ev.key === "Enter" && sel >= 0) {
      toggle(sel);
      ev.preventDefault();
      return;
    } else {
      return;
    }
    ev.preventDefault();
    select(k);
    scrollTo(k);
    render();
  });
  document.getElementById("xp-expand").addEventListener("click", function () {
    expanded.fill(1);
    rebuild();
    render();
  });
  document.getElementById("xp-collapse").addEventListener("click", function () {
    expanded.fill(0);
    rebuild();
    viewport.scrollTop = 0;
    render();
  });
  document.getElementById("xp-next-error").addEventListener("click", function () {
    var k = next(function (j) { return (R[j][7] & F_ERR) !== 0; }, sel < 0 ? n - 1 : sel);
    if (k < 0) { say("no errors in this trace"); return; }
    say("");
    reveal(k);
  });
  document.getElementById("xp-find-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var q = document.getElementById("xp-find").value.toLowerCase();
    if (!q) return;
    var k = next(function (j) {
      var r = R[j];
      return S[r[1]].toLowerCase().indexOf(q) >= 0 || where(r).toLowerCase().indexOf(q) >= 0;
    }, sel < 0 ? n - 1 : sel);
    if (k < 0) { say("no span matches", true); return; }
    say("");
    reveal(k);
  });

  rebuild();
  render();
  // Timings for benchmarks (bench/bench_report_render.py reads them from the DOM).
  var root = document.documentElement.dataset, now = window.performance.now();
  root.parseMs = String(Math.round(tParsed - t0));
  root.scriptMs = String(Math.round(now - t0));
  root.readyMs = String(Math.round(now));
  root.ready = "1";
})();
