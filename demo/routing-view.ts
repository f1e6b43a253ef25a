import type { RoutingTrace } from '../src/index.ts';

// The expert-routing heatmap: one map for the attention experts, one for the MLP experts.
// Columns are tokens, rows are experts grouped by layer, a cell's shade is the gate the router
// gave that expert for that token (blank: not chosen). Canvas, because a real MoLM has hundreds
// of expert rows; the readout line and the arrow keys make every cell readable without a mouse.

const LABEL_W = 64; // left margin: layer names
const HEAD_H = 72; // top margin: token texts, rotated
const LAYER_GAP = 4;

interface MapSpec {
  title: string;
  experts: number;
  k: number;
  ids: Uint32Array;
  gates: Float32Array;
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

/** Renders the routing of `trace` (its reply tokens, or every traced token) into `host`. */
export function renderRouting(host: HTMLElement, readout: HTMLElement, trace: RoutingTrace, includePrompt: boolean): void {
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
    { title: 'Attention experts', experts: trace.nAttExperts, k: trace.kAtt, ids: trace.attExperts, gates: trace.attGates },
    { title: 'MLP experts', experts: trace.nMlpExperts, k: trace.kMlp, ids: trace.mlpExperts, gates: trace.mlpGates },
  ];
  // The columns share the width the maps have (880 px at most), so on a phone's screen a short
  // reply's map fits; a long one keeps cells of 6 px and scrolls sideways in #routing.
  const room = Math.min(880, host.clientWidth > LABEL_W ? host.clientWidth - LABEL_W : 880);
  for (const spec of specs) host.append(heatmap(spec, trace, first, tokens, room, readout));
}

function heatmap(spec: MapSpec, trace: RoutingTrace, first: number, tokens: number, room: number, readout: HTMLElement): HTMLElement {
  const L = trace.layers;
  const E = spec.experts;
  const cellW = Math.max(6, Math.min(26, Math.floor(room / tokens)));
  const cellH = Math.max(3, Math.min(10, Math.floor(320 / (L * E))));
  const width = LABEL_W + tokens * cellW;
  const height = HEAD_H + L * (E * cellH + LAYER_GAP);
  const rowY = (layer: number, expert: number) => HEAD_H + layer * (E * cellH + LAYER_GAP) + expert * cellH;

  const figure = document.createElement('figure');
  const caption = document.createElement('figcaption');
  caption.textContent = `${spec.title}: ${L} layers × ${E} experts, ${spec.k} chosen per token`;
  const canvas = document.createElement('canvas');
  const scale = window.devicePixelRatio || 1;
  canvas.width = Math.ceil(width * scale);
  canvas.height = Math.ceil(height * scale);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.tabIndex = 0;
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', `${spec.title} heatmap. Focus it and use the arrow keys to read each token's experts.`);
  figure.append(caption, canvas);

  const dark = matchMedia('(prefers-color-scheme: dark)').matches;
  const ink = dark ? '#e5e7eb' : '#111827';
  const g = canvas.getContext('2d')!;
  g.scale(scale, scale);
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = ink;
  g.textBaseline = 'middle';
  for (let l = 0; l < L; l++) {
    g.fillText(`layer ${l}`, 4, rowY(l, 0) + (E * cellH) / 2);
    g.fillStyle = dark ? '#ffffff10' : '#0000000a';
    g.fillRect(LABEL_W, rowY(l, 0), tokens * cellW, E * cellH);
    g.fillStyle = ink;
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
        // Gates of a k-of-E router are often small; a square-root scale keeps them visible.
        const a = Math.min(1, Math.sqrt(Math.max(0, gate)));
        g.fillStyle = dark ? `rgba(147, 197, 253, ${0.25 + 0.75 * a})` : `rgba(29, 78, 216, ${0.25 + 0.75 * a})`;
        g.fillRect(LABEL_W + t * cellW, rowY(l, spec.ids[base + j]), cellW - 1, cellH - (cellH > 4 ? 1 : 0));
      }
    }
  }

  // The cell under the pointer or the keyboard cursor, described in words.
  const cursor = { t: 0, l: 0, e: 0 };
  const describe = () => {
    const token = first + cursor.t;
    const chosen = Array.from({ length: spec.k }, (_, j) => {
      const i = (token * L + cursor.l) * spec.k + j;
      return `${spec.ids[i]} (${spec.gates[i].toFixed(3)})`;
    });
    const gate = gateAt(spec, L, token, cursor.l, cursor.e);
    // A token's piece is the model's text, markup or not: textContent here, fillText above.
    readout.textContent =
      `${spec.title}, token ${cursor.t + 1} of ${tokens} “${trace.pieces[token]}”, layer ${cursor.l}: chose ${chosen.join(', ')}; ` +
      `expert ${cursor.e} ${gate > 0 ? `has gate ${gate.toFixed(3)}` : 'was not chosen'}.`;
  };
  canvas.addEventListener('pointermove', (ev) => {
    const r = canvas.getBoundingClientRect();
    const x = ev.clientX - r.left - LABEL_W;
    const y = ev.clientY - r.top - HEAD_H;
    if (x < 0 || y < 0) return;
    const l = Math.floor(y / (E * cellH + LAYER_GAP));
    const e = Math.floor((y - l * (E * cellH + LAYER_GAP)) / cellH);
    const t = Math.floor(x / cellW);
    if (t >= tokens || l >= L || e >= E) return;
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
