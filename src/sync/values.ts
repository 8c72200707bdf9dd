// Field values as the engine sees them, whichever side they came from. SPEC "Field values":
// "" equals null, emails compare case-insensitively, numbers and booleans by value, dates as
// instants; each side is written in its own native type by its connector.

export type CanonicalValue = string | number | boolean | null;
export type ValueType = 'string' | 'email' | 'number' | 'boolean' | 'datetime';
export type CanonicalRecordFields = Record<string, CanonicalValue>;

const truthy = new Set(['true', '1', 'yes', 'y']);
const falsy = new Set(['false', '0', 'no', 'n']);

function text(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return JSON.stringify(value);
}

/** The value to store and compare: one representation per meaning. */
export function normalise(value: unknown, type: ValueType): CanonicalValue {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' && value.trim() === '') return null;
  switch (type) {
    case 'boolean': {
      if (typeof value === 'boolean') return value;
      if (typeof value === 'number') return value !== 0;
      const word = text(value).trim().toLowerCase();
      if (truthy.has(word)) return true;
      if (falsy.has(word)) return false;
      return text(value);
    }
    case 'number': {
      const number = typeof value === 'number' ? value : Number(text(value).trim());
      return Number.isFinite(number) ? number : text(value);
    }
    case 'datetime': {
      const time = value instanceof Date ? value.getTime() : Date.parse(text(value));
      return Number.isNaN(time) ? text(value) : new Date(time).toISOString();
    }
    case 'email':
      return text(value).trim();
    case 'string':
      return text(value);
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
