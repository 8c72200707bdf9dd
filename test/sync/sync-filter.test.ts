import { describe, expect, it } from 'vitest';
import { DEFAULT_SYNC_FILTER, parseSyncFilter, passesSyncFilter, type SyncFilterRule } from '../../src/sync/sync-filter.ts';

const rule = (text: string): SyncFilterRule => {
  const parsed = parseSyncFilter(text);
  if ('error' in parsed) throw new Error(parsed.error);
  return parsed;
};

describe('sync filter rules', () => {
  it.each([
    [DEFAULT_SYNC_FILTER, {}, true],
    [DEFAULT_SYNC_FILTER, { new_synctomkto: null }, true],
    [DEFAULT_SYNC_FILTER, { new_synctomkto: true }, true],
    [DEFAULT_SYNC_FILTER, { new_synctomkto: false }, false],
    ['new_custom_flag eq true', { new_custom_flag: true }, true],
    ['new_custom_flag eq true', {}, false],
    ['statuscode in (1, 2)', { statuscode: 2 }, true],
    ['statuscode in (1, 2)', { statuscode: 3 }, false],
    ['_owningbusinessunit_value eq 6F1C2A10-0000-4000-8000-000000000001', { _owningbusinessunit_value: '6f1c2a10-0000-4000-8000-000000000001' }, true],
    ['_owningbusinessunit_value eq 6f1c2a10-0000-4000-8000-000000000001', { _owningbusinessunit_value: '6f1c2a10-0000-4000-8000-000000000002' }, false],
    ["address1_country in ('Germany', 'O''Hare')", { address1_country: "o'hare" }, true],
    ["address1_country ne 'Germany'", { address1_country: 'germany' }, false],
  ] as const)('%s with %j syncs: %s', (text, values, expected) => {
    expect(passesSyncFilter(rule(text), values)).toBe(expected);
  });

  it.each(['new_synctomkto', 'new_synctomkto gt 1', 'statuscode in 1', 'statuscode in ()', 'x eq maybe', 'x eq "quoted"'])('refuses "%s" with a reason', (text) => {
    expect(parseSyncFilter(text)).toEqual({ error: expect.stringContaining(text) });
  });
});
