// npm run batch-sync -- start <listId> [--as lead|contact] [--assign-to <owner>] | status [<batch id>]
// Queues a Batch Sync Person (a Marketo static list pushed to Dynamics) on the database the service
// uses (DATABASE_URL, or the embedded one in DATA_DIR), applying pending migrations first; the
// running service does the work. See src/sync/batch-sync-cli.ts.
import { runDatabaseCommand } from '../src/db/database-command.ts';
import { runBatchSyncCommand } from '../src/sync/batch-sync-cli.ts';

await runDatabaseCommand(runBatchSyncCommand);
