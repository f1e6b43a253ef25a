import { stat } from 'node:fs/promises';
import { DEFAULT_HUB_URL, type HubRepo, describeHubRepo, hubFileSource, looksLikeHubRepo, parseHubRepo } from '../checkpoint/hub.ts';
import { nodeFileSource } from '../checkpoint/node-files.ts';
import type { FileSource } from '../checkpoint/types.ts';
import { MolmError, UsageError } from '../errors.ts';
import { DEFAULT_HUB_DTYPE, defaultCacheDir, importHubModel } from '../shards/hub-import.ts';
import type { ConvertDtype } from '../shards/plan.ts';
import { OptionError } from './args.ts';
import { progressReporter } from './convert.ts';

// `--model`: a local folder (converted or Hugging Face), or ORG/NAME[@REV] on the hub. A folder
// that exists is always read as a folder, so a hub id can never shadow a user's files.

export interface ModelArgOptions {
  hubUrl?: string;
  cacheDir?: string;
  /** The storage type a hub model is imported as (default q4). */
  dtype?: ConvertDtype;
  /** The hub options given on the command line: an error with a local folder, where they would do nothing. */
  hubOnly: string[];
}

export class ModelArg {
  private repo: HubRepo | null = null;
  private checked = false;
  private local: string | null = null;

  constructor(
    /** As given on the command line. */
    readonly value: string,
    private readonly o: ModelArgOptions,
  ) {}

  /** A folder that exists, or a valid hub repo id; nothing is read or downloaded. */
  async check(): Promise<void> {
    let s: Awaited<ReturnType<typeof stat>> | null = null;
    try {
      s = await stat(this.value);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
    }
    this.checked = true;
    if (s !== null) {
      if (!s.isDirectory()) throw new MolmError(`--model ${this.value} is not a folder: give the folder that holds the model's config.json or manifest.json.`);
      if (this.o.hubOnly.length > 0) {
        throw new OptionError(`--${this.o.hubOnly[0]} applies to a model from the Hugging Face hub (ORG/NAME); ${this.value} is a local folder.`);
      }
      return;
    }
    if (!looksLikeHubRepo(this.value)) {
      throw new MolmError(`--model ${this.value} does not exist: give the folder that holds the model (config.json or manifest.json, with its weights).`);
    }
    try {
      this.repo = parseHubRepo(this.value);
    } catch (e) {
      if (e instanceof UsageError) throw new OptionError(`--model ${this.value} is not a local folder, and ${e.message}`);
      throw e;
    }
  }

  /** After check(): whether --model names a hub repo. */
  get isHub(): boolean {
    return this.hubRepo() !== null;
  }

  private hubRepo(): HubRepo | null {
    if (!this.checked) throw new Error('ModelArg.check() must run first');
    return this.repo;
  }

  /** The hub model, read in place (molm convert). */
  source(): FileSource {
    const repo = this.hubRepo();
    return repo ? hubFileSource(repo, { hubUrl: this.o.hubUrl }) : nodeFileSource(this.value);
  }

  /** The model's local folder: the one given, or the hub model's converted copy, imported on first use. */
  async dir(): Promise<string> {
    const repo = this.hubRepo();
    if (!repo) return this.value;
    if (this.local) return this.local;
    const hubUrl = this.o.hubUrl ?? DEFAULT_HUB_URL;
    const dtype = this.o.dtype ?? DEFAULT_HUB_DTYPE;
    const progress = progressReporter(process.stderr, 'import');
    let r: Awaited<ReturnType<typeof importHubModel>>;
    try {
      r = await importHubModel({
        repo,
        hubUrl,
        dtype,
        cacheDir: this.o.cacheDir ?? defaultCacheDir(),
        onStart: (dir) => process.stderr.write(`molm: importing ${describeHubRepo(repo, hubUrl)} as ${dtype} into ${dir}\n`),
        onProgress: (p) => progress.update(p),
      });
    } finally {
      progress.done();
    }
    if (r.manifest) {
      const mib = (r.manifest.shards.reduce((a, s) => a + s.bytes, 0) / (1024 * 1024)).toFixed(1);
      process.stderr.write(
        `molm: imported ${repo.id}@${repo.revision}: ${mib} MiB (${dtype})${r.manifest.tokenizer ? ' with tokenizer.json' : ', no tokenizer.json'}\n`,
      );
    }
    this.local = r.dir;
    return r.dir;
  }
}
