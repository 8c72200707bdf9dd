import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { claim, complete, completeMany, enqueue, fail, inboxStats, release, replay, type NewChangeEvent } from '../../src/inbox/inbox.ts';
import { createInboxIntake } from '../../src/inbox/intake.ts';
import { migratedDatabase, testEngines, useMigratedDatabase, type TestDatabase } from '../support/database.ts';

const event = (n: number, extra: Partial<NewChangeEvent> = {}): NewChangeEvent => ({
  source: 'MARKETO',
  origin: 'WEBHOOK',
  operation: 'UPDATE',
  marketoId: n,
  payload: { n },
  dedupeKey: `test:${n}`,
  ...extra,
});

const options = { owner: 'worker-a', batchSize: 10, leaseMs: 60_000, maxAttempts: 3 };

describe.each(testEngines())('the inbox on %s', (engine) => {
  let db!: Database;
  useMigratedDatabase(engine, {
    opened: (opened) => (db = opened),
    empty: async (db) => {
      await db.prisma.changeEvent.deleteMany();
    },
  });

  /**
   * Lets an event's wait (backoff or lease) run out without waiting for it: the inbox compares
   * nextAttemptAt with the database's clock, so moving nextAttemptAt back by the wait is the same
   * as that much time passing, and no assertion depends on how fast this machine runs.
   */
  const elapse = async (id: string, ms: number) => {
    await db.prisma.$executeRaw`UPDATE change_event SET "nextAttemptAt" = "nextAttemptAt" - make_interval(secs => ${ms / 1000}::float8) WHERE id = ${id}::uuid`;
  };

  it('answers a redelivered event as a duplicate of the first, storing it once', async () => {
    const first = await enqueue(db.prisma, event(1));
    const again = await enqueue(db.prisma, event(1, { payload: { different: true } }));
    expect(first.status).toBe('queued');
    expect(again).toEqual({ status: 'duplicate', id: first.id, pending: true });
    expect(await db.prisma.changeEvent.count()).toBe(1);
    const row = await db.prisma.changeEvent.findUniqueOrThrow({ where: { id: first.id } });
    expect(row.payload).toEqual({ n: 1 });
  });

  it('stores webhooks that arrive together in one statement, in arrival order, each answered as queued or as the duplicate it is', async () => {
    const known = await enqueue(db.prisma, event(1));
    await claim(db.prisma, options); // no longer waiting: a repeat of it may carry a newer change
    const statements: string[] = [];
    const counted: Database = { ...db, query: (text, values) => (statements.push(text), db.query(text, values)) };
    const intake = createInboxIntake(counted);
    const results = await Promise.all([event(2), event(1), event(3), event(2, { payload: { again: true } }), event(4)].map((e) => intake.enqueue(e)));
    expect(results.map((r) => r.status)).toEqual(['queued', 'duplicate', 'queued', 'duplicate', 'queued']);
    expect(results[1]).toEqual({ status: 'duplicate', id: known.id, pending: false });
    expect(results[3]).toEqual({ status: 'duplicate', id: results[0]!.id, pending: true });
    // one INSERT for the five, one SELECT for the keys already known
    expect(statements).toHaveLength(2);
    const rows = await db.prisma.changeEvent.findMany({ where: { marketoId: { in: [2, 3, 4] } }, orderBy: { receivedAt: 'asc' } });
    expect(rows.map((r) => [r.marketoId, r.payload])).toEqual([
      [2, { n: 2 }],
      [3, { n: 3 }],
      [4, { n: 4 }],
    ]);
    expect(rows.map((r) => r.id)).toEqual([results[0]!.id, results[2]!.id, results[4]!.id]);
    // claimed oldest first, as single enqueues are
    expect((await claim(db.prisma, { ...options, owner: 'worker-b' })).map((e) => e.marketoId)).toEqual([2, 3, 4]);
  });

  it('stores the others when the database refuses one event of webhooks that arrived together, and fails only that one', async () => {
    const intake = createInboxIntake(db);
    const [good, bad, alsoGood] = await Promise.allSettled([
      intake.enqueue(event(7)),
      intake.enqueue(event(8, { dynamicsEntity: 'LEAD', dynamicsId: 'not-a-uuid' })),
      intake.enqueue(event(9)),
    ]);
    expect(good.status).toBe('fulfilled');
    expect(alsoGood.status).toBe('fulfilled');
    expect(bad.status).toBe('rejected');
    expect((await db.prisma.changeEvent.findMany({ orderBy: { receivedAt: 'asc' } })).map((e) => e.marketoId)).toEqual([7, 9]);
  });

  it('hands each claimable event to one claimer, oldest first, and counts the attempt', async () => {
    for (const n of [1, 2, 3]) await enqueue(db.prisma, event(n));
    const batch = await claim(db.prisma, { ...options, batchSize: 2 });
    expect(batch.map((e) => e.marketoId)).toEqual([1, 2]);
    expect(batch.every((e) => e.attempts === 1)).toBe(true);
    const rest = await claim(db.prisma, { ...options, owner: 'worker-b' });
    expect(rest.map((e) => e.marketoId)).toEqual([3]);
    expect(await claim(db.prisma, options)).toEqual([]);
  });

  it('completes an event only for the worker that holds its lease', async () => {
    await enqueue(db.prisma, event(1));
    const [claimed] = await claim(db.prisma, options);
    expect(await complete(db.prisma, claimed!.id, 'someone-else')).toBe(false);
    expect(await complete(db.prisma, claimed!.id, options.owner)).toBe(true);
    const row = await db.prisma.changeEvent.findUniqueOrThrow({ where: { id: claimed!.id } });
    expect(row.status).toBe('DONE');
    expect(row.completedAt).not.toBeNull();
  });

  it('completes a whole batch at once, only the events this worker still holds', async () => {
    for (const n of [1, 2, 3]) await enqueue(db.prisma, event(n));
    const mine = await claim(db.prisma, { ...options, batchSize: 2 });
    const theirs = await claim(db.prisma, { ...options, owner: 'worker-b' });
    const count = await completeMany(db.prisma, [...mine, ...theirs].map((e) => ({ id: e.id, linkId: null })), options.owner);
    expect(count).toBe(2);
    expect(await db.prisma.changeEvent.count({ where: { status: 'DONE' } })).toBe(2);
    expect(await db.prisma.changeEvent.findUniqueOrThrow({ where: { id: theirs[0]!.id } })).toMatchObject({ status: 'PROCESSING', leaseOwner: 'worker-b' });
  });

  it('retries a failed event after its backoff, honouring the vendor Retry-After', async () => {
    await enqueue(db.prisma, event(1));
    const [claimed] = await claim(db.prisma, options);
    const result = await fail(db.prisma, claimed!, options.owner, 'Marketo 606: Max rate limit exceeded', {
      maxAttempts: 3,
      retryAfterMs: 300,
      policy: { baseDelayMs: 100, maxDelayMs: 1_000 },
      random: () => 0,
    });
    expect(result).toEqual({ status: 'FAILED', retryInMs: 300 });
    const waiting = await db.prisma.changeEvent.findUniqueOrThrow({ where: { id: claimed!.id } });
    // due the Retry-After after the failure (one statement sets both from the same now(); updatedAt
    // keeps milliseconds, nextAttemptAt microseconds, hence the one-millisecond rounding)
    expect(Math.abs(waiting.nextAttemptAt.getTime() - waiting.updatedAt.getTime() - 300)).toBeLessThanOrEqual(1);
    expect(waiting.status).toBe('FAILED');
    await elapse(claimed!.id, 300);
    const [again] = await claim(db.prisma, options);
    expect(again?.attempts).toBe(2);
    const row = await db.prisma.changeEvent.findUniqueOrThrow({ where: { id: claimed!.id } });
    expect(row.lastError).toBe('Marketo 606: Max rate limit exceeded');
  });

  it('dead-letters an event after the last attempt, with the reason, and an operator can replay it', async () => {
    await enqueue(db.prisma, event(1));
    let claimed = (await claim(db.prisma, options))[0]!;
    const fast = { maxAttempts: 2, policy: { baseDelayMs: 1, maxDelayMs: 1 } };
    expect((await fail(db.prisma, claimed, options.owner, 'timeout', fast)).status).toBe('FAILED');
    await elapse(claimed.id, fast.policy.maxDelayMs);
    claimed = (await claim(db.prisma, options))[0]!;
    expect(await fail(db.prisma, claimed, options.owner, 'Dynamics 503 twice', fast)).toEqual({ status: 'DEAD' });
    const dead = await db.prisma.changeEvent.findUniqueOrThrow({ where: { id: claimed.id } });
    expect(dead).toMatchObject({ status: 'DEAD', attempts: 2, lastError: 'Dynamics 503 twice' });
    expect((await inboxStats(db.prisma)).dead).toBe(1);

    expect(await replay(db.prisma, claimed.id)).toBe(true);
    const [replayed] = await claim(db.prisma, options);
    expect(replayed).toMatchObject({ id: claimed.id, attempts: 1 });
    expect(await replay(db.prisma, claimed.id)).toBe(false);
  });

  it('dead-letters at once a failure that no retry can help', async () => {
    await enqueue(db.prisma, event(1));
    const [claimed] = await claim(db.prisma, options);
    expect(await fail(db.prisma, claimed!, options.owner, 'bug', { maxAttempts: 5, permanent: true })).toEqual({ status: 'DEAD' });
  });

  it("makes a crashed claimer's events claimable again once the lease expires", async () => {
    await enqueue(db.prisma, event(1));
    const [first] = await claim(db.prisma, { ...options, owner: 'crashed', leaseMs: 300_000 });
    // 10 s of the lease left: far more than this machine needs between two statements, however busy
    await elapse(first!.id, 290_000);
    expect(await claim(db.prisma, { ...options, owner: 'survivor' })).toEqual([]);
    await elapse(first!.id, 10_000);
    const [again] = await claim(db.prisma, { ...options, owner: 'survivor' });
    expect(again).toMatchObject({ id: first!.id, attempts: 2 });
    // the crashed worker, should it wake up, no longer owns the event
    expect(await complete(db.prisma, first!.id, 'crashed')).toBe(false);
    expect(await complete(db.prisma, first!.id, 'survivor')).toBe(true);
  });

  it('dead-letters an event whose worker keeps dying on it', async () => {
    await enqueue(db.prisma, event(1));
    for (let i = 0; i < 2; i++) {
      const [claimed] = await claim(db.prisma, { ...options, maxAttempts: 2, leaseMs: 50 });
      expect(claimed).toBeDefined();
      // the worker dies: its lease runs out
      await elapse(claimed!.id, 50);
    }
    expect(await claim(db.prisma, { ...options, maxAttempts: 2 })).toEqual([]);
    const row = await db.prisma.changeEvent.findFirstOrThrow();
    expect(row.status).toBe('DEAD');
    expect(row.lastError).toContain('lease expired after attempt 2 of 2');
  });

  it('gives claimed events back on shutdown without counting the attempt', async () => {
    await enqueue(db.prisma, event(1));
    const [claimed] = await claim(db.prisma, options);
    expect(await release(db.prisma, [claimed!.id], options.owner)).toBe(1);
    const [again] = await claim(db.prisma, options);
    expect(again).toMatchObject({ id: claimed!.id, attempts: 1 });
  });

  it('reports backlog per status and the age of the oldest waiting event', async () => {
    await enqueue(db.prisma, event(1));
    const old = await enqueue(db.prisma, event(2));
    await enqueue(db.prisma, event(3));
    // the second waiting one arrived half a minute ago (on the database's clock, which ages are measured on)
    await db.prisma.$executeRaw`UPDATE change_event SET "receivedAt" = "receivedAt" - interval '30 seconds' WHERE id = ${old.id}::uuid`;
    await claim(db.prisma, { ...options, batchSize: 1 });
    const stats = await inboxStats(db.prisma);
    expect(stats).toMatchObject({ pending: 2, processing: 1, failed: 0, dead: 0 });
    // the age of the oldest waiting, not of the newest (which arrived a moment ago)
    expect(stats.oldestPendingAgeMs).toBeGreaterThanOrEqual(30_000);
  });
});

describe.runIf(testEngines().includes('postgres'))('the inbox under concurrency on postgres', () => {
  let test: TestDatabase;
  let replicas: Database[];

  beforeAll(async () => {
    ({ test } = await migratedDatabase('postgres'));
    replicas = [await test.open(), await test.open()];
  });
  afterAll(async () => {
    await test.drop();
  });

  it('never gives the same event to two concurrent claimers', async () => {
    const total = 600;
    const [a, b] = replicas as [Database, Database];
    for (let i = 0; i < total; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, k) => enqueue(a.prisma, event(i + k, { dedupeKey: `conc:${i + k}` }))));
    }
    const seen = new Map<string, string>();
    const duplicates: string[] = [];
    const worker = async (db: Database, owner: string) => {
      for (;;) {
        const batch = await claim(db.prisma, { owner, batchSize: 7, leaseMs: 60_000, maxAttempts: 3 });
        if (batch.length === 0) return;
        for (const e of batch) {
          if (seen.has(e.id)) duplicates.push(e.id);
          seen.set(e.id, owner);
          expect(await complete(db.prisma, e.id, owner)).toBe(true);
        }
      }
    };
    await Promise.all([worker(a, 'a1'), worker(a, 'a2'), worker(b, 'b1'), worker(b, 'b2')]);
    expect(duplicates).toEqual([]);
    expect(seen.size).toBe(total);
    const owners = new Set(seen.values());
    expect(owners.size).toBeGreaterThan(1);
    expect(await a.prisma.changeEvent.count({ where: { status: 'DONE' } })).toBe(total);
  });
});
