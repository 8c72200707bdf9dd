import type { CanonicalRecordFields, CanonicalValue } from '../../sync/values.ts';
import { normalise } from '../../sync/values.ts';
import type { LinkedEntity } from '../../sync/policy.ts';
import type { DynamicsColumnAccess, DynamicsPort, DynamicsRecordView, FieldBinding } from '../../sync/ports.ts';
import { dataverseEntitySets, type DataverseClient, type DataverseEntity, type DataverseExpansion, type DataverseRecord } from './dataverse.client.ts';
import { DataverseValidationError } from './dataverse.errors.ts';
import { relatedColumn, relatedSources, splitBindings, type RelatedKind } from './related.ts';
import { DEFAULT_SYNC_FILTER, parseSyncFilter, passesSyncFilter, type SyncFilterRule } from '../../sync/sync-filter.ts';

// The engine's view of Dataverse: canonical fields in, canonical fields out. Option sets go
// through the mapping's value map; the sync filter and the qualifying lead are read alongside.
// Fields of a contact's parent account and of the owner (related.ts) are read in the same request
// as the record (`$expand`), and never written. A create's answer lacks them (Dataverse ignores
// `$expand` on a write's representation): the created row is read back with them in the create's own
// $batch, and only when that read fails are they read beside it, one In-filter read per table. An
// update keeps the related fields of the view it was planned on (ports.ts).

const ORIGINATING_LEAD = '_originatingleadid_value';
const EMAIL = 'emailaddress1';

const entityName = (entity: LinkedEntity): DataverseEntity => (entity === 'LEAD' ? 'lead' : 'contact');

type Related = Map<RelatedKind, Map<string, DataverseRecord>>;

export interface DynamicsPortOptions {
  client: DataverseClient;
  /**
   * How long column metadata is trusted. Short: a column newly secured reads as null, and that
   * null must never be taken for a value.
   */
  metadataTtlMs?: number;
  now?: () => number;
  /** per entity, the condition a record must meet to sync; default `new_synctomkto ne false` */
  syncFilters?: Partial<Record<LinkedEntity, SyncFilterRule>>;
}

export function createDynamicsPort(options: DynamicsPortOptions): DynamicsPort {
  const { client } = options;
  const ttl = options.metadataTtlMs ?? 60_000;
  const now = options.now ?? Date.now;
  const accessCache = new Map<LinkedEntity, { at: number; value: Promise<Map<string, DynamicsColumnAccess>> }>();
  const defaultFilter = parseSyncFilter(DEFAULT_SYNC_FILTER) as SyncFilterRule;
  const filterOf = (entity: LinkedEntity): SyncFilterRule => options.syncFilters?.[entity] ?? defaultFilter;
  /** `_owningbusinessunit_value` is the column `owningbusinessunit` in metadata */
  const metadataName = (column: string) => /^_(.+)_value$/.exec(column)?.[1] ?? column;

  function columnAccess(entity: LinkedEntity): Promise<Map<string, DynamicsColumnAccess>> {
    const cached = accessCache.get(entity);
    if (cached && now() - cached.at < ttl) return cached.value;
    const sources = Object.values(relatedSources).filter((source) => source.entities.includes(entity));
    const value = Promise.all([client.getColumnAccess(entityName(entity)), ...sources.map((source) => client.getColumnAccess(source.table))]).then(
      ([columns, ...related]) => {
        const map = new Map<string, DynamicsColumnAccess>(
          columns.map((c) => [c.logicalName.toLowerCase(), { exists: true, canRead: c.canRead, canUpdate: c.canUpdate, canCreate: c.canCreate, options: c.options }]),
        );
        // a related row's columns are read through the record, never written from it
        sources.forEach((source, i) => {
          for (const c of related[i]!) map.set(`${source.kind}.${c.logicalName.toLowerCase()}`, { exists: true, canRead: c.canRead, canUpdate: false, canCreate: false, options: c.options });
        });
        return map;
      },
    );
    accessCache.set(entity, { at: now(), value });
    value.catch(() => accessCache.delete(entity));
    return value;
  }

  async function columnsFor(entity: LinkedEntity, bindings: readonly FieldBinding[]): Promise<string[]> {
    const access = await columnAccess(entity);
    const { own, related } = splitBindings(entity, bindings);
    const columns = new Set(own.map((b) => b.dynamicsAttribute));
    for (const group of related) columns.add(group.source.lookup);
    // Optional columns are only asked for when the table has them: Dataverse refuses unknown ones.
    const filter = filterOf(entity);
    if (access.get(metadataName(filter.column))?.canRead) columns.add(filter.column);
    if (access.get(EMAIL)?.canRead) columns.add(EMAIL);
    if (entity === 'CONTACT' && access.has('originatingleadid')) columns.add(ORIGINATING_LEAD);
    return [...columns];
  }

  /** The related rows to read with the records: one `$expand` per related table the bindings use. */
  function expansions(entity: LinkedEntity, bindings: readonly FieldBinding[]): DataverseExpansion[] {
    return splitBindings(entity, bindings).related.map((group) => ({
      navigation: group.source.navigation,
      table: group.source.table,
      columns: [...new Set(group.bindings.map((b) => b.column))],
    }));
  }

  /** The rows the records' related bindings read from, by kind and lower-cased id. */
  async function readRelated(entity: LinkedEntity, records: readonly DataverseRecord[], bindings: readonly FieldBinding[]): Promise<Related> {
    const groups = splitBindings(entity, bindings).related;
    const out: Related = new Map(groups.map((group) => [group.source.kind, new Map<string, DataverseRecord>()]));
    for (const record of records) {
      for (const group of groups) {
        const row = record.related?.[group.source.navigation];
        if (row) out.get(group.source.kind)!.set(row.id.toLowerCase(), row);
      }
    }
    const unexpanded = records.filter((r) => r.related === undefined);
    await Promise.all(
      groups.map(async (group) => {
        const ids = [...new Set(unexpanded.flatMap((r) => (typeof r.values[group.source.lookup] === 'string' ? [(r.values[group.source.lookup] as string).toLowerCase()] : [])))];
        // a parent that is a contact, or an owner that is a team, is simply not found: its fields read empty
        const rows = ids.length > 0 ? await client.getRecords(group.source.table, ids, [...new Set(group.bindings.map((b) => b.column))]) : [];
        for (const row of rows) out.get(group.source.kind)!.set(row.id.toLowerCase(), row);
      }),
    );
    return out;
  }

  /** A related binding's raw value, read through the record's lookup. */
  function relatedValue(record: DataverseRecord, attribute: string, related: Related): unknown {
    const ref = relatedColumn(attribute);
    if (!ref) return record.values[attribute];
    const id = record.values[ref.source.lookup];
    return typeof id === 'string' ? (related.get(ref.source.kind)?.get(id.toLowerCase())?.values[ref.column] ?? null) : null;
  }

  async function views(entity: LinkedEntity, records: readonly DataverseRecord[], bindings: readonly FieldBinding[]): Promise<DynamicsRecordView[]> {
    const [related, access] = await Promise.all([readRelated(entity, records, bindings), columnAccess(entity)]);
    return records.map((r) => toView(entity, r, bindings, related, access));
  }

  function toView(
    entity: LinkedEntity,
    record: DataverseRecord,
    bindings: readonly FieldBinding[],
    related: Related,
    access: Map<string, DynamicsColumnAccess>,
  ): DynamicsRecordView {
    const fields: CanonicalRecordFields = {};
    for (const binding of bindings) {
      const raw = relatedValue(record, binding.dynamicsAttribute, related);
      // a related choice column with no value map reads as its option's label (account industry)
      const labels = relatedColumn(binding.dynamicsAttribute) ? access.get(binding.dynamicsAttribute)?.options : null;
      if (!binding.valueMap && labels && raw !== null && raw !== undefined) {
        fields[binding.field] = labels.find((o) => o.value === raw)?.label ?? normalise(raw, 'string');
      } else {
        fields[binding.field] = canonicalOf(binding, raw);
      }
    }
    const filter = filterOf(entity);
    const filterValue = record.values[filter.column];
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
      syncFilter: !passesSyncFilter(filter, record.values) ? false : filterValue === null || filterValue === undefined || filterValue === '' ? null : true,
      filterRule: filter.text,
      originatingLeadId: typeof originating === 'string' ? originating.toLowerCase() : null,
    };
  }

  /** A column's raw value as the mapping reads it: through the value map for a choice, normalised otherwise. */
  function canonicalOf(binding: FieldBinding, raw: unknown): CanonicalValue {
    if (binding.valueMap && raw !== null && raw !== undefined) {
      // An option with no mapped label keeps its number, so the mismatch is visible rather than erased.
      return binding.valueMap[String(normalise(raw, 'string'))] ?? normalise(raw, 'string');
    }
    return normalise(raw, binding.type);
  }

  function toDataverse(fields: CanonicalRecordFields, bindings: readonly FieldBinding[]): Record<string, unknown> {
    const values: Record<string, unknown> = {};
    for (const [field, value] of Object.entries(fields)) {
      const binding = bindings.find((b) => b.field === field);
      if (!binding || relatedColumn(binding.dynamicsAttribute)) continue;
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
      const records = await client.getRecords(entityName(entity), ids, await columnsFor(entity, bindings), expansions(entity, bindings));
      return new Map((await views(entity, records, bindings)).map((v) => [v.id, v]));
    },
    async findByEmail(entity, email, bindings) {
      const records = await client.findByEmail(entityName(entity), email, await columnsFor(entity, bindings), expansions(entity, bindings));
      return views(entity, records, bindings);
    },
    async update(entity, id, fields, bindings, prior, fence) {
      const record = await client.updateRecord(entityName(entity), id, toDataverse(fields, bindings), {
        etag: prior.etag,
        columns: await columnsFor(entity, bindings),
        fence,
      });
      const view = toView(entity, record, bindings, new Map(), await columnAccess(entity));
      for (const binding of bindings) {
        if (relatedColumn(binding.dynamicsAttribute) && binding.field in prior.fields) view.fields[binding.field] = prior.fields[binding.field] ?? null;
      }
      return view;
    },
    async create(entity, fields, bindings, owner, fence, id) {
      // a journaled key (create-intents.ts): a resend of the same create answers "exists", never a second record
      const values = id ? { ...toDataverse(fields, bindings), [dataverseEntitySets[entityName(entity)].key]: id } : toDataverse(fields, bindings);
      const record = await client.createRecord(entityName(entity), values, {
        columns: await columnsFor(entity, bindings),
        expand: expansions(entity, bindings),
        ...(owner ? { owner } : {}),
        fence,
      });
      return (await views(entity, [record], bindings))[0]!;
    },
    columnAccess,
    async recordsReferencing(kind, id) {
      const source = relatedSources[kind];
      const found: { entity: LinkedEntity; id: string }[] = [];
      for (const entity of source.entities) {
        // only the key is read: the engine reads each record again under its lease
        for await (const page of client.queryByLookup(entityName(entity), source.lookup, id, [])) {
          for (const row of page) found.push({ entity, id: row.id.toLowerCase() });
        }
      }
      return found;
    },
    fieldsOfColumns(columns, bindings) {
      const fields: CanonicalRecordFields = {};
      for (const binding of bindings) {
        if (relatedColumn(binding.dynamicsAttribute) || !(binding.dynamicsAttribute in columns)) continue;
        fields[binding.field] = canonicalOf(binding, columns[binding.dynamicsAttribute]);
      }
      return fields;
    },
    invalidateMetadata(entity) {
      if (entity) accessCache.delete(entity);
      else accessCache.clear();
    },
  };
}
