import pino, { type Logger } from 'pino';

/**
 * Paths whose values never reach a log line: credentials anywhere in an object,
 * and message bodies (drafts, notes, lead free text) which are customer data.
 */
export const REDACT_PATHS = [
  '*.password', '*.token', '*.accessToken', '*.refreshToken', '*.apiKey', '*.secret', '*.authorization',
  'headers.authorization', 'req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers.cookie',
  '*.body', '*.raw', '*.notes', '*.html', '*.text',
  'body', 'raw', 'notes', 'text',
];

export function createLogger(options: { level?: string; name: string; destination?: pino.DestinationStream }): Logger {
  return pino(
    {
      name: options.name,
      level: options.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { service: options.name },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination,
  );
}

export type { Logger };
