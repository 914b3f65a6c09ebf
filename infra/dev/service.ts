import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfigOrExit } from '../../lib/config/config.js';
import { startEmbeddedPostgres } from '../postgres-dev.js';
import { runningPid, stopCluster } from '../postgres-ctl.js';
import { findTemporalCli, startTemporalDevServer } from '../temporal-dev.js';
import { reportReady } from '../../lib/config/ready.js';
import { codecEndpoint } from '../../api/routes/codec.js';

/**
 * Runs one infrastructure piece for the dev stack (`temporal` or `postgres`)
 * and stops it when told to, or when the supervisor disappears.
 */
const which = process.argv[2];
const config = await loadConfigOrExit();
const stopHandlers: (() => Promise<void>)[] = [];
let stopping = false;

async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  for (const handler of stopHandlers) await handler().catch((err) => console.error(err));
  process.exit(code);
}
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
process.on('disconnect', () => void stop());

if (which === 'temporal') {
  const binary = await findTemporalCli({ cliPath: config.temporal.cliPath, onProgress: (m) => console.log(m) });
  const port = Number(config.temporal.address.split(':')[1]);
  const server = await startTemporalDevServer({
    binary,
    port,
    uiPort: config.temporal.uiPort,
    dbFile: path.join(config.dataDir, 'temporal.db'),
    // WAL with normal sync: survives a crash of the server process, and starts
    // workflows about twice as fast as SQLite's default full sync.
    sqlitePragmas: ['journal_mode=wal', 'synchronous=normal'],
    namespace: config.temporal.namespace,
    // The UI decodes the encrypted payloads through the API (after a sign-in there: docs/temporal-payloads.md).
    uiCodecEndpoint: codecEndpoint(config),
    onOutput: (line) => console.log(line),
  });
  stopHandlers.push(() => server.stop());
  // Temporal gone means the stack is broken: exit so the supervisor restarts it.
  server.process.once('exit', (code) => !stopping && void stop(code ?? 1));
  reportReady({ address: server.address, uiUrl: server.uiUrl, binary });
} else if (which === 'postgres') {
  const dataDir = path.join(config.dataDir, 'postgres');
  const db = await startEmbeddedPostgres({ dataDir, port: config.database.embeddedPort, onLog: () => undefined });
  // Stop by data directory, so a cluster restarted by hand (npm run db:start) is stopped too.
  stopHandlers.push(async () => void (await stopCluster(dataDir)));
  reportReady({ url: db.url, dataDir });
  watchCluster(dataDir);
} else {
  console.error(`usage: service.ts temporal|postgres (got ${which})`);
  process.exit(2);
}

/** Reports PostgreSQL going away and coming back (e.g. npm run db:stop / db:start). */
async function watchCluster(dataDir: string) {
  let up = true;
  while (!stopping) {
    await sleep(1_000);
    const now = runningPid(dataDir) !== undefined;
    if (now !== up) {
      console.log(now ? 'PostgreSQL is running again' : 'PostgreSQL stopped; start it again with: npm run db:start');
      up = now;
    }
  }
}
