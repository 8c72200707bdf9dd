import { describe, expect, it } from 'vitest';
import { fieldSyncState, type FieldSyncInput } from '../../src/console/lineage.ts';

// Why a mapped field does or does not sync for one person: a table of the cases the person view shows.

const open = { dynamics: { exists: true, canRead: true, canUpdate: true, canCreate: true }, marketo: { exists: true, updateable: true, dataType: 'string' } };
const base: FieldSyncInput = { enabled: true, direction: 'BOTH', marketoField: 'title', dynamicsAttribute: 'jobtitle', access: open, linkStatus: 'ACTIVE', blocked: null };

describe('fieldSyncState', () => {
  it.each([
    ['a readable, updatable field on an active link', {}, 'SYNCED', null],
    ['a disabled mapping', { enabled: false }, 'DISABLED', 'disabled'],
    ['a filtered record', { linkStatus: 'FILTERED' }, 'FILTERED', 'new_synctomkto'],
    ['a deleted Dynamics record', { linkStatus: 'DELETED_IN_DYNAMICS' }, 'LINK_ENDED', 'Dynamics record was deleted'],
    ['a field never checked', { access: null }, 'UNCHECKED', 'not checked'],
    ['a missing column', { access: { ...open, dynamics: { ...open.dynamics, exists: false } } }, 'MISSING', 'no column jobtitle'],
    ['a column the sync user may not read', { access: { ...open, dynamics: { ...open.dynamics, canRead: false } } }, 'NOT_READABLE', 'may not read jobtitle'],
    ['a column it may not update', { access: { ...open, dynamics: { ...open.dynamics, canUpdate: false } } }, 'NOT_UPDATABLE', 'may not update jobtitle'],
    ['a read-only column of a Dynamics-to-Marketo field', { direction: 'DYNAMICS_TO_MARKETO', access: { ...open, dynamics: { ...open.dynamics, canUpdate: false } } }, 'SYNCED', null],
    ['a read-only Marketo field', { access: { ...open, marketo: { ...open.marketo, updateable: false } } }, 'NOT_UPDATABLE', 'read-only through the API'],
    ['a value Dynamics refused', { blocked: { side: 'DYNAMICS', value: 'x', reason: 'validation', message: 'invalid format' } }, 'REFUSED_BY_DYNAMICS', 'invalid format'],
  ] as [string, Partial<FieldSyncInput>, string, string | null][])('%s', (_name, change, state, reason) => {
    const result = fieldSyncState({ ...base, ...change });
    expect(result.state).toBe(state);
    if (reason === null) expect(result.reason).toBeNull();
    else expect(result.reason).toContain(reason);
  });
});
