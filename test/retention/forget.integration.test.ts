import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEngines } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// forgetPerson on the real service: after a person synced both ways (links, activities, events,
// a collision, a sweep), erasure leaves no stored row in any table with their email, name or
// values, keeps everybody else, leaves Marketo and Dynamics alone, and keeps only an anonymous
// audit entry.

const person = {
  firstname: 'Zephyrine',
  lastname: 'Quillfeather',
  emailaddress1: 'zephyrine.quillfeather@erase.example',
  jobtitle: 'Keeper of Forgotten Things',
  address1_city: 'Vlieland',
};
const bystander = { firstname: 'Barnaby', lastname: 'Staysworth', emailaddress1: 'barnaby.staysworth@keep.example', jobtitle: 'Stays' };

describe.each(testEngines())('forgetPerson on %s', (engine) => {
  let t: TestService;
  const gql = (query: string, token = t.service.graphqlToken!) => t.http.post('/graphql').set('authorization', `Bearer ${token}`).send({ query });

  /** every row of every table of the database, as text */
  async function everyStoredRow(): Promise<string> {
    const tables = await t.service.db.prisma.$queryRaw<{ table_name: string }[]>`
      SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`;
    expect(tables.map((r) => r.table_name)).toEqual(expect.arrayContaining(['sync_link', 'activity', 'change_event', 'audit_entry', 'sync_run']));
    const texts: string[] = [];
    for (const { table_name } of tables) {
      const rows = await t.service.db.prisma.$queryRawUnsafe<{ row: string }[]>(`SELECT t::text AS row FROM "${table_name}" t`);
      texts.push(...rows.map((r) => `${table_name}: ${r.row}`));
    }
    return texts.join('\n').toLowerCase();
  }

  beforeAll(async () => {
    t = await bootService(engine);
  }, 120_000);
  afterAll(async () => {
    await t.stop();
  });

  it('deletes every stored value of the person, keeps the others, and leaves only an anonymous tombstone', async () => {
    const created = t.dataverse.create('contact', person);
    const other = t.dataverse.create('contact', bystander);
    await t.settle();
    const link = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId: String(created.contactid) } });
    // edits on both sides (a collision), and a sweep, so every table has had a chance to hold values
    t.marketo.updateLead(link.marketoId, { title: 'Marketing Keeper Title' });
    t.dataverse.update('contact', String(created.contactid), { jobtitle: 'Sales Keeper Title', address1_city: 'Terschelling' });
    await t.settle();
    await t.service.sweeper.requestSweep({ trigger: 'CLI' });
    await t.settle();

    const values = [person.firstname, person.lastname, person.emailaddress1, person.jobtitle, person.address1_city, 'Marketing Keeper Title', 'Sales Keeper Title', 'Terschelling'];
    const before = await everyStoredRow();
    expect(values.filter((v) => before.includes(v.toLowerCase())).length).toBeGreaterThan(3); // the scan does find them

    const res = await gql(`mutation { forgetPerson(marketoId: ${link.marketoId}) { ok error removed { links activities changeEvents } } }`);
    expect(res.body.data.forgetPerson).toMatchObject({ ok: true, error: null, removed: { links: 1 } });
    expect(res.body.data.forgetPerson.removed.activities).toBeGreaterThan(0);
    expect(res.body.data.forgetPerson.removed.changeEvents).toBeGreaterThan(0);

    const after = await everyStoredRow();
    for (const value of values) expect(after.includes(value.toLowerCase()), `${value} is still stored`).toBe(false);
    // everybody else is still there
    expect(after).toContain(bystander.emailaddress1);
    expect(await t.service.db.prisma.syncLink.count({ where: { dynamicsId: String(other.contactid) } })).toBe(1);
    // Marketo and Dynamics are not touched
    expect(t.marketo.getLead(link.marketoId)).toMatchObject({ email: person.emailaddress1 });
    expect(t.dataverse.get('contact', String(created.contactid))).toMatchObject({ emailaddress1: person.emailaddress1 });

    // the tombstone: that it was done, by which token, when; no id, no value
    const tombstone = await t.service.db.prisma.auditEntry.findFirstOrThrow({ where: { action: 'forgetPerson' } });
    expect(tombstone).toMatchObject({ outcome: 'OK', tokenName: 'sandbox' });
    const text = JSON.stringify(tombstone.detail);
    expect(text).not.toContain(String(created.contactid));
    // the counts and pseudonyms: no arguments (they would name the person)
    expect(tombstone.detail).toEqual({ result: { removed: res.body.data.forgetPerson.removed, erasureId: expect.any(String), pseudonyms: expect.any(Array) } });
    expect(text.toLowerCase()).not.toContain(person.emailaddress1);
    for (const p of (tombstone.detail as { result: { pseudonyms: string[] } }).result.pseudonyms) expect(p).toMatch(/^[med]~[0-9a-f]{12}$/);
  });

  it('lasts: a sweep, a full reconciliation, webhooks and Sync Person leave no row about the person until an admin lifts the erasure', async () => {
    const someone = { firstname: 'Ottoline', lastname: 'Vanishwell', emailaddress1: 'ottoline.vanishwell@erase.example', jobtitle: 'Gone' };
    const created = t.dataverse.create('contact', someone);
    await t.settle();
    const link = await t.service.db.prisma.syncLink.findFirstOrThrow({ where: { dynamicsId: String(created.contactid) } });
    const erased = await gql(`mutation { forgetPerson(marketoId: ${link.marketoId}) { ok erasureId pseudonyms } }`);
    expect(erased.body.data.forgetPerson.ok).toBe(true);
    const { erasureId, pseudonyms } = erased.body.data.forgetPerson as { erasureId: string; pseudonyms: string[] };
    for (const p of pseudonyms) expect(p).toMatch(/^[med]~[0-9a-f]{12}$/);
    expect(pseudonyms.map((p) => p[0]).sort()).toEqual(['d', 'e', 'm']);

    // the person goes on living in both systems: edits, a sweep, a full reconciliation, webhooks, Sync Person
    t.marketo.updateLead(link.marketoId, { title: 'Still Here' });
    t.dataverse.update('contact', String(created.contactid), { jobtitle: 'Still Here Too' });
    await t.settle();
    await t.service.sweeper.requestSweep({ trigger: 'CLI' });
    await t.service.sweeper.requestSweep({ trigger: 'CLI', full: true });
    await t.settle();
    const changed = await t.marketoWebhook('person-changed', { marketoId: link.marketoId });
    expect(changed.status).toBe(202);
    expect(changed.body).toMatchObject({ status: 'ignored', eventId: null });
    const synced = await t.marketoWebhook('sync-person', { marketoId: link.marketoId });
    expect(synced.status).toBe(422);
    expect(synced.body.error.code).toBe('person_erased');
    await t.settle();

    const rows = await everyStoredRow();
    for (const trace of [someone.emailaddress1, String(created.contactid), someone.lastname.toLowerCase(), 'still here']) expect(rows.includes(trace), `${trace} is stored`).toBe(false);
    const byId = await t.service.db.prisma.changeEvent.count({ where: { OR: [{ marketoId: link.marketoId }, { dynamicsId: String(created.contactid) }] } });
    expect(byId).toBe(0);
    expect(await t.service.db.prisma.activity.count({ where: { OR: [{ marketoId: link.marketoId }, { dynamicsId: String(created.contactid) }] } })).toBe(0);
    // the list is the trace: pseudonyms, visible to any token
    const list = await gql('{ erasures { id identifiers { kind pseudonym } } }');
    const entry = list.body.data.erasures.find((e: { id: string }) => e.id === erasureId);
    expect(entry.identifiers.map((i: { pseudonym: string }) => i.pseudonym).sort()).toEqual([...pseudonyms].sort());

    // an admin lifts it: the next webhook is accepted again
    const lifted = await gql(`mutation { liftErasure(erasureId: "${erasureId}") { ok lifted } }`);
    expect(lifted.body.data.liftErasure).toMatchObject({ ok: true });
    expect(lifted.body.data.liftErasure.lifted).toBeGreaterThanOrEqual(3);
    const again = await t.marketoWebhook('person-changed', { marketoId: link.marketoId });
    expect(again.body.status).toBe('queued');
    t.dataverse.update('contact', String(created.contactid), { jobtitle: 'Back Again' });
    await t.settle();
    expect(await t.service.db.prisma.syncLink.count({ where: { dynamicsId: String(created.contactid) } })).toBe(1);
  });

  it('finds the person by the Dynamics id too, and says so when there is nothing to forget', async () => {
    const created = t.dataverse.create('contact', { firstname: 'Second', lastname: 'Forgotten', emailaddress1: 'second.forgotten@erase.example' });
    await t.settle();
    const res = await gql(`mutation { forgetPerson(dynamicsId: "${String(created.contactid)}") { ok removed { links activities } } }`);
    expect(res.body.data.forgetPerson).toMatchObject({ ok: true, removed: { links: 1 } });
    expect(await everyStoredRow()).not.toContain('second.forgotten@erase.example');
    const again = await gql(`mutation { forgetPerson(dynamicsId: "${String(created.contactid)}") { ok removed { links activities changeEvents } } }`);
    expect(again.body.data.forgetPerson).toEqual({ ok: true, removed: { links: 0, activities: 0, changeEvents: 0 } });
    const lifted = await gql(`mutation { liftErasure(dynamicsId: "${String(created.contactid)}") { ok lifted } }`);
    expect(lifted.body.data.liftErasure.ok).toBe(true);
    const refused = await gql('mutation { forgetPerson { ok error } }');
    expect(refused.body.data.forgetPerson).toEqual({ ok: false, error: 'pass marketoId or dynamicsId' });
    const bad = await gql('mutation { forgetPerson(dynamicsId: "not-a-guid") { ok error } }');
    expect(bad.body.data.forgetPerson.ok).toBe(false);
  });
});
