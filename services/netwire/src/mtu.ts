import { SLEEVE_OVERHEAD } from '@weave/contracts';

/**
 * The MTU of a network's bridge and veths. The first source that says something wins: the
 * network's own option, the host-wide WEAVE_MTU, then the underlay (the default-route interface)
 * less the encapsulation overhead, so frames still fit once the mesh encapsulates them. The
 * result is clamped: below 576 IPv4 itself breaks, above 9000 no common underlay carries it.
 */
export const MTU_MIN = 576;
export const MTU_MAX = 9000;
/** Used when the host has no default route (an isolated host or a test namespace). */
export const FALLBACK_UNDERLAY_MTU = 1500;

export interface MtuSources {
  network: number | null;
  hostSetting: number | null;
  underlay: number | null;
  /** The encapsulation's; default the plain sleeve's (more when the mesh is encrypted). */
  overhead?: number;
}

export function chooseMtu(s: MtuSources): number {
  const wanted = s.network ?? s.hostSetting ?? (s.underlay ?? FALLBACK_UNDERLAY_MTU) - (s.overhead ?? SLEEVE_OVERHEAD);
  return Math.min(MTU_MAX, Math.max(MTU_MIN, wanted));
}
