import { z } from 'zod';

export const guidSchema = z.guid();

export const tokenResponseSchema = z.object({
  token_type: z.string(),
  // Entra v1 endpoints send seconds as a string; v2 sends a number
  expires_in: z.coerce.number().positive(),
  access_token: z.string().min(1),
});

export const tokenErrorSchema = z.object({
  error: z.string(),
  error_description: z.string().optional(),
  error_codes: z.array(z.number()).optional(),
});

export const errorBodySchema = z.object({
  error: z.object({
    // older platform versions send an empty code
    code: z.string().optional(),
    message: z.string().optional(),
  }),
});

export const whoAmIResponseSchema = z.object({
  UserId: guidSchema,
  BusinessUnitId: guidSchema,
  OrganizationId: guidSchema,
});
export type DataverseIdentity = { userId: string; businessUnitId: string; organizationId: string };

export const rowSchema = z.looseObject({
  '@odata.etag': z.string(),
  versionnumber: z.union([z.number(), z.string().regex(/^\d+$/).transform(Number)]),
  modifiedon: z.string(),
  _modifiedby_value: guidSchema.nullable().optional(),
});

export const tombstoneSchema = z.object({
  '@odata.context': z.string().endsWith('$deletedEntity'),
  id: guidSchema,
  reason: z.string(),
});

export const collectionSchema = z.looseObject({
  value: z.array(z.record(z.string(), z.unknown())),
  '@odata.nextLink': z.string().optional(),
  '@odata.deltaLink': z.string().optional(),
});

const labelSchema = z
  .looseObject({ UserLocalizedLabel: z.looseObject({ Label: z.string() }).nullable().optional() })
  .nullable()
  .optional();

export const attributeMetadataSchema = z.looseObject({
  LogicalName: z.string(),
  MetadataId: guidSchema,
  AttributeType: z.string(),
  IsSecured: z.boolean().nullable().optional(),
  IsValidForRead: z.boolean().nullable().optional(),
  IsValidForCreate: z.boolean().nullable().optional(),
  IsValidForUpdate: z.boolean().nullable().optional(),
  AttributeOf: z.string().nullable().optional(),
  RequiredLevel: z.looseObject({ Value: z.string() }).nullable().optional(),
  MaxLength: z.number().nullable().optional(),
});

export const optionSetAttributeSchema = z.looseObject({
  LogicalName: z.string(),
  OptionSet: z
    .looseObject({
      Options: z.array(z.looseObject({ Value: z.number(), Label: labelSchema })).optional(),
      TrueOption: z.looseObject({ Value: z.number(), Label: labelSchema }).nullable().optional(),
      FalseOption: z.looseObject({ Value: z.number(), Label: labelSchema }).nullable().optional(),
    })
    .nullable()
    .optional(),
});

export const attributePrivilegesSchema = z.object({
  AttributePrivileges: z.array(
    z.looseObject({
      AttributeId: guidSchema,
      CanCreate: z.number(),
      CanRead: z.number(),
      CanUpdate: z.number(),
    }),
  ),
});

export const systemUserRowSchema = z.looseObject({ systemuserid: guidSchema });
