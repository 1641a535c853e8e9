import { randomBytes } from 'node:crypto';
import { EventDataOf, EventKindOf, EventKinds, NetworkSpec } from '@weave/contracts';
import { silentLogger } from '@weave/log';
import { z } from 'zod';
import { containerVethName, EndpointRecord, FakeKernel, hostVethName, MemoryStore, Netwire, NetwireEvents } from '../src';

export const newId = (): string => randomBytes(32).toString('hex');

/** Records events, validating each against the contract as the real publisher does. */
export class RecordingEvents implements NetwireEvents {
  readonly seen: Array<{ kind: string; data: unknown }> = [];
  publish<K extends EventKindOf<'netwire'>>(kind: K, data: EventDataOf<'netwire', K>): void {
    (EventKinds.netwire[kind] as z.ZodType).parse(data);
    this.seen.push({ kind, data });
  }
  kinds(): string[] {
    return this.seen.map((e) => e.kind);
  }
  of(kind: string): unknown[] {
    return this.seen.filter((e) => e.kind === kind).map((e) => e.data);
  }
}

export function networkSpec(o: Partial<NetworkSpec> = {}): NetworkSpec {
  return {
    networkId: o.networkId ?? newId(),
    ipv4: [{ pool: '10.77.0.0/24', gateway: '10.77.0.1/24' }],
    ipv6: [],
    internal: false,
    mtu: null,
    options: {},
    ...o,
  };
}

export function fakeNetwire(o: { mtu?: number | null; now?: () => Date; peerAddresses?: () => string[] } = {}) {
  const kernel = new FakeKernel();
  const store = new MemoryStore();
  const events = new RecordingEvents();
  const netwire = new Netwire({ host: 'h1', kernel, store, events, log: silentLogger(), mtu: o.mtu ?? null, random: () => Uint8Array.from([0xff, 1, 2, 3, 4, 5]), now: o.now, peerAddresses: o.peerAddresses });
  return { kernel, store, events, netwire };
}

export const endpointReq = (networkId: string, o: { endpointId?: string; address?: string | null; mac?: string | null } = {}) => ({
  networkId,
  endpointId: o.endpointId ?? newId(),
  address: o.address === undefined ? '10.77.0.2/24' : o.address,
  addressV6: null,
  mac: o.mac ?? null,
});

/** An endpoint's record as netwire keeps it, for plans and stores built by hand. */
export const endpointRecord = (networkId: string, endpointId: string, o: Partial<EndpointRecord> = {}): EndpointRecord => ({
  networkId,
  endpointId,
  address: '10.77.0.2/24',
  addressV6: null,
  mac: '02:42:0a:4d:00:02',
  macGenerated: true,
  hostVeth: hostVethName(endpointId),
  containerVeth: containerVethName(endpointId),
  ...o,
});
