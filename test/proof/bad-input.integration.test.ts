import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDataverseWebhook } from '../../src/connectors/dynamics/webhook-context.ts';
import { personChangedBodySchema, syncPersonBodySchema } from '../../src/webhooks/marketo.ts';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// SPEC "Bad input gets a clear answer and loses nothing", as properties: whatever arrives at the
// three webhook endpoints and /graphql — random JSON, wrong types, huge strings, deep nesting,
// wrong content types, invalid UTF-8, oversized bodies — the answer is never a 5xx, an invalid
// body stores no event, and a refusal is a 4xx from SPEC's table with a JSON error naming the
// problem. The inbox worker is stopped so every stored event stays countable.

const sample = readFileSync(new URL('../fixtures/dataverse-webhook-contact-update.json', import.meta.url), 'utf8');
const sampleObject = JSON.parse(sample) as Record<string, unknown>;
const BODY_LIMIT = 512 * 1024;

interface BadRequest {
  label: string;
  contentType: string | undefined;
  body: string | Buffer;
}

/** fast-check prints counterexamples: show the label and size, not a 500 KB body */
const labelled = (bad: BadRequest): BadRequest =>
  Object.assign(bad, { [fc.toStringMethod]: () => `${bad.label} [${bad.contentType ?? 'no content type'}, ${Buffer.byteLength(bad.body)} bytes]: ${String(bad.body).slice(0, 120)}` });
const json = (label: string, value: unknown): BadRequest => ({ label, contentType: 'application/json', body: JSON.stringify(value) });

/** Bodies for one endpoint; `validShape` seeds the "almost right" cases (wrong type in one field). */
function badRequests(validShape: Record<string, unknown>): fc.Arbitrary<BadRequest> {
  const keys = Object.keys(validShape);
  return fc.oneof(
    fc.json({ maxDepth: 4 }).map((text) => ({ label: 'random JSON', contentType: 'application/json', body: text })),
    fc.anything({ maxDepth: 3 }).map((value) => json('random value', value ?? null)),
    fc
      .record({ key: fc.constantFrom(...keys), value: fc.anything({ maxDepth: 2 }) })
      .map(({ key, value }) => json(`wrong type at ${key}`, { ...validShape, [key]: value ?? null })),
    fc
      .record({ key: fc.constantFrom(...keys), length: fc.integer({ min: 1_000, max: 400_000 }) })
      .map(({ key, length }) => json(`huge string at ${key}`, { ...validShape, [key]: 'x'.repeat(length) })),
    fc.integer({ min: 50, max: 20_000 }).map((depth) => ({
      label: `nested ${depth} deep`,
      contentType: 'application/json',
      body: `${'['.repeat(depth)}${']'.repeat(depth)}`,
    })),
    fc.integer({ min: 50, max: 5_000 }).map((depth) => ({
      label: `a valid body with a hint nested ${depth} deep`,
      contentType: 'application/json',
      body: `{"marketoId":1,"hint":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`,
    })),
    fc
      .record({
        contentType: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'text/html', undefined),
      })
      .map(({ contentType }) => ({ label: `content type ${contentType ?? 'none'}`, contentType, body: JSON.stringify(validShape) })),
    fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes) => ({
      label: 'invalid UTF-8 inside a string',
      contentType: 'application/json',
      body: Buffer.concat([Buffer.from('{"marketoId":1,"note":"'), Buffer.from(bytes.map((b) => (b === 0x22 || b === 0x5c ? 0xff : b))), Buffer.from('"}')]),
    })),
    fc.string({ unit: 'binary', maxLength: 40 }).map((text) => json('control characters and lone surrogates in a hint', { ...validShape, note: text })),
    fc.constantFrom('utf-16', 'latin1', 'koi8-r').map((charset) => ({
      label: `charset ${charset}`,
      contentType: `application/json; charset=${charset}`,
      body: JSON.stringify(validShape),
    })),
    fc.integer({ min: BODY_LIMIT + 1, max: BODY_LIMIT + 64 * 1024 }).map((size) => ({
      label: `oversized body (${size} bytes)`,
      contentType: 'application/json',
      body: `{"marketoId":1,"pad":"${'a'.repeat(size)}"}`,
    })),
  ).map(labelled);
}

function parsedBody(body: string | Buffer): unknown {
  try {
    return JSON.parse(Buffer.isBuffer(body) ? body.toString('utf8') : body) as unknown;
  } catch {
    return Symbol('not JSON');
  }
}

const isJsonContentType = (contentType: string | undefined) =>
  contentType !== undefined && /^application\/(json|[\w.+-]+\+json)\s*(;\s*charset=utf-8)?$/i.test(contentType);

describe.each(testEngines())('bad input on %s', (engine) => {
  let t: TestService;
  const stored = () => t.service.db.prisma.changeEvent.count();

  beforeAll(async () => {
    t = await bootService(engine);
    await t.service.worker.stop();
  });
  afterAll(async () => {
    await t.stop();
  });

  async function send(path: string, bad: BadRequest, headers: Record<string, string>) {
    let req = request(t.service.url).post(path);
    for (const [name, value] of Object.entries(headers)) req = req.set(name, value);
    if (bad.contentType !== undefined) req = req.set('content-type', bad.contentType);
    return req.send(bad.body);
  }

  /** Runs the property against one webhook endpoint; `valid` says whether a body is a known event shape. */
  async function checkWebhook(path: string, shape: Record<string, unknown>, headers: Record<string, string>, valid: (body: unknown) => boolean) {
    await fc.assert(
      fc.asyncProperty(badRequests(shape), async (bad) => {
        const before = await stored();
        const res = await send(path, bad, headers);
        const after = await stored();
        const context = `${bad.label} -> ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`;
        expect(res.status, context).toBeLessThan(500);
        expect([200, 202, 400, 404, 413, 415, 422], context).toContain(res.status);
        const acceptable = isJsonContentType(bad.contentType) && Buffer.byteLength(bad.body) <= BODY_LIMIT && valid(parsedBody(bad.body));
        if (res.status >= 400) {
          // a clear answer: a JSON error with a code and a message naming the problem
          expect(res.body.error?.code, context).toEqual(expect.any(String));
          expect(res.body.error?.message, context).toEqual(expect.stringMatching(/\S/));
          if (res.status === 422) expect(res.body.error.path, context).toMatch(/^\$/);
          expect(after, `${context}: a refused body stored an event`).toBe(before);
        } else if (!acceptable) {
          // only Dataverse's "ignored" (another table or message) may answer 2xx to an unknown shape, storing nothing
          expect(res.body.status, context).toBe('ignored');
          expect(after, context).toBe(before);
        }
        if (bad.contentType !== undefined && !isJsonContentType(bad.contentType) && !/charset/.test(bad.contentType)) expect(res.status, context).toBe(415);
        if (Buffer.byteLength(bad.body) > BODY_LIMIT) expect(res.status, context).toBe(413);
      }),
      { numRuns: 60, seed: 4242 },
    );
  }

  it('POST /webhooks/marketo/person-changed never answers 5xx and stores nothing it refuses', async () => {
    await checkWebhook('/webhooks/marketo/person-changed', { marketoId: 1 }, { 'x-webhook-secret': t.service.webhookSecrets.marketo }, (b) =>
      personChangedBodySchema.safeParse(b).success,
    );
  }, 60_000);

  it('POST /webhooks/marketo/sync-person never answers 5xx and stores nothing it refuses', async () => {
    await checkWebhook(
      '/webhooks/marketo/sync-person',
      { marketoId: 1, syncAs: 'lead', assignTo: '' },
      { 'x-webhook-secret': t.service.webhookSecrets.marketo },
      (b) => syncPersonBodySchema.safeParse(b).success,
    );
  }, 60_000);

  it('POST /webhooks/dynamics never answers 5xx and stores nothing it refuses', async () => {
    await checkWebhook('/webhooks/dynamics', sampleObject, { 'x-webhook-secret': t.service.webhookSecrets.dynamics }, (b) => parseDataverseWebhook(b).ok);
  }, 60_000);

  it('POST /graphql answers every malformed request with a 4xx or a GraphQL error, never a 5xx', async () => {
    const graphqlBodies = fc.oneof(
      badRequests({ query: '{ syncStatus { backlog { pending } } }', variables: {} }),
      fc.string({ maxLength: 200 }).map((query) => json('random query text', { query })),
      fc.integer({ min: 20, max: 3_000 }).map((depth) => json(`query nested ${depth} deep`, { query: `{ ${'link(marketoId: 1) { '.repeat(depth)}id${' }'.repeat(depth)} }` })),
      fc.integer({ min: 20, max: 500 }).map((n) => json(`${n} aliases`, { query: `{ ${Array.from({ length: n }, (_, i) => `a${i}: syncStatus { backlog { pending } }`).join(' ')} }` })),
      fc.anything({ maxDepth: 2 }).map((variables) => json('variables of any type', { query: 'query($id: ID) { link(marketoId: $id) { marketoId } }', variables: variables ?? null })),
    ).map(labelled);
    await fc.assert(
      fc.asyncProperty(graphqlBodies, fc.boolean(), async (bad, authenticated) => {
        const res = await send('/graphql', bad, authenticated ? { authorization: `Bearer ${t.service.graphqlToken}`, accept: 'application/json' } : { accept: 'application/json' });
        const context = `${bad.label} (${authenticated ? 'with' : 'without'} token) -> ${res.status} ${res.text.slice(0, 300)}`;
        expect(res.status, context).toBeLessThan(500);
        // without the token nothing runs: 401, or the body's own 4xx when it cannot even be read
        if (!authenticated) expect([400, 401, 413, 415], context).toContain(res.status);
        if (res.status === 200) {
          // only a well-formed, allowed query may run; anything else carries GraphQL errors
          const body = JSON.parse(res.text) as { data?: unknown; errors?: unknown[] };
          if (body.errors) expect(body.errors.length, context).toBeGreaterThan(0);
        }
      }),
      { numRuns: 80, seed: 4242 },
    );
    // the server is unaffected: a normal query still answers
    const ok = await request(t.service.url)
      .post('/graphql')
      .set('authorization', `Bearer ${t.service.graphqlToken}`)
      .send({ query: '{ syncStatus { backlog { pending } } }' });
    expect(ok.status).toBe(200);
    expect(ok.body.data.syncStatus.backlog.pending).toEqual(expect.any(Number));
  }, 60_000);
});
