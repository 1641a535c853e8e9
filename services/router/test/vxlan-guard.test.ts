import { frameFilter, parseListing, restoreScript, vxlanFilter } from '../src/vxlan-guard';

/** The guard's rules as data: what a listing needs to become what is wanted (the kernel side is in vxlan.test.ts). */
describe('restoreScript', () => {
  const iptablesS = (...lines: string[]) => parseListing(['-P INPUT ACCEPT', '-P FORWARD DROP', '-N DOCKER', ...lines].join('\n'));

  it('creates the chain and its jump on a host without them', () => {
    expect(restoreScript(iptablesS('-A INPUT -j DOCKER'), vxlanFilter(4, 4789, ['10.0.0.3', '10.0.0.2', '10.0.0.2']))).toBe(
      [
        '*filter',
        ':WEAVE-VXLAN - [0:0]',
        '-A WEAVE-VXLAN -s 10.0.0.2/32 -j RETURN',
        '-A WEAVE-VXLAN -s 10.0.0.3/32 -j RETURN',
        '-A WEAVE-VXLAN -j DROP',
        '-I INPUT 1 -p udp -m udp --dport 4789 -j WEAVE-VXLAN',
        'COMMIT',
        '',
      ].join('\n'),
    );
  });

  it('is null when the listing already is what is wanted', () => {
    const have = iptablesS('-N WEAVE-VXLAN', '-A INPUT -p udp -m udp --dport 4789 -j WEAVE-VXLAN', '-A WEAVE-VXLAN -s fd00::2/128 -j RETURN', '-A WEAVE-VXLAN -j DROP');
    expect(restoreScript(have, vxlanFilter(6, 4789, ['fd00:0::2']))).toBeNull();
  });

  it('refills the chain for a new peer set in one transaction, keeping the jump', () => {
    const have = iptablesS('-N WEAVE-VXLAN', '-A INPUT -p udp -m udp --dport 4789 -j WEAVE-VXLAN', '-A WEAVE-VXLAN -s 10.0.0.2/32 -j RETURN', '-A WEAVE-VXLAN -j DROP');
    const script = restoreScript(have, vxlanFilter(4, 4789, ['10.0.0.4']))!;
    expect(script.split('\n').filter((l) => l.startsWith('-'))).toEqual(['-A WEAVE-VXLAN -s 10.0.0.4/32 -j RETURN', '-A WEAVE-VXLAN -j DROP']);
  });

  it('moves the jump to a new port and drops duplicates', () => {
    const have = iptablesS(
      '-N WEAVE-VXLAN',
      '-A INPUT -p udp -m udp --dport 4789 -j WEAVE-VXLAN',
      '-A INPUT -p udp -m udp --dport 4789 -j WEAVE-VXLAN',
      '-A INPUT -p udp -m udp --dport 6000 -j WEAVE-VXLAN',
      '-A WEAVE-VXLAN -j DROP',
    );
    const script = restoreScript(have, vxlanFilter(4, 6000, []))!;
    expect(script.split('\n').filter((l) => /^-[DI]/.test(l))).toEqual(['-D INPUT -p udp -m udp --dport 4789 -j WEAVE-VXLAN', '-D INPUT -p udp -m udp --dport 4789 -j WEAVE-VXLAN']);
  });

  it('refuses peers of the other family', () => {
    expect(() => vxlanFilter(4, 4789, ['fd00::2'])).toThrow('VXLAN peer fd00::2 is not IPv4');
  });

  it('keeps multicast beyond the link off every VXLAN device but those listed, after the gateway rules', () => {
    const rules = restoreScript(parseListing(''), frameFilter(['wvx0a2a0100', 'wvx0a200000', 'wvx0a200000']))!.split('\n').filter((l) => l.startsWith('-A'));
    expect(rules.filter((r) => r.startsWith('-A WEAVE-FASTPATH ')).map((r) => r.replace('-A WEAVE-FASTPATH ', ''))).toEqual([
      '-s 7a:57:00:00:00:00/ff:ff:00:00:00:00 -o wvx+ -j DROP',
      '-s 7a:57:00:00:00:00/ff:ff:00:00:00:00 -i wvx+ -j DROP',
      // Unicast is done: the rules after it are multicast's alone.
      '-d Unicast -j RETURN',
      // What a link needs crosses every device: IGMP, mDNS, …; IPv6 neighbour discovery, MLD.
      '-p IPv4 -d 01:00:5e:00:00:00/ff:ff:ff:80:00:00 --ip-dst 224.0.0.0/24 -j RETURN',
      '-p IPv6 -d 33:33:00:00:00:00/ff:ff:00:00:00:00 --ip6-dst ff02::/16 -j RETURN',
      '-o wvx0a200000 -j RETURN',
      '-i wvx0a200000 -j RETURN',
      '-o wvx0a2a0100 -j RETURN',
      '-i wvx0a2a0100 -j RETURN',
      '-d 01:00:5e:00:00:00/ff:ff:ff:80:00:00 -j DROP',
      '-d 33:33:00:00:00:00/ff:ff:00:00:00:00 -j DROP',
    ]);
    // Only frames into or out of a VXLAN port are looked at.
    expect(rules.filter((r) => !r.startsWith('-A WEAVE-FASTPATH '))).toEqual([]);
    expect(restoreScript(parseListing(''), frameFilter())!.split('\n').filter((l) => l.startsWith('-I'))).toEqual([
      '-I INPUT 1 -i wvx+ -j WEAVE-FASTPATH',
      '-I FORWARD 1 -i wvx+ -j WEAVE-FASTPATH',
      '-I FORWARD 1 -o wvx+ -j WEAVE-FASTPATH',
      '-I OUTPUT 1 -o wvx+ -j WEAVE-FASTPATH',
    ]);
    // A network that starts carrying it rewrites the chain; in line, nothing is.
    const jumps = frameFilter().jumps.map((j) => `-A ${j.from} ${j.rule}`);
    const have = parseListing(['*filter', ':INPUT ACCEPT', ':FORWARD ACCEPT', ':OUTPUT ACCEPT', ':WEAVE-FASTPATH RETURN', ...jumps, ...frameFilter().rules.map((r) => `-A WEAVE-FASTPATH ${r}`)].join('\n'));
    expect(restoreScript(have, frameFilter([]))).toBeNull();
    expect(restoreScript(have, frameFilter(['wvx0a200000']))).toContain('-A WEAVE-FASTPATH -i wvx0a200000 -j RETURN');
    expect(() => frameFilter(['eth0 -j ACCEPT'])).toThrow('is not a weave VXLAN device');
  });

  it('reads ebtables-save, fills in a missing jump of the frame filter and drops the unconditional ones an older router made', () => {
    const have = parseListing(
      [
        '*filter',
        ':INPUT ACCEPT',
        ':FORWARD ACCEPT',
        ':OUTPUT ACCEPT',
        ':WEAVE-FASTPATH RETURN',
        '-A INPUT -i wvx+ -j WEAVE-FASTPATH',
        '-A FORWARD -i wvx+ -j WEAVE-FASTPATH',
        '-A FORWARD -o wvx+ -j WEAVE-FASTPATH',
        '-A OUTPUT -j WEAVE-FASTPATH',
        '-A WEAVE-FASTPATH -s 7a:57:00:00:00:00/ff:ff:00:00:00:00 -o wvx+ -j DROP',
      ].join('\n'),
    );
    expect(restoreScript(have, frameFilter())!.split('\n').filter((l) => /^-[DI]/.test(l))).toEqual(['-D OUTPUT -j WEAVE-FASTPATH', '-I OUTPUT 1 -o wvx+ -j WEAVE-FASTPATH']);
  });
});
