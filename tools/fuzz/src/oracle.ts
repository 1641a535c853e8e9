import { DeadlineHeader, parseEvent, Presence } from '@weave/contracts';
import type { z } from 'zod';

/**
 * Whether a service would take a payload as a valid request, decoded as that service decodes
 * it. The fuzzer keeps only payloads these reject, so that every case it sends must be refused;
 * a case that is answered with success, or changes state, is then the service's fault.
 */

const utf8 = new TextDecoder('utf-8', { fatal: true });

function json(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

/** plugin-api's MAX_BODY_BYTES (services/plugin-api/src/server.ts): Docker's bodies are a few hundred bytes. */
export const PLUGIN_MAX_BODY = 1 << 20;

/** plugin-api: size, the body as UTF-8 (lossy, as Node decodes it), an empty one refused, then JSON and the schema. */
export function acceptsPluginBody(schema: z.ZodType, body: Buffer): boolean {
  if (body.length > PLUGIN_MAX_BODY) return false;
  const text = body.toString('utf8');
  if (text.trim() === '') return false;
  const j = json(text);
  return j.ok && schema.safeParse(j.value).success;
}

/** The bus: strict UTF-8, JSON, the schema; a Weave-Deadline header, when present, must be valid too. */
export function acceptsRpc(schema: z.ZodType, data: Uint8Array, deadline: string | undefined): boolean {
  // NATS headers lose their values' surrounding spaces on the way, so " 123" arrives as "123".
  const arrives = deadline?.trim() ?? '';
  if (arrives !== '' && !DeadlineHeader.safeParse(arrives).success) return false;
  return decodes(data, (v) => schema.safeParse(v).success);
}

export const acceptsPresence = (data: Uint8Array): boolean => decodes(data, (v) => Presence.safeParse(v).success);

export const acceptsEvent = (data: Uint8Array): boolean =>
  decodes(data, (v) => {
    try {
      parseEvent(v);
      return true;
    } catch {
      return false;
    }
  });

function decodes(data: Uint8Array, valid: (v: unknown) => boolean): boolean {
  let text: string;
  try {
    text = utf8.decode(data);
  } catch {
    return false;
  }
  const j = json(text);
  return j.ok && valid(j.value);
}
