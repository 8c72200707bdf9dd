import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedSandbox, type SandboxSeed } from '../../src/sandbox/seed.ts';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// Every GraphQL block of the cookbook (docs/graphql-cookbook.md) runs, unchanged, against a
// seeded sandbox with a collision in its log: the README's answers must not rot.

const cookbook = await readFile(new URL('../../docs/graphql-cookbook.md', import.meta.url), 'utf8');
const queries = [...cookbook.matchAll(/^## (.+)\n[\s\S]*?```graphql\n([\s\S]*?)```/gm)].map((m) => ({ title: m[1]!, query: m[2]! }));

describe.each(testEngines())('the GraphQL cookbook on %s', (engine) => {
  let t: TestService;
  let seeded: SandboxSeed;

  beforeAll(async () => {
    t = await bootService(engine);
    const seed = await seedSandbox({ sandbox: t.service.sandbox!, db: t.service.db });
    seeded = seed;
    const contact = seed.contacts[0]!;
    // the initial sync must be over: an edit it still carries across is no collision, only a later edit
    await t.settle();
    t.marketo.updateLead(contact.marketoId!, { title: 'Marketing title' });
    t.dataverse.update('contact', contact.dynamicsId!, { jobtitle: 'Sales title' });
    await t.settle();
  }, 120_000);
  afterAll(async () => {
    await t.stop();
  });

  it('shows company and owner fields on the seeded contacts’ persons on day one', () => {
    const person = t.marketo.getLead(seeded.contacts[0]!.marketoId!)!;
    expect(person.company).toBe(seeded.accounts[0]!.name);
    expect(person).toMatchObject({ industry: expect.any(String), annualRevenue: expect.any(Number), dynamicsOwnerName: seeded.owners[0]!.name });
    expect(t.marketo.getLead(seeded.leads[0]!.marketoId!)!.dynamicsOwnerEmail).toMatch(/@contoso\.example$/);
  });

  it('has the ten questions admins ask, and more', () => {
    expect(queries.length).toBeGreaterThanOrEqual(10);
  });

  it.each(queries.map((q) => [q.title, q.query] as const))('answers "%s" without errors', async (_title, query) => {
    const response = await t.http.post('/graphql').set('authorization', `Bearer ${t.service.graphqlToken}`).send({ query });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(response.body.errors, JSON.stringify(response.body.errors)).toBeUndefined();
    expect(response.body.data).toBeTruthy();
  });

  it('shows the collision the seed data produced', async () => {
    const response = await t.http
      .post('/graphql')
      .set('authorization', `Bearer ${t.service.graphqlToken}`)
      .send({ query: '{ collisions(first: 5) { edges { node { field winner losingValue } } } }' });
    expect(response.body.data.collisions.edges).toEqual([{ node: { field: 'title', winner: 'DYNAMICS', losingValue: 'Marketing title' } }]);
  });
});
