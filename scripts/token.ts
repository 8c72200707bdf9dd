// npm run token -- create --scope read|operate --name <name> | list [--all] | revoke <id>
// Manages API tokens on the database the service uses (DATABASE_URL, or the embedded one in
// DATA_DIR), applying pending migrations first. See src/auth/token-cli.ts.
import { runTokenCommand } from '../src/auth/token-cli.ts';
import { ConfigError, loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { migrate } from '../src/db/migrate.ts';
import { projectPaths } from '../src/paths.ts';

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
  const result = await runTokenCommand(db.prisma, process.argv.slice(2));
  (result.code === 0 ? process.stdout : process.stderr).write(result.output);
  code = result.code;
} finally {
  await db.close();
}
process.exit(code);
