import { createGraphQLError } from 'graphql-yoga';
import { z } from 'zod';
import { Prisma, type FieldMapping } from '../db/generated/client.ts';
import type { FieldAccess } from '../sync/mappings.ts';
import { collisionWinner } from '../sync/policy.ts';
import type { Builder } from './builder.ts';
import type { FieldMappingDraft } from './context.ts';
import type { Refs } from './refs.ts';
import { vendorReadAllowed } from './vendor-reads.ts';

// Field selection (SPEC 5): which fields sync, checked against both systems' live metadata by the
// engine (validateFieldMapping) before anything is stored. Enabling a field schedules its back-fill.

const draftSchema = z.object({
  entity: z.enum(['LEAD', 'CONTACT']),
  canonicalField: z.string().trim().regex(/^[A-Za-z][A-Za-z0-9_]{0,63}$/, 'a letter, then letters, digits or _ (at most 64)'),
  marketoField: z.string().trim().regex(/^[A-Za-z][A-Za-z0-9_.]{0,99}$/, "a Marketo REST field name, e.g. 'firstName'"),
  dynamicsAttribute: z
    .string()
    .trim()
    .toLowerCase()
    .regex(/^(?:(?:account|owner)\.)?[a-z][a-z0-9_]{0,99}$/, "a Dataverse column logical name, e.g. 'firstname', or a column of the contact's account or of the owner, e.g. 'account.name', 'owner.internalemailaddress'"),
  direction: z.enum(['BOTH', 'MARKETO_TO_DYNAMICS', 'DYNAMICS_TO_MARKETO']),
  collisionWinner: z.enum(['MARKETO', 'DYNAMICS']).nullable(),
  enabled: z.boolean(),
  valueMap: z
    .array(z.object({ dynamicsValue: z.string().regex(/^-?\d{1,10}$/, 'a Dynamics option value (an integer)'), marketoValue: z.string().max(255) }))
    .nullable()
    .transform((entries) => (entries ? Object.fromEntries(entries.map((e) => [e.dynamicsValue, e.marketoValue])) : null)),
})
  // the account and the owner are read through the record and never written: they sync one way
  .refine((d) => !/^(account|owner)\./.test(d.dynamicsAttribute) || d.direction === 'DYNAMICS_TO_MARKETO', {
    path: ['direction'],
    message: 'a column of the account or the owner syncs DYNAMICS_TO_MARKETO only',
  })
  .refine((d) => !d.dynamicsAttribute.startsWith('account.') || d.entity === 'CONTACT', {
    path: ['dynamicsAttribute'],
    message: "only a contact has a parent account (a lead's company is its own companyname column)",
  }) satisfies z.ZodType<FieldMappingDraft, unknown>;

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  return issue ? `${issue.path.join('.') || 'input'}: ${issue.message}` : 'invalid input';
}

interface MappingPayload {
  ok: boolean;
  error: string | null;
  fieldMapping: FieldMapping | null;
  backfillScheduled: boolean;
}

const refused = (error: string, fieldMapping: FieldMapping | null = null): MappingPayload => ({ ok: false, error, fieldMapping, backfillScheduled: false });

export function addMappingSchema(builder: Builder, refs: Refs) {
  const { enums } = refs;

  const DynamicsAccess = builder.objectRef<FieldAccess['dynamics']>('DynamicsColumnAccess').implement({
    description: "What the Dynamics sync user may do with the column (its security roles and field security).",
    fields: (t) => ({
      exists: t.exposeBoolean('exists'),
      canRead: t.exposeBoolean('canRead', { description: 'false: the field never syncs' }),
      canUpdate: t.exposeBoolean('canUpdate', { description: 'false: the field is never written to Dynamics' }),
      canCreate: t.exposeBoolean('canCreate'),
    }),
  });
  const MarketoAccess = builder.objectRef<FieldAccess['marketo']>('MarketoFieldAccess').implement({
    description: "What Marketo's REST API says about the field.",
    fields: (t) => ({
      exists: t.exposeBoolean('exists'),
      updateable: t.exposeBoolean('updateable', { description: 'false: the field is never written to Marketo' }),
      dataType: t.exposeString('dataType', { nullable: true }),
    }),
  });
  const FieldAccessRef = builder.objectRef<FieldAccess>('FieldAccess').implement({
    description: "Both systems' metadata for a mapped field, as last checked by the sync.",
    fields: (t) => ({
      dynamics: t.field({ type: DynamicsAccess, resolve: (a) => a.dynamics }),
      marketo: t.field({ type: MarketoAccess, resolve: (a) => a.marketo }),
    }),
  });
  const ValueMapEntry = builder.objectRef<{ dynamicsValue: string; marketoValue: string }>('ValueMapEntry').implement({
    description: 'A Dynamics option value and the Marketo string it maps to.',
    fields: (t) => ({ dynamicsValue: t.exposeString('dynamicsValue'), marketoValue: t.exposeString('marketoValue') }),
  });

  const readAccess = (json: Prisma.JsonValue): FieldAccess | null => {
    const access = json as Partial<FieldAccess> | null;
    return access && typeof access === 'object' && access.dynamics && access.marketo ? (access as FieldAccess) : null;
  };

  refs.FieldMapping.implement({
    description: 'Which canonical field syncs between which Marketo field and Dynamics column, and how.',
    fields: (t) => ({
      id: t.exposeID('id'),
      entity: t.field({ type: enums.DynamicsEntity, resolve: (m) => m.entity }),
      canonicalField: t.exposeString('canonicalField'),
      marketoField: t.exposeString('marketoField', { description: 'Marketo REST field name' }),
      dynamicsAttribute: t.exposeString('dynamicsAttribute', { description: 'Dataverse column logical name' }),
      direction: t.field({ type: enums.SyncDirection, resolve: (m) => m.direction }),
      collisionWinner: t.field({
        type: enums.SyncSide,
        nullable: true,
        description: "an admin's per-field override; null: the entity's rule",
        resolve: (m) => m.collisionWinner,
      }),
      effectiveWinner: t.field({ type: enums.SyncSide, description: 'who wins a collision on this field', resolve: (m) => collisionWinner(m.entity, m.collisionWinner).winner }),
      effectiveRule: t.field({ type: enums.CollisionRule, description: 'why', resolve: (m) => collisionWinner(m.entity, m.collisionWinner).rule }),
      enabled: t.exposeBoolean('enabled'),
      valueMap: t.field({
        type: [ValueMapEntry],
        nullable: true,
        description: 'for choice columns',
        resolve: (m) =>
          m.valueMap && typeof m.valueMap === 'object' && !Array.isArray(m.valueMap)
            ? Object.entries(m.valueMap).map(([dynamicsValue, marketoValue]) => ({ dynamicsValue, marketoValue: typeof marketoValue === 'string' ? marketoValue : JSON.stringify(marketoValue) }))
            : null,
      }),
      access: t.field({
        type: FieldAccessRef,
        nullable: true,
        description: 'what both systems said about this field when last checked; null until the sync has checked it',
        resolve: (m) => readAccess(m.access),
      }),
      accessCheckedAt: t.field({ type: 'DateTime', nullable: true, resolve: (m) => m.accessCheckedAt }),
      backfillRequestedAt: t.field({ type: 'DateTime', nullable: true, description: 'when a back-fill was last requested (the next sweep does it)', resolve: (m) => m.backfillRequestedAt }),
      createdAt: t.field({ type: 'DateTime', resolve: (m) => m.createdAt }),
      updatedAt: t.field({ type: 'DateTime', resolve: (m) => m.updatedAt }),
    }),
  });

  builder.queryFields((t) => ({
    fieldMappings: t.field({
      type: [refs.FieldMapping],
      description: 'Field mappings (enabled and disabled), by entity then canonical field.',
      args: {
        entity: t.arg({ type: enums.DynamicsEntity, required: false }),
        checkNow: t.arg.boolean({
          required: false,
          description: "true: read both systems' field metadata again first, so `access` is live (a few API calls)",
        }),
      },
      resolve: async (_root, args, ctx) => {
        if (args.checkNow && ctx.deps.live) {
          const allowed = await vendorReadAllowed(ctx);
          if (!allowed.ok) throw createGraphQLError(allowed.message, { extensions: { code: 'RATE_LIMITED' } });
          for (const entity of args.entity ? [args.entity] : (['LEAD', 'CONTACT'] as const)) {
            // a system that does not answer leaves the last stored access (accessCheckedAt says when)
            await ctx.deps.live.refreshFieldAccess(entity).catch((error: unknown) => ctx.deps.logger.warn({ err: error, entity }, 'could not read field metadata now'));
          }
        }
        return ctx.prisma.fieldMapping.findMany({
          where: args.entity ? { entity: args.entity } : {},
          orderBy: [{ entity: 'asc' }, { canonicalField: 'asc' }],
        });
      },
    }),
  }));

  const ValueMapEntryInput = builder.inputType('ValueMapEntryInput', {
    fields: (t) => ({ dynamicsValue: t.string({ required: true }), marketoValue: t.string({ required: true }) }),
  });
  const FieldMappingInput = builder.inputType('FieldMappingInput', {
    description: 'A field mapping to create or change (matched by entity and canonicalField).',
    fields: (t) => ({
      entity: t.field({ type: enums.DynamicsEntity, required: true }),
      canonicalField: t.string({ required: true }),
      marketoField: t.string({ required: true, description: 'Marketo REST field name' }),
      dynamicsAttribute: t.string({ required: true, description: 'Dataverse column logical name' }),
      direction: t.field({ type: enums.SyncDirection, required: false, description: 'default BOTH' }),
      collisionWinner: t.field({ type: enums.SyncSide, required: false, description: "null: the entity's rule" }),
      enabled: t.boolean({ required: false, description: 'default true' }),
      valueMap: t.field({ type: [ValueMapEntryInput], required: false }),
    }),
  });

  const MappingPayloadRef = builder.objectRef<MappingPayload>('FieldMappingPayload').implement({
    description: 'The answer to upsertFieldMapping and disableFieldMapping.',
    fields: (t) => ({
      ok: t.exposeBoolean('ok'),
      error: t.exposeString('error', { nullable: true, description: 'why it was refused (e.g. the Dynamics sync user cannot read the column)' }),
      fieldMapping: t.field({ type: refs.FieldMapping, nullable: true, resolve: (p) => p.fieldMapping }),
      backfillScheduled: t.exposeBoolean('backfillScheduled', { description: 'true when the field was (re-)enabled: the next sweep back-fills it' }),
    }),
  });

  builder.mutationFields((t) => ({
    upsertFieldMapping: t.field({
      type: MappingPayloadRef,
      description:
        "Creates or changes a field mapping after checking it against both systems' live metadata and the sync user's access. " +
        'Enabling a field (new, re-enabled or re-directed) schedules its back-fill.',
      args: { input: t.arg({ type: FieldMappingInput, required: true }) },
      resolve: async (_root, { input }, ctx) => {
        const parsed = draftSchema.safeParse({
          ...input,
          direction: input.direction ?? 'BOTH',
          collisionWinner: input.collisionWinner ?? null,
          enabled: input.enabled ?? true,
          valueMap: input.valueMap ?? null,
        });
        if (!parsed.success) return refused(firstIssue(parsed.error));
        const draft = parsed.data;
        const key = { entity: draft.entity, canonicalField: draft.canonicalField };
        const existing = await ctx.prisma.fieldMapping.findUnique({ where: { entity_canonicalField: key } });
        const clash = await ctx.prisma.fieldMapping.findFirst({
          where: { entity: draft.entity, dynamicsAttribute: draft.dynamicsAttribute, NOT: { canonicalField: draft.canonicalField } },
        });
        if (clash) return refused(`${draft.entity} column ${draft.dynamicsAttribute} is already mapped to ${clash.canonicalField}`, existing);
        const validation = await ctx.deps.actions.validateFieldMapping(draft);
        if (!validation.ok) return refused(validation.reason, existing);

        const backfill =
          draft.enabled &&
          (!existing || !existing.enabled || existing.marketoField !== draft.marketoField || existing.dynamicsAttribute !== draft.dynamicsAttribute);
        const data = {
          marketoField: draft.marketoField,
          dynamicsAttribute: draft.dynamicsAttribute,
          direction: draft.direction,
          collisionWinner: draft.collisionWinner,
          enabled: draft.enabled,
          valueMap: draft.valueMap ?? Prisma.DbNull,
          ...(backfill ? { backfillRequestedAt: new Date() } : {}),
        };
        const row = await ctx.prisma.fieldMapping.upsert({ where: { entity_canonicalField: key }, create: { ...key, ...data }, update: data });
        ctx.deps.actions.fieldMappingChanged?.(draft.entity);
        if (backfill) await ctx.deps.actions.scheduleBackfill(draft.entity, draft.canonicalField);
        ctx.deps.logger.info({ entity: draft.entity, field: draft.canonicalField, enabled: draft.enabled, backfill }, 'field mapping changed through GraphQL');
        return { ok: true, error: null, fieldMapping: row, backfillScheduled: backfill };
      },
    }),
    disableFieldMapping: t.field({
      type: MappingPayloadRef,
      description: 'Stops syncing a field (the mapping is kept, disabled). Disabling a disabled field is a no-op.',
      args: { entity: t.arg({ type: enums.DynamicsEntity, required: true }), canonicalField: t.arg.string({ required: true }) },
      resolve: async (_root, args, ctx) => {
        const existing = await ctx.prisma.fieldMapping.findUnique({ where: { entity_canonicalField: { entity: args.entity, canonicalField: args.canonicalField } } });
        if (!existing) return refused(`no ${args.entity} mapping for ${args.canonicalField}`);
        if (!existing.enabled) return { ok: true, error: null, fieldMapping: existing, backfillScheduled: false };
        const validation = await ctx.deps.actions.validateFieldMapping({
          entity: existing.entity,
          canonicalField: existing.canonicalField,
          marketoField: existing.marketoField,
          dynamicsAttribute: existing.dynamicsAttribute,
          direction: existing.direction,
          collisionWinner: existing.collisionWinner,
          enabled: false,
          valueMap: (existing.valueMap as Record<string, string> | null) ?? null,
        });
        if (!validation.ok) return refused(validation.reason, existing);
        const row = await ctx.prisma.fieldMapping.update({ where: { id: existing.id }, data: { enabled: false } });
        ctx.deps.actions.fieldMappingChanged?.(existing.entity);
        ctx.deps.logger.info({ entity: existing.entity, field: existing.canonicalField }, 'field mapping disabled through GraphQL');
        return { ok: true, error: null, fieldMapping: row, backfillScheduled: false };
      },
    }),
  }));
}
