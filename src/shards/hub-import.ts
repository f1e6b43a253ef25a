import { mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { DEFAULT_HUB_URL, type HubRepo, hubFileSource, parseHubRepo, parseHubUrl } from '../checkpoint/hub.ts';
import { UsageError } from '../errors.ts';
import { MANIFEST_FILE, type Manifest } from '../manifest.ts';
import { type ConvertProgress, convertModel } from './convert.ts';
import { CONVERT_DTYPES, type ConvertDtype } from './plan.ts';

// A model of the Hugging Face hub, converted once into a local cache folder (Node). The
// conversion is written into a hidden temporary folder next to its place and renamed into place
// only when complete: a folder at the cache path is always a whole model, whatever interrupted
// an earlier import, and later runs read it without the network.

/** What an imported folder holds besides the converted model: where it came from. */
export const HUB_SOURCE_FILE = 'hub-source.json';

export const DEFAULT_HUB_DTYPE: ConvertDtype = 'q4';

export interface HubImportOptions {
  /** `ORG/NAME` or `ORG/NAME@REV` (revision `main` when none), or a parsed repo. */
  repo: string | HubRepo;
  /** Default https://huggingface.co. */
  hubUrl?: string;
  /** The converted copy's storage type (default q4). */
  dtype?: ConvertDtype;
  /** Default: $XDG_CACHE_HOME/molm-web, else ~/.cache/molm-web. */
  cacheDir?: string;
  /** Largest shard, in bytes (default 32 MiB). */
  shardBytes?: number;
  fetch?: typeof fetch;
  /** Called once before the download starts, with the folder the model goes to (not for a cached model). */
  onStart?: (dir: string) => void;
  onProgress?: (p: ConvertProgress) => void;
}

export interface HubImport {
  /** The converted model's folder: pass it as `model` to createEngine, or to `molm --model`. */
  dir: string;
  /** False when the folder was there already (nothing was downloaded). */
  imported: boolean;
  manifest: Manifest | null;
}

/** $XDG_CACHE_HOME/molm-web, or ~/.cache/molm-web (an XDG_CACHE_HOME that is not absolute is ignored, as the spec says). */
export function defaultCacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache'), 'molm-web');
}

/**
 * `CACHE/HOST/ORG/NAME/REV/DTYPE`. The hub's host is part of the path because another hub (a
 * mirror, a private one, a test's) may hold other bytes under the same id. A revision with "/"
 * (refs/pr/3) becomes one segment ("refs%2Fpr%2F3").
 */
export function hubCacheFolder(cacheDir: string, repo: HubRepo, hubUrl: string, dtype: ConvertDtype): string {
  const url = new URL(parseHubUrl(hubUrl));
  const host = `${url.host}${url.pathname.replace(/\/+$/, '')}`.replace(/[^A-Za-z0-9._-]/g, '_');
  return join(cacheDir, host, repo.org, repo.name, encodeURIComponent(repo.revision), dtype);
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function isComplete(dir: string): Promise<boolean> {
  try {
    return (await stat(join(dir, MANIFEST_FILE))).isFile();
  } catch {
    return false;
  }
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it runs, as another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary folders of imports into `place` whose process is gone (killed, or the
 * machine went down): they are never read, only take space. Another process's import that is
 * still running keeps its folder.
 */
async function removeAbandoned(parent: string, place: string): Promise<void> {
  const prefix = `.${place}.partial-`;
  for (const entry of await readdir(parent)) {
    if (!entry.startsWith(prefix)) continue;
    const pid = Number(/^(\d+)-/.exec(entry.slice(prefix.length))?.[1]);
    if (Number.isSafeInteger(pid) && pid !== process.pid && !running(pid)) await rm(join(parent, entry), { recursive: true, force: true });
  }
}

/**
 * The hub model's converted folder in the cache: imported (downloaded and converted, with its
 * tokenizer.json) unless it is there already. An import that fails leaves nothing at the folder's
 * path and removes its temporary folder.
 */
export async function importHubModel(o: HubImportOptions): Promise<HubImport> {
  const repo = typeof o.repo === 'string' ? parseHubRepo(o.repo) : o.repo;
  const hubUrl = parseHubUrl(o.hubUrl ?? DEFAULT_HUB_URL);
  const dtype = o.dtype ?? DEFAULT_HUB_DTYPE;
  if (!CONVERT_DTYPES.includes(dtype)) throw new UsageError(`dtype must be one of ${CONVERT_DTYPES.join(', ')}, got ${JSON.stringify(dtype)}.`);
  const dir = hubCacheFolder(o.cacheDir ?? defaultCacheDir(), repo, hubUrl, dtype);
  if (await isComplete(dir)) return { dir, imported: false, manifest: null };

  const parent = dirname(dir);
  await mkdir(parent, { recursive: true });
  await removeAbandoned(parent, basename(dir));
  const tmp = await mkdtemp(join(parent, `.${basename(dir)}.partial-${process.pid}-`));
  try {
    o.onStart?.(dir);
    const manifest = await convertModel({
      source: hubFileSource(repo, { hubUrl, fetch: o.fetch }),
      outDir: tmp,
      dtype,
      shardBytes: o.shardBytes,
      onProgress: o.onProgress,
    });
    const source = { repo: repo.id, revision: repo.revision, hub: hubUrl, dtype, imported: new Date().toISOString() };
    await writeFile(join(tmp, HUB_SOURCE_FILE), JSON.stringify(source, null, 1) + '\n');
    if (await isComplete(dir)) {
      // Another import of the same model finished first; both are the same model.
      await rm(tmp, { recursive: true, force: true });
      return { dir, imported: false, manifest: null };
    }
    // Only a folder without a manifest can be here (left by hand): never a model.
    if (await isDirectory(dir)) await rm(dir, { recursive: true, force: true });
    try {
      await rename(tmp, dir);
    } catch (e) {
      if (!(await isComplete(dir))) throw e;
      await rm(tmp, { recursive: true, force: true });
      return { dir, imported: false, manifest: null };
    }
    return { dir, imported: true, manifest };
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}
