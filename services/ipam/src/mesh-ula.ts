import { UnavailableError } from '@weave/errors';
import { Cidr, formatCidr, parseCidr } from '@weave/netaddr';
import { UlaRecord, ulaOf } from './core/ula';
import type { IpamDeps } from './deps';

const KEY = 'ula';

/**
 * The mesh's ULA /48, made on first use. Every host proposes its own random one with a
 * create-if-absent; the first create wins and the losers read the winner's, so all hosts hand
 * out /64s of one prefix even when several ask at the same moment. Once known it never changes
 * (nothing deletes it), so it is kept in memory.
 */
export class MeshUla {
  private known: Cidr | null = null;

  constructor(private readonly d: Pick<IpamDeps, 'host' | 'store' | 'log' | 'now' | 'randomBytes'>) {}

  async prefix(): Promise<Cidr> {
    this.known ??= await this.readOrCreate();
    return this.known;
  }

  private async readOrCreate(): Promise<Cidr> {
    const found = await this.d.store.mesh.get(KEY);
    if (found) return parseCidr(found.value.prefix);
    const mine: UlaRecord = { prefix: formatCidr(ulaOf(this.d.randomBytes(5))), createdBy: this.d.host, createdAt: this.d.now().toISOString() };
    if ((await this.d.store.mesh.create(KEY, mine)) !== null) {
      this.d.log.info({ ula: mine.prefix }, `IPv6 networks without --subnet get a /64 of ${mine.prefix}, this mesh's ULA prefix (generated here)`);
      return parseCidr(mine.prefix);
    }
    const winner = await this.d.store.mesh.get(KEY);
    // A create that lost found the key, and nothing deletes it: absent now means the bucket was wiped.
    if (!winner) throw new UnavailableError(`the mesh's ULA prefix (KV ${this.d.store.mesh.name}, key ${KEY}) was made by another host and is gone again; try again`);
    this.d.log.info({ ula: winner.value.prefix, createdBy: winner.value.createdBy }, `IPv6 networks without --subnet get a /64 of ${winner.value.prefix}, this mesh's ULA prefix`);
    return parseCidr(winner.value.prefix);
  }
}
