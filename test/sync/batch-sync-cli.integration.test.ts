import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { runBatchSyncCommand } from '../../src/sync/batch-sync-cli.ts';
import { migratedDatabase, testEngines, type TestDatabase } from '../support/database.ts';

// `npm run batch-sync`: queues a batch on the service's database for a running service to work
// through, and reports batches; bad usage is refused with the usage text.

describe.each(testEngines())('batch-sync CLI on %s', (engine) => {
  let test: TestDatabase;
  let db: Database;
  beforeAll(async () => {
    ({ test, db } = await migratedDatabase(engine));
  });
  afterAll(async () => {
    await test.drop();
  });

  it('queues a list as contacts with an owner, and shows it by id and in the list', async () => {
    const started = await runBatchSyncCommand(db.prisma, ['start', '1001', '--as', 'contact', '--assign-to', 'sam@contoso.example']);
    expect(started.code).toBe(0);
    const id = /queued ([0-9a-f-]{36})/.exec(started.output)?.[1];
    expect(await db.prisma.batchSync.findUniqueOrThrow({ where: { id: id! } })).toMatchObject({ listId: 1001, dynamicsEntity: 'CONTACT', assignTo: 'sam@contoso.example', status: 'RUNNING', requestedBy: 'cli' });
    const one = await runBatchSyncCommand(db.prisma, ['status', id!]);
    expect(one).toMatchObject({ code: 0, output: expect.stringContaining('list 1001') });
    expect((await runBatchSyncCommand(db.prisma, ['status'])).output).toContain(id!);
  });

  it('refuses a list id that is not a number, an unknown kind, and an unknown batch', async () => {
    expect((await runBatchSyncCommand(db.prisma, ['start', 'trade-show'])).code).toBe(2);
    expect((await runBatchSyncCommand(db.prisma, ['start', '7', '--as', 'account'])).code).toBe(2);
    expect((await runBatchSyncCommand(db.prisma, ['status', '00000000-0000-0000-0000-000000000000'])).code).toBe(1);
    expect((await runBatchSyncCommand(db.prisma, [])).output).toContain('usage');
  });
});
