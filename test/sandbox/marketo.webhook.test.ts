import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { startMarketoSimulator, type MarketoWebhookDefinition, type StartedMarketoSimulator } from '../../src/sandbox/marketo/index.ts';

type Received = { headers: Record<string, unknown>; body: string; url: string };

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function receiver(reply: (req: express.Request, res: express.Response) => void) {
  const received: Received[] = [];
  const app = express();
  app.use(express.text({ type: () => true }));
  app.all('/{*path}', (req, res) => {
    received.push({ headers: req.headers, body: typeof req.body === 'string' ? req.body : '', url: req.originalUrl });
    reply(req, res);
  });
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

async function simulator(webhookTimeoutMs = 30_000): Promise<StartedMarketoSimulator> {
  const sim = await startMarketoSimulator({ webhookTimeoutMs });
  cleanups.push(() => sim.close());
  return sim;
}

function definition(url: string, extra: Partial<MarketoWebhookDefinition> = {}): MarketoWebhookDefinition {
  return {
    name: 'Sync Person to Microsoft',
    url: `${url}/webhooks/marketo/sync-person?id={{lead.Id}}`,
    method: 'POST',
    tokenEncoding: 'json',
    template: '{"marketoId": {{lead.Id}}, "email": {{lead.Email Address}}, "firstName": {{lead.First Name}}, "title": {{lead.Job Title}}, "syncAs": {{my.SyncAs}}}',
    headers: { 'Content-Type': 'application/json', 'X-Webhook-Secret': '{{my.Secret}}' },
    responseType: 'json',
    responseMappings: [
      { attribute: 'dynamicsId', field: 'DynamicsId' },
      { attribute: 'link.entity', field: 'DynamicsEntity' },
    ],
    ...extra,
  };
}

describe('Marketo simulator: Call Webhook', () => {
  it('renders JSON tokens with quoting, sends custom headers and applies response mappings on 2xx', async () => {
    const remote = await receiver((_req, res) => res.json({ dynamicsId: 'abc-123', link: { entity: 'contact' } }));
    const sim = await simulator();
    const lead = sim.admin.createLead({ email: 'ann@example.com', firstName: 'Ann "the" O\'Neil' });
    const [result] = await sim.admin.fireWebhook(definition(remote.url), [lead.id], { 'my.Secret': 's3cret', 'my.SyncAs': 'contact' });

    expect(remote.received).toHaveLength(1);
    const call = remote.received[0]!;
    expect(call.url).toBe(`/webhooks/marketo/sync-person?id=${lead.id}`);
    expect(call.headers['x-webhook-secret']).toBe('s3cret');
    expect(JSON.parse(call.body)).toEqual({ marketoId: lead.id, email: 'ann@example.com', firstName: 'Ann "the" O\'Neil', title: null, syncAs: 'contact' });
    expect(result).toMatchObject({ status: 200, errorType: null, mappedFields: { dynamicsId: 'abc-123', dynamicsEntity: 'contact' } });
    expect(sim.admin.getLead(lead.id)).toMatchObject({ dynamicsId: 'abc-123', dynamicsEntity: 'contact' });

    const activities = sim.admin.activities({ leadId: lead.id });
    expect(activities.map((a) => a.activityTypeId)).toEqual([12, 13, 13, 110]);
    expect(activities[1]!.attributes).toContainEqual({ name: 'Source', value: 'Webhook' });
  });

  it('does not apply mappings on a non-2xx answer, records the reason phrase and does not retry', async () => {
    const remote = await receiver((_req, res) => res.status(500).json({ dynamicsId: 'never' }));
    const sim = await simulator();
    const lead = sim.admin.createLead({ email: 'bob@example.com' });
    const [result] = await sim.admin.fireWebhook(definition(remote.url), [lead.id]);
    expect(result).toMatchObject({ status: 500, errorType: 'Internal Server Error', mappedFields: {} });
    expect(remote.received).toHaveLength(1);
    expect(sim.admin.getLead(lead.id)).not.toHaveProperty('dynamicsId');
    const [callWebhook] = sim.admin.activities({ leadId: lead.id, typeIds: [110] });
    expect(callWebhook!.attributes).toContainEqual({ name: 'Error Type', value: 'Internal Server Error' });
  });

  it('gives up after the webhook timeout without retrying', async () => {
    const remote = await receiver(() => undefined);
    const sim = await simulator(150);
    const lead = sim.admin.createLead({ email: 'slow@example.com' });
    const [result] = await sim.admin.fireWebhook(definition(remote.url), [lead.id]);
    expect(result).toMatchObject({ status: null, errorType: 'Timeout' });
    expect(remote.received).toHaveLength(1);
  });

  it('skips a mapping whose value does not fit the field type', async () => {
    const remote = await receiver((_req, res) => res.json({ flag: 'not-a-boolean' }));
    const sim = await simulator();
    const lead = sim.admin.createLead({ email: 'c@example.com' });
    const [result] = await sim.admin.fireWebhook(
      definition(remote.url, { responseMappings: [{ attribute: 'flag', field: 'MicrosoftIsDeleted' }] }),
      [lead.id],
    );
    expect(result?.skippedMappings).toHaveLength(1);
    expect(sim.admin.getLead(lead.id)).not.toHaveProperty('microsoftIsDeleted');
  });
});
