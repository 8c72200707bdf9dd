// npm run token -- create --scope read|operate --name <name> | list [--all] | revoke <id>
// Manages API tokens on the database the service uses (DATABASE_URL, or the embedded one in
// DATA_DIR), applying pending migrations first. See src/auth/token-cli.ts.
import { runTokenCommand } from '../src/auth/token-cli.ts';
import { runDatabaseCommand } from '../src/db/database-command.ts';

await runDatabaseCommand(runTokenCommand);
