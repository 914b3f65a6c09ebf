import type { Config } from '../../../lib/config/config.js';
import { createSafeFetcher } from '../../providers/safe-fetch.js';
import { createX } from '../../providers/x.js';
import { feedSource } from './feed.js';
import type { SignalSource, SourceKind } from './types.js';
import { xSource } from './x.js';

export type SourceRegistry = Record<SourceKind, SignalSource>;

/**
 * Every source kind, built once per worker from the provider config. The X
 * client talks to the endpoint the operator configured; feeds, whose URLs
 * come from configuration and from the feeds themselves, go through the
 * outbound policy (config.outbound).
 */
export function createSources(config: Config): SourceRegistry {
  return {
    x: xSource(createX(config.providers.x, { timeoutMs: 20_000 })),
    feed: feedSource({ fetcher: createSafeFetcher(config.outbound), maxItems: config.outbound.maxItemsPerPage }),
  };
}

export * from './types.js';
