import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SweepResult } from '../../src/sweep/sweep.ts';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// Merges on either side move links, through the real app and both simulators: a Marketo merge
// (Merge Leads, type 32, read by the sweep) moves the loser's link to the winner and keeps the
// Dynamics record and the agreed base; a Dataverse Merge (its webhook step) moves the
// subordinate's link to the master; two linked pairs joined into one is a conflict on record.

let n = 0;
const unique = (name: string) => `${name}.${Date.now().toString(36)}${++n}@example.com`;
const NEVER = '0 0 0 1 1 *';

describe.each(testEngines())('merges on %s', (engine) => {
  let t: TestService;

  beforeAll(async () => {
    t = await bootService(engine, { SYNC_SWEEP_CRON: NEVER, SYNC_FULL_CRON: NEVER });
    await sweep(); // starts the cursors: later sweeps read only what happened since
  });
  afterAll(async () => {
    await t.stop();
  });

  async function sweep(): Promise<SweepResult> {
    const answer = await t.service.sweeper.requestSweep({ trigger: 'TEST' });
    if (answer.status !== 'started') throw new Error(`sweep not started: ${answer.message}`);
    await t.settle();
    return answer.result;
  }

  /** a Dynamics record, created with the webhook steps on: the sync gives it a person and a link */
  async function linked(entity: 'lead' | 'contact', values: Record<string, unknown> = {}) {
    const created = t.dataverse.create(entity, { firstname: 'Lou', lastname: 'Loser', emailaddress1: unique(entity), ...values });
    const dynamicsId = String(created[`${entity}id`]);
    await t.settle();
    const link = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId } });
    return { dynamicsId, marketoId: link.marketoId };
  }

  /** runs `change` with every Dataverse webhook step off: a change the sync has not seen */
  function unseen(change: () => void): void {
    const steps = t.dataverse.webhooks();
    for (const step of steps) t.dataverse.unregisterWebhook(step.id);
    try {
      change();
    } finally {
      for (const step of steps) t.dataverse.registerWebhook(step);
    }
  }

  const linkOf = (where: { marketoId?: number; dynamicsId?: string }) => t.service.db.prisma.syncLink.findFirst({ where });

  it('a Marketo merge moves the loser’s link to the winner, keeps the Dynamics lead and syncs the winner’s values', async () => {
    const loser = await linked('lead', { companyname: 'Acme', jobtitle: 'Analyst' });
    const winner = t.marketo.createLead({ email: unique('winner'), firstName: 'Wyn', lastName: 'Winner', company: 'Acme', title: 'Director' }).id;
    // agreed on both sides before: Acme. Dynamics renames it unseen; the winner still shows Acme.
    unseen(() => t.dataverse.update('lead', loser.dynamicsId, { companyname: 'Acme Renamed' }));
    t.marketo.mergeLeads(winner, [loser.marketoId]);

    const result = await sweep();
    expect(result.counts.marketoMerges).toBe(1);

    const link = await linkOf({ dynamicsId: loser.dynamicsId });
    expect(link).toMatchObject({ marketoId: winner, status: 'ACTIVE' });
    expect(await linkOf({ marketoId: loser.marketoId })).toBeNull();
    const lead = t.dataverse.get('lead', loser.dynamicsId)!;
    // the winner's own edits reach the lead; the lead's unseen rename was an edit against the kept
    // base, so it reaches the person (an empty base would have let Marketo's Acme win on a lead)
    expect(lead).toMatchObject({ lastname: 'Winner', jobtitle: 'Director', companyname: 'Acme Renamed' });
    expect(t.marketo.getLead(winner)).toMatchObject({ company: 'Acme Renamed', title: 'Director' });
    expect(t.dataverse.list('lead').filter((r) => r.emailaddress1 === lead.emailaddress1)).toHaveLength(1);
    const moved = (await t.activities(loser.marketoId)).filter((a) => a.type === 'LINK_MOVED');
    expect(moved[0]?.message).toContain(`merged into person ${winner}`);
  });

  it('moves the link when Marketo also logs the loser as deleted, instead of marking it deleted', async () => {
    t.marketo.setMergeLogsDeleteLead(true);
    try {
      const loser = await linked('contact');
      const winner = t.marketo.createLead({ email: unique('winner'), lastName: 'Kept' }).id;
      t.marketo.mergeLeads(winner, [loser.marketoId]);
      await sweep();
      expect(await linkOf({ dynamicsId: loser.dynamicsId })).toMatchObject({ marketoId: winner, status: 'ACTIVE' });
      expect(t.dataverse.get('contact', loser.dynamicsId)).toMatchObject({ lastname: 'Kept', statecode: 0 });
    } finally {
      t.marketo.setMergeLogsDeleteLead(false);
    }
  });

  it('two linked losers merged into one winner are a conflict with both records, and no link moves', async () => {
    const first = await linked('lead');
    const second = await linked('contact');
    const winner = t.marketo.createLead({ email: unique('winner'), lastName: 'Both' }).id;
    t.marketo.mergeLeads(winner, [first.marketoId, second.marketoId]);
    await sweep();

    expect(await linkOf({ marketoId: winner })).toBeNull();
    for (const pair of [first, second]) {
      expect(await linkOf({ dynamicsId: pair.dynamicsId })).toMatchObject({ marketoId: pair.marketoId, status: 'DELETED_IN_MARKETO' });
      const entries = (await t.activities(pair.marketoId)).filter((a) => a.type === 'MERGE_CONFLICT');
      expect(entries).toHaveLength(1);
      expect(entries[0]!.message).toContain(first.dynamicsId);
      expect(entries[0]!.message).toContain(second.dynamicsId);
    }
    const answer = await t.http
      .post('/graphql')
      .set('authorization', `Bearer ${t.service.graphqlToken}`)
      .send({ query: '{ mergeConflicts(first: 5) { message pairs { marketoId dynamicsEntity dynamicsId link { status } } } }' });
    const conflict = (answer.body.data.mergeConflicts as { pairs: { marketoId: string; dynamicsId: string }[] }[]).find((c) =>
      c.pairs.some((p) => p.dynamicsId === first.dynamicsId),
    );
    expect(conflict?.pairs.map((p) => [Number(p.marketoId), p.dynamicsId]).sort()).toEqual(
      [
        [first.marketoId, first.dynamicsId],
        [second.marketoId, second.dynamicsId],
      ].sort(),
    );
  });

  it('a linked loser merged into a linked winner is a conflict: the winner keeps its own link', async () => {
    const loser = await linked('lead');
    const winner = await linked('lead', { lastname: 'Winner' });
    t.marketo.mergeLeads(winner.marketoId, [loser.marketoId]);
    await sweep();
    expect(await linkOf({ marketoId: winner.marketoId })).toMatchObject({ dynamicsId: winner.dynamicsId, status: 'ACTIVE' });
    expect(await linkOf({ dynamicsId: loser.dynamicsId })).toMatchObject({ marketoId: loser.marketoId, status: 'DELETED_IN_MARKETO' });
    const entries = (await t.activities(winner.marketoId)).filter((a) => a.type === 'MERGE_CONFLICT');
    expect(entries[0]?.message).toContain(loser.dynamicsId);
  });

  it('a Dataverse Merge moves the subordinate’s link to the master, which the person then shows', async () => {
    const subordinate = await linked('contact', { lastname: 'Subordinate', jobtitle: 'Buyer' });
    let masterId = '';
    // a master the sync never linked (created while no step reported it)
    unseen(() => {
      masterId = String(t.dataverse.create('contact', { firstname: 'Mae', lastname: 'Master', emailaddress1: unique('master') }).contactid);
    });
    t.dataverse.merge('contact', masterId, subordinate.dynamicsId);
    await t.settle();

    expect(await linkOf({ marketoId: subordinate.marketoId })).toMatchObject({ dynamicsId: masterId, status: 'ACTIVE' });
    expect(t.dataverse.get('contact', subordinate.dynamicsId)).toMatchObject({ statecode: 1 });
    // the master took the subordinate's job title (it had none); its own names reach the person
    expect(t.marketo.getLead(subordinate.marketoId)).toMatchObject({ firstName: 'Mae', lastName: 'Master', title: 'Buyer' });
    const moved = (await t.activities(subordinate.marketoId)).filter((a) => a.type === 'LINK_MOVED');
    expect(moved[0]?.message).toContain(`merged into contact ${masterId}`);
  });

  it('a Dataverse Merge of two linked contacts is a conflict: each person keeps its link', async () => {
    const subordinate = await linked('contact');
    const master = await linked('contact', { lastname: 'Master' });
    t.dataverse.merge('contact', master.dynamicsId, subordinate.dynamicsId);
    await t.settle();
    expect(await linkOf({ dynamicsId: master.dynamicsId })).toMatchObject({ marketoId: master.marketoId });
    expect(await linkOf({ dynamicsId: subordinate.dynamicsId })).toMatchObject({ marketoId: subordinate.marketoId });
    for (const marketoId of [master.marketoId, subordinate.marketoId]) {
      expect((await t.activities(marketoId)).some((a) => a.type === 'MERGE_CONFLICT')).toBe(true);
    }
  });
});
