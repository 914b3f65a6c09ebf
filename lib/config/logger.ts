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

type TemporalLevel = 'TRACE' | 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';

/** Adapts pino to the Temporal SDK's Logger interface, so SDK logs are JSON lines like ours. */
export function temporalLogger(log: Logger) {
  const at = (level: TemporalLevel) => (message: string, meta?: Record<string, unknown>) =>
    log[level.toLowerCase() as 'info'](meta ?? {}, message);
  return {
    log: (level: TemporalLevel, message: string, meta?: Record<string, unknown>) => at(level)(message, meta),
    trace: at('TRACE'),
    debug: at('DEBUG'),
    info: at('INFO'),
    warn: at('WARN'),
    error: at('ERROR'),
  };
}
