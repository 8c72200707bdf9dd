import type { CanonicalRecordFields, CanonicalValue, ValueType } from './values.ts';
import type { LinkedEntity } from './policy.ts';
import type { RelatedKind } from './related-fields.ts';

// What the engine needs from each system, in canonical terms. Only connectors/* implement these
// and know the vendors' HTTP shapes; failures are ConnectorErrors whose `kind` the engine reads.

/** One enabled mapping as the connectors need it: the canonical name and each side's own name. */
export interface FieldBinding {
  field: string;
  type: ValueType;
  marketoField: string;
  dynamicsAttribute: string;
  /** Dynamics option value -> Marketo string, for choice columns */
  valueMap: Record<string, string> | null;
}

/**
 * Proof that the work sending a write still holds its records' leases (sync/fence.ts). The
 * connectors call `verify` right before each vendor call that carries the write, and drop the write
 * (rejecting it with the error `verify` threw) when it fails or `signal` is aborted; nothing of
 * it is sent then.
 */
export interface WriteFence {
  signal: AbortSignal;
  verify(): Promise<void>;
}

export interface PersonRecord {
  id: number;
  email: string | null;
  fields: CanonicalRecordFields;
  updatedAt: string | null;
}

export interface PersonWriteResult {
  status: 'created' | 'updated' | 'skipped';
  id: number | null;
  /** Marketo's reasons when it skipped the record */
  reasons: { code: string; message: string }[];
}

/** One change of a mapped field in Marketo's activity log (Change Data Value). */
export interface PersonFieldChange {
  field: string;
  value: CanonicalValue;
  /** Marketo's activity time, ms (second resolution) */
  at: number;
  /** made by the sync's own API user */
  bySync: boolean;
}

export interface MarketoFieldAccess {
  exists: boolean;
  updateable: boolean;
  dataType: string | null;
}

export interface MarketoPort {
  /**
   * `onSent` is told once the calls carrying these ids have left (Marketo's pacing admitted them):
   * work that can run beside the read, such as the Dataverse read of the same records, starts then.
   */
  readPersons(ids: readonly number[], bindings: readonly FieldBinding[], onSent?: () => void): Promise<Map<number, PersonRecord>>;
  /**
   * Per lower-cased email, the oldest person with it (Marketo allows duplicates; the sync never
   * adds one). Emails with no person are absent from the map.
   */
  findPersonsByEmail(emails: readonly string[], bindings: readonly FieldBinding[]): Promise<Map<string, PersonRecord>>;
  /** per-record results in input order; lookupField id (Adobe allows id only with updateOnly) */
  updatePersons(
    updates: readonly { id: number; fields: CanonicalRecordFields }[],
    bindings: readonly FieldBinding[],
    fence?: WriteFence,
  ): Promise<PersonWriteResult[]>;
  /** createOnly by email (never updates someone else's person); results in input order */
  createPersons(records: readonly CanonicalRecordFields[], bindings: readonly FieldBinding[], fence?: WriteFence): Promise<PersonWriteResult[]>;
  /** sets a Marketo field by its REST name (the "Microsoft is Deleted" flag) */
  setPersonField(id: number, marketoField: string, value: boolean | string | number | null, fence?: WriteFence): Promise<PersonWriteResult>;
  fieldAccess(options?: { refresh?: boolean }): Promise<Map<string, MarketoFieldAccess>>;
  /**
   * The person's changes of mapped fields since `since`, oldest first, from Marketo's activity log:
   * the one witness of a write whose answer was lost and whose value a person has overwritten since.
   */
  fieldChangesSince(id: number, since: Date, bindings: readonly FieldBinding[]): Promise<PersonFieldChange[]>;
  /**
   * One page of a static list's members (Get Leads by List Id, 300 a page), read with the mapped
   * fields; `nextPageToken` null after the last page. Optional: only Batch Sync Person reads lists.
   */
  readListPage?(listId: number, bindings: readonly FieldBinding[], nextPageToken: string | null, pageSize?: number): Promise<{ persons: PersonRecord[]; nextPageToken: string | null }>;
}

export interface DynamicsRecordView {
  entity: LinkedEntity;
  id: string;
  email: string | null;
  fields: CanonicalRecordFields;
  etag: string;
  version: string;
  modifiedOn: string;
  modifiedBy: string | null;
  /**
   * The entity's sync filter (sync/sync-filter.ts; default `new_synctomkto ne false`): false when
   * the record is filtered out, null when the filter's column is absent or empty and it passes
   */
  syncFilter: boolean | null;
  /** the filter as the admin wrote it, for "filtered out by <rule>" */
  filterRule?: string;
  /** on a contact created by qualifying a lead */
  originatingLeadId: string | null;
}

export interface DynamicsColumnAccess {
  exists: boolean;
  canRead: boolean;
  canUpdate: boolean;
  canCreate: boolean;
  /** option value -> label, for choice columns */
  options: { value: number; label: string }[] | null;
}

export type DynamicsOwner = { systemUserId: string } | { domainName: string };

export interface DynamicsPort {
  /** the application user the sync writes as: its own changes are echoes */
  syncUserId(): Promise<string>;
  readRecords(entity: LinkedEntity, ids: readonly string[], bindings: readonly FieldBinding[]): Promise<Map<string, DynamicsRecordView>>;
  findByEmail(entity: LinkedEntity, email: string, bindings: readonly FieldBinding[]): Promise<DynamicsRecordView[]>;
  /**
   * PATCH with If-Match on the etag of `prior`, the view the write was planned on: a stale etag is
   * a `conflict` ConnectorError. The If-Match proves the record's account and owner lookups did not
   * move since that read, so the view returned keeps `prior`'s related fields instead of reading
   * them again.
   */
  update(
    entity: LinkedEntity,
    id: string,
    fields: CanonicalRecordFields,
    bindings: readonly FieldBinding[],
    prior: Pick<DynamicsRecordView, 'etag' | 'fields'>,
    fence?: WriteFence,
  ): Promise<DynamicsRecordView>;
  create(
    entity: LinkedEntity,
    fields: CanonicalRecordFields,
    bindings: readonly FieldBinding[],
    owner?: DynamicsOwner,
    fence?: WriteFence,
    /** the client-chosen primary key: a resend with it is refused as a duplicate and read back, never a second record */
    id?: string,
  ): Promise<DynamicsRecordView>;
  /**
   * Column access by logical name; a column of the contact's parent account or of the owner under
   * `account.<column>` / `owner.<column>` (sync/related-fields.ts), never updatable through the record.
   */
  columnAccess(entity: LinkedEntity): Promise<Map<string, DynamicsColumnAccess>>;
  /** the leads and contacts whose parent account (kind account) or owner (kind owner) is the row `id` */
  recordsReferencing(kind: RelatedKind, id: string): Promise<{ entity: LinkedEntity; id: string }[]>;
  /** forget cached metadata: column security or the schema changed */
  invalidateMetadata(entity?: LinkedEntity): void;
  /**
   * The canonical values of the mapped fields among raw Web API columns (a webhook's Target):
   * only the fields whose column is present, read as a record's would be.
   */
  fieldsOfColumns(columns: Record<string, unknown>, bindings: readonly FieldBinding[]): CanonicalRecordFields;
}
