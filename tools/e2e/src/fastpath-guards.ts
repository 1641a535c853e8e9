import { execFile } from 'node:child_process';

const run = (file: string, args: string[]): Promise<string> =>
  new Promise((resolve, reject) => execFile(file, args, (err, out, stderr) => (err ? reject(new Error(`${file} ${args.join(' ')}: ${stderr || err.message}`)) : resolve(out))));

/**
 * Removes the rules a router's fast path leaves in this namespace after its stack is gone (on
 * purpose: they keep VXLAN guarded while a router restarts): the iptables chain WEAVE-VXLAN and the
 * ebtables chain WEAVE-FASTPATH, with the jumps into them. For tests that ran a stack on the machine.
 */
export async function removeFastPathGuards(): Promise<void> {
  for (const [tool, listing, chain] of [
    ['iptables', ['iptables', '-S'], 'WEAVE-VXLAN'],
    ['ebtables', ['ebtables-save'], 'WEAVE-FASTPATH'],
  ] as const) {
    const text = await run(listing[0], listing.slice(1)).catch(() => '');
    if (!new RegExp(`^(:|-N )${chain}\\b`, 'm').test(text)) continue;
    const jumps = text.split('\n').filter((l) => l.startsWith('-A ') && l.endsWith(`-j ${chain}`) && !l.startsWith(`-A ${chain} `));
    for (const j of jumps) await run(tool, ['-D', ...j.slice(3).split(' ')]);
    await run(tool, ['-F', chain]);
    await run(tool, ['-X', chain]);
  }
}
