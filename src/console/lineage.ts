import type { LinkStatus } from '../db/generated/client.ts';
import type { BlockedValue } from '../sync/merge.ts';
import type { FieldAccess } from '../sync/mappings.ts';

// Why a mapped field does (or does not) sync for one person: a pure decision over the mapping,
// what both systems' metadata said about the field, the link's status and a held-back value.
// The console's person view shows the answer next to both values.

export type FieldSyncState =
  | 'SYNCED'
  | 'DISABLED'
  | 'MISSING'
  | 'NOT_READABLE'
  | 'NOT_UPDATABLE'
  | 'REFUSED_BY_DYNAMICS'
  | 'FILTERED'
  | 'LINK_ENDED'
  | 'UNCHECKED';

export interface FieldSyncInput {
  enabled: boolean;
  direction: 'BOTH' | 'MARKETO_TO_DYNAMICS' | 'DYNAMICS_TO_MARKETO';
  marketoField: string;
  dynamicsAttribute: string;
  access: FieldAccess | null;
  linkStatus: LinkStatus;
  blocked: BlockedValue | null;
}

export function fieldSyncState(f: FieldSyncInput): { state: FieldSyncState; reason: string | null } {
  if (!f.enabled) return { state: 'DISABLED', reason: 'the mapping is disabled' };
  if (f.linkStatus === 'FILTERED') return { state: 'FILTERED', reason: 'the Dynamics record fails the sync filter (default new_synctomkto ne false): updates stop until it passes again' };
  if (f.linkStatus === 'DELETED_IN_DYNAMICS') return { state: 'LINK_ENDED', reason: 'the Dynamics record was deleted' };
  if (f.linkStatus === 'DELETED_IN_MARKETO') return { state: 'LINK_ENDED', reason: 'the Marketo person was deleted' };
  const a = f.access;
  if (!a) return { state: 'UNCHECKED', reason: 'the sync has not checked this field against both systems yet' };
  if (!a.dynamics.exists) return { state: 'MISSING', reason: `Dynamics has no column ${f.dynamicsAttribute}` };
  if (!a.marketo.exists) return { state: 'MISSING', reason: `Marketo has no field ${f.marketoField}` };
  if (!a.dynamics.canRead) return { state: 'NOT_READABLE', reason: `the Dynamics sync user may not read ${f.dynamicsAttribute} (field security)` };
  if (f.blocked?.reason === 'validation') {
    return { state: 'REFUSED_BY_DYNAMICS', reason: `Dynamics refused the value until it changes${f.blocked.message ? `: ${f.blocked.message}` : ''}` };
  }
  const toDynamics = f.direction !== 'DYNAMICS_TO_MARKETO';
  const toMarketo = f.direction !== 'MARKETO_TO_DYNAMICS';
  if (toDynamics && !a.dynamics.canUpdate) return { state: 'NOT_UPDATABLE', reason: `the Dynamics sync user may not update ${f.dynamicsAttribute}: changes from Marketo stay in Marketo` };
  if (toMarketo && !a.marketo.updateable) return { state: 'NOT_UPDATABLE', reason: `Marketo's ${f.marketoField} is read-only through the API: changes from Dynamics stay in Dynamics` };
  if (f.blocked) return { state: 'NOT_UPDATABLE', reason: `${f.blocked.side === 'DYNAMICS' ? 'Dynamics' : 'Marketo'} cannot take the value (read-only for the sync user)` };
  return { state: 'SYNCED', reason: null };
}
