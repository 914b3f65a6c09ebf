import path from 'node:path';
import { loadConfigOrExit } from '../../lib/config/config.js';
import { adminUrl } from '../postgres-dev.js';
import { runningPid, startCluster, stopCluster } from '../postgres-ctl.js';

// `npm run db:stop` / `npm run db:start`: the dev stack's PostgreSQL, by hand.
const config = await loadConfigOrExit();
const dataDir = path.join(config.dataDir, 'postgres');
const action = process.argv[2];

if (action === 'stop') {
  console.log((await stopCluster(dataDir)) ? `PostgreSQL on ${dataDir} stopped` : `PostgreSQL on ${dataDir} was not running`);
} else if (action === 'start') {
  const pid = await startCluster(dataDir, config.database.embeddedPort, adminUrl(config.database.embeddedPort));
  console.log(`PostgreSQL on ${dataDir} running (pid ${pid}, port ${config.database.embeddedPort})`);
} else if (action === 'status') {
  const pid = runningPid(dataDir);
  console.log(pid ? `running (pid ${pid})` : 'stopped');
  process.exitCode = pid ? 0 : 3;
} else {
  console.error('usage: db.ts start|stop|status');
  process.exitCode = 2;
}
