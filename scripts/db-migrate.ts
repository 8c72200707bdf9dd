// npm run db:migrate: applies prisma/migrations to DATABASE_URL (or the embedded database in
// DATA_DIR) through the WASM schema engine, exactly as the service does at start-up.
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { migrate, migrationStatus } from '../src/db/migrate.ts';
import { projectPaths } from '../src/paths.ts';

const config = loadConfig();
const paths = projectPaths();
const db = await openDatabase({ url: config.database.url, dataDir: config.database.dataDir });
try {
  const { applied } = await migrate(db, paths);
  const status = await migrationStatus(db, paths.migrationsDir);
  console.log(applied.length ? `applied: ${applied.join(', ')}` : 'nothing to apply');
  console.log(`${status.applied.length} migration(s) recorded on the ${db.engine === 'pglite' ? 'embedded database' : 'PostgreSQL database'}`);
} finally {
  await db.close();
}
