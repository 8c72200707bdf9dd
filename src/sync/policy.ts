import type { CollisionRule, Side } from './merge.ts';

export type LinkedEntity = 'LEAD' | 'CONTACT';

/** How log entries name a Dynamics record's kind. */
export const entityLabel = (entity: LinkedEntity) => (entity === 'LEAD' ? 'lead' : 'contact');

/**
 * Who wins when the same field changed on both sides since the last sync (SPEC 3): marketing owns
 * leads, so Marketo wins for persons linked to leads; sales' CRM is the system of record for
 * contacts, so Dynamics wins. An admin may override a single field.
 */
export function collisionWinner(entity: LinkedEntity, override: Side | null | undefined): { winner: Side; rule: CollisionRule } {
  if (override) return { winner: override, rule: 'FIELD_OVERRIDE' };
  return entity === 'LEAD'
    ? { winner: 'MARKETO', rule: 'LEAD_MARKETO_WINS' }
    : { winner: 'DYNAMICS', rule: 'CONTACT_DYNAMICS_WINS' };
}
