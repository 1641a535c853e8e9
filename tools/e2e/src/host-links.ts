import { execFileSync } from 'node:child_process';

/** Names of weave's links (wvb bridges, wvh/wvc veth ends) in the host's namespace right now. */
export function weaveLinks(): string[] {
  const links = JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>;
  return links.map((l) => l.ifname.split('@')[0]!).filter((n) => /^wv[bhc]/.test(n)).sort();
}

/** Rules in the host's iptables that carry weave's comment tag for one bridge, or any bridge. */
export function weaveRules(bridge?: string): string[] {
  const out = ['filter', 'nat'].flatMap((t) => execFileSync('iptables', ['-t', t, '-S'], { encoding: 'utf8' }).split('\n'));
  return out.filter((l) => (bridge ? l.includes(`weave:${bridge}`) : /weave:wvb/.test(l)));
}
