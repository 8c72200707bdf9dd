import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDataverseClient } from '../../src/connectors/dynamics/dataverse.client.ts';
import { createDynamicsPort } from '../../src/connectors/dynamics/dynamics.port.ts';
import { createMarketoClient } from '../../src/connectors/marketo/marketo.client.ts';
import { createMarketoPort } from '../../src/connectors/marketo/marketo.port.ts';
import type { Database } from '../../src/db/database.ts';
import { enqueue, reclaimAbandoned } from '../../src/inbox/inbox.ts';
import { fetchUntil } from '../../src/lifecycle.ts';
import { startSandbox, type Sandbox } from '../../src/sandbox/sandbox.ts';
import { createSweeper } from '../../src/sweep/sweep.ts';
import { createSyncEngine } from '../../src/sync/engine.ts';
import { dropAllRecordLeases } from '../../src/sync/locks.ts';
import { createMappingService } from '../../src/sync/mappings.ts';
import type { DynamicsPort, MarketoPort } from '../../src/sync/ports.ts';
import { createSyncPerson } from '../../src/sync/sync-person.ts';
import { createSyncWorker } from '../../src/sync/worker.ts';
import { testEngines, useMigratedDatabase } from '../support/database.ts';

// kill -9 at each step of a create (issue 24), in both directions: the create is journaled, sent,
// answered and linked by process A, which dies at one of those steps; process B, a fresh engine
// and worker on the same database and the same vendors, finishes the work. "A dies" is an abort:
// from that moment every vendor call of A fails and its work goes back to the inbox, as after a
// SIGKILL whose leases were reclaimed. Records are counted by identity (ids in the simulators),
// not by email alone.

type Step = 'before send' | 'after send' | 'after answer' | 'after link';
type Vendor = 'dynamics' | 'marketo';
interface Crash {
  vendor: Vendor;
  step: Step;
}

let n = 0;
const unique = (name: string) => `${name}.${Date.now().toString(36)}${++n}@example.com`;
const killed = () => new TypeError('fetch failed: the process was killed (kill -9)');

// a create goes alone or inside a $batch with other writes
const isDataverseCreate = (method: string | undefined, url: string, body: string) =>
  method === 'POST' && (/\/api\/data\/v9\.\d\/(leads|contacts)(\?|$)/.test(url) || (url.endsWith('$batch') && /^POST \S*\/(leads|contacts)(\?|\s)/m.test(body)));
const isMarketoCreate = (url: string, body: string) => url.includes('/rest/v1/leads.json') && body.includes('createOnly');

describe.each(testEngines())('creates survive a kill -9 at every step on %s', (engine) => {
  let db!: Database;
  let sandbox!: Sandbox;
  const stops: (() => Promise<void>)[] = [];

  useMigratedDatabase(engine, {
    opened: (opened) => (db = opened),
    empty: async (db) => {
      await db.prisma.activity.deleteMany();
      await db.prisma.changeEvent.deleteMany();
      await db.prisma.createIntent.deleteMany();
      await db.prisma.syncLink.deleteMany();
      await db.prisma.recordLock.deleteMany();
    },
  });
  beforeAll(async () => {
    sandbox = await startSandbox({ marketoRateWindowMs: 1_000 });
  });
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
  });
  afterAll(async () => {
    await sandbox.close();
  });

  /** One replica: clients, engine, Sync Person and inbox worker; `crash` kills it at that step of a create. */
  function startProcess(crash?: Crash) {
    const alive = new AbortController();
    let dead = false;
    const kill = () => {
      dead = true;
      alive.abort(killed());
    };
    const vendorFetch = (vendor: Vendor): typeof fetch => {
      const base = fetchUntil(alive.signal);
      return async (input, init) => {
        if (dead) throw killed();
        const url = typeof input === 'string' ? input : input instanceof URL ? input.toString() : input.url;
        const body = typeof init?.body === 'string' ? init.body : '';
        const create = vendor === 'dynamics' ? isDataverseCreate(init?.method, url, body) : isMarketoCreate(url, body);
        const dies = create && crash?.vendor === vendor;
        if (dies && crash.step === 'before send') {
          kill();
          throw killed();
        }
        const response = await base(input, init);
        // the vendor applied the create; its answer dies with the process
        if (dies && crash.step === 'after send') {
          kill();
          throw killed();
        }
        return response;
      };
    };
    const marketoClient = createMarketoClient({
      baseUrl: sandbox.marketo.url,
      clientId: sandbox.marketo.clientId,
      clientSecret: sandbox.marketo.clientSecret,
      fetch: vendorFetch('marketo'),
      limits: { windowMs: 1_000 },
      retry: { baseDelayMs: 1, transientRetries: 2 },
      fill: false,
    });
    const dataverseClient = createDataverseClient({
      url: sandbox.dataverse.url,
      tokenUrl: sandbox.dataverse.tokenUrl,
      tenantId: sandbox.dataverse.tenantId,
      clientId: sandbox.dataverse.clientId,
      clientSecret: sandbox.dataverse.clientSecret,
      fetch: vendorFetch('dynamics'),
      retryBaseDelayMs: 1,
      transientRetries: 2,
    });
    const realDynamics = createDynamicsPort({ client: dataverseClient });
    const realMarketo = createMarketoPort(marketoClient);
    let createdAlready = false;
    // "after answer": the create came back and the process dies before it links anything;
    // "after link": it dies at its first vendor call once the create is linked (the pair's sync)
    const answered = (vendor: Vendor) => {
      if (crash?.vendor !== vendor) return;
      if (crash.step === 'after answer') {
        kill();
        throw killed();
      }
      if (crash.step === 'after link') createdAlready = true;
    };
    const diesAfterLink = () => {
      if (createdAlready) {
        kill();
        throw killed();
      }
    };
    const dynamics: DynamicsPort = {
      ...realDynamics,
      async create(...args) {
        const record = await realDynamics.create(...args);
        answered('dynamics');
        return record;
      },
    };
    const marketo: MarketoPort = {
      ...realMarketo,
      async createPersons(...args) {
        const results = await realMarketo.createPersons(...args);
        answered('marketo');
        return results;
      },
      async readPersons(...args) {
        diesAfterLink();
        return realMarketo.readPersons(...args);
      },
    };
    const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
    const owner = `replica-${randomUUID().slice(0, 8)}`;
    const mappings = createMappingService({ db: db.prisma, marketo, dynamics });
    const engineOptions = { db, marketo, dynamics, mappings, logger, owner, lockLeaseMs: 30_000, deletedFlagField: null, signal: alive.signal };
    const syncEngine = createSyncEngine(engineOptions);
    const syncPerson = createSyncPerson({ db, marketo, dynamics, mappings, owner, leaseMs: 30_000, lockWaitMs: 0 });
    const worker = createSyncWorker({
      db,
      engine: syncEngine,
      syncPerson,
      logger,
      owner,
      batchSize: 50,
      leaseMs: 30_000,
      maxAttempts: 10,
      pollMs: 20,
      busyDelayMs: 0,
      signal: alive.signal,
    });
    const stop = async () => {
      await Promise.all([marketoClient.close(), dataverseClient.close()]);
    };
    stops.push(stop);
    return {
      worker,
      syncPerson,
      /** the reconciliation sweep of this replica; creates journaled before `unfinishedCreateAgeMs` count as abandoned */
      sweeper: (unfinishedCreateAgeMs: number) =>
        createSweeper({
          db,
          marketo: marketoClient,
          dataverse: dataverseClient,
          mappings,
          syncUserId: () => syncEngine.syncUserId(),
          logger,
          owner,
          quota: { dailyQuota: 50_000, share: 1 },
          notify: () => worker.notify(),
          unfinishedCreateAgeMs,
        }),
      get dead() {
        return dead;
      },
      /** Drains the inbox (B) until nothing is left to do; a deadline against hangs, not a speed check. */
      async settle(): Promise<void> {
        for (let round = 0; round < 50; round++) {
          await worker.drain(100);
          const open = await db.prisma.changeEvent.count({ where: { status: { in: ['PENDING', 'PROCESSING', 'FAILED'] } } });
          if (open === 0) return;
        }
        throw new Error(`the inbox did not settle: ${JSON.stringify(await db.prisma.changeEvent.findMany({ where: { status: { not: 'DONE' } } }))}`);
      },
    };
  }

  /** What a kill -9 leaves on the embedded database's next start: its leases are reclaimed (heartbeat.reclaimOnStart). */
  async function restart() {
    await dropAllRecordLeases(db.prisma);
    await reclaimAbandoned(db.prisma);
    return startProcess();
  }

  const webhookOf = (entity: 'LEAD' | 'CONTACT', dynamicsId: string, operation: 'CREATE' | 'UPDATE') =>
    enqueue(db, { source: 'DYNAMICS', origin: 'WEBHOOK', operation, dynamicsEntity: entity, dynamicsId, dedupeKey: `test:${randomUUID()}` });
  const leadsWith = (email: string) => sandbox.dataverse.admin.list('lead').filter((r) => r.emailaddress1 === email);
  const personsWith = (email: string) => sandbox.marketo.admin.listLeads({ limit: 100_000 }).filter((p) => p.email === email);
  const log = (marketoId: number) => db.prisma.activity.findMany({ where: { marketoId }, orderBy: { id: 'asc' } });

  describe.each<Step>(['before send', 'after send', 'after answer', 'after link'])('Sync Person to Microsoft killed %s', (step) => {
    it('ends with exactly one lead, linked from the created values, and a workflow edit made after the crash is kept on both sides', async () => {
      const email = unique('sync-person');
      const person = sandbox.marketo.admin.createLead({ email, firstName: 'Kill', lastName: 'Nine', title: 'Created title' });
      const leadsBefore = sandbox.dataverse.admin.count('lead');
      await enqueue(db, { source: 'MARKETO', origin: 'FLOW_ACTION', operation: 'SYNC_PERSON', marketoId: person.id, payload: { syncAs: 'lead' }, dedupeKey: `test:${randomUUID()}` });

      const a = startProcess({ vendor: 'dynamics', step });
      await a.worker.runOnce();
      if (step !== 'after link') expect(a.dead).toBe(true);
      const intent = await db.prisma.createIntent.findFirstOrThrow({ where: { marketoId: person.id } });
      expect(intent).toMatchObject({ direction: 'TO_DYNAMICS', state: step === 'after link' ? 'DONE' : 'OPEN' });

      // a workflow edits the new lead a second later, as a user of Dynamics; its webhook reaches the inbox
      const landed = leadsWith(email);
      expect(landed).toHaveLength(step === 'before send' ? 0 : 1);
      if (landed[0]) {
        expect(landed[0].leadid).toBe(intent.dynamicsId);
        sandbox.dataverse.admin.update('lead', String(landed[0].leadid), { jobtitle: 'Set by a workflow' });
        await webhookOf('LEAD', String(landed[0].leadid), 'UPDATE');
      }
      // Marketo calls the flow action again (a later Sync Person for the same person)
      await enqueue(db, { source: 'MARKETO', origin: 'FLOW_ACTION', operation: 'SYNC_PERSON', marketoId: person.id, payload: { syncAs: 'lead' }, dedupeKey: `test:${randomUUID()}` });

      const b = await restart();
      await b.settle();

      expect(sandbox.dataverse.admin.count('lead') - leadsBefore).toBe(1);
      const [lead] = leadsWith(email);
      expect(lead?.leadid).toBe(intent.dynamicsId);
      const link = await db.prisma.syncLink.findUniqueOrThrow({ where: { marketoId: person.id } });
      expect(link.dynamicsId).toBe(intent.dynamicsId);
      expect((await db.prisma.createIntent.findUniqueOrThrow({ where: { id: intent.id } })).state).toBe('DONE');
      const expected = landed[0] ? 'Set by a workflow' : 'Created title';
      expect(lead?.jobtitle).toBe(expected);
      expect(sandbox.marketo.admin.getLead(person.id)?.title).toBe(expected);
      expect((link.snapshot as Record<string, unknown>).title).toBe(expected);
      const types = (await log(person.id)).map((e) => e.type);
      // an empty base would have made the workflow's edit a collision that Marketo wins for a lead
      expect(types).not.toContain('COLLISION_RESOLVED');
      expect(types.filter((t) => t === 'CREATED_IN_DYNAMICS')).toHaveLength(1);
    });
  });

  describe.each<Step>(['before send', 'after send', 'after answer', 'after link'])('a new Dynamics contact synced to Marketo, killed %s', (step) => {
    it('ends with exactly one person, linked from the created values, and a smart campaign edit made after the crash is kept on both sides', async () => {
      const email = unique('dynamics-create');
      const contact = sandbox.dataverse.admin.create('contact', { firstname: 'Kill', lastname: 'Nine', emailaddress1: email, jobtitle: 'Created title' });
      const contactId = String(contact.contactid);
      const personsBefore = sandbox.marketo.admin.listLeads({ limit: 100_000 }).length;
      await webhookOf('CONTACT', contactId, 'CREATE');

      const a = startProcess({ vendor: 'marketo', step });
      await a.worker.runOnce();
      expect(a.dead).toBe(true);
      const intent = await db.prisma.createIntent.findFirstOrThrow({ where: { dynamicsId: contactId } });
      expect(intent).toMatchObject({ direction: 'TO_MARKETO', email, state: step === 'after link' ? 'DONE' : 'OPEN' });

      // "Person is Created -> Change Data Value" in Marketo, a second later
      const landed = personsWith(email);
      expect(landed).toHaveLength(step === 'before send' ? 0 : 1);
      if (landed[0]) sandbox.marketo.admin.updateLead(landed[0].id, { title: 'Set by a smart campaign' });

      const b = await restart();
      await b.settle();

      expect(sandbox.marketo.admin.listLeads({ limit: 100_000 }).length - personsBefore).toBe(1);
      const [person] = personsWith(email);
      if (landed[0]) expect(person?.id).toBe(landed[0].id);
      const link = await db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId: contactId } });
      expect(link.marketoId).toBe(person?.id);
      expect((await db.prisma.createIntent.findUniqueOrThrow({ where: { id: intent.id } })).state).toBe('DONE');
      const expected = landed[0] ? 'Set by a smart campaign' : 'Created title';
      expect(person?.title).toBe(expected);
      expect(sandbox.dataverse.admin.get('contact', contactId)?.jobtitle).toBe(expected);
      const types = (await log(link.marketoId)).map((e) => e.type);
      // an empty base would have made the campaign's edit a collision that Dynamics wins for a contact
      expect(types).not.toContain('COLLISION_RESOLVED');
      expect(types.filter((t) => t === 'CREATED_IN_MARKETO')).toHaveLength(1);
    });
  });

  it('Sync Person for a person with no email, killed after Dataverse applied the create, never makes a second lead', async () => {
    const lastname = `NoEmail${Date.now().toString(36)}${++n}`;
    const person = sandbox.marketo.admin.createLead({ firstName: 'No', lastName: lastname, title: 'Nameless' });
    const leadsBefore = sandbox.dataverse.admin.count('lead');
    const a = startProcess({ vendor: 'dynamics', step: 'after send' });
    await expect(a.syncPerson({ marketoId: person.id, entity: 'LEAD' })).rejects.toThrow();
    expect(sandbox.dataverse.admin.count('lead') - leadsBefore).toBe(1);

    const b = await restart();
    const again = await b.syncPerson({ marketoId: person.id, entity: 'LEAD' });
    expect(again.status).toBe('created');
    expect(sandbox.dataverse.admin.count('lead') - leadsBefore).toBe(1);
    const lead = sandbox.dataverse.admin.list('lead').find((r) => r.lastname === lastname);
    expect(again).toMatchObject({ dynamicsId: lead?.leadid });
    expect(await b.syncPerson({ marketoId: person.id, entity: 'LEAD' })).toMatchObject({ status: 'existing', dynamicsId: lead?.leadid });
    expect(sandbox.dataverse.admin.count('lead') - leadsBefore).toBe(1);
  });

  it('a person to be created from a Dynamics contact deleted since the crash is not created, and its journal is closed', async () => {
    const email = unique('deleted-source');
    const contact = sandbox.dataverse.admin.create('contact', { firstname: 'Gone', lastname: 'Soon', emailaddress1: email });
    const contactId = String(contact.contactid);
    await webhookOf('CONTACT', contactId, 'CREATE');
    await startProcess({ vendor: 'marketo', step: 'before send' }).worker.runOnce();
    sandbox.dataverse.admin.delete('contact', contactId);
    const b = await restart();
    await b.settle();
    expect(personsWith(email)).toHaveLength(0);
    expect(await db.prisma.createIntent.findFirstOrThrow({ where: { dynamicsId: contactId } })).toMatchObject({ state: 'FAILED', note: 'the Dynamics contact no longer exists' });
  });

  it('a create left unsent is dropped, not sent, once its person was linked meanwhile to a lead a user made', async () => {
    const email = unique('linked-meanwhile');
    const person = sandbox.marketo.admin.createLead({ email, firstName: 'Mean', lastName: 'While' });
    await expect(startProcess({ vendor: 'dynamics', step: 'before send' }).syncPerson({ marketoId: person.id, entity: 'LEAD' })).rejects.toThrow();
    const b = await restart();
    const typed = sandbox.dataverse.admin.create('lead', { firstname: 'Mean', lastname: 'While', emailaddress1: email });
    await webhookOf('LEAD', String(typed.leadid), 'CREATE');
    await b.settle();
    expect((await db.prisma.syncLink.findUniqueOrThrow({ where: { marketoId: person.id } })).dynamicsId).toBe(typed.leadid);
    expect(await b.syncPerson({ marketoId: person.id, entity: 'LEAD' })).toMatchObject({ status: 'existing', dynamicsId: typed.leadid });
    expect(leadsWith(email)).toHaveLength(1);
    expect(await db.prisma.createIntent.findFirstOrThrow({ where: { marketoId: person.id } })).toMatchObject({ state: 'FAILED' });
    expect((await log(person.id)).map((e) => e.message).join('\n')).toContain('already linked');
  });

  it('a Sync Person call killed before it sent anything, with no inbox event to retry it, is finished from the sweep', async () => {
    const email = unique('abandoned');
    const person = sandbox.marketo.admin.createLead({ email, firstName: 'Aban', lastName: 'Doned', title: 'Journaled only' });
    const a = startProcess({ vendor: 'dynamics', step: 'before send' });
    await expect(a.syncPerson({ marketoId: person.id, entity: 'LEAD' })).rejects.toThrow();
    expect(leadsWith(email)).toHaveLength(0);
    const b = await restart();
    // a create journaled a moment ago may still have its worker: it is not handed over yet
    expect((await b.sweeper(60 * 60_000).run({ trigger: 'TEST' })).counts.unfinishedCreates).toBeUndefined();
    expect((await b.sweeper(0).run({ trigger: 'TEST' })).counts.unfinishedCreates).toBe(1);
    await b.settle();
    const [lead] = leadsWith(email);
    const link = await db.prisma.syncLink.findUniqueOrThrow({ where: { marketoId: person.id } });
    expect(link.dynamicsId).toBe(lead?.leadid);
    expect(leadsWith(email)).toHaveLength(1);
    expect(lead?.jobtitle).toBe('Journaled only');
  });

  it('a change of the person in Marketo reaches the engine, which finishes the create Sync Person left and links it', async () => {
    const email = unique('person-changed');
    const person = sandbox.marketo.admin.createLead({ email, firstName: 'Per', lastName: 'Son', title: 'Created title' });
    const a = startProcess({ vendor: 'dynamics', step: 'after answer' });
    await expect(a.syncPerson({ marketoId: person.id, entity: 'LEAD' })).rejects.toThrow();
    const [lead] = leadsWith(email);
    sandbox.dataverse.admin.update('lead', String(lead!.leadid), { jobtitle: 'Set by a workflow' });
    sandbox.marketo.admin.updateLead(person.id, { city: 'Quito' });
    const b = await restart();
    await enqueue(db, { source: 'MARKETO', origin: 'FLOW_ACTION', operation: 'UPDATE', marketoId: person.id, dedupeKey: `test:${randomUUID()}` });
    await b.settle();
    expect(leadsWith(email)).toHaveLength(1);
    expect(sandbox.dataverse.admin.get('lead', String(lead!.leadid))).toMatchObject({ jobtitle: 'Set by a workflow', address1_city: 'Quito' });
    expect(sandbox.marketo.admin.getLead(person.id)).toMatchObject({ title: 'Set by a workflow', city: 'Quito' });
    expect((await log(person.id)).map((e) => e.type)).not.toContain('COLLISION_RESOLVED');
  });

  it('the engine finishes Sync Person’s create when the new lead’s webhook arrives before anyone calls Sync Person again', async () => {
    const email = unique('orphan-webhook');
    const person = sandbox.marketo.admin.createLead({ email, firstName: 'Or', lastName: 'Phan', title: 'Orphaned' });
    const a = startProcess({ vendor: 'dynamics', step: 'after send' });
    await expect(a.syncPerson({ marketoId: person.id, entity: 'LEAD' })).rejects.toThrow();
    const [lead] = leadsWith(email);
    const b = await restart();
    await webhookOf('LEAD', String(lead!.leadid), 'CREATE');
    await b.settle();
    const link = await db.prisma.syncLink.findUniqueOrThrow({ where: { marketoId: person.id } });
    expect(link.dynamicsId).toBe(lead!.leadid);
    expect(leadsWith(email)).toHaveLength(1);
    expect((link.snapshot as Record<string, unknown>).title).toBe('Orphaned');
  });
});
