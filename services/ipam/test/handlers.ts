import { silentLogger } from '@weave/log';
import { parseCidr } from '@weave/netaddr';
import { ALWAYS_LIVE, IpamDeps } from '../src/deps';
import { StaticRoutes } from '../src/host-routes';
import { Ipam } from '../src/ipam';
import type { IpamStore } from '../src/store';

/** An event as the handlers published it. */
export type Event = { kind: string; data: Record<string, unknown> };

let ids = 0;

/**
 * The handlers of one host over `store` (the in-memory one: no nats-server, so every interleaving
 * and crash is cheap), always live, with the events they publish. Blocks of 16 and a fixed clock
 * unless told otherwise; nothing kept for a MAC unless `keepMs`.
 */
export function handlersOf(host: string, store: IpamStore, o: { blockSize?: number; now?: () => Date; keepMs?: number; randomBytes?: (n: number) => Uint8Array } = {}) {
  const events: Event[] = [];
  const deps: IpamDeps = {
    host,
    store,
    routes: new StaticRoutes(),
    events: { publish: (kind: string, data: unknown) => void events.push({ kind, data: data as Record<string, unknown> }) },
    log: silentLogger(),
    config: { defaultRange: parseCidr('10.32.0.0/12'), defaultPrefix: 24, blockSize: o.blockSize ?? 16, ...(o.keepMs === undefined ? {} : { keepMs: o.keepMs }) },
    membership: ALWAYS_LIVE,
    now: o.now ?? (() => new Date('2026-11-29T12:00:00Z')),
    newId: () => `gen-${++ids}`,
    // Each host proposes its own ULA prefix, as real hosts would, so tests see whose one won.
    randomBytes: o.randomBytes ?? ((n: number) => Uint8Array.from({ length: n }, (_, i) => host.charCodeAt(i % host.length))),
  };
  return { ipam: new Ipam(deps), events };
}
