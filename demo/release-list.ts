import { parseHubRepo } from '../src/checkpoint/hub.ts';
import type { BackendChoice, Backend } from '../src/engine/backend.ts';
import { browserGpu } from '../src/gpu/browser-gpu.ts';
import { importKey } from '../src/shards/hub-store-import.ts';
import { listCachedModels } from '../src/store/model-cache.ts';
import {
  type DeviceFacts,
  formatBytes,
  formatCount,
  gpuShortfall,
  RELEASE_DTYPE,
  RELEASES,
  type Release,
  releaseSizes,
  type Stored,
  type Verdict,
  verdict,
} from './releases.ts';

// The demo's list of IBM's releases: one row each with its sizes and this device's verdict,
// and a button that hands the release to main.ts to load (import from the hub, then run).

const sizes = new Map(RELEASES.map((r) => [r.repo, releaseSizes(r)]));

/** The cache key of a release's converted copy from this hub (what the import stores under). */
export const releaseKey = (r: Release, hubUrl: string) => importKey(parseHubRepo(r.repo), hubUrl, RELEASE_DTYPE);

/** The engine a model will meet, as Engine is set (probe: chooseBackend('auto')'s answer). */
async function engineFacts(choice: BackendChoice, probe: Backend | null): Promise<DeviceFacts['engine']> {
  if (choice === 'wasm') return { kind: 'wasm', why: 'asked for' };
  if (choice === 'auto' && probe?.kind !== 'webgpu') return { kind: 'wasm', why: probe?.reason ?? 'no WebGPU' };
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await (await browserGpu()).requestAdapter({ powerPreference: 'high-performance' });
  } catch {
    // No WebGPU: said below.
  }
  if (!adapter) {
    return choice === 'auto' ? { kind: 'wasm', why: 'no WebGPU adapter' } : { kind: 'none', why: 'this browser has no usable WebGPU' };
  }
  const l = adapter.limits;
  return { kind: 'webgpu', auto: choice === 'auto', limits: { maxStorageBufferBindingSize: l.maxStorageBufferBindingSize, maxBufferSize: l.maxBufferSize } };
}

async function storageFacts(): Promise<DeviceFacts['storage']> {
  try {
    const e = await navigator.storage?.estimate?.();
    return e?.quota === undefined ? null : { quota: e.quota, usage: e.usage ?? 0 };
  } catch {
    return null;
  }
}

export interface ReleaseRow {
  release: Release;
  verdict: Verdict;
  stored?: Stored;
}

/** Every release's verdict on this device now (engine and storage asked afresh). */
export async function checkReleases(hubUrl: string, choice: BackendChoice, probe: Backend | null): Promise<ReleaseRow[]> {
  const [engine, storage, cached] = await Promise.all([engineFacts(choice, probe), storageFacts(), listCachedModels().catch(() => [])]);
  const device: DeviceFacts = { engine, storage };
  return Promise.all(
    RELEASES.map(async (release) => {
      const s = sizes.get(release.repo)!;
      const key = releaseKey(release, hubUrl);
      const hit = cached.find((m) => m.url === key);
      const stored = hit && { cachedBytes: hit.cachedBytes, complete: hit.complete };
      const tooBig = engine.kind === 'webgpu' ? await gpuShortfall(release, s.plan, engine.limits) : null;
      return { release, verdict: verdict(release, s, device, stored, tooBig), stored };
    }),
  );
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className: string, text = ''): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  e.className = className;
  e.textContent = text;
  return e;
}

/** The rows, before the device is checked: names and sizes, the verdicts pending. */
export function drawReleases(list: HTMLElement, hubUrl: string, onChoose: (r: Release) => void): void {
  list.replaceChildren(
    ...RELEASES.map((r) => {
      const s = sizes.get(r.repo)!;
      const c = r.config;
      const item = el('li', 'release');
      Object.assign(item.dataset, {
        repo: r.repo,
        verdict: 'pending',
        parameters: String(s.parameters),
        activeParameters: String(s.activeParameters),
        downloadBytes: String(s.downloadBytes),
        q4Bytes: String(s.q4Bytes),
        q8Bytes: String(s.q8Bytes),
      });
      const head = el('div', 'release-head');
      const link = el('a', 'release-name', r.name);
      link.href = `${hubUrl}/${r.repo}`;
      link.target = '_blank';
      link.rel = 'noopener';
      head.append(link);
      const facts = el(
        'p',
        'release-facts',
        `${formatCount(s.parameters)} parameters, ${formatCount(s.activeParameters)} used per token ` +
          `(${c.kAtt} of ${c.nAttExperts} attention and ${c.kMlp} of ${c.nMlpExperts} MLP experts per layer, ${c.nLayer} layers)`,
      );
      const bytes = el(
        'p',
        'release-sizes',
        `Download ${formatBytes(s.downloadBytes)} (${r.torchDtype} weights) · kept as ${formatBytes(s.q4Bytes)} in q4 (${formatBytes(s.q8Bytes)} in q8)`,
      );
      const judged = el('p', 'release-verdict', 'Checking this device…');
      const use = el('button', 'release-use', `Use ${r.name}`);
      use.type = 'button';
      use.disabled = true;
      use.addEventListener('click', () => onChoose(r));
      item.append(head, facts, bytes, judged, use);
      return item;
    }),
  );
}

/** The verdicts into the rows; `busy` disables every button (a model is loading). */
export function showVerdicts(list: HTMLElement, rows: ReleaseRow[], busy: boolean): void {
  for (const row of rows) {
    const item = list.querySelector<HTMLElement>(`li.release[data-repo="${CSS.escape(row.release.repo)}"]`);
    if (!item) continue;
    item.dataset.verdict = row.verdict.kind;
    item.dataset.backend = row.verdict.backend ?? '';
    item.dataset.stored = row.stored?.complete ? 'complete' : row.stored && row.stored.cachedBytes > 0 ? 'partial' : 'none';
    const p = item.querySelector('.release-verdict')!;
    p.textContent = row.verdict.text;
    p.classList.toggle('error', row.verdict.backend === null);
    item.querySelector<HTMLButtonElement>('.release-use')!.disabled = busy || row.verdict.backend === null;
  }
}
