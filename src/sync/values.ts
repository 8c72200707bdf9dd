// Field values as the engine sees them, whichever side they came from. SPEC "Field values":
// "" equals null, emails compare case-insensitively, numbers and booleans by value, dates as
// instants; each side is written in its own native type by its connector.

export type CanonicalValue = string | number | boolean | null;
export type ValueType = 'string' | 'email' | 'number' | 'boolean' | 'datetime';
export type CanonicalRecordFields = Record<string, CanonicalValue>;

const truthy = new Set(['true', '1', 'yes', 'y']);
const falsy = new Set(['false', '0', 'no', 'n']);

/** The value to store and compare: one representation per meaning. */
export function normalise(value: unknown, type: ValueType): CanonicalValue {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' && value.trim() === '') return null;
  switch (type) {
    case 'boolean': {
      if (typeof value === 'boolean') return value;
      if (typeof value === 'number') return value !== 0;
      const text = String(value).trim().toLowerCase();
      if (truthy.has(text)) return true;
      if (falsy.has(text)) return false;
      return String(value);
    }
    case 'number': {
      const number = typeof value === 'number' ? value : Number(String(value).trim());
      return Number.isFinite(number) ? number : String(value);
    }
    case 'datetime': {
      const time = value instanceof Date ? value.getTime() : Date.parse(String(value));
      return Number.isNaN(time) ? String(value) : new Date(time).toISOString();
    }
    case 'email':
      return String(value).trim();
    case 'string':
      return typeof value === 'string' ? value : String(value as number | boolean);
  }
}

/** Equality under the spec's rules (normalises both sides first). */
export function sameValue(a: unknown, b: unknown, type: ValueType): boolean {
  const x = normalise(a, type);
  const y = normalise(b, type);
  if (type === 'email' && typeof x === 'string' && typeof y === 'string') return x.toLowerCase() === y.toLowerCase();
  return x === y;
}

export const isEmpty = (value: CanonicalValue | undefined): boolean => value === null || value === undefined;
