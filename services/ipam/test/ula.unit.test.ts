import { ConflictError, InvalidRequestError } from '@weave/errors';
import { containsCidr, formatCidr, parseCidr } from '@weave/netaddr';
import { ULA_PREFIX, UlaRecord, ulaOf, ulaProblem } from '../src/core/ula';
import type { IpamStore } from '../src/store';
import { memoryStore } from '../src/store-memory';
import { handlersOf } from './handlers';

/** `docker network create --ipv6` without --subnet: Docker's second RequestPool. */
const v6Default = { addressSpace: 'weave-local', pool: null, subPool: null, v6: true, options: {} };
const v4Default = { ...v6Default, v6: false };
const v6Pool = (p: string) => ({ ...v6Default, pool: p });
const gw = (poolId: string) => ({ poolId, address: null, kind: 'gateway' as const });
const dyn = (poolId: string) => ({ poolId, address: null, kind: 'endpoint' as const });
const bytes = (...b: number[]) => Uint8Array.from(b);
const all = (s: IpamStore) => ({ pools: s.mirrors.pools.keys().sort(), blocks: s.mirrors.blocks.keys().sort(), leases: s.mirrors.leases.keys().sort() });
/** The /48 a /64 of the mesh's ULA lies in. */
const slash48 = (p: string) => formatCidr({ ...parseCidr(p), prefix: 48, base: parseCidr(p).base & ~((1n << 80n) - 1n) });

describe('core/ula', () => {
  it.each([
    [[0x12, 0x34, 0x56, 0x78, 0x9a], 'fd12:3456:789a::/48'],
    [[0, 0, 0, 0, 0], 'fd00::/48'],
    [[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 'fdff:ffff:ffff::/48'],
  ])('random bytes %j make %s', (b, want) => {
    expect(formatCidr(ulaOf(bytes(...b)))).toBe(want);
  });

  it('needs 40 random bits', () => {
    expect(() => ulaOf(bytes(1, 2, 3, 4))).toThrow(InvalidRequestError);
  });

  it.each([
    ['fd12:3456:789a::/48', null],
    ['fc12:3456:789a::/48', 'fc12:3456:789a::/48 is not a /48 in fd00::/8'],
    ['fd12:3456:789a::/64', 'fd12:3456:789a::/64 is not a /48 in fd00::/8'],
    ['10.0.0.0/8', '10.0.0.0/8 is not a /48 in fd00::/8'],
  ])('%s: %s', (c, problem) => {
    expect(ulaProblem(parseCidr(c))).toBe(problem);
  });

  it('a record read from KV must hold a ULA /48', () => {
    const ok = { prefix: 'fd12:3456:789a::/48', createdBy: 'h1', createdAt: '2026-11-29T12:00:00.000Z' };
    expect(UlaRecord.safeParse(ok).success).toBe(true);
    for (const prefix of ['2001:db8::/48', 'fd12:3456:789a::/64', 'fd12:3456:789a::1/48', 'nonsense']) {
      expect({ prefix, ok: UlaRecord.safeParse({ ...ok, prefix }).success }).toEqual({ prefix, ok: false });
    }
    expect(UlaRecord.safeParse({ ...ok, createdBy: 'a.b' }).success).toBe(false);
  });
});

describe('IPv6 networks without --subnet get a /64 of the mesh\'s ULA prefix', () => {
  it('the first host to ask makes the prefix; every host then uses it, each network its own /64', async () => {
    const store = memoryStore();
    const [h1, h2, h3] = ['h1', 'h2', 'h3'].map((h) => handlersOf(h, store).ipam) as [ReturnType<typeof handlersOf>['ipam'], ReturnType<typeof handlersOf>['ipam'], ReturnType<typeof handlersOf>['ipam']];
    const a = await h2.requestPool(v6Default);
    const b = await h1.requestPool(v6Default);
    const c = await h3.requestPool(v6Default);
    // h2's bytes ('h2h2h') chose it: 0x68 0x32 0x68 0x32 0x68.
    expect([a.pool, b.pool, c.pool]).toEqual(['fd68:3268:3268::/64', 'fd68:3268:3268:1::/64', 'fd68:3268:3268:2::/64']);
    expect(a.poolId).toBe('weave:fd68:3268:3268::/64');
    expect((await store.mesh.get('ula'))?.value).toEqual({ prefix: 'fd68:3268:3268::/48', createdBy: 'h2', createdAt: '2026-11-29T12:00:00.000Z' });
    expect(ulaProblem(parseCidr(slash48(a.pool)))).toBeNull();
    // Docker then asks for the gateway of each, as for any pool.
    expect(await h1.requestAddress(gw(b.poolId))).toEqual({ address: 'fd68:3268:3268:1::1/64' });
    expect(await h1.requestAddress(dyn(b.poolId))).toEqual({ address: 'fd68:3268:3268:1::2/64' });
  });

  it('hosts asking at the same moment agree on one prefix: the losers of the create read the winner\'s', async () => {
    const store = memoryStore();
    const hosts = ['h1', 'h2', 'h3', 'h4'].map((h) => handlersOf(h, store).ipam);
    const pools = (await Promise.all(hosts.map((h) => h.requestPool(v6Default)))).map((r) => r.pool);
    expect(new Set(pools.map(slash48)).size).toBe(1);
    expect(new Set(pools).size).toBe(4);
    const ula = parseCidr((await store.mesh.get('ula'))!.value.prefix);
    expect(ula.prefix).toBe(ULA_PREFIX);
    for (const p of pools) expect(containsCidr(ula, parseCidr(p))).toBe(true);
  });

  it('a released /64 goes back and is handed out again; nothing of it is left in between', async () => {
    const store = memoryStore();
    const h1 = handlersOf('h1', store).ipam;
    const first = await h1.requestPool(v6Default);
    const address = (await h1.requestAddress(gw(first.poolId))).address.split('/')[0]!;
    await h1.releaseAddress({ poolId: first.poolId, address });
    await h1.releasePool({ poolId: first.poolId });
    expect(all(store)).toEqual({ pools: [], blocks: [], leases: [] });
    // The prefix itself stays: it is the mesh's, not the network's.
    expect((await store.mesh.get('ula'))?.value.prefix).toBe('fd68:3168:3168::/48');
    expect((await h1.requestPool(v6Default)).pool).toBe(first.pool);
  });

  it('another host of the network joins the generated /64 by its subnet, as plugin-api replicates it', async () => {
    const store = memoryStore();
    const [h1, h2] = [handlersOf('h1', store).ipam, handlersOf('h2', store).ipam];
    const made = await h1.requestPool(v6Default);
    const joined = await h2.requestPool(v6Pool(made.pool));
    expect(joined.poolId).toBe(made.poolId);
    await h1.releasePool({ poolId: made.poolId });
    expect(all(store).pools).toEqual(['v6-fd683168316800000000000000000000-64']);
    await h2.releasePool({ poolId: made.poolId });
    expect(all(store).pools).toEqual([]);
  });

  it('never overlaps a subnet a user gave, before or after', async () => {
    const store = memoryStore();
    const h1 = handlersOf('h1', store).ipam;
    const ula = 'fd68:3168:3168';
    // Not yet made: the first default request makes it.
    expect(await store.mesh.get('ula')).toBeNull();
    const gen = await h1.requestPool(v6Default);
    expect(gen.pool).toBe(`${ula}::/64`);
    // A user's subnets inside the prefix: the next defaults go round them.
    await h1.requestPool(v6Pool(`${ula}:1::/64`));
    await h1.requestPool(v6Pool(`${ula}:2::/63`));
    expect((await h1.requestPool(v6Default)).pool).toBe(`${ula}:4::/64`);
    // And a user's subnet over a generated one is refused, as any overlap is.
    await expect(h1.requestPool(v6Pool(`${ula}::/56`))).rejects.toThrow(ConflictError);
    await expect(h1.requestPool(v6Pool(`${ula}:4::/80`))).rejects.toThrow(/overlaps fd68:3168:3168:4::\/64/);
  });

  it('a network with both families gets an IPv4 default subnet and an IPv6 one', async () => {
    const store = memoryStore();
    const h1 = handlersOf('h1', store).ipam;
    expect((await h1.requestPool(v4Default)).pool).toBe('10.32.0.0/24');
    expect((await h1.requestPool(v6Default)).pool).toBe('fd68:3168:3168::/64');
  });

  it('refuses what Docker could not mean', async () => {
    const h1 = handlersOf('h1', memoryStore()).ipam;
    await expect(h1.requestPool({ ...v6Default, subPool: 'fd00::/120' })).rejects.toThrow(new InvalidRequestError('--ip-range fd00::/120 needs --subnet'));
    await expect(h1.requestPool({ ...v6Default, pool: '10.9.0.0/24' })).rejects.toThrow(new InvalidRequestError('--subnet 10.9.0.0/24 is not an IPv6 subnet'));
    await expect(h1.requestPool({ ...v4Default, pool: 'fd00:9::/64' })).rejects.toThrow(new InvalidRequestError('--subnet fd00:9::/64 is not an IPv4 subnet'));
  });

  it('a ULA record that is not one (another version, a hand edit) is refused, not used', async () => {
    const store = memoryStore();
    await store.mesh.create('ula', { prefix: '2001:db8::/48', createdBy: 'h9', createdAt: '2026-11-29T12:00:00.000Z' });
    // The KV table validates what it reads (see KvTable); the memory store stands in for a decoder here.
    const read = store.mesh.get.bind(store.mesh);
    store.mesh.get = async (key) => {
      const r = await read(key);
      return r && { ...r, value: UlaRecord.parse(r.value) };
    };
    await expect(handlersOf('h1', store).ipam.requestPool(v6Default)).rejects.toThrow(/must be a \/48 in fd00::\/8/);
  });
});
