import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type * as GraphQL from 'graphql';
import { describe, expect, it } from 'vitest';
import { buildSchema } from '../../src/graphql/schema.ts';

// Pothos builds the schema with the graphql module Node resolves (CommonJS); vitest would hand
// this file graphql's ESM build, a second instance that refuses the first one's types.
const { printSchema } = createRequire(import.meta.url)('graphql') as typeof GraphQL;

describe('the GraphQL schema', () => {
  it('matches the committed schema.graphql (run npm run graphql:print after changing it)', async () => {
    const committed = await readFile(new URL('../../schema.graphql', import.meta.url), 'utf8');
    expect(`${printSchema(buildSchema())}\n`).toBe(committed);
  });

  it("keeps the contract's names: link, activities, syncRuns, syncStatus, requestSweep, requestPersonSync", () => {
    const schema = buildSchema();
    const query = schema.getQueryType()?.getFields() ?? {};
    const mutation = schema.getMutationType()?.getFields() ?? {};
    for (const name of ['link', 'links', 'activities', 'collisions', 'changeEvents', 'syncRuns', 'fieldMappings', 'syncStatus']) expect(query).toHaveProperty(name);
    for (const name of ['requestSweep', 'requestPersonSync', 'resolveCollision', 'replayChangeEvent', 'replayChangeEvents', 'upsertFieldMapping', 'disableFieldMapping']) {
      expect(mutation).toHaveProperty(name);
    }
    expect(String(query.link?.type)).toBe('SyncLink');
    expect(query.activities?.args.map((a) => a.name)).toEqual(expect.arrayContaining(['marketoId', 'dynamicsId', 'types', 'first', 'after']));
    const activityType = schema.getType('ActivityType') as GraphQL.GraphQLEnumType;
    for (const value of ['LINKED', 'CREATED_IN_DYNAMICS', 'CREATED_IN_MARKETO', 'UPDATED_IN_DYNAMICS', 'UPDATED_IN_MARKETO', 'COLLISION_RESOLVED', 'VALIDATION_REJECTED', 'FIELD_SKIPPED', 'DELETED_IN_DYNAMICS', 'DELETED_IN_MARKETO', 'LINK_MOVED', 'SYNC_FAILED']) {
      expect(activityType.getValue(value)).toBeDefined();
    }
  });
});
