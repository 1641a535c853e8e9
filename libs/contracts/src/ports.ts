import { z } from 'zod';
import { IpString } from './primitives';

/**
 * Published ports (`docker run -p`): what plugin-api asks netwire to publish, and what netwire
 * published. Docker cannot show a plugin's ports (`docker port` stays empty), so these are also
 * what `weave ps` and the `ports.published` events show.
 */

/** The transport protocols weave publishes ports for. */
export const PortProtocol = z.enum(['tcp', 'udp']);
export type PortProtocol = z.output<typeof PortProtocol>;
const PortNumber = z.number().int().min(1).max(65535);
const Ipv4String = IpString.refine((s) => !s.includes(':'), { message: 'must be an IPv4 address' });

/**
 * One `-p` of a container, as asked: `hostPort` 0 means any free port from the host's ephemeral
 * range, `hostPort`-`hostPortEnd` a range to pick the first free one from (equal for one port).
 * `hostIp` null publishes on every IPv4 address of the host, loopback included.
 */
export const PortRequest = z
  .strictObject({
    protocol: PortProtocol,
    containerPort: PortNumber,
    hostIp: Ipv4String.nullable(),
    hostPort: z.number().int().min(0).max(65535),
    hostPortEnd: z.number().int().min(0).max(65535),
  })
  .refine((p) => (p.hostPort === 0 ? p.hostPortEnd === 0 : p.hostPortEnd >= p.hostPort), {
    message: 'hostPortEnd must be 0 with hostPort 0, else at least hostPort',
  });
export type PortRequest = z.output<typeof PortRequest>;

/** A port as published: the host port chosen, and where its traffic goes. */
export const PublishedPort = z.strictObject({
  protocol: PortProtocol,
  hostIp: Ipv4String.nullable(),
  hostPort: PortNumber,
  containerIp: Ipv4String,
  containerPort: PortNumber,
});
export type PublishedPort = z.output<typeof PublishedPort>;

/** A request as `docker run -p` takes it: `127.0.0.1:8000-8010:80/tcp`, `:80/udp` for any host port. */
export const formatPortRequest = (p: Omit<PortRequest, 'protocol'> & { protocol: string }): string =>
  `${p.hostIp ? `${p.hostIp}:` : ''}${p.hostPort || ''}${p.hostPortEnd > p.hostPort ? `-${p.hostPortEnd}` : ''}:${p.containerPort}/${p.protocol}`;

/** A published port as `docker ps` shows one: `0.0.0.0:8080->80/tcp`. */
export const formatPublishedPort = (p: PublishedPort): string => `${p.hostIp ?? '0.0.0.0'}:${p.hostPort}->${p.containerPort}/${p.protocol}`;
