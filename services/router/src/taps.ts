import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { describeError } from '@weave/errors';

/** Puts the sleeve's TAPs on their bridges; a seam so the data path can be tested without a kernel. */
export interface TapPlumbing {
  /** True when `tap` is up, on `bridge`, with `mtu`, and isolated. */
  isPlugged(tap: string, bridge: string, mtu: number): Promise<boolean>;
  plug(tap: string, bridge: string, mtu: number): Promise<void>;
  /** Forgets the MACs the bridge learnt behind `port` (a TAP or a VXLAN device). */
  forgetLearned(port: string): Promise<void>;
}

const run = (args: string[], what: string): Promise<void> =>
  new Promise((resolve, reject) =>
    execFile(args[0]!, args.slice(1), (err, _out, stderr) => (err ? reject(new Error(`${what}: ${String(stderr).trim() || describeError(err)}`)) : resolve())),
  );

/**
 * The kernel's: sysfs to check (no process per check), `ip`/`bridge` to change. The TAP takes
 * the network's MTU before it joins the bridge, since a bridge drops its own MTU to its smallest
 * port. It is an isolated port, as the network's VXLAN device is: isolated ports never forward
 * to each other, so a frame that came in over one path never goes out over the other.
 */
export class LinuxTapPlumbing implements TapPlumbing {
  async isPlugged(tap: string, bridge: string, mtu: number): Promise<boolean> {
    const [master, mtuNow, flags, isolated] = await Promise.all([
      readFile(`/sys/class/net/${tap}/master/uevent`, 'utf8').catch(() => ''),
      readFile(`/sys/class/net/${tap}/mtu`, 'utf8').catch(() => ''),
      readFile(`/sys/class/net/${tap}/flags`, 'utf8').catch(() => '0'),
      readFile(`/sys/class/net/${tap}/brport/isolated`, 'utf8').catch(() => '0'),
    ]);
    return master.includes(`INTERFACE=${bridge}\n`) && Number(mtuNow) === mtu && (Number(flags) & 1) === 1 && Number(isolated) === 1;
  }

  async plug(tap: string, bridge: string, mtu: number): Promise<void> {
    const what = `cannot put ${tap} on ${bridge}`;
    await run(['ip', 'link', 'set', 'dev', tap, 'mtu', String(mtu), 'master', bridge, 'up'], what);
    await run(['bridge', 'link', 'set', 'dev', tap, 'isolated', 'on'], what);
  }

  forgetLearned(port: string): Promise<void> {
    return run(['ip', 'link', 'set', 'dev', port, 'type', 'bridge_slave', 'fdb_flush'], `cannot flush the MACs learnt behind ${port}`);
  }
}
