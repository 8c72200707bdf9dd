import SchemaBuilder from '@pothos/core';
import { createGraphQLError } from 'graphql-yoga';
import type { CanonicalValue } from '../sync/values.ts';
import type { GraphQLContext } from './context.ts';

// The Pothos builder, created per schema build (no module singleton): every domain file adds its
// types through `add...(builder)` functions called from schema.ts.

export interface SchemaTypes {
  Context: GraphQLContext;
  // Fields are non-null unless declared nullable: the SDL says exactly what may be missing.
  DefaultFieldNullability: false;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    JSON: { Input: unknown; Output: unknown };
    FieldValue: { Input: CanonicalValue; Output: CanonicalValue };
  };
}

export function createBuilder() {
  const builder = new SchemaBuilder<SchemaTypes>({ defaultFieldNullability: false });

  builder.scalarType('DateTime', {
    description: 'An instant, as an ISO-8601 string in UTC with milliseconds (e.g. `2026-11-24T19:10:37.000Z`).',
    serialize: (value) => value.toISOString(),
    parseValue: (value) => {
      const date = typeof value === 'string' ? new Date(value) : new Date(Number.NaN);
      if (typeof value !== 'string' || Number.isNaN(date.getTime())) {
        throw badInput('DateTime must be an ISO-8601 string, e.g. 2026-11-24T19:10:37Z');
      }
      return date;
    },
  });

  builder.scalarType('JSON', {
    description: 'Any JSON value, as stored (e.g. a change event payload or a sweep\'s counters).',
    serialize: (value) => value,
    parseValue: (value) => value,
  });

  builder.scalarType('FieldValue', {
    description:
      'A synced field value in its normalised (canonical) form, as a JSON scalar: a string, a number, a boolean or null. ' +
      'Emails are lower-cased, dates and times are ISO-8601 strings in UTC, and an empty string is null. ' +
      'Dynamics option sets appear as the mapped Marketo string.',
    serialize: (value) => toFieldValue(value),
    parseValue: (value) => toFieldValue(value),
  });

  return builder;
}

export type Builder = ReturnType<typeof createBuilder>;
export type Types = PothosSchemaTypes.ExtendDefaultTypes<SchemaTypes>;

function toFieldValue(value: unknown): CanonicalValue {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  // Stored values are canonical already; anything else is shown, not dropped.
  return JSON.stringify(value);
}

/**
 * An error whose message the caller is meant to see (everything else is masked). Built with
 * yoga's createGraphQLError so it is a GraphQLError of the same graphql module instance yoga
 * checks against, even where a bundler or test runner loads graphql twice (ESM and CJS).
 */
export function badInput(message: string) {
  return createGraphQLError(message, { extensions: { code: 'BAD_USER_INPUT' } });
}
