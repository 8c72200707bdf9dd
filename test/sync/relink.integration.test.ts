import { describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { activity } from '../../src/sync/activities.ts';
import { journalCreate } from '../../src/sync/create-intents.ts';
import { createLink, findLink, updateLink, type Link } from '../../src/sync/links.ts';
import { relink, type RelinkTarget } from '../../src/sync/relink.ts';
import { testEngines, useMigratedDatabase } from '../support/database.ts';

// Re-pointing a link is explicit (issue 24): a person already linked is never silently moved to
// another record with an empty base. What was refused is on the person's log, the link untouched.

const X = '00000000-0000-4000-8000-00000000000a';
const Y = '00000000-0000-4000-8000-00000000000b';

describe.each(testEngines())('linking a person who may be linked already, on %s', (engine) => {
  let db!: Database;
  useMigratedDatabase(engine, {
    opened: (opened) => (db = opened),
    empty: async (db) => {
      await db.prisma.activity.deleteMany();
      await db.prisma.createIntent.deleteMany();
      await db.prisma.syncLink.deleteMany();
    },
  });

  const linked = (entity: 'LEAD' | 'CONTACT', dynamicsId: string, snapshot: Record<string, string>) =>
    createLink(db.prisma, { marketoId: 7, entity, dynamicsId, snapshot, fieldOrigins: {}, dynamicsEtag: null, dynamicsVersion: null, marketoVersion: null });
  const target = (over: Partial<RelinkTarget> = {}): RelinkTarget => ({ marketoId: 7, entity: 'LEAD', dynamicsId: Y, snapshot: {}, fieldOrigins: {}, dynamicsEtag: null, dynamicsVersion: null, ...over });
  const subject = { marketoId: 7, entity: 'LEAD' as const, dynamicsId: Y, linkId: null, changeEventId: null };
  const entries = (link: Link) => [activity({ ...subject, linkId: link.id }, 'LINKED', `linked to ${link.dynamicsId}`)];

  it('refuses to move an active link to another record, logs "already linked" and leaves the link as it was', async () => {
    const before = await linked('LEAD', X, { title: 'Agreed' });
    const result = await relink(db.prisma, before, target(), entries, subject);
    expect(result).toMatchObject({ status: 'refused', message: expect.stringContaining('already linked') as unknown });
    const after = await findLink(db.prisma, { marketoId: 7 });
    expect(after).toMatchObject({ dynamicsId: X, snapshot: { title: 'Agreed' }, revision: before.revision });
    const log = await db.prisma.activity.findMany({ where: { marketoId: 7 } });
    expect(log.map((e) => [e.type, e.linkId])).toEqual([['SYNC_FAILED', before.id]]);
    expect(log[0]?.message).toContain(`not re-pointed to lead ${Y}`);
  });

  it('keeps the base of every field the link agreed on when the record is the same; the target only fills the others', async () => {
    const before = await linked('LEAD', X, { title: 'Agreed', city: 'Quito' });
    const result = await relink(db.prisma, before, target({ dynamicsId: X, snapshot: { title: 'Created', phone: '555' } }), entries, subject);
    expect(result.status).toBe('linked');
    expect((await findLink(db.prisma, { marketoId: 7 }))?.snapshot).toEqual({ title: 'Agreed', city: 'Quito', phone: '555' });
  });

  it('re-points a link whose Dynamics record was deleted, from the new record’s base', async () => {
    const before = await updateLink(db.prisma, (await linked('LEAD', X, { title: 'Old' })).id, { status: 'DELETED_IN_DYNAMICS' });
    const result = await relink(db.prisma, before, target({ snapshot: { title: 'Created' } }), entries, subject);
    expect(result.status).toBe('linked');
    expect(await findLink(db.prisma, { marketoId: 7 })).toMatchObject({ dynamicsId: Y, status: 'ACTIVE', snapshot: { title: 'Created' } });
  });

  it('moves a lead’s link to the contact a qualify made of it, keeping what both sides agreed on', async () => {
    const before = await linked('LEAD', X, { title: 'Agreed' });
    const result = await relink(db.prisma, before, target({ entity: 'CONTACT', originatingLeadId: X }), entries, subject);
    expect(result.status).toBe('linked');
    expect(await findLink(db.prisma, { marketoId: 7 })).toMatchObject({ entity: 'CONTACT', dynamicsId: Y, snapshot: { title: 'Agreed' } });
  });

  it('settles the create it links in the same transaction', async () => {
    const intent = await journalCreate(db.prisma, { direction: 'TO_DYNAMICS', marketoId: 7, entity: 'LEAD', dynamicsId: Y, email: null, source: {}, sent: {}, assignTo: null, changeEventId: null });
    await relink(db.prisma, null, target({ snapshot: { title: 'Created' }, intentId: intent.id }), entries, subject);
    expect((await db.prisma.createIntent.findUniqueOrThrow({ where: { id: intent.id } })).state).toBe('DONE');
  });
});
