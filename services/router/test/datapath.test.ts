import type { EventPublisher } from '@weave/bus';
import { silentLogger } from '@weave/log';
import type { SleeveConfigInput, SleeveStats } from '@weave/sleeve';
import { DataPath, FastPath } from '../src/datapath';
import type { LocalNetwork } from '../src/path-plan';
import { peerIdOf } from '../src/peer-id';
import type { Peer } from '../src/peers';

/** The data path's decisions against fakes of the kernel and the sleeve; the kernel parts have their own tests. */
const net: LocalNetwork = { networkId: 'a'.repeat(64), bridge: 'wvbaaaa', wireId: 0x0a200000, gatewayMac: '7a:57:0a:20:00:00', mtu: 1436, subnets: ['10.32.0.0/24'] };
const peer = (host: string, address: string): Peer => ({ host, boot: '0'.repeat(16), address, port: 6784, state: 'connected', lastSeen: 0, since: 0 });

function rig(opts: { vxlanFails?: boolean; multicast?: boolean; guardFails?: boolean } = {}) {
  const applied: SleeveConfigInput[] = [];
  const events: Array<{ kind: string; payload: Record<string, unknown> }> = [];
  const flood = new Map<string, readonly string[]>();
  const up = new Map<string, boolean>();
  const removed: string[] = [];
  const guarded: Array<{ peers: readonly string[]; multicast: readonly string[] }> = [];
  const fastPath: FastPath = {
    local: '10.0.0.1',
    port: 4789,
    guard: async (o) => {
      if (opts.guardFails) throw new Error('ebtables-restore: not installed');
      guarded.push(o);
    },
    probe: {
      setPeers: async () => undefined,
      state: (host) => (up.get(host) ? { up: true, reason: 'VXLAN replies arrive' } : { up: false, reason: `no VXLAN reply from ${host}` }),
    },
    vxlan: {
      ensure: async () => {
        if (opts.vxlanFails) throw new Error('the kernel said no');
      },
      setPeers: async (name, peers) => void flood.set(name, peers),
      remove: async (name) => void removed.push(name),
      list: async () => ['wvx0a200000', 'wvxdeadbeef'],
    },
  };
  const dp = new DataPath({
    sleeve: { applyConfig: (c) => void applied.push(c), stop: () => undefined, stats: () => ({ running: true }) as SleeveStats },
    identity: { peerId: 1n, listenHost: '10.0.0.1', listenPort: 6784 },
    plumbing: { isPlugged: async () => true, plug: async () => undefined, forgetLearned: async () => undefined },
    fastPath,
    localNetworks: async () => [{ ...net, multicast: opts.multicast }],
    peers: () => [peer('h2', '10.0.0.2'), peer('h3', '10.0.0.3')],
    pathMtu: async () => 1436,
    events: { publish: (kind: string, payload: Record<string, unknown>) => void events.push({ kind, payload }) } as unknown as EventPublisher<'router'>,
    log: silentLogger(),
  });
  return { dp, applied, events, flood, up, removed, guarded, last: () => applied.at(-1)!.networks![0]! };
}

test('peers VXLAN reaches go over the kernel, the others over the sleeve, and a change moves one peer only', async () => {
  const r = rig();
  r.up.set('h2', true);
  await r.dp.networksChanged();
  expect(r.flood.get('wvx0a200000')).toEqual(['10.0.0.2']);
  expect(r.last().sendTo).toEqual([peerIdOf('h3')]);
  expect(r.removed).toEqual(['wvxdeadbeef']); // a leftover of a network that is gone
  expect(r.dp.pathOf('h2')).toEqual({ path: 'fastpath', mtu: 1450, pathReason: 'VXLAN replies arrive', encryption: null });
  expect(r.dp.pathOf('h3')).toMatchObject({ path: 'sleeve', mtu: 1436 });
  expect(r.dp.status().networks[0]!.vxlan).toEqual({ device: 'wvx0a200000', vni: 0x0a2000, up: true });

  // h2's VXLAN stops answering: it falls back to the sleeve, h3 is untouched.
  r.up.set('h2', false);
  r.events.length = 0;
  await r.dp.sync();
  expect(r.flood.get('wvx0a200000')).toEqual([]);
  expect(r.last().sendTo).toBeUndefined();
  expect(r.events).toEqual([{ kind: 'peer.path', payload: { peer: 'h2', path: 'sleeve', mtu: 1436, reason: 'no VXLAN reply from h2' } }]);
});

test('a VXLAN device the kernel refuses leaves its network on the sleeve for every peer', async () => {
  const r = rig({ vxlanFails: true });
  r.up.set('h2', true);
  await r.dp.networksChanged().catch(() => undefined);
  await r.dp.sync();
  expect(r.last().sendTo).toBeUndefined();
  expect(r.dp.status().networks[0]!.vxlan).toMatchObject({ up: false });
});

test('multicast beyond the link crosses, on the sleeve and through the VXLAN guard, only a network that asks for it', async () => {
  for (const multicast of [undefined, true]) {
    const r = rig({ multicast });
    await r.dp.networksChanged();
    expect(r.last().multicast).toBe(multicast === true);
    expect(r.guarded.at(-1)).toEqual({ peers: ['10.0.0.2', '10.0.0.3'], multicast: multicast ? ['wvx0a200000'] : [] });
    expect(r.dp.status().networks[0]!.multicast).toBe(multicast === true);
  }
});

test('without its guard rules no peer takes the fast path, and status says why', async () => {
  const r = rig({ guardFails: true });
  r.up.set('h2', true);
  await r.dp.networksChanged().catch(() => undefined);
  expect(r.flood.get('wvx0a200000')).toEqual([]);
  expect(r.last().sendTo).toBeUndefined();
  expect(r.dp.pathOf('h2')).toMatchObject({ path: 'sleeve', pathReason: expect.stringMatching(/guard rules could not be installed.*not installed/) });
});
