import type { Engine, RoutingTrace } from '../src/index.ts';

// The expert-routing heatmap: one map for the attention experts, one for the MLP experts.
// Columns are tokens, rows are experts grouped by layer, a cell's shade is the gate the router
// gave that expert for that token (blank: not chosen). Canvas, because a real MoLM has hundreds
// of expert rows; the readout line and the arrow keys make every cell readable without a mouse.
// An expert pack's experts (engine.packs: the indices after the base's, in every layer) are
// drawn apart: below a separator, on a band of their own hue, in cells of that hue, named in a
// legend, in the margin and in the readout.

/** Where an expert pack's experts sit (engine.packs). */
export type PackRanges = Engine['packs'];

const LABEL_W = 64; // left margin: layer names
const HEAD_H = 72; // top margin: token texts, rotated
const LAYER_GAP = 4;
/** Space above a pack's first expert row: the separator line between it and the experts above. */
const PACK_GAP = 3;

interface MapSpec {
  title: string;
  experts: number;
  k: number;
  ids: Uint32Array;
  gates: Float32Array;
  /** The experts each pack added to this kind of MoE, [from, to), after the base's. */
  packs: ExpertGroup[];
}

/** A pack's experts in one map. */
interface ExpertGroup {
  name: string;
  from: number;
  to: number;
  hue: PackHue;
}

/** A pack's colours: cells (light and dark schemes, r g b) and the band behind its rows. */
interface PackHue {
  light: string;
  dark: string;
  swatch: string;
}

/** Base experts are blue; packs take these in order (orange, green, purple), then again. */
const PACK_HUES: PackHue[] = [
  { light: '194, 65, 12', dark: '253, 186, 116', swatch: '#ea580c' },
  { light: '21, 128, 61', dark: '134, 239, 172', swatch: '#16a34a' },
  { light: '126, 34, 206', dark: '216, 180, 254', swatch: '#9333ea' },
];

/**
 * The packs' experts of one kind of MoE as groups of rows, or none when the ranges do not tile
 * the experts after the base's up to `experts` (the trace is then drawn as one model's).
 */
function packGroups(packs: PackRanges, kind: 'att' | 'mlp', experts: number): ExpertGroup[] {
  if (packs.length === 0) return [];
  const groups: ExpertGroup[] = [];
  let next = packs[0][kind][0];
  for (const [i, p] of packs.entries()) {
    const [from, to] = p[kind];
    if (from !== next || to < from) return [];
    next = to;
    if (to > from) groups.push({ name: p.name, from, to, hue: PACK_HUES[i % PACK_HUES.length] });
  }
  return next === experts ? groups : [];
}

/** A token's text as a column label: whitespace made visible, long pieces cut. */
function label(piece: string): string {
  const shown = piece.replace(/\n/g, '⏎').replace(/ /g, '·');
  return shown.length > 10 ? `${shown.slice(0, 9)}…` : shown || '∅';
}

function gateAt(spec: MapSpec, layers: number, token: number, layer: number, expert: number): number {
  const base = (token * layers + layer) * spec.k;
  for (let j = 0; j < spec.k; j++) if (spec.ids[base + j] === expert) return spec.gates[base + j];
  return 0;
}

/**
 * Renders the routing of `trace` (its reply tokens, or every traced token) into `host`; `packs`
 * are the expert packs of the model that made it (engine.packs when it ran).
 */
export function renderRouting(host: HTMLElement, readout: HTMLElement, trace: RoutingTrace, includePrompt: boolean, packs: PackRanges = []): void {
  const first = includePrompt ? 0 : trace.promptTokens;
  const tokens = trace.tokens - first;
  host.replaceChildren();
  if (tokens <= 0) {
    const p = document.createElement('p');
    p.className = 'hint';
    p.textContent = 'The reply has no token the model read back (a one-token reply): include the prompt to see its routing.';
    host.append(p);
    return;
  }
  const specs: MapSpec[] = [
    {
      title: 'Attention experts',
      experts: trace.nAttExperts,
      k: trace.kAtt,
      ids: trace.attExperts,
      gates: trace.attGates,
      packs: packGroups(packs, 'att', trace.nAttExperts),
    },
    {
      title: 'MLP experts',
      experts: trace.nMlpExperts,
      k: trace.kMlp,
      ids: trace.mlpExperts,
      gates: trace.mlpGates,
      packs: packGroups(packs, 'mlp', trace.nMlpExperts),
    },
  ];
  // The columns share the width the maps have (880 px at most), so on a phone's screen a short
  // reply's map fits; a long one keeps cells of 6 px and scrolls sideways in #routing.
  const room = Math.min(880, host.clientWidth > LABEL_W ? host.clientWidth - LABEL_W : 880);
  for (const spec of specs) host.append(heatmap(spec, trace, first, tokens, room, readout));
}

/** Where each expert's row sits within a layer: the base's rows, then each pack's below a gap. */
function rowLayout(spec: MapSpec, cellH: number): { offsets: number[]; layerH: number } {
  const offsets: number[] = [];
  let y = 0;
  for (let e = 0; e < spec.experts; e++) {
    if (spec.packs.some((p) => p.from === e)) y += PACK_GAP;
    offsets.push(y);
    y += cellH;
  }
  return { offsets, layerH: y };
}

const packOf = (spec: MapSpec, expert: number) => spec.packs.find((p) => expert >= p.from && expert < p.to);

/** The legend of a map with packs: the base's experts and each pack's, with their colours. */
function legend(spec: MapSpec, dark: boolean): HTMLElement {
  const list = document.createElement('ul');
  list.className = 'routing-legend';
  const base = spec.packs[0].from;
  const item = (swatch: string, text: string, group?: ExpertGroup) => {
    const li = document.createElement('li');
    const mark = document.createElement('span');
    mark.className = 'swatch';
    mark.style.background = swatch;
    li.append(mark, text);
    if (group) {
      li.className = 'pack';
      li.dataset.pack = group.name;
      li.dataset.from = String(group.from);
      li.dataset.to = String(group.to);
    }
    return li;
  };
  const range = (from: number, to: number) => (to - from === 1 ? `expert ${from}` : `experts ${from}–${to - 1}`);
  list.append(item(dark ? '#93c5fd' : '#1d4ed8', `base model: ${range(0, base)}`));
  // A pack's name is text from its manifest: textContent (append), never markup.
  for (const p of spec.packs) list.append(item(p.hue.swatch, `${p.name} (expert pack): ${range(p.from, p.to)}`, p));
  return list;
}

function heatmap(spec: MapSpec, trace: RoutingTrace, first: number, tokens: number, room: number, readout: HTMLElement): HTMLElement {
  const L = trace.layers;
  const E = spec.experts;
  const cellW = Math.max(6, Math.min(26, Math.floor(room / tokens)));
  const cellH = Math.max(3, Math.min(10, Math.floor(320 / (L * E))));
  const { offsets, layerH } = rowLayout(spec, cellH);
  const width = LABEL_W + tokens * cellW;
  const height = HEAD_H + L * (layerH + LAYER_GAP);
  const layerY = (layer: number) => HEAD_H + layer * (layerH + LAYER_GAP);
  const rowY = (layer: number, expert: number) => layerY(layer) + offsets[expert];
  const baseExperts = spec.packs.length > 0 ? spec.packs[0].from : E;

  const figure = document.createElement('figure');
  figure.dataset.experts = String(E);
  figure.dataset.baseExperts = String(baseExperts);
  const caption = document.createElement('figcaption');
  const added = spec.packs.map((p) => ` + ${p.to - p.from} of ${p.name}`).join('');
  caption.textContent = added
    ? `${spec.title}: ${L} layers × ${E} experts (${baseExperts} of the base${added}), ${spec.k} chosen per token`
    : `${spec.title}: ${L} layers × ${E} experts, ${spec.k} chosen per token`;
  const canvas = document.createElement('canvas');
  const scale = window.devicePixelRatio || 1;
  canvas.width = Math.ceil(width * scale);
  canvas.height = Math.ceil(height * scale);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.tabIndex = 0;
  canvas.setAttribute('role', 'img');
  const packWords = spec.packs.length ? `, the expert packs' experts below a line in each layer` : '';
  canvas.setAttribute('aria-label', `${spec.title} heatmap${packWords}. Focus it and use the arrow keys to read each token's experts.`);

  const dark = matchMedia('(prefers-color-scheme: dark)').matches;
  figure.append(caption);
  if (spec.packs.length) figure.append(legend(spec, dark));
  figure.append(canvas);
  const ink = dark ? '#e5e7eb' : '#111827';
  const g = canvas.getContext('2d')!;
  g.scale(scale, scale);
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = ink;
  g.textBaseline = 'middle';
  for (let l = 0; l < L; l++) {
    g.fillStyle = ink;
    g.fillText(`layer ${l}`, 4, rowY(l, 0) + (baseExperts * cellH) / 2);
    g.fillStyle = dark ? '#ffffff10' : '#0000000a';
    g.fillRect(LABEL_W, rowY(l, 0), tokens * cellW, baseExperts * cellH);
    for (const p of spec.packs) {
      const top = rowY(l, p.from);
      const rows = (p.to - p.from) * cellH;
      // The pack's band: its hue behind its rows, a line above them, a bar in the margin.
      g.fillStyle = `rgba(${dark ? p.hue.dark : p.hue.light}, ${dark ? 0.16 : 0.1})`;
      g.fillRect(LABEL_W, top, tokens * cellW, rows);
      g.fillStyle = p.hue.swatch;
      g.fillRect(LABEL_W - 6, top - PACK_GAP + 1, tokens * cellW + 6, 1);
      g.fillRect(LABEL_W - 6, top, 3, rows);
      // Its name beside its rows, where there is room (else "pack"; the legend names it).
      if (rows >= 9) {
        g.save();
        g.font = '9px system-ui, sans-serif';
        g.fillStyle = ink;
        const name = g.measureText(p.name).width <= LABEL_W - 12 ? p.name : 'pack';
        g.fillText(name, 4, top + rows / 2);
        g.restore();
      }
    }
  }
  for (let t = 0; t < tokens; t++) {
    g.save();
    g.translate(LABEL_W + t * cellW + cellW / 2, HEAD_H - 4);
    g.rotate(-Math.PI / 2.6);
    g.fillStyle = first + t < trace.promptTokens ? (dark ? '#9ca3af' : '#6b7280') : ink;
    g.fillText(label(trace.pieces[first + t]), 0, 0);
    g.restore();
    for (let l = 0; l < L; l++) {
      const base = ((first + t) * L + l) * spec.k;
      for (let j = 0; j < spec.k; j++) {
        const gate = spec.gates[base + j];
        const expert = spec.ids[base + j];
        // Gates of a k-of-E router are often small; a square-root scale keeps them visible.
        const a = Math.min(1, Math.sqrt(Math.max(0, gate)));
        const hue = packOf(spec, expert)?.hue;
        const rgb = hue ? (dark ? hue.dark : hue.light) : dark ? '147, 197, 253' : '29, 78, 216';
        g.fillStyle = `rgba(${rgb}, ${0.25 + 0.75 * a})`;
        g.fillRect(LABEL_W + t * cellW, rowY(l, expert), cellW - 1, cellH - (cellH > 4 ? 1 : 0));
      }
    }
  }

  // The cell under the pointer or the keyboard cursor, described in words.
  const named = (expert: number) => {
    const p = packOf(spec, expert);
    return p ? `${expert} of ${p.name}` : String(expert);
  };
  const cursor = { t: 0, l: 0, e: 0 };
  const describe = () => {
    const token = first + cursor.t;
    const chosen = Array.from({ length: spec.k }, (_, j) => {
      const i = (token * L + cursor.l) * spec.k + j;
      return `${named(spec.ids[i])} (${spec.gates[i].toFixed(3)})`;
    });
    const gate = gateAt(spec, L, token, cursor.l, cursor.e);
    // A token's piece is the model's text, markup or not: textContent here, fillText above.
    readout.textContent =
      `${spec.title}, token ${cursor.t + 1} of ${tokens} “${trace.pieces[token]}”, layer ${cursor.l}: chose ${chosen.join(', ')}; ` +
      `expert ${named(cursor.e)} ${gate > 0 ? `has gate ${gate.toFixed(3)}` : 'was not chosen'}.`;
  };
  canvas.addEventListener('pointermove', (ev) => {
    const r = canvas.getBoundingClientRect();
    const x = ev.clientX - r.left - LABEL_W;
    const y = ev.clientY - r.top - HEAD_H;
    if (x < 0 || y < 0) return;
    const l = Math.floor(y / (layerH + LAYER_GAP));
    const inLayer = y - l * (layerH + LAYER_GAP);
    const e = offsets.findIndex((o) => inLayer >= o && inLayer < o + cellH);
    const t = Math.floor(x / cellW);
    if (t >= tokens || l >= L || e < 0) return;
    Object.assign(cursor, { t, l, e });
    describe();
  });
  canvas.addEventListener('focus', describe);
  canvas.addEventListener('keydown', (ev) => {
    const moves: Record<string, () => void> = {
      ArrowLeft: () => (cursor.t = Math.max(0, cursor.t - 1)),
      ArrowRight: () => (cursor.t = Math.min(tokens - 1, cursor.t + 1)),
      ArrowUp: () => {
        if (cursor.e > 0) cursor.e--;
        else if (cursor.l > 0) [cursor.l, cursor.e] = [cursor.l - 1, E - 1];
      },
      ArrowDown: () => {
        if (cursor.e < E - 1) cursor.e++;
        else if (cursor.l < L - 1) [cursor.l, cursor.e] = [cursor.l + 1, 0];
      },
      Home: () => (cursor.t = 0),
      End: () => (cursor.t = tokens - 1),
    };
    const move = moves[ev.key];
    if (!move) return;
    ev.preventDefault();
    move();
    describe();
  });
  return figure;
}
