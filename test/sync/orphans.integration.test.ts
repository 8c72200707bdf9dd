import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { journalCreate } from '../../src/sync/create-intents.ts';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// A record the sync created and never linked (its process died between the create and the link)
// was modified last by the sync user, so the Dataverse webhook and the sweep dropped it as the sync
// user's own echo, forever. A record whose id is an open create's journaled key is not an echo:
// it reaches the engine, which finishes the create and links it.

let n = 0;
const unique = (name: string) => `${name}.${Date.now().toString(36)}${++n}@example.com`;
const NEVER = '0 0 0 1 1 *';

/** Leaves what a Sync Person killed after Dataverse applied its create leaves: the journal and the lead, unlinked. */
async function orphanOfSyncPerson(t: TestService, syncUserId: string) {
  const email = unique('orphan');
  const values = { email, firstName: 'Or', lastName: 'Phan', title: 'Created title' };
  const person = t.marketo.createLead(values);
  const key = randomUUID();
  await journalCreate(t.service.db.prisma, { direction: 'TO_DYNAMICS', marketoId: person.id, entity: 'LEAD', dynamicsId: key, email, source: values, sent: values, assignTo: null, changeEventId: null });
  t.dataverse.create('lead', { leadid: key, emailaddress1: email, firstname: 'Or', lastname: 'Phan', jobtitle: 'Created title' }, syncUserId);
  return { email, marketoId: person.id, dynamicsId: key };
}

describe.each(testEngines())('records the sync created and never linked, on %s', (engine) => {
  describe('through the Dataverse webhook', () => {
    let t: TestService;
    let syncUserId: string;
    beforeAll(async () => {
      t = await bootService(engine);
      syncUserId = t.service.sandbox!.dataverse.syncUserId;
    });
    afterAll(async () => {
      await t.stop();
    });

    it('a create by the sync user whose id is an open create’s key is not dropped as an echo: it is linked to its person', async () => {
      const orphan = await orphanOfSyncPerson(t, syncUserId);
      await t.settle();
      const link = await t.service.db.prisma.syncLink.findUniqueOrThrow({ where: { marketoId: orphan.marketoId } });
      expect(link.dynamicsId).toBe(orphan.dynamicsId);
      expect(t.dataverse.list('lead').filter((r) => r.emailaddress1 === orphan.email)).toHaveLength(1);
      expect((link.snapshot as Record<string, unknown>).title).toBe('Created title');
      expect((await t.service.db.prisma.createIntent.findFirstOrThrow({ where: { dynamicsId: orphan.dynamicsId } })).state).toBe('DONE');
    });

    it('a create by the sync user with no open create is still dropped as its echo', async () => {
      const email = unique('echo');
      const lead = t.dataverse.create('lead', { emailaddress1: email, firstname: 'Ec', lastname: 'Ho' }, syncUserId);
      await t.settle();
      expect(await t.service.db.prisma.changeEvent.count({ where: { dynamicsId: String(lead.leadid) } })).toBe(0);
    });
  });

  describe('through the sweep', () => {
    let t: TestService;
    let syncUserId: string;
    beforeAll(async () => {
      t = await bootService(engine, { SYNC_SWEEP_CRON: NEVER, SYNC_FULL_CRON: NEVER });
      for (const registration of t.dataverse.webhooks()) t.dataverse.unregisterWebhook(registration.id);
      syncUserId = t.service.sandbox!.dataverse.syncUserId;
      await sweep();
    });
    afterAll(async () => {
      await t?.stop();
    });

    async function sweep() {
      const answer = await t.service.sweeper.requestSweep({ trigger: 'TEST' });
      if (answer.status !== 'started') throw new Error(`sweep not started: ${answer.message}`);
      await t.settle();
      return answer.result;
    }

    it('a row the sync user modified last whose id is an open create’s key is enqueued and linked; another of its rows is dropped', async () => {
      const orphan = await orphanOfSyncPerson(t, syncUserId);
      const echo = t.dataverse.create('lead', { emailaddress1: unique('echo'), firstname: 'Ec', lastname: 'Ho' }, syncUserId);
      const result = await sweep();
      expect(result.counts.echoesDropped).toBeGreaterThanOrEqual(1);
      expect(await t.service.db.prisma.changeEvent.count({ where: { dynamicsId: String(echo.leadid) } })).toBe(0);
      const link = await t.service.db.prisma.syncLink.findUniqueOrThrow({ where: { marketoId: orphan.marketoId } });
      expect(link.dynamicsId).toBe(orphan.dynamicsId);
      expect(t.dataverse.list('lead').filter((r) => r.emailaddress1 === orphan.email)).toHaveLength(1);
    });
  });
});
