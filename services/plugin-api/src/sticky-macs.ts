import type { RpcClient } from '@weave/bus';
import { CreateEndpointRequest, DockerOption, ipamRpc, MacString } from '@weave/contracts';
import { describeError, InvalidRequestError } from '@weave/errors';
import type { Logger } from '@weave/log';

/**
 * Addresses that stick to a container's own MAC (StickyLease in @weave/contracts), on Docker's
 * side. With IpamDriver's RequiresMACAddress, dockerd makes up a MAC for every endpoint that has
 * none of the user's, and sends it with RequestAddress as
 * `Options["com.docker.network.endpoint.macaddress"]` (text: "02:42:9f:4c:50:b7") and with
 * CreateEndpoint as `Interface.MacAddress`. A MAC the user gave the container (`--mac-address`,
 * compose `mac_address`) arrives the same way, and CreateEndpoint then also carries it in
 * `Options["com.docker.network.endpoint.macaddress"]` as base64 of its six bytes ("AkKqu8zd"):
 * that option is what tells a user's MAC, which the container has on every start, from one made
 * up for this endpoint alone (observed on dockerd 20.10.24; it sends the same on 26.1).
 */

/** RequestAddress's MAC, lowercase; null without one. A value that is not a MAC is no request of Docker's. */
export function requestedMac(options: Readonly<Record<string, string>>): string | null {
  const text = options[DockerOption.macAddress];
  if (text === undefined || text === '') return null;
  if (!MacString.safeParse(text).success) throw new InvalidRequestError(`RequestAddress: Options["${DockerOption.macAddress}"] is not a MAC address: ${JSON.stringify(text)}`);
  return text.toLowerCase();
}

/**
 * CreateEndpoint's MAC when it is the user's: the base64 option is there and names the same six
 * bytes as Interface.MacAddress. Null for a MAC Docker made up (no option), and for anything
 * that does not add up (an option that is not that MAC's bytes).
 */
export function userMac(b: Pick<CreateEndpointRequest, 'Interface' | 'Options'>): string | null {
  const mac = b.Interface?.MacAddress;
  const option = b.Options[DockerOption.macAddress];
  if (!mac || typeof option !== 'string' || !MacString.safeParse(mac).success) return null;
  const bytes = Buffer.from(option, 'base64');
  const hex = [...bytes].map((x) => x.toString(16).padStart(2, '0')).join(':');
  return hex === mac.toLowerCase() ? hex : null;
}

/**
 * What CreateEndpoint calls for each address of an endpoint with the user's MAC: ipam's
 * stickToMac. Never fails the endpoint: without it the container still starts, only its address
 * is not kept for it; why is logged.
 */
export function stickToMac(ipam: Pick<RpcClient<typeof ipamRpc>, 'stickToMac'>, log: Logger): (address: string, mac: string) => Promise<void> {
  return async (address, mac) => {
    try {
      const r = await ipam.stickToMac({ address, mac });
      if (r.sticky) log.debug({ address, mac }, 'address sticks to the container\'s own MAC');
      else log.info({ address, mac, reason: r.reason }, `address ${address} does not stick to MAC ${mac}: ${r.reason}`);
    } catch (err) {
      log.warn({ err, address, mac }, `address ${address} could not be made to stick to MAC ${mac}; the container runs, but a restart may give it another address: ${describeError(err)}`);
    }
  };
}
