import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDataverseClient } from '../../src/connectors/dynamics/dataverse.client.ts';
import { createDynamicsPort } from '../../src/connectors/dynamics/dynamics.port.ts';
import { createMarketoClient } from '../../src/connectors/marketo/marketo.client.ts';
import { createMarketoPort } from '../../src/connectors/marketo/marketo.port.ts';
import type { Database } from '../../src/db/database.ts';
import { claim, enqueue } from '../../src/inbox/inbox.ts';
import { startSandbox, type Sandbox } from '../../src/sandbox/sandbox.ts';
import { createSyncEngine } from '../../src/sync/engine.ts';
import { createMappingService } from '../../src/sync/mappings.ts';
import type { DynamicsPort } from '../../src/sync/ports.ts';
import { testEngines, useMigratedDatabase } from '../support/database.ts';

// The If-Match path: a user edits the Dynamics record between the engine's read and its write.
// The stale PATCH gets 412, and the engine reads again and merges again, so neither the user's
// edit nor the Marketo change is lost. The race is made deterministic at the port boundary.

describe.each(testEngines())('a Dynamics write that races a user edit on %s', (engine) => {
  let db: Database;
  let sandbox: Sandbox;

  useMigratedDatabase(engine, { opened: (opened) => (db = opened) });
  beforeAll(async () => {
    sandbox = await startSandbox({ marketoRateWindowMs: 1_000 });
  });
  afterAll(async () => {
    await sandbox.close();
  });

  it('gets 412, reads again, merges again, and keeps both the user edit and the Marketo change', async () => {
    const marketoClient = createMarketoClient({ baseUrl: sandbox.marketo.url, clientId: sandbox.marketo.clientId, clientSecret: sandbox.marketo.clientSecret, limits: { windowMs: 1_000 } });
    const dataverse = sandbox.dataverse;
    const realPort = createDynamicsPort({
      client: createDataverseClient({ url: dataverse.url, tokenUrl: dataverse.tokenUrl, tenantId: dataverse.tenantId, clientId: dataverse.clientId, clientSecret: dataverse.clientSecret }),
    });
    let raced = 0;
    const racingPort: DynamicsPort = {
      ...realPort,
      async update(entity, id, fields, bindings, prior) {
        if (raced++ === 0) dataverse.admin.update('lead', id, { address1_city: 'Edited meanwhile' });
        return realPort.update(entity, id, fields, bindings, prior);
      },
    };
    const marketo = createMarketoPort(marketoClient);
    const mappings = createMappingService({ db: db.prisma, marketo, dynamics: racingPort });
    const syncEngine = createSyncEngine({ db, marketo, dynamics: racingPort, mappings, logger: pino({ level: 'silent' }), owner: 'test', lockLeaseMs: 12_000, deletedFlagField: null });

    const lead = dataverse.admin.create('lead', { firstname: 'Ada', lastname: 'Lovelace', emailaddress1: 'race@example.com', jobtitle: 'CTO' });
    const person = sandbox.marketo.admin.createLead({ email: 'race@example.com', firstName: 'Ada', lastName: 'Lovelace', title: 'CTO' });
    await db.prisma.syncLink.create({
      data: {
        marketoId: person.id,
        dynamicsEntity: 'LEAD',
        dynamicsId: String(lead.leadid),
        snapshot: { email: 'race@example.com', firstName: 'Ada', lastName: 'Lovelace', title: 'CTO', city: null },
      },
    });
    sandbox.marketo.admin.updateLead(person.id, { title: 'CEO' });
    await enqueue(db.prisma, { source: 'MARKETO', origin: 'WEBHOOK', operation: 'UPDATE', marketoId: person.id, dedupeKey: 'race:1' });
    const events = await claim(db.prisma, { owner: 'test', batchSize: 10, leaseMs: 60_000, maxAttempts: 3 });
    const outcomes = await syncEngine.syncBatch(events);

    expect([...outcomes.values()]).toEqual([expect.objectContaining({ status: 'done' })]);
    expect(raced).toBe(2);
    expect(dataverse.admin.get('lead', String(lead.leadid))).toMatchObject({ jobtitle: 'CEO', address1_city: 'Edited meanwhile' });
    expect(sandbox.marketo.admin.getLead(person.id)).toMatchObject({ title: 'CEO', city: 'Edited meanwhile' });
    await marketoClient.close();
  });
});
