// Draws the pruning study (tools/experts/prune-study.sh → results.csv) as an SVG line chart:
// perplexity on the task's unseen text and on other text, relative to the unpruned model's on
// the same text, against the experts kept per layer, with each model's size under its tick.
//
//   node tools/experts/plot.mjs results.csv docs/images/prune.svg
import { readFileSync, writeFileSync } from 'node:fs';

const [csv, out] = process.argv.slice(2);
if (!csv || !out) throw new Error('usage: node tools/experts/plot.mjs results.csv out.svg');
/**
 * A line of results.csv (rule,att_experts,mlp_experts,bytes,press_ppl,fiction_ppl), and each
 * perplexity relative to the unpruned model's (press_rel, fiction_rel), added below.
 * @typedef {{ rule: string, att_experts: number, mlp_experts: number, bytes: number, press_ppl: number, fiction_ppl: number, press_rel: number, fiction_rel: number }} Row
 */
const [head, ...lines] = readFileSync(csv, 'utf8').trim().split('\n');
const cols = head.split(',');
const rows = lines
  .map((l) => /** @type {Row} */ (Object.fromEntries(l.split(',').map((v, i) => [cols[i], i === 0 ? v : Number(v)]))))
  .filter((r) => r.rule === 'all' || r.rule.startsWith('keep'))
  .sort((a, b) => a.mlp_experts - b.mlp_experts);

const W = 720,
  H = 380,
  L = 70,
  R = 170,
  T = 40,
  B = 70;
const full = rows.find((r) => r.rule === 'all');
if (!full) throw new Error(`${csv}: no row for the unpruned model (rule "all")`);
for (const r of rows) for (const k of /** @type {const} */ (['press', 'fiction'])) r[`${k}_rel`] = r[`${k}_ppl`] / full[`${k}_ppl`];
const xs = rows.map((r) => r.mlp_experts);
const ys = rows.flatMap((r) => [r.press_rel, r.fiction_rel]);
const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
const [y0, y1] = [Math.log(Math.min(...ys) * 0.95), Math.log(Math.max(...ys) * 1.1)];
const px = (/** @type {number} */ x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
const py = (/** @type {number} */ y) => T + (1 - (Math.log(y) - y0) / (y1 - y0)) * (H - T - B);
/** @type {{ key: 'press_rel' | 'fiction_rel', ppl: 'press_ppl' | 'fiction_ppl', name: string, color: string }[]} */
const series = [
  { key: 'press_rel', ppl: 'press_ppl', name: 'press (task), unseen', color: '#1d4ed8' },
  { key: 'fiction_rel', ppl: 'fiction_ppl', name: 'fiction (other text)', color: '#b45309' },
];
/** @type {string[]} */
const svg = [];
svg.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`);
svg.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
svg.push(`<text x="${L - 50}" y="22" font-size="14" font-weight="600">molm-brown pruned to the experts press text uses: perplexity ÷ unpruned model's</text>`);
// Y grid at round perplexities.
for (const y of [1, 1.25, 1.5, 2, 2.5, 3, 4, 5]) {
  if (Math.log(y) < y0 || Math.log(y) > y1) continue;
  svg.push(
    `<line x1="${L}" x2="${W - R}" y1="${py(y)}" y2="${py(y)}" stroke="#e5e7eb"/><text x="${L - 6}" y="${py(y) + 4}" text-anchor="end" fill="#374151">×${y}</text>`,
  );
}
for (const r of rows) {
  svg.push(`<line x1="${px(r.mlp_experts)}" x2="${px(r.mlp_experts)}" y1="${T}" y2="${H - B}" stroke="#f3f4f6"/>`);
  svg.push(`<text x="${px(r.mlp_experts)}" y="${H - B + 16}" text-anchor="middle" fill="#111827">${r.mlp_experts}</text>`);
  svg.push(`<text x="${px(r.mlp_experts)}" y="${H - B + 31}" text-anchor="middle" fill="#4b5563">${(r.bytes / 1e6).toFixed(1)} MB</text>`);
}
svg.push(
  `<text x="${(L + W - R) / 2}" y="${H - 14}" text-anchor="middle" fill="#111827">attention and MLP experts kept per layer (of 8), and the model's size (q8)</text>`,
);
for (const [i, s] of series.entries()) {
  const pts = rows.map((r) => `${px(r.mlp_experts).toFixed(1)},${py(r[s.key]).toFixed(1)}`);
  svg.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2.5"/>`);
  for (const r of rows)
    svg.push(
      `<circle cx="${px(r.mlp_experts)}" cy="${py(r[s.key])}" r="4" fill="${s.color}"><title>${s.name}: ${r[s.ppl].toFixed(1)} (×${r[s.key].toFixed(2)})</title></circle>`,
    );
  svg.push(
    `<rect x="${W - R + 14}" y="${T + 10 + i * 22}" width="14" height="4" fill="${s.color}"/><text x="${W - R + 34}" y="${T + 15 + i * 22}" fill="#111827">${s.name}</text>`,
  );
}
svg.push('</svg>');
writeFileSync(out, svg.join('\n') + '\n');
