import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MolmError } from '../../src/errors.ts';
import { rng } from './mutate.ts';
import { type Folder, type FuzzTarget, MODEL_BASE } from './targets.ts';

// Runs a target over seeded inputs and sorts every outcome: loaded, refused with one of the
// project's errors (by class), or a failure — another exception, an input that took longer than
// the bound (a hang in the making), a peak memory past the bound, or a URL fetched outside the
// model's folder. A failure keeps its seed, so `input(rng(seed))` rebuilds the input exactly.

/**
 * An input may take this much CPU time (process.cpuUsage: other load on the machine does not
 * count): the slowest legitimate ones, a 2 MB tokenizer.json, take about 0.4 s.
 */
export const SLOW_INPUT_MS = 10_000;
/** The process's peak resident memory may grow this much over a campaign (inputs are under 2 MB). */
export const PEAK_MEMORY_BOUND = 1 << 30;

export interface Failure {
  target: string;
  seed: number;
  what: string;
}

export interface CampaignResult {
  target: string;
  inputs: number;
  loaded: number;
  /** Refusals by error class (error.name). */
  refused: Record<string, number>;
  failures: Failure[];
  ms: number;
}

const peakRss = () => process.resourceUsage().maxRSS * 1024;

/** Seeds of a target's inputs: one stream per (campaign seed, target). */
export function inputSeed(campaignSeed: number, target: string, i: number): number {
  let h = campaignSeed >>> 0;
  for (const c of target) h = Math.imul(h ^ c.charCodeAt(0), 0x9e3779b1) >>> 0;
  return (h + Math.imul(i, 0x85ebca6b)) >>> 0;
}

export async function runCampaign(target: FuzzTarget, inputs: number, campaignSeed: number, saveDir?: string): Promise<CampaignResult> {
  const result: CampaignResult = { target: target.name, inputs, loaded: 0, refused: {}, failures: [], ms: 0 };
  const rssAtStart = peakRss();
  const started = performance.now();
  for (let i = 0; i < inputs; i++) {
    const seed = inputSeed(campaignSeed, target.name, i);
    const folder = target.input(rng(seed));
    const requested: string[] = [];
    const fail = (what: string) => {
      result.failures.push({ target: target.name, seed, what });
      if (saveDir) save(saveDir, target.name, seed, folder);
    };
    const cpu0 = process.cpuUsage();
    try {
      await target.run(folder, requested);
      result.loaded++;
    } catch (e) {
      if (e instanceof MolmError) result.refused[e.name] = (result.refused[e.name] ?? 0) + 1;
      else fail(`threw ${describe(e)}`);
    }
    const { user, system } = process.cpuUsage(cpu0);
    const ms = (user + system) / 1000;
    if (ms > SLOW_INPUT_MS) fail(`took ${Math.round(ms)} ms of CPU time`);
    const outside = requested.filter((url) => !url.startsWith(MODEL_BASE));
    if (outside.length > 0) fail(`fetched outside the model's folder: ${outside.slice(0, 3).join(', ')}`);
    if (peakRss() - rssAtStart > PEAK_MEMORY_BOUND) {
      fail(`peak memory grew by ${Math.round((peakRss() - rssAtStart) / 2 ** 20)} MiB`);
      break; // the peak never comes down: later inputs cannot be judged
    }
  }
  result.ms = performance.now() - started;
  return result;
}

function describe(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message.slice(0, 300)}${e.stack ? `\n${e.stack.split('\n').slice(1, 4).join('\n')}` : ''}`;
  return String(e).slice(0, 300);
}

function save(dir: string, target: string, seed: number, folder: Folder): void {
  const out = join(dir, `${target.replace(/[^a-z0-9]+/gi, '-')}-${seed}`);
  mkdirSync(out, { recursive: true });
  for (const [name, bytes] of folder) writeFileSync(join(out, encodeURIComponent(name)), bytes);
}
