import type { Client } from '@temporalio/client';
import type { Config } from '../lib/config.js';
import type { Pool } from '../lib/db.js';
import type { Logger } from '../lib/logger.js';

/** What route modules are built from. */
export interface ApiDeps {
  config: Config;
  pool: Pool;
  temporal: Client;
  log: Logger;
}
