import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { splitBindings } from '../../src/connectors/dynamics/related.ts';
import { concernsPersons, fannedOutEvents, fanoutEvent, fanoutRequestOf, type FanoutRequest } from '../../src/sync/fanout.ts';
import type { FieldBinding } from '../../src/sync/ports.ts';
import { relatedColumn } from '../../src/sync/related-fields.ts';

const binding = (field: string, dynamicsAttribute: string): FieldBinding => ({ field, type: 'string', marketoField: field, dynamicsAttribute, valueMap: null });

describe('related columns of a mapping', () => {
  it.each([
    ['account.name', { kind: 'account', column: 'name' }],
    ['owner.internalemailaddress', { kind: 'owner', column: 'internalemailaddress' }],
    ['companyname', null],
    ['team.name', null],
    ['account.', null],
    ['account.a.b', null],
  ])('%s reads %j', (attribute, expected) => {
    expect(relatedColumn(attribute)).toEqual(expected);
  });

  it('reads account fields for contacts only, owner fields for both, and keeps the record’s own columns apart', () => {
    const bindings = [binding('email', 'emailaddress1'), binding('company', 'account.name'), binding('ownerEmail', 'owner.internalemailaddress')];
    const contact = splitBindings('CONTACT', bindings);
    expect(contact.own.map((b) => b.field)).toEqual(['email']);
    expect(contact.related.map((g) => [g.source.lookup, g.bindings.map((b) => b.column)])).toEqual([
      ['_parentcustomerid_value', ['name']],
      ['_ownerid_value', ['internalemailaddress']],
    ]);
    const lead = splitBindings('LEAD', bindings);
    expect(lead.related.map((g) => g.source.kind)).toEqual(['owner']);
  });
});

describe('fan-out planning', () => {
  const mapped = ['emailaddress1', 'account.name', 'account.industrycode', 'owner.fullname'];
  const request = (kind: FanoutRequest['kind'], changedAttributes: string[]): FanoutRequest => ({ kind, id: 'a1', changedAttributes });

  it.each([
    ['account', ['name', 'modifiedon'], true],
    ['account', ['IndustryCode'], true],
    ['account', ['description', 'modifiedon'], false],
    ['account', [], true],
    ['owner', ['fullname'], true],
    ['owner', ['isdisabled'], false],
  ] as const)('a %s change of %j concerns persons: %s', (kind, changed, expected) => {
    expect(concernsPersons(request(kind, [...changed]), mapped)).toBe(expected);
  });

  it('a change of a row no mapping reads from concerns nobody', () => {
    expect(concernsPersons(request('owner', []), ['emailaddress1', 'account.name'])).toBe(false);
  });

  it('queues one event per linked record, each keyed by the FANOUT event, so a retried expansion queues nothing twice', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.uuid(), { maxLength: 40 }), (ids) => {
        const links = ids.map((dynamicsId, i) => ({ marketoId: i + 1, entity: 'CONTACT' as const, dynamicsId }));
        const once = fannedOutEvents({ id: 'ev1', origin: 'WEBHOOK' }, request('account', ['name']), links);
        const again = fannedOutEvents({ id: 'ev1', origin: 'WEBHOOK' }, request('account', ['name']), links);
        expect(once.map((e) => e.dedupeKey)).toEqual(again.map((e) => e.dedupeKey));
        expect(new Set(once.map((e) => e.dedupeKey)).size).toBe(ids.length);
        expect(once.every((e, i) => e.operation === 'UPDATE' && e.dynamicsId === ids[i] && e.marketoId === i + 1)).toBe(true);
      }),
    );
  });

  it('reads back the request a FANOUT event carries', () => {
    const event = fanoutEvent(request('owner', ['internalemailaddress']), { origin: 'SWEEP', dedupeKey: 'k' });
    expect(event.operation).toBe('FANOUT');
    expect(fanoutRequestOf({ dynamicsId: event.dynamicsId ?? null, payload: event.payload })).toEqual(request('owner', ['internalemailaddress']));
    expect(fanoutRequestOf({ dynamicsId: 'x', payload: { related: 'team' } })).toBeNull();
  });
});
