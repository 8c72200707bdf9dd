// npm run batch-sync -- start <listId> [--as lead|contact] [--assign-to <owner>] | status [<batch id>]
// Queues a Batch Sync Person (a Marketo static list pushed to Dynamics) on the database the service
// uses (DATABASE_URL, or the embedded one in DATA_DIR), applying pending migrations first; the
// running service does the work. See src/sync/batch-sync-cli.ts.
import { ConfigError, loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { migrate } from '../src/db/migrate.ts';
import { projectPaths } from '../src/paths.ts';
import { runBatchSyncCommand } from '../src/sync/batch-sync-cli.ts';

let config;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(error.message);
    process.exit(78);
  }
  throw error;
}
const db = await openDatabase({ url: config.database.url, dataDir: config.database.dataDir, poolSize: 2 });
let code = 1;
try {
  await migrate(db, projectPaths());
  const result = await runBatchSyncCommand(db.prisma, process.argv.slice(2));
  (result.code === 0 ? process.stdout : process.stderr).write(result.output);
  code = result.code;
} finally {
  await db.close();
}
process.exit(code);
