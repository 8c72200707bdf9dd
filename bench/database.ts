import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** A fresh database on the given PostgreSQL server, dropped afterwards: a benchmark never touches existing data. */
export async function createBenchDatabase(serverUrl: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `mds_bench_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const parsed = new URL(serverUrl);
  parsed.pathname = `/${name}`;
  return {
    url: parsed.toString(),
    async drop() {
      const again = new pg.Client({ connectionString: serverUrl });
      await again.connect();
      await again.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await again.end();
    },
  };
}

/** Runs `fn` on a fresh PostgreSQL database when a server is configured, else on the embedded one. */
export async function onBenchDatabase<T>(serverUrl: string | undefined, fn: (databaseUrl: string | undefined) => Promise<T>): Promise<T> {
  if (!serverUrl) return fn(undefined);
  const database = await createBenchDatabase(serverUrl);
  try {
    return await fn(database.url);
  } finally {
    await database.drop();
  }
}
