import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';
import type { PayloadKeyring } from './payload-keys.js';

/**
 * Encrypts every Temporal payload this deployment writes (workflow and
 * activity inputs and results, signals, queries, memo, failure details) with
 * AES-256-GCM, so the history Temporal stores and shows holds ciphertext: lead
 * notes, email thread text and drafts never reach it in clear. The whole
 * payload (its metadata and data) is encrypted; the wire payload says only
 * `binary/encrypted` and the id of the key, so keys can rotate
 * (lib/config/payload-keys.ts). Payloads without that encoding pass through
 * decode unchanged: histories from before encryption still replay, and a
 * signal sent by the plain `temporal` CLI still arrives.
 *
 * Codecs run outside the workflow sandbox (client, worker, replayer, the
 * codec endpoint of api/routes/codec.ts); workflow code is unaware of them.
 * Search attributes are not payloads a codec sees: they stay readable by
 * design (docs/temporal-payloads.md).
 */

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const ENCODING_BYTES = Buffer.from(ENCRYPTED_ENCODING);

/** A payload that cannot be decrypted: its key is not configured, or it was altered. */
export class PayloadDecryptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadDecryptError';
  }
}

export class EncryptionCodec implements PayloadCodec {
  constructor(private readonly keys: PayloadKeyring) {}

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => this.encrypt(p));
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => this.decrypt(p));
  }

  encrypt(payload: Payload): Payload {
    const keyId = this.keys.encryptKeyId;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.keys.encryptKey, iv, { authTagLength: TAG_BYTES });
    // The key id is authenticated with the data: a payload relabelled with another id fails to decrypt.
    cipher.setAAD(Buffer.from(keyId));
    const plain = proto.temporal.api.common.v1.Payload.encode(payload).finish();
    const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return { metadata: { encoding: ENCODING_BYTES, [KEY_ID_METADATA]: Buffer.from(keyId) }, data: sealed };
  }

  decrypt(payload: Payload): Payload {
    if (!isEncrypted(payload)) return payload;
    const keyIdBytes = payload.metadata?.[KEY_ID_METADATA];
    if (!keyIdBytes) throw new PayloadDecryptError(`an encrypted payload names no key (metadata "${KEY_ID_METADATA}" missing)`);
    const keyId = Buffer.from(keyIdBytes).toString('utf8');
    const key = this.keys.key(keyId);
    if (!key) {
      throw new PayloadDecryptError(
        `payload encrypted with key "${keyId}", which PAYLOAD_KEYS does not hold (it holds ${this.keys.ids.map((id) => `"${id}"`).join(', ')}): add that key back to PAYLOAD_KEYS, after the current one`,
      );
    }
    const data = Buffer.from(payload.data ?? new Uint8Array());
    if (data.length < IV_BYTES + TAG_BYTES) throw new PayloadDecryptError(`encrypted payload (key "${keyId}") is truncated`);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(keyIdBytes);
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      const plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
      const decoded = proto.temporal.api.common.v1.Payload.decode(plain);
      // A plain object: the SDK's own protobufjs copy must not meet this one's message class.
      return { metadata: { ...decoded.metadata }, data: decoded.data };
    } catch {
      throw new PayloadDecryptError(`encrypted payload (key "${keyId}") failed authentication: it was altered, or the key under that id is not the one that encrypted it`);
    }
  }
}

export function isEncrypted(payload: Payload): boolean {
  const encoding = payload.metadata?.encoding;
  return encoding !== undefined && encoding !== null && Buffer.from(encoding).equals(ENCODING_BYTES);
}

/**
 * A payload as the codec-server protocol writes it: protobuf JSON, i.e.
 * metadata values and data in base64 (what the Temporal UI and CLI send to
 * `{endpoint}/decode` and `{endpoint}/encode`).
 */
export interface JsonPayload {
  metadata?: Record<string, string> | null;
  data?: string | null;
}

export function payloadFromJson(json: JsonPayload): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(json.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
    data: Buffer.from(json.data ?? '', 'base64'),
  };
}

export function payloadToJson(payload: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    data: Buffer.from(payload.data ?? new Uint8Array()).toString('base64'),
  };
}
