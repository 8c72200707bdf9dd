import type { CanonicalRecordFields, CanonicalValue } from '../../sync/values.ts';
import { normalise } from '../../sync/values.ts';
import type { LinkedEntity } from '../../sync/policy.ts';
import type { DynamicsColumnAccess, DynamicsPort, DynamicsRecordView, FieldBinding } from '../../sync/ports.ts';
import { dataverseEntitySets, type DataverseClient, type DataverseEntity, type DataverseRecord } from './dataverse.client.ts';
import { DataverseValidationError } from './dataverse.errors.ts';

// The engine's view of Dataverse: canonical fields in, canonical fields out. Option sets go
// through the mapping's value map; the sync filter and the qualifying lead are read alongside.

const SYNC_FILTER = 'new_synctomkto';
const ORIGINATING_LEAD = '_originatingleadid_value';
const EMAIL = 'emailaddress1';

const entityName = (entity: LinkedEntity): DataverseEntity => (entity === 'LEAD' ? 'lead' : 'contact');

export interface DynamicsPortOptions {
  client: DataverseClient;
  /**
   * How long column metadata is trusted. Short: a column newly secured reads as null, and that
   * null must never be taken for a value.
   */
  metadataTtlMs?: number;
  now?: () => number;
}

export function createDynamicsPort(options: DynamicsPortOptions): DynamicsPort {
  const { client } = options;
  const ttl = options.metadataTtlMs ?? 60_000;
  const now = options.now ?? Date.now;
  const accessCache = new Map<LinkedEntity, { at: number; value: Promise<Map<string, DynamicsColumnAccess>> }>();

  function columnAccess(entity: LinkedEntity): Promise<Map<string, DynamicsColumnAccess>> {
    const cached = accessCache.get(entity);
    if (cached && now() - cached.at < ttl) return cached.value;
    const value = client.getColumnAccess(entityName(entity)).then(
      (columns) =>
        new Map(
          columns.map((c) => [
            c.logicalName.toLowerCase(),
            { exists: true, canRead: c.canRead, canUpdate: c.canUpdate, canCreate: c.canCreate, options: c.options },
          ]),
        ),
    );
    accessCache.set(entity, { at: now(), value });
    value.catch(() => accessCache.delete(entity));
    return value;
  }

  async function columnsFor(entity: LinkedEntity, bindings: readonly FieldBinding[]): Promise<string[]> {
    const access = await columnAccess(entity);
    const columns = new Set(bindings.map((b) => b.dynamicsAttribute));
    // Optional columns are only asked for when the table has them: Dataverse refuses unknown ones.
    if (access.get(SYNC_FILTER)?.canRead) columns.add(SYNC_FILTER);
    if (access.get(EMAIL)?.canRead) columns.add(EMAIL);
    if (entity === 'CONTACT' && access.has('originatingleadid')) columns.add(ORIGINATING_LEAD);
    return [...columns];
  }

  function toView(entity: LinkedEntity, record: DataverseRecord, bindings: readonly FieldBinding[]): DynamicsRecordView {
    const fields: CanonicalRecordFields = {};
    for (const binding of bindings) {
      const raw = record.values[binding.dynamicsAttribute];
      if (binding.valueMap && raw !== null && raw !== undefined) {
        const label = binding.valueMap[String(normalise(raw, 'string'))];
        // An option with no mapped label keeps its number, so the mismatch is visible rather than erased.
        fields[binding.field] = label ?? normalise(raw, 'string');
      } else {
        fields[binding.field] = normalise(raw, binding.type);
      }
    }
    const filter = record.values[SYNC_FILTER];
    const email = record.values[EMAIL];
    const originating = record.values[ORIGINATING_LEAD];
    return {
      entity,
      id: record.id.toLowerCase(),
      email: typeof email === 'string' && email.trim() ? email.trim() : null,
      fields,
      etag: record.etag,
      version: String(record.versionnumber),
      modifiedOn: record.modifiedon,
      modifiedBy: record.modifiedby?.toLowerCase() ?? null,
      syncFilter: typeof filter === 'boolean' ? filter : null,
      originatingLeadId: typeof originating === 'string' ? originating.toLowerCase() : null,
    };
  }

  function toDataverse(fields: CanonicalRecordFields, bindings: readonly FieldBinding[]): Record<string, unknown> {
    const values: Record<string, unknown> = {};
    for (const [field, value] of Object.entries(fields)) {
      const binding = bindings.find((b) => b.field === field);
      if (!binding) continue;
      values[binding.dynamicsAttribute] = binding.valueMap ? optionValue(binding, value) : value;
    }
    return values;
  }

  function optionValue(binding: FieldBinding, value: CanonicalValue): number | null {
    if (value === null) return null;
    const entry = Object.entries(binding.valueMap ?? {}).find(([, label]) => label.toLowerCase() === String(value).toLowerCase());
    if (!entry) {
      throw new DataverseValidationError(
        `"${String(value)}" has no Dynamics option in the value map of ${binding.field} (${binding.dynamicsAttribute})`,
        { code: 'unmapped_option' },
      );
    }
    return Number(entry[0]);
  }

  return {
    async syncUserId() {
      return (await client.whoAmI()).userId.toLowerCase();
    },
    async readRecords(entity, ids, bindings) {
      if (ids.length === 0) return new Map();
      const records = await client.getRecords(entityName(entity), ids, await columnsFor(entity, bindings));
      return new Map(records.map((r) => [r.id.toLowerCase(), toView(entity, r, bindings)]));
    },
    async findByEmail(entity, email, bindings) {
      const records = await client.findByEmail(entityName(entity), email, await columnsFor(entity, bindings));
      return records.map((r) => toView(entity, r, bindings));
    },
    async update(entity, id, fields, bindings, etag, fence) {
      const record = await client.updateRecord(entityName(entity), id, toDataverse(fields, bindings), {
        etag,
        columns: await columnsFor(entity, bindings),
        fence,
      });
      return toView(entity, record, bindings);
    },
    async create(entity, fields, bindings, owner, fence, id) {
      // a journaled key (create-intents.ts): a resend of the same create answers "exists", never a second record
      const values = id ? { ...toDataverse(fields, bindings), [dataverseEntitySets[entityName(entity)].key]: id } : toDataverse(fields, bindings);
      const record = await client.createRecord(entityName(entity), values, {
        columns: await columnsFor(entity, bindings),
        ...(owner ? { owner } : {}),
        fence,
      });
      return toView(entity, record, bindings);
    },
    columnAccess,
    invalidateMetadata(entity) {
      if (entity) accessCache.delete(entity);
      else accessCache.clear();
    },
  };
}
