import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { createEmbeddedUpkeep, upkeepDue } from '../../src/db/embedded-upkeep.ts';
import { claim, claimStatement, completeMany, enqueueBatch, type NewChangeEvent } from '../../src/inbox/inbox.ts';
import { Prisma } from '../../src/db/generated/client.ts';
import { useMigratedDatabase } from '../support/database.ts';

const events = (from: number, count: number): NewChangeEvent[] =>
  Array.from({ length: count }, (_, i) => ({ source: 'MARKETO', origin: 'WEBHOOK', operation: 'UPDATE', marketoId: from + i, payload: {}, dedupeKey: `upkeep:${from + i}` }));

const reltuples = async (db: Database, table: string) =>
  (await db.query<{ reltuples: number }>('SELECT reltuples::float8 AS reltuples FROM pg_class WHERE relname = $1', [table]))[0]!.reltuples;

// a pass after 1,000 new events; the tests call runOnce themselves, so the timer never starts
const upkeepOf = (db: Database) => createEmbeddedUpkeep({ db, logger: pino({ level: 'silent' }), policy: { minNewEvents: 1_000, checkEveryMs: 60_000 } });

const claimPlan = async (db: Database) =>
  (await db.prisma.$queryRaw<Record<string, string>[]>(Prisma.sql`EXPLAIN ${claimStatement({ owner: 'w', batchSize: 30, leaseMs: 60_000 })}`)).map((row) => Object.values(row)[0]).join('\n');

describe('the embedded database upkeep (PGlite runs no autovacuum)', () => {
  let db!: Database;
  useMigratedDatabase('pglite', {
    opened: (opened) => (db = opened),
    empty: async (db) => {
      await db.prisma.changeEvent.deleteMany();
    },
  });

  it('is due once enough events arrived, not before', () => {
    expect([0, 999, 1_000, 5_000].map((n) => upkeepDue(n, { minNewEvents: 1_000, checkEveryMs: 1 }))).toEqual([false, false, true, true]);
  });

  it('vacuums and analyses the inbox only after enough new events, counting from its own last pass', async () => {
    const keeper = upkeepOf(db);
    expect(await keeper.runOnce()).toBe(false); // the first check sets where counting starts
    await enqueueBatch(db, events(1, 600));
    expect(await keeper.runOnce()).toBe(false);
    // never analysed: PostgreSQL knows nothing of the table's size
    expect(await reltuples(db, 'change_event')).toBe(-1);
    await enqueueBatch(db, events(601, 600));
    expect(await keeper.runOnce()).toBe(true);
    expect(await reltuples(db, 'change_event')).toBe(1_200);
    // the 1,200 are behind it now: the next pass waits for 1,000 more
    await enqueueBatch(db, events(1_201, 10));
    expect(await keeper.runOnce()).toBe(false);
  });

});

describe('a claim on the embedded database after upkeep', () => {
  let db!: Database;
  // a database of its own: the statistics of another test's pass would carry over
  useMigratedDatabase('pglite', { opened: (opened) => (db = opened), empty: () => Promise.resolve() });

  it('reads the claim index in order instead of sorting the whole backlog', async () => {
    const keeper = upkeepOf(db);
    await keeper.runOnce();
    for (let from = 1; from <= 3_000; from += 500) await enqueueBatch(db, events(from, 500));
    // with no statistics the planner guesses a handful of rows and sorts all 3,000 to keep 30
    expect(await claimPlan(db)).toMatch(/Sort Key: change_event\."nextAttemptAt"/);
    expect(await keeper.runOnce()).toBe(true);
    const plan = await claimPlan(db);
    expect(plan).toMatch(/Index Scan using change_event_claim_idx/);
    expect(plan).not.toMatch(/Sort/);
    // and claims still come out in arrival order
    const first = await claim(db.prisma, { owner: 'w', batchSize: 30, leaseMs: 60_000, maxAttempts: 3 });
    expect(first.map((e) => e.marketoId)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(await completeMany(db.prisma, first.map((e) => ({ id: e.id })), 'w')).toBe(30);
  });
});
