import type { Logger } from '../logger.ts';
import type { Database } from './database.ts';

// PGlite runs PostgreSQL in single-user mode, where no autovacuum runs: dead row versions are never
// reclaimed and the planner never gets statistics. On the inbox, whose every event is written
// three times, claiming and completing 30 events cost 5 ms with 10,000 events behind them and
// 36 ms with 100,000; and without statistics a claim reads and sorts the whole backlog rather than
// its index in order. So the embedded database does what autovacuum does on a server: when enough
// events arrived since the last pass, it vacuums and analyses the tables that churn. PostgreSQL
// has autovacuum, and this never runs there.

/** the tables whose rows are updated or deleted as work flows (inserts alone leave no dead rows) */
export const CHURNING_TABLES = ['change_event', 'record_lock', 'sync_link', 'throughput_minute'] as const;

export interface UpkeepPolicy {
  /** a pass is due once this many events arrived since the last one */
  minNewEvents: number;
  /** how often to count them */
  checkEveryMs: number;
}

/** ~200 ms a pass with 100,000 events stored; a burst of 10,000 got three (~180 ms each, 11,000 links) */
export const defaultUpkeepPolicy: UpkeepPolicy = { minNewEvents: 2_000, checkEveryMs: 5_000 };

export function upkeepDue(newEvents: number, policy: UpkeepPolicy): boolean {
  return newEvents >= policy.minNewEvents;
}

export interface EmbeddedUpkeep {
  /** one check, and the pass if it is due; true when it ran */
  runOnce(): Promise<boolean>;
  start(): void;
  stop(): Promise<void>;
}

export function createEmbeddedUpkeep(options: { db: Database; logger: Logger; policy?: UpkeepPolicy }): EmbeddedUpkeep {
  const { db, logger } = options;
  const policy = options.policy ?? defaultUpkeepPolicy;
  // the database's clock, as receivedAt is stamped by it
  let since: Date | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<boolean> | undefined;

  async function pass(): Promise<boolean> {
    since ??= (await db.query<{ now: Date }>('SELECT now() AS now', []))[0]!.now;
    const [row] = await db.query<{ count: number; now: Date }>('SELECT count(*)::int AS count, now() AS now FROM change_event WHERE "receivedAt" >= $1', [since]);
    if (!row || !upkeepDue(row.count, policy)) return false;
    const started = performance.now();
    await db.query(`VACUUM (ANALYZE) ${CHURNING_TABLES.join(', ')}`, []);
    since = row.now;
    logger.debug({ newEvents: row.count, ms: Math.round(performance.now() - started) }, 'embedded database vacuumed and analysed');
    return true;
  }

  function runOnce(): Promise<boolean> {
    running ??= pass().finally(() => (running = undefined));
    return running;
  }

  return {
    runOnce,
    start() {
      if (timer || db.engine !== 'pglite') return;
      timer = setInterval(() => {
        runOnce().catch((error: unknown) => logger.warn({ err: error }, 'embedded database upkeep failed; it is tried again'));
      }, policy.checkEveryMs);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await running?.catch(() => undefined);
    },
  };
}
