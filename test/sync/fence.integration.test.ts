import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { createFencing, FencedOutError } from '../../src/sync/fence.ts';
import { createLeaseKeeper } from '../../src/sync/leases.ts';
import { lockHolder, tryLock } from '../../src/sync/locks.ts';
import { testEngines, useMigratedDatabase } from '../support/database.ts';

// The fence of every vendor write (DESIGN "Production is several replicas"): a piece of work proves
// it still holds its record leases right before a write is sent, and a heartbeat that could not
// renew a lease aborts the work that held it. Leases are made to run out by moving their expiry on
// the database's clock, never by waiting.

const silent = pino({ level: 'silent' });

describe.each(testEngines())('fenced writes on %s', (engine) => {
  let db!: Database;
  useMigratedDatabase(engine, {
    opened: (opened) => (db = opened),
    empty: async (db) => {
      await db.prisma.recordLock.deleteMany();
    },
  });

  const expire = (key: string) => db.prisma.$executeRaw`UPDATE record_lock SET "expiresAt" = now() - interval '1 second' WHERE key = ${key}`;
  const secondsLeft = async (key: string) => {
    const [row] = await db.prisma.$queryRaw<{ s: number }[]>`SELECT extract(epoch FROM "expiresAt" - now())::float8 AS s FROM record_lock WHERE key = ${key}`;
    return row?.s ?? null;
  };
  async function held(keys: string[], leaseMs = 2_000) {
    const holder = lockHolder('replica-a');
    expect(await tryLock(db.prisma, keys, holder, leaseMs)).toBe(true);
    return holder;
  }

  it('a holder that still holds every key passes its fence, which extends its leases', async () => {
    const fencing = createFencing({ db, leaseMs: 60_000 });
    const holder = await held(['mkto:1', 'dyn:a']);
    const fence = fencing.hold(holder, ['mkto:1', 'dyn:a']);
    await expect(fence.verify()).resolves.toBeUndefined();
    expect(await secondsLeft('mkto:1')).toBeGreaterThan(30);
    expect(await secondsLeft('dyn:a')).toBeGreaterThan(30);
    expect(fence.signal.aborted).toBe(false);
  });

  it('a lease that ran out fails the fence, even if nobody took it, and aborts the work', async () => {
    const fencing = createFencing({ db, leaseMs: 60_000 });
    const holder = await held(['mkto:2', 'dyn:b']);
    const fence = fencing.hold(holder, ['mkto:2', 'dyn:b']);
    await expire('dyn:b');
    await expect(fence.verify()).rejects.toBeInstanceOf(FencedOutError);
    expect(fence.signal.aborted).toBe(true);
    // the fence revived nothing
    expect(await secondsLeft('mkto:2')).toBeLessThan(3);
  });

  it('a lease another worker took fails the fence of the old holder, not the new one', async () => {
    const fencing = createFencing({ db, leaseMs: 60_000 });
    const old = await held(['mkto:3']);
    const oldFence = fencing.hold(old, ['mkto:3']);
    await expire('mkto:3');
    const next = lockHolder('replica-b');
    expect(await tryLock(db.prisma, ['mkto:3'], next, 2_000)).toBe(true);
    const nextFence = fencing.hold(next, ['mkto:3']);
    const [a, b] = await Promise.allSettled([oldFence.verify(), nextFence.verify()]);
    expect(a.status).toBe('rejected');
    expect(b.status).toBe('fulfilled');
  });

  it('the heartbeat aborts the work whose lease it could not renew, and only that work', async () => {
    const fencing = createFencing({ db, leaseMs: 2_000 });
    const keeper = createLeaseKeeper({ db, owner: 'replica-a', heldEvents: () => [], eventLeaseMs: 2_000, recordLeaseMs: 2_000, fencing, logger: silent });
    const lost = await held(['mkto:4']);
    const kept = await held(['mkto:5']);
    const lostFence = fencing.hold(lost, ['mkto:4']);
    const keptFence = fencing.hold(kept, ['mkto:5']);
    await expire('mkto:4');
    await keeper.beat();
    expect(lostFence.signal.aborted).toBe(true);
    expect(lostFence.signal.reason).toBeInstanceOf(FencedOutError);
    expect(keptFence.signal.aborted).toBe(false);
    await keeper.stop();
  });

  it('work registered after a beat began is not judged by that beat', async () => {
    let clock = 100;
    const fencing = createFencing({ db, leaseMs: 2_000, now: () => clock });
    const holder = await held(['mkto:6']);
    const fence = fencing.hold(holder, ['mkto:6']);
    await expire('mkto:6');
    // a beat that began before the work took its leases cannot have renewed them
    await fencing.afterBeat(50, new Set());
    expect(fence.signal.aborted).toBe(false);
    clock = 200;
    await fencing.afterBeat(150, new Set());
    expect(fence.signal.aborted).toBe(true);
  });

  it('a heartbeat failing for longer than a lease aborts everything this replica holds', async () => {
    let clock = 0;
    const broken = { ...db, prisma: { ...db.prisma, $executeRaw: () => Promise.reject(new Error('connection lost')), $queryRaw: () => Promise.reject(new Error('connection lost')) } } as unknown as Database;
    const fencing = createFencing({ db, leaseMs: 2_000, now: () => clock });
    const keeper = createLeaseKeeper({ db: broken, owner: 'replica-a', heldEvents: () => [], eventLeaseMs: 2_000, recordLeaseMs: 2_000, fencing, logger: silent });
    const fence = fencing.hold(await held(['mkto:7']), ['mkto:7']);
    clock = 1_000;
    await keeper.beat();
    expect(fence.signal.aborted).toBe(false);
    clock = 2_500;
    await keeper.beat();
    expect(fence.signal.aborted).toBe(true);
    await keeper.stop();
  });

  it('the fences of many pieces of work in one call are checked together', async () => {
    const fencing = createFencing({ db, leaseMs: 60_000 });
    const holders = await Promise.all(Array.from({ length: 20 }, (_, i) => held([`mkto:${100 + i}`])));
    const fences = holders.map((h, i) => fencing.hold(h, [`mkto:${100 + i}`]));
    await expire('mkto:105');
    const results = await Promise.allSettled(fences.map((f) => f.verify()));
    expect(results.map((r) => r.status)).toEqual(holders.map((_, i) => (i === 5 ? 'rejected' : 'fulfilled')));
  });
});
