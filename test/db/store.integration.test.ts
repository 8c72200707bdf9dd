import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { migrate, migrationStatus } from '../../src/db/migrate.ts';
import { projectPaths } from '../../src/paths.ts';
import { freshDatabase, testEngines, type TestDatabase } from '../support/database.ts';

const lead = '00000000-0000-4000-8000-000000000001';
const contact = '00000000-0000-4000-8000-000000000002';

describe.each(testEngines())('the store on %s', (engine) => {
  let test: TestDatabase;
  let db: Database;

  beforeAll(async () => {
    test = await freshDatabase(engine);
    db = await test.open();
  });
  afterAll(async () => {
    await test.drop();
  });

  it('creates the schema on an empty database, and migrating again changes nothing', async () => {
    const paths = projectPaths();
    const before = await migrationStatus(db, paths.migrationsDir);
    expect(before.applied).toEqual([]);
    const first = await migrate(db, paths);
    expect(first.applied).toEqual(before.available);
    const second = await migrate(db, paths);
    expect(second.applied).toEqual([]);
    const after = await migrationStatus(db, paths.migrationsDir);
    expect(after).toMatchObject({ current: true, pending: [] });
    expect(await db.prisma.fieldMapping.count()).toBe(45);
  });

  it('seeds the default field mapping of the spec for leads and contacts', async () => {
    const mappings = await db.prisma.fieldMapping.findMany({ orderBy: [{ entity: 'asc' }, { canonicalField: 'asc' }] });
    const leadFields = mappings.filter((m) => m.entity === 'LEAD').map((m) => `${m.marketoField}=${m.dynamicsAttribute}`);
    const contactFields = mappings.filter((m) => m.entity === 'CONTACT').map((m) => m.dynamicsAttribute);
    expect(leadFields).toContain('email=emailaddress1');
    expect(leadFields).toContain('company=companyname');
    expect(leadFields).toContain('unsubscribed=donotbulkemail');
    expect(contactFields).not.toContain('companyname');
    const own = mappings.filter((m) => !m.dynamicsAttribute.includes('.'));
    expect(own.filter((m) => m.entity === 'CONTACT')).toHaveLength(12);
    expect(own.every((m) => m.enabled && m.direction === 'BOTH' && m.collisionWinner === null)).toBe(true);
    // a contact's company is its parent account, anyone's owner a systemuser: one way, to Marketo
    const related = mappings.filter((m) => m.dynamicsAttribute.includes('.'));
    expect(contactFields).toContain('account.name');
    expect(leadFields).toContain('dynamicsOwnerEmail=owner.internalemailaddress');
    expect(leadFields.some((f) => f.includes('account.'))).toBe(false);
    expect(related.every((m) => m.enabled && m.direction === 'DYNAMICS_TO_MARKETO')).toBe(true);
  });

  it('links a Marketo person to at most one Dynamics record', async () => {
    await db.prisma.syncLink.create({ data: { marketoId: 1001, dynamicsEntity: 'LEAD', dynamicsId: lead } });
    await expect(
      db.prisma.syncLink.create({ data: { marketoId: 1001, dynamicsEntity: 'CONTACT', dynamicsId: contact } }),
    ).rejects.toMatchObject({ code: 'P2002' });
  });

  it('links a Dynamics record to at most one Marketo person', async () => {
    await expect(
      db.prisma.syncLink.create({ data: { marketoId: 1002, dynamicsEntity: 'LEAD', dynamicsId: lead } }),
    ).rejects.toMatchObject({ code: 'P2002' });
    // the same GUID under the other entity is a different record
    await db.prisma.syncLink.create({ data: { marketoId: 1002, dynamicsEntity: 'CONTACT', dynamicsId: lead } });
  });

  it('refuses a second inbox event with the same dedupe key', async () => {
    const event = { source: 'MARKETO', origin: 'WEBHOOK', operation: 'UPDATE', marketoId: 1001, dedupeKey: 'mkto:1001:abc' } as const;
    await db.prisma.changeEvent.create({ data: event });
    await expect(db.prisma.changeEvent.create({ data: event })).rejects.toMatchObject({ code: 'P2002' });
  });

  it('keeps one field mapping per entity and canonical field, and per Dynamics column', async () => {
    await expect(
      db.prisma.fieldMapping.create({
        data: { entity: 'LEAD', canonicalField: 'email', marketoField: 'email2', dynamicsAttribute: 'emailaddress2' },
      }),
    ).rejects.toMatchObject({ code: 'P2002' });
    await expect(
      db.prisma.fieldMapping.create({
        data: { entity: 'LEAD', canonicalField: 'workEmail', marketoField: 'workEmail', dynamicsAttribute: 'emailaddress1' },
      }),
    ).rejects.toMatchObject({ code: 'P2002' });
  });

  it('serves the inbox claim and the per-person activity log from indexes', async () => {
    const indexes = await db.prisma.$queryRaw<{ indexname: string }[]>`
      SELECT indexname FROM pg_indexes WHERE tablename IN ('change_event', 'activity')`;
    const names = indexes.map((i) => i.indexname);
    expect(names).toEqual(
      expect.arrayContaining(['change_event_claim_idx', 'change_event_done_at_idx', 'activity_marketoId_id_idx', 'activity_dynamicsId_id_idx']),
    );
  });
});

describe.runIf(testEngines().includes('postgres'))('migrations on postgres', () => {
  it('apply once when two replicas start at the same moment', async () => {
    const test = await freshDatabase('postgres');
    try {
      const [a, b] = [await test.open(), await test.open()];
      const results = await Promise.all([migrate(a, projectPaths()), migrate(b, projectPaths())]);
      const applied = results.map((r) => r.applied.length).sort();
      expect(applied[0]).toBe(0);
      expect(applied[1]).toBeGreaterThan(0);
      expect(await a.prisma.fieldMapping.count()).toBe(45);
    } finally {
      await test.drop();
    }
  });
});
