import { beforeAll, describe, expect, it } from 'vitest';
import { Prisma } from '../../src/db/generated/client.ts';
import { testEngines } from '../support/database.ts';
import { until, useInterceptedService } from '../support/intercept.ts';
import type { TestService } from '../support/service.ts';

// The engine's write protocol (issue 12) under the races that broke it, reproduced at the HTTP
// boundary: the vendor clients' requests pass through an interceptor that plays the automation,
// the plug-in or the fault at the exact moment it matters. Nothing here waits on a clock for its
// verdict: each test waits for a condition and then checks where every edit's value went.

let n = 0;
const unique = (name: string) => `${name}.${Date.now().toString(36)}${++n}@example.com`;

describe.each(testEngines())('the write protocol on %s', (engine) => {
  const { marketoHttp, dynamicsHttp, service } = useInterceptedService(engine, { SYNC_RECORD_LOCK_SECONDS: '5', INBOX_LEASE_SECONDS: '5', SYNC_PERSON_BUDGET_MS: '300' });
  let t!: TestService;
  beforeAll(() => {
    t = service();
  });

  const linkOf = (where: { dynamicsId?: string; marketoId?: number }) => t.service.db.prisma.syncLink.findFirst({ where });
  const log = (marketoId: number) => t.service.db.prisma.activity.findMany({ where: { marketoId }, orderBy: { id: 'asc' } });

  it('a Marketo automation that edits the person the sync just created wins nothing by collision: its edit reaches Dynamics', async () => {
    const email = unique('automation');
    // "Person is Created -> Change Data Value": the edit lands before the sync reads the person again
    marketoHttp.set((url, _init, body) => {
      if (!url.includes('/rest/v1/leads.json') || !body.includes('createOnly') || !body.includes(email)) return;
      return {
        after: async (response) => {
          const created = ((await response.json()) as { result: { id: number }[] }).result[0]!;
          t.marketo.updateLead(created.id, { title: 'Set by a smart campaign' });
        },
      };
    });
    const contact = t.dataverse.create('contact', { firstname: 'New', lastname: 'Contact', emailaddress1: email, jobtitle: 'Typed in Dynamics' });
    const dynamicsId = String(contact.contactid);
    await t.settle();
    const link = await until('the link', () => linkOf({ dynamicsId }));
    await t.settle();
    expect(t.marketo.getLead(link.marketoId)?.title).toBe('Set by a smart campaign');
    expect(t.dataverse.get('contact', dynamicsId)?.jobtitle).toBe('Set by a smart campaign');
    const types = (await log(link.marketoId)).map((a) => a.type);
    expect(types).not.toContain('COLLISION_RESOLVED');
    expect(types).toContain('UPDATED_IN_DYNAMICS');
  });

  it('Sync Person to Microsoft: a value Dynamics rewrites while creating the lead comes back to Marketo, not overwritten by a fake collision', async () => {
    const email = unique('created-rewrite');
    const person = t.marketo.createLead({ email, firstName: 'Rewritten', lastName: 'OnCreate', country: 'usa' });
    // a synchronous plug-in on Create normalises the country
    dynamicsHttp.set((_url, init, body) => {
      if (init?.method === 'POST' && body.includes(email)) return { body: body.replace('"address1_country":"usa"', '"address1_country":"United States"') };
    });
    // 200 with the id, or 202 when the machine is slower than this file's short answer budget
    const answer = await t.marketoWebhook('sync-person', { marketoId: person.id, syncAs: 'lead' });
    expect([200, 202]).toContain(answer.status);
    const { dynamicsId } = (await until('the link', () => linkOf({ marketoId: person.id })));
    await t.settle();
    expect(t.dataverse.get('lead', dynamicsId)?.address1_country).toBe('United States');
    expect(t.marketo.getLead(person.id)?.country).toBe('United States');
    expect((await log(person.id)).map((a) => a.type)).not.toContain('COLLISION_RESOLVED');
  });

  it('a value a Dataverse plug-in rewrites during the sync write is carried back to Marketo as a change made in Dynamics', async () => {
    const email = unique('plugin');
    const lead = t.dataverse.create('lead', { firstname: 'Plug', lastname: 'In', emailaddress1: email });
    const dynamicsId = String(lead.leadid);
    await t.settle();
    const { marketoId } = (await until('the link', () => linkOf({ dynamicsId })));
    dynamicsHttp.set((_url, init, body) => {
      if (init?.method !== 'GET' && body.includes('"address1_country":"usa"')) return { body: body.replaceAll('"address1_country":"usa"', '"address1_country":"United States"') };
    });
    t.marketo.updateLead(marketoId, { country: 'usa' });
    await t.marketoWebhook('person-changed', { marketoId }).expect(202);
    await t.settle();
    expect(t.dataverse.get('lead', dynamicsId)?.address1_country).toBe('United States');
    expect(t.marketo.getLead(marketoId)?.country).toBe('United States');
    const updates = (await log(marketoId)).filter((a) => a.type === 'UPDATED_IN_MARKETO' && JSON.stringify(a.fields).includes('United States'));
    expect(updates).toHaveLength(1);
  });

  it('a collision whose losing value was overwritten stays on record when the next write fails, and the retry settles it', async () => {
    const email = unique('loser');
    const lead = t.dataverse.create('lead', { firstname: 'Lo', lastname: 'Ser', emailaddress1: email, jobtitle: 'Base', telephone1: '1' });
    const dynamicsId = String(lead.leadid);
    await t.settle();
    const { marketoId } = (await until('the link', () => linkOf({ dynamicsId })));
    // title collides (Marketo wins: Dynamics is written first); phone changed only in Dynamics (Marketo written second)
    t.marketo.updateLead(marketoId, { title: 'Marketing title' });
    t.dataverse.update('lead', dynamicsId, { jobtitle: 'Sales title', telephone1: '2' });
    let failures = 0;
    marketoHttp.set((url, _init, body) => {
      if (url.includes('/rest/v1/leads.json') && body.includes('updateOnly') && body.includes(String(marketoId)) && failures < 6) {
        failures++;
        return { fail: new TypeError('fetch failed (the network dropped the Marketo write)') };
      }
    });
    await t.marketoWebhook('person-changed', { marketoId }).expect(202);
    await until('the Marketo write to go through', () => t.marketo.getLead(marketoId)?.phone === '2');
    await t.settle();
    expect(t.dataverse.get('lead', dynamicsId)?.jobtitle).toBe('Marketing title');
    const collisions = (await log(marketoId)).filter((a) => a.type === 'COLLISION_RESOLVED');
    expect(collisions).toHaveLength(1);
    expect(collisions[0]).toMatchObject({ state: 'FINAL' });
    expect(collisions[0]!.fields).toEqual([expect.objectContaining({ field: 'title', losingValue: 'Sales title', winner: 'MARKETO' })]);
    expect(await t.service.db.prisma.activity.count({ where: { marketoId, state: 'PENDING' } })).toBe(0);
  });

  it('a collision written to Dynamics whose answer was lost stays on record: the resent $batch answers 412 for its own write', async () => {
    const email = unique('lost-answer');
    const lead = t.dataverse.create('lead', { firstname: 'Lost', lastname: 'Answer', emailaddress1: email, jobtitle: 'Base' });
    const dynamicsId = String(lead.leadid);
    await t.settle();
    const { marketoId } = await until('the link', () => linkOf({ dynamicsId }));
    // title collides; Marketo wins for leads, so Dynamics is written
    t.marketo.updateLead(marketoId, { title: 'Marketing wins' });
    t.dataverse.update('lead', dynamicsId, { jobtitle: 'Sales loses' });
    let lost = 0;
    dynamicsHttp.set((url, init, body) => {
      if (lost > 0 || init?.method !== 'POST' || !url.includes('$batch') || !body.includes('Marketing wins')) return;
      lost++;
      // Dataverse applies the write; its answer never arrives
      return {
        after: () => Promise.reject(new TypeError('fetch failed (the answer was lost)')),
      };
    });
    await t.marketoWebhook('person-changed', { marketoId }).expect(202);
    await t.settle();
    expect(lost).toBe(1);
    expect(t.dataverse.get('lead', dynamicsId)?.jobtitle).toBe('Marketing wins');
    expect(t.marketo.getLead(marketoId)?.title).toBe('Marketing wins');
    const collisions = (await log(marketoId)).filter((a) => a.type === 'COLLISION_RESOLVED' && a.state !== 'SUPERSEDED');
    expect(collisions).toHaveLength(1);
    expect(collisions[0]!.fields).toEqual([expect.objectContaining({ field: 'title', losingValue: 'Sales loses', winner: 'MARKETO' })]);
    expect(await t.service.db.prisma.activity.count({ where: { marketoId, state: 'PENDING' } })).toBe(0);
  });

  it('an asynchronous plug-in that the sync’s write triggers, running as the sync user, edits another column: the edit reaches Marketo', async () => {
    const email = unique('async-plugin');
    const lead = t.dataverse.create('lead', { firstname: 'Async', lastname: 'Plugin', emailaddress1: email, jobtitle: 'Base', telephone1: '100' });
    const dynamicsId = String(lead.leadid);
    await t.settle();
    const { marketoId } = await until('the link', () => linkOf({ dynamicsId }));
    const syncUserId = t.service.sandbox!.dataverse.syncUserId;
    let stepped = 0;
    // the step runs after the sync's update committed, in the sync user's context, one level deeper
    dynamicsHttp.set((url, init, body) => {
      if (stepped > 0 || init?.method !== 'POST' || !url.includes('$batch') || !body.includes('Title from Marketo')) return;
      stepped++;
      return {
        after: () => {
          setImmediate(() => t.dataverse.update('lead', dynamicsId, { telephone1: '200 set by a plug-in' }, syncUserId, 2));
          return Promise.resolve();
        },
      };
    });
    t.marketo.updateLead(marketoId, { title: 'Title from Marketo' });
    await t.marketoWebhook('person-changed', { marketoId }).expect(202);
    await until('the plug-in step', () => stepped === 1 && t.dataverse.get('lead', dynamicsId)?.telephone1 === '200 set by a plug-in');
    await t.settle();
    expect(t.marketo.getLead(marketoId)?.phone).toBe('200 set by a plug-in');
    expect(t.marketo.getLead(marketoId)?.title).toBe('Title from Marketo');
  });

  it('a Marketo write whose answer was lost after it landed, then a Dynamics edit of the same field: the edit wins as a one-sided change', async () => {
    const email = unique('landed-unanswered');
    const lead = t.dataverse.create('lead', { firstname: 'Landed', lastname: 'Unanswered', emailaddress1: email, jobtitle: 'Base' });
    const dynamicsId = String(lead.leadid);
    await t.settle();
    const { marketoId } = await until('the link', () => linkOf({ dynamicsId }));
    let lost = 0;
    marketoHttp.set((url, _init, body) => {
      if (lost > 0 || !url.includes('/rest/v1/leads.json') || !body.includes('updateOnly') || !body.includes('From CRM')) return;
      lost++;
      return {
        // Marketo applied the write; before its answer arrives, a CRM user edits the title again
        after: () => {
          t.dataverse.update('lead', dynamicsId, { jobtitle: 'Later CRM edit' });
          return Promise.reject(new TypeError('fetch failed (the answer was lost)'));
        },
      };
    });
    t.dataverse.update('lead', dynamicsId, { jobtitle: 'From CRM' });
    await until('the lost answer', () => lost === 1);
    await t.settle();
    // a lead's collision would go to Marketo's value: the later CRM edit must not meet one
    expect(t.dataverse.get('lead', dynamicsId)?.jobtitle).toBe('Later CRM edit');
    expect(t.marketo.getLead(marketoId)?.title).toBe('Later CRM edit');
    expect((await log(marketoId)).filter((a) => a.type === 'COLLISION_RESOLVED')).toEqual([]);
  });

  it('a Marketo write whose answer was lost after it landed, then a marketer edit of the same field: Marketo’s activity log shows the write landed, and the edit reaches Dynamics', async () => {
    const email = unique('landed-overwritten');
    const contact = t.dataverse.create('contact', { firstname: 'Landed', lastname: 'Overwritten', emailaddress1: email, jobtitle: 'Base' });
    const dynamicsId = String(contact.contactid);
    await t.settle();
    const { marketoId } = await until('the link', () => linkOf({ dynamicsId }));
    let lost = 0;
    marketoHttp.set((url, _init, body) => {
      if (lost > 0 || !url.includes('/rest/v1/leads.json') || !body.includes('updateOnly') || !body.includes('From CRM')) return;
      lost++;
      return {
        // Marketo applied the write; before its answer arrives, a marketer overwrites the title, so
        // Marketo no longer shows the value the sync wrote when the retry reads it
        after: () => {
          t.marketo.updateLead(marketoId, { title: 'Later marketer edit' });
          return Promise.reject(new TypeError('fetch failed (the answer was lost)'));
        },
      };
    });
    t.dataverse.update('contact', dynamicsId, { jobtitle: 'From CRM' });
    await until('the lost answer', () => lost === 1);
    // the event waits out its backoff (no webhook reports the marketer's edit): the retry settles it
    await until('the retried sync', async () => (await t.service.db.prisma.changeEvent.count({ where: { dynamicsId, status: { not: 'DONE' } } })) === 0);
    await t.settle();
    // the marketer's edit came after From CRM reached both sides: a one-sided change, which for a
    // contact would otherwise lose a collision to Dynamics' From CRM
    expect(t.marketo.getLead(marketoId)?.title).toBe('Later marketer edit');
    expect(t.dataverse.get('contact', dynamicsId)?.jobtitle).toBe('Later marketer edit');
    const entries = await log(marketoId);
    expect(entries.filter((a) => a.type === 'COLLISION_RESOLVED')).toEqual([]);
    // the write that landed is on record as having happened
    const written = entries.filter((a) => a.type === 'UPDATED_IN_MARKETO' && JSON.stringify(a.fields).includes('From CRM'));
    expect(written.map((a) => a.state)).toEqual(['FINAL']);
  });

  it('a Dynamics write whose answer was lost after it landed, then a sales edit of the same field: the echo of the sync’s own Update shows the write landed, and the edit reaches Marketo', async () => {
    const email = unique('dv-landed-overwritten');
    const lead = t.dataverse.create('lead', { firstname: 'Echo', lastname: 'Witness', emailaddress1: email, jobtitle: 'Base' });
    const dynamicsId = String(lead.leadid);
    await t.settle();
    const { marketoId } = await until('the link', () => linkOf({ dynamicsId }));
    const echoed = async () => (await t.service.db.prisma.activity.count({ where: { dynamicsId, type: 'UPDATED_IN_DYNAMICS', NOT: { dynamicsEchoes: { equals: Prisma.DbNull } } } })) > 0;
    let landed = 0;
    dynamicsHttp.set(async (url, init, body) => {
      if (landed === 0) {
        if (init?.method !== 'POST' || !url.includes('$batch') || !body.includes('From marketer')) return;
        landed++;
        return {
          // Dataverse applied the write; before its answer arrives, a salesperson overwrites the title
          after: () => {
            t.dataverse.update('lead', dynamicsId, { jobtitle: 'Later sales edit' });
            return Promise.reject(new TypeError('fetch failed (the answer was lost)'));
          },
        };
      }
      // until the echo of the write that landed is in, every request fails: the sync that decides
      // comes after it, as a replica taking over from one whose lease expired would
      if (await echoed()) return;
      return { fail: new TypeError('fetch failed (connection reset)') };
    });
    t.marketo.updateLead(marketoId, { title: 'From marketer' });
    await t.marketoWebhook('person-changed', { marketoId }).expect(202);
    await until('the echo of the write that landed', echoed);
    await until('the retried sync', async () => (await t.service.db.prisma.changeEvent.count({ where: { marketoId, status: { not: 'DONE' } } })) === 0);
    await t.settle();
    expect(landed).toBe(1);
    // the sales edit came after From marketer reached both sides: a one-sided change, which for a
    // lead would otherwise lose a collision to Marketo's From marketer
    expect(t.dataverse.get('lead', dynamicsId)?.jobtitle).toBe('Later sales edit');
    expect(t.marketo.getLead(marketoId)?.title).toBe('Later sales edit');
    const entries = await log(marketoId);
    expect(entries.filter((a) => a.type === 'COLLISION_RESOLVED' && a.state !== 'SUPERSEDED')).toEqual([]);
    const written = entries.filter((a) => a.type === 'UPDATED_IN_DYNAMICS' && JSON.stringify(a.fields).includes('From marketer'));
    expect(written.map((a) => a.state)).toEqual(['FINAL']);
  });

  it.each([
    ['lead', 'Marketer edit', 'MARKETO'],
    ['contact', 'From CRM', 'DYNAMICS'],
  ] as const)(
    'a marketer edit that the sync’s write overwrote before reading it is found by the sweep in Marketo’s activity log and resolved as the collision it was (%s)',
    async (table, winningValue, winner) => {
      const email = unique(`overwritten-${table}`);
      const created = t.dataverse.create(table, { firstname: 'Over', lastname: 'Written', emailaddress1: email, jobtitle: 'Base' });
      const dynamicsId = String(created[`${table}id`]);
      await t.settle();
      const { marketoId } = await until('the link', () => linkOf({ dynamicsId }));
      let raced = 0;
      marketoHttp.set((url, _init, body) => {
        if (raced > 0 || !url.includes('/rest/v1/leads.json') || !body.includes('updateOnly') || !body.includes('From CRM')) return;
        raced++;
        // the marketer's edit lands after the sync read the person and before its write arrives
        t.marketo.updateLead(marketoId, { title: 'Marketer edit' });
        return {};
      });
      t.dataverse.update(table, dynamicsId, { jobtitle: 'From CRM' });
      await until('the raced write', () => raced === 1);
      await t.settle();
      // the write carried From CRM over the edit it never saw: both sides agree, on a value that
      // for a lead should have lost
      expect(t.marketo.getLead(marketoId)?.title).toBe('From CRM');
      const answer = await t.service.sweeper.requestSweep({ trigger: 'TEST' });
      expect(answer.status).toBe('started');
      await t.settle();
      expect(t.marketo.getLead(marketoId)?.title).toBe(winningValue);
      expect(t.dataverse.get(table, dynamicsId)?.jobtitle).toBe(winningValue);
      const collisions = (await log(marketoId)).filter((a) => a.type === 'COLLISION_RESOLVED' && a.state === 'FINAL');
      expect(collisions.map((a) => (a.fields as { field: string; winner: string; losingValue: unknown }[]).map((f) => [f.field, f.winner, f.losingValue]))).toEqual([
        [['title', winner, winner === 'MARKETO' ? 'From CRM' : 'Marketer edit']],
      ]);
      // a second sweep finds nothing more to resolve
      await t.service.sweeper.requestSweep({ trigger: 'TEST' });
      await t.settle();
      expect((await log(marketoId)).filter((a) => a.type === 'COLLISION_RESOLVED')).toHaveLength(1);
    },
  );

  it('a commit planned from a revision another worker has since committed is refused and planned again from fresh reads', async () => {
    const email = unique('fenced');
    const lead = t.dataverse.create('lead', { firstname: 'Fen', lastname: 'Ced', emailaddress1: email, jobtitle: 'Before' });
    const dynamicsId = String(lead.leadid);
    await t.settle();
    const before = (await until('the link', () => linkOf({ dynamicsId })));
    let interfered = false;
    // while this sync writes Dynamics, a second worker (whose lease this one outlived) commits the link
    dynamicsHttp.set(async (_url, init, body) => {
      if (interfered || init?.method === 'GET' || !body.includes('Chief Fencer')) return;
      interfered = true;
      await t.service.db.prisma.$executeRaw`UPDATE sync_link SET revision = revision + 1 WHERE id = ${before.id}::uuid`;
    });
    t.marketo.updateLead(before.marketoId, { title: 'Chief Fencer' });
    await t.marketoWebhook('person-changed', { marketoId: before.marketoId }).expect(202);
    await t.settle();
    expect(interfered).toBe(true);
    const after = (await linkOf({ dynamicsId }))!;
    // the other worker's commit, then this one's after planning again; the snapshot is what both sides hold
    expect(after.revision).toBe(before.revision + 2);
    expect(after.snapshot).toMatchObject({ title: 'Chief Fencer' });
    expect(t.dataverse.get('lead', dynamicsId)?.jobtitle).toBe('Chief Fencer');
    const written = (await log(before.marketoId)).filter((a) => a.type === 'UPDATED_IN_DYNAMICS');
    expect(written.map((a) => a.state)).toEqual(['FINAL']);
  });

  it('a sync slower than its lease keeps the record and its event: the heartbeat renews both until it ends', async () => {
    const email = unique('slow');
    const lead = t.dataverse.create('lead', { firstname: 'Slow', lastname: 'Write', emailaddress1: email });
    const dynamicsId = String(lead.leadid);
    await t.settle();
    const { marketoId } = (await until('the link', () => linkOf({ dynamicsId })));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let held = false;
    dynamicsHttp.set(async (_url, init, body) => {
      if (init?.method === 'GET' || !body.includes('Slow Writer')) return;
      held = true;
      await released;
    });
    t.marketo.updateLead(marketoId, { title: 'Slow Writer' });
    let eventId: string;
    try {
      await t.marketoWebhook('person-changed', { marketoId }).expect(202);
      await until('the write to be held', () => held);
      const lease = async () => (await t.service.db.prisma.recordLock.findUnique({ where: { key: `dyn:${dynamicsId}` } }))?.expiresAt.getTime() ?? 0;
      const first = await lease();
      // the record lease is 5 s; it must be pushed past its first expiry by the heartbeat, twice
      const renewed = await until('a renewal', async () => ((await lease()) > first ? lease() : false));
      await until('a second renewal', async () => (await lease()) > renewed);
      const event = await t.service.db.prisma.changeEvent.findFirstOrThrow({ where: { marketoId, status: 'PROCESSING' } });
      expect(event.attempts).toBe(1);
      eventId = event.id;
    } finally {
      // a failing assertion must not leave the write held: the service could not stop
      release();
    }
    await t.settle();
    expect(t.dataverse.get('lead', dynamicsId)?.jobtitle).toBe('Slow Writer');
    expect(await t.service.db.prisma.changeEvent.findUniqueOrThrow({ where: { id: eventId } })).toMatchObject({ status: 'DONE', attempts: 1 });
  });

  it('Sync Person past its answer budget keeps its lease while it runs: the queued retry never creates a second lead', async () => {
    const email = unique('budget');
    const person = t.marketo.createLead({ email, firstName: 'Over', lastName: 'Budget' });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let creates = 0;
    dynamicsHttp.set(async (_url, init, body) => {
      if (init?.method !== 'POST' || !body.includes(email)) return;
      creates++;
      if (creates === 1) await released;
    });
    try {
      const answer = await t.marketoWebhook('sync-person', { marketoId: person.id, syncAs: 'lead' }).expect(202);
      expect(answer.body).toMatchObject({ status: 'queued' });
      const key = `mkto:${person.id}`;
      const lease = async () => (await t.service.db.prisma.recordLock.findUnique({ where: { key } }))?.expiresAt.getTime() ?? 0;
      const first = await until('the person lease', lease);
      await until('the person lease to be renewed past its first expiry', async () => (await lease()) > first);
    } finally {
      release();
    }
    await until('the link', () => linkOf({ marketoId: person.id }));
    await t.settle();
    expect(creates).toBe(1);
    expect(t.dataverse.list('lead').filter((l) => l.emailaddress1 === email)).toHaveLength(1);
  });
});
