import { InvalidRequestError } from '@weave/errors';

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

export const encodeJson = (v: unknown): Uint8Array => enc.encode(JSON.stringify(v));

export function decodeJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(dec.decode(data));
  } catch (e) {
    throw new InvalidRequestError('payload is not UTF-8 JSON', { cause: e });
  }
}
