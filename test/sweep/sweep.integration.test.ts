import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SweepResult } from '../../src/sweep/sweep.ts';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// The reconciliation sweep through the real service, both simulators as peers, with the Dataverse
// webhook step unregistered and no Marketo webhook called: whatever reaches the other side got
// there through the sweep. Schedules are pushed out of the way (once a year) and sweeps requested.

let n = 0;
const unique = (name: string) => `${name}.${Date.now().toString(36)}${++n}@example.com`;
const NEVER = '0 0 0 1 1 *';

async function sweep(t: TestService, options: { full?: boolean } = {}): Promise<SweepResult> {
  const answer = await t.service.sweeper.requestSweep({ trigger: 'TEST', ...options });
  if (answer.status !== 'started') throw new Error(`sweep not started: ${answer.message}`);
  await t.settle();
  if (answer.result.status === 'FAILED') throw new Error(`sweep failed: ${answer.result.error} ${answer.result.notes.join('; ')}`);
  return answer.result;
}

describe.each(testEngines())('the reconciliation sweep on %s', (engine) => {
  let t: TestService;

  beforeAll(async () => {
    t = await bootService(engine, { SYNC_SWEEP_CRON: NEVER, SYNC_FULL_CRON: NEVER });
    for (const registration of t.dataverse.webhooks()) t.dataverse.unregisterWebhook(registration.id);
    const first = await sweep(t);
    expect(first.notes.join('\n')).toMatch(/first sweep/);
  });
  afterAll(async () => {
    await t?.stop();
  });

  /** A Dynamics record created by a user and linked by a sweep. */
  async function linkedPair(entity: 'lead' | 'contact', values: Record<string, unknown> = {}) {
    const email = unique(entity);
    const created = t.dataverse.create(entity, { firstname: 'Ada', lastname: 'Lovelace', emailaddress1: email, jobtitle: 'CTO', ...values });
    const dynamicsId = String(created[`${entity}id`]);
    await sweep(t);
    const link = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId } });
    return { dynamicsId, marketoId: link.marketoId, email };
  }

  it('changes made with webhooks switched off reach the other side after one sweep', async () => {
    const { dynamicsId, marketoId, email } = await linkedPair('lead', { companyname: 'Analytical Engines' });
    expect(t.marketo.getLead(marketoId)).toMatchObject({ email, firstName: 'Ada', title: 'CTO', company: 'Analytical Engines' });

    t.dataverse.update('lead', dynamicsId, { jobtitle: 'Chief Scientist' });
    const fromDynamics = await sweep(t);
    expect(fromDynamics.counts.dynamicsChanges).toBe(1);
    expect(t.marketo.getLead(marketoId)?.title).toBe('Chief Scientist');

    t.marketo.updateLead(marketoId, { city: 'London', phone: '555-0100' });
    const fromMarketo = await sweep(t);
    expect(fromMarketo.counts.marketoChanges).toBe(1);
    expect(t.dataverse.get('lead', dynamicsId)).toMatchObject({ address1_city: 'London', telephone1: '555-0100' });
    const run = await t.service.db.prisma.syncRun.findUniqueOrThrow({ where: { id: fromMarketo.runId } });
    expect(run).toMatchObject({ status: 'SUCCEEDED', trigger: 'TEST' });
    expect(run.finishedAt).not.toBeNull();
    expect(run.counts).toMatchObject({ marketoChanges: 1, eventsEnqueued: 1, updated: 1 });
  });

  it('a Dataverse webhook lost in flight is caught by the next sweep', async () => {
    const { dynamicsId, marketoId } = await linkedPair('contact');
    const lost = t.dataverse.registerWebhook({
      url: `${t.service.url}/webhooks/nowhere`,
      authType: 'WebhookKey',
      authValue: t.service.webhookSecrets.dynamics,
      entities: ['contact'],
      messages: ['Update'],
    });
    t.dataverse.update('contact', dynamicsId, { jobtitle: 'Lost in flight' });
    await t.dataverse.flushWebhooks();
    t.dataverse.unregisterWebhook(lost.id);
    await t.settle();
    expect(t.marketo.getLead(marketoId)?.title).toBe('CTO');
    await sweep(t);
    expect(t.marketo.getLead(marketoId)?.title).toBe('Lost in flight');
  });

  it('an expired Dataverse delta token falls back to modifiedon, says so, and recovers', async () => {
    const { dynamicsId, marketoId } = await linkedPair('contact');
    t.dataverse.expireDeltaTokens('contact');
    t.dataverse.update('contact', dynamicsId, { address1_city: 'Paris' });
    const fallback = await sweep(t);
    expect(fallback.notes.join('\n')).toMatch(/contact: the change-tracking token expired; fell back to modifiedon/);
    expect(fallback.counts.linksReconciled).toBeGreaterThan(0);
    expect(t.marketo.getLead(marketoId)?.city).toBe('Paris');

    t.dataverse.update('contact', dynamicsId, { address1_city: 'Lyon' });
    const recovered = await sweep(t);
    expect(recovered.notes.join('\n')).not.toMatch(/expired|fell back/);
    expect(recovered.counts.dynamicsChanges).toBe(1);
    expect(t.marketo.getLead(marketoId)?.city).toBe('Lyon');
  });

  it('change tracking switched off on a table: modifiedon discovery, and the run says so', async () => {
    const { dynamicsId, marketoId } = await linkedPair('lead');
    t.dataverse.setChangeTracking('lead', false);
    try {
      t.dataverse.update('lead', dynamicsId, { jobtitle: 'Untracked' });
      const result = await sweep(t);
      expect(result.notes.join('\n')).toMatch(/lead: change tracking is disabled/);
      expect(t.marketo.getLead(marketoId)?.title).toBe('Untracked');
    } finally {
      t.dataverse.setChangeTracking('lead', true);
    }
    t.dataverse.update('lead', dynamicsId, { jobtitle: 'Tracked again' });
    await sweep(t);
    expect(t.marketo.getLead(marketoId)?.title).toBe('Tracked again');
    const cursor = await t.service.db.prisma.syncCursor.findUniqueOrThrow({ where: { system_scope: { system: 'DYNAMICS', scope: 'lead' } } });
    expect(cursor.token).toContain('$deltatoken=');
  });

  it('a Dynamics delete keeps the person, marks the link and sets Microsoft is Deleted', async () => {
    const { dynamicsId, marketoId } = await linkedPair('lead');
    t.dataverse.delete('lead', dynamicsId);
    const result = await sweep(t);
    expect(result.counts.dynamicsDeletes).toBe(1);
    expect(t.marketo.getLead(marketoId)).toMatchObject({ microsoftIsDeleted: true });
    expect(await t.service.db.prisma.syncLink.findFirst({ where: { marketoId } })).toMatchObject({ status: 'DELETED_IN_DYNAMICS' });
    expect((await t.activities(marketoId)).map((a) => a.type)).toContain('DELETED_IN_DYNAMICS');
  });

  it('a Marketo delete never deletes CRM data: the link is marked', async () => {
    const { dynamicsId, marketoId } = await linkedPair('contact');
    t.marketo.deleteLead(marketoId);
    const result = await sweep(t);
    expect(result.counts.marketoDeletes).toBe(1);
    expect(t.dataverse.get('contact', dynamicsId)).not.toBeNull();
    expect(await t.service.db.prisma.syncLink.findFirst({ where: { dynamicsId } })).toMatchObject({ status: 'DELETED_IN_MARKETO' });
  });

  it('sync filter: Yes -> No stops updates, No -> Yes syncs again at once', async () => {
    const { dynamicsId, marketoId } = await linkedPair('contact');
    t.dataverse.update('contact', dynamicsId, { new_synctomkto: false, jobtitle: 'Hidden' });
    await sweep(t);
    expect(t.marketo.getLead(marketoId)?.title).toBe('CTO');
    expect(await t.service.db.prisma.syncLink.findFirst({ where: { dynamicsId } })).toMatchObject({ status: 'FILTERED' });
    t.dataverse.update('contact', dynamicsId, { new_synctomkto: true });
    await sweep(t);
    expect(t.marketo.getLead(marketoId)?.title).toBe('Hidden');
    expect(await t.service.db.prisma.syncLink.findFirst({ where: { dynamicsId } })).toMatchObject({ status: 'ACTIVE' });
  });

  it('re-running a sweep changes nothing the second time (the sync\'s own writes are echoes)', async () => {
    const { dynamicsId, marketoId } = await linkedPair('lead');
    t.dataverse.update('lead', dynamicsId, { jobtitle: 'Once' });
    t.marketo.updateLead(marketoId, { city: 'Berlin' });
    await sweep(t);
    const activities = await t.service.db.prisma.activity.count();
    const again = await sweep(t);
    expect(again.counts.eventsEnqueued).toBe(0);
    expect(again.counts.echoesDropped + again.counts.alreadySynced).toBeGreaterThan(0);
    expect(await t.service.db.prisma.activity.count()).toBe(activities);
  });

  it('a back-fill request reconciles every link of the entity once and is cleared', async () => {
    await linkedPair('contact');
    await t.service.db.prisma.fieldMapping.update({
      where: { entity_canonicalField: { entity: 'CONTACT', canonicalField: 'title' } },
      data: { backfillRequestedAt: new Date() },
    });
    const links = await t.service.db.prisma.syncLink.count({ where: { dynamicsEntity: 'CONTACT', status: { not: 'DELETED_IN_DYNAMICS' } } });
    const result = await sweep(t);
    expect(result.notes.join('\n')).toMatch(/contact: back-fill of title requested/);
    expect(result.counts.linksReconciled).toBe(links);
    const mapping = await t.service.db.prisma.fieldMapping.findFirstOrThrow({ where: { entity: 'CONTACT', canonicalField: 'title' } });
    expect(mapping.backfillRequestedAt).toBeNull();
    expect((await sweep(t)).counts.linksReconciled).toBe(0);
  });

  it('a reconciliation passes over links made after it was requested: those were synced from fresh reads when made', async () => {
    const before = await linkedPair('lead');
    const after = await linkedPair('lead');
    // as a link the engine makes while the first sweep's reconciliation runs (the initial sync)
    await t.service.db.prisma.syncLink.updateMany({ where: { dynamicsId: after.dynamicsId }, data: { createdAt: new Date(Date.now() + 3_600_000) } });
    await t.service.db.prisma.fieldMapping.update({
      where: { entity_canonicalField: { entity: 'LEAD', canonicalField: 'title' } },
      data: { backfillRequestedAt: new Date() },
    });
    const links = await t.service.db.prisma.syncLink.count({ where: { dynamicsEntity: 'LEAD', status: { not: 'DELETED_IN_DYNAMICS' } } });
    const result = await sweep(t);
    expect(result.counts.linksReconciled).toBe(links - 1);
    const resynced = await t.service.db.prisma.changeEvent.findMany({ where: { operation: 'RESYNC', payload: { path: ['runId'], equals: result.runId } }, select: { dynamicsId: true } });
    expect(resynced.map((e) => e.dynamicsId)).toContain(before.dynamicsId);
    expect(resynced.map((e) => e.dynamicsId)).not.toContain(after.dynamicsId);
  });

  it('only one sweep at a time: a request while one runs is answered busy', async () => {
    const [a, b] = await Promise.all([
      t.service.sweeper.requestSweep({ trigger: 'TEST' }),
      t.service.sweeper.requestSweep({ trigger: 'TEST' }),
    ]);
    expect([a.status, b.status].sort()).toEqual(['busy', 'started']);
  });
});

describe.each(testEngines())('the quota guard on %s', (engine) => {
  let t: TestService;
  beforeAll(async () => {
    // 0.01% of 50,000: the sweep may bring the day's Marketo usage to 5 calls
    t = await bootService(engine, { SYNC_SWEEP_CRON: NEVER, SYNC_FULL_CRON: NEVER, SYNC_SWEEP_QUOTA_SHARE: '0.0001' });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('stops a sweep early, says why, and leaves the webhooks their share', async () => {
    for (let i = 0; i < 3; i++) t.dataverse.create('lead', { lastname: `Quota ${i}`, emailaddress1: unique('quota') });
    await t.settle(); // the webhooks use Marketo calls, taking the usage past the sweep's share
    const answer = await t.service.sweeper.requestSweep({ trigger: 'TEST' });
    expect(answer.status).toBe('started');
    if (answer.status !== 'started') return;
    expect(answer.result.status).toBe('STOPPED');
    expect(answer.result.error).toMatch(/quota guard: Marketo usage today is \d+ of 50000 calls/);
    const run = await t.service.db.prisma.syncRun.findUniqueOrThrow({ where: { id: answer.runId } });
    expect(run).toMatchObject({ status: 'STOPPED' });
    expect(run.notes.join('\n')).toMatch(/stopped early: quota guard/);
  });
});
