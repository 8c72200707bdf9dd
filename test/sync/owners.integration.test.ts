import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SweepResult } from '../../src/sweep/sweep.ts';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// The Dynamics owner (a systemuser) on the person, one way: set on link, following an Assign and an
// edit of the user (fanned out to every person the user owns); and the sweep's share: account and
// user changes found through change tracking / modifiedon when no webhook step reported them.

let n = 0;
const unique = (name: string) => `${name}.${Date.now().toString(36)}${++n}@example.com`;
const NEVER = '0 0 0 1 1 *';

describe.each(testEngines())('owner fields on persons on %s', (engine) => {
  let t: TestService;

  beforeAll(async () => {
    t = await bootService(engine, { SYNC_SWEEP_CRON: NEVER, SYNC_FULL_CRON: NEVER });
  });
  afterAll(async () => {
    await t.stop();
  });

  function user(first: string, last: string, extra: Record<string, string> = {}): string {
    const email = unique(first.toLowerCase());
    return t.dataverse.addUser({ domainname: email, firstname: first, lastname: last, internalemailaddress: email, ...extra });
  }

  async function owned(entity: 'lead' | 'contact', ownerId: string) {
    const created = t.dataverse.create(entity, { lastname: 'Owned', emailaddress1: unique(entity), 'ownerid@odata.bind': `/systemusers(${ownerId})` });
    const dynamicsId = String(created[`${entity}id`]);
    await t.settle();
    const link = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId } });
    return { dynamicsId, marketoId: link.marketoId };
  }

  async function sweep(): Promise<SweepResult> {
    const answer = await t.service.sweeper.requestSweep({ trigger: 'TEST' });
    if (answer.status !== 'started') throw new Error(`sweep not started: ${answer.message}`);
    await t.settle();
    return answer.result;
  }

  it('puts the owner’s name, email, phone and title on a new lead’s person', async () => {
    const owner = user('Sam', 'Seller', { address1_telephone1: '+1 206 555 0199', title: 'Account Executive' });
    const { marketoId } = await owned('lead', owner);
    const email = String(t.dataverse.get('systemuser', owner)!.internalemailaddress);
    expect(t.marketo.getLead(marketoId)).toMatchObject({
      dynamicsOwnerName: 'Sam Seller',
      dynamicsOwnerEmail: email,
      dynamicsOwnerPhone: '+1 206 555 0199',
      dynamicsOwnerTitle: 'Account Executive',
    });
  });

  it('reads the owner in the same request as the record, not in a second one', async () => {
    const owner = user('Ola', 'Inline', { title: 'BDR' });
    const before = { ...t.dataverse.stats() };
    const calls = (endpoint: string) => (t.dataverse.stats()[endpoint]?.calls ?? 0) - (before[endpoint]?.calls ?? 0);
    const { marketoId } = await owned('lead', owner);
    expect(t.marketo.getLead(marketoId)).toMatchObject({ dynamicsOwnerName: 'Ola Inline', dynamicsOwnerTitle: 'BDR' });
    expect(calls('GET leads')).toBeGreaterThan(0);
    expect(calls('GET systemusers')).toBe(0);
  });

  it('Sync Person reads the lead it created back with its owner in the create’s own $batch, not in a request of its own', async () => {
    const owner = user('Cora', 'Created', { title: 'SDR' });
    const [marketoId] = t.marketo.seedLeads([{ email: unique('created'), lastName: 'Created' }]);
    const before = { ...t.dataverse.stats() };
    const calls = (endpoint: string) => (t.dataverse.stats()[endpoint]?.calls ?? 0) - (before[endpoint]?.calls ?? 0);
    const answer = await t.marketoWebhook('sync-person', { marketoId, syncAs: 'lead', assignTo: owner }).expect(200);
    expect(answer.body).toMatchObject({ status: 'created' });
    await t.settle();
    expect(t.marketo.getLead(marketoId!)).toMatchObject({ dynamicsOwnerName: 'Cora Created', dynamicsOwnerTitle: 'SDR' });
    expect(calls('POST $batch')).toBeGreaterThan(0);
    expect(calls('GET systemusers')).toBe(0);
  });

  it('follows an Assign (PATCH ownerid) to the new owner', async () => {
    const before = user('Ann', 'First');
    const after = user('Ben', 'Second', { title: 'SDR' });
    const { dynamicsId, marketoId } = await owned('contact', before);
    t.dataverse.update('contact', dynamicsId, { 'ownerid@odata.bind': `/systemusers(${after})` });
    await t.settle();
    expect(t.marketo.getLead(marketoId)).toMatchObject({ dynamicsOwnerName: 'Ben Second', dynamicsOwnerTitle: 'SDR' });
  });

  it('carries a user’s new email and name to every person the user owns, leads and contacts', async () => {
    const owner = user('Cleo', 'Owner');
    const persons = [await owned('lead', owner), await owned('contact', owner), await owned('lead', owner)];
    t.dataverse.update('systemuser', owner, { internalemailaddress: 'cleo.new@contoso.example', lastname: 'Renamed' });
    await t.settle();
    for (const { marketoId } of persons) {
      expect(t.marketo.getLead(marketoId)).toMatchObject({ dynamicsOwnerEmail: 'cleo.new@contoso.example', dynamicsOwnerName: 'Cleo Renamed' });
    }
  });

  it('the sweep finds an account and a user edited with no webhook step, and fans them out', async () => {
    const owner = user('Dee', 'Sweep');
    const accountId = String(t.dataverse.create('account', { name: 'Before Sweep' }).accountid);
    const created = t.dataverse.create('contact', {
      lastname: 'Swept',
      emailaddress1: unique('swept'),
      'parentcustomerid_account@odata.bind': `/accounts(${accountId})`,
      'ownerid@odata.bind': `/systemusers(${owner})`,
    });
    await t.settle();
    const link = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId: String(created.contactid) } });
    await sweep(); // starts the related cursors
    for (const registration of t.dataverse.webhooks()) t.dataverse.unregisterWebhook(registration.id);
    t.dataverse.update('account', accountId, { name: 'After Sweep' });
    t.dataverse.update('systemuser', owner, { title: 'Found by the sweep' });
    await t.settle();
    expect(t.marketo.getLead(link.marketoId)).toMatchObject({ company: 'Before Sweep' });
    const result = await sweep();
    expect(result.counts.relatedChanges).toBeGreaterThanOrEqual(2);
    expect(t.marketo.getLead(link.marketoId)).toMatchObject({ company: 'After Sweep', dynamicsOwnerTitle: 'Found by the sweep' });
  });
});
