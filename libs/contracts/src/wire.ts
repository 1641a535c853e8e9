/**
 * The sleeve's encapsulation overhead on an IPv4 underlay: IPv4 (20) + UDP (8) + sleeve header
 * (20) + frame length (2) + the frame's own Ethernet header (14). netwire sizes container MTUs
 * by it and the router reports path MTUs with it, so it is declared once, here. The kernel's
 * VXLAN needs 50, so an MTU that fits the sleeve fits both paths.
 */
export const SLEEVE_OVERHEAD = 64;

/**
 * What encryption adds to each sleeve datagram: the transport header (type, receiver, counter:
 * 16) and the AEAD tag (16). An encrypted mesh's MTUs are underlay − 96.
 */
export const ENCRYPTION_OVERHEAD = 32;

/** The encapsulation overhead of the sleeve, which carries every network of an encrypted mesh. */
export const sleeveOverhead = (encrypted: boolean): number => SLEEVE_OVERHEAD + (encrypted ? ENCRYPTION_OVERHEAD : 0);

/** The kernel VXLAN's on an IPv4 underlay: IPv4 (20) + UDP (8) + VXLAN (8) + Ethernet (14). */
export const VXLAN_OVERHEAD = 50;

/**
 * The UDP port of the kernel's VXLAN fast path. Not IANA's 4789: the router lets only the mesh's
 * peers in on its port, and on 4789 that would cut off a Docker overlay or another VXLAN user.
 */
export const DEFAULT_VXLAN_PORT = 6786;
