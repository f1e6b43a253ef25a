import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

// A local stand-in for the Hugging Face hub, on 127.0.0.1: two servers, as the real hub has.
// The "hub" answers `/ORG/NAME/resolve/REV/FILE` as huggingface.co does, with a 302 to a signed
// address on a second origin, the "CDN", which serves the bytes with Range, ETag and CORS; a repo,
// revision or file that does not exist gets the hub's status and X-Error-Code. Switches make
// either side misbehave the ways the tests need.

export interface HubRequest {
  server: 'hub' | 'cdn';
  method: string;
  /** ORG/NAME/REV/FILE, the revision decoded. */
  file: string;
  range: string | null;
  status: number;
}

export interface HubSwitches {
  /** The CDN answers Range requests with 206 (true, the default) or ignores them and sends 200. */
  ranges: boolean;
  /** File names the hub serves itself, whole (200, Range ignored), as it may serve small files. */
  direct: Set<string>;
  /**
   * Per ORG/NAME/REV/FILE: after this many more GETs of it on the CDN, its bytes (one flipped) and
   * its ETag change, as when a file is replaced on the server during a download.
   */
  changeAfter: Map<string, number>;
  /** Per ORG/NAME/REV/FILE: a signed address stops working (403) after this many GETs, as an expired one does. */
  expireAfter: Map<string, number>;
}

export interface HubStandIn {
  /** http://127.0.0.1:PORT, what --hub-url takes. */
  hubUrl: string;
  cdnUrl: string;
  switches: HubSwitches;
  requests: HubRequest[];
  /** Serves `files` (name → local path) as repo `id` ("ORG/NAME") at `revision` (default main). */
  addRepo(id: string, files: Record<string, string>, revision?: string): void;
  /** GETs of one file (ORG/NAME/REV/FILE) on one server. */
  count(server: 'hub' | 'cdn', file: string): number;
  close(): Promise<void>;
}

const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'Content-Length, Content-Range, Accept-Ranges, ETag, X-Repo-Commit, X-Linked-Etag, X-Linked-Size, X-Error-Code',
};

function preflight(res: ServerResponse): void {
  res.writeHead(204, {
    ...CORS,
    'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS',
    'Access-Control-Allow-Headers': 'Range',
    'Access-Control-Max-Age': '600',
  });
  res.end();
}

/** A file's ETag: its sha256, computed once per byte array (a large file is hashed once, not per request). */
const etags = new WeakMap<Uint8Array, string>();
const etagOf = (data: Uint8Array) => {
  let tag = etags.get(data);
  if (!tag) etags.set(data, (tag = `"${createHash('sha256').update(data).digest('hex')}"`));
  return tag;
};

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    handler(req, res).catch((e) => {
      res.writeHead(500, CORS);
      res.end(String(e));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

export async function startHubStandIn(): Promise<HubStandIn> {
  /** ORG/NAME → REV → FILE → local path. */
  const repos = new Map<string, Map<string, Map<string, string>>>();
  const bytes = new Map<string, Uint8Array>();
  const requests: HubRequest[] = [];
  const switches: HubSwitches = { ranges: true, direct: new Set(), changeAfter: new Map(), expireAfter: new Map() };
  /** Signature → the GETs it has served. */
  const signatures = new Map<string, number>();
  let signed = 0;
  const commit = createHash('sha1').update('stand-in').digest('hex');

  const load = async (path: string) => {
    let data = bytes.get(path);
    if (!data) {
      data = new Uint8Array(await readFile(path));
      bytes.set(path, data);
    }
    return data;
  };

  const hub = await listen(async (req, res) => {
    if (req.method === 'OPTIONS') return preflight(res);
    const method = req.method ?? 'GET';
    const range = (req.headers.range as string | undefined) ?? null;
    const url = new URL(req.url ?? '/', 'http://x');
    const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    const answer = (status: number, file: string, headers: Record<string, string | number>, body?: Uint8Array) => {
      requests.push({ server: 'hub', method, file, range, status });
      res.writeHead(status, { ...CORS, ...headers });
      res.end(method === 'HEAD' ? undefined : body);
    };
    if (!m) return answer(404, url.pathname, { 'Content-Type': 'text/plain' }, Buffer.from('Not found'));
    const [org, name, rev, fileName] = [m[1], m[2], decodeURIComponent(m[3]), decodeURIComponent(m[4])];
    const file = `${org}/${name}/${rev}/${fileName}`;
    const error = (status: number, code: string, message: string) =>
      answer(status, file, { 'Content-Type': 'text/plain', 'X-Error-Code': code, 'X-Error-Message': message }, Buffer.from(message));
    const revisions = repos.get(`${org}/${name}`);
    // The hub answers 401 for a repo it does not have: it may be private, and the client anonymous.
    if (!revisions) return error(401, 'RepoNotFound', 'Repository not found');
    const files = revisions.get(rev);
    if (!files) return error(404, 'RevisionNotFound', 'Invalid rev id');
    const path = files.get(fileName);
    if (!path) return error(404, 'EntryNotFound', 'Entry not found');
    const data = await load(path);
    const common = { ETag: etagOf(data), 'X-Repo-Commit': commit };
    if (switches.direct.has(fileName)) {
      return answer(200, file, { ...common, 'Content-Type': 'application/octet-stream', 'Content-Length': data.length }, data);
    }
    const signature = `s${++signed}`;
    signatures.set(signature, 0);
    const location = `${cdn.url}/repos/${org}/${name}/${encodeURIComponent(rev)}/${encodeURIComponent(fileName)}?Expires=9999999999&Signature=${signature}`;
    answer(302, file, { ...common, Location: location, 'X-Linked-Etag': etagOf(data), 'X-Linked-Size': data.length, 'Content-Length': 0 });
  });

  const cdn = await listen(async (req, res) => {
    if (req.method === 'OPTIONS') return preflight(res);
    const method = req.method ?? 'GET';
    const range = (req.headers.range as string | undefined) ?? null;
    const url = new URL(req.url ?? '/', 'http://x');
    const m = /^\/repos\/([^/]+)\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    const file = m ? `${m[1]}/${m[2]}/${decodeURIComponent(m[3])}/${decodeURIComponent(m[4])}` : url.pathname;
    const answer = (status: number, headers: Record<string, string | number>, body?: Uint8Array) => {
      requests.push({ server: 'cdn', method, file, range, status });
      res.writeHead(status, { ...CORS, ...headers });
      res.end(method === 'HEAD' ? undefined : body);
    };
    const signature = url.searchParams.get('Signature') ?? '';
    const path = m && repos.get(`${m[1]}/${m[2]}`)?.get(decodeURIComponent(m[3]))?.get(decodeURIComponent(m[4]));
    if (!path || !signatures.has(signature)) return answer(403, { 'Content-Type': 'text/plain' }, Buffer.from('AccessDenied'));
    const used = signatures.get(signature)!;
    const expiry = switches.expireAfter.get(file);
    if (expiry !== undefined && used >= expiry) return answer(403, { 'Content-Type': 'text/plain' }, Buffer.from('Request has expired'));
    let data = await load(path);
    if (method === 'GET') {
      signatures.set(signature, used + 1);
      const left = switches.changeAfter.get(file);
      if (left !== undefined && left > 0) switches.changeAfter.set(file, left - 1);
      else if (left === 0) {
        data = data.slice();
        data[data.length >> 1] ^= 0xff;
      }
    }
    const headers: Record<string, string | number> = {
      'Content-Type': 'application/octet-stream',
      'Accept-Ranges': switches.ranges ? 'bytes' : 'none',
      ETag: etagOf(data),
    };
    const r = range && switches.ranges ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
    if (r) {
      const start = Number(r[1]);
      const end = r[2] === '' ? data.length - 1 : Math.min(Number(r[2]), data.length - 1);
      if (start >= data.length || end < start) return answer(416, { ...headers, 'Content-Range': `bytes */${data.length}` });
      const body = data.subarray(start, end + 1);
      return answer(206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${data.length}`, 'Content-Length': body.length }, body);
    }
    answer(200, { ...headers, 'Content-Length': data.length }, data);
  });

  return {
    hubUrl: hub.url,
    cdnUrl: cdn.url,
    switches,
    requests,
    addRepo(id, files, revision = 'main') {
      if (!repos.has(id)) repos.set(id, new Map());
      repos.get(id)!.set(revision, new Map(Object.entries(files)));
    },
    count(server, file) {
      return requests.filter((r) => r.server === server && r.method === 'GET' && r.file === file).length;
    },
    async close() {
      for (const s of [hub.server, cdn.server]) {
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
    },
  };
}
