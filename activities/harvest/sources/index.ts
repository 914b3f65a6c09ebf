import type { Config } from '../../../lib/config/config.js';
import { createX } from '../../providers/x.js';
import { feedSource } from './feed.js';
import type { SignalSource, SourceKind } from './types.js';
import { xSource } from './x.js';

export type SourceRegistry = Record<SourceKind, SignalSource>;

/** Every source kind, built once per worker from the provider config. */
export function createSources(config: Config): SourceRegistry {
  return {
    x: xSource(createX(config.providers.x, { timeoutMs: 20_000 })),
    feed: feedSource(),
  };
}

export * from './types.js';
