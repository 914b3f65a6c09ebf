import type { NextFunction, Request, Response } from 'express';

/**
 * RFC 9457 problem details. Every error the API returns has this shape, with a
 * `detail` a person can act on; internal errors never carry stack traces.
 */
export interface Problem {
  type?: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  [extension: string]: unknown;
}

export class HttpProblem extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail ?? problem.title);
    this.name = 'HttpProblem';
  }
}

const TYPE_BASE = 'https://prospector.dev/problems/';

export function sendProblem(res: Response, problem: Problem): void {
  res
    .status(problem.status)
    .type('application/problem+json')
    .json({ type: problem.type ?? `${TYPE_BASE}${slug(problem.title)}`, ...problem });
}

export const problems = {
  badRequest: (detail: string, extra?: Record<string, unknown>) => new HttpProblem({ title: 'Bad request', status: 400, detail, ...extra }),
  notFound: (detail: string) => new HttpProblem({ title: 'Not found', status: 404, detail }),
  conflict: (detail: string) => new HttpProblem({ title: 'Conflict', status: 409, detail }),
};

function slug(title: string): string {
  return title.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/(^-|-$)/g, '');
}

/** Unknown routes. */
export function notFoundHandler(req: Request, res: Response): void {
  sendProblem(res, { title: 'Not found', status: 404, detail: `No route for ${req.method} ${req.path}`, instance: req.originalUrl });
}

type BodyParserError = Error & { type?: string; status?: number; limit?: number; expose?: boolean };

/** The last middleware: turns every thrown error into problem+json. */
export function errorHandler(onInternal: (err: Error, req: Request) => void) {
  return (err: BodyParserError, req: Request, res: Response, _next: NextFunction): void => {
    if (err instanceof HttpProblem) return sendProblem(res, { instance: req.originalUrl, ...err.problem });
    if (err.type === 'entity.too.large') {
      return sendProblem(res, { title: 'Payload too large', status: 413, detail: `Request body exceeds the limit of ${err.limit} bytes` });
    }
    if (err.type === 'entity.parse.failed') {
      return sendProblem(res, { title: 'Malformed JSON', status: 400, detail: 'The request body is not valid JSON' });
    }
    if (err.type === 'encoding.unsupported' || err.type === 'charset.unsupported') {
      return sendProblem(res, { title: 'Unsupported encoding', status: 415, detail: err.message });
    }
    if (err.status && err.status >= 400 && err.status < 500 && err.expose) {
      return sendProblem(res, { title: 'Bad request', status: err.status, detail: err.message });
    }
    onInternal(err, req);
    sendProblem(res, { title: 'Internal error', status: 500, detail: 'The server failed to handle this request; it has been logged.' });
  };
}
