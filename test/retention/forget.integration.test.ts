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
    // exactly the counts: no arguments (they would name the person)
    expect(tombstone.detail).toEqual({ result: { removed: res.body.data.forgetPerson.removed } });
  });

  it('finds the person by the Dynamics id too, and says so when there is nothing to forget', async () => {
    const created = t.dataverse.create('contact', { firstname: 'Second', lastname: 'Forgotten', emailaddress1: 'second.forgotten@erase.example' });
    await t.settle();
    const res = await gql(`mutation { forgetPerson(dynamicsId: "${String(created.contactid)}") { ok removed { links activities } } }`);
    expect(res.body.data.forgetPerson).toMatchObject({ ok: true, removed: { links: 1 } });
    expect(await everyStoredRow()).not.toContain('second.forgotten@erase.example');
    const again = await gql(`mutation { forgetPerson(dynamicsId: "${String(created.contactid)}") { ok removed { links activities changeEvents } } }`);
    expect(again.body.data.forgetPerson).toEqual({ ok: true, removed: { links: 0, activities: 0, changeEvents: 0 } });
    const refused = await gql('mutation { forgetPerson { ok error } }');
    expect(refused.body.data.forgetPerson).toEqual({ ok: false, error: 'pass marketoId or dynamicsId' });
    const bad = await gql('mutation { forgetPerson(dynamicsId: "not-a-guid") { ok error } }');
    expect(bad.body.data.forgetPerson.ok).toBe(false);
  });
});
