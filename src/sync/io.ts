import { ConnectorError } from '../connectors/errors.ts';
import type { EntityMapping, MappingService } from './mappings.ts';
import type { LinkedEntity } from './policy.ts';
import type { DynamicsPort, DynamicsRecordView, MarketoPort, PersonFieldChange, PersonRecord, PersonWriteResult, WriteFence } from './ports.ts';
import type { CanonicalRecordFields } from './values.ts';

// The engine's reads and writes of both systems, in canonical terms. Batching lives in the
// clients: each fills a call (Marketo reads, look-ups by email and writes, Dataverse In-filter
// reads and $batch writes) with the requests of all concurrent work when its pacing admits it.

export interface SyncIOOptions {
  marketo: MarketoPort;
  dynamics: DynamicsPort;
  mappings: MappingService;
}

/** What a Dynamics write left: the record as the server stored it, and the fields it refused. */
export interface DynamicsWriteResult {
  record: DynamicsRecordView;
  rejected: Map<string, string>;
}

export function createSyncIO(options: SyncIOOptions) {
  const { marketo, dynamics, mappings } = options;
  const bindingsOf = async (entity: LinkedEntity) => (await mappings.forEntity(entity)).bindings;

  async function readPersons(entity: LinkedEntity, ids: readonly number[], onSent?: () => void): Promise<Map<number, PersonRecord>> {
    return marketo.readPersons(ids, await bindingsOf(entity), onSent);
  }

  /** By lower-cased id; a record not found is absent. */
  async function readRecords(entity: LinkedEntity, ids: readonly string[]): Promise<Map<string, DynamicsRecordView>> {
    return dynamics.readRecords(entity, ids, await bindingsOf(entity));
  }

  return {
    readPersons,
    async readPerson(entity: LinkedEntity, id: number): Promise<PersonRecord | null> {
      return (await readPersons(entity, [id])).get(id) ?? null;
    },
    readRecords,
    async readRecord(entity: LinkedEntity, id: string): Promise<DynamicsRecordView | null> {
      return (await readRecords(entity, [id])).get(id.toLowerCase()) ?? null;
    },
    /** The mapped fields among a Dynamics webhook's raw columns, canonical. */
    async dynamicsFieldsOfColumns(entity: LinkedEntity, columns: Record<string, unknown>): Promise<CanonicalRecordFields> {
      return dynamics.fieldsOfColumns(columns, await bindingsOf(entity));
    },
    /** The person's changes of mapped fields since `since`, oldest first (Marketo's activity log). */
    async personFieldChangesSince(entity: LinkedEntity, id: number, since: Date): Promise<PersonFieldChange[]> {
      return marketo.fieldChangesSince(id, since, await bindingsOf(entity));
    },
    async findPersonByEmail(entity: LinkedEntity, email: string): Promise<PersonRecord | null> {
      const key = email.toLowerCase();
      return (await marketo.findPersonsByEmail([key], await bindingsOf(entity))).get(key) ?? null;
    },
    async writePerson(entity: LinkedEntity, id: number, fields: CanonicalRecordFields, fence?: WriteFence): Promise<PersonWriteResult> {
      const [result] = await marketo.updatePersons([{ id, fields }], await bindingsOf(entity), fence);
      return result ?? { status: 'skipped', id, reasons: [{ code: 'none', message: 'Marketo returned no result for the record' }] };
    },
    async setPersonField(id: number, field: string, value: boolean, fence?: WriteFence): Promise<PersonWriteResult> {
      return marketo.setPersonField(id, field, value, fence);
    },
    async createPerson(fields: CanonicalRecordFields, mapping: EntityMapping, fence?: WriteFence): Promise<PersonWriteResult> {
      const [result] = await marketo.createPersons([fields], mapping.bindings, fence);
      return result ?? { status: 'skipped', id: null, reasons: [] };
    },
    /**
     * PATCH with If-Match; a validation refusal is narrowed to the fields that cause it (the rest
     * still sync). The record returned is what the server stored: a plug-in may have rewritten a
     * value, and the caller compares it with what it sent.
     */
    async writeDynamics(
      entity: LinkedEntity,
      id: string,
      mapping: EntityMapping,
      record: DynamicsRecordView,
      writes: CanonicalRecordFields,
      fence?: WriteFence,
    ): Promise<DynamicsWriteResult> {
      const rejected = new Map<string, string>();
      try {
        return { record: await dynamics.update(entity, id, writes, mapping.bindings, record, fence), rejected };
      } catch (error) {
        if (!(error instanceof ConnectorError) || error.kind !== 'validation') throw error;
        const fields = Object.keys(writes);
        if (fields.length === 1) {
          rejected.set(fields[0]!, error.message);
          return { record, rejected };
        }
        let current = record;
        for (const field of fields) {
          try {
            current = await dynamics.update(entity, id, { [field]: writes[field] ?? null }, mapping.bindings, current, fence);
          } catch (fieldError) {
            if (fieldError instanceof ConnectorError && fieldError.kind === 'validation') rejected.set(field, fieldError.message);
            else throw fieldError;
          }
        }
        return { record: current, rejected };
      }
    },
  };
}

export type SyncIO = ReturnType<typeof createSyncIO>;
