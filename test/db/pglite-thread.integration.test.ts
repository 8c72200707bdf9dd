import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PGliteThread } from '../../src/db/pglite-thread.ts';

// The embedded database in its own thread must behave as the PGlite client the Prisma adapter was
// written for: a transaction's statements together and nothing else among them, PostgreSQL's
// errors with their codes, the caller's parsers on the caller's side.
describe('PGlite in a thread of its own', () => {
  let db!: PGliteThread;
  beforeAll(async () => {
    db = await PGliteThread.open({ dataDir: 'memory://', postgresqlconf: [] });
    await db.exec('CREATE TABLE item (id int PRIMARY KEY, note text, at timestamptz DEFAULT now())');
  });
  afterAll(async () => {
    await db.close();
  });

  const ids = async () => (await db.query<{ id: number }>('SELECT id FROM item ORDER BY id')).rows.map((r) => r.id);

  it('commits a transaction whose callback returns, and rolls back one that throws', async () => {
    await db.exec('DELETE FROM item');
    await db.transaction(async (tx) => {
      await tx.query('INSERT INTO item (id) VALUES (1)');
      await tx.query('INSERT INTO item (id) VALUES (2)');
    });
    await expect(
      db.transaction(async (tx) => {
        await tx.query('INSERT INTO item (id) VALUES (3)');
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    expect(await ids()).toEqual([1, 2]);
  });

  it('keeps statements sent while a transaction is open out of it: they run after it ends', async () => {
    await db.exec('DELETE FROM item');
    let outside: Promise<unknown> | undefined;
    await db.transaction(async (tx) => {
      await tx.query('INSERT INTO item (id) VALUES (10)');
      // sent mid-transaction by another caller: it must survive the rollback below
      outside = db.query('INSERT INTO item (id) VALUES (11)');
      await tx.query('INSERT INTO item (id) VALUES (12)');
      await tx.rollback();
    });
    await outside;
    expect(await ids()).toEqual([11]);
  });

  it('answers a PostgreSQL error with its code and constraint, and leaves the connection usable', async () => {
    await db.exec('DELETE FROM item');
    await db.query('INSERT INTO item (id) VALUES (20)');
    const error = await db.query('INSERT INTO item (id) VALUES (20)').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: '23505', constraint: 'item_pkey', severity: 'ERROR' });
    const { messages } = await import('@electric-sql/pglite');
    expect(error).toBeInstanceOf(messages.DatabaseError);
    // a failed statement inside a transaction rolls the whole transaction back
    await expect(
      db.transaction(async (tx) => {
        await tx.query('INSERT INTO item (id) VALUES (21)');
        await tx.query('INSERT INTO item (id) VALUES (20)');
      }),
    ).rejects.toMatchObject({ code: '23505' });
    expect(await ids()).toEqual([20]);
  });

  it("runs the caller's parsers on the values of their types, left as text by the thread", async () => {
    await db.exec('DELETE FROM item');
    await db.query("INSERT INTO item (id, note, at) VALUES (30, 'x', '2026-11-30T06:00:00Z'), (31, NULL, NULL)");
    const TIMESTAMPTZ = 1184;
    const r = await db.query<unknown[]>('SELECT id, note, at FROM item ORDER BY id', [], { rowMode: 'array', parsers: { [TIMESTAMPTZ]: (text) => `parsed:${text}` } });
    expect(r.rows).toEqual([
      [30, 'x', 'parsed:2026-11-30 06:00:00+00'],
      [31, null, null],
    ]);
    expect(r.fields.map((f) => f.name)).toEqual(['id', 'note', 'at']);
  });

  it('dumps its data directory, from which another thread opens the same data', async () => {
    await db.exec('DELETE FROM item');
    await db.query('INSERT INTO item (id) VALUES (40)');
    const copy = await PGliteThread.open({ dataDir: 'memory://', postgresqlconf: [], startFrom: await db.dumpDataDir() });
    try {
      expect((await copy.query<{ id: number }>('SELECT id FROM item')).rows).toEqual([{ id: 40 }]);
    } finally {
      await copy.close();
    }
  });

  it('refuses work once closed instead of waiting forever', async () => {
    const other = await PGliteThread.open({ dataDir: 'memory://', postgresqlconf: [] });
    await other.close();
    await expect(other.query('SELECT 1')).rejects.toThrow('the embedded database is closed');
  });
});
