import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize, sep } from 'node:path';

// A model host for the browser tests, on 127.0.0.1 and another port than the page (so every
// request is cross-origin, as from a real CDN): serves the files under `root` with the CORS and
// CORP headers molm-web needs, and has switches to misbehave in the ways a real network does.

export interface ServedRequest {
  /** The path, e.g. "/tiny-molm-f32/shard-00002.bin". */
  path: string;
  method: string;
  /** The Range header, or null. */
  range: string | null;
  status: number;
  /** Body bytes written (GET); fewer than the body's when the connection was cut. */
  sent?: number;
  /** The connection was cut after `sent` bytes (dropAfter, cuts). */
  cut?: boolean;
}

export interface ModelServerSwitches {
  /** Answer Range requests with 206 (true, the default) or ignore them and send 200. */
  ranges: boolean;
  /** Once: cut the connection after this many body bytes of the next GET of `path`. */
  dropAfter: { path: string; bytes: number } | null;
  /** Paths served with one byte changed (a shard corrupt on the server). */
  corrupt: Set<string>;
  /** Paths answered 503 this many more times. */
  failures: Map<string, number>;
  /** Send bodies in chunks of this many bytes with a pause between them (a slow network). */
  throttle: { chunk: number; delayMs: number } | null;
  /**
   * Where to cut connections: per path, offsets into the file, each used once. A GET whose body
   * covers the smallest offset left is cut there (a body that starts at it: right after the
   * headers); offsets before the body's start are dropped unused.
   */
  cuts: Map<string, number[]>;
}

export interface ModelServer {
  /** http://127.0.0.1:PORT */
  url: string;
  switches: ModelServerSwitches;
  requests: ServedRequest[];
  /** GET requests of a path (or of every path ending in `.bin` when given none). */
  count(path?: string): number;
  /** Forgets the requests and the files read so far, and resets every switch. */
  reset(): void;
  close(): Promise<void>;
}

const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'Content-Length, Content-Range, Accept-Ranges, ETag',
  // A cross-origin isolated page (COEP require-corp) embeds a no-cors resource of another
  // origin only with this: the widget's classic script. (CORS requests need only the above.)
  'Cross-Origin-Resource-Policy': 'cross-origin',
};

/** The host also serves the widget's scripts: a module script needs a JavaScript MIME type. */
function contentType(path: string): string {
  if (path.endsWith('.json')) return 'application/json';
  if (path.endsWith('.js')) return 'text/javascript';
  if (path.endsWith('.html')) return 'text/html; charset=utf-8';
  return 'application/octet-stream';
}

function defaults(): ModelServerSwitches {
  return { ranges: true, dropAfter: null, corrupt: new Set(), failures: new Map(), throttle: null, cuts: new Map() };
}

/** Parses "bytes=N-" or "bytes=N-M" against a file size; null when it is not a single range. */
function parseRange(header: string, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  const m = header.match(/^bytes=(\d+)-(\d*)$/);
  if (!m) return null;
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

export async function startModelServer(root: string): Promise<ModelServer> {
  const switches = defaults();
  const requests: ServedRequest[] = [];
  const files = new Map<string, Buffer>();

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const method = req.method ?? 'GET';
    const range = (req.headers.range as string | undefined) ?? null;
    const answer = (status: number, headers: Record<string, string | number> = {}, body?: Uint8Array) => {
      requests.push({ path, method, range, status, ...(method === 'GET' && { sent: body?.length ?? 0 }) });
      res.writeHead(status, { ...CORS, ...headers });
      res.end(body);
    };
    if (method === 'OPTIONS') {
      res.writeHead(204, {
        ...CORS,
        'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS',
        'Access-Control-Allow-Headers': 'Range',
        'Access-Control-Max-Age': '600',
      });
      return res.end();
    }
    if (method !== 'GET' && method !== 'HEAD') return answer(405);
    const local = normalize(join(root, path));
    if (!local.startsWith(normalize(root) + sep)) return answer(403);
    let data = files.get(local);
    if (!data) {
      try {
        data = await readFile(local);
      } catch {
        return answer(404, { 'Content-Type': 'text/plain' }, Buffer.from('not found'));
      }
      files.set(local, data);
    }
    const left = switches.failures.get(path) ?? 0;
    if (left > 0) {
      switches.failures.set(path, left - 1);
      return answer(503, { 'Content-Type': 'text/plain' }, Buffer.from('try again'));
    }
    if (switches.corrupt.has(path)) {
      data = Buffer.from(data);
      data[data.length >> 1] ^= 0xff;
    }
    const size = data.length;
    const etag = `"${createHash('sha1').update(data).digest('hex')}"`;
    const common = {
      'Content-Type': contentType(path),
      'Accept-Ranges': switches.ranges ? 'bytes' : 'none',
      ETag: etag,
      'Cache-Control': 'no-cache',
    };
    let status = 200;
    let body = data;
    /** Where the body starts in the file. */
    let start = 0;
    const headers: Record<string, string | number> = { ...common };
    if (range && switches.ranges) {
      const r = parseRange(range, size);
      if (r === 'unsatisfiable') return answer(416, { ...common, 'Content-Range': `bytes */${size}` });
      if (r) {
        status = 206;
        start = r.start;
        body = data.subarray(r.start, r.end + 1);
        headers['Content-Range'] = `bytes ${r.start}-${r.end}/${size}`;
      }
    }
    headers['Content-Length'] = body.length;
    const drop = switches.dropAfter;
    let cutAt: number | null = null;
    if (method === 'GET' && drop && drop.path === path && drop.bytes < body.length) {
      switches.dropAfter = null;
      cutAt = drop.bytes;
    } else if (method === 'GET' && switches.cuts.has(path)) {
      const offsets = switches.cuts.get(path)!.filter((o) => o >= start);
      if (offsets.length > 0 && offsets[0] < start + body.length) cutAt = offsets.shift()! - start;
      switches.cuts.set(path, offsets);
    }
    if (cutAt !== null) {
      requests.push({ path, method, range, status, sent: cutAt, cut: true });
      res.writeHead(status, { ...CORS, ...headers });
      // Send the first bytes, then cut the connection: the client sees a body shorter than its
      // Content-Length, as when a network drops mid-download.
      res.write(body.subarray(0, cutAt), () => setTimeout(() => res.socket?.destroy(), 50));
      return;
    }
    if (method === 'HEAD') return answer(status, headers);
    const slow = switches.throttle;
    if (slow && path.endsWith('.bin')) {
      const served: ServedRequest = { path, method, range, status, sent: 0 };
      requests.push(served);
      res.writeHead(status, { ...CORS, ...headers });
      for (let at = 0; at < body.length && !res.destroyed; at += slow.chunk) {
        const chunk = body.subarray(at, at + slow.chunk);
        res.write(chunk);
        served.sent! += chunk.length;
        await new Promise((r) => setTimeout(r, slow.delayMs));
      }
      res.end();
      return;
    }
    answer(status, headers, body);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      res.writeHead(500, CORS);
      res.end(String(e));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    switches,
    requests,
    count(path?: string) {
      return requests.filter((r) => r.method === 'GET' && (path === undefined ? r.path.endsWith('.bin') : r.path === path)).length;
    },
    reset() {
      files.clear();
      requests.length = 0;
      Object.assign(switches, defaults());
    },
    close() {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
