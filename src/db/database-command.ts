import { loadConfigOrExit } from '../config.ts';
import { projectPaths } from '../paths.ts';
import { openDatabase } from './database.ts';
import type { PrismaClient } from './generated/client.ts';
import { migrate } from './migrate.ts';

// The frame of an operator CLI that works on the service's database (npm run token, batch-sync):
// DATABASE_URL, or the embedded one in DATA_DIR, with pending migrations applied first; the
// command's output goes to stdout (stderr when it failed) and its code is the process's exit code.

export type DatabaseCommand = (prisma: PrismaClient, args: string[]) => Promise<{ code: number; output: string }>;

export async function runDatabaseCommand(command: DatabaseCommand): Promise<never> {
  const config = loadConfigOrExit();
  const db = await openDatabase({ url: config.database.url, dataDir: config.database.dataDir, poolSize: 2 });
  let code = 1;
  try {
    await migrate(db, projectPaths());
    const result = await command(db.prisma, process.argv.slice(2));
    (result.code === 0 ? process.stdout : process.stderr).write(result.output);
    code = result.code;
  } finally {
    await db.close();
  }
  process.exit(code);
}
