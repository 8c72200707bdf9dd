import type { LinkedEntity } from './policy.ts';

// Fields a lead or contact shows but another Dynamics row holds: a contact's company is its parent
// account, anyone's owner a systemuser. A mapping names such a column with a prefix, `account.name`
// or `owner.internalemailaddress` (Dataverse logical names never hold a dot). They sync one way,
// Dynamics to Marketo, as Marketo's own Dynamics sync carries them; a change of the account or of
// the user reaches every linked person that shows it (fanout.ts).

export type RelatedKind = 'account' | 'owner';

/** the entities whose records show each kind's fields */
export const relatedEntities: Record<RelatedKind, readonly LinkedEntity[]> = {
  account: ['CONTACT'],
  owner: ['LEAD', 'CONTACT'],
};

/** `account.name` -> kind account, column `name`; a column of the record itself -> null. */
export function relatedColumn(attribute: string): { kind: RelatedKind; column: string } | null {
  const dot = attribute.indexOf('.');
  if (dot < 0) return null;
  const kind = attribute.slice(0, dot);
  const column = attribute.slice(dot + 1);
  if ((kind !== 'account' && kind !== 'owner') || column === '' || column.includes('.')) return null;
  return { kind, column };
}
