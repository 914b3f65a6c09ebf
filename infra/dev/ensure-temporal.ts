import { findTemporalCli, temporalCliVersion } from '../temporal-dev.js';

// Finds the Temporal CLI (PATH, TEMPORAL_CLI_PATH, cache) or builds it once into the cache.
const started = Date.now();
try {
  const binary = await findTemporalCli({ onProgress: (m) => console.log(m) });
  console.log(`temporal CLI: ${binary} (${temporalCliVersion(binary) ?? 'version unknown'}), ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (err) {
  console.error((err as Error).message);
  process.exit(1);
}
