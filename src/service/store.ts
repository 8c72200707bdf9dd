import type { Config } from '../config.ts';
import { openDatabase, type Database } from '../db/database.ts';
import { migrate } from '../db/migrate.ts';
import type { Logger } from '../logger.ts';
import type { projectPaths } from '../paths.ts';
import { createSuppressions, erasureKey, type Suppressions } from '../security/suppression.ts';
import type { Closers } from './closers.ts';

export interface Store {
  db: Database;
  /** the erasure list: everything that could link or log a person asks it (security/suppression.ts) */
  suppressions: Suppressions;
}

/** The database, migrated to the schema this code expects, and the erasure list kept in it. */
export async function openStore(
  config: Config,
  deps: { logger: Logger; paths: ReturnType<typeof projectPaths>; closers: Closers; startFrom: Blob | undefined },
): Promise<Store> {
  const { logger } = deps;
  const db = await openDatabase({ url: config.database.url, dataDir: config.database.dataDir, poolSize: config.database.poolSize, startFrom: deps.startFrom });
  deps.closers.add('database', () => db.close());
  logger.info(
    { engine: db.engine, ...(db.engine === 'pglite' ? { dataDir: config.database.dataDir } : {}) },
    db.engine === 'pglite' ? 'using the embedded database (PGlite)' : 'using PostgreSQL',
  );
  const { applied } = await migrate(db, deps.paths);
  logger.info({ applied }, applied.length ? `applied ${applied.length} migration(s)` : 'database schema is current');
  const suppressions = createSuppressions(db.prisma, await erasureKey(db.prisma, config.security.erasureKey));
  return { db, suppressions };
}
