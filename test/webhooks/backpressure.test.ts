import { readFileSync } from 'node:fs';
import express from 'express';
import pino from 'pino';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { errorHandler } from '../../src/http/errors.ts';
import type { NewChangeEvent } from '../../src/inbox/inbox.ts';
import { createInboxIntake, type IntakeStore } from '../../src/inbox/intake.ts';
import type { SyncPerson } from '../../src/sync/sync-person.ts';
import { createDynamicsWebhooks, OVERLOADED_RETRY_AFTER_S } from '../../src/webhooks/dynamics.ts';
import { createMarketoWebhooks } from '../../src/webhooks/marketo.ts';

// The intake's bound, by counting: the store is held shut by a gate, so every accepted webhook
// waits in the queue; what the next one is answered depends only on how many wait.

const fixture = JSON.parse(readFileSync(new URL('../fixtures/dataverse-webhook-contact-update.json', import.meta.url), 'utf8')) as Record<string, unknown>;
const dataverseBody = (n: number) => ({ ...fixture, OperationId: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}` });
const SECRET = 'a-webhook-secret-of-some-length';

function gatedStore() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  let stored = 0;
  const result = () => ({ status: 'queued' as const, id: `e${(stored += 1)}` });
  const store: IntakeStore = {
    batch: async (events: NewChangeEvent[]) => {
      await opened;
      return events.map(result);
    },
    one: async () => {
      await opened;
      return result();
    },
  };
  return { store, open, stored: () => stored };
}

function service(limit: number) {
  const gate = gatedStore();
  const intake = createInboxIntake({} as Database, { limit, marketoReserve: limit, store: gate.store });
  let vendorWork = 0;
  const syncPerson = (() => {
    vendorWork += 1;
    return Promise.resolve({ status: 'created', entity: 'LEAD', dynamicsId: 'x' });
  }) as unknown as SyncPerson;
  const app = express();
  app.use(express.json());
  app.use('/webhooks/marketo', createMarketoWebhooks({ inbox: intake, secret: SECRET, syncPerson, logger: pino({ level: 'silent' }), notify: () => undefined, syncPersonBudgetMs: 1_000 }));
  app.use('/webhooks/dynamics', createDynamicsWebhooks({ inbox: intake, secret: SECRET, syncUserId: () => undefined, notify: () => undefined }));
  app.use(errorHandler(pino({ level: 'silent' })));
  const server = app.listen(0);
  const agent = request(server);
  return {
    intake,
    gate,
    vendorWork: () => vendorWork,
    dataverse: (n: number) => agent.post(`/webhooks/dynamics?code=${SECRET}`).send(dataverseBody(n)),
    personChanged: (id: number) => agent.post('/webhooks/marketo/person-changed').set('X-Webhook-Secret', SECRET).send({ marketoId: id }),
    syncPersonCall: (id: number) => agent.post('/webhooks/marketo/sync-person').set('X-Webhook-Secret', SECRET).send({ marketoId: id }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Starts the requests (supertest sends on then()) and waits until the intake holds `count`. */
async function waitingIn(s: ReturnType<typeof service>, count: number, requests: PromiseLike<request.Response>[]) {
  const answers = requests.map((r) => Promise.resolve(r));
  while (s.intake.stats().queued < count) await new Promise((resolve) => setImmediate(resolve));
  return answers;
}

describe('back-pressure at intake', () => {
  it('answers a Dataverse delivery 503 with Retry-After once the queue is full, and takes it again once there is room', async () => {
    const s = service(3);
    try {
      const first = await waitingIn(s, 3, [s.dataverse(1), s.dataverse(2), s.dataverse(3)]);
      const refused = await s.dataverse(4);
      expect(refused.status).toBe(503);
      expect(refused.headers['retry-after']).toBe(String(OVERLOADED_RETRY_AFTER_S));
      expect(s.intake.stats().shed.dynamics).toBe(1);
      s.gate.open();
      expect((await Promise.all(first)).map((r) => r.status)).toEqual([202, 202, 202]);
      // Dataverse delivers the refused one again: now it is stored
      expect((await s.dataverse(4)).status).toBe(202);
      expect(s.gate.stored()).toBe(4);
    } finally {
      await s.close();
    }
  });

  it('still accepts Marketo webhooks past the Dataverse limit, and sheds one only past their reserve, counted', async () => {
    const s = service(2);
    try {
      const waiting = await waitingIn(s, 2, [s.dataverse(1), s.dataverse(2)]);
      expect((await s.dataverse(3)).status).toBe(503);
      const marketo = await waitingIn(s, 4, [s.personChanged(1), s.personChanged(2)]);
      const shed = await s.personChanged(3);
      expect(shed.status).toBe(503);
      expect(s.intake.stats().shed).toEqual({ dynamics: 1, marketo_person_changed: 1, marketo_sync_person: 0 });
      s.gate.open();
      expect((await Promise.all([...waiting, ...marketo])).map((r) => r.status)).toEqual([202, 202, 202, 202]);
    } finally {
      await s.close();
    }
  });

  it('Sync Person answers queued without starting vendor work on an overloaded replica', async () => {
    const s = service(2);
    try {
      const waiting = await waitingIn(s, 2, [s.dataverse(1), s.dataverse(2)]);
      expect(s.intake.overloaded()).toBe(true);
      const answer = s.syncPersonCall(7).then((r) => r);
      while (s.intake.stats().queued < 3) await new Promise((resolve) => setImmediate(resolve));
      s.gate.open();
      const queued = await answer;
      expect(queued.status).toBe(202);
      expect(queued.body).toMatchObject({ status: 'queued', marketoId: 7 });
      expect(s.vendorWork()).toBe(0);
      await Promise.all(waiting);
      // with room again it works on the request
      expect((await s.syncPersonCall(8)).status).toBe(200);
      expect(s.vendorWork()).toBe(1);
    } finally {
      await s.close();
    }
  });
});
