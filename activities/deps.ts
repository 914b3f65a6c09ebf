import type { Config } from '../lib/config/config.js';
import type { Pool } from '../lib/store/db.js';
import type { Logger } from '../lib/config/logger.js';

/** What activities are built from: created once per worker process. */
export interface ActivityDeps {
  config: Config;
  pool: Pool;
  log: Logger;
}
