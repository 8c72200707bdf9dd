import { describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { activity } from '../../src/sync/activities.ts';
import { createLinkingStore } from '../../src/sync/linking.ts';
import { createLink, type Link, type LinkTarget } from '../../src/sync/links.ts';
import { personKey } from '../../src/sync/locks.ts';
import { testEngines, useMigratedDatabase } from '../support/database.ts';

describe.each(testEngines())('linking many records at once on %s', (engine) => {
  let db!: Database;
  useMigratedDatabase(engine, {
    opened: (opened) => (db = opened),
    empty: async (db) => {
      await db.prisma.activity.deleteMany();
      await db.prisma.syncLink.deleteMany();
      await db.prisma.recordLock.deleteMany();
    },
  });

  const dynamicsId = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
  const target = (n: number, record = n): LinkTarget => ({
    marketoId: n,
    entity: 'CONTACT',
    dynamicsId: dynamicsId(record),
    snapshot: { title: `T${n}` },
    fieldOrigins: {},
    dynamicsEtag: null,
    dynamicsVersion: null,
  });
  const linked = (link: Link) => [activity({ marketoId: link.marketoId, entity: link.entity, dynamicsId: link.dynamicsId, linkId: link.id, changeEventId: null }, 'LINKED', `linked ${link.marketoId}`)];

  it('makes the links asked for together, each with its own entries', async () => {
    const store = createLinkingStore(db, 30_000);
    const links = await Promise.all([1, 2, 3].map((n) => store.create(target(n), linked)));
    expect(links.map((l) => [l.marketoId, l.dynamicsId, l.snapshot])).toEqual([1, 2, 3].map((n) => [n, dynamicsId(n), { title: `T${n}` }]));
    const log = await db.prisma.activity.findMany({ orderBy: { marketoId: 'asc' } });
    expect(log.map((e) => [e.linkId, e.message])).toEqual(links.map((l) => [l.id, `linked ${l.marketoId}`]));
  });

  it('fails only the link whose record is linked already; the others asked with it are made', async () => {
    await createLink(db.prisma, { ...target(9, 2), marketoVersion: null });
    const store = createLinkingStore(db, 30_000);
    const results = await Promise.allSettled([1, 2, 3].map((n) => store.create(target(n), linked)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((await db.prisma.syncLink.findMany({ orderBy: { marketoId: 'asc' } })).map((l) => l.marketoId)).toEqual([1, 3, 9]);
    expect(await db.prisma.activity.count()).toBe(2);
  });

  it('finds each person its own link, and none for a person not linked', async () => {
    const store = createLinkingStore(db, 30_000);
    const [a] = await Promise.all([store.create(target(1), linked), store.create(target(2), linked)]);
    const [one, none] = await Promise.all([store.findByPerson(1), store.findByPerson(5)]);
    expect(one?.id).toBe(a.id);
    expect(none).toBeNull();
  });

  it('gives a person lease to one holder only, and to the next once it is released', async () => {
    const store = createLinkingStore(db, 30_000);
    const keys = [personKey(7)];
    const [first, second, other] = await Promise.all([store.lock(keys, 'w:a'), store.lock(keys, 'w:b'), store.lock([personKey(8)], 'w:c')]);
    expect([first, second, other]).toEqual([true, false, true]);
    await store.unlock(keys, 'w:a');
    expect(await store.lock(keys, 'w:b')).toBe(true);
  });
});
