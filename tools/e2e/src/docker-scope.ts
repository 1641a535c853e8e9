import { randomBytes } from 'node:crypto';
import { docker, DockerOptions, dockerResult } from '@weave/docker-cli';

const WORKLOAD_IMAGE = 'weave-bbox:local';

/**
 * Names and tracks every container and network a test creates, and removes them all at the end,
 * also when the test failed: nothing a test made outlives it.
 */
export class DockerScope {
  private readonly tag = randomBytes(3).toString('hex');
  private readonly containers = new Set<string>();
  private readonly networks = new Set<string>();

  /** `engine`: another dockerd than the machine's (a PrivateDockerd's `cli`). */
  constructor(private readonly engine: DockerOptions = {}) {}

  name(kind: string): string {
    return `wte2e-${kind}-${this.tag}-${randomBytes(2).toString('hex')}`;
  }

  async network(driver: string, args: string[] = [], name = `weave:${this.name('net')}`): Promise<string> {
    this.networks.add(name);
    await docker(['network', 'create', '-d', driver, '--ipam-driver', driver, ...args, name], this.engine);
    return name;
  }

  /** `docker run -d` of the tiny workload image, sleeping until removed. */
  run(args: string[], command: string[] = ['sleep', '1d'], name = this.name('c')): Promise<string> {
    return this.runImage(WORKLOAD_IMAGE, args, command, name);
  }

  /** `docker run -d` of another image (weave-base:local has node, say). */
  async runImage(image: string, args: string[], command: string[], name = this.name('c')): Promise<string> {
    this.containers.add(name);
    await docker(['run', '-d', '--name', name, ...args, image, ...command], this.engine);
    return name;
  }

  /** `docker create` of the workload image: nothing is sent to a network plugin before `docker start`. */
  async create(args: string[], command: string[] = ['sleep', '1d'], name = this.name('c')): Promise<string> {
    this.containers.add(name);
    await docker(['create', '--name', name, ...args, WORKLOAD_IMAGE, ...command], this.engine);
    return name;
  }

  /** A run that may fail: tracked all the same, since a failed start leaves the container Created. */
  async tryRun(args: string[], command: string[] = ['sleep', '1d'], name = this.name('c')) {
    this.containers.add(name);
    return dockerResult(['run', '-d', '--name', name, ...args, WORKLOAD_IMAGE, ...command], this.engine);
  }

  /** Something made outside the helpers above (a create that had to be retried): removed at the end too. */
  track(network: string): void {
    this.networks.add(network);
  }

  async removeContainer(name: string): Promise<void> {
    await docker(['rm', '-f', name], this.engine);
    this.containers.delete(name);
  }

  async removeNetwork(name: string): Promise<void> {
    await docker(['network', 'rm', name], this.engine);
    this.networks.delete(name);
  }

  async cleanup(): Promise<void> {
    await Promise.all([...this.containers].map((c) => dockerResult(['rm', '-f', c], this.engine)));
    this.containers.clear();
    for (const n of this.networks) await dockerResult(['network', 'rm', n], this.engine);
    this.networks.clear();
  }
}
