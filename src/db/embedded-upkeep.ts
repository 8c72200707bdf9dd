import type { Logger } from '../logger.ts';
import type { Database } from './database.ts';

// PGlite runs PostgreSQL in single-user mode, where no autovacuum runs: dead row versions are never
// reclaimed and the planner never gets statistics. On the inbox, whose every event is written
// three times, claiming and completing 30 events cost 5 ms with 10,000 events behind them and
// 36 ms with 100,000; and without statistics a claim reads and sorts the whole backlog rather than
// its index in order. So the embedded database does what autovacuum does on a server, by
// autovacuum's own rule: a table is vacuumed once its dead rows pass 50 + 20% of its live ones, and
// analysed once the rows changed since its last analysis pass 50 + 10%. A pass costs in proportion
// to the table, so a rule in proportion to it keeps the total work in proportion to the changes
// (a pass of every churning table every 2,000 events grew with the store: at 100 changes/s it held
// the database for a growing share of each 20 s). PostgreSQL has autovacuum, and this never runs there.

export interface UpkeepPolicy {
  vacuumThreshold: number;
  vacuumScaleFactor: number;
  analyzeThreshold: number;
  analyzeScaleFactor: number;
  /** how often to look at the tables' counts */
  checkEveryMs: number;
}

/** PostgreSQL's own autovacuum settings (autovacuum_vacuum_threshold and the rest) */
export const defaultUpkeepPolicy: UpkeepPolicy = { vacuumThreshold: 50, vacuumScaleFactor: 0.2, analyzeThreshold: 50, analyzeScaleFactor: 0.1, checkEveryMs: 5_000 };

/** A table's counts as PostgreSQL's statistics keep them (pg_stat_user_tables). */
export interface TableActivity {
  table: string;
  live: number;
  dead: number;
  modifiedSinceAnalyze: number;
}

export interface TableUpkeep {
  table: string;
  vacuum: boolean;
  analyze: boolean;
}

/** The tables due for a vacuum or an analysis, in the order given. */
export function upkeepPlan(tables: readonly TableActivity[], policy: UpkeepPolicy): TableUpkeep[] {
  return tables
    .map((t) => ({
      table: t.table,
      vacuum: t.dead > policy.vacuumThreshold + policy.vacuumScaleFactor * t.live,
      analyze: t.modifiedSinceAnalyze > policy.analyzeThreshold + policy.analyzeScaleFactor * t.live,
    }))
    .filter((t) => t.vacuum || t.analyze);
}

/** One statement per table, so the work queued behind it runs between the tables. */
export function upkeepStatement(t: TableUpkeep): string {
  const table = `"${t.table.replaceAll('"', '""')}"`;
  if (t.vacuum && t.analyze) return `VACUUM (ANALYZE) ${table}`;
  return t.vacuum ? `VACUUM ${table}` : `ANALYZE ${table}`;
}

export interface EmbeddedUpkeep {
  /** one look at the tables, and the passes that are due; resolves to the tables it worked on */
  runOnce(): Promise<TableUpkeep[]>;
  start(): void;
  stop(): Promise<void>;
}

export function createEmbeddedUpkeep(options: { db: Database; logger: Logger; policy?: UpkeepPolicy }): EmbeddedUpkeep {
  const { db, logger } = options;
  const policy = options.policy ?? defaultUpkeepPolicy;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<TableUpkeep[]> | undefined;

  async function pass(): Promise<TableUpkeep[]> {
    // the counts of the last second are flushed to the statistics at the end of a statement
    await db.query('SELECT pg_stat_force_next_flush()::text', []);
    const tables = await db.query<TableActivity>(
      `SELECT relname AS "table", n_live_tup::int AS live, n_dead_tup::int AS dead, n_mod_since_analyze::int AS "modifiedSinceAnalyze"
         FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY relname`,
      [],
    );
    const due = upkeepPlan(tables, policy);
    for (const t of due) {
      const started = performance.now();
      await db.query(upkeepStatement(t), []);
      logger.debug({ ...t, ms: Math.round(performance.now() - started) }, 'embedded database table vacuumed or analysed');
    }
    return due;
  }

  function runOnce(): Promise<TableUpkeep[]> {
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
