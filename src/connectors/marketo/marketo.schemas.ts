import { z } from 'zod';

export const tokenResponseSchema = z.object({
  access_token: z.string().min(1),
  token_type: z.string().optional(),
  /** remaining seconds: identity returns the same token until it expires */
  expires_in: z.number().nonnegative(),
  scope: z.string().optional(),
});

/** Marketo sends codes as quoted integers; some gateways send numbers. */
const codeSchema = z.union([z.string(), z.number()]).transform((code) => String(code));

export const marketoReasonSchema = z.object({ code: codeSchema, message: z.string().default('') });
export type MarketoReason = z.infer<typeof marketoReasonSchema>;

export const envelopeSchema = z.object({
  requestId: z.string().optional(),
  success: z.boolean(),
  // absent when nothing matched; clients must not require it
  result: z.array(z.unknown()).optional(),
  errors: z.array(marketoReasonSchema).optional(),
  warnings: z.array(z.unknown()).optional(),
  moreResult: z.boolean().optional(),
  nextPageToken: z.string().optional(),
});
export type MarketoEnvelope = z.infer<typeof envelopeSchema>;

export const leadSchema = z.looseObject({ id: z.number().int() });
export type MarketoLead = z.infer<typeof leadSchema>;

export const syncResultSchema = z.object({
  id: z.number().int().optional(),
  status: z.enum(['created', 'updated', 'skipped']),
  reasons: z.array(marketoReasonSchema).optional(),
});

export const deleteResultSchema = z.object({
  id: z.number().int().optional(),
  status: z.enum(['deleted', 'skipped']),
  reasons: z.array(marketoReasonSchema).optional(),
});

export const describeFieldSchema = z.object({
  id: z.number().int(),
  displayName: z.string(),
  dataType: z.string(),
  length: z.number().int().optional(),
  // absent when the field is not usable over REST
  rest: z.object({ name: z.string(), readOnly: z.boolean().optional() }).optional(),
  soap: z.object({ name: z.string(), readOnly: z.boolean().optional() }).optional(),
});

export const describe2Schema = z.object({
  name: z.string().optional(),
  searchableFields: z.array(z.array(z.string())).optional(),
  fields: z.array(
    z.object({
      name: z.string(),
      displayName: z.string(),
      dataType: z.string(),
      length: z.number().int().optional(),
      updateable: z.boolean(),
      crmManaged: z.boolean().optional(),
    }),
  ),
});

const attributeValueSchema = z.union([z.string(), z.number(), z.boolean(), z.null()]);

export const activitySchema = z
  .object({
    id: z.number().optional(),
    marketoGUID: z.string().optional(),
    leadId: z.number().int(),
    activityDate: z.string(),
    activityTypeId: z.number().int(),
    campaignId: z.number().int().optional(),
    primaryAttributeValueId: z.number().optional(),
    primaryAttributeValue: z.string().optional(),
    fields: z
      .array(
        z.object({
          id: z.number().optional(),
          name: z.string(),
          newValue: z.string().nullable().optional(),
          oldValue: z.string().nullable().optional(),
        }),
      )
      .optional(),
    attributes: z.array(z.object({ name: z.string(), value: attributeValueSchema.optional(), apiName: z.string().optional() })).optional(),
  })
  // activity ids can be missing or non-unique on Activity Service instances: key on marketoGUID
  .transform((activity) => ({ ...activity, marketoGUID: activity.marketoGUID ?? String(activity.id ?? '') }));
export type MarketoActivity = z.infer<typeof activitySchema>;

export const usageSchema = z.object({
  date: z.string(),
  total: z.number(),
  users: z.array(z.object({ userId: z.string(), count: z.number() })).optional(),
});
export type MarketoDailyUsage = z.infer<typeof usageSchema>;
