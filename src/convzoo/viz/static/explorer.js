// convzoo explorer: draws, client-side in SVG, the JSON that `convzoo serve` computes with the real layer. No
// colour is written here: cells, taps and kernels take the server's palette (the static pictures' colours).
// State lives in the URL (?family=dilated&dilation=2&...&frame=N&numbers=1); every menu offers only values the
// server says are valid. On load the window walks the output (▶); hovering a cell takes over, a click pins an
// output. Test hooks: input cells carry data-in="c,i,j", output cells data-out, intermediate (stage) cells
// data-mid="m,c,i,j" (1-D: one index, 3-D: d,i,j); a transposed conv's direct form has cells data-direct=
// "k,c,i,j" of class "zero" (inserted zeros), "dpad" (padding) or "dcell" (input cells); cells highlighted by a
// hover carry the class "active"; the svg's data-ready is "grid", then "deps" once hover works; data-playing is
// "1" while the window walks; data-shown = "link:flat" once the panel shows that output's window. Sampling points
// are circle.point[data-point=tap] (the plane's and the zoom's); the zoom's cells carry data-zoom="r,q" (negative
// or past the size: the padding a point past the edge samples).
'use strict';

const SVGNS = 'http://www.w3.org/2000/svg';
const CLIENT_KEYS = ['frame', 'counts', 'numbers'];
const PERIOD = 500;  // ms per output while playing
const WALK = 8;      // earlier stages: at most this many cells of a map have their own reads drawn
const $ = (id) => document.getElementById(id);
const prod = (a) => a.reduce((x, y) => x * y, 1);

let families = [];
let layer = null;        // /api/layer answer
let links = null;        // /api/links answer: per link (deps, kernel, geometry, filters, sides, bank)
let values = null;       // per map, its values on the input sample (flat)
let deps = null;         // per link: decoded dependency sets
let token = 0;           // increases with every load; answers for an older state are dropped
let frame = null;        // the output shown (flat index into the last map), or null
let playing = false;     // the window walks the output
let ticker = null;       // setInterval id while playing
let hovering = false;    // a hovered cell has taken over from the frame
let cells = [];          // cells[m][flat] = rect
let pads = [];           // pads[m] = Map("c|d|i|j" → rect)
let tiles = [];          // tiles[m][c * D + d] = {x, y, ring} (top-left corner of the tile, padding included)
let directs = [];        // directs[k][c][z] = rect of link k's direct form
let kernels = [];        // kernels[link] = [rect per tap]
let slots = [];          // slots[link][j] = the filter strip's frame of filter j
let styled = [];         // elements carrying hover styles, to reset
let overlay = null;      // <g> for sampling points and arrows
let cs = 14;             // cell size (px) of every map
const NUMBER_CELL = 24;  // smallest cell (px) that shows a 12 px (9 pt) number
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

function cellNumber(parent, x, y, v, size) {  // a value in a cell of `size` px: fewer digits until it fits, sign kept
  const t = text(parent, x, y, compact(v), 'num');
  const shorter = [Math.abs(v) >= 1 ? Number(v).toFixed(1) : Number(v).toPrecision(1), String(Math.round(v))];
  for (const s of shorter) {
    if (t.getComputedTextLength() <= size - 2) break;
    t.textContent = s.replace(/^(-?)0\./, '$1.').replace(/\.0$/, '');
  }
  return t;
}

function fmt(v) {  // a number in a cell: integers without a point, else 2 significant digits (≥ 1: 2 decimals)
  if (v === null || v === undefined) return '';
  if (Math.abs(v - Math.round(v)) < 1e-6) return String(Math.round(v));
  if (Math.abs(v) >= 10) return v.toFixed(1);
  if (Math.abs(v) >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

function compact(v) {  // fmt without the leading zero ("0.017" → ".017"): what fits in a cell
  return fmt(v).replace(/^(-?)0\./, '$1.');
}

function applyPalette(palette) {  // the static pictures' colours, as CSS variables
  for (const [name, colour] of Object.entries(palette)) document.documentElement.style.setProperty('--' + name, colour);
}

// ---- state and loading --------------------------------------------------------------------------------------

function apiQuery(params) {
  const q = new URLSearchParams(params);
  for (const k of CLIENT_KEYS) q.delete(k);
  return q.toString();
}

async function load(query, history = 'push') {
  const mine = ++token;
  stopPlaying(false);
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
    links = null;
    applyPalette(layer.palette);
    const params = new URLSearchParams(query);
    const wanted = params.get('frame');
    const nOut = prod(layer.maps[layer.maps.length - 1]);
    frame = wanted !== null && /^\d+$/.test(wanted) && +wanted < nOut ? +wanted : null;
    $('counts').checked = params.get('counts') === '1';
    $('numbers').checked = params.get('numbers') === '1';
    writeUrl(history);
    showControls();
    showNumbers();
    drawGrid();
    setStatus('computing which inputs each output reads (autograd)…');
    const linked = await api('/api/links?' + st.query);
    if (mine !== token) return;
    links = linked.links;
    values = linked.values;
    deps = links.map((link, i) => decodeLinks(link, layer.maps[i], layer.maps[i + 1]));
    redraw();
    showFilters();
    showSides();
    setStatus('hover a cell to take over · click an output to pin it · ▶ walks the window');
    if (frame === null) startPlaying(); else showFrame();
  } catch (error) {
    if (mine !== token) return;
    clearDrawing();
    setStatus(String(error.message || error), true);
  }
}

function writeUrl(history) {
  const q = new URLSearchParams(layer.query);
  if (frame !== null && !playing) q.set('frame', frame);
  if ($('counts').checked) q.set('counts', '1');
  if ($('numbers').checked) q.set('numbers', '1');
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
    label.className = 'ctl';
    label.textContent = (name === 'sample' ? 'input sample' : name.replace('_', ' ')) + ' ';
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
    select.addEventListener('change', () => load(options[+select.value].query + extraQuery(true)));
    label.appendChild(select);
    box.appendChild(label);
  }
}

function extraQuery(keepFrame = false) {  // client settings kept across a change of control (and a pinned output
  // within the family: it stays shown when it still exists, e.g. on another input sample)
  return ($('numbers').checked ? '&numbers=1' : '') + ($('counts').checked ? '&counts=1' : '') +
    (keepFrame && frame !== null && !playing ? `&frame=${frame}` : '');
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
  $('formula_box').hidden = !layer.formula;
  const nOut = prod(layer.maps[layer.maps.length - 1]);
  $('frame').max = String(nOut - 1);
  $('frame').value = String(frame === null ? 0 : frame);
  const sw = (name, label, dashed = false) =>
    `<span class="sw${dashed ? ' dashed' : ''}" style="background:var(--${name})"></span>${label}`;
  $('legend').innerHTML = sw('picked', 'output shown') + sw('input', 'input') + sw('output', 'output') +
    '<span id="ramp_item"><span class="sw" id="ramp"></span>read through kernel tap 0 … T−1 (faint: fractional ' +
    'read; ×n: n taps)</span>' +
    sw('other', 'read (taps pending / none)') + sw('padding', 'padding (zero)', true) +
    sw('zero', 'inserted zero', true);
}

function showRamp() {  // the legend's tap swatch: the first link's tap colours as a gradient
  const link = links && links.find((l) => l.tap_colours);
  const ramp = $('ramp');
  if (ramp && link) ramp.style.background = `linear-gradient(90deg, ${link.tap_colours.join(', ')})`;
  if (ramp) ramp.style.width = '36px';
  if ($('ramp_item')) $('ramp_item').hidden = !link;
}

// ---- layout -------------------------------------------------------------------------------------------------

function clearDrawing() {
  const svg = $('svg');
  svg.textContent = '';
  svg.removeAttribute('data-ready');
  svg.setAttribute('width', 0);
  svg.setAttribute('height', 0);
  cells = []; pads = []; tiles = []; directs = []; kernels = []; styled = []; deps = null; links = null;
  overlay = null;
  for (const id of ['window', 'dot', 'walk', 'bank', 'sides', 'filters']) $(id).textContent = '';
  for (const id of ['bank_box', 'sides_box', 'filters_box']) $(id).hidden = true;
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

function blocks() {  // what is drawn, top to bottom: each map, and between maps the link (and a direct form)
  const out = [];
  const last = layer.maps.length - 1;
  layer.maps.forEach((shape, m) => {
    const link = links && m < last ? links[m] : null;
    const rg = ring(link && link.pad, shape.length - 1);
    const own = link && link.layer_pad ? ring(link.layer_pad, shape.length - 1) : rg;
    const wider = ['t', 'b', 'l', 'r'].some((side) => rg[side] > own[side]);
    out.push({ kind: 'map', m, g: split(shape), rg, own, wider });
    if (m < last) {
      out.push({ kind: 'link', k: m });
      if (links && links[m].direct) {
        const size = links[m].direct.size;
        const g = split([shape[0], ...size]);
        out.push({ kind: 'direct', k: m, g, rg: ring(null, g.dims) });
      }
    }
  });
  return out;
}

function kernelCell(k) {  // the link row's tap grid cell size
  const kh = k.length === 1 ? 1 : k[k.length - 2];
  return Math.max(4, Math.min(12, Math.floor(60 / Math.max(kh, 1))));
}

function linkHeight(k) {
  const kernel = links && links[k].kernel_shape;
  if (!kernel) return 24;
  const kh = kernel.length === 1 ? 1 : kernel[kernel.length - 2];
  return Math.max(24, kh * kernelCell(kernel) + 10);
}

function place(block, size, width) {  // tile positions (relative) and height of a grid block at cell size
  const { g, rg } = block;
  const gap = Math.max(6, Math.round(size * 0.6));
  const tileW = (g.W + rg.l + rg.r) * size;
  const tileH = (g.H + rg.t + rg.b) * size;
  const spots = [];
  let x = 0;
  let line = 0;
  for (let c = 0; c < g.C; c++) {
    for (let d = 0; d < g.D; d++) {
      // 1-D: a channel a line; 3-D: a channel's depth slices kept on one line, channels side by side if they fit
      const channelW = g.D * (tileW + gap) - gap;
      const newLine = (x > 0 && x + tileW > width) || (g.dims === 1 && c > 0) ||
        (g.dims === 3 && d === 0 && x > 0 && x + channelW > width);
      if (newLine) { x = 0; line += 1; }
      spots.push({ x, line });
      x += tileW + gap;
    }
  }
  const lines = line + 1;
  return { spots, tileW, tileH, gap, height: 20 + lines * (13 + tileH) + (lines - 1) * gap + 8 };
}

function totalHeight(size, width, list) {
  return list.reduce((h, b) => h + (b.kind === 'link' ? linkHeight(b.k) : place(b, size, width).height), 0);
}

function lines(block, size, width) {
  const spot = place(block, size, width);
  return spot.spots[spot.spots.length - 1].line + 1;
}

function chooseCell(width, height, list) {
  // The largest cell size (6–30 px) at which everything is in view, with each 2-D map's channels on one line if
  // that keeps cells ≥ 8 px (one reading order), else wrapped; too large to fit: 10 px cells and a scroll bar.
  const grids = list.filter((b) => b.kind !== 'link');
  const widest = Math.max(...grids.map((b) => b.g.W + b.rg.l + b.rg.r));
  const most = Math.max(6, Math.min(30, Math.floor(width / widest)));
  const flat = (size) => grids.every((b) => b.g.dims !== 2 || lines(b, size, width) === 1);
  for (let size = most; size >= 8; size--) if (flat(size) && totalHeight(size, width, list) <= height) return size;
  for (let size = most; size >= 6; size--) if (totalHeight(size, width, list) <= height) return size;
  return Math.min(most, 10);
}

// ---- drawing ------------------------------------------------------------------------------------------------

function redraw() {
  drawGrid();
  drawCounts();
  showRamp();
}

function drawGrid() {
  const svg = $('svg');
  svg.textContent = '';
  cells = []; pads = []; tiles = []; directs = []; kernels = []; styled = [];
  const defs = el('defs', {}, svg);
  const marker = el('marker', { id: 'head', viewBox: '0 0 6 6', refX: 5, refY: 3, markerWidth: 6, markerHeight: 6,
                                orient: 'auto-start-reverse' }, defs);
  el('path', { d: 'M0,0 L6,3 L0,6 z' }, marker);
  const box = $('drawing');
  const width = Math.max(300, box.clientWidth - 8);
  const top = box.getBoundingClientRect().top;
  const height = Math.max(300, window.innerHeight - top - 6);
  box.style.maxHeight = height + 'px';
  $('panel').style.maxHeight = height + 'px';
  const list = blocks();
  cs = chooseCell(width, height, list);
  const last = layer.maps.length - 1;
  let y = 2;
  for (const block of list) {
    if (block.kind === 'link') { y = drawLinkRow(svg, block.k, y, width); continue; }
    const { g, rg } = block;
    const spot = place(block, cs, width);
    const shape = block.kind === 'map' ? layer.maps[block.m] : [g.C, ...links[block.k].direct.size];
    let title;
    if (block.kind === 'direct') {
      const zeros = links[block.k].direct.zeros;
      const z = zeros.every((v) => v === zeros[0]) ? `${zeros[0]} zero${zeros[0] === 1 ? '' : 's'}` :
        `(${zeros.join(', ')}) zeros`;
      title = `the same as a plain conv: ${z} inserted between input cells, padding around (${shape.slice(1)
        .join(' × ')}), read by the kernel flipped`;
    } else {
      const m = block.m;
      const name = m === 0 ? 'input' : m === last ? 'output' : `after ${layer.links[m - 1]}`;
      // a sampling step's ring can reach past the layer's padding: the zeros its offsets read there, said so
      const pad = block.own.t + block.own.b + block.own.l + block.own.r;
      title = `${name}  (${shape.join(' × ')})` + (!(rg.t + rg.b + rg.l + rg.r) ? '' : !block.wider ?
        '  dashed = padding' : pad ? '  dashed = zeros past the edge: the padding, and beyond it where offsets read' :
        '  dashed = zeros past the edge, where offsets read');
    }
    text(svg, 0, y + 13, title, 'title');
    const origin = y + 20;
    if (block.kind === 'map') drawMap(svg, block, spot, origin);
    else drawDirect(svg, block, spot, origin);
    y += spot.height;
  }
  overlay = el('g', { class: 'overlay' }, svg);
  svg.setAttribute('width', width);
  svg.setAttribute('height', y + 4);
  svg.dataset.ready = links ? 'deps' : 'grid';
}

function tileTop(spot, i, origin) {
  return origin + spot.spots[i].line * (13 + spot.tileH + spot.gap);
}

function drawMap(svg, block, spot, origin) {
  const { m, g, rg } = block;
  const last = layer.maps.length - 1;
  const role = m === 0 ? 'in' : m === last ? 'out' : 'mid';
  const shown = $('numbers').checked && cs >= NUMBER_CELL && values;
  cells[m] = new Array(prod(layer.maps[m]));
  pads[m] = new Map();
  tiles[m] = [];
  let i = 0;
  for (let c = 0; c < g.C; c++) {
    for (let d = 0; d < g.D; d++, i++) {
      const x0 = spot.spots[i].x;
      const y0 = tileTop(spot, i, origin);
      text(svg, x0, y0 + 10, g.dims === 3 ? `c${c} d${d}` : `c${c}`);
      const top = y0 + 13;
      tiles[m].push({ x: x0, y: top, ring: rg });
      for (let r = -rg.t; r < g.H + rg.b; r++) {
        for (let q = -rg.l; q < g.W + rg.r; q++) {
          const inside = r >= 0 && r < g.H && q >= 0 && q < g.W;
          const x = x0 + (q + rg.l) * cs;
          const yy = top + (r + rg.t) * cs;
          const rect = el('rect', { x, y: yy, width: cs, height: cs, class: inside ? `cell ${role}` : 'pad' }, svg);
          if (!inside) { pads[m].set(`${c}|${d}|${r}|${q}`, rect); continue; }
          const flat = ((c * g.D + d) * g.H + r) * g.W + q;
          const index = g.dims === 1 ? [c, q] : g.dims === 2 ? [c, r, q] : [c, d, r, q];
          if (role === 'mid') rect.setAttribute('data-mid', [m, ...index].join(','));
          else rect.setAttribute('data-' + role, index.join(','));
          rect.dataset.map = m;
          rect.dataset.flat = flat;
          cells[m][flat] = rect;
          if (shown) cellNumber(svg, x + cs / 2, yy + cs / 2, values[m][flat], cs);
        }
      }
    }
  }
}

function drawDirect(svg, block, spot, origin) {  // a scatter step as its direct form: input cells, zeros, padding
  const { k, g } = block;
  const info = links[k].direct;
  const plane = prod(layer.maps[k].slice(1));
  const shown = $('numbers').checked && cs >= NUMBER_CELL && values;
  directs[k] = [];
  let i = 0;
  for (let c = 0; c < g.C; c++) {
    directs[k][c] = [];
    for (let d = 0; d < g.D; d++, i++) {
      const x0 = spot.spots[i].x;
      const y0 = tileTop(spot, i, origin);
      text(svg, x0, y0 + 10, g.dims === 3 ? `c${c} d${d}` : `c${c}`);
      const top = y0 + 13;
      for (let r = 0; r < g.H; r++) {
        for (let q = 0; q < g.W; q++) {
          const z = (d * g.H + r) * g.W + q;
          const source = info.cells[z];
          const cls = source >= 0 ? 'dcell' : source === -1 ? 'zero' : 'dpad';
          const x = x0 + q * cs;
          const yy = top + r * cs;
          const index = g.dims === 1 ? [q] : g.dims === 2 ? [r, q] : [d, r, q];
          const rect = el('rect', { x, y: yy, width: cs, height: cs, class: cls,
                                    'data-direct': [k, c, ...index].join(',') }, svg);
          directs[k][c][z] = rect;
          if (shown) cellNumber(svg, x + cs / 2, yy + cs / 2, source >= 0 ? values[k][c * plane + source] : 0, cs);
        }
      }
    }
  }
}

function fitText(node, room) {  // cut a text to ``room`` px with "…", the whole of it as its tooltip
  const whole = node.textContent;
  if (node.getComputedTextLength() <= room) return node;
  let n = whole.length;
  while (n > 1 && node.getComputedTextLength() > room) node.textContent = whole.slice(0, --n) + '…';
  el('title', {}, node).textContent = whole;
  return node;
}

function drawLinkRow(svg, k, y, width) {  // "↓ name", and the kernel's taps in their colours
  const title = text(svg, 0, y + 14, `↓ ${layer.links[k]}`, 'title');
  kernels[k] = [];
  const link = links && links[k];
  if (!link) return y + linkHeight(k);
  let x = title.getComputedTextLength() + 14;
  if (link.kernel_shape) {
    const kshape = link.kernel_shape;
    const kd = kshape.length === 3 ? kshape[0] : 1;
    const kh = kshape.length === 1 ? 1 : kshape[kshape.length - 2];
    const kw = kshape[kshape.length - 1];
    const kcs = kernelCell(kshape);
    const caption = text(svg, x, y + 14, `kernel ${kshape.join('×')}, taps in reading order:`);
    x += caption.getComputedTextLength() + 8;
    for (let d = 0; d < kd; d++) {
      for (let i = 0; i < kh; i++) {
        for (let j = 0; j < kw; j++) {
          const t = (d * kh + i) * kw + j;
          kernels[k][t] = el('rect', { x: x + d * (kw * kcs + 6) + j * kcs, y: y + 4 + i * kcs, width: kcs,
                                       height: kcs, class: 'tap', fill: link.tap_colours[t] }, svg);
        }
      }
    }
    x += kd * (kw * kcs + 6) + 10;
  } else {
    const note = fitText(text(svg, x, y + 14, 'no kernel of its own: reads coloured by the weight each gets ' +
      '(red +, blue −)'), width - x);
    x += note.getComputedTextLength() + 10;
  }
  const held = link.sides.filter((s) => s.held).map((s) => s.name);
  if (held.length && x < width - 40) {
    fitText(text(svg, x, y + 14, `(held fixed: ${held.join('; ')})`, 'small'), width - x);
  }
  return y + linkHeight(k);
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

function position(m, flat) {  // [c, ...spatial] of a flat index into map m
  const shape = layer.maps[m];
  const out = [];
  let rest = flat;
  for (let i = shape.length - 1; i >= 0; i--) { out.unshift(rest % shape[i]); rest = Math.floor(rest / shape[i]); }
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
    node.classList.remove('active', 'reader', 'hover', 'used', 'read', 'far', 'picked');
    node.style.fill = '';
    node.style.fillOpacity = '';
  }
  styled = [];
  if (overlay) overlay.textContent = '';
}

function mark(node, ...classes) {
  node.classList.add(...classes);
  styled.push(node);
}

function paint(node, fill, opacity) {
  node.style.fill = fill;
  node.style.fillOpacity = String(opacity);
  if (!styled.includes(node)) styled.push(node);
}

function highlight(m, flat) {
  resetStyles();
  if (!deps || !cells[m] || !cells[m][flat]) return;
  mark(cells[m][flat], 'hover');
  const levels = [];
  let current = [flat];
  for (let k = m - 1; k >= 0; k--) {  // what it reads, back to the input
    const next = new Set();
    for (const o of current) for (const i of depsOf(k, o)) next.add(i);
    current = [...next];
    levels[k] = current;
    for (const i of current) mark(cells[k][i], 'active', ...(k < m - 1 ? ['far'] : []));
  }
  current = [flat];
  for (let k = m; k < deps.length; k++) {  // who reads it, on to the output
    current = readersOf(k, current);
    for (const o of current) mark(cells[k + 1][o], 'active', 'reader');
  }
  const mine = ++hoverId;
  $('walk').textContent = '';
  if (m > 0) {
    showTaps(m - 1, flat, mine, true);
    for (let k = m - 2; k >= 0; k--) {  // earlier stages: the reads of the few cells the shown one reads
      const front = levels[k + 1];
      if (front.length > WALK) break;
      for (const o of front) showTaps(k, o, mine, false, front.length);
    }
  } else if (m < deps.length) {
    showReaders(m, flat, mine);
  }
  const g = cells[m][flat];
  const where = g.dataset.in ? 'input' : g.dataset.out ? 'output' : 'map ' + m;
  $('frame_label').textContent = `${where} (${(g.dataset.in || g.dataset.out || g.dataset.mid).split(',').join(', ')})`;
}

async function taps(query) {
  const key = `${layer.query}|${query}`;
  let data = tapCache.get(key);
  if (!data) {
    data = await api(`/api/taps?${layer.query}&${query}`);
    tapCache.set(key, data);
  }
  return data;
}

async function showTaps(link, out, mine, main, few = 1) {
  let data;
  try {
    data = await taps(`link=${link}&out=${out}`);
  } catch (error) {
    setStatus('taps: ' + (error.message || error), true);
    return;
  }
  if (mine !== hoverId || !cells[link] || !links) return;
  const far = main ? 1 : 0.6;
  const channels = new Set();
  const S = deps[link].S;
  if (data.kernel_shape) {
    const colours = links[link].tap_colours;
    for (const [i, t, w, count] of data.reads) {
      const node = cells[link][i];
      if (!node) continue;
      paint(node, colours[t], far * (0.35 + 0.65 * Math.min(1, Math.abs(w))));
      channels.add(Math.floor(i / S));
      if (count > 1 && !data.points) multiTap(node, count);
    }
    for (const t of data.used) if (kernels[link] && kernels[link][t]) mark(kernels[link][t], 'used');
    const g = split(layer.maps[link]);
    for (const p of data.padded || []) {
      const [d, i, j] = g.dims === 1 ? [0, 0, p.pos[0]] : g.dims === 2 ? [0, ...p.pos] : p.pos;
      for (const c of channels) {
        const node = pads[link].get(`${c}|${d}|${i}|${j}`);
        if (node) { mark(node, 'read'); paint(node, colours[p.tap], 0.45); }
      }
    }
    if (data.direct && directs[link]) {
      for (const c of channels) {
        for (const [t, z] of data.direct) {
          const node = directs[link][c] && directs[link][c][z];
          if (node) { mark(node, 'read'); paint(node, colours[t], node.classList.contains('dcell') ? 1 : 0.45); }
        }
      }
    }
    if (data.points) drawPoints(link, data.points, colours);
  } else {
    data.reads.forEach(([i], n) => { if (cells[link][i]) paint(cells[link][i], data.fills[n], far); });
  }
  if (main) {
    showWindow(link, out, data);
    $('svg').dataset.shown = `${link}:${out}`;
  } else {
    addWalk(link, out, data, few);
  }
}

function pointAt(p, dims) {  // a sampling point [c, t, *pos, strength, *grid] as {c, t, y, x, strength, grid}
  const [c, t] = p;
  if (dims === 2) return { c, t, y: p[2], x: p[3], strength: p[4], grid: p.length > 5 ? [p[5], p[6]] : null };
  return { c, t, y: 0, x: p[2], strength: p[3], grid: p.length > 4 ? [0, p[4]] : null };
}

const SAME = 0.5;  // dots closer than this many diameters hide each other: one stack (irregular.py's SAME)
const RING = 3.5;  // px added to a stacked dot's radius per further tap sampling the same place
const ZOOM_WIDTH = 300;  // px: the panel's width, less its padding
const ZOOM_LABEL = 9;  // px: radius of a one-digit tap label's disc in the zoom, round its 12 px (9 pt) number
const LABEL_GAP = 2;  // px kept clear between a label's box and any dot's or other label's box

function pointMarks(group, point, colour, at, size, label, ring = 0, stacked = false) {
  // grid point ○ → arrow → sampling point ●; a stack's further taps as rings `ring` px wider, drawn behind
  const [px, py] = at(point.y, point.x);
  const r = Math.max(2.5, size * 0.3) + ring;
  if (point.grid) {
    const [gx, gy] = at(...point.grid);
    el('circle', { cx: gx, cy: gy, r: Math.max(1.5, size * 0.12), class: 'grid' }, group);
    const length = Math.hypot(px - gx, py - gy);
    if (length > r + 2) {  // the arrow ends at the point's circle, its head visible
      const end = (length - r) / length;
      el('line', { x1: gx, y1: gy, x2: gx + (px - gx) * end, y2: gy + (py - gy) * end, class: 'arrow',
                   'marker-end': 'url(#head)' }, group);
    }
  }
  // a stacked dot on white: a faint dot shows its weight without the ring behind it showing through
  if (stacked) el('circle', { cx: px, cy: py, r, class: 'under' }, group);
  el('circle', { cx: px, cy: py, r, class: 'point', fill: colour,
                 'fill-opacity': Math.max(0.35, Math.min(1, point.strength)), 'data-point': point.t,
                 ...(stacked ? { 'data-ring': ring } : {}) }, group);
  if (label) text(group, px, py, String(point.t), 'tapno');
}

function stacks(xy, near) {  // groups (≥ 2, indices ascending) of the [x, y] within `near` of another member
  const parent = xy.map((_, i) => i);
  const root = (i) => { while (parent[i] !== i) i = parent[i]; return i; };
  for (let i = 0; i < xy.length; i++) {
    for (let j = i + 1; j < xy.length; j++) {
      if (Math.hypot(xy[i][0] - xy[j][0], xy[i][1] - xy[j][1]) < near) parent[root(j)] = root(i);
    }
  }
  const groups = new Map();
  xy.forEach((_, i) => { const r = root(i); if (!groups.has(r)) groups.set(r, []); groups.get(r).push(i); });
  return [...groups.values()].filter((g) => g.length > 1);
}

function stackedMarks(group, points, colours, places, size, label, count) {
  // points[i] drawn through places[i] (its tile's (r, q) → [x, y]); taps that sample one place (``stacks``) as one
  // dot (the first tap, numbered) ringed by the others, "×n" beside it when `count`
  const r = Math.max(2.5, size * 0.3);
  const xy = points.map((p, i) => places[i](p.y, p.x));
  const groups = stacks(xy, SAME * 2 * r);
  const level = points.map(() => 0);
  const stacked = points.map(() => false);
  for (const g of groups) g.forEach((i, k) => { level[i] = k; stacked[i] = true; });
  const order = points.map((_, i) => i).sort((a, b) => level[b] - level[a]);  // the widest ring first, behind
  for (const i of order) {
    pointMarks(group, points[i], colours[points[i].t], places[i], size, label && level[i] === 0, level[i] * RING,
               stacked[i]);
  }
  if (count) {
    for (const g of groups) {
      const outer = r + (g.length - 1) * RING;
      const [x, y] = xy[g[0]];
      text(group, x + outer * 0.75, y - outer * 0.75, `×${g.length}`, 'stackno');
    }
  }
  return groups;
}

function stackNote(points, size) {  // "×2: taps 6 and 7 sample the same place", as the static pictures say it
  const r = Math.max(2.5, size * 0.3);
  const parts = [];
  for (const g of stacks(points.map((p) => [p.x * size, p.y * size]), SAME * 2 * r)) {
    let spread = 0;
    for (const i of g) for (const j of g) spread = Math.max(spread, Math.hypot(points[i].x - points[j].x,
                                                                                 points[i].y - points[j].y));
    const taps = g.map((i) => points[i].t);
    const where = spread < 5e-3 ? 'the same place' : `places ${spread.toFixed(2)} cell apart`;
    parts.push(`×${g.length}: taps ${taps.slice(0, -1).join(', ')} and ${taps[taps.length - 1]} sample ${where}`);
  }
  return parts.join('; ');
}

function neighbours(v) {  // the cells a bilinear sample at v reads along one axis (weight 1 − |v − n| > 0)
  const f = Math.floor(v);
  return [f, f + 1].filter((n) => Math.abs(v - n) < 1 - 1e-3);
}

function drawPoints(link, points, colours) {  // each tap's sampling point, and an arrow from its grid point
  const g = split(layer.maps[link]);
  if (g.dims === 3 || !overlay) return;
  const shown = [];
  const places = [];
  for (const p of points) {
    const point = pointAt(p, g.dims);
    const tile = tiles[link][point.c];
    if (!tile) continue;
    shown.push(point);
    places.push((r, q) => [tile.x + (tile.ring.l + q + 0.5) * cs, tile.y + (tile.ring.t + r + 0.5) * cs]);
    // a point past the edge samples the zero padding (the server widens the ring to every cell some point reads):
    // those cells are read, in its tap's colour, as a plain conv's window on the padding
    for (const r of g.dims === 1 ? [0] : neighbours(point.y)) {
      for (const q of neighbours(point.x)) {
        if (r >= 0 && r < g.H && q >= 0 && q < g.W) continue;
        const node = pads[link] && pads[link].get(`${point.c}|0|${r}|${q}`);
        if (node) { mark(node, 'read'); paint(node, colours[point.t], 0.45); }
      }
    }
  }
  stackedMarks(overlay, shown, colours, places, cs, cs >= 20, true);
}

function showZoom(box, link, data) {  // the first channel's sampling points, enlarged: every tap labelled
  const g = split(layer.maps[link]);
  if (g.dims === 3) return;
  const points = data.points.map((p) => pointAt(p, g.dims));
  const c = Math.min(...points.map((p) => p.c));
  const mine = points.filter((p) => p.c === c);
  const ys = mine.flatMap((p) => [p.y, ...(p.grid ? [p.grid[0]] : [])]);
  const xs = mine.flatMap((p) => [p.x, ...(p.grid ? [p.grid[1]] : [])]);
  // the cells around every point and grid point, the padding ring included (points past the edge sample there)
  const rg = (tiles[link] && tiles[link][0] && tiles[link][0].ring) || ring(null, g.dims);
  const r0 = Math.max(-rg.t, Math.floor(Math.min(...ys)) - 1);
  const r1 = Math.min(g.H - 1 + rg.b, Math.ceil(Math.max(...ys)) + 1);
  const q0 = Math.max(-rg.l, Math.floor(Math.min(...xs)) - 1);
  const q1 = Math.min(g.W - 1 + rg.r, Math.ceil(Math.max(...xs)) + 1);
  const padded = r0 < 0 || q0 < 0 || r1 > g.H - 1 || q1 > g.W - 1;
  const size = Math.max(12, Math.min(32, Math.floor(280 / Math.max(q1 - q0 + 1, r1 - r0 + 1))));
  const caption = document.createElement('p');
  caption.className = 'caption';
  caption.textContent = `where each tap samples input channel c${c}, enlarged: ○ its place on the regular grid → ` +
    '● where the offsets move it (its tap number on a line to it; faint = small weight)' +
    (padded ? '; dashed: the zero padding past the input\'s edge, where a tap past it samples zeros' : '');
  box.appendChild(caption);
  const note = stackNote(mine, cs);  // taps the plane draws as one dot: said in words, as the static pictures do
  if (note) {
    const line = document.createElement('p');
    line.className = 'caption stacks';
    line.textContent = `on the plane, ${note} (drawn as one dot, ringed)`;
    box.appendChild(line);
  }
  const height = (r1 - r0 + 1) * size + 4;
  const svg = panelSvg(box, ZOOM_WIDTH, height);
  svg.setAttribute('class', 'zoom');
  const defs = el('defs', {}, svg);
  const marker = el('marker', { id: 'zoomhead', viewBox: '0 0 6 6', refX: 5, refY: 3, markerWidth: 6,
                                markerHeight: 6, orient: 'auto-start-reverse' }, defs);
  el('path', { d: 'M0,0 L6,3 L0,6 z' }, marker);
  const body = el('g', {}, svg);  // moved down when labels above the cells grow the panel upwards
  // cells centred, with room at the sides (up to a label's width) for labels of dots in the outer columns
  const left = Math.max(2, Math.min(2 * ZOOM_LABEL + 6, (ZOOM_WIDTH - (q1 - q0 + 1) * size) / 2));
  for (let r = r0; r <= r1; r++) {
    for (let q = q0; q <= q1; q++) {
      const inside = r >= 0 && r < g.H && q >= 0 && q < g.W;
      el('rect', { x: left + (q - q0) * size, y: 2 + (r - r0) * size, width: size, height: size,
                   class: inside ? 'k x' : 'pad', 'data-zoom': `${r},${q}` }, body);
    }
  }
  const at = (r, q) => [left + (q - q0 + 0.5) * size, 2 + (r - r0 + 0.5) * size];
  const colours = links[link].tap_colours;
  const leaders = el('g', {}, body);  // under the dots: a leader never hides a dot or an arrow
  const dots = el('g', {}, body);
  stackedMarks(dots, mine, colours, mine.map(() => at), 5, false, false);  // exact places: small dots
  for (const line of dots.querySelectorAll('line.arrow')) line.setAttribute('marker-end', 'url(#zoomhead)');
  // what a label must leave visible, read back from what stackedMarks drew (a stacked tap's dot is its ring)
  const circle = (c) => ({ x: +c.getAttribute('cx'), y: +c.getAttribute('cy'), r: +c.getAttribute('r') });
  const marks = [...dots.querySelectorAll('circle.point, circle.grid')].map(circle);
  const arrows = [...dots.querySelectorAll('line.arrow')].map((l) => ['x1', 'y1', 'x2', 'y2'].map((a) => +l.getAttribute(a)));
  const own = new Map([...dots.querySelectorAll('circle.point[data-point]')].map((c) => [+c.dataset.point, circle(c)]));
  const labels = mine.map((p) => {
    const dot = own.get(p.t);
    const ahead = p.grid ? Math.atan2(dot.y - at(...p.grid)[1], dot.x - at(...p.grid)[0]) : NaN;
    return { t: p.t, p, dot, ahead, R: String(p.t).length > 1 ? ZOOM_LABEL + 3 : ZOOM_LABEL, x: dot.x, y: dot.y };
  });
  placeLabels(labels, marks, arrows, ZOOM_WIDTH, height);
  let top = 0;
  let bottom = height;
  for (const l of labels) {
    const d = Math.hypot(l.x - l.dot.x, l.y - l.dot.y);
    const [ux, uy] = [(l.x - l.dot.x) / d, (l.y - l.dot.y) / d];
    el('line', { x1: l.dot.x + ux * (l.dot.r + 1), y1: l.dot.y + uy * (l.dot.r + 1), x2: l.x - ux * l.R,
                 y2: l.y - uy * l.R, class: 'leader', 'data-leader': l.t }, leaders);
    const g = el('g', { class: 'taplabel', 'data-label': l.t }, body);
    el('circle', { cx: l.x, cy: l.y, r: l.R, class: 'under' }, g);  // a faint disc stays readable over cells
    el('circle', { cx: l.x, cy: l.y, r: l.R, class: 'label', fill: colours[l.t],
                   'fill-opacity': Math.max(0.35, Math.min(1, l.p.strength)), 'data-tap': l.t }, g);
    text(g, l.x, l.y, String(l.t), 'tapno');
    top = Math.min(top, l.y - l.R - 2);
    bottom = Math.max(bottom, l.y + l.R + 2);
  }
  body.setAttribute('transform', `translate(0, ${-top})`);
  svg.setAttribute('height', Math.ceil(bottom - top));  // the panel grows rather than let labels overlap
}

function segmentDistance(x, y, [x1, y1, x2, y2]) {  // from the point (x, y) to the segment (x1, y1)–(x2, y2)
  const [dx, dy] = [x2 - x1, y2 - y1];
  const s = Math.max(0, Math.min(1, ((x - x1) * dx + (y - y1) * dy) / (dx * dx + dy * dy || 1)));
  return Math.hypot(x - x1 - s * dx, y - y1 - s * dy);
}

function crosses([a, b, c, d], [e, f, g, h]) {  // do the segments (a, b)–(c, d) and (e, f)–(g, h) cross
  const side = (x1, y1, x2, y2, x, y) => Math.sign((x2 - x1) * (y - y1) - (y2 - y1) * (x - x1));
  return side(a, b, c, d, e, f) * side(a, b, c, d, g, h) < 0 && side(e, f, g, h, a, b) * side(e, f, g, h, c, d) < 0;
}

function placeLabels(labels, marks, arrows, width, height) {
  // Each label's disc (l.R) at the cheapest place around its dot whose box keeps LABEL_GAP px off every dot's box
  // and every other label's box (hard), inside the width; cost = leader length + penalties for covering an arrow,
  // a leader crossing a dot, an arrow or another leader, and for growing the panel past `height`. Crowded dots
  // choose first, then two passes re-place each label among all the others.
  const clear = (x, y, R, o) => Math.abs(x - o.x) >= R + o.r + LABEL_GAP || Math.abs(y - o.y) >= R + o.r + LABEL_GAP;
  const leader = (l, x, y) => [l.dot.x, l.dot.y, x, y];
  const cost = (l, x, y, others) => {
    if (x - l.R < 1 || x + l.R > width - 1) return Infinity;
    for (const m of marks) if (!clear(x, y, l.R, m)) return Infinity;
    for (const o of others) if (!clear(x, y, l.R, { x: o.x, y: o.y, r: o.R })) return Infinity;
    const line = leader(l, x, y);
    let c = Math.hypot(x - l.dot.x, y - l.dot.y);
    for (const a of arrows) {
      if (segmentDistance(x, y, a) < l.R + 4) c += 60;  // the disc would hide part of an arrow or its head
      else if (crosses(line, a)) c += 12;
    }
    for (const m of marks) {
      if ((m.x !== l.dot.x || m.y !== l.dot.y) && segmentDistance(m.x, m.y, line) < m.r + 3) c += 30;
    }
    for (const o of others) {
      if (crosses(line, leader(o, o.x, o.y))) c += 25;
      if (segmentDistance(x, y, leader(o, o.x, o.y)) < l.R + 1) c += 25;  // on another's leader: which is whose?
      if (segmentDistance(o.x, o.y, line) < o.R + 1) c += 25;
    }
    if (Number.isFinite(l.ahead)) c += 2 * (1 - Math.cos(Math.atan2(y - l.dot.y, x - l.dot.x) - l.ahead));
    c += 0.5 * (Math.max(0, l.R - y) + Math.max(0, y + l.R - height));  // past the cells: the panel grows
    return c;
  };
  const place = (l, others) => {
    let best = { c: Infinity, x: l.dot.x, y: l.dot.y + l.dot.r + l.R + LABEL_GAP };
    for (let d = l.dot.r + l.R + LABEL_GAP; d < 2000 && d < best.c; d += 2) {  // cost ≥ d: no farther ring wins
      const n = Math.max(16, Math.ceil((2 * Math.PI * d) / 4));
      for (let k = 0; k < n; k++) {
        const angle = (2 * Math.PI * k) / n;
        const [x, y] = [l.dot.x + d * Math.cos(angle), l.dot.y + d * Math.sin(angle)];
        const c = cost(l, x, y, others);
        if (c < best.c) best = { c, x, y };
      }
    }
    l.x = best.x;
    l.y = best.y;
  };
  const crowd = (l) => marks.filter((m) => Math.hypot(m.x - l.dot.x, m.y - l.dot.y) < 4 * l.R).length;
  const order = [...labels].sort((a, b) => crowd(b) - crowd(a) || a.t - b.t);
  order.forEach((l, i) => place(l, order.slice(0, i)));
  for (let pass = 0; pass < 2; pass++) for (const l of order) place(l, order.filter((o) => o !== l));
}

async function showReaders(link, input, mine) {  // colour the outputs that read this input by the tap they use
  let data;
  try {
    data = await taps(`link=${link}&in=${input}`);
  } catch (error) {
    setStatus('taps: ' + (error.message || error), true);
    return;
  }
  if (mine !== hoverId || !cells[link + 1] || !data.kernel_shape) return;
  const colours = links[link].tap_colours;
  for (const [o, t, w, count] of data.reads) {
    const node = cells[link + 1][o];
    if (!node) continue;
    paint(node, colours[t], 0.35 + 0.65 * Math.min(1, Math.abs(w)));
    if (count > 1) multiTap(node, count);
  }
  for (const t of data.used) if (kernels[link] && kernels[link][t]) mark(kernels[link][t], 'used');
  $('shown_title').textContent = `input (${position(link, input).join(', ')}): ${data.reads.length} outputs ` +
    'of the next step read it, each through the tap in its colour';
  $('window').textContent = '';
  $('dot').textContent = '';
}

// ---- the panel: the window of the output shown, its dot product, kernels, attention --------------------------

function panelSvg(parent, width, height) {
  return el('svg', { width, height, xmlns: SVGNS }, parent);
}

function grid2(shape) {  // a kernel shape as rows × columns (1-D: one row; 3-D: depth slices side by side)
  if (shape.length === 1) return { rows: 1, cols: shape[0], at: (t) => [0, t] };
  if (shape.length === 2) return { rows: shape[0], cols: shape[1], at: (t) => [Math.floor(t / shape[1]), t % shape[1]] };
  const [d, h, w] = shape;
  return { rows: h, cols: d * (w + 1) - 1,
           at: (t) => { const s = Math.floor(t / (h * w)); const r = t % (h * w); return [Math.floor(r / w), s * (w + 1) + r % w]; } };
}

function drawKernel(svg, x, y, shape, size, weights, fills, opts = {}) {
  // weights/fills in tap order; opts.zero[t]: a tap on padding or an inserted zero (dashed); opts.values: numbers
  const g = grid2(shape);
  const n = prod(shape);
  for (let t = 0; t < n; t++) {
    const [r, c] = g.at(t);
    const w = weights[t];
    const zero = opts.zero && opts.zero[t];
    const cls = opts.input ? (zero ? 'k zero' : 'k x') : w === null ? 'k none' : zero ? 'k dz' : 'k';
    const rect = el('rect', { x: x + c * size, y: y + r * size, width: size, height: size, class: cls }, svg);
    if (!opts.input && fills && fills[t]) rect.setAttribute('fill', fills[t]);
    const shown = opts.input ? opts.values[t] : w;
    if (opts.numbers && size >= NUMBER_CELL && shown !== null && shown !== undefined) {
      cellNumber(svg, x + c * size + size / 2, y + r * size + size / 2, shown, size);
    }
  }
  return { w: g.cols * size, h: g.rows * size };
}

function showWindow(link, out, data) {
  const numbers = $('numbers').checked;
  const pos = position(link + 1, out);
  const last = layer.maps.length - 1;
  const what = link + 1 === last ? 'output' : `after ${layer.links[link]}`;
  $('shown_title').textContent = `${what} (${pos.join(', ')}) = ${fmt(data.y)}` +
    (layer.maps.length > 2 ? ` — step “${layer.links[link]}”` : '');
  const box = $('window');
  box.textContent = '';
  const rows = data.window || (data.crop || []).map((c) => ({ c: c.c, w: c.w, x: c.x, fill: c.fill, shape: c.shape,
                                                               zero: null }));
  const note = document.createElement('p');
  note.className = 'caption';
  note.textContent = data.window ? `the kernel of filter ${pos[0]} on each input channel it reads, in tap order` +
    (data.direct ? ' (the direct form above reads it flipped)' : '') +
    (numbers ? ', the values under it (dashed: padding or an inserted zero, 0) and their dot product' : '') :
    `the weight ∂y/∂x of each input it reads (no kernel of its own), per channel` +
    (numbers ? ', and the input values' : '');
  if (data.points && data.points.length) showZoom(box, link, data);  // the mechanism first
  box.appendChild(note);
  const shown = rows.slice(0, 8);
  const strip = links[link].filters;
  const whole = (c) => {  // the shape of filter pos[0]'s kernel on channel c at a centre output (the strip)
    const entry = strip && strip.kind === 'crop' ? strip.per_filter[pos[0]].find((e) => e.c === c) : null;
    return entry ? entry.shape : null;
  };
  let clipped = false;
  for (const row of shown) {
    const shape = row.shape || data.kernel_shape;
    const g = grid2(shape);
    const size = Math.max(5, Math.min(numbers ? 32 : 16, Math.floor(120 / Math.max(g.cols, 1)),
                                      Math.floor(120 / Math.max(g.rows, 1))));
    const height = g.rows * size + 4;
    const svg = panelSvg(box, 300, height + 2);
    text(svg, 0, 12, `c${row.c}`);
    const k = drawKernel(svg, 26, 1, shape, size, row.w, row.fill, { numbers, zero: row.zero });
    const full = row.shape ? whole(row.c) : null;
    if (full && full.join('×') !== shape.join('×')) {
      clipped = true;
      if (!numbers) text(svg, 34 + k.w, 12, `${shape.join('×')} of its ${full.join('×')}`, 'small');
    } else if (row.shape && !numbers) {
      text(svg, 34 + k.w, 12, shape.join('×'), 'small');  // this output's kernel size (MixConv: its group's)
    }
    if (numbers) {
      text(svg, 32 + k.w, 12, '·');
      const v = drawKernel(svg, 44 + k.w, 1, shape, size, row.x, null,
                           { numbers, input: true, values: row.x, zero: row.zero });
      let partial = 0;
      row.w.forEach((w, t) => { if (w !== null && row.x[t] !== null) partial += w * row.x[t]; });
      text(svg, 52 + k.w + v.w, 12, `= ${fmt(partial)}`);
    }
  }
  for (const crop of data.besides || []) {  // read not through the kernel parameter (HetConv's 1×1 kernels)
    const g = grid2(crop.shape);
    const size = Math.max(5, Math.min(numbers ? 32 : 16, Math.floor(120 / Math.max(g.cols, g.rows, 1))));
    const svg = panelSvg(box, 300, g.rows * size + 4);
    text(svg, 0, 12, `c${crop.c}`);
    const k = drawKernel(svg, 26, 1, crop.shape, size, crop.w, crop.fill, { numbers });
    let x = 32 + k.w;
    if (numbers) {
      text(svg, x, 12, '·');
      const v = drawKernel(svg, x + 12, 1, crop.shape, size, crop.x, null, { numbers, input: true, values: crop.x });
      x += 20 + v.w;
    }
    text(svg, x, 12, 'not through the kernel');
  }
  if (clipped) {
    const cut = document.createElement('p');
    cut.className = 'caption';
    cut.textContent = 'at the border: the part of its kernel that falls on the input (the rest reads zero padding)';
    box.appendChild(cut);
  }
  if (rows.length > shown.length) {
    const more = document.createElement('p');
    more.className = 'caption';
    more.textContent = `+ ${rows.length - shown.length} more input channels`;
    box.appendChild(more);
  }
  const parts = [`Σ kernel·values = ${fmt(data.kernel_sum)}`];
  if (Math.abs(data.other) > 5e-4) parts.push(`reads not through the kernel ${fmt(data.other)}`);
  if (Math.abs(data.bias) > 5e-4) parts.push(`bias ${fmt(data.bias)}`);
  $('dot').textContent = numbers ? `${what} = ${parts.join(' + ')} = ${fmt(data.y)}` +
    (data.window ? products(rows) : '') : 'tick “numbers” for the values under the window and the dot product';
  showBank(link, pos[0], data);
  highlightFilter(link, pos[0]);
}

function products(rows) {  // " (w·x + w·x + …)" over the taps read, then how many (padding and zeros contribute 0)
  const terms = [];
  let all = 0;
  for (const row of rows) {
    row.w.forEach((w, t) => {
      if (w === null) return;
      all += 1;
      if (!(row.zero && row.zero[t])) terms.push(`${fmt(w)}·${fmt(row.x[t])}`);
    });
  }
  const list = terms.length <= 12 ? ` (${terms.join(' + ')})` : '';
  if (terms.length === all) return list || ` (${all} products)`;
  // taps on inserted zeros or padding multiply 0: counted apart, as the static pictures' "Σ 6 products on input
  // cells" (whatever the cells' values)
  return `${list}; Σ ${terms.length} product${terms.length === 1 ? '' : 's'} on input cells (${all} counting the zeros)`;
}

function addWalk(link, out, data, few) {  // an earlier stage's kernel for a cell the shown output reads
  const box = $('walk');
  if (box.childElementCount >= 6) return;
  const pos = position(link + 1, out);
  const rows = data.window || (data.crop || []).map((c) => ({ c: c.c, w: c.w, fill: c.fill, shape: c.shape }));
  if (!rows.length) return;
  const caption = document.createElement('p');
  caption.className = 'caption';
  caption.textContent = `step “${layer.links[link]}”, its cell (${pos.join(', ')}): ` +
    (data.window ? `kernel of filter ${pos[0]}` : 'weights of its reads') + ` on c${rows.map((r) => r.c).join(', c')}`;
  box.appendChild(caption);
  if (data.points && data.points.length && !box.querySelector('svg.zoom')) showZoom(box, link, data);
  const svg = panelSvg(box, 300, 1);
  let x = 0;
  let h = 0;
  for (const row of rows.slice(0, 8)) {
    const shape = row.shape || data.kernel_shape;
    const g = grid2(shape);
    const size = Math.max(3, Math.min(few === 1 ? 16 : 8, Math.floor((few === 1 ? 90 : 34) / Math.max(g.cols, g.rows))));
    if (x + g.cols * size > 300) break;
    const k = drawKernel(svg, x, 0, shape, size, row.w, row.fill, { zero: row.zero });
    x += k.w + 6;
    h = Math.max(h, k.h);
  }
  svg.setAttribute('height', h + 2);
}

function bars(parent, valuesList, label) {  // one bar per value (height ∝ value / max), values under when few
  const n = valuesList.length;
  const step = Math.max(4, Math.min(36, Math.floor(290 / n)));
  const labelled = step >= 28;  // a value ("0.26") fits under its bar
  const svg = panelSvg(parent, Math.min(300, n * step + 4), labelled ? 56 : 44);
  const top = Math.max(...valuesList.map(Math.abs), 1e-12);
  valuesList.forEach((v, i) => {
    const h = Math.max(1, Math.round((34 * Math.abs(v)) / top));
    el('rect', { x: i * step + 1, y: 38 - h, width: step - 2, height: h, class: 'bar' }, svg);
    if (labelled) text(svg, i * step + step / 2, 50, fmt(v), 'num');
  });
  if (label) svg.setAttribute('aria-label', label);
  return svg;
}

function showBank(link, j, data) {  // K candidate kernels of filter j, the attention over them, the kernel applied
  const bank = links[link].bank;
  const box = $('bank');
  box.textContent = '';
  $('bank_box').hidden = !bank;
  if (!bank) return;
  const [K, cOut, cIn] = bank.shape;
  const kshape = bank.shape.slice(3);
  const n = prod(kshape);
  const side = links[link].sides.find((s) => s.values && s.values.length === K);
  const size = Math.max(3, Math.min(9, Math.floor(170 / (cIn * (grid2(kshape).cols + 1)))));
  $('bank_title').textContent = `the ${K} candidate kernels of filter ${j}` + (side ? ', the attention over them' : '') +
    ' and the kernel applied to this sample';
  for (let k = 0; k < K; k++) {
    const svg = panelSvg(box, 300, grid2(kshape).rows * size + 4);
    text(svg, 0, 10, `W${k}`);
    for (let c = 0; c < cIn; c++) {
      const start = ((k * cOut + j) * cIn + c) * n;
      drawKernel(svg, 24 + c * (grid2(kshape).cols + 1) * size, 1, kshape, size, bank.values.slice(start, start + n),
                 bank.fill.slice(start, start + n));
    }
    if (side) {  // the attention bar: length ∝ its value, the value after it
      const v = side.values[k];
      const x0 = 28 + cIn * (grid2(kshape).cols + 1) * size;
      const w = Math.round(Math.max(20, 260 - x0) * Math.abs(v) / Math.max(...side.values.map(Math.abs), 1e-12));
      el('rect', { x: x0, y: 2, width: Math.max(1, w), height: 8, class: 'bar' }, svg);
      text(svg, x0 + w + 3, 10, fmt(v));
    }
  }
  if (data.window) {
    const caption = document.createElement('p');
    caption.className = 'caption';
    caption.textContent = 'applied (read from the layer at this output):';
    box.appendChild(caption);
    const svg = panelSvg(box, 300, grid2(data.kernel_shape).rows * size + 4);
    data.window.forEach((row, i) => drawKernel(svg, 24 + i * (grid2(data.kernel_shape).cols + 1) * size, 1,
                                                data.kernel_shape, size, row.w, row.fill, { zero: row.zero }));
  }
}

function showSides() {  // every side stage's output with few values (attention, routing), as bars
  const box = $('sides');
  box.textContent = '';
  let any = false;
  links.forEach((link) => {
    for (const side of link.sides) {
      if (!side.values) continue;
      any = true;
      const caption = document.createElement('p');
      caption.className = 'caption';
      caption.textContent = `${side.name} → (${side.shape.join(' × ')})${side.held ? ', held fixed in the drawing' : ''}` +
        ' for this input sample:';
      box.appendChild(caption);
      bars(box, side.values, side.name);
    }
  });
  $('sides_box').hidden = !any;
}

function showFilters() {  // per step with a kernel: every filter's kernel, columns = filters, rows = input channels
  const box = $('filters');
  box.textContent = '';
  slots = [];
  let any = false;
  links.forEach((link, k) => {
    const f = link.filters;
    if (!f) return;
    any = true;
    const cOut = f.per_filter.length;
    const reads = f.per_filter.map((filter) => filter.filter((e) => !(e.w || []).every((w) => w === null)));
    const single = reads.every((r) => r.length === 1);  // each filter reads one channel: one row, labelled
    const cIn = single ? 1 : layer.maps[k][0];
    let kh = 1;
    let kw = 1;
    if (f.kind === 'taps') {
      const g = grid2(f.kernel_shape);
      kh = g.rows; kw = g.cols;
    } else {
      for (const filter of f.per_filter) for (const c of filter) { const g = grid2(c.shape); kh = Math.max(kh, g.rows); kw = Math.max(kw, g.cols); }
    }
    // cell size from the area available (about 290 × 260 px), the filters wrapped into rows of perRow
    const area = (290 * 260) / (cOut * cIn * (kw + 1) * (kh + 1));
    const size = Math.max(2, Math.min(9, Math.floor(Math.sqrt(area)), Math.floor(290 / (kw + 1))));
    const perRow = Math.max(1, Math.floor(292 / ((kw + 1) * size)));
    const band = cIn * (kh + 1) * size + (single ? 16 : 6);
    const caption = document.createElement('p');
    caption.className = 'caption';
    caption.textContent = `step “${link.name}”: ${cOut} filters (columns) × ` +
      (single ? 'the one input channel each reads (under it)' : `${cIn} input channels (rows)`) +
      (f.kind === 'taps' ? `, kernel ${f.kernel_shape.join('×')}` : ', each weight ∂y/∂x at a centre output') +
      '; red +, blue −; empty: not connected';
    box.appendChild(caption);
    const svg = panelSvg(box, 300, Math.ceil(cOut / perRow) * band);
    slots[k] = [];
    f.per_filter.forEach((filter, j) => {
      const x0 = 2 + (j % perRow) * (kw + 1) * size;
      const top = Math.floor(j / perRow) * band;
      slots[k][j] = el('rect', { x: x0 - 1, y: top + 1, width: kw * size + 2, height: cIn * (kh + 1) * size,
                                 class: 'slot' }, svg);
      if (single && reads[j].length) {
        text(svg, x0 + kw * size / 2, top + cIn * (kh + 1) * size + 10, `c${reads[j][0].c}`, 'num');
      }
      const drawn = new Set(reads[j].map((e) => e.c));
      for (const crop of f.besides ? f.besides[j] : []) {  // not through the kernel (HetConv's 1×1 kernels)
        if (single || drawn.has(crop.c)) continue;
        const g = grid2(crop.shape);
        drawKernel(svg, x0 + Math.floor((kw - g.cols) / 2) * size,
                   top + 2 + crop.c * (kh + 1) * size + Math.floor((kh - g.rows) / 2) * size, crop.shape, size,
                   crop.w, crop.fill);
      }
      for (const entry of single ? reads[j] : filter) {
        const y0 = top + 2 + (single ? 0 : entry.c) * (kh + 1) * size;
        if (f.kind === 'taps') {
          if (entry.w.every((w) => w === null)) continue;
          drawKernel(svg, x0, y0, f.kernel_shape, size, entry.w, entry.fill);
        } else {
          const g = grid2(entry.shape);
          drawKernel(svg, x0 + Math.floor((kw - g.cols) / 2) * size, y0 + Math.floor((kh - g.rows) / 2) * size,
                     entry.shape, size, entry.w, entry.fill);
        }
      }
    });
  });
  $('filters_box').hidden = !any;
}

function highlightFilter(link, j) {
  for (const row of slots) for (const slot of row || []) slot.classList.remove('picked');
  if (slots[link] && slots[link][j]) slots[link][j].classList.add('picked');
}

// ---- the frame: the output shown, walked by the player --------------------------------------------------------

function showFrame() {
  const last = layer.maps.length - 1;
  const svg = $('svg');
  if (frame === null) { resetStyles(); $('frame_label').textContent = ''; return; }
  $('frame').value = String(frame);
  svg.dataset.frame = String(frame);
  highlight(last, frame);
}

function tick() {
  if (hovering || !deps) return;
  const n = prod(layer.maps[layer.maps.length - 1]);
  frame = frame === null ? 0 : (frame + 1) % n;
  showFrame();
}

function startPlaying() {
  if (!deps) return;
  playing = true;
  $('play').textContent = '❚❚';
  $('svg').dataset.playing = '1';
  clearInterval(ticker);
  tick();
  ticker = setInterval(tick, PERIOD);
  writeUrl('replace');
}

function stopPlaying(write = true) {
  clearInterval(ticker);
  ticker = null;
  playing = false;
  $('play').textContent = '▶';
  $('svg').dataset.playing = '0';
  if (write && layer) writeUrl('replace');
}

function setFrame(n) {
  frame = n;
  writeUrl('replace');
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
  select.addEventListener('change', () => load('family=' + encodeURIComponent(select.value) + extraQuery()));
  const svg = $('svg');
  svg.addEventListener('mouseover', (event) => {
    const cell = cellOf(event.target);
    if (!cell || !deps) return;
    hovering = true;
    highlight(+cell.dataset.map, +cell.dataset.flat);
  });
  svg.addEventListener('mouseleave', () => { hovering = false; if (deps) showFrame(); });
  svg.addEventListener('click', (event) => {
    const cell = cellOf(event.target);
    if (cell && deps && +cell.dataset.map === layer.maps.length - 1) { stopPlaying(false); setFrame(+cell.dataset.flat); }
  });
  $('counts').addEventListener('change', () => { drawCounts(); if (layer) writeUrl('replace'); });
  $('numbers').addEventListener('change', () => { if (!layer) return; writeUrl('replace'); if (deps) { redraw(); showFrame(); } });
  $('frame').addEventListener('input', () => { stopPlaying(false); if (deps) setFrame(+$('frame').value); });
  $('play').addEventListener('click', () => { if (playing) stopPlaying(); else startPlaying(); });
  window.addEventListener('popstate', () => load(location.search.slice(1), 'none'));
  let resize = null;
  window.addEventListener('resize', () => {
    clearTimeout(resize);
    resize = setTimeout(() => { if (deps && layer) { redraw(); showFrame(); } }, 200);
  });
  const initial = location.search.slice(1) || 'family=' + families[0].name;
  await load(initial, 'replace');
}

init().catch((error) => setStatus(String(error.message || error), true));
