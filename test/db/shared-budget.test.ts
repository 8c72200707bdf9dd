import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reserveShared } from '../../src/connectors/shared-budget.ts';
import type { Database } from '../../src/db/database.ts';
import { migrate } from '../../src/db/migrate.ts';
import { createPostgresSharedBudget } from '../../src/db/shared-budget.ts';
import { projectPaths } from '../../src/paths.ts';
import { freshDatabase, postgresUrl, type TestDatabase } from '../support/database.ts';

// Two replicas (two database handles, as two processes would have) share one vendor budget in one
// PostgreSQL database. Counted with an injected clock: no assertion on speed.

const most = (times: number[], windowMs: number) => Math.max(0, ...times.map((t) => times.filter((u) => u > t - windowMs && u <= t).length));

describe.skipIf(!postgresUrl())('shared vendor budget in PostgreSQL', () => {
  let test: TestDatabase;
  let replicas: Database[];

  beforeAll(async () => {
    test = await freshDatabase('postgres');
    replicas = [await test.open(), await test.open()];
    await migrate(replicas[0]!, projectPaths());
  });
  afterAll(async () => {
    await test.drop();
  });

  it('never lets two replicas together pass the limit in any window, and spends it', async () => {
    const vendor = `marketo-test-${Date.now()}`;
    const options = { vendor, limit: 10, windowMs: 1_000, slotMs: 100 };
    const budgets = replicas.map((db) => createPostgresSharedBudget(db.prisma, options));
    const granted: number[] = [];
    // both replicas ask twice every 50 ms of a shared clock, for 5 windows (more than the limit allows)
    for (let at = 0; at < 5_000; at += 50) {
      const answers = await Promise.all(budgets.flatMap((b) => [b.reserve(at), b.reserve(at)]));
      for (const wait of answers) if (wait === 0) granted.push(at);
    }
    expect(most(granted, options.windowMs)).toBeLessThanOrEqual(10);
    // at most one slot of each window is lost to counting by slot
    expect(granted.length).toBeGreaterThanOrEqual(5 * 9);
  }, 120_000);

  it('holds for any interleaving of the two replicas (property)', async () => {
    let round = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 120 })), { minLength: 1, maxLength: 40 }), async (steps) => {
        const options = { vendor: `prop-${Date.now()}-${round++}`, limit: 5, windowMs: 500, slotMs: 50 };
        const budgets = replicas.map((db) => createPostgresSharedBudget(db.prisma, options));
        const granted: number[] = [];
        let at = 0;
        for (const [replica, advance] of steps) {
          at += advance;
          if ((await budgets[replica]!.reserve(at)) === 0) granted.push(at);
        }
        expect(most(granted, options.windowMs)).toBeLessThanOrEqual(5);
      }),
      { numRuns: 15 },
    );
  }, 120_000);

  it('tells a refused replica how long to wait, and a call waits that long before going', async () => {
    const options = { vendor: `wait-${Date.now()}`, limit: 2, windowMs: 1_000, slotMs: 100 };
    const [a, b] = replicas.map((db) => createPostgresSharedBudget(db.prisma, options));
    expect(await a!.reserve(0)).toBe(0);
    expect(await b!.reserve(50)).toBe(0);
    const wait = await a!.reserve(120);
    // the calls of slot 0 stop counting once the window's slots start after it: at 1,100
    expect(wait).toBe(980);
    let clock = 120;
    const slept: number[] = [];
    await reserveShared(
      b,
      () => clock,
      (ms) => {
        slept.push(ms);
        clock += ms;
        return Promise.resolve();
      },
      (error) => {
        throw error;
      },
    );
    expect(slept).toEqual([980]);
    expect(clock).toBe(1_100);
  });
});
