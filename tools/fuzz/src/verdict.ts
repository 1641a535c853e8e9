import { RpcReply } from '@weave/contracts';
import type { Case } from './cases';
import type { Outcome } from './send';

/** Null when the answer is what a correct service gives; otherwise what is wrong with it. */
export function verdict(c: Case, o: Outcome): string | null {
  if (o.kind === 'failed') return `no answer: ${o.error}`;
  const e = c.expect;
  switch (e.kind) {
    case 'no-reply':
      return null;
    case 'rpc-refusal': {
      if (o.kind !== 'reply') return `expected a NATS reply, got ${o.kind}`;
      const reply = parseJson(new TextDecoder().decode(o.data));
      const r = RpcReply.safeParse(reply);
      if (!r.success) return `reply is not {ok, error:{code, message}}: ${clip(new TextDecoder().decode(o.data))}`;
      if (r.data.ok) return `accepted: ${clip(JSON.stringify(r.data.result))}`;
      if (!e.codes.includes(r.data.error.code)) return `refused with code ${r.data.error.code}, expected ${e.codes.join(' or ')}: ${clip(r.data.error.message)}`;
      return null;
    }
    default: {
      if (o.kind !== 'http') return `expected an HTTP answer, got ${o.kind}`;
      const body = parseJson(o.body);
      const field = (k: string) => (body !== null && typeof body === 'object' && typeof (body as Record<string, unknown>)[k] === 'string' && (body as Record<string, string>)[k]!.length > 0 ? (body as Record<string, string>)[k] : null);
      const answer = `${o.status} ${clip(o.body)}`;
      if (e.kind === 'docker-404') return o.status === 404 && field('Err') ? null : `expected 404 with Err, got ${answer}`;
      if (e.kind === 'docker-broken') return o.status >= 400 && o.status < 500 && field('Err') ? null : `expected a 4xx with Err, got ${answer}`;
      // Docker reads the interface's own field on a 200 (it ignores the other one) and Err otherwise.
      if (o.status === 200) return field(e.iface === 'IpamDriver' ? 'Error' : 'Err') ? null : `200 without ${e.iface === 'IpamDriver' ? 'Error' : 'Err'}: ${answer}`;
      return field('Err') ? null : `status ${o.status} without Err: ${answer}`;
    }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

const clip = (s: string): string => JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}… (${s.length} chars)` : s);
