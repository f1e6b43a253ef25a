import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.ts';

// The CLI's options: what each takes, and the one parser that checks every value a command was
// given before the command opens anything, so a typo costs no model load.

/** An option's value outside what the option takes, an unknown option, a missing one: the command's usage follows the message. */
export class OptionError extends UsageError {}

interface StringSpec {
  type: 'string';
  /** The value's placeholder in the usage text. */
  arg: string;
  /** What the option takes, for the usage text and the error ("must be …"). */
  allowed: string;
  /** The value, or undefined when `text` is not one the option takes. */
  parse: (text: string) => unknown;
  multiple?: boolean;
}

interface FlagSpec {
  type: 'boolean';
  allowed: string;
}

export type Spec = StringSpec | FlagSpec;

/** Context and token counts: config.json's n_ctx may be at most 2^20 (src/limits.ts). */
export const MAX_TOKENS = 1 << 20;

/** Digits only: Number() would also take "", " 5", "0x10" and "1e99" (an "integer" past 2^53). */
export function wholeNumber(min: number, max: number, arg = 'N', extra = ''): StringSpec {
  return {
    type: 'string',
    arg,
    allowed: `a whole number from ${min} to ${max}${extra}`,
    parse: (x) => (/^\d{1,16}$/.test(x) && Number(x) >= min && Number(x) <= max ? Number(x) : undefined),
  };
}

const DECIMAL = /^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/** A decimal number in [min, max], or (min, max] with `above`. */
export function decimal(min: number, max: number, o: { above?: boolean; arg?: string; allowed: string }): StringSpec {
  return {
    type: 'string',
    arg: o.arg ?? 'X',
    allowed: o.allowed,
    parse: (x) => {
      if (!DECIMAL.test(x)) return undefined;
      const n = Number(x);
      return Number.isFinite(n) && (o.above ? n > min : n >= min) && n <= max ? n : undefined;
    },
  };
}

export function oneOf<T extends string>(values: readonly T[], arg = values.join('|')): StringSpec {
  return {
    type: 'string',
    arg,
    allowed: `one of ${values.join(', ')}`,
    parse: (x) => ((values as readonly string[]).includes(x.toLowerCase()) ? x.toLowerCase() : undefined),
  };
}

/** A file or folder name: anything but empty. */
export function path(arg: string, allowed: string): StringSpec {
  return { type: 'string', arg, allowed, parse: (x) => (x === '' ? undefined : x) };
}

export function text(arg: string, allowed: string, o: { multiple?: boolean; nonEmpty?: boolean } = {}): StringSpec {
  return { type: 'string', arg, allowed, multiple: o.multiple, parse: (x) => (o.nonEmpty && x === '' ? undefined : x) };
}

export function flag(allowed: string): FlagSpec {
  return { type: 'boolean', allowed };
}

/** The checked values of one command line. */
export class Args {
  constructor(
    private readonly values: Map<string, unknown>,
    readonly specs: Readonly<Record<string, Spec>>,
  ) {}

  has(name: string): boolean {
    return this.values.has(name);
  }

  flag(name: string): boolean {
    return this.values.get(name) === true;
  }

  get<T>(name: string): T | undefined;
  get<T>(name: string, fallback: T): T;
  get<T>(name: string, fallback?: T): T | undefined {
    return this.values.has(name) ? (this.values.get(name) as T) : fallback;
  }

  /** A value the command cannot run without. */
  required<T>(name: string): T {
    if (!this.values.has(name)) throw new OptionError(`--${name} is required: ${this.describe(name)}.`);
    return this.values.get(name) as T;
  }

  /** Throws unless at most one of the options was given (exactly one with `need`). */
  exclusive(names: string[], need = false): void {
    const given = names.filter((n) => this.values.has(n));
    const list = names.map((n) => `--${n}`).join(' or ');
    if (given.length > 1) throw new OptionError(`Give ${list}, not both.`);
    if (need && given.length === 0) throw new OptionError(`Give ${list}.`);
  }

  private describe(name: string): string {
    const s = this.specs[name];
    return s.type === 'string' ? `${s.arg}, ${s.allowed}` : s.allowed;
  }
}

/**
 * `--opt -3` is read by parseArgs as a missing value followed by an option "-3"; joined into
 * `--opt=-3` the value reaches its check, which names what the option takes.
 */
function joinNegativeNumbers(argv: readonly string[], specs: Readonly<Record<string, Spec>>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = argv[i + 1];
    if (a.startsWith('--') && !a.includes('=') && specs[a.slice(2)]?.type === 'string' && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

/** The first word that is not an option or an option's value: the command. */
export function findCommand(argv: readonly string[], all: Readonly<Record<string, Spec>>): string | undefined {
  const { positionals } = parseArgs({ args: [...argv], options: parseOptions(all), allowPositionals: true, strict: false });
  return positionals[0];
}

function parseOptions(specs: Readonly<Record<string, Spec>>): NonNullable<ParseArgsConfig['options']> {
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const [name, s] of Object.entries(specs)) {
    options[name] = s.type === 'boolean' ? { type: 'boolean', ...(name === 'help' && { short: 'h' }) } : { type: 'string', multiple: s.multiple === true };
  }
  return options;
}

/**
 * The command line of one command, every value checked against its spec. Throws an OptionError
 * naming the option and what it takes.
 */
export function parseCommandLine(argv: readonly string[], specs: Readonly<Record<string, Spec>>): { args: Args; positionals: string[] } {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: joinNegativeNumbers(argv, specs), options: parseOptions(specs), allowPositionals: true, strict: true });
  } catch (e) {
    throw optionErrorFrom(e, specs);
  }
  const values = new Map<string, unknown>();
  for (const [name, raw] of Object.entries(parsed.values)) {
    const s = specs[name];
    if (raw === undefined) continue;
    if (s.type === 'boolean') {
      values.set(name, raw === true);
      continue;
    }
    const texts = Array.isArray(raw) ? raw : [raw];
    const checked = texts.map((x) => {
      const v = s.parse(String(x));
      if (v === undefined) throw new OptionError(`--${name} must be ${s.allowed}, got ${JSON.stringify(x)}.`);
      return v;
    });
    values.set(name, s.multiple ? checked : checked[0]);
  }
  return { args: new Args(values, specs), positionals: parsed.positionals };
}

/** parseArgs' errors, reworded to name the option and what it takes. */
function optionErrorFrom(e: unknown, specs: Readonly<Record<string, Spec>>): unknown {
  const code = (e as { code?: string }).code;
  const message = (e as Error).message ?? String(e);
  const quoted = /'(-{1,2}[^' ]+)/.exec(message)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return new OptionError(`Unknown option ${quoted ?? message}.`);
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && quoted) {
    const s = specs[quoted.replace(/^-+/, '')];
    if (s?.type === 'boolean') return new OptionError(`${quoted} takes no value.`);
    if (s?.type === 'string') {
      const dash = /ambiguous/.test(message) ? ` (a value that starts with "-" is written ${quoted}=-…)` : '';
      return new OptionError(`${quoted} needs a value${dash}: ${s.arg}, ${s.allowed}.`);
    }
  }
  if (code?.startsWith('ERR_PARSE_ARGS')) return new OptionError(message.split('\n')[0]);
  return e;
}
