import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// DYNAMICS_SUPPRESS_DUPLICATE_DETECTION: with "false" the records the sync creates go through the
// org's duplicate rules (MSCRM.SuppressDuplicateDetection: false), and a create a rule matches is
// refused (0x80040333) and logged like a business rule's refusal; by default (Dataverse's Web API
// default) no rule is applied. Through the real app, Sync Person and the Dataverse simulator's
// default rule "Leads with the same e-mail address".

let n = 0;
const unique = (name: string) => `${name}.${Date.now().toString(36)}${++n}@example.com`;
const NEVER = '0 0 0 1 1 *';

describe.each(testEngines())('duplicate detection on creates on %s', (engine) => {
  for (const [setting, refused] of [['false', true], ['', false]] as const) {
    describe(`DYNAMICS_SUPPRESS_DUPLICATE_DETECTION=${setting || '(unset)'}`, () => {
      let t: TestService;
      beforeAll(async () => {
        t = await bootService(engine, { SYNC_SWEEP_CRON: NEVER, SYNC_FULL_CRON: NEVER, DYNAMICS_SUPPRESS_DUPLICATE_DETECTION: setting });
      });
      afterAll(async () => {
        await t.stop();
      });

      it(refused ? 'refuses a second lead with the same email, with Dynamics’ message on the person' : 'creates a second lead with the same email', async () => {
        // a lead already linked to one person; a second Marketo person has its email (Marketo allows it)
        const email = unique('twice');
        t.dataverse.create('lead', { lastname: 'First', emailaddress1: email });
        await t.settle();
        const second = t.marketo.createLead({ email, lastName: 'Second' }).id;
        const leadsBefore = t.dataverse.count('lead');

        const answer = await t.marketoWebhook('sync-person', { marketoId: second, syncAs: 'lead' });
        await t.settle();

        if (refused) {
          expect(answer.status).toBe(422);
          expect(JSON.stringify(answer.body)).toContain('a duplicate of the current record already exists');
          expect(t.dataverse.count('lead')).toBe(leadsBefore);
          const log = await t.activities(second);
          expect(log.find((a) => a.type === 'VALIDATION_REJECTED')?.message).toContain('a duplicate of the current record already exists');
        } else {
          expect(answer.status).toBe(200);
          expect(answer.body).toMatchObject({ status: 'created' });
          expect(t.dataverse.count('lead')).toBe(leadsBefore + 1);
        }
      });
    });
  }
});
