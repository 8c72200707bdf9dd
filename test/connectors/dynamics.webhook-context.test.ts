import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseDataverseWebhook, parseWcfDate, plainWebhookValue } from '../../src/connectors/dynamics/index.ts';

const sample = JSON.parse(readFileSync(new URL('../fixtures/dataverse-webhook-contact-update.json', import.meta.url), 'utf8')) as Record<string, unknown>;

describe('parseDataverseWebhook', () => {
  it('turns the documented contact Update sample into a plain notice', () => {
    const result = parseDataverseWebhook(sample);
    if (!result.ok) throw new Error(result.message);
    expect(result.notice).toEqual({
      messageName: 'Update',
      entity: 'contact',
      id: '6d81597f-0f9f-e711-8122-000d3aa2331c',
      changedAttributes: {
        firstname: 'James',
        contactid: '6d81597f-0f9f-e711-8122-000d3aa2331c',
        fullname: 'James Glynn (sample)',
        yomifullname: 'James Glynn (sample)',
        modifiedon: '2017-09-26T00:04:07.000Z',
        modifiedby: { id: '75c2dd85-e89e-e711-8122-000d3aa2331c', logicalName: 'systemuser', name: null },
        modifiedonbehalfby: null,
      },
      postImage: { fullname: 'James Glynn (sample)', contactid: '6d81597f-0f9f-e711-8122-000d3aa2331c' },
      initiatingUserId: '75c2dd85-e89e-e711-8122-000d3aa2331c',
      userId: '75c2dd85-e89e-e711-8122-000d3aa2331c',
      correlationId: 'b374239d-4233-41a9-8b17-a86cb4f737b5',
      operationId: '4af10637-4ea2-e711-8122-000d3aa2331c',
      requestId: null,
      depth: 1,
      operationCreatedOn: '2017-09-26T07:04:08.000Z',
      organizationId: '4ef5b371-e89e-e711-8122-000d3aa2331c',
      trimmed: false,
    });
  });

  it('reads /Date(ms)/ with or without an offset as the same UTC instant', () => {
    expect(parseWcfDate('/Date(1722582039000+0000)/')).toBe('2024-08-02T07:00:39.000Z');
    expect(parseWcfDate('/Date(1506409448000-0700)/')).toBe('2017-09-26T07:04:08.000Z');
    expect(parseWcfDate('2024-01-01')).toBeNull();
  });

  it('flattens OptionSetValue and Money values to numbers', () => {
    const body = structuredClone(sample) as { InputParameters: { value: { Attributes: unknown[] } }[] };
    const target = body.InputParameters[0]!.value;
    target.Attributes.push(
      { key: 'statecode', value: { __type: 'OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts', Value: 1 } },
      { key: 'revenue', value: { __type: 'Money:http://schemas.microsoft.com/xrm/2011/Contracts', Value: 12.5 } },
    );
    const result = parseDataverseWebhook(body);
    expect(result.ok && result.notice.changedAttributes).toMatchObject({ statecode: 1, revenue: 12.5 });
  });

  it('accepts a payload trimmed for size and says so', () => {
    const body = { ...sample } as Record<string, unknown>;
    for (const k of ['InputParameters', 'PostEntityImages', 'PreEntityImages', 'ParentContext']) delete body[k];
    const result = parseDataverseWebhook(body);
    expect(result.ok && result.notice).toMatchObject({ trimmed: true, changedAttributes: {}, id: '6d81597f-0f9f-e711-8122-000d3aa2331c' });
  });

  it.each([
    ['not an object', 'hello', '(root)'],
    ['an unknown message', { ...sample, MessageName: 'Assign' }, 'MessageName'],
    ['a bad initiating user id', { ...sample, InitiatingUserId: 'me' }, 'InitiatingUserId'],
    ['a date not in /Date()/ form', { ...sample, OperationCreatedOn: '2017-09-26' }, 'OperationCreatedOn'],
    [
      'a Target without attributes',
      { ...sample, InputParameters: [{ key: 'Target', value: { Id: '6d81597f-0f9f-e711-8122-000d3aa2331c', LogicalName: 'contact' } }] },
      'InputParameters[0].value.Attributes',
    ],
  ])('refuses %s and names the first bad path', (_label, body, path) => {
    const result = parseDataverseWebhook(body);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.path).toBe(path);
      expect(result.message).toContain(path);
    }
  });
});

describe('deeply nested attribute values', () => {
  it('are bounded: a value nested far deeper than Dataverse ever sends becomes null below the limit instead of overflowing the stack', () => {
    let value: unknown = 'bottom';
    for (let i = 0; i < 100_000; i += 1) value = { a: value };
    const plain = plainWebhookValue(value);
    let depth = 0;
    for (let v: unknown = plain; v !== null && typeof v === 'object'; v = (v as { a: unknown }).a) depth += 1;
    expect(depth).toBeLessThanOrEqual(17);
    // a real collection of references keeps its shape
    expect(plainWebhookValue({ __type: 'OptionSetValueCollection:x', Value: [{ __type: 'OptionSetValue:x', Value: 3 }] })).toEqual([3]);
  });
});
