import type { DataConverter } from '@temporalio/common';
import { EncryptionCodec } from '../../lib/config/payload-codec.js';
import { parsePayloadKeys } from '../../lib/config/payload-keys.js';

/**
 * TEST FIXTURE KEYS, public by being committed: the test stack's clients and
 * workers encrypt Temporal payloads with these, and the committed encrypted
 * histories under test/workflow/histories/ were recorded with
 * TEST_FIXTURE_PAYLOAD_KEY_A. Never use them outside test/ (production refuses to
 * start without PAYLOAD_KEYS of its own; the dev stack makes a key per machine).
 */
export const TEST_FIXTURE_PAYLOAD_KEY_A = 'test-fixture-a:EM84pI3Ta14H4GQV0jFnedLsvNmgUSxkwgIVg61PFhQ=';
/** A second fixture key: "the new key" of the rotation tests. */
export const TEST_FIXTURE_PAYLOAD_KEY_B = 'test-fixture-b:GItzklvgYm11C0grXuwRZqaQlGwgPllPmhTQKa22zTA=';

/** The keyring the test stack runs with: encrypts with fixture key A. */
export const TEST_PAYLOAD_KEYS = TEST_FIXTURE_PAYLOAD_KEY_A;

export function testPayloadCodec(keys: string = TEST_PAYLOAD_KEYS): EncryptionCodec {
  return new EncryptionCodec(parsePayloadKeys(keys));
}

/** For a Client, Worker or replayer of the test stack. */
export function testDataConverter(keys: string = TEST_PAYLOAD_KEYS): DataConverter {
  return { payloadCodecs: [testPayloadCodec(keys)] };
}
