import type { FieldBinding, MarketoFieldAccess, MarketoPort, PersonFieldChange, PersonRecord, PersonWriteResult } from '../../sync/ports.ts';
import { normalise, type CanonicalRecordFields } from '../../sync/values.ts';
import { parseMarketoDate, type MarketoClient, type MarketoSyncResult } from './marketo.client.ts';
import type { MarketoLead } from './marketo.schemas.ts';

// The engine's view of Marketo: canonical fields in and out, by REST field name. Updates use
// `updateOnly` with lookupField `id` (Adobe allows `id` only there); creation uses `createOnly`
// by email, so the sync never overwrites a person it did not mean to.

const MAX_HISTORY_PAGES = 10;

export function createMarketoPort(client: MarketoClient): MarketoPort {
  const readFields = (bindings: readonly FieldBinding[]) => [...new Set(['email', 'updatedAt', ...bindings.map((b) => b.marketoField)])];

  function toPerson(lead: MarketoLead, bindings: readonly FieldBinding[]): PersonRecord {
    const fields: CanonicalRecordFields = {};
    for (const binding of bindings) fields[binding.field] = normalise(lead[binding.marketoField], binding.type);
    const email = typeof lead.email === 'string' && lead.email.trim() ? lead.email.trim() : null;
    return { id: lead.id, email, fields, updatedAt: typeof lead.updatedAt === 'string' ? lead.updatedAt : null };
  }

  function toMarketo(fields: CanonicalRecordFields, bindings: readonly FieldBinding[]): Record<string, unknown> {
    const values: Record<string, unknown> = {};
    for (const [field, value] of Object.entries(fields)) {
      const binding = bindings.find((b) => b.field === field);
      if (binding) values[binding.marketoField] = value;
    }
    return values;
  }

  const toResult = (result: MarketoSyncResult): PersonWriteResult => ({
    status: result.status,
    id: result.id ?? null,
    reasons: (result.reasons ?? []).map((r) => ({ code: String(r.code), message: r.message })),
  });

  return {
    async readPersons(ids, bindings, onSent) {
      if (ids.length === 0) return new Map();
      const leads = await client.getLeadsByIds(ids, readFields(bindings), onSent);
      return new Map(leads.map((lead) => [lead.id, toPerson(lead, bindings)]));
    },
    async findPersonsByEmail(emails, bindings) {
      const found = new Map<string, PersonRecord>();
      if (emails.length === 0) return found;
      const leads = await client.getLeadsByEmail(emails, readFields(bindings));
      for (const lead of [...leads].sort((a, b) => a.id - b.id)) {
        const person = toPerson(lead, bindings);
        const key = person.email?.toLowerCase();
        if (key && !found.has(key)) found.set(key, person);
      }
      return found;
    },
    async updatePersons(updates, bindings, fence) {
      if (updates.length === 0) return [];
      const results = await client.syncLeads({
        action: 'updateOnly',
        lookupField: 'id',
        input: updates.map((u) => ({ id: u.id, ...toMarketo(u.fields, bindings) })),
        fence,
      });
      return results.map(toResult);
    },
    async createPersons(records, bindings, fence) {
      if (records.length === 0) return [];
      const results = await client.syncLeads({ action: 'createOnly', lookupField: 'email', input: records.map((r) => toMarketo(r, bindings)), fence });
      return results.map(toResult);
    },
    async setPersonField(id, marketoField, value, fence) {
      const [result] = await client.syncLeads({ action: 'updateOnly', lookupField: 'id', input: [{ id, [marketoField]: value }], fence });
      return result ? toResult(result) : { status: 'skipped', id, reasons: [{ code: 'none', message: 'Marketo returned no result' }] };
    },
    async fieldChangesSince(id, since, bindings) {
      const byName = new Map(bindings.map((b) => [b.marketoField, b]));
      const apiUser = client.apiUser();
      const changes: PersonFieldChange[] = [];
      const token = await client.getPagingToken(since);
      // one person's changes over minutes: a page or two; the bound only guards against a runaway feed
      let pages = 0;
      for await (const page of client.iterateLeadChanges({ nextPageToken: token, fields: [...byName.keys()], leadIds: [id] })) {
        for (const activity of page.items) {
          if (activity.leadId !== id) continue;
          const by = activity.attributes?.find((a) => a.name === 'Modifying User')?.value;
          for (const change of activity.fields ?? []) {
            const binding = byName.get(change.name);
            if (!binding) continue;
            changes.push({ field: binding.field, value: normalise(change.newValue ?? null, binding.type), at: parseMarketoDate(activity.activityDate).getTime(), bySync: apiUser !== undefined && by === apiUser });
          }
        }
        if (++pages >= MAX_HISTORY_PAGES) break;
      }
      return changes.sort((a, b) => a.at - b.at);
    },
    async readListPage(listId, bindings, nextPageToken, pageSize) {
      const page = await client.getListLeads(listId, readFields(bindings), nextPageToken, pageSize);
      return { persons: page.leads.map((lead) => toPerson(lead, bindings)), nextPageToken: page.nextPageToken };
    },
    async fieldAccess(options = {}) {
      const fields = await client.describeLeadFields(options.refresh ? { refresh: true } : {});
      return new Map<string, MarketoFieldAccess>(fields.map((f) => [f.name, { exists: true, updateable: f.updateable, dataType: f.dataType }]));
    },
  };
}
