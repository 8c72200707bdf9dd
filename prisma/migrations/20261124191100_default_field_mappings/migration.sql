-- The default field mapping of SPEC.md. Admins add, disable and re-direct fields later;
-- ON CONFLICT keeps their changes if this ever runs against a database that has mappings.
INSERT INTO "field_mapping" ("id", "entity", "canonicalField", "marketoField", "dynamicsAttribute", "direction", "enabled", "updatedAt") VALUES
  (gen_random_uuid(), 'LEAD', 'email', 'email', 'emailaddress1', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'firstName', 'firstName', 'firstname', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'lastName', 'lastName', 'lastname', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'title', 'title', 'jobtitle', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'phone', 'phone', 'telephone1', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'mobilePhone', 'mobilePhone', 'mobilephone', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'company', 'company', 'companyname', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'street', 'address', 'address1_line1', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'city', 'city', 'address1_city', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'state', 'state', 'address1_stateorprovince', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'postalCode', 'postalCode', 'address1_postalcode', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'country', 'country', 'address1_country', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'unsubscribed', 'unsubscribed', 'donotbulkemail', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'email', 'email', 'emailaddress1', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'firstName', 'firstName', 'firstname', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'lastName', 'lastName', 'lastname', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'title', 'title', 'jobtitle', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'phone', 'phone', 'telephone1', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'mobilePhone', 'mobilePhone', 'mobilephone', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'street', 'address', 'address1_line1', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'city', 'city', 'address1_city', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'state', 'state', 'address1_stateorprovince', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'postalCode', 'postalCode', 'address1_postalcode', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'country', 'country', 'address1_country', 'BOTH', true, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'unsubscribed', 'unsubscribed', 'donotbulkemail', 'BOTH', true, CURRENT_TIMESTAMP)
ON CONFLICT DO NOTHING;
