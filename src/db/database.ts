import { mkdir } from 'node:fs/promises';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import type { SqlMigrationAwareDriverAdapterFactory } from '@prisma/driver-adapter-utils';
import { PrismaClient, type Prisma } from './generated/client.ts';
import { PGliteThread } from './pglite-thread.ts';

export type DatabaseEngine = 'pglite' | 'postgres';

export interface Database {
  readonly engine: DatabaseEngine;
  readonly prisma: PrismaClient;
  readonly adapterFactory: SqlMigrationAwareDriverAdapterFactory;
  /**
   * Runs `fn` while holding a cluster-wide lock, so that replicas starting together do not
   * race (migrations, seeding). PGlite is single-process, so a promise chain is enough there.
   */
  withExclusiveLock<T>(key: number, fn: () => Promise<T>): Promise<T>;
  /**
   * An adapter for Prisma's schema engine on connections of its own. The engine takes session
   * advisory locks and returns its connections to whatever pool it was given; closing a private
   * pool afterwards is what releases them.
   */
  withSchemaEngineAdapter<T>(fn: (factory: SqlMigrationAwareDriverAdapterFactory) => Promise<T>): Promise<T>;
  /**
   * One parameterised statement on the driver itself, for the few hot paths where Prisma's
   * per-query overhead halves throughput (webhook intake). On PGlite it is Prisma's raw query
   * (the statements run in PGlite's thread either way; see pglite-thread.ts).
   */
  query<T>(text: string, values: readonly unknown[]): Promise<T[]>;
  /** PGlite only: the data directory as a tarball, which `startFrom` opens again */
  dump?: () => Promise<Blob>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** postgresql://... -> PostgreSQL; undefined -> embedded PGlite */
  url?: string | undefined;
  /** PGlite data directory; `memory://` keeps it in memory (tests) */
  dataDir: string;
  /** pg pool size per replica */
  poolSize?: number;
  /**
   * PGlite in memory only: start from this `dump()` instead of an empty cluster. Tests open every
   * database from one migrated dump (~0.3 s) rather than initdb plus the migrations (~1.2 s).
   */
  startFrom?: Blob | undefined;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  return options.url ? Promise.resolve(openPostgres(options.url, options.poolSize ?? 10)) : openPglite(options.dataDir, options.startFrom);
}

async function openPglite(dataDir: string, startFrom: Blob | undefined): Promise<Database> {
  const inMemory = dataDir.startsWith('memory://');
  if (startFrom && !inMemory) throw new Error('a PGlite dump can only start an in-memory database');
  if (!inMemory) await mkdir(dataDir, { recursive: true });
  // In a thread of its own (pglite-thread.ts), so its WebAssembly does not run on the service's
  // event loop. PostgreSQL's default 128 MB of shared buffers would sit in that WebAssembly heap;
  // the data files are cached by the OS anyway. 32 MB: the service held ~440 MB instead of ~535 at
  // 5 changes/s, and 5,000-change bursts ran at the same rate (280 against 281 changes/s, 4 bursts each).
  // Statistics from a tenth of the default sample: the embedded upkeep's ANALYZE holds the one
  // connection (a server's runs beside the others), and at 100 changes/s a sample of 30,000 rows took
  // 200-400 ms a table every 10 s; this store's queries are planned well on the smaller sample.
  const client = await PGliteThread.open({ dataDir, postgresqlconf: ['shared_buffers = 32MB', 'default_statistics_target = 10'], startFrom });
  const adapterFactory = new PrismaPGlite(client.asPGlite());
  const prisma = new PrismaClient({ adapter: adapterFactory });
  let lockChain: Promise<unknown> = Promise.resolve();
  return {
    engine: 'pglite',
    prisma,
    adapterFactory,
    withExclusiveLock<T>(_key: number, fn: () => Promise<T>): Promise<T> {
      const run = lockChain.then(fn, fn);
      lockChain = run.catch(() => undefined);
      return run;
    },
    withSchemaEngineAdapter: (fn) => fn(adapterFactory),
    query: <T>(text: string, values: readonly unknown[]) => prisma.$queryRawUnsafe<T[]>(text, ...values),
    dump: () => client.dumpDataDir(),
    async close() {
      await prisma.$disconnect();
      await client.close();
    },
  };
}

function openPostgres(url: string, poolSize: number): Database {
  const pool = new pg.Pool({ connectionString: url, max: poolSize });
  // An idle client's network error is emitted on the pool; without a listener it kills the process.
  pool.on('error', () => undefined);
  const adapterFactory = new PrismaPg(pool);
  // Under a burst thousands of syncs share the pool: a transaction waits for a connection as long
  // as a statement would (Prisma's default 2 s turned that wait into a failed attempt).
  const prisma = new PrismaClient({ adapter: adapterFactory, transactionOptions: { maxWait: 10_000 } });
  return {
    engine: 'postgres',
    prisma,
    adapterFactory,
    async withExclusiveLock<T>(key: number, fn: () => Promise<T>): Promise<T> {
      // A session-level advisory lock on a dedicated connection: the work itself runs on other
      // connections of the pool, and a crashed holder releases the lock with its session.
      const lockClient = await pool.connect();
      try {
        await lockClient.query('SELECT pg_advisory_lock($1)', [key]);
        try {
          return await fn();
        } finally {
          await lockClient.query('SELECT pg_advisory_unlock($1)', [key]);
        }
      } finally {
        lockClient.release();
      }
    },
    async query<T>(text: string, values: readonly unknown[]): Promise<T[]> {
      return (await pool.query(text, [...values])).rows as T[];
    },
    async withSchemaEngineAdapter(fn) {
      const enginePool = new pg.Pool({ connectionString: url, max: 2 });
      enginePool.on('error', () => undefined);
      try {
        return await fn(new PrismaPg(enginePool));
      } finally {
        await enginePool.end();
      }
    },
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}

/** Advisory lock keys, one per purpose, so unrelated critical sections never block each other. */
export const lockKeys = {
  migrate: 7_341_001,
} as const;

/** A client or an open transaction: repository functions take either, so callers choose atomicity. */
export type Db = PrismaClient | Prisma.TransactionClient;
