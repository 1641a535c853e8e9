import { type ErrorCode, Subjects } from '@weave/contracts';
import { acceptsPluginBody, acceptsRpc, PLUGIN_MAX_BODY } from './oracle';
import { malformed, Payload } from './mutate';
import { caseRng, Rng } from './rng';
import { render } from './tree';
import type { Dangling, Target } from './targets';
import { brokenHttp, pluginTransport, strayPath } from './http-cases';

/** What a correct service does with the case. */
export type Expect =
  /** Docker's refusal: 200 with the interface's error field, or a non-200 status with `Err`. */
  | { kind: 'docker-refusal'; iface: 'NetworkDriver' | 'IpamDriver' }
  /** A method the plugin does not have: 404 with `Err`. */
  | { kind: 'docker-404' }
  /** HTTP the server cannot parse: a 4xx with `Err`. */
  | { kind: 'docker-broken' }
  /** `{ok:false, error:{code, message}}` with one of these codes. */
  | { kind: 'rpc-refusal'; codes: readonly ErrorCode[] }
  /** A message without a reply subject: no answer, only no crash and no change. */
  | { kind: 'no-reply' };

export type Wire =
  | { to: 'plugin'; verb: string; path: string; headers: Record<string, string>; body: Buffer; chunked: boolean }
  | { to: 'plugin-raw'; bytes: Buffer }
  | { to: 'nats'; subject: string; deadline: string | undefined; data: Buffer; reply: boolean };

type Draft = Wire & { what: string; expect: Expect };
export type Case = Draft & { index: number; target: string };

/** The NATS server's default max_payload, less room for headers: larger messages never leave the client. */
export const NATS_MAX_PAYLOAD = (1 << 20) - 8192;
const NOT_INTERNAL: readonly ErrorCode[] = ['invalid', 'not_found', 'conflict', 'exhausted', 'unavailable'];
/** A deadline as the bus's clients send it; far ahead, so a case never depends on the clock. */
const FAR_DEADLINE = '4102444800000';
const BAD_DEADLINES = ['abc', '-1', '1e3', '12.5', ' 12 3', '0x10', '9'.repeat(16), '\uff11\uff12\uff13', '1'.repeat(2000), 'null', '[]', '1 2'];
const ODD_METHODS = ['bogus', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'Status', 'STATUS', 'requestpool', 'status_', '-', '0', 'x'.repeat(200)];

/**
 * Case `index` of the run seeded with `seed`: always the same case for the same three inputs.
 * Targets take turns, so each gets the same share. A generated payload the service would in
 * fact accept is replaced by another attempt, so every case sent must be refused.
 */
export function generateCase(seed: number, index: number, targets: readonly Target[]): Case {
  const target = targets[index % targets.length]!;
  for (let attempt = 0; attempt < 50; attempt++) {
    const c = caseFor(caseRng(seed, index, attempt), target);
    if (c) return { ...c, index, target: target.name };
  }
  throw new Error(`case ${index} of seed ${seed}: no malformed input for ${target.name} after 50 attempts`);
}

function caseFor(r: Rng, t: Target): Draft | null {
  switch (t.kind) {
    case 'plugin': {
      const refusal = r.chance(0.1) && t.dangling.length > 0 ? danglingPayload(r.pick(t.dangling)) : null;
      const p = refusal ?? (r.chance(0.03) ? oversized(r, render(t.seed)) : malformed(r, t.schema, t.seed, PLUGIN_MAX_BODY));
      if (!refusal && acceptsPluginBody(t.schema, p.bytes) && !refusedAnyway(t, p.bytes)) return null;
      const x = pluginTransport(r);
      return { to: 'plugin', verb: 'POST', path: t.path + x.query, headers: x.headers, body: p.bytes, chunked: x.chunked, what: [p.what, x.what].filter(Boolean).join('; '), expect: { kind: 'docker-refusal', iface: t.iface } };
    }
    case 'plugin-paths': {
      const s = strayPath(r);
      return { to: 'plugin', verb: s.verb, path: s.path, headers: {}, body: s.body, chunked: false, what: s.what, expect: { kind: 'docker-404' } };
    }
    case 'plugin-http': {
      const b = brokenHttp(r);
      return { to: 'plugin-raw', bytes: b.bytes, what: b.what, expect: { kind: 'docker-broken' } };
    }
    case 'rpc':
      return rpcCase(r, t);
    case 'rpc-unknown': {
      const method = r.chance(0.8) ? r.pick(ODD_METHODS) : `m${r.int(1e6)}`;
      const data = Buffer.from(r.pick(['{}', '', 'null', '{"poolId":"x"}', '\u0000']));
      return nats(Subjects.rpc(t.host, t.service, method), FAR_DEADLINE, data, `method ${JSON.stringify(method)}`, { kind: 'rpc-refusal', codes: ['invalid'] });
    }
    case 'publish': {
      const p = malformed(r, t.schema, t.seed, NATS_MAX_PAYLOAD);
      if (p.bytes.length > NATS_MAX_PAYLOAD || t.accepts(p.bytes)) return null;
      return { to: 'nats', subject: t.subject, deadline: undefined, data: p.bytes, reply: false, what: p.what, expect: { kind: 'no-reply' } };
    }
  }
}

function rpcCase(r: Rng, t: Extract<Target, { kind: 'rpc' }>): Draft | null {
  const subject = Subjects.rpc(t.host, t.service, t.method);
  // A valid body with a malformed deadline: refused before the handler runs, or state changes.
  if (r.chance(0.05)) {
    const d = r.pick(BAD_DEADLINES);
    const body = Buffer.from(render(t.seed));
    if (acceptsRpc(t.schema, body, d)) return null;
    return nats(subject, d, body, `a valid request with Weave-Deadline ${JSON.stringify(d.slice(0, 20))}`, { kind: 'rpc-refusal', codes: ['invalid'] });
  }
  const refusal = r.chance(0.1) && t.dangling.length > 0 ? danglingPayload(r.pick(t.dangling)) : null;
  const p = refusal ?? malformed(r, t.schema, t.seed, NATS_MAX_PAYLOAD);
  const deadline = r.chance(0.85) ? FAR_DEADLINE : r.chance(0.5) ? undefined : r.pick(BAD_DEADLINES);
  if (p.bytes.length > NATS_MAX_PAYLOAD) return null;
  const accepted = acceptsRpc(t.schema, p.bytes, deadline);
  if (!refusal && accepted && !refusedAnyway(t, p.bytes)) return null;
  const what = deadline === FAR_DEADLINE || deadline === undefined ? p.what : `${p.what}; Weave-Deadline ${JSON.stringify(deadline.slice(0, 20))}`;
  const codes = accepted ? NOT_INTERNAL : (['invalid'] as const);
  const c = nats(subject, deadline, p.bytes, what, { kind: 'rpc-refusal', codes });
  // Now and then nobody waits for the answer: the service must cope with having no one to tell.
  return r.chance(0.03) ? { ...c, reply: false, what: `${what}; no reply subject`, expect: { kind: 'no-reply' } } : c;
}

function nats(subject: string, deadline: string | undefined, data: Buffer, what: string, expect: Expect): Extract<Draft, { to: 'nats' }> {
  return { to: 'nats', subject, deadline, data, reply: true, what, expect };
}

const danglingPayload = (d: Dangling): Payload => ({ bytes: Buffer.from(render(d.body)), what: `schema-valid but refused: ${d.what}` });

function refusedAnyway(t: { refusedAnyway?: (v: unknown) => boolean }, bytes: Buffer): boolean {
  if (!t.refusedAnyway) return false;
  try {
    return t.refusedAnyway(JSON.parse(bytes.toString('utf8')));
  } catch {
    return false;
  }
}

/** A body past the plugin's limit: Docker never sends one, so it is refused unread. */
function oversized(r: Rng, seed: string): Payload {
  const pad = PLUGIN_MAX_BODY + r.between(1, PLUGIN_MAX_BODY);
  return r.chance(0.5)
    ? { bytes: Buffer.from(seed + ' '.repeat(pad)), what: `a valid body padded with spaces to ${pad + seed.length} bytes` }
    : { bytes: Buffer.alloc(pad, 'x'), what: `${pad} bytes of x` };
}
