import type { Db } from '../db/database.ts';
import type { Prisma } from '../db/generated/client.ts';
import type { FieldRule } from './merge.ts';
import { collisionWinner, type LinkedEntity } from './policy.ts';
import type { DynamicsPort, FieldBinding, MarketoPort } from './ports.ts';
import type { ValueType } from './values.ts';

// The enabled field mappings of an entity, checked against both systems' live metadata: a column
// the Dynamics sync user cannot read is never read or written (SPEC 5), one it cannot update is
// never written, and a Marketo field the API cannot write is never written. Metadata is cached
// for a while (both vendors rate-limit metadata calls) and stored on the mapping for GraphQL.

export type FieldSkipReason = 'dynamics_unreadable' | 'dynamics_missing' | 'marketo_missing';

export interface FieldAccess {
  dynamics: { exists: boolean; canRead: boolean; canUpdate: boolean; canCreate: boolean };
  marketo: { exists: boolean; updateable: boolean; dataType: string | null };
}

export interface EntityMapping {
  entity: LinkedEntity;
  rules: FieldRule[];
  bindings: FieldBinding[];
  /** enabled mappings that cannot sync at all, and why */
  skipped: { field: string; reason: FieldSkipReason }[];
  access: Record<string, FieldAccess>;
}

export function valueTypeOf(marketoDataType: string | null): ValueType {
  switch (marketoDataType) {
    case 'email':
      return 'email';
    case 'boolean':
      return 'boolean';
    case 'integer':
    case 'float':
    case 'currency':
    case 'percent':
    case 'score':
      return 'number';
    case 'date':
    case 'datetime':
      return 'datetime';
    default:
      return 'string';
  }
}

export interface MappingServiceOptions {
  db: Db;
  marketo: MarketoPort;
  dynamics: DynamicsPort;
  /** how long metadata is trusted before it is read again (see the Dynamics port: keep it short) */
  ttlMs?: number;
  now?: () => number;
}

export function createMappingService(options: MappingServiceOptions) {
  const ttlMs = options.ttlMs ?? 60_000;
  const now = options.now ?? Date.now;
  const cache = new Map<LinkedEntity, { at: number; mapping: Promise<EntityMapping> }>();

  let refreshMarketo = false;

  async function load(entity: LinkedEntity): Promise<EntityMapping> {
    const refresh = refreshMarketo;
    refreshMarketo = false;
    const [rows, marketoFields, columns] = await Promise.all([
      options.db.fieldMapping.findMany({ where: { entity, enabled: true }, orderBy: { canonicalField: 'asc' } }),
      options.marketo.fieldAccess(refresh ? { refresh: true } : {}),
      options.dynamics.columnAccess(entity),
    ]);
    const rules: FieldRule[] = [];
    const bindings: FieldBinding[] = [];
    const skipped: EntityMapping['skipped'] = [];
    const access: Record<string, FieldAccess> = {};
    for (const row of rows) {
      const column = columns.get(row.dynamicsAttribute.toLowerCase());
      const field = marketoFields.get(row.marketoField);
      const fieldAccess: FieldAccess = {
        dynamics: {
          exists: column !== undefined,
          canRead: column?.canRead ?? false,
          canUpdate: column?.canUpdate ?? false,
          canCreate: column?.canCreate ?? false,
        },
        marketo: { exists: field !== undefined, updateable: field?.updateable ?? false, dataType: field?.dataType ?? null },
      };
      access[row.canonicalField] = fieldAccess;
      const reason: FieldSkipReason | undefined = !column
        ? 'dynamics_missing'
        : !column.canRead
          ? 'dynamics_unreadable'
          : !field
            ? 'marketo_missing'
            : undefined;
      if (JSON.stringify(row.access) !== JSON.stringify(fieldAccess)) {
        await options.db.fieldMapping.update({
          where: { id: row.id },
          data: { access: fieldAccess as unknown as Prisma.InputJsonValue, accessCheckedAt: new Date(now()) },
        });
      }
      if (reason) {
        skipped.push({ field: row.canonicalField, reason });
        continue;
      }
      const type = valueTypeOf(field?.dataType ?? null);
      rules.push({
        field: row.canonicalField,
        type,
        direction: row.direction,
        ...collisionWinner(entity, row.collisionWinner),
        writable: { MARKETO: fieldAccess.marketo.updateable, DYNAMICS: fieldAccess.dynamics.canUpdate },
      });
      bindings.push({
        field: row.canonicalField,
        type,
        marketoField: row.marketoField,
        dynamicsAttribute: row.dynamicsAttribute,
        valueMap: (row.valueMap as Record<string, string> | null) ?? null,
      });
    }
    return { entity, rules, bindings, skipped, access };
  }

  return {
    forEntity(entity: LinkedEntity): Promise<EntityMapping> {
      const cached = cache.get(entity);
      if (cached && now() - cached.at < ttlMs) return cached.mapping;
      const mapping = load(entity);
      cache.set(entity, { at: now(), mapping });
      mapping.catch(() => cache.delete(entity));
      return mapping;
    },
    /** after a mapping edit, or when a vendor says a field's access changed: read everything again */
    invalidate(entity?: LinkedEntity): void {
      if (entity) cache.delete(entity);
      else cache.clear();
      options.dynamics.invalidateMetadata(entity);
      refreshMarketo = true;
    },
  };
}

export type MappingService = ReturnType<typeof createMappingService>;
