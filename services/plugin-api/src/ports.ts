import { DockerOption, DockerPortBinding, DockerPortMap, formatPortRequest, PortRequest } from '@weave/contracts';
import { describeError, InvalidRequestError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * Published ports (`docker run -p`) as Docker hands them to a network plugin: Docker publishes
 * nothing itself for a remote driver, and shows nothing either (`docker port` and `docker ps`
 * stay empty, whatever the plugin answers; see the README). plugin-api turns Docker's bindings
 * into netwire's requests, and refuses what weave cannot publish before netwire is asked.
 */
const PROTOCOLS: Readonly<Record<number, PortRequest['protocol']>> = { 6: 'tcp', 17: 'udp' };
const PROTOCOL_NAMES: Readonly<Record<number, string>> = { 132: 'sctp' };

/** The `com.docker.network.portmap` of a Join or ProgramExternalConnectivity, as given. */
export function portBindings(options: Record<string, unknown>): DockerPortBinding[] {
  const parsed = DockerPortMap.safeParse(options[DockerOption.portMap]);
  if (!parsed.success) throw new InvalidRequestError(`invalid ${DockerOption.portMap}: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`);
  return parsed.data;
}

/** Docker's bindings as netwire's requests; refuses protocols and addresses weave does not publish on. */
export function portRequests(bindings: readonly DockerPortBinding[]): PortRequest[] {
  return bindings.map((b) => {
    const what = describeBindings([b]);
    const protocol = PROTOCOLS[b.Proto];
    if (!protocol) throw new InvalidRequestError(`weave publishes tcp and udp ports, not ${what}`);
    if (b.Port === 0) throw new InvalidRequestError(`port 0 cannot be published (${what})`);
    if (b.HostIP && isIP(b.HostIP) !== 4) throw new InvalidRequestError(`weave publishes ports on the host's IPv4 addresses only, not on ${b.HostIP} (${what})`);
    const hostPortEnd = b.HostPort === 0 ? 0 : Math.max(b.HostPort, b.HostPortEnd);
    return { protocol, containerPort: b.Port, hostIp: b.HostIP && b.HostIP !== '0.0.0.0' ? b.HostIP : null, hostPort: b.HostPort, hostPortEnd };
  });
}

/** Bindings in `docker run -p` syntax, also those weave refuses. */
function describeBindings(bindings: readonly DockerPortBinding[]): string {
  const protocol = (p: number): string => PROTOCOLS[p] ?? PROTOCOL_NAMES[p] ?? `protocol ${p}`;
  return bindings
    .map((b) => formatPortRequest({ protocol: protocol(b.Proto), containerPort: b.Port, hostIp: b.HostIP || null, hostPort: b.HostPort, hostPortEnd: b.HostPortEnd }))
    .join(', ');
}

/** What the check reads of Docker: networks with their internal flag, and the containers on one. */
export interface DockerAttachments {
  networksAndContainers(networkId: string, timeoutMs: number): Promise<AttachmentView>;
}
export interface AttachmentView {
  networks: Array<{ id: string; name: string; internal: boolean }>;
  /** Containers Docker lists on the network, with the names (or ids) of all their networks. */
  containers: Array<{ id: string; state: string; networks: string[] }>;
}

/**
 * Whether the container Docker is joining to an internal network, with ports to publish, has no
 * other network to publish them through, so they would silently go nowhere: that container is
 * refused. Docker's Join does not say which container it is for, nor which networks follow: the
 * containers Docker lists on the network that were never started decide (one started for the
 * first time, by `docker run`, compose or `docker start` after `docker create`, is among them
 * with every network it is about to join). Only when each of them is on internal networks alone
 * is the answer `none`. So a container on a non-internal network too (its ports are published
 * there) is never refused, nor one started before (`docker start`, a restart policy), nor a
 * running one being connected, which are not among them: those keep Docker's own way, ports on
 * an internal network silently unpublished.
 */
export function wayOut(networkId: string, v: AttachmentView): 'none' | 'some' | 'unknown' {
  const starting = v.containers.filter((c) => c.state === 'created');
  if (starting.length === 0) return 'unknown';
  const internal = (name: string): boolean => {
    const n = v.networks.find((x) => x.name === name || x.id === name || (name.length >= 12 && x.id.startsWith(name)));
    return n ? n.internal : false;
  };
  return starting.every((c) => c.networks.every(internal)) && v.networks.some((n) => n.id === networkId) ? 'none' : 'some';
}

export const WAY_OUT_TIMEOUT_MS = 2000;

/**
 * The Join check: null when the container may join, else why it is refused. Docker that does not
 * answer in time lets the container join: the check is a courtesy, never a reason to fail a start.
 */
export function internalPortsCheck(o: { docker: DockerAttachments; log: Logger; timeoutMs?: number }) {
  return async (networkId: string, bindings: readonly DockerPortBinding[]): Promise<string | null> => {
    let view: AttachmentView;
    try {
      view = await o.docker.networksAndContainers(networkId, o.timeoutMs ?? WAY_OUT_TIMEOUT_MS);
    } catch (err) {
      o.log.warn({ err, networkId }, `could not ask Docker whether a container publishing ports on an internal network has another way out: ${describeError(err)}`);
      return null;
    }
    if (wayOut(networkId, view) !== 'none') return null;
    const name = view.networks.find((n) => n.id === networkId)?.name ?? networkId.slice(0, 12);
    const asked = describeBindings(bindings);
    return (
      `${name} is an internal network (--internal): nothing on it can be reached from outside, so it cannot publish ${asked}. ` +
      'Leave out -p, or attach the container to a non-internal network as well (its ports are published there)'
    );
  };
}
