import type { Request, Response, Router } from 'express';

export type SandboxProviderName = 'google' | 'hubspot' | 'openai' | 'slack' | 'x';

/** What a fault looks like on the wire for one provider, in that provider's own shape. */
export interface WireError {
  status: number;
  headers?: Record<string, string>;
  body: unknown;
}

export type ErrorKind = 'error' | 'rate_limit' | 'unauthorized' | 'not_found' | 'bad_request';

export interface ProviderContext<S> {
  /** This provider's state: plain JSON, persisted across restarts when a state file is set. */
  readonly state: S;
  /** Call after changing state so it is persisted. */
  changed(): void;
  /** Sequential ids, stable across restarts (kept in state). */
  nextId(kind: string): number;
  /** The sandbox clock (ms since epoch). */
  now(): number;
  /** Sends this provider's error shape. */
  fail(res: Response, kind: ErrorKind, status?: number, message?: string, extra?: Record<string, unknown>): void;
}

export interface ProviderModule<S = unknown> {
  name: SandboxProviderName;
  /** Path prefixes this provider answers (faults and stats are kept per provider). */
  prefixes: string[];
  /** Fresh state seeded from fixtures. */
  initialState(): S;
  /** Provider's own error body for a given kind. */
  errorFor(kind: ErrorKind, status: number, message: string, extra?: Record<string, unknown>): WireError;
  /** The provider's API routes, mounted at the server root. */
  routes(router: Router, ctx: ProviderContext<S>): void;
  /** Assertion and seeding routes, mounted at /_sandbox/<name>. */
  control?(router: Router, ctx: ProviderContext<S>): void;
}

export type Handler = (req: Request, res: Response) => void | Promise<void>;
