import { DataversePermanentError } from './dataverse.errors.ts';
import { rowSchema } from './dataverse.schemas.ts';

// The tables the sync reads and writes, and a Web API row as the rest of the code sees it.

/** The synced tables, and the ones their company and owner fields are read from (one way). */
export type DataverseEntity = 'lead' | 'contact' | 'account' | 'systemuser';

export const dataverseEntitySets: Record<DataverseEntity, { set: string; key: string }> = {
  lead: { set: 'leads', key: 'leadid' },
  contact: { set: 'contacts', key: 'contactid' },
  account: { set: 'accounts', key: 'accountid' },
  systemuser: { set: 'systemusers', key: 'systemuserid' },
};

export type DataverseValue = unknown;

/**
 * A row as the Web API returns it. `values` holds the selected columns by logical name (lookups as
 * `_x_value`). A secured column the sync user cannot read comes back as null and is indistinguishable
 * from an empty value: callers must never treat that null as "cleared in Dynamics" — consult
 * `getColumnAccess()` and leave unreadable columns out of the comparison.
 */
export type DataverseRecord = {
  entity: DataverseEntity;
  id: string;
  /** weak ETag, e.g. W/"12345"; send back in If-Match */
  etag: string;
  versionnumber: number;
  /** UTC ISO-8601, whole seconds */
  modifiedon: string;
  /** systemuserid of the last writer (`_modifiedby_value`); equals whoAmI().userId for the sync's own writes */
  modifiedby: string | null;
  values: Record<string, DataverseValue>;
  /** rows read through `$expand`, by navigation property; null when the lookup is empty or points elsewhere */
  related?: Record<string, DataverseRecord | null>;
};

/** A single-valued navigation property read with the record (`$expand=nav($select=...)`). */
export type DataverseExpansion = { navigation: string; table: DataverseEntity; columns: readonly string[] };

/** The expanded rows move from `values` to `related`. */
export function withRelated(record: DataverseRecord, expand: readonly DataverseExpansion[], endpoint: string): DataverseRecord {
  if (expand.length === 0) return record;
  const values = { ...record.values };
  const related: Record<string, DataverseRecord | null> = {};
  for (const e of expand) {
    const row = values[e.navigation];
    delete values[e.navigation];
    related[e.navigation] = row && typeof row === 'object' ? toRecord(e.table, row as Record<string, unknown>, endpoint) : null;
  }
  return { ...record, values, related };
}

const ALWAYS_SELECTED = ['versionnumber', 'modifiedon', '_modifiedby_value'];

/** The $select of a read: the key, the asked columns, and what every record carries. */
export function selectList(entity: DataverseEntity, columns: readonly string[]): string {
  const key = dataverseEntitySets[entity].key;
  return [...new Set([key, ...columns, ...ALWAYS_SELECTED])].join(',');
}

export function toRecord(entity: DataverseEntity, row: Record<string, unknown>, endpoint: string): DataverseRecord {
  const key = dataverseEntitySets[entity].key;
  const parsed = rowSchema.safeParse(row);
  const id = row[key];
  if (!parsed.success || typeof id !== 'string') {
    throw new DataversePermanentError(`Unexpected ${entity} row from ${endpoint}`, { endpoint });
  }
  const values: Record<string, DataverseValue> = {};
  for (const [name, value] of Object.entries(row)) {
    if (name.includes('@') || name === key || ALWAYS_SELECTED.includes(name)) continue;
    values[name] = value;
  }
  return {
    entity,
    id,
    etag: parsed.data['@odata.etag'],
    versionnumber: parsed.data.versionnumber,
    modifiedon: parsed.data.modifiedon,
    modifiedby: parsed.data._modifiedby_value ?? null,
    values,
  };
}

export function withoutKey(values: Record<string, DataverseValue>, key: string): Record<string, DataverseValue> {
  const copy = { ...values };
  delete copy[key];
  return copy;
}

/** OData string literal: single quotes doubled. */
export function quote(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

const guidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export function encodeGuid(id: string): string {
  // ids land unquoted in URLs and $filter; anything else would be an injection
  if (!guidPattern.test(id)) throw new DataversePermanentError(`Not a Dataverse id: ${id}`);
  return id.toLowerCase();
}

export function keyUrl(entity: DataverseEntity, id: string): string {
  return `${dataverseEntitySets[entity].set}(${encodeGuid(id)})`;
}
