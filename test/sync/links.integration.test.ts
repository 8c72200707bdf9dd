import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { activity } from '../../src/sync/activities.ts';
import { createLink, findLink, saveSyncedLinks, type Link, type SyncedLinkState } from '../../src/sync/links.ts';
import { migratedDatabase, testEngines, type TestDatabase } from '../support/database.ts';

describe.each(testEngines())('saving many syncs at once on %s', (engine) => {
  let test: TestDatabase;
  let db: Database;

  beforeAll(async () => {
    ({ test, db } = await migratedDatabase(engine));
  });
  afterAll(async () => {
    await test.drop();
  });
  beforeEach(async () => {
    await db.prisma.activity.deleteMany();
    await db.prisma.syncLink.deleteMany();
  });

  const link = (n: number) =>
    createLink(db.prisma, {
      marketoId: n,
      entity: 'LEAD',
      dynamicsId: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
      snapshot: { title: 'Old' },
      fieldOrigins: {},
      dynamicsEtag: null,
      dynamicsVersion: null,
      marketoVersion: null,
    });
  const state = (title: string): SyncedLinkState => ({
    status: 'ACTIVE',
    snapshot: { title, email: null },
    fieldOrigins: { title: { side: 'MARKETO', at: '2026-11-24T10:00:00.000Z' } },
    blocked: { phone: { side: 'DYNAMICS', value: '+1 bad', reason: 'validation', message: 'Invalid phone' } },
    dynamicsEtag: 'W/"42"',
    dynamicsVersion: '42',
    marketoVersion: null,
  });
  const updated = (l: Link, title: string) =>
    activity({ marketoId: l.marketoId, entity: l.entity, dynamicsId: l.dynamicsId, linkId: l.id, changeEventId: null }, 'UPDATED_IN_DYNAMICS', `title -> ${title}`, [
      { field: 'title', side: 'DYNAMICS', oldValue: 'Old', newValue: title },
    ]);

  it('advances every link and writes every entry in one statement', async () => {
    const [a, b] = await Promise.all([link(1), link(2)]);
    const saved = await saveSyncedLinks(db, [
      { linkId: a.id, state: state('CEO'), entries: [updated(a, 'CEO')] },
      { linkId: b.id, state: { ...state('CTO'), status: 'FILTERED', dynamicsEtag: null }, entries: [updated(b, 'CTO'), updated(b, 'CTO again')] },
    ]);
    expect([...saved].sort()).toEqual([a.id, b.id].sort());
    const after = await findLink(db.prisma, { marketoId: 1 });
    expect(after).toMatchObject({ status: 'ACTIVE', snapshot: { title: 'CEO', email: null }, dynamicsEtag: 'W/"42"', blocked: state('x').blocked, fieldOrigins: state('x').fieldOrigins });
    expect(after!.lastSyncedAt!.getTime()).toBeGreaterThan(a.lastSyncedAt!.getTime() - 1);
    expect(await findLink(db.prisma, { marketoId: 2 })).toMatchObject({ status: 'FILTERED', dynamicsEtag: null, snapshot: { title: 'CTO' } });
    const log = await db.prisma.activity.findMany({ orderBy: { id: 'asc' } });
    expect(log.map((e) => [e.linkId, e.type, e.message, e.dynamicsEntity])).toEqual([
      [a.id, 'UPDATED_IN_DYNAMICS', 'title -> CEO', 'LEAD'],
      [b.id, 'UPDATED_IN_DYNAMICS', 'title -> CTO', 'LEAD'],
      [b.id, 'UPDATED_IN_DYNAMICS', 'title -> CTO again', 'LEAD'],
    ]);
    expect(log[0]!.fields).toEqual([{ field: 'title', side: 'DYNAMICS', oldValue: 'Old', newValue: 'CEO' }]);
  });

  it('changes nothing at all when one of the links no longer exists', async () => {
    const [a, b] = await Promise.all([link(1), link(2)]);
    await db.prisma.syncLink.delete({ where: { id: b.id } });
    await expect(
      saveSyncedLinks(db, [
        { linkId: a.id, state: state('CEO'), entries: [updated(a, 'CEO')] },
        { linkId: b.id, state: state('CTO'), entries: [updated(b, 'CTO')] },
      ]),
    ).rejects.toThrow();
    expect(await findLink(db.prisma, { marketoId: 1 })).toMatchObject({ snapshot: { title: 'Old' } });
    expect(await db.prisma.activity.count()).toBe(0);
  });
});
