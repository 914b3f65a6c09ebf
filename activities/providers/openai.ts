import OpenAI from 'openai';
import type { Config } from '../../lib/config/config.js';

export interface OpenAIClientOptions {
  /** SDK-level retries. Default 0: Temporal's activity retry policy owns retrying, so attempts stay visible and bounded. */
  maxRetries?: number;
  /** Per-request timeout in ms; keep it under the activity's start-to-close timeout. */
  timeoutMs?: number;
}

/** The one way activities get an OpenAI client: live API or the sandbox, by config. */
export function createOpenAI(cfg: Config['providers']['openai'], opts: OpenAIClientOptions = {}): OpenAI {
  return new OpenAI({
    apiKey: cfg.apiKey,
    baseURL: cfg.baseUrl,
    maxRetries: opts.maxRetries ?? 0,
    timeout: opts.timeoutMs ?? 45_000,
  });
}
