import { describe, expect, it } from 'vitest';
import type { Link } from '../../src/sync/links.ts';
import { decideRelink } from '../../src/sync/relink.ts';

// Which link may move: only one whose Dynamics record was deleted, or a lead a qualify turned into
// a contact. The same record keeps its link (and base); anything else is "already linked".

const LEAD = '00000000-0000-4000-8000-000000000001';
const OTHER = '00000000-0000-4000-8000-000000000002';

const link = (over: Partial<Link> = {}): Link => ({
  id: 'l1',
  marketoId: 7,
  entity: 'LEAD',
  dynamicsId: LEAD,
  status: 'ACTIVE',
  snapshot: { title: 'Agreed' },
  fieldOrigins: {},
  blocked: {},
  dynamicsEtag: null,
  revision: 3,
  lastSyncedAt: null,
  ...over,
});

describe('decideRelink', () => {
  it.each([
    { name: 'no link yet', existing: null, target: { entity: 'LEAD', dynamicsId: OTHER }, kind: 'new' },
    { name: 'the same record (any case of its id)', existing: link(), target: { entity: 'LEAD', dynamicsId: LEAD.toUpperCase() }, kind: 'same_record' },
    { name: 'a link whose record was deleted in Dynamics', existing: link({ status: 'DELETED_IN_DYNAMICS' }), target: { entity: 'LEAD', dynamicsId: OTHER }, kind: 'repoint' },
    { name: 'the contact a qualify made of the linked lead', existing: link(), target: { entity: 'CONTACT', dynamicsId: OTHER, originatingLeadId: LEAD }, kind: 'repoint' },
    { name: 'an active link to another record', existing: link(), target: { entity: 'LEAD', dynamicsId: OTHER }, kind: 'refused' },
    { name: 'a contact that did not come from the linked lead', existing: link(), target: { entity: 'CONTACT', dynamicsId: OTHER, originatingLeadId: null }, kind: 'refused' },
    { name: 'a link whose person was deleted in Marketo', existing: link({ status: 'DELETED_IN_MARKETO' }), target: { entity: 'LEAD', dynamicsId: OTHER }, kind: 'refused' },
    { name: 'a filtered link', existing: link({ status: 'FILTERED' }), target: { entity: 'CONTACT', dynamicsId: OTHER }, kind: 'refused' },
  ] as const)('$name: $kind', ({ existing, target, kind }) => {
    expect(decideRelink(existing, target).kind).toBe(kind);
  });

  it('says which link refused the move and to what', () => {
    const decision = decideRelink(link(), { entity: 'CONTACT', dynamicsId: OTHER });
    expect(decision).toEqual({ kind: 'refused', message: expect.stringContaining(`already linked: person 7 is linked to Dynamics lead ${LEAD}`) as unknown });
  });
});
