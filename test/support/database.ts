import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { openDatabase, type Database, type DatabaseEngine } from '../../src/db/database.ts';
import { migrate } from '../../src/db/migrate.ts';
import { projectPaths } from '../../src/paths.ts';

/** PGlite always; PostgreSQL too when TEST_DATABASE_URL is set (CI and the team's machines). */
export function testEngines(): DatabaseEngine[] {
  return process.env.TEST_DATABASE_URL ? ['pglite', 'postgres'] : ['pglite'];
}

export const postgresUrl = () => process.env.TEST_DATABASE_URL;

export interface TestDatabase {
  engine: DatabaseEngine;
  /** postgresql:// URL of the fresh database (PostgreSQL only) */
  url: string | undefined;
  open(): Promise<Database>;
  drop(): Promise<void>;
}

function withDatabaseName(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

/**
 * A fresh, empty database per test file: in-memory PGlite, or a new database on the PostgreSQL
 * server named after TEST_DATABASE_URL. `migrated()` also applies the migrations.
 */
export async function freshDatabase(engine: DatabaseEngine): Promise<TestDatabase> {
  if (engine === 'pglite') {
    let db: Database | undefined;
    return {
      engine,
      url: undefined,
      async open() {
        db ??= await openDatabase({ dataDir: 'memory://' });
        return db;
      },
      async drop() {
        await db?.close();
      },
    };
  }
  const adminUrl = postgresUrl();
  if (!adminUrl) throw new Error('TEST_DATABASE_URL is not set');
  const name = `mds_test_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = withDatabaseName(adminUrl, name);
  const opened: Database[] = [];
  return {
    engine,
    url,
    async open() {
      const db = await openDatabase({ url, dataDir: 'unused' });
      opened.push(db);
      return db;
    },
    async drop() {
      await Promise.all(opened.map((db) => db.close()));
      const cleanup = new pg.Client({ connectionString: adminUrl });
      await cleanup.connect();
      await cleanup.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await cleanup.end();
    },
  };
}

let migratedDump: Promise<Blob> | undefined;

/**
 * The embedded database with every migration applied, dumped once per test worker (a worker keeps
 * its modules between files): opening a copy skips initdb and the migrations.
 */
export function migratedEmbeddedDump(): Promise<Blob> {
  migratedDump ??= (async () => {
    const db = await openDatabase({ dataDir: 'memory://' });
    try {
      await migrate(db, projectPaths());
      return await db.dump!();
    } finally {
      await db.close();
    }
  })();
  return migratedDump;
}

export async function migratedDatabase(engine: DatabaseEngine): Promise<{ test: TestDatabase; db: Database }> {
  if (engine === 'pglite') {
    const db = await openDatabase({ dataDir: 'memory://', startFrom: await migratedEmbeddedDump() });
    return { test: { engine, url: undefined, open: () => Promise.resolve(db), drop: () => db.close() }, db };
  }
  const test = await freshDatabase(engine);
  const db = await test.open();
  await migrate(db, projectPaths());
  return { test, db };
}

/**
 * The hooks of a describe block that works on one migrated database: made before the block's tests
 * (and handed to `opened`), dropped after them, and `empty`, when given, runs before each test.
 * Call it before the block's own hooks: its beforeAll then runs first and its afterAll last (vitest
 * runs after-hooks in the reverse order), so what the block starts over the database stops before
 * the database goes.
 */
export function useMigratedDatabase(engine: DatabaseEngine, hooks: { opened: (db: Database) => void; empty?: (db: Database) => Promise<void> }): void {
  let made: { test: TestDatabase; db: Database } | undefined;
  beforeAll(async () => {
    made = await migratedDatabase(engine);
    hooks.opened(made.db);
  });
  afterAll(async () => {
    await made?.test.drop();
  });
  beforeEach(async () => {
    if (made && hooks.empty) await hooks.empty(made.db);
  });
}
