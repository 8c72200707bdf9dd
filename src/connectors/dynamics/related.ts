import type { LinkedEntity } from '../../sync/policy.ts';
import type { FieldBinding } from '../../sync/ports.ts';
import { relatedColumn as parseRelated, relatedEntities, type RelatedKind } from '../../sync/related-fields.ts';
import type { DataverseEntity } from './dataverse.client.ts';

// Where the related fields of sync/related-fields.ts live in Dataverse: a contact's company in its
// parent account (`parentcustomerid`), anyone's owner in a systemuser (`ownerid`). The port reads
// the related rows with the record through `$expand` (beside it, after a create), and never writes them.

export type { RelatedKind };

export interface RelatedSource {
  kind: RelatedKind;
  /** the table the values live in */
  table: DataverseEntity;
  /** the record's lookup property that points at it */
  lookup: string;
  /** the single-valued navigation property that reads the row with the record (`$expand`) */
  navigation: string;
  /** the entities whose records have it */
  entities: readonly LinkedEntity[];
}

export const relatedSources: Record<RelatedKind, RelatedSource> = {
  // a parent that is a contact expands to null here, as an owner that is a team does under owninguser
  account: { kind: 'account', table: 'account', lookup: '_parentcustomerid_value', navigation: 'parentcustomerid_account', entities: relatedEntities.account },
  owner: { kind: 'owner', table: 'systemuser', lookup: '_ownerid_value', navigation: 'owninguser', entities: relatedEntities.owner },
};

/** `account.name` -> the account source and column `name`; a plain column -> null. */
export function relatedColumn(attribute: string): { source: RelatedSource; column: string } | null {
  const ref = parseRelated(attribute);
  return ref ? { source: relatedSources[ref.kind], column: ref.column } : null;
}

/** The record's own bindings, and per related source the bindings read from it. */
export function splitBindings(entity: LinkedEntity, bindings: readonly FieldBinding[]) {
  const own: FieldBinding[] = [];
  const related = new Map<RelatedKind, { source: RelatedSource; bindings: { binding: FieldBinding; column: string }[] }>();
  for (const binding of bindings) {
    const ref = relatedColumn(binding.dynamicsAttribute);
    if (!ref) {
      own.push(binding);
      continue;
    }
    // an account lookup on a lead does not exist: such a mapping never reads anything
    if (!ref.source.entities.includes(entity)) continue;
    const group = related.get(ref.source.kind) ?? { source: ref.source, bindings: [] };
    group.bindings.push({ binding, column: ref.column });
    related.set(ref.source.kind, group);
  }
  return { own, related: [...related.values()] };
}
