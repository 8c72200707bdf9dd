import type { GraphQLSchema } from 'graphql';
import { createBuilder } from './builder.ts';
import { addBatchSchema } from './batches.schema.ts';
import { addErasureSchema } from './erasure.schema.ts';
import { guardMutations } from './guard.ts';
import { addInboxSchema } from './inbox.schema.ts';
import { addLinkSchema } from './links.schema.ts';
import { addConsoleSchema } from './console.schema.ts';
import { addMappingSchema } from './mappings.schema.ts';
import { addMergeSchema } from './merges.schema.ts';
import { createRefs } from './refs.ts';
import { addRetentionSchema } from './retention.schema.ts';
import { addRunSchema } from './runs.schema.ts';
import { addTokenSchema } from './tokens.schema.ts';

/** The whole schema, code-first. `npm run graphql:print` writes it to schema.graphql. */
export function buildSchema(): GraphQLSchema {
  const builder = createBuilder();
  builder.queryType({ description: 'Sync state: why did (or didn\'t) a person sync, and is the sync keeping up?' });
  builder.mutationType({ description: 'Configuration and operator actions. Every mutation answers with `ok` and, when refused, `error`.' });
  const refs = createRefs(builder);
  addLinkSchema(builder, refs);
  addInboxSchema(builder, refs);
  addRunSchema(builder, refs);
  addMappingSchema(builder, refs);
  addMergeSchema(builder, refs);
  addBatchSchema(builder, refs);
  addTokenSchema(builder, refs);
  addErasureSchema(builder);
  addRetentionSchema(builder, refs);
  addConsoleSchema(builder, refs);
  // every mutation: refused to read tokens and audited, in one place
  return guardMutations(builder.toSchema());
}
