import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// GraphQL on the real service, after real syncs: the questions admins ask are answered from what
// the engine recorded, and operator actions go through the same path as any change.

describe.each(testEngines())('GraphQL over a running sync on %s', (engine) => {
  let t: TestService;
  const gql = (query: string, variables: Record<string, unknown> = {}) =>
    t.http.post('/graphql').set('authorization', `Bearer ${t.service.graphqlToken}`).send({ query, variables });

  beforeAll(async () => {
    t = await bootService(engine);
  });
  afterAll(async () => {
    await t.stop();
  });

  async function leadCollision() {
    const created = t.dataverse.create('lead', { firstname: 'Ada', lastname: 'Lovelace', emailaddress1: `ada.${Date.now()}@example.com`, jobtitle: 'CTO' });
    await t.settle();
    const link = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId: String(created.leadid) } });
    t.marketo.updateLead(link.marketoId, { title: 'Marketing title' });
    t.dataverse.update('lead', link.dynamicsId, { jobtitle: 'Sales title' });
    await t.marketoWebhook('person-changed', { marketoId: link.marketoId }).expect(202);
    await t.settle();
    return link;
  }

  it("answers a person's collision with one query: both values, the base, the winner and the rule", async () => {
    const link = await leadCollision();
    const res = await gql(
      `query Person($id: ID!) {
        link(marketoId: $id) {
          status dynamicsEntity dynamicsId
          fields { field value origin { side } }
          activities(types: [COLLISION_RESOLVED]) { edges { node { type message fields { field marketoValue dynamicsValue baseValue winner rule losingValue } } } }
        }
      }`,
      { id: String(link.marketoId) },
    ).expect(200);
    expect(res.body.errors).toBeUndefined();
    const person = res.body.data.link;
    expect(person).toMatchObject({ status: 'ACTIVE', dynamicsEntity: 'LEAD', dynamicsId: link.dynamicsId });
    expect(person.activities.edges[0].node.fields[0]).toEqual({
      field: 'title',
      marketoValue: 'Marketing title',
      dynamicsValue: 'Sales title',
      baseValue: 'CTO',
      winner: 'MARKETO',
      rule: 'LEAD_MARKETO_WINS',
      losingValue: 'Sales title',
    });
    expect(person.fields).toEqual(expect.arrayContaining([expect.objectContaining({ field: 'title', value: 'Marketing title', origin: { side: 'MARKETO' } })]));
  });

  it('resolveCollision keeps the losing value on purpose, on both sides', async () => {
    const link = await leadCollision();
    const collisions = await gql(`query($id: ID) { collisions(marketoId: $id) { edges { node { id } } } }`, { id: String(link.marketoId) });
    expect(collisions.body.errors).toBeUndefined();
    const activityId = collisions.body.data.collisions.edges[0].node.id as string;
    const res = await gql(`mutation($id: ID!) { resolveCollision(activityId: $id, keep: DYNAMICS) { ok error } }`, { id: activityId }).expect(200);
    expect(res.body.data.resolveCollision).toEqual({ ok: true, error: null });
    await t.settle();
    expect(t.marketo.getLead(link.marketoId)?.title).toBe('Sales title');
    expect(t.dataverse.get('lead', link.dynamicsId)?.jobtitle).toBe('Sales title');
  });

  it('requestPersonSync goes through the inbox and the normal merge', async () => {
    const link = await leadCollision();
    t.marketo.updateLead(link.marketoId, { city: 'Berlin' });
    const res = await gql(`mutation($id: ID!) { requestPersonSync(marketoId: $id) { ok error } }`, { id: String(link.marketoId) }).expect(200);
    expect(res.body.data.requestPersonSync.ok).toBe(true);
    await t.settle();
    expect(t.dataverse.get('lead', link.dynamicsId)?.address1_city).toBe('Berlin');
  });

  it('refuses a field mapping to a column the Dynamics sync user cannot read, with the reason', async () => {
    t.dataverse.secureColumn('contact', 'description', { read: false, update: false, create: false });
    t.service.refreshMetadata();
    const res = await gql(
      `mutation { upsertFieldMapping(input: { entity: CONTACT, canonicalField: "notes", marketoField: "leadSource", dynamicsAttribute: "description", direction: BOTH }) { ok error } }`,
    ).expect(200);
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.upsertFieldMapping.ok).toBe(false);
    expect(res.body.data.upsertFieldMapping.error).toContain('cannot read');
  });

  it('refuses requests without the bearer token, before reading their body', async () => {
    const res = await t.http.post('/graphql').send({ query: '{ syncStatus { backlog { pending } } }' });
    expect(res.status).toBe(401);
    const malformed = await t.http.post('/graphql').set('content-type', 'application/json').send('{"query": ');
    expect(malformed.status).toBe(401);
    expect(malformed.body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
  });
});
