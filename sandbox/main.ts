import path from 'node:path';
import { loadConfigOrExit } from '../lib/config/config.js';
import { createLogger } from '../lib/config/logger.js';
import { reportReady } from '../lib/config/ready.js';
import { allProviders } from './providers/index.js';
import { startSandbox } from './server.js';

const config = await loadConfigOrExit();
const log = createLogger({ name: 'sandbox', level: config.logLevel });
const sandbox = await startSandbox({
  port: config.sandbox.port,
  host: process.env.SANDBOX_HOST ?? '127.0.0.1',
  stateFile: path.join(config.dataDir, 'sandbox-state.json'),
  providers: allProviders,
});
log.info({ url: sandbox.url }, 'sandbox listening');
reportReady({ url: sandbox.url });

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await sandbox.close();
  log.info('sandbox stopped, state saved');
  process.exit(0);
}
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
process.on('disconnect', () => void stop());
