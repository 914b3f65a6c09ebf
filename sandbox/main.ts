import path from 'node:path';
import { loadConfigOrExit } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { allProviders } from './providers/index.js';
import { startSandbox } from './server.js';

const config = await loadConfigOrExit();
const log = createLogger({ name: 'sandbox', level: config.logLevel });
const sandbox = await startSandbox({
  port: config.sandbox.port,
  stateFile: path.join(config.dataDir, 'sandbox-state.json'),
  providers: allProviders,
});
log.info({ url: sandbox.url }, 'sandbox listening');

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, async () => {
    await sandbox.close();
    log.info('sandbox stopped');
    process.exit(0);
  });
}
