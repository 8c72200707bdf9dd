import { describe, expect, it } from 'vitest';
import { normalise, sameValue, type ValueType } from '../../src/sync/values.ts';

describe('field value normalisation', () => {
  it.each<[string, unknown, unknown, ValueType, boolean]>([
    ['"" equals null', '', null, 'string', true],
    ['whitespace-only equals null', '  ', undefined, 'string', true],
    ['emails compare case-insensitively', 'Ada@Example.COM', 'ada@example.com', 'email', true],
    ['other strings compare exactly', 'Ada', 'ada', 'string', false],
    ['numbers by value', '42.0', 42, 'number', true],
    ['booleans by value', 'true', true, 'boolean', true],
    ['0 is false', 0, false, 'boolean', true],
    ['dates as instants', '2026-11-24T10:00:00+01:00', '2026-11-24T09:00:00.000Z', 'datetime', true],
    ['different instants differ', '2026-11-24T10:00:00Z', '2026-11-24T09:00:00Z', 'datetime', false],
  ])('%s', (_name, a, b, type, same) => {
    expect(sameValue(a, b, type)).toBe(same);
  });

  it('keeps unparseable numbers and dates as text rather than inventing a value', () => {
    expect(normalise('n/a', 'number')).toBe('n/a');
    expect(normalise('soon', 'datetime')).toBe('soon');
  });
});
