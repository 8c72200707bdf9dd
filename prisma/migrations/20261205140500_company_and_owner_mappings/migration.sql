-- Company fields of a contact-linked person come from the contact's parent account, owner fields of
-- any person from the Dynamics owner (a systemuser), one way, as Marketo's own Dynamics sync carries
-- them. The column names carry the related row: account.<column> or owner.<column>.
-- The owner goes to custom Marketo fields: Lead Owner fields are filled by Marketo from a Sales
-- Person and are read-only over the API (docs/marketo-setup.md).
-- The back-fill request makes the next sweep copy them for every existing link, as enabling a field does.
-- ON CONFLICT keeps an admin's own mapping of the same canonical field.
INSERT INTO "field_mapping" ("id", "entity", "canonicalField", "marketoField", "dynamicsAttribute", "direction", "enabled", "backfillRequestedAt", "updatedAt") VALUES
  (gen_random_uuid(), 'CONTACT', 'company', 'company', 'account.name', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'website', 'website', 'account.websiteurl', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'mainPhone', 'mainPhone', 'account.telephone1', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'industry', 'industry', 'account.industrycode', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'numberOfEmployees', 'numberOfEmployees', 'account.numberofemployees', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'annualRevenue', 'annualRevenue', 'account.revenue', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'sicCode', 'sicCode', 'account.sic', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'billingStreet', 'billingStreet', 'account.address1_line1', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'billingCity', 'billingCity', 'account.address1_city', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'billingState', 'billingState', 'account.address1_stateorprovince', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'billingPostalCode', 'billingPostalCode', 'account.address1_postalcode', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'billingCountry', 'billingCountry', 'account.address1_country', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'ownerName', 'dynamicsOwnerName', 'owner.fullname', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'ownerEmail', 'dynamicsOwnerEmail', 'owner.internalemailaddress', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'ownerPhone', 'dynamicsOwnerPhone', 'owner.address1_telephone1', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'LEAD', 'ownerTitle', 'dynamicsOwnerTitle', 'owner.title', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'ownerName', 'dynamicsOwnerName', 'owner.fullname', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'ownerEmail', 'dynamicsOwnerEmail', 'owner.internalemailaddress', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'ownerPhone', 'dynamicsOwnerPhone', 'owner.address1_telephone1', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
  (gen_random_uuid(), 'CONTACT', 'ownerTitle', 'dynamicsOwnerTitle', 'owner.title', 'DYNAMICS_TO_MARKETO', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)
ON CONFLICT DO NOTHING;
