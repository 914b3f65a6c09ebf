import { TextDecoder } from 'node:util';
import express, { type Request, type RequestHandler } from 'express';
import { HttpProblem } from './problem.js';

/**
 * The JSON body parser of every request, whatever route it is for (the
 * signed webhook included): express.json with the body size limit, the raw
 * bytes kept for signature checks (HubSpot v3 signs the body as sent), and a
 * nesting limit checked on the raw bytes before JSON.parse. Code after the
 * parser walks bodies recursively (validation, the NUL check, re-serialising),
 * so a body nested thousands deep is refused here with 400, not left to
 * overflow a stack later.
 */
export function jsonBody(options: { limit: string; maxDepth: number }): RequestHandler {
  return express.json({
    limit: options.limit,
    type: ['application/json', 'application/*+json'],
    verify: (req, _res, buf, encoding) => {
      (req as Request & { rawBody?: Buffer }).rawBody = buf;
      if (jsonDepthExceeds(decodedFor(buf, encoding), options.maxDepth)) {
        throw new HttpProblem({
          title: 'JSON nested too deeply',
          status: 400,
          detail: `The JSON body nests arrays and objects deeper than ${options.maxDepth} levels (API_JSON_MAX_DEPTH).`,
          maxDepth: options.maxDepth,
        });
      }
    },
  });
}

/**
 * UTF-8 is scanned as bytes (its multi-byte sequences never contain ASCII
 * bytes); another UTF charset the parser accepts is decoded first, so the
 * scan sees the characters JSON.parse will see.
 */
function decodedFor(buf: Buffer, encoding: string): Buffer | string {
  const charset = (encoding || 'utf-8').toLowerCase();
  if (charset === 'utf-8' || charset === 'utf8') return buf;
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(charset);
  } catch {
    throw new HttpProblem({ title: 'Unsupported encoding', status: 415, detail: `unsupported charset "${charset.toUpperCase()}": send JSON as UTF-8` });
  }
  return decoder.decode(buf);
}

const OPEN_OBJECT = 0x7b;
const OPEN_ARRAY = 0x5b;
const CLOSE_OBJECT = 0x7d;
const CLOSE_ARRAY = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Whether a JSON text nests arrays and objects deeper than `max`: one pass,
 * no recursion, brackets inside strings skipped. For valid JSON the count is
 * its exact nesting; invalid JSON fails in JSON.parse after this.
 */
export function jsonDepthExceeds(json: Buffer | string, max: number): boolean {
  const at = typeof json === 'string' ? (i: number) => json.charCodeAt(i) : (i: number) => json[i]!;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = at(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (++depth > max) return true;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      depth--;
    }
  }
  return false;
}
