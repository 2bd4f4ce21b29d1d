// convzoo explorer: draws, client-side in SVG, the JSON that `convzoo serve` computes with the real layer.
// State lives in the URL (?family=dilated&dilation=2&...&frame=N); every menu offers only values the server
// says are valid, so the page has no error state. Test hooks: input cells carry data-in="c,i,j", output cells
// data-out="c,i,j", intermediate (stage) cells data-mid="m,c,i,j" (1-D: one index, 3-D: d,i,j); cells
// highlighted by a hover carry the class "active"; the svg's data-ready is "grid", then "deps" once hover works.
'use strict';

const SVGNS = 'http://www.w3.org/2000/svg';
const CLIENT_KEYS = ['frame', 'counts'];
const $ = (id) => document.getElementById(id);
const prod = (a) => a.reduce((x, y) => x * y, 1);

let families = [];
let layer = null;        // /api/layer answer
let deps = null;         // per link: {rows, rowOf, patterns, patSets, S, nOut}
let token = 0;           // increases with every load; answers for an older state are dropped
let frame = null;        // pinned output (flat index into the last map), or null
let player = null;       // setInterval id while playing
let cells = [];          // cells[m][flat] = rect
let pads = [];           // pads[m] = Map("c|d|i|j" → rect)
let kernels = [];        // kernels[link] = [rect per tap]
let styled = [];         // elements carrying hover styles, to reset
let hoverId = 0;
const tapCache = new Map();

async function api(path) {
  const response = await fetch(path);
  let data;
  try { data = await response.json(); } catch (e) { throw new Error(`${path}: HTTP ${response.status}`); }
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function setStatus(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

function tapColor(t, n) {
  return `hsl(${Math.round((300 * t) / Math.max(1, n - 1))}, 75%, ${n > 1 ? 58 : 50}%)`;
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, content, cls = '') {
  const t = el('text', { x, y, class: cls }, parent);
  t.textContent = content;
  return t;
}

// ---- state and loading --------------------------------------------------------------------------------------

function apiQuery(params) {
  const q = new URLSearchParams(params);
  for (const k of CLIENT_KEYS) q.delete(k);
  return q.toString();
}

async function load(query, history = 'push') {
  const mine = ++token;
  stop();
  clearDrawing();
  setStatus('computing the layer…');
  try {
    const st = await api('/api/state?' + apiQuery(query));
    if (mine !== token) return;
    const notes = st.notes.join(' · ');
    $('notes').hidden = !notes;
    $('notes').textContent = notes ? 'URL adjusted: ' + notes : '';
    const data = await api('/api/layer?' + st.query);
    if (mine !== token) return;
    layer = data;
    const wanted = new URLSearchParams(query).get('frame');
    const nOut = prod(layer.maps[layer.maps.length - 1]);
    frame = wanted !== null && /^\d+$/.test(wanted) && +wanted < nOut ? +wanted : null;
    $('counts').checked = new URLSearchParams(query).get('counts') === '1';
    writeUrl(history);
    showControls();
    showNumbers();
    drawGrid();
    setStatus('computing which inputs each output reads (autograd)…');
    const linked = await api('/api/links?' + st.query);
    if (mine !== token) return;
    deps = linked.links.map((link, i) => decodeLinks(link, layer.maps[i], layer.maps[i + 1]));
    drawLinks(linked.links);
    $('svg').dataset.ready = 'deps';
    setStatus('hover a cell: an output shows the inputs and kernel taps it reads, an input the outputs that ' +
              'read it; click to pin; ▶ slides the window.');
    showFrame();
  } catch (error) {
    if (mine !== token) return;
    clearDrawing();
    setStatus(String(error.message || error), true);
  }
}

function writeUrl(history) {
  const q = new URLSearchParams(layer.query);
  if (frame !== null) q.set('frame', frame);
  if ($('counts').checked) q.set('counts', '1');
  const url = '?' + q.toString();
  if (url === location.search) return;
  if (history === 'push') window.history.pushState(null, '', url);
  else window.history.replaceState(null, '', url);
}

// ---- controls and numbers -----------------------------------------------------------------------------------

function optionLabel(name, value) {
  if (value === null) {
    const resolved = layer.effective[name];
    return resolved === null || resolved === undefined ? 'auto' : `auto (${resolved})`;
  }
  return String(value);
}

function showControls() {
  $('family').value = layer.family;
  const box = $('controls');
  box.textContent = '';
  for (const [name, options] of Object.entries(layer.choices)) {
    if (name === 'view' && options.length < 2) continue;
    const label = document.createElement('label');
    label.className = 'row';
    label.textContent = name.replace('_', ' ') + ' ';
    const select = document.createElement('select');
    select.id = name;
    const current = name in layer.state ? layer.state[name] :
      (options.some((o) => o.value === null) ? null : layer.effective[name]);
    options.forEach((o, i) => {
      const option = document.createElement('option');
      option.value = String(i);
      option.textContent = optionLabel(name, o.value);
      if (o.value === current) option.selected = true;
      select.appendChild(option);
    });
    select.addEventListener('change', () => load(options[+select.value].query));
    label.appendChild(select);
    box.appendChild(label);
  }
}

function showNumbers() {
  $('title').textContent = `${layer.title} — ${layer.family}`;
  $('summary').textContent = `${layer.summary}${layer.article ? ' (article ' + layer.article + ')' : ''}`;
  $('layer').textContent = layer.layer;
  $('input_shape').textContent = '(' + layer.input_shape.join(', ') + ')';
  $('output_shape').textContent = '(' + layer.output_shape.join(', ') + ')';
  $('params').textContent = layer.params.toLocaleString('en');
  $('macs').textContent = layer.macs.toLocaleString('en');
  $('formula').textContent = layer.formula;
  $('formula').hidden = !layer.formula;
  const nOut = prod(layer.maps[layer.maps.length - 1]);
  $('frame').max = String(nOut - 1);
  $('frame').value = String(frame === null ? 0 : frame);
  $('legend').innerHTML = '<span class="sw" style="background:#1f4e8c"></span>hovered' +
    '<span class="sw" style="background:#f5a524"></span>what it reads' +
    '<span class="sw" style="background:#7fb2e5"></span>what reads it — both in the colour of the kernel tap ' +
    '(faint: fractional read; ×n: n taps)<span class="sw" style="background:#fff;border-style:dashed"></span>' +
    'padding (zeros)';
}

// ---- drawing ------------------------------------------------------------------------------------------------

function clearDrawing() {
  const svg = $('svg');
  svg.textContent = '';
  svg.removeAttribute('data-ready');
  svg.setAttribute('width', 0);
  svg.setAttribute('height', 0);
  cells = []; pads = []; kernels = []; styled = []; deps = null;
}

function split(shape) {  // [C, *S] → {C, D, H, W, dims}
  const dims = shape.length - 1;
  if (dims === 1) return { dims, C: shape[0], D: 1, H: 1, W: shape[1] };
  if (dims === 2) return { dims, C: shape[0], D: 1, H: shape[1], W: shape[2] };
  return { dims, C: shape[0], D: shape[1], H: shape[2], W: shape[3] };
}

function ring(pad, dims) {  // padding drawn around each H×W (or L) tile; depth padding is not drawn
  if (!pad) return { t: 0, b: 0, l: 0, r: 0 };
  const h = dims === 1 ? [0, 0] : pad[dims - 2];
  const w = pad[dims - 1];
  return { t: h[0], b: h[1], l: w[0], r: w[1] };
}

function tilesPerLine(g) {  // 1-D: one channel a line; 2-D: the channels side by side; 3-D: a channel's slices
  return g.dims === 1 ? 1 : g.dims === 2 ? g.C : g.D;
}

function cellSize(width) {  // one cell size for every map: all tiles of a line fit, else wrap at >= 14 px
  let widest = 1;
  let tiles = 1;
  layer.maps.forEach((shape) => {
    const g = split(shape);
    widest = Math.max(widest, g.W + 4);
    tiles = Math.max(tiles, tilesPerLine(g));
  });
  const fit = Math.floor((width - 12 * (tiles - 1)) / (tiles * widest));
  const largest = Math.floor(width / widest);
  return Math.max(Math.min(14, largest), Math.min(30, fit, largest));
}

let geometry = null;  // {cs, width, y positions}

function drawGrid(linkInfo = null) {
  const svg = $('svg');
  svg.textContent = '';
  cells = []; pads = []; kernels = []; styled = [];
  const width = Math.max(600, $('drawing').clientWidth - 10);
  const cs = cellSize(width);
  const gap = Math.max(10, Math.round(cs * 0.7));
  let y = 4;
  const last = layer.maps.length - 1;
  layer.maps.forEach((shape, m) => {
    const g = split(shape);
    const pad = linkInfo && m < last ? linkInfo[m].pad : null;
    const rg = ring(pad, g.dims);
    const role = m === 0 ? 'in' : m === last ? 'out' : 'mid';
    const name = m === 0 ? 'input' : m === last ? 'output' : `after ${layer.links[m - 1]}`;
    text(svg, 0, y + 13, `${name}  (${shape.join(' × ')})` + (pad && (rg.t + rg.b + rg.l + rg.r) ?
      '  dashed = padding' : ''), 'title');
    y += 20;
    const tileW = (g.W + rg.l + rg.r) * cs;
    const tileH = (g.H + rg.t + rg.b) * cs;
    const labelH = 15;
    let x = 0;
    let rowTop = y;
    cells[m] = new Array(prod(shape));
    pads[m] = new Map();
    for (let c = 0; c < g.C; c++) {
      for (let d = 0; d < g.D; d++) {
        const newLine = (x > 0 && x + tileW > width) || (g.dims !== 2 && d === 0 && c > 0);
        if (newLine) { x = 0; rowTop += labelH + tileH + gap; }
        const label = g.dims === 3 ? `c${c} d${d}` : `c${c}`;
        text(svg, x, rowTop + 11, label);
        const top = rowTop + labelH;
        for (let i = -rg.t; i < g.H + rg.b; i++) {
          for (let j = -rg.l; j < g.W + rg.r; j++) {
            const inside = i >= 0 && i < g.H && j >= 0 && j < g.W;
            const rect = el('rect', { x: x + (j + rg.l) * cs, y: top + (i + rg.t) * cs, width: cs, height: cs,
                                      class: inside ? 'cell' : 'pad' }, svg);
            if (inside) {
              const flat = ((c * g.D + d) * g.H + i) * g.W + j;
              const index = g.dims === 1 ? [c, j] : g.dims === 2 ? [c, i, j] : [c, d, i, j];
              if (role === 'mid') rect.setAttribute('data-mid', [m, ...index].join(','));
              else rect.setAttribute('data-' + role, index.join(','));
              rect.dataset.map = m;
              rect.dataset.flat = flat;
              cells[m][flat] = rect;
            } else {
              pads[m].set(`${c}|${d}|${i}|${j}`, rect);
            }
          }
        }
        x += tileW + gap;
      }
    }
    y = rowTop + labelH + tileH + 12;
    if (m < last) y = drawLinkRow(svg, m, y, cs, width, linkInfo ? linkInfo[m] : null);
  });
  svg.setAttribute('width', width);
  svg.setAttribute('height', y + 4);
  svg.dataset.ready = linkInfo ? 'deps' : 'grid';
  geometry = { cs, width };
}

function drawLinkRow(svg, m, y, cs, width, info) {
  // "↓ name", then side by side: the kernel (its taps in their colours) and each side stage feeding this step.
  const title = text(svg, 0, y + 14, `↓ ${layer.links[m]}`, 'title');
  let x = 16;
  let bottom = y + 22;
  const top = y + 22;
  kernels[m] = [];
  if (info && info.held && info.held.length) {
    text(svg, title.getComputedTextLength() + 12, y + 14,
         `(side stages held fixed: ${info.held.join(', ')}; view "stages" shows them)`);
  }
  if (info && info.kernel_shape) {
    const k = info.kernel_shape;
    const kd = k.length === 3 ? k[0] : 1;
    const kh = k.length === 1 ? 1 : k[k.length - 2];
    const kw = k[k.length - 1];
    const n = prod(k);
    const kcs = Math.max(10, Math.min(22, cs));
    const caption = `kernel ${k.join('×')}: tap colours in reading order`;
    const captionWidth = text(svg, x, top + 12, caption).getComputedTextLength();
    for (let d = 0; d < kd; d++) {
      for (let i = 0; i < kh; i++) {
        for (let j = 0; j < kw; j++) {
          const t = (d * kh + i) * kw + j;
          kernels[m][t] = el('rect', { x: x + d * (kw * kcs + 8) + j * kcs, y: top + 18 + i * kcs, width: kcs,
                                       height: kcs, class: 'tap', fill: tapColor(t, n) }, svg);
        }
      }
    }
    bottom = Math.max(bottom, top + 18 + kh * kcs + 4);
    x += Math.max(captionWidth, kd * (kw * kcs + 8)) + 28;
  }
  let lineTop = top;
  for (const side of info ? info.sides : []) {  // each side stage a block; a block that does not fit wraps
    const caption = text(svg, x, lineTop + 12, `side stage "${side.name}" → (${side.shape.join(' × ')}), ` +
                         'for this input');
    let w = caption.getComputedTextLength();
    const h = side.values ? 70 : 20;
    if (x > 16 && x + w > width) {
      x = 16;
      lineTop = bottom + 4;
      caption.setAttribute('x', x);
      caption.setAttribute('y', lineTop + 12);
    }
    if (side.values) {
      const max = Math.max(...side.values.map(Math.abs), 1e-12);
      side.values.forEach((v, i) => {
        const bar = Math.round((30 * Math.abs(v)) / max);
        el('rect', { x: x + i * 12, y: lineTop + 50 - bar, width: 9, height: Math.max(1, bar), fill: '#6b8e23' },
           svg);
      });
      if (side.values.length <= 8) text(svg, x, lineTop + 66, side.values.map((v) => v.toFixed(2)).join('  '));
      w = Math.max(w, 12 * side.values.length);
    }
    bottom = Math.max(bottom, lineTop + h);
    x += w + 28;
  }
  return bottom + 8;
}

function drawLinks(linkInfo) {
  drawGrid(linkInfo);
  drawCounts();
}

function drawCounts() {  // the number of input elements each output element reads (its fan-in)
  const svg = $('svg');
  for (const node of svg.querySelectorAll('text.count')) node.remove();
  if (!$('counts').checked || !deps) return;
  deps.forEach((L, link) => {
    const sizes = L.patterns.map((p) => p.length);
    const cellsOut = cells[link + 1];
    for (let o = 0; o < L.nOut; o++) {
      const rect = cellsOut[o];
      const w = +rect.getAttribute('width');
      if (w < 12) return;
      const n = L.rows[L.rowOf[o]].reduce((sum, pid) => sum + (pid >= 0 ? sizes[pid] : 0), 0);
      text(svg, +rect.getAttribute('x') + w / 2, +rect.getAttribute('y') + w / 2, String(n), 'count');
    }
  });
}

// ---- connectivity (decoded from the server's patterns) --------------------------------------------------------

function decodeLinks(link, inShape, outShape) {
  const d = link.deps;
  return { rows: d.rows, rowOf: d.row_of, patterns: d.patterns, patSets: d.patterns.map((p) => new Set(p)),
           S: prod(inShape.slice(1)), nOut: prod(outShape) };
}

function depsOf(link, o) {
  const L = deps[link];
  const row = L.rows[L.rowOf[o]];
  const out = [];
  row.forEach((pid, c) => { if (pid >= 0) for (const s of L.patterns[pid]) out.push(c * L.S + s); });
  return out;
}

function readersOf(link, inputs) {
  const L = deps[link];
  const wanted = new Map();
  for (const i of inputs) {
    const c = Math.floor(i / L.S);
    if (!wanted.has(c)) wanted.set(c, []);
    wanted.get(c).push(i % L.S);
  }
  const out = [];
  for (let o = 0; o < L.nOut; o++) {
    const row = L.rows[L.rowOf[o]];
    for (const [c, positions] of wanted) {
      const pid = row[c];
      if (pid >= 0 && positions.some((s) => L.patSets[pid].has(s))) { out.push(o); break; }
    }
  }
  return out;
}

// ---- hover, taps, animation ---------------------------------------------------------------------------------

function multiTap(rect, count) {  // "×n": n kernel taps read this one cell (nearest upsampling's copies)
  const w = +rect.getAttribute('width');
  if (w < 14) return;
  const t = text($('svg'), +rect.getAttribute('x') + w / 2, +rect.getAttribute('y') + w / 2, `×${count}`, 'count');
  t.classList.add('multi');
  styled.push(t);
}

function resetStyles() {
  for (const node of styled) {
    if (node.classList.contains('multi')) { node.remove(); continue; }
    node.classList.remove('active', 'reader', 'hover', 'used', 'read', 'far');
    node.style.fill = '';
    node.style.fillOpacity = '';
  }
  styled = [];
}

function mark(node, ...classes) {
  node.classList.add(...classes);
  styled.push(node);
}

function highlight(m, flat) {
  resetStyles();
  if (!deps || !cells[m] || !cells[m][flat]) return;
  mark(cells[m][flat], 'hover');
  let current = [flat];
  for (let k = m - 1; k >= 0; k--) {  // what it reads, back to the input
    const next = new Set();
    for (const o of current) for (const i of depsOf(k, o)) next.add(i);
    current = [...next];
    for (const i of current) mark(cells[k][i], 'active', ...(k < m - 1 ? ['far'] : []));
  }
  current = [flat];
  for (let k = m; k < deps.length; k++) {  // who reads it, on to the output
    current = readersOf(k, current);
    for (const o of current) mark(cells[k + 1][o], 'active', 'reader');
  }
  if (m > 0) showTaps(m - 1, flat);
  else if (m < deps.length) showReaders(m, flat);
  const g = cells[m][flat];
  $('frame_label').textContent = `${g.dataset.in ? 'input' : g.dataset.out ? 'output' : 'map ' + m} ` +
    `(${(g.dataset.in || g.dataset.out || g.dataset.mid).split(',').join(', ')})`;
}

async function showTaps(link, out) {
  const mine = ++hoverId;
  const key = `${layer.query}|${link}|${out}`;
  let data = tapCache.get(key);
  if (!data) {
    try {
      data = await api(`/api/taps?${layer.query}&link=${link}&out=${out}`);
    } catch (error) {
      setStatus('taps: ' + (error.message || error), true);
      return;
    }
    tapCache.set(key, data);
  }
  if (mine !== hoverId || !cells[link]) return;
  if (!data.kernel_shape) return;
  const n = prod(data.kernel_shape);
  const channels = new Set();
  const S = deps[link].S;
  for (const [i, t, w, count] of data.reads) {
    const node = cells[link][i];
    if (!node) continue;
    node.style.fill = tapColor(t, n);
    node.style.fillOpacity = String(0.3 + 0.7 * Math.min(1, Math.abs(w)));
    channels.add(Math.floor(i / S));
    if (count > 1) multiTap(node, count);
  }
  for (const t of data.used) if (kernels[link] && kernels[link][t]) mark(kernels[link][t], 'used');
  const g = split(layer.maps[link]);
  for (const p of data.padded || []) {
    const [d, i, j] = g.dims === 1 ? [0, 0, p.pos[0]] : g.dims === 2 ? [0, ...p.pos] : p.pos;
    for (const c of channels) {
      const node = pads[link].get(`${c}|${d}|${i}|${j}`);
      if (node) { mark(node, 'read'); node.style.fill = tapColor(p.tap, n); node.style.fillOpacity = '0.45'; }
    }
    if (kernels[link] && kernels[link][p.tap]) mark(kernels[link][p.tap], 'used');
  }
}

async function showReaders(link, input) {  // colour the outputs that read this input by the tap they use
  const mine = ++hoverId;
  const key = `${layer.query}|${link}|in${input}`;
  let data = tapCache.get(key);
  if (!data) {
    try {
      data = await api(`/api/taps?${layer.query}&link=${link}&in=${input}`);
    } catch (error) {
      setStatus('taps: ' + (error.message || error), true);
      return;
    }
    tapCache.set(key, data);
  }
  if (mine !== hoverId || !cells[link + 1] || !data.kernel_shape) return;
  const n = prod(data.kernel_shape);
  for (const [o, t, w, count] of data.reads) {
    const node = cells[link + 1][o];
    if (!node) continue;
    node.style.fill = tapColor(t, n);
    node.style.fillOpacity = String(0.3 + 0.7 * Math.min(1, Math.abs(w)));
    if (count > 1) multiTap(node, count);
  }
  for (const t of data.used) if (kernels[link] && kernels[link][t]) mark(kernels[link][t], 'used');
}

function showFrame() {
  const last = layer.maps.length - 1;
  if (frame === null) { resetStyles(); $('frame_label').textContent = ''; return; }
  $('frame').value = String(frame);
  highlight(last, frame);
}

function stop() {
  if (player !== null) clearInterval(player);
  player = null;
  $('play').textContent = '▶';
}

function setFrame(n, history = 'replace') {
  frame = n;
  writeUrl(history);
  showFrame();
}

// ---- wiring ----------------------------------------------------------------------------------------------------

function cellOf(target) {
  return target && target.dataset && target.dataset.flat !== undefined ? target : null;
}

async function init() {
  families = await api('/api/families');
  const select = $('family');
  for (const f of families) {
    const option = document.createElement('option');
    option.value = f.name;
    option.textContent = f.name;
    option.title = f.title;
    select.appendChild(option);
  }
  select.addEventListener('change', () => load('family=' + encodeURIComponent(select.value)));
  const svg = $('svg');
  svg.addEventListener('mouseover', (event) => {
    const cell = cellOf(event.target);
    if (cell && deps && player === null) highlight(+cell.dataset.map, +cell.dataset.flat);
  });
  svg.addEventListener('mouseleave', () => { if (player === null) showFrame(); });
  svg.addEventListener('click', (event) => {
    const cell = cellOf(event.target);
    if (cell && deps && +cell.dataset.map === layer.maps.length - 1) { stop(); setFrame(+cell.dataset.flat); }
  });
  $('counts').addEventListener('change', () => { drawCounts(); if (layer) writeUrl('replace'); });
  $('frame').addEventListener('input', () => { stop(); if (deps) setFrame(+$('frame').value); });
  $('play').addEventListener('click', () => {
    if (player !== null) { stop(); return; }
    if (!deps) return;
    $('play').textContent = '❚❚';
    const n = +$('frame').max + 1;
    player = setInterval(() => setFrame(frame === null ? 0 : (frame + 1) % n), 450);
  });
  window.addEventListener('popstate', () => load(location.search.slice(1), 'none'));
  let resize = null;
  window.addEventListener('resize', () => {
    clearTimeout(resize);
    resize = setTimeout(() => { if (deps && layer) { load(location.search.slice(1), 'none'); } }, 300);
  });
  const initial = location.search.slice(1) || 'family=' + families[0].name;
  await load(initial, 'replace');
}

init().catch((error) => setStatus(String(error.message || error), true));
