import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// SPEC "Bad input gets a clear answer and loses nothing", for the three webhook endpoints. The
// inbox worker is stopped so that what intake stored can be looked at before anything runs, and
// Marketo's coalescing window has a clock that stands still: a repeat is a duplicate because it came
// while the first waited, not because both happened to fall in the same 10 s of the wall clock.

const sample = readFileSync(new URL('../fixtures/dataverse-webhook-contact-update.json', import.meta.url), 'utf8');
const sampleWith = (changes: Record<string, unknown>) => JSON.stringify({ ...(JSON.parse(sample) as object), ...changes });

describe.each(testEngines())('webhook intake on %s', (engine) => {
  let t: TestService;
  const stored = () => t.service.db.prisma.changeEvent.count();

  beforeAll(async () => {
    t = await bootService(engine, {}, { webhookClock: () => Date.parse('2026-11-30T09:00:05Z') });
    await t.service.worker.stop();
  });
  afterAll(async () => {
    await t.stop();
  });
  beforeEach(async () => {
    await t.service.db.prisma.changeEvent.deleteMany();
  });

  const dynamics = (body: string, code: string | null = t.service.webhookSecrets.dynamics) =>
    t.http
      .post(`/webhooks/dynamics${code === null ? '' : `?code=${encodeURIComponent(code)}`}`)
      .set('content-type', 'application/json')
      .send(body);

  describe('Marketo flow actions', () => {
    it('refuses a call without the secret or with a wrong one, storing nothing', async () => {
      const none = await t.http.post('/webhooks/marketo/person-changed').set('content-type', 'application/json').send('{"marketoId": 1}');
      const wrong = await t.http
        .post('/webhooks/marketo/person-changed')
        .set('content-type', 'application/json')
        .set('x-webhook-secret', 'not-the-secret')
        .send('{"marketoId": 1}');
      expect([none.status, wrong.status]).toEqual([401, 401]);
      expect(wrong.body.error.code).toBe('unauthorized');
      expect(await stored()).toBe(0);
    });

    it('stores an accepted change before answering 202, and answers a repeat while it waits as a duplicate', async () => {
      const first = await t.marketoWebhook('person-changed', { marketoId: '4242', campaign: 'Data Value Changes' }).expect(202);
      expect(first.body).toEqual({ status: 'queued', eventId: expect.any(String) });
      const row = await t.service.db.prisma.changeEvent.findUniqueOrThrow({ where: { id: first.body.eventId } });
      expect(row).toMatchObject({ source: 'MARKETO', origin: 'WEBHOOK', marketoId: 4242, status: 'PENDING' });
      const again = await t.marketoWebhook('person-changed', { marketoId: 4242 }).expect(202);
      expect(again.body).toEqual({ status: 'duplicate', eventId: first.body.eventId });
      expect(await stored()).toBe(1);
    });

    it.each([
      ['a missing marketoId', {}, '$.marketoId'],
      ['a marketoId that is not a number', { marketoId: 'abc' }, '$.marketoId'],
      ['a negative marketoId', { marketoId: -4 }, '$.marketoId'],
      ['an unknown syncAs', { marketoId: 1, syncAs: 'partner' }, '$.syncAs'],
    ])('answers 422 with the path of the first bad field for %s', async (_name, body, path) => {
      const res = await t.marketoWebhook('sync-person', body).expect(422);
      expect(res.body.error).toMatchObject({ code: 'invalid_body', path });
      expect(await stored()).toBe(0);
    });

    it('accepts Marketo token encodings: ids as numeric strings, empty optional tokens', async () => {
      const person = t.marketo.createLead({ email: 'tokens@example.com', lastName: 'Tokens' });
      const res = await t.marketoWebhook('sync-person', { marketoId: String(person.id), syncAs: '', assignTo: '' }).expect(200);
      expect(res.body).toMatchObject({ status: 'created', dynamicsEntity: 'lead' });
    });

    it('answers 404 for a person Marketo does not have', async () => {
      const res = await t.marketoWebhook('sync-person', { marketoId: 987654 }).expect(404);
      expect(res.body.error.code).toBe('person_not_found');
    });

    it('answers 415 for a body that is not JSON and 400 for malformed JSON', async () => {
      const form = await t.http
        .post('/webhooks/marketo/person-changed')
        .set('x-webhook-secret', t.service.webhookSecrets.marketo)
        .set('content-type', 'application/x-www-form-urlencoded')
        .send('marketoId=1');
      expect(form.status).toBe(415);
      expect(form.body.error.message).toContain('application/x-www-form-urlencoded');
      const broken = await t.http
        .post('/webhooks/marketo/person-changed')
        .set('x-webhook-secret', t.service.webhookSecrets.marketo)
        .set('content-type', 'application/json')
        .send('{"marketoId": 1,');
      expect(broken.status).toBe(400);
      expect(await stored()).toBe(0);
    });

    it('queues Sync Person to Microsoft when Dynamics is down, so nothing is lost', async () => {
      const person = t.marketo.createLead({ email: 'outage@example.com', lastName: 'Outage' });
      t.dataverse.injectFault({ kind: 'server_error', count: 50, status: 503 });
      try {
        const res = await t.marketoWebhook('sync-person', { marketoId: person.id }).expect(202);
        expect(res.body).toMatchObject({ status: 'queued', marketoId: person.id });
        expect(await t.service.db.prisma.changeEvent.findFirst({ where: { marketoId: person.id, operation: 'SYNC_PERSON' } })).not.toBeNull();
      } finally {
        t.dataverse.clearFaults();
      }
    }, 60_000);
  });

  describe('Dataverse webhook steps', () => {
    it('accepts the reference sample with the WebhookKey and recognises its redelivery', async () => {
      const first = await dynamics(sample).expect(202);
      expect(first.body).toEqual({ status: 'queued', eventId: expect.any(String) });
      const row = await t.service.db.prisma.changeEvent.findUniqueOrThrow({ where: { id: first.body.eventId } });
      expect(row).toMatchObject({ source: 'DYNAMICS', operation: 'UPDATE', dynamicsEntity: 'CONTACT', dynamicsId: '6d81597f-0f9f-e711-8122-000d3aa2331c' });
      const again = await dynamics(sample).expect(202);
      expect(again.body).toEqual({ status: 'duplicate', eventId: first.body.eventId });
      expect(await stored()).toBe(1);
    });

    it('accepts the secret in an X-Webhook-Secret header too', async () => {
      await t.http
        .post('/webhooks/dynamics')
        .set('content-type', 'application/json')
        .set('x-webhook-secret', t.service.webhookSecrets.dynamics)
        .send(sample)
        .expect(202);
    });

    it('refuses a missing or wrong WebhookKey with 401, storing nothing', async () => {
      await dynamics(sample, null).expect(401);
      await dynamics(sample, 'wrong').expect(401);
      expect(await stored()).toBe(0);
    });

    it('queues one FANOUT event for an Update of an account (its contacts’ company fields follow), and ignores its Create', async () => {
      const update = await dynamics(sampleWith({ PrimaryEntityName: 'account', OperationId: '21111111-2222-4333-8444-555555555555' })).expect(202);
      expect(update.body.status).toBe('queued');
      const created = await dynamics(sampleWith({ PrimaryEntityName: 'account', MessageName: 'Create' })).expect(202);
      expect(created.body.status).toBe('ignored');
      const events = await t.service.db.prisma.changeEvent.findMany();
      expect(events.map((e) => [e.operation, e.dynamicsEntity, (e.payload as { related?: string }).related])).toEqual([['FANOUT', null, 'account']]);
      await t.service.db.prisma.changeEvent.deleteMany();
    });

    it('ignores other tables, other messages, and the sync user’s own writes', async () => {
      const account = await dynamics(sampleWith({ PrimaryEntityName: 'opportunity' })).expect(202);
      const assign = await dynamics(sampleWith({ MessageName: 'Assign' })).expect(202);
      const syncUser = t.service.sandbox!.dataverse.syncUserId;
      const echo = await dynamics(sampleWith({ InitiatingUserId: syncUser, OperationId: '11111111-2222-4333-8444-555555555555' })).expect(202);
      expect([account.body.status, assign.body.status, echo.body.status]).toEqual(['ignored', 'ignored', 'ignored']);
      expect(await stored()).toBe(0);
    });

    it('answers 422 with the path for a body that is not a RemoteExecutionContext', async () => {
      const res = await dynamics(JSON.stringify({ MessageName: 'Update', PrimaryEntityName: 'contact' })).expect(422);
      expect(res.body.error.code).toBe('invalid_body');
      expect(res.body.error.path).toMatch(/^\$/);
      expect(await stored()).toBe(0);
    });
  });
});
