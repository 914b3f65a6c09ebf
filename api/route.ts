import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { z, type ZodType } from 'zod';
import { HttpProblem, sendProblem } from './problem.js';
import { hasNul } from '../lib/domain/text.js';
import { nameRoute } from './metrics.js';

/**
 * Every /v1 route is declared once, with zod schemas for what it accepts and
 * returns. The same declaration validates requests, drives auth (scope) and
 * rate limiting, and generates the OpenAPI document, so they cannot drift.
 */

export { SCOPES, type Scope } from '../lib/domain/scopes.js';
import type { Scope } from '../lib/domain/scopes.js';

/** Who may call a route: a key with a scope, nobody special (health, docs), or a signed webhook. */
export type RouteAuth = { scope: Scope } | 'public' | 'signed-webhook';

export interface ResponseSpec {
  description: string;
  schema?: ZodType;
  /** Defaults to application/json (problem+json for 4xx/5xx). */
  contentType?: string;
}

/** Filled in by the auth middleware when the caller presented a valid key. */
export interface Caller {
  keyId: string;
  name: string;
  /** Whom the key acts for (lib/store/api-keys.ts): decisions are taken in this name only. */
  identity: string;
  scopes: Scope[];
}

export interface RouteContext<B, Q, P> {
  body: B;
  query: Q;
  params: P;
  req: Request;
  res: Response;
  caller?: Caller;
}

/** What a handler returns; `undefined` means the handler wrote the response itself. */
export type RouteResult = { status?: number; body?: unknown; headers?: Record<string, string> } | undefined;

export interface RouteSpec<B = unknown, Q = unknown, P = unknown> {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** Express-style path under /v1, e.g. '/prospects/:id'. */
  path: string;
  operationId: string;
  summary: string;
  tags: string[];
  auth: RouteAuth;
  /** Rate-limit bucket for this route; defaults to `${method} ${path}`. */
  rateLimit?: string;
  body?: ZodType<B>;
  query?: ZodType<Q>;
  params?: ZodType<P>;
  responses: Record<number, ResponseSpec>;
  handler(ctx: RouteContext<B, Q, P>): Promise<RouteResult> | RouteResult;
}

export type AnyRoute = RouteSpec<any, any, any>;

/** Helper that keeps the handler's types tied to its schemas. */
export function defineRoute<B = undefined, Q = undefined, P = undefined>(spec: RouteSpec<B, Q, P>): RouteSpec<B, Q, P> {
  return spec;
}

/** Per-route middleware hooks (auth, rate limits), supplied by whoever builds the app. */
export type RouteMiddleware = (route: AnyRoute) => RequestHandler[];

/** Builds one Express router from route declarations. */
export function buildRouter(routes: AnyRoute[], middleware: RouteMiddleware[] = []): express.Router {
  const router = express.Router();
  for (const route of routes) {
    const before = middleware.flatMap((m) => m(route));
    // Named first, so an answer from any middleware (a 401, a 429) is counted under the route's template.
    router[route.method](route.path, nameRoute(route.path), ...before, async (req: Request, res: Response, next: NextFunction) => {
      try {
        const body = parsePart(route.body, req.body ?? (route.body ? undefined : {}), 'body');
        const query = parsePart(route.query, req.query, 'query');
        const params = parsePart(route.params, req.params, 'path');
        const result = await route.handler({ body, query, params, req, res, caller: res.locals.caller as Caller | undefined });
        if (result === undefined || res.headersSent) return;
        if (result.headers) res.set(result.headers);
        res.status(result.status ?? 200);
        if (result.body === undefined) res.end();
        else res.json(result.body);
      } catch (err) {
        next(err);
      }
    });
  }
  return router;
}

function parsePart<T>(schema: ZodType<T> | undefined, value: unknown, where: string): T {
  const nul = findNul(value, where);
  // PostgreSQL text cannot hold NUL; refuse it here for every route rather than fail in a query.
  if (nul) throw new HttpProblem({ title: 'Invalid request', status: 400, detail: `${nul}: must not contain NUL characters`, errors: [{ field: nul, message: 'must not contain NUL characters' }] });
  if (!schema) return value as T;
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw validationProblem(parsed.error, where);
}

function findNul(value: unknown, path: string): string | undefined {
  if (typeof value === 'string') return hasNul(value) ? path : undefined;
  if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const found = findNul(v, `${path}.${k}`);
      if (found) return found;
    }
  }
  return undefined;
}

/** A 400 that names each invalid field, e.g. "body.email: Invalid email address". */
export function validationProblem(error: z.ZodError, where: string): HttpProblem {
  const errors = error.issues.map((issue) => ({
    field: [where, ...issue.path.map(String)].join('.'),
    message: issue.message,
  }));
  return new HttpProblem({
    title: 'Invalid request',
    status: 400,
    detail: errors.map((e) => `${e.field}: ${e.message}`).join('; '),
    errors,
  });
}

export { sendProblem };
