// The inventory page's filters and selection graph. Inlined into the page by html.py (the page loads nothing).
// Data comes from the JSON block #inv-data, index-aligned with the rows of #secrets and the blocks of #details.
// Every label is set through textContent or setAttribute, never innerHTML: intent is authored by many teams.
// Ordering ties break on plain string comparison (not localeCompare) so the drawing never depends on a locale.
(function () {
  'use strict';
  var started = performance.now();
  var dataNode = document.getElementById('inv-data');
  if (!dataNode) { return; }
  var D = JSON.parse(dataNode.textContent);
  var S = D.secrets;
  var CAP = D.graph.maxRows;          // rows per graph column; the rest merge into one "+N more" node
  var DETAIL = D.graph.detailLimit;   // up to this many secrets, one node per secret (and the workloads)
  var MAX_EDGES = D.graph.maxEdges;   // the heaviest edges drawn; every node keeps at least its heaviest one
  var SVGNS = 'http://www.w3.org/2000/svg';
  var rows = document.querySelectorAll('#secrets tbody tr');
  var details = document.querySelectorAll('#details details.secret');
  var ownerRows = document.querySelectorAll('#owners tbody tr');
  var ui = {
    q: document.getElementById('f-q'), owner: document.getElementById('f-owner'),
    ns: document.getElementById('f-ns'), cls: document.getElementById('f-class'),
    count: document.getElementById('f-count'), reset: document.getElementById('f-reset'),
    more: document.getElementById('rows-more'), moreNote: document.getElementById('rows-note'),
    graph: document.getElementById('graph'), note: document.getElementById('graph-note')
  };
  var PAGE = D.pageRows;              // rows (and details) laid out per page: 2,000 at once take seconds
  var shown = [];                     // indexes of the rows currently laid out
  var selection = [];
  var limit = PAGE;
  var timings = { scriptMs: 0, filterMs: [] };
  window.inventoryPage = { timings: timings };
  if (rows.length !== S.length || details.length !== S.length) { return; }

  var hay = S.map(function (s) {
    var parts = [s.n, s.o, s.c, s.p, s.e.join(' ')];
    s.k.forEach(function (k) {
      parts.push(k[0] + '/' + k[1]);
      k[2].forEach(function (w) { parts.push(w[0] + '/' + w[1]); });
    });
    return parts.join(' ').toLowerCase();
  });

  function cmp(a, b) { return a < b ? -1 : a > b ? 1 : 0; }

  // ------------------------------------------------------------------------------------------------ state

  function current() {
    return { q: ui.q.value.trim(), owner: ui.owner.value, ns: ui.ns.value, cls: ui.cls.value };
  }

  function hasOption(select, value) {
    for (var i = 0; i < select.options.length; i++) { if (select.options[i].value === value) { return true; } }
    return false;
  }

  // The URL fragment carries the filters (#owner=a&class=runtime&q=db), so a view can be linked and a test can
  // open one; a fragment without "=" is an ordinary anchor (#secret-name) and leaves the filters alone.
  function fromHash() {
    var h = location.hash.slice(1);
    if (h.indexOf('=') < 0) {
      try { reveal(decodeURIComponent(h)); } catch (e) { /* a malformed fragment is no anchor */ }
      return false;
    }
    var p = new URLSearchParams(h);
    ui.q.value = p.get('q') || '';
    ui.owner.value = hasOption(ui.owner, p.get('owner') || '') ? (p.get('owner') || '') : '';
    ui.ns.value = hasOption(ui.ns, p.get('ns') || '') ? (p.get('ns') || '') : '';
    ui.cls.value = hasOption(ui.cls, p.get('class') || '') ? (p.get('class') || '') : '';
    return true;
  }

  function toHash(st) {
    var p = new URLSearchParams();
    if (st.owner) { p.set('owner', st.owner); }
    if (st.ns) { p.set('ns', st.ns); }
    if (st.cls) { p.set('class', st.cls); }
    if (st.q) { p.set('q', st.q); }
    var h = p.toString();
    if (location.hash.slice(1) === h) { return; }
    try { history.replaceState(null, '', h ? '#' + h : location.pathname + location.search); } catch (e) { /* file: */ }
  }

  function matches(i, st, terms) {
    var s = S[i];
    if (st.owner && s.o !== st.owner) { return false; }
    if (st.cls && s.c !== st.cls) { return false; }
    if (st.ns && !s.k.some(function (k) { return k[0] === st.ns; })) { return false; }
    for (var t = 0; t < terms.length; t++) { if (hay[i].indexOf(terms[t]) < 0) { return false; } }
    return true;
  }

  function apply(writeHash) {
    var t0 = performance.now();
    var st = current();
    var terms = st.q.toLowerCase().split(/\s+/).filter(Boolean);
    var sel = [];
    var perOwner = {};
    for (var i = 0; i < S.length; i++) {
      if (matches(i, st, terms)) { sel.push(i); perOwner[S[i].o] = (perOwner[S[i].o] || 0) + 1; }
    }
    selection = sel;
    limit = PAGE;
    layRows();
    ownerRows.forEach(function (tr) {
      var n = perOwner[tr.getAttribute('data-owner')] || 0;
      tr.hidden = n === 0;
      tr.cells[1].textContent = String(n);
    });
    ui.count.textContent = sel.length === S.length
      ? 'all ' + S.length + ' secrets'
      : sel.length + ' of ' + S.length + ' secrets';
    document.body.setAttribute('data-selected', String(sel.length));
    draw(graphOf(sel, st));
    if (writeHash) { toHash(st); }
    timings.filterMs.push(Math.round((performance.now() - t0) * 10) / 10);
  }

  // Only a page of the selection is laid out (class "on"; the CSS hides the rest once the script runs).
  function layRows() {
    shown.forEach(function (i) { rows[i].classList.remove('on'); details[i].classList.remove('on'); });
    shown = selection.slice(0, limit);
    shown.forEach(function (i) { rows[i].classList.add('on'); details[i].classList.add('on'); });
    var rest = selection.length - shown.length;
    ui.more.hidden = rest === 0;
    ui.more.textContent = 'show ' + Math.min(rest, PAGE) + ' more';
    ui.moreNote.textContent = rest ? 'Showing ' + shown.length + ' of ' + selection.length + ' selected secrets.' : '';
  }

  // An anchor to a secret (#secret-name) shows its detail even when it is outside the page laid out.
  function reveal(id) {
    var d = id && document.getElementById(id);
    if (!d || !d.classList.contains('secret')) { return; }
    d.classList.add('on');
    d.open = true;
    d.scrollIntoView();
  }

  function setFilters(st) {
    if ('q' in st) { ui.q.value = st.q; }
    if ('owner' in st) { ui.owner.value = st.owner; }
    if ('ns' in st) { ui.ns.value = st.ns; }
    if ('cls' in st) { ui.cls.value = st.cls; }
    apply(true);
  }
  window.inventoryPage.setFilters = setFilters;

  // ------------------------------------------------------------------------------------------------ graph

  // Owner -> secret (or a group per owner and class when the selection is large) -> consumer namespace
  // [-> workload restarted, per secret only]. Each column keeps its CAP heaviest nodes; the rest become one node.
  function graphOf(sel, st) {
    var detail = sel.length <= DETAIL;
    var nodes = {};
    var edges = {};
    function node(id, col, label, style, filter) {
      var n = nodes[id];
      if (!n) {
        n = nodes[id] = { id: id, col: col, label: label, sub: '', style: style, w: 0, filter: filter,
          secrets: {}, row: 0 };
      }
      return n;
    }
    function count(n, name) { if (!n.secrets[name]) { n.secrets[name] = 1; n.w++; } }
    function link(a, b, name) {
      var key = a + '\u0000' + b;
      var e = edges[key] || (edges[key] = { a: a, b: b, secrets: {}, w: 0 });
      if (!e.secrets[name]) { e.secrets[name] = 1; e.w++; }
    }
    sel.forEach(function (i) {
      var s = S[i];
      var o = node('o:' + s.o, 0, s.o, 'owner', { owner: s.o });
      count(o, s.n);
      var sid = detail ? 's:' + s.n : 'g:' + s.o + '\u0000' + s.c;
      var sn = detail
        ? node(sid, 1, s.n, s.c, null)
        : node(sid, 1, s.c, s.c, { owner: s.o, cls: s.c });
      sn.owner = s.o;
      sn.cls = s.c;
      count(sn, s.n);
      link(o.id, sid, s.n);
      s.k.forEach(function (k) {
        if (st.ns && k[0] !== st.ns) { return; }
        var nn = node('n:' + k[0], 2, k[0], 'namespace', { ns: k[0] });
        count(nn, s.n);
        link(sid, nn.id, s.n);
        if (!detail) { return; }
        k[2].forEach(function (w) {
          var wn = node('w:' + k[0] + '/' + w[0] + '/' + w[1], 3, w[1], 'workload', null);
          wn.sub = w[0] + ' \u00b7 ' + k[0];
          count(wn, s.n);
          link(nn.id, wn.id, s.n);
        });
      });
    });
    var columns = [[], [], [], []];
    Object.keys(nodes).forEach(function (id) { columns[nodes[id].col].push(nodes[id]); });
    var alias = {};
    var merged = [0, 0, 0, 0];
    var nouns = ['owners', detail ? 'secrets' : 'groups', 'namespaces', 'workloads'];
    // A node whose left neighbour stayed is kept first, so the drawn columns connect to each other.
    var leftOf = {};
    Object.keys(edges).forEach(function (key) { (leftOf[edges[key].b] || (leftOf[edges[key].b] = [])).push(edges[key].a); });
    function orphan(n) {
      return n.col > 0 && !(leftOf[n.id] || []).some(function (id) { return !alias[id]; }) ? 1 : 0;
    }
    columns = columns.map(function (col, ci) {
      col.forEach(function (n) { n.orphan = orphan(n); });
      col.sort(function (a, b) {
        return a.orphan - b.orphan || b.w - a.w || cmp(a.label, b.label) || cmp(a.id, b.id);
      });
      if (col.length <= CAP) { return col; }
      var kept = col.slice(0, CAP - 1);
      var rest = col.slice(CAP - 1);
      var more = { id: 'more:' + ci, col: ci, label: '+' + rest.length + ' more ' + nouns[ci], sub: '',
        style: 'more', w: 0, filter: null, secrets: {}, row: 0 };
      rest.forEach(function (n) {
        alias[n.id] = more.id;
        Object.keys(n.secrets).forEach(function (name) { count(more, name); });
      });
      merged[ci] = rest.length;
      nodes[more.id] = more;
      kept.push(more);
      return kept;
    });
    var merged_edges = {};
    Object.keys(edges).forEach(function (key) {
      var e = edges[key];
      var a = alias[e.a] || e.a;
      var b = alias[e.b] || e.b;
      var k2 = a + '\u0000' + b;
      var m = merged_edges[k2] || (merged_edges[k2] = { a: a, b: b, secrets: {}, w: 0 });
      Object.keys(e.secrets).forEach(function (name) { if (!m.secrets[name]) { m.secrets[name] = 1; m.w++; } });
    });
    var edgeList = Object.keys(merged_edges).sort().map(function (k) { return merged_edges[k]; });
    var hiddenEdges = 0;
    if (edgeList.length > MAX_EDGES) {
      var byWeight = edgeList.slice().sort(function (x, y) { return y.w - x.w; });  // stable: key order on ties
      var keep = new Set();
      var anchored = {};
      byWeight.forEach(function (e) {
        if (!anchored[e.b]) { anchored[e.b] = 1; keep.add(e); }
        if (!anchored[e.a]) { anchored[e.a] = 1; keep.add(e); }
      });
      byWeight.forEach(function (e) { if (keep.size < MAX_EDGES) { keep.add(e); } });
      hiddenEdges = edgeList.length - keep.size;
      edgeList = edgeList.filter(function (e) { return keep.has(e); });
    }
    columns.forEach(function (col) {
      col.forEach(function (n) {
        var c = n.w + ' secret' + (n.w === 1 ? '' : 's');
        if (n.col === 0 || n.col === 2 || n.style === 'more') { n.sub = c; }
        if (n.col === 1 && detail && n.style !== 'more') { n.sub = n.cls + ' \u00b7 ' + n.owner; }
        if (n.col === 1 && !detail && n.style !== 'more') { n.label = n.cls + ' (' + n.w + ')'; n.sub = n.owner; }
      });
    });
    order(columns, edgeList, nodes);
    return { columns: columns, edges: edgeList, nodes: nodes, detail: detail, merged: merged, nouns: nouns,
      total: sel.length, hiddenEdges: hiddenEdges };
  }

  // Owners alphabetically, every other column by the mean row of its neighbours on the left (one barycentre
  // sweep: cheap and deterministic); merged nodes go last.
  function order(columns, edgeList, nodes) {
    var left = {};
    edgeList.forEach(function (e) { (left[e.b] || (left[e.b] = [])).push(e.a); });
    columns.forEach(function (col, ci) {
      col.forEach(function (n) {
        var ls = left[n.id] || [];
        n.key = ci === 0 || !ls.length ? 0 : ls.reduce(function (t, id) { return t + nodes[id].row; }, 0) / ls.length;
      });
      col.sort(function (a, b) {
        return (a.style === 'more') - (b.style === 'more') || a.key - b.key || cmp(a.label, b.label) ||
          cmp(a.id, b.id);
      });
      col.forEach(function (n, i) { n.row = i; });
    });
  }

  function el(tag, attrs, parent) {
    var e = document.createElementNS(SVGNS, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(e); }
    return e;
  }

  function truncate(text, chars) {
    return text.length <= chars ? text : text.slice(0, Math.max(1, chars - 1)) + '\u2026';
  }

  var TITLES = ['Owners', 'Secrets', 'Consumer namespaces', 'Workloads restarted'];
  var ROW_H = 36, NODE_H = 30, GAP = 120, PAD = 12, HEAD = 28;

  function draw(g) {
    var cols = g.columns.filter(function (c, ci) { return ci < 3 || c.length > 0; });
    var widths = cols.map(function (col, ci) {
      var longest = col.reduce(function (m, n) { return Math.max(m, n.label.length * 7.2, n.sub.length * 6); },
        (TITLES[ci].length + 6) * 8 - 22);
      return Math.min(250, Math.max(120, longest + 22));
    });
    var xs = [PAD];
    for (var i = 1; i < cols.length; i++) { xs.push(xs[i - 1] + widths[i - 1] + GAP); }
    var tallest = cols.reduce(function (m, c) { return Math.max(m, c.length); }, 1);
    var width = xs[xs.length - 1] + widths[widths.length - 1] + PAD;
    var height = HEAD + tallest * ROW_H + PAD;
    var svg = el('svg', { 'class': 'inv-graph', width: width.toFixed(0), height: height.toFixed(0),
      viewBox: '0 0 ' + width.toFixed(0) + ' ' + height.toFixed(0), role: 'img',
      'aria-label': 'dependency graph of the selected secrets' });
    var box = {};
    cols.forEach(function (col, ci) {
      var t = el('text', { 'class': 'col-title', x: xs[ci].toFixed(1), y: '18' }, svg);
      t.textContent = TITLES[ci] + ' (' + (col.length + g.merged[ci] - (g.merged[ci] ? 1 : 0)) + ')';
      var offset = (tallest - col.length) * ROW_H / 2;
      col.forEach(function (n) {
        box[n.id] = { x: xs[ci], y: HEAD + offset + n.row * ROW_H + (ROW_H - NODE_H) / 2, w: widths[ci] };
      });
    });
    var edgeGroup = el('g', { 'class': 'edges' }, svg);
    g.edges.forEach(function (e) {
      var a = box[e.a], b = box[e.b];
      if (!a || !b) { return; }
      var x1 = a.x + a.w, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2, mid = (x1 + x2) / 2;
      var p = el('path', { 'class': 'edge', 'data-a': e.a, 'data-b': e.b,
        'stroke-width': Math.min(9, 1.2 + Math.log(e.w) / Math.LN2 * 1.3).toFixed(1),
        d: 'M' + x1.toFixed(1) + ',' + y1.toFixed(1) + ' C' + mid.toFixed(1) + ',' + y1.toFixed(1) + ' ' +
          mid.toFixed(1) + ',' + y2.toFixed(1) + ' ' + x2.toFixed(1) + ',' + y2.toFixed(1) }, edgeGroup);
      el('title', {}, p).textContent = e.w + ' secret' + (e.w === 1 ? '' : 's') + ': ' +
        truncate(Object.keys(e.secrets).sort().join(', '), 300);
    });
    var nodeGroup = el('g', { 'class': 'nodes' }, svg);
    cols.forEach(function (col) {
      col.forEach(function (n) {
        var b = box[n.id];
        var grp = el('g', { 'class': 'node ' + n.style + (n.filter || n.col === 1 && g.detail ? ' link' : ''),
          'data-id': n.id, 'data-col': String(n.col) }, nodeGroup);
        var tip = n.style === 'more' ? 'merged to keep the graph readable; narrow the selection to see them'
          : n.filter ? 'click to filter' : n.col === 1 ? 'click for its details' : '';
        el('title', {}, grp).textContent = n.label + (n.sub ? ' \u2014 ' + n.sub : '') + (tip ? ' (' + tip + ')' : '');
        el('rect', { x: b.x.toFixed(1), y: b.y.toFixed(1), width: b.w.toFixed(1), height: String(NODE_H), rx: '6' }, grp);
        el('text', { 'class': 'label', x: (b.x + 9).toFixed(1), y: (b.y + 12.5).toFixed(1) }, grp).textContent =
          truncate(n.label, Math.floor((b.w - 18) / 7.2));
        el('text', { 'class': 'sublabel', x: (b.x + 9).toFixed(1), y: (b.y + 24.5).toFixed(1) }, grp).textContent =
          truncate(n.sub, Math.floor((b.w - 18) / 6));
        grp.addEventListener('click', function () { activate(n, g); });
        grp.addEventListener('mouseenter', function () { highlight(svg, n.id, true); });
        grp.addEventListener('mouseleave', function () { highlight(svg, n.id, false); });
      });
    });
    ui.graph.replaceChildren(svg);
    var note;
    if (!g.total) {
      note = 'No secret matches the filters.';
    } else if (g.detail) {
      note = g.total + ' secret' + (g.total === 1 ? '' : 's') + ', each drawn with its consumers and restarts.';
    } else {
      note = g.total + ' secrets: more than ' + DETAIL + ', so secrets are grouped by owner and class ' +
        '(edge width grows with the number of secrets). Click an owner, group or namespace to narrow.';
    }
    var capped = g.merged.some(function (m) { return m > 0; });
    if (capped) { note += ' Columns show their ' + (CAP - 1) + ' largest nodes; the rest are merged.'; }
    if (g.hiddenEdges) { note += ' The ' + g.hiddenEdges + ' lightest edges are not drawn.'; }
    ui.note.textContent = note;
  }

  function highlight(svg, id, on) {
    svg.classList.toggle('dim', on);
    svg.querySelectorAll('.edge').forEach(function (p) {
      p.classList.toggle('hl', on && (p.getAttribute('data-a') === id || p.getAttribute('data-b') === id));
    });
  }

  function activate(n, g) {
    if (n.filter) {
      setFilters(n.filter);
      return;
    }
    if (n.col === 1 && g.detail && n.style !== 'more') { reveal('secret-' + n.label); }
  }

  // ------------------------------------------------------------------------------------------------ wiring

  ui.q.addEventListener('input', function () { apply(true); });
  [ui.owner, ui.ns, ui.cls].forEach(function (s) { s.addEventListener('change', function () { apply(true); }); });
  ui.reset.addEventListener('click', function () { setFilters({ q: '', owner: '', ns: '', cls: '' }); });
  ui.more.addEventListener('click', function () { limit += PAGE; layRows(); });
  window.addEventListener('hashchange', function () { if (fromHash()) { apply(false); } });
  fromHash();
  apply(false);
  timings.scriptMs = Math.round((performance.now() - started) * 10) / 10;
})();
