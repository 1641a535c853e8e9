import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { describeError } from '@weave/errors';

/** Puts the sleeve's TAPs on their bridges; a seam so the data path can be tested without a kernel. */
export interface TapPlumbing {
  /** True when `tap` is up, on `bridge`, with `mtu`. */
  isPlugged(tap: string, bridge: string, mtu: number): Promise<boolean>;
  plug(tap: string, bridge: string, mtu: number): Promise<void>;
}

/**
 * The kernel's: sysfs to check (no process per check), `ip` to change. The TAP takes the
 * network's MTU before it joins the bridge, since a bridge drops its own MTU to its smallest port.
 */
export class LinuxTapPlumbing implements TapPlumbing {
  async isPlugged(tap: string, bridge: string, mtu: number): Promise<boolean> {
    const [master, mtuNow, flags] = await Promise.all([
      readFile(`/sys/class/net/${tap}/master/uevent`, 'utf8').catch(() => ''),
      readFile(`/sys/class/net/${tap}/mtu`, 'utf8').catch(() => ''),
      readFile(`/sys/class/net/${tap}/flags`, 'utf8').catch(() => '0'),
    ]);
    return master.includes(`INTERFACE=${bridge}\n`) && Number(mtuNow) === mtu && (Number(flags) & 1) === 1;
  }

  plug(tap: string, bridge: string, mtu: number): Promise<void> {
    return new Promise((resolve, reject) =>
      execFile('ip', ['link', 'set', 'dev', tap, 'mtu', String(mtu), 'master', bridge, 'up'], (err, _out, stderr) =>
        err ? reject(new Error(`cannot put ${tap} on ${bridge}: ${String(stderr).trim() || describeError(err)}`)) : resolve(),
      ),
    );
  }
}
