import { beforeAll, describe, expect, it } from 'vitest';
import { gate, until, useInterceptedService } from '../support/intercept.ts';
import { testEngines } from '../support/database.ts';
import type { TestService } from '../support/service.ts';

// Issue 24's "What was seen", in one process: a worker (A) reads a pair and is then held (a GC pause,
// a frozen container) until its record leases have gone to another worker (B), which carries the
// same change and then a marketer's newer edit to both sides. When A wakes, nothing it planned before
// the pause may win over the marketer's edit: its write is fenced out before it is sent, or, when it
// had already passed its fence and lands late (Marketo has no conditional write), the journal
// recognises it and the agreed value is put back. The holds are gates the test opens; nothing here
// waits on a clock to order events.

let n = 0;

describe.each(testEngines())('a worker paused past its lease, on %s', (engine) => {
  const { marketoHttp, dynamicsHttp, service } = useInterceptedService(engine, { SYNC_RECORD_LOCK_SECONDS: '5', INBOX_LEASE_SECONDS: '5' });
  let t!: TestService;
  beforeAll(() => {
    t = service();
  });

  const linkOf = (dynamicsId: string) => t.service.db.prisma.syncLink.findFirst({ where: { dynamicsId } });
  const log = (marketoId: number) => t.service.db.prisma.activity.findMany({ where: { marketoId }, orderBy: { id: 'asc' } });
  /** what the lease expiry and a second worker's claim do to A's leases: they are no longer A's */
  const takeLeasesFromA = (marketoId: number, dynamicsId: string) =>
    t.service.db.prisma.$executeRaw`DELETE FROM record_lock WHERE key IN (${`mkto:${marketoId}`}, ${`dyn:${dynamicsId}`})`;

  async function linkedLead(title: string) {
    const lead = t.dataverse.create('lead', { firstname: 'Paused', lastname: `Worker${++n}`, emailaddress1: `paused.${Date.now().toString(36)}${n}@example.com`, jobtitle: title });
    const dynamicsId = String(lead.leadid);
    await t.settle();
    const link = await until('the link', () => linkOf(dynamicsId));
    return { dynamicsId, marketoId: link.marketoId };
  }

  /** B's part: it carries D1 to Marketo, then the marketer's M2 to Dynamics. */
  async function secondWorkerAndMarketer(ids: { dynamicsId: string; marketoId: number }, d1: string, m2: string) {
    await t.marketoWebhook('person-changed', { marketoId: ids.marketoId }).expect(202);
    await until('B to carry D1 to Marketo', () => t.marketo.getLead(ids.marketoId)?.title === d1);
    t.marketo.updateLead(ids.marketoId, { title: m2 });
    await t.marketoWebhook('person-changed', { marketoId: ids.marketoId }).expect(202);
    await until('B to carry M2 to Dynamics', () => t.dataverse.get('lead', ids.dynamicsId)?.jobtitle === m2);
  }

  it('a write planned before the pause is fenced out: the marketer’s newer edit stays on both sides', async () => {
    const ids = await linkedLead('D0');
    const [d1, m2] = [`D1-${n}`, `M2-${n}`];
    const paused = gate();
    let held = false;
    // A's read of the lead is answered (D1) but A is held before it can plan and write
    dynamicsHttp.set((url, init) => {
      if (held || init?.method !== 'GET' || !url.includes(ids.dynamicsId)) return;
      held = true;
      return { after: () => paused.pass() };
    });
    let d1Writes = 0;
    marketoHttp.set((url, _init, body) => {
      if (url.includes('/rest/v1/leads.json') && body.includes('updateOnly') && body.includes(d1)) d1Writes++;
      return undefined;
    });
    t.dataverse.update('lead', ids.dynamicsId, { jobtitle: d1 });
    await paused.arrived;
    await takeLeasesFromA(ids.marketoId, ids.dynamicsId);
    await secondWorkerAndMarketer(ids, d1, m2);
    paused.open();
    await t.settle();

    expect(t.marketo.getLead(ids.marketoId)?.title).toBe(m2);
    expect(t.dataverse.get('lead', ids.dynamicsId)?.jobtitle).toBe(m2);
    // B's write only: A's was never sent
    expect(d1Writes).toBe(1);
    const entries = await log(ids.marketoId);
    expect(entries.filter((a) => a.type === 'STALE_WRITE_UNDONE')).toEqual([]);
    expect(entries.filter((a) => a.state === 'PENDING')).toEqual([]);
  });

  it('a write that passed its fence and lands after the newer edit is undone from the journal', async () => {
    const ids = await linkedLead('D0');
    const [d1, m2] = [`D1-${n}`, `M2-${n}`];
    const onTheWire = gate();
    let held = false;
    let d1Writes = 0;
    // A's Marketo write has passed its fence; its request is held before it reaches Marketo
    marketoHttp.set(async (url, _init, body) => {
      if (!url.includes('/rest/v1/leads.json') || !body.includes('updateOnly') || !body.includes(d1)) return undefined;
      d1Writes++;
      if (held) return undefined;
      held = true;
      await onTheWire.pass();
      return undefined;
    });
    t.dataverse.update('lead', ids.dynamicsId, { jobtitle: d1 });
    await onTheWire.arrived;
    await takeLeasesFromA(ids.marketoId, ids.dynamicsId);
    await secondWorkerAndMarketer(ids, d1, m2);
    onTheWire.open();
    // A's late write lands over M2; then whoever holds the pair puts M2 back
    await until('the late write to land', () => d1Writes === 2);
    await t.settle();
    await until('M2 back in Marketo', () => t.marketo.getLead(ids.marketoId)?.title === m2);
    await t.settle();

    expect(t.marketo.getLead(ids.marketoId)?.title).toBe(m2);
    expect(t.dataverse.get('lead', ids.dynamicsId)?.jobtitle).toBe(m2);
    const entries = await log(ids.marketoId);
    const undone = entries.filter((a) => a.type === 'STALE_WRITE_UNDONE' && a.state !== 'SUPERSEDED');
    expect(undone).toHaveLength(1);
    expect(undone[0]!.fields).toEqual([expect.objectContaining({ field: 'title', side: 'MARKETO', oldValue: d1, newValue: m2 })]);
    // the late value never went on to Dynamics as if a marketer had typed it
    const toDynamics = entries.filter((a) => a.type === 'UPDATED_IN_DYNAMICS' && a.state !== 'SUPERSEDED');
    expect(toDynamics.flatMap((a) => (a.fields as { newValue: unknown }[]).map((f) => f.newValue))).not.toContain(d1);
    expect(entries.filter((a) => a.state === 'PENDING')).toEqual([]);
  });
});
