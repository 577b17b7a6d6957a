// Vigil dashboard: theme, charts (uPlot) and live updates over the
// WebSocket. Data comes from data-* attributes written by the server; the
// DOM is built with textContent only (never innerHTML with data).
(function () {
  'use strict';

  // ---- theme -------------------------------------------------------------
  var root = document.documentElement;
  function applyTheme(t) {
    if (t === 'light' || t === 'dark') { root.setAttribute('data-theme', t); } else { root.removeAttribute('data-theme'); }
  }
  function currentTheme() {
    var t = root.getAttribute('data-theme');
    if (t) { return t; }
    return window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }
  try { applyTheme(localStorage.getItem('vigil-theme')); } catch (e) { /* storage off */ }
  var toggle = document.getElementById('theme-toggle');
  if (toggle) {
    toggle.addEventListener('click', function () {
      var next = currentTheme() === 'dark' ? 'light' : 'dark';
      applyTheme(next);
      try { localStorage.setItem('vigil-theme', next); } catch (e) { /* storage off */ }
      redrawAll();
    });
  }

  // ---- formatting (mirrors format.rs) -------------------------------------
  function bytes(v) {
    var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'], i = 0;
    while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return i === 0 ? v.toFixed(0) + ' B' : v.toFixed(1) + ' ' + u[i];
  }
  function plain(v) { return (Math.abs(v) >= 100 || v % 1 === 0) ? v.toFixed(0) : String(Number(v.toPrecision(3))); }
  function fmt(v, unit) {
    if (v === null || v === undefined || !isFinite(v)) { return '—'; }
    switch (unit) {
      case 'percent': return (v * 100).toFixed(1) + '%';
      case 'seconds': return Math.abs(v) < 1 ? (v * 1000).toFixed(1) + ' ms' : v.toFixed(2) + ' s';
      case 'bytes': return bytes(v);
      case 'bytespersecond': return bytes(v) + '/s';
      case 'persecond': return plain(v) + '/s';
      default: return plain(v);
    }
  }
  // An axis label: enough decimals that neighbouring ticks differ.
  function tick(v, unit, incr) {
    if (unit === 'percent' || unit === 'plain') {
      var step = unit === 'percent' ? incr * 100 : incr;
      var d = step > 0 ? Math.min(4, Math.max(0, -Math.floor(Math.log10(step)))) : 1;
      return unit === 'percent' ? (v * 100).toFixed(d) + '%' : v.toFixed(d);
    }
    return fmt(v, unit);
  }
  function readJson(el, attr) {
    var raw = el && el.getAttribute(attr);
    if (!raw) { return null; }
    try { return JSON.parse(raw); } catch (e) { return null; }
  }

  // ---- charts -------------------------------------------------------------
  var charts = [];
  function cssVar(name) { return getComputedStyle(root).getPropertyValue(name).trim() || '#888'; }
  function countPoints(data) {
    var n = 0;
    for (var s = 1; s < data.length; s++) { for (var i = 0; i < data[s].length; i++) { if (data[s][i] !== null && data[s][i] !== undefined) { n++; } } }
    return n;
  }
  // el: the .chart container; names: a label per series; data: [xs, ys...].
  // A ratio axis from 0 up to a little above the highest value, never past
  // 100 % unless a value is (uPlot's own padding showed a busy CPU on a
  // 0-200 % axis).
  function percentRange(u, min, max) {
    if (min == null || max == null || !isFinite(min) || !isFinite(max)) return [0, 1];
    var lo = Math.min(0, min);
    var hi = max <= 0 ? 0.01 : (max <= 1 ? Math.min(1, max * 1.25) : max * 1.05);
    if (hi <= lo) hi = lo + 0.01;
    return [lo, hi];
  }
  function makeChart(el, unit, names, data, opts) {
    opts = opts || {};
    var palette = [cssVar('--chart'), cssVar('--chart2'), '#16a34a', '#ea580c', '#7c3aed', '#0891b2', '#ca8a04', '#be123c'];
    var series = [{}];
    // Few values (a fresh estate, a new series): draw them as dots too.
    var sparse = countPoints(data) < 30;
    names.forEach(function (n, i) {
      series.push({ label: n, stroke: palette[i % palette.length], width: 2, spanGaps: true,
        points: { show: sparse, size: 5, fill: palette[i % palette.length] },
        value: function (u, v) { return fmt(v, unit); } });
    });
    var axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--grid'), width: 1 }, ticks: { stroke: cssVar('--grid') } };
    var options = {
      width: Math.max(el.clientWidth, 200),
      height: opts.height || 130,
      series: series,
      legend: { show: names.length > 1 || !!opts.legend },
      scales: unit === 'percent' ? { x: { time: true }, y: { range: percentRange } } : { x: { time: true } },
      axes: [axis, Object.assign({}, axis, { size: 70, values: function (u, vals, ax, space, incr) { return vals.map(function (v) { return tick(v, unit, incr); }); } })],
      cursor: { drag: { x: false, y: false } }
    };
    var plot = new uPlot(options, data, el);
    var c = { el: el, plot: plot, unit: unit, names: names, data: data, opts: opts };
    el.setAttribute('data-points', String(countPoints(data)));
    charts.push(c);
    return c;
  }
  function setData(c, data) {
    c.data = data;
    c.plot.setData(data);
    c.el.setAttribute('data-points', String(countPoints(data)));
  }
  function redrawAll() {
    var old = charts;
    charts = [];
    old.forEach(function (c) { c.plot.destroy(); makeChart(c.el, c.unit, c.names, c.data, c.opts); });
  }
  var resizeTimer = null;
  window.addEventListener('resize', function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      charts.forEach(function (c) { c.plot.setSize({ width: Math.max(c.el.clientWidth, 200), height: c.opts.height || 130 }); });
    }, 150);
  });

  // ---- live socket ----------------------------------------------------------
  var stateEl = document.getElementById('live-state');
  function showState(cls, text) {
    if (!stateEl) { return; }
    stateEl.hidden = false;
    stateEl.className = 'live-state ' + cls;
    stateEl.querySelector('.text').textContent = text;
  }
  // Reconnect delay after `attempt` failures: 1 s doubling to 30 s, +-20 % jitter.
  function backoff(attempt) {
    var base = Math.min(30000, 1000 * Math.pow(2, Math.min(attempt, 5)));
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }
  // For the browser test's checks of the pure helpers.
  window.Vigil = { backoff: backoff, fmt: fmt };
  function connect(params, onFrame) {
    var attempt = 0;
    function open() {
      showState('connecting', attempt === 0 ? 'connecting…' : 'reconnecting…');
      var proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      var qs = Object.keys(params).map(function (k) { return encodeURIComponent(k) + '=' + encodeURIComponent(params[k]); }).join('&');
      var ws = new WebSocket(proto + '//' + location.host + '/ws/live?' + qs);
      ws.onopen = function () { attempt = 0; showState('live', 'live'); };
      ws.onmessage = function (ev) {
        var frame;
        try { frame = JSON.parse(ev.data); } catch (e) { return; }
        if (frame.type === 'error') { showState('connecting', 'live: ' + frame.message); return; }
        showState('live', 'live · ' + new Date(frame.t).toLocaleTimeString());
        onFrame(frame);
      };
      ws.onclose = function () {
        var wait = backoff(attempt++);
        showState('offline', 'offline · retry in ' + Math.round(wait / 1000) + ' s');
        setTimeout(open, wait);
      };
      ws.onerror = function () { /* onclose follows */ };
    }
    open();
  }

  function updateFigures(figures) {
    (figures || []).forEach(function (f) {
      var li = document.getElementById('metric-' + f.id);
      if (!li) { return; }
      var v = li.querySelector('.metric-value');
      if (v) { v.textContent = f.text; }
    });
  }

  // ---- pages ----------------------------------------------------------------
  var page = document.getElementById('page');
  var kind = page ? page.getAttribute('data-page') : null;

  if (kind === 'overview') {
    var live = readJson(page, 'data-live') || { interval_ms: 2000, window_s: 900 };
    var byId = {};
    var tileClasses = ['ok', 'warn', 'crit', 'unknown'];
    connect({ set: 'overview' }, function (frame) {
      if (frame.type === 'history') {
        frame.series.forEach(function (s) {
          var li = document.getElementById('metric-' + s[0]);
          if (!li) { return; }
          var el = li.querySelector('.chart');
          var data = [frame.ts.slice(), s[1].slice()];
          if (byId[s[0]]) { setData(byId[s[0]], data); } else {
            byId[s[0]] = makeChart(el, li.getAttribute('data-unit'), [li.querySelector('.metric-title').textContent], data);
          }
        });
        return;
      }
      if (frame.type !== 'tick') { return; }
      updateFigures(frame.figures);
      var t = frame.t / 1000;
      (frame.figures || []).forEach(function (f) {
        var c = byId[f.id];
        if (!c) { return; }
        var xs = c.data[0].concat([t]), ys = c.data[1].concat([f.value]);
        var cutoff = t - live.window_s;
        while (xs.length > 2 && xs[0] < cutoff) { xs.shift(); ys.shift(); }
        setData(c, [xs, ys]);
      });
      (frame.tiles || []).forEach(function (tile) {
        var li = document.getElementById('tile-' + tile.name);
        if (!li) { return; }
        tileClasses.forEach(function (k) { li.classList.remove(k); });
        li.classList.add(tile.badge['class']);
        li.querySelector('.icon').textContent = tile.badge.icon;
        li.querySelector('.status-word').textContent = tile.badge.label;
        li.querySelector('.reason').textContent = tile.reason;
      });
      var counts = document.getElementById('alert-counts');
      if (counts && frame.alerts) {
        var n = frame.alerts.firing + frame.alerts.pending;
        counts.textContent = n + ' active alert' + (n === 1 ? '' : 's') + ' (' + frame.alerts.firing + ' firing)';
      }
    });
  }

  if (kind === 'host') {
    var hc = readJson(page, 'data-charts');
    if (hc && hc.history) {
      hc.history.series.forEach(function (s) {
        var li = document.getElementById('metric-' + s[0]);
        if (!li) { return; }
        makeChart(li.querySelector('.chart'), hc.units[s[0]] || 'plain', [li.querySelector('.metric-title').textContent], [hc.history.ts, s[1]]);
      });
    }
    var hl = readJson(page, 'data-live');
    if (hl) {
      connect({ set: 'host', host: hl.host }, function (frame) { if (frame.type === 'tick') { updateFigures(frame.figures); } });
    }
    // The custom fields pick "custom" when edited.
    document.querySelectorAll('.range-picker input[type="datetime-local"]').forEach(function (input) {
      input.addEventListener('change', function () {
        var custom = document.querySelector('.range-picker input[value="custom"]');
        if (custom) { custom.checked = true; }
      });
    });
  }

  if (kind === 'model') {
    var mc = readJson(page, 'data-charts');
    if (mc) {
      document.querySelectorAll('[data-chart]').forEach(function (li) {
        var lines = mc.charts[li.getAttribute('data-chart')] || [];
        var data = [mc.ts].concat(lines.map(function (l) { return l[1]; }));
        makeChart(li.querySelector('.chart'), li.getAttribute('data-unit'), lines.map(function (l) { return l[0]; }), data, { legend: true });
      });
    }
  }

  if (kind === 'explore') {
    var ec = readJson(page, 'data-chart');
    var el = document.querySelector('.explore-chart');
    if (ec && el && ec.lines.length) {
      makeChart(el, 'plain', ec.lines.map(function (l) { return l[0]; }), [ec.ts].concat(ec.lines.map(function (l) { return l[1]; })), { height: 280, legend: true });
    }
  }
}());
