import type { Client } from '@temporalio/client';
import type { Config } from '../lib/config/config.js';
import type { Pool } from '../lib/store/db.js';
import type { Logger } from '../lib/config/logger.js';

/** What route modules are built from. */
export interface ApiDeps {
  config: Config;
  pool: Pool;
  temporal: Client;
  log: Logger;
}
