import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import path from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import { z } from 'zod';
import { FaultController, faultRuleSchema, type FaultAction } from './faults.js';
import type { ErrorKind, ProviderContext, ProviderModule, SandboxProviderName } from './types.js';

/**
 * The provider sandbox: one HTTP server speaking the wire protocols of Gmail,
 * Calendar, HubSpot, OpenAI, Slack and X so the real SDKs can be pointed at it.
 * State is plain JSON per provider (optionally persisted to a file); faults
 * are injected per provider; everything is inspectable under /_sandbox.
 */

export interface SandboxOptions {
  port?: number;
  host?: string;
  /** Persist provider state here (debounced) and reload it at start. */
  stateFile?: string;
  providers: ProviderModule<any>[];
  /** Seed for the fault PRNG, so fault runs repeat. */
  faultSeed?: number;
}

export interface Sandbox {
  url: string;
  port: number;
  app: express.Express;
  faults: FaultController;
  close(): Promise<void>;
  /** Writes state now (also done on close). */
  flush(): void;
}

interface StoredDoc {
  version: 1;
  ids: Record<string, number>;
  providers: Partial<Record<SandboxProviderName, unknown>>;
}

interface Stats {
  requests: number;
  routes: Record<string, number>;
  statuses: Record<string, number>;
}

export async function startSandbox(options: SandboxOptions): Promise<Sandbox> {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  const faults = new FaultController();
  if (options.faultSeed !== undefined) faults.seed(options.faultSeed);

  const doc: StoredDoc = loadDoc(options.stateFile);
  let clockOffsetMs = 0;
  let saveTimer: NodeJS.Timeout | undefined;
  const flush = () => {
    if (saveTimer) clearTimeout(saveTimer);
    saveTimer = undefined;
    if (!options.stateFile) return;
    mkdirSync(path.dirname(options.stateFile), { recursive: true });
    const tmp = `${options.stateFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(doc));
    renameSync(tmp, options.stateFile);
  };
  const changed = () => {
    if (!options.stateFile || saveTimer) return;
    saveTimer = setTimeout(flush, 300);
  };

  const stats: Partial<Record<SandboxProviderName, Stats>> = {};
  const contexts = new Map<SandboxProviderName, ProviderContext<any>>();

  app.use(express.json({ limit: '25mb', type: ['application/json', 'application/*+json'] }));
  app.use(express.urlencoded({ extended: true, limit: '25mb' }));
  app.use(express.text({ limit: '25mb', type: ['text/*', 'message/rfc822'] }));

  for (const provider of options.providers) {
    if (doc.providers[provider.name] === undefined) doc.providers[provider.name] = provider.initialState();
    const ctx: ProviderContext<any> = {
      get state() {
        return doc.providers[provider.name];
      },
      changed,
      nextId(kind: string) {
        const key = `${provider.name}:${kind}`;
        doc.ids[key] = (doc.ids[key] ?? 0) + 1;
        changed();
        return doc.ids[key];
      },
      now: () => Date.now() + clockOffsetMs,
      fail(res, kind, status, message, extra) {
        sendWire(res, provider, kind, status ?? defaultStatus(kind), message ?? defaultMessage(kind), extra);
      },
    };
    contexts.set(provider.name, ctx);

    const faultGate = async (req: Request, res: Response, next: NextFunction) => {
      const s = (stats[provider.name] ??= { requests: 0, routes: {}, statuses: {} });
      s.requests++;
      res.on('finish', () => {
        const route = `${req.method} ${req.route?.path ?? req.path}`;
        s.routes[route] = (s.routes[route] ?? 0) + 1;
        s.statuses[res.statusCode] = (s.statuses[res.statusCode] ?? 0) + 1;
      });
      const { latencyMs, action } = faults.decide(provider.name, req.method, req.originalUrl.split('?')[0]!);
      if (latencyMs > 0) await new Promise((r) => setTimeout(r, latencyMs));
      if (!action) return next();
      applyFault(action, provider, req, res, next);
    };
    for (const prefix of provider.prefixes) app.use(prefix, faultGate);

    const router = express.Router();
    provider.routes(router, ctx);
    app.use(router);
  }

  // ---- control plane -------------------------------------------------------
  const control = express.Router();
  control.get('/health', (_req, res) => {
    res.json({ ok: true, providers: options.providers.map((p) => p.name) });
  });
  control.post('/reset', (req, res) => {
    const only = req.query.provider as SandboxProviderName | undefined;
    for (const p of options.providers) {
      if (only && p.name !== only) continue;
      doc.providers[p.name] = p.initialState();
      for (const key of Object.keys(doc.ids)) if (key.startsWith(`${p.name}:`)) delete doc.ids[key];
      delete stats[p.name];
      delete faults.injected[p.name];
    }
    if (!only) faults.clear();
    clockOffsetMs = only ? clockOffsetMs : 0;
    changed();
    res.json({ ok: true });
  });
  control.get('/state', (_req, res) => {
    res.json(doc.providers);
  });
  control.get('/state/:provider', (req, res) => {
    const state = doc.providers[req.params.provider as SandboxProviderName];
    if (state === undefined) return void res.status(404).json({ error: `no provider ${req.params.provider}` });
    res.json(state);
  });
  control.get('/faults', (_req, res) => {
    res.json({ rules: faults.list(), injected: faults.injected });
  });
  control.post('/faults', (req, res) => {
    const list = Array.isArray(req.body) ? req.body : [req.body];
    const parsed = z.array(faultRuleSchema).safeParse(list);
    if (!parsed.success) {
      return void res.status(400).json({ error: 'invalid fault rule', issues: parsed.error.issues });
    }
    res.status(201).json({ rules: parsed.data.map((rule) => faults.add(rule)) });
  });
  control.delete('/faults', (req, res) => {
    faults.clear(req.query.provider as SandboxProviderName | undefined);
    res.json({ ok: true });
  });
  control.post('/faults/seed', (req, res) => {
    const seed = Number(req.body?.seed);
    if (!Number.isInteger(seed)) return void res.status(400).json({ error: 'seed must be an integer' });
    faults.seed(seed);
    res.json({ ok: true });
  });
  control.get('/stats', (_req, res) => {
    res.json({ providers: stats, injected: faults.injected });
  });
  control.delete('/stats', (_req, res) => {
    for (const key of Object.keys(stats)) delete stats[key as SandboxProviderName];
    for (const key of Object.keys(faults.injected)) delete faults.injected[key];
    res.json({ ok: true });
  });
  control.post('/clock', (req, res) => {
    const offset = Number(req.body?.offsetMs);
    if (!Number.isFinite(offset)) return void res.status(400).json({ error: 'offsetMs must be a number' });
    clockOffsetMs = offset;
    res.json({ now: new Date(Date.now() + clockOffsetMs).toISOString() });
  });
  for (const provider of options.providers) {
    if (!provider.control) continue;
    const r = express.Router();
    provider.control(r, contexts.get(provider.name)!);
    control.use(`/${provider.name}`, r);
  }
  app.use('/_sandbox', control);

  app.use((req, res) => {
    res.status(404).json({ error: 'not_found', message: `sandbox has no route ${req.method} ${req.path}` });
  });
  app.use((err: Error & { status?: number; type?: string }, _req: Request, res: Response, _next: NextFunction) => {
    const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
    res.status(status).json({ error: err.type ?? 'sandbox_error', message: err.message });
  });

  const host = options.host ?? '127.0.0.1';
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(options.port ?? 0, host, () => resolve(s));
    s.once('error', reject);
  });
  server.keepAliveTimeout = 5_000;
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://${host}:${port}`,
    port,
    app,
    faults,
    flush,
    close: () =>
      new Promise<void>((resolve) => {
        flush();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function loadDoc(file: string | undefined): StoredDoc {
  if (!file || !existsSync(file)) return { version: 1, ids: {}, providers: {} };
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as StoredDoc;
  if (parsed.version !== 1) throw new Error(`${file}: unknown sandbox state version ${parsed.version}`);
  return parsed;
}

function defaultStatus(kind: ErrorKind): number {
  return { error: 500, rate_limit: 429, unauthorized: 401, not_found: 404, bad_request: 400 }[kind];
}

function defaultMessage(kind: ErrorKind): string {
  return {
    error: 'Sandbox injected server error',
    rate_limit: 'Rate limit exceeded',
    unauthorized: 'Missing or invalid credentials',
    not_found: 'Not found',
    bad_request: 'Bad request',
  }[kind];
}

function sendWire(res: Response, provider: ProviderModule<any>, kind: ErrorKind, status: number, message: string, extra?: Record<string, unknown>) {
  const wire = provider.errorFor(kind, status, message, extra);
  res.status(wire.status);
  if (wire.headers) res.set(wire.headers);
  res.json(wire.body);
}

function applyFault(action: FaultAction, provider: ProviderModule<any>, req: Request, res: Response, next: NextFunction) {
  switch (action.kind) {
    case 'error':
      return sendWire(res, provider, 'error', action.status, 'Sandbox injected server error');
    case 'rate_limit':
      return sendWire(res, provider, 'rate_limit', 429, 'Rate limit exceeded', { retryAfterSeconds: action.retryAfterSeconds });
    case 'timeout': {
      // Hang, then drop the connection: the client's own timeout is what fires.
      const timer = setTimeout(() => req.socket.destroy(), action.delayMs);
      req.socket.once('close', () => clearTimeout(timer));
      return;
    }
    case 'apply_then_fail': {
      // Let the handler change state, then swap its answer for an error.
      const send = res.send.bind(res);
      res.send = ((_body?: unknown) => {
        res.send = send;
        const wire = provider.errorFor('error', action.status, 'Sandbox injected failure after applying the request');
        res.status(wire.status);
        if (wire.headers) res.set(wire.headers);
        return send(JSON.stringify(wire.body));
      }) as typeof res.send;
      res.type('application/json');
      return next();
    }
  }
}
