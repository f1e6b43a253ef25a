import { MolmError, UsageError } from '../errors.ts';
import type { FileSource } from './types.ts';
import { urlFileSource } from './web-files.ts';

// Models on the Hugging Face hub by their repo id, `ORG/NAME[@REV]`. The id is checked by the
// hub's own rules before it goes into a URL or, in Node, into a cache folder's path, so no id
// can name another path of the hub or leave the cache folder.

export const DEFAULT_HUB_URL = 'https://huggingface.co';
export const DEFAULT_REVISION = 'main';

export interface HubRepo {
  org: string;
  name: string;
  /** A branch, a tag or a commit (e.g. `main`, `v1.0`, `refs/pr/3`, a 40-digit sha). */
  revision: string;
  /** `ORG/NAME`. */
  id: string;
}

// huggingface_hub's validate_repo_id: letters, digits, "_", "-" and "." (a letter, digit or "_"
// first and last), at most 96 characters, no "--" or "..", no ".git" at the end. The hub allows
// ids without an owner ("gpt2"); here one is required, or "--model x" could not tell a folder
// from a repo.
const PART = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$/;

function badPart(part: string): string | null {
  if (!PART.test(part)) return 'letters, digits, "_", "-" and "." (a letter, digit or "_" first and last), at most 96 characters';
  if (part.includes('--') || part.includes('..')) return 'no "--" or ".."';
  if (part.endsWith('.git')) return 'no ".git" at the end';
  return null;
}

// Git's rules for a ref name (check-ref-format), less what no hub revision needs: slash-separated
// parts of letters, digits, "_", "-" and ".", none empty or starting with ".", no "..", not
// ending in ".lock".
const REVISION = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*(?:\/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$/;

function revisionOk(rev: string): boolean {
  return rev.length <= 200 && REVISION.test(rev) && !rev.includes('..') && !rev.endsWith('.lock') && !rev.endsWith('.');
}

const ID_RULES =
  'ORG/NAME or ORG/NAME@REVISION, where ORG and NAME are letters, digits, "_", "-" and "." (a letter, digit or "_" first and last, no "--" or "..") and REVISION a branch, tag or commit';

/**
 * Whether a `--model` value is meant as a hub repo rather than a path: relative, not starting
 * with "." or "~", and one "/" before any "@". Such a value that is no local folder is checked
 * with parseHubRepo, which names what is wrong with it.
 */
export function looksLikeHubRepo(text: string): boolean {
  const at = text.indexOf('@');
  const id = at < 0 ? text : text.slice(0, at);
  return /^[^/\\.~][^/\\]*\/[^/\\]+$/.test(id) && !/^[A-Za-z]:/.test(id);
}

/** `ORG/NAME` or `ORG/NAME@REV` (revision `main` when none), checked by the hub's rules; else a UsageError. */
export function parseHubRepo(text: string): HubRepo {
  const at = text.indexOf('@');
  const id = at < 0 ? text : text.slice(0, at);
  const revision = at < 0 ? DEFAULT_REVISION : text.slice(at + 1);
  const parts = id.split('/');
  if (parts.length !== 2) throw new UsageError(`"${text}" is not a Hugging Face repo id: give ${ID_RULES}.`);
  const [org, name] = parts;
  for (const [what, part] of [
    ['owner', org],
    ['name', name],
  ] as const) {
    const bad = badPart(part);
    if (bad) throw new UsageError(`"${text}" is not a Hugging Face repo id: the ${what} ${JSON.stringify(part)} must have ${bad}.`);
  }
  if (!revisionOk(revision)) {
    throw new UsageError(
      `"${text}" is not a Hugging Face repo id: the revision ${JSON.stringify(revision)} must be a branch, tag or commit name (letters, digits, "_", "-", "." and "/" between parts, no "..").`,
    );
  }
  return { org, name, revision, id: `${org}/${name}` };
}

/** The hub's address, checked: http(s), no credentials, query or fragment; without a trailing "/". */
export function parseHubUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`"${text}" is not a hub URL: give one like ${DEFAULT_HUB_URL}.`);
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password || url.search || url.hash) {
    throw new UsageError(`"${text}" is not a hub URL: give an http(s) address without credentials, query or fragment, like ${DEFAULT_HUB_URL}.`);
  }
  return url.href.replace(/\/+$/, '');
}

/** `${hubUrl}/ORG/NAME/resolve/REV/`: the folder every file of the repo is read from. */
export function hubResolveUrl(repo: HubRepo, hubUrl: string = DEFAULT_HUB_URL): string {
  // The hub takes a revision with "/" (refs/pr/3) as one escaped path segment, as huggingface_hub sends it.
  return `${parseHubUrl(hubUrl)}/${repo.org}/${repo.name}/resolve/${encodeURIComponent(repo.revision)}/`;
}

export function describeHubRepo(repo: HubRepo, hubUrl: string = DEFAULT_HUB_URL): string {
  return `${repo.id}@${repo.revision} on ${parseHubUrl(hubUrl)}`;
}

export interface HubSourceOptions {
  /** Default https://huggingface.co. */
  hubUrl?: string;
  fetch?: typeof fetch;
}

/**
 * The files of a hub repo at one revision, read with Range requests through the hub's `resolve`
 * URLs (urlFileSource: redirects to the CDN followed, ETags checked). The hub's answers for a
 * repo or revision that does not exist become errors that say so; a file the repo lacks is
 * absent (null), as in a folder. No login: private and gated repos are refused.
 */
export function hubFileSource(repo: HubRepo, o: HubSourceOptions = {}): FileSource {
  const hubUrl = parseHubUrl(o.hubUrl ?? DEFAULT_HUB_URL);
  const base = hubResolveUrl(repo, hubUrl);
  const get = o.fetch ?? fetch;
  const where = describeHubRepo(repo, hubUrl);
  const hubFetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const res = await get(input, init);
    // Only the hub's own answers say what a repo lacks; a CDN's 403 is an expired signature.
    const at = res.redirected && res.url ? res.url : String(input instanceof Request ? input.url : input);
    if (!at.startsWith(base)) return res;
    const code = res.headers.get('x-error-code');
    const fail = (message: string) => {
      void res.body?.cancel().catch(() => {});
      return new MolmError(message);
    };
    if (code === 'RepoNotFound' || (res.status === 401 && code === null)) {
      throw fail(`${hubUrl} has no model repo ${repo.id} (or it is private, which molm cannot read: it does not log in to the hub).`);
    }
    if (code === 'RevisionNotFound') throw fail(`${repo.id} on ${hubUrl} has no revision "${repo.revision}" (a branch, tag or commit).`);
    if (code === 'GatedRepo' || res.status === 403) {
      throw fail(`${where} refused access (HTTP ${res.status}${code ? `, ${code}` : ''}): gated and private repos need a login, which molm does not do.`);
    }
    return res;
  };
  const files = urlFileSource(base, hubFetch as typeof fetch);
  return { location: where, open: (name) => files.open(name) };
}
