import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createGzip } from 'node:zlib';

/**
 * Two HTTP servers on loopback for the outbound-policy tests:
 *
 * - `admin` stands for what a worker must never reach (a loopback admin
 *   endpoint, a metadata service): it counts every request and answers a
 *   valid feed whose item says SECRET, so a leak would show as a stored signal.
 * - `upstream` stands for a feed host the operator allow-listed: it serves
 *   good feeds, and hostile ones (redirects and next links into `admin`,
 *   300 MiB answers, answers that drip or stall, a gzip bomb, too many items).
 *   It counts the bytes each hostile answer managed to send before the
 *   client hung up.
 */

export const MiB = 1024 * 1024;
export const HUGE_BYTES = 300 * MiB;

export interface HostileFeeds {
  upstream: { url: string; host: string; port: number };
  admin: { url: string; host: string; port: number; hits: string[] };
  /** Bytes written per hostile path, once its connection has closed. */
  sent: Map<string, number>;
  close(): Promise<void>;
}

export const rss = (items: { guid: string; title: string }[], next?: string) => `<?xml version="1.0"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>t</title>${next ? `<atom:link rel="next" href="${next}"/>` : ''}
${items.map((i) => `<item><guid isPermaLink="false">${i.guid}</guid><title>${i.title}</title><link>https://feeds.example/${i.guid}</link></item>`).join('\n')}
</channel></rss>`;

export async function startHostileFeeds(): Promise<HostileFeeds> {
  const hits: string[] = [];
  const sent = new Map<string, number>();
  const admin = createServer((req, res) => {
    hits.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'application/rss+xml' }).end(rss([{ guid: 'admin-1', title: 'SECRET admin token' }]));
  });
  const adminPort = await listen(admin);
  const adminUrl = `http://127.0.0.1:${adminPort}`;

  const upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url!, 'http://x');
    const p = url.pathname;
    const count = (socketBytes: () => number) => res.on('close', () => sent.set(p, socketBytes()));
    if (p === '/ok') return void res.writeHead(200, { 'content-type': 'application/rss+xml' }).end(rss([{ guid: 'ok-1', title: 'An allowed feed item' }]));
    if (p === '/redirect-to-admin') return void res.writeHead(302, { location: `${adminUrl}/admin` }).end();
    if (p === '/redirect-to-localhost') return void res.writeHead(302, { location: `http://localhost:${adminPort}/admin` }).end();
    if (p === '/redirect-chain') {
      const n = Number(url.searchParams.get('n') ?? 0);
      return void res.writeHead(302, { location: n > 0 ? `/redirect-chain?n=${n - 1}` : `${adminUrl}/admin` }).end();
    }
    if (p === '/redirect-loop') return void res.writeHead(302, { location: '/redirect-loop' }).end();
    if (p === '/redirect-file') return void res.writeHead(302, { location: 'file:///etc/passwd' }).end();
    if (p === '/redirect-ok') return void res.writeHead(301, { location: '/ok' }).end();
    if (p === '/paged') {
      return void res
        .writeHead(200, { 'content-type': 'application/rss+xml' })
        .end(rss([{ guid: 'paged-1', title: 'First page item one' }, { guid: 'paged-2', title: 'First page item two' }], `${adminUrl}/admin?page=2`));
    }
    if (p === '/many') {
      const n = Number(url.searchParams.get('n') ?? 10);
      return void res.writeHead(200, { 'content-type': 'application/rss+xml' }).end(rss(Array.from({ length: n }, (_, i) => ({ guid: `many-${i}`, title: `Item ${i}` }))));
    }
    if (p === '/huge' || p === '/huge-declared') {
      // 300 MiB, written as fast as the client reads (backpressure), so what was sent is what the client took in.
      res.writeHead(200, { 'content-type': 'application/rss+xml', ...(p === '/huge-declared' ? { 'content-length': String(HUGE_BYTES) } : {}) });
      const chunk = Buffer.alloc(64 * 1024, 'a');
      let written = 0;
      count(() => written);
      const pump = () => {
        while (written < HUGE_BYTES && !res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      res.write('<?xml version="1.0"?><rss><channel><item><title>');
      return pump();
    }
    if (p === '/gzip-bomb') {
      // 300 MiB of zeros, gzipped on the fly (about 300 KiB on the wire).
      res.writeHead(200, { 'content-type': 'application/rss+xml', 'content-encoding': 'gzip' });
      const gzip = createGzip();
      gzip.pipe(res);
      const zeros = Buffer.alloc(1024 * 1024);
      let produced = 0;
      count(() => produced);
      const pump = () => {
        while (produced < HUGE_BYTES && !res.destroyed) {
          produced += zeros.length;
          if (!gzip.write(zeros)) return void gzip.once('drain', pump);
        }
        gzip.end();
      };
      res.on('close', () => gzip.destroy());
      return pump();
    }
    if (p === '/drip') {
      // Headers, then one byte every 100 ms for ever: never idle, never done.
      res.writeHead(200, { 'content-type': 'application/rss+xml' });
      let written = 0;
      count(() => written);
      const timer = setInterval(() => {
        written++;
        res.write('<');
      }, 100);
      res.on('close', () => clearInterval(timer));
      return;
    }
    if (p === '/stall') {
      res.writeHead(200, { 'content-type': 'application/rss+xml' });
      res.write('<?xml version="1.0"?><rss>');
      return;
    }
    if (p === '/silent') return; // accepts, never answers
    res.writeHead(404).end();
  });
  const upstreamPort = await listen(upstream);

  return {
    upstream: { url: `http://127.0.0.1:${upstreamPort}`, host: `127.0.0.1:${upstreamPort}`, port: upstreamPort },
    admin: { url: adminUrl, host: `127.0.0.1:${adminPort}`, port: adminPort, hits },
    sent,
    async close() {
      for (const s of [admin, upstream]) s.closeAllConnections();
      await Promise.all([admin, upstream].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return (server.address() as { port: number }).port;
}
