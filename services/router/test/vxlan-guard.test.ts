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

  it('reads ebtables-save and fills in a missing jump of the frame filter', () => {
    const have = parseListing(
      [
        '*filter',
        ':INPUT ACCEPT',
        ':FORWARD ACCEPT',
        ':OUTPUT ACCEPT',
        ':WEAVE-FASTPATH RETURN',
        '-A INPUT -j WEAVE-FASTPATH',
        '-A OUTPUT -j WEAVE-FASTPATH',
        '-A WEAVE-FASTPATH -s 7a:57:00:00:00:00/ff:ff:00:00:00:00 -o wvx+ -j DROP',
        '-A WEAVE-FASTPATH -s 7a:57:00:00:00:00/ff:ff:00:00:00:00 -i wvx+ -j DROP',
      ].join('\n'),
    );
    expect(restoreScript(have, frameFilter())!.split('\n').filter((l) => /^-[DI]/.test(l))).toEqual(['-I FORWARD 1 -j WEAVE-FASTPATH']);
  });
});
