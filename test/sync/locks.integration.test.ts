import { describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { tryLock, tryLockEach, unlockAll } from '../../src/sync/locks.ts';
import { testEngines, useMigratedDatabase } from '../support/database.ts';

describe.each(testEngines())('record leases on %s', (engine) => {
  let db!: Database;
  useMigratedDatabase(engine, {
    opened: (opened) => (db = opened),
    empty: async (db) => {
      await db.prisma.recordLock.deleteMany();
    },
  });

  const holders = async () => (await db.prisma.recordLock.findMany({ orderBy: { key: 'asc' } })).map((l) => [l.key, l.owner]);

  it('gives each piece of work all of its keys or none, in one statement for the whole batch', async () => {
    expect(await tryLock(db.prisma, ['dyn:b'], 'elsewhere', 60_000)).toBe(true);
    const held = await tryLockEach(
      db.prisma,
      [
        { keys: ['mkto:1', 'dyn:a'], holder: 'w1' },
        { keys: ['mkto:2', 'dyn:b'], holder: 'w2' },
        { keys: ['mkto:3'], holder: 'w3' },
      ],
      60_000,
    );
    expect([...held].sort()).toEqual(['w1', 'w3']);
    // w2 kept nothing: its mkto:2 was given back
    expect(await holders()).toEqual([
      ['dyn:a', 'w1'],
      ['dyn:b', 'elsewhere'],
      ['mkto:1', 'w1'],
      ['mkto:3', 'w3'],
    ]);
  });

  it('gives a key two pieces of one batch want to the first; the second is busy', async () => {
    const held = await tryLockEach(
      db.prisma,
      [
        { keys: ['mkto:1', 'dyn:a'], holder: 'first' },
        { keys: ['dyn:a'], holder: 'second' },
      ],
      60_000,
    );
    expect([...held]).toEqual(['first']);
  });

  it('takes over a lease whose holder let it expire, and releases only its own keys', async () => {
    expect(await tryLock(db.prisma, ['mkto:9'], 'crashed', 60_000)).toBe(true);
    expect([...(await tryLockEach(db.prisma, [{ keys: ['mkto:9'], holder: 'next' }], 60_000))]).toEqual([]);
    // the holder crashed and its lease ran out (moved back on the database's clock, which leases are compared on)
    await db.prisma.$executeRaw`UPDATE record_lock SET "expiresAt" = "expiresAt" - interval '61 seconds' WHERE key = 'mkto:9'`;
    const held = await tryLockEach(db.prisma, [{ keys: ['mkto:9'], holder: 'next' }], 60_000);
    expect([...held]).toEqual(['next']);
    await unlockAll(db.prisma, [{ keys: ['mkto:9'], holder: 'crashed' }]);
    expect(await holders()).toEqual([['mkto:9', 'next']]);
  });
});
