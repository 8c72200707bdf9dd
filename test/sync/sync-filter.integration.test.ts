import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// An admin's own sync filter (SYNC_FILTER_LEAD), applied by the webhooks' syncs like the default
// new_synctomkto: a lead that fails it is not synced, a linked one that starts failing it stops,
// and the person's timeline names the rule.

let n = 0;
const unique = (name: string) => `${name}.${Date.now().toString(36)}${++n}@example.com`;
const RULE = 'leadsourcecode in (7, 8)';

describe.each(testEngines())('a custom sync filter on %s', (engine) => {
  let t: TestService;

  beforeAll(async () => {
    t = await bootService(engine, { SYNC_FILTER_LEAD: RULE });
  });
  afterAll(async () => {
    await t.stop();
  });

  it('does not sync a new lead the rule filters out, and says which rule did', async () => {
    const lead = t.dataverse.create('lead', { lastname: 'Filtered', emailaddress1: unique('filtered'), leadsourcecode: 1 });
    await t.settle();
    const dynamicsId = String(lead.leadid);
    expect(await t.service.db.prisma.syncLink.count({ where: { dynamicsId } })).toBe(0);
    const logged = await t.service.db.prisma.activity.findMany({ where: { dynamicsId, type: 'SYNC_FILTERED' } });
    expect(logged.map((a) => a.message)).toEqual([`filtered out by ${RULE}: the new Dynamics lead is not synced to Marketo`]);
  });

  it('syncs a lead that meets it, and stops when it no longer does', async () => {
    const lead = t.dataverse.create('lead', { lastname: 'Passes', emailaddress1: unique('passes'), leadsourcecode: 8 });
    await t.settle();
    const dynamicsId = String(lead.leadid);
    const link = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId } });
    t.dataverse.update('lead', dynamicsId, { leadsourcecode: 2, jobtitle: 'Not carried' });
    await t.settle();
    const after = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { id: link.id } });
    expect(after.status).toBe('FILTERED');
    expect(t.marketo.getLead(link.marketoId)?.title).toBeUndefined();
    expect((await t.activities(link.marketoId)).map((a) => a.message)).toContain(`filtered out by ${RULE} on the Dynamics lead: updates stop; the Marketo person is kept`);
  });
});
