import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { createEmbeddedUpkeep, defaultUpkeepPolicy, upkeepPlan, upkeepStatement } from '../../src/db/embedded-upkeep.ts';
import { claim, claimStatement, completeMany, enqueueBatch, type NewChangeEvent } from '../../src/inbox/inbox.ts';
import { Prisma } from '../../src/db/generated/client.ts';
import { useMigratedDatabase } from '../support/database.ts';

const events = (from: number, count: number): NewChangeEvent[] =>
  Array.from({ length: count }, (_, i) => ({ source: 'MARKETO', origin: 'WEBHOOK', operation: 'UPDATE', marketoId: from + i, payload: {}, dedupeKey: `upkeep:${from + i}` }));

const reltuples = async (db: Database, table: string) =>
  (await db.query<{ reltuples: number }>('SELECT reltuples::float8 AS reltuples FROM pg_class WHERE relname = $1', [table]))[0]!.reltuples;

// the statistics take in the last second's counts at the end of a statement
const deadRows = async (db: Database, table: string) => {
  await db.query('SELECT pg_stat_force_next_flush()::text', []);
  return (await db.query<{ dead: number }>('SELECT n_dead_tup::int AS dead FROM pg_stat_user_tables WHERE relname = $1', [table]))[0]!.dead;
};

// the tests call runOnce themselves, so the timer never starts
const upkeepOf = (db: Database) => createEmbeddedUpkeep({ db, logger: pino({ level: 'silent' }), policy: { ...defaultUpkeepPolicy, checkEveryMs: 60_000 } });

const claimPlan = async (db: Database) =>
  (await db.prisma.$queryRaw<Record<string, string>[]>(Prisma.sql`EXPLAIN ${claimStatement({ owner: 'w', batchSize: 30, leaseMs: 60_000 })}`)).map((row) => Object.values(row)[0]).join('\n');

describe('when the embedded database upkeep works on a table (autovacuum\'s rule)', () => {
  const table = (live: number, dead: number, modifiedSinceAnalyze: number) => ({ table: 't', live, dead, modifiedSinceAnalyze });
  it.each([
    ['an empty, untouched table', table(0, 0, 0), undefined],
    ['50 dead rows of none live: at the threshold, not past it', table(0, 50, 0), undefined],
    ['51 dead rows of none live', table(0, 51, 0), { vacuum: true, analyze: false }],
    ['2,050 dead of 10,000 live: at 50 + 20%', table(10_000, 2_050, 0), undefined],
    ['2,051 dead of 10,000 live', table(10_000, 2_051, 0), { vacuum: true, analyze: false }],
    ['1,051 rows changed of 10,000 since the last analysis', table(10_000, 0, 1_051), { vacuum: false, analyze: true }],
    ['both past their thresholds', table(100_000, 30_000, 20_000), { vacuum: true, analyze: true }],
  ])('%s', (_name, activity, expected) => {
    expect(upkeepPlan([activity], defaultUpkeepPolicy)[0]).toEqual(expected && { table: 't', ...expected });
  });

  it('works on each table in a statement of its own, quoting its name', () => {
    expect(
      [
        { table: 'change_event', vacuum: true, analyze: true },
        { table: 'sync_link', vacuum: true, analyze: false },
        { table: 'activity', vacuum: false, analyze: true },
      ].map(upkeepStatement),
    ).toEqual(['VACUUM (ANALYZE) "change_event"', 'VACUUM "sync_link"', 'ANALYZE "activity"']);
  });
});

describe('the embedded database upkeep (PGlite runs no autovacuum)', () => {
  let db!: Database;
  useMigratedDatabase('pglite', {
    opened: (opened) => (db = opened),
    empty: async (db) => {
      await db.prisma.changeEvent.deleteMany();
    },
  });

  it('vacuums and analyses a table once enough of it changed, leaves the others, and then rests', async () => {
    const keeper = upkeepOf(db);
    await enqueueBatch(db, events(1, 1_200));
    // never analysed: PostgreSQL knows nothing of the table's size
    expect(await reltuples(db, 'change_event')).toBe(-1);
    // inserts leave nothing to vacuum; the table is analysed
    expect(await keeper.runOnce()).toEqual([{ table: 'change_event', vacuum: false, analyze: true }]);
    expect(await reltuples(db, 'change_event')).toBe(1_200);
    // work flows: every claimed and completed event leaves two dead versions behind
    for (let done = 0; done < 300; done += 30) {
      const claimed = await claim(db.prisma, { owner: 'w', batchSize: 30, leaseMs: 60_000, maxAttempts: 3 });
      await completeMany(db.prisma, claimed.map((e) => ({ id: e.id })), 'w');
    }
    // up to 600 (reads prune some as they pass): past 50 + 20% of 1,200; and 600 changed rows, past 50 + 10%
    expect(await deadRows(db, 'change_event')).toBeGreaterThan(290);
    expect(await keeper.runOnce()).toEqual([{ table: 'change_event', vacuum: true, analyze: true }]);
    expect(await deadRows(db, 'change_event')).toBe(0);
    // nothing changed since: nothing to do
    expect(await keeper.runOnce()).toEqual([]);
  });

});

describe('a claim on the embedded database after upkeep', () => {
  let db!: Database;
  // a database of its own: the statistics of another test's pass would carry over
  useMigratedDatabase('pglite', { opened: (opened) => (db = opened), empty: () => Promise.resolve() });

  it('reads the claim index in order instead of sorting the whole backlog', async () => {
    const keeper = upkeepOf(db);
    for (let from = 1; from <= 3_000; from += 500) await enqueueBatch(db, events(from, 500));
    // with no statistics the planner guesses a handful of rows and sorts all 3,000 to keep 30
    expect(await claimPlan(db)).toMatch(/Sort Key: change_event\."nextAttemptAt"/);
    expect(await keeper.runOnce()).toContainEqual({ table: 'change_event', vacuum: false, analyze: true });
    const plan = await claimPlan(db);
    expect(plan).toMatch(/Index Scan using change_event_claim_idx/);
    expect(plan).not.toMatch(/Sort/);
    // and claims still come out in arrival order
    const first = await claim(db.prisma, { owner: 'w', batchSize: 30, leaseMs: 60_000, maxAttempts: 3 });
    expect(first.map((e) => e.marketoId)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(await completeMany(db.prisma, first.map((e) => ({ id: e.id })), 'w')).toBe(30);
  });
});
