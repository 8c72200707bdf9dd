import { describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { activity } from '../../src/sync/activities.ts';
import { journal, pendingEntries, recordDynamicsEcho, settle } from '../../src/sync/journal.ts';
import { commitSyncs, createLink, findLink, type Link, type SyncCommit, type SyncedLinkState } from '../../src/sync/links.ts';
import { testEngines, useMigratedDatabase } from '../support/database.ts';

describe.each(testEngines())('committing many syncs at once on %s', (engine) => {
  let db!: Database;
  useMigratedDatabase(engine, {
    opened: (opened) => (db = opened),
    empty: async (db) => {
      await db.prisma.activity.deleteMany();
      await db.prisma.syncLink.deleteMany();
    },
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
  const commit = (l: Link, linkState: SyncCommit['state'], entries: SyncCommit['entries']): SyncCommit => ({
    linkId: l.id,
    revision: l.revision,
    state: linkState,
    entries,
    journal: { final: [], superseded: [] },
  });
  const updated = (l: Link, title: string) =>
    activity({ marketoId: l.marketoId, entity: l.entity, dynamicsId: l.dynamicsId, linkId: l.id, changeEventId: null }, 'UPDATED_IN_DYNAMICS', `title -> ${title}`, [
      { field: 'title', side: 'DYNAMICS', oldValue: 'Old', newValue: title },
    ]);

  it('advances every link and writes every entry in one statement', async () => {
    const [a, b] = await Promise.all([link(1), link(2)]);
    const saved = await commitSyncs(db, [
      commit(a, state('CEO'), [updated(a, 'CEO')]),
      commit(b, { ...state('CTO'), status: 'FILTERED', dynamicsEtag: null }, [updated(b, 'CTO'), updated(b, 'CTO again')]),
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

  it('commits the links that still exist and leaves out a deleted one, with its entries', async () => {
    const [a, b] = await Promise.all([link(1), link(2)]);
    await db.prisma.syncLink.delete({ where: { id: b.id } });
    const saved = await commitSyncs(db, [commit(a, state('CEO'), [updated(a, 'CEO')]), commit(b, state('CTO'), [updated(b, 'CTO')])]);
    expect([...saved]).toEqual([a.id]);
    expect(await findLink(db.prisma, { marketoId: 1 })).toMatchObject({ snapshot: { title: 'CEO' }, revision: a.revision + 1 });
    expect((await db.prisma.activity.findMany()).map((e) => e.message)).toEqual(['title -> CEO']);
  });

  it('refuses a commit planned from an older revision, writes none of its entries and leaves its journal pending', async () => {
    const a = await link(1);
    const [pending] = await journal(db, [updated(a, 'journaled')]);
    const first = await commitSyncs(db, [commit(a, state('first'), [updated(a, 'first')])]);
    expect([...first]).toEqual([a.id]);
    // a second worker whose lease ran out planned from the same revision: refused
    const stale = await commitSyncs(db, [{ ...commit(a, state('stale'), [updated(a, 'stale')]), journal: { final: [pending!], superseded: [] } }]);
    expect(stale.size).toBe(0);
    expect(await findLink(db.prisma, { marketoId: 1 })).toMatchObject({ snapshot: { title: 'first' }, revision: a.revision + 1 });
    const log = await db.prisma.activity.findMany({ orderBy: { id: 'asc' } });
    expect(log.map((e) => [e.message, e.state])).toEqual([
      ['title -> journaled', 'PENDING'],
      ['title -> first', 'FINAL'],
    ]);
  });

  it('a committed sync makes its journaled entries final and the superseded ones superseded', async () => {
    const a = await link(1);
    const [kept, dropped] = await journal(db, [updated(a, 'kept'), updated(a, 'dropped')]);
    expect(await pendingEntries(db, [a.id])).toEqual(new Map([[a.id, [expect.objectContaining({ id: kept }), expect.objectContaining({ id: dropped })]]]));
    await commitSyncs(db, [{ ...commit(a, state('kept'), []), journal: { final: [kept!], superseded: [dropped!] } }]);
    const log = await db.prisma.activity.findMany({ orderBy: { id: 'asc' } });
    expect(log.map((e) => [e.message, e.state])).toEqual([
      ['title -> kept', 'FINAL'],
      ['title -> dropped', 'SUPERSEDED'],
    ]);
    expect((await pendingEntries(db, [a.id])).size).toBe(0);
  });

  it('a committed sync takes its entries out of doubt and states what happened, even where another worker settled them meanwhile from an earlier read', async () => {
    const a = await link(2);
    const [landed, refused] = await journal(db, [
      { ...updated(a, 'landed'), plannedRevision: a.revision },
      { ...updated(a, 'refused'), plannedRevision: a.revision },
    ]);
    // another worker read the record before the write's answer came and settled without committing
    await settle(db, { final: [refused!], superseded: [landed!] });
    await recordDynamicsEcho(db, a.dynamicsId, { at: new Date().toISOString(), columns: { jobtitle: 'landed' } });
    expect((await pendingEntries(db, [a.id])).get(a.id)?.map((e) => [e.id, e.dynamicsEchoes?.length])).toEqual([
      [landed, 1],
      [refused, 1],
    ]);
    await commitSyncs(db, [{ ...commit(a, state('landed'), []), journal: { final: [landed!], superseded: [refused!] } }]);
    const log = await db.prisma.activity.findMany({ where: { linkId: a.id }, orderBy: { id: 'asc' } });
    expect(log.map((e) => [e.message, e.state, e.plannedRevision, e.dynamicsEchoes])).toEqual([
      ['title -> landed', 'FINAL', null, null],
      ['title -> refused', 'SUPERSEDED', null, null],
    ]);
    expect((await pendingEntries(db, [a.id])).size).toBe(0);
  });
});
