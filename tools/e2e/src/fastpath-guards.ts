import { execFile } from 'node:child_process';

const run = (file: string, args: string[]): Promise<string> =>
  new Promise((resolve, reject) => execFile(file, args, (err, out, stderr) => (err ? reject(new Error(`${file} ${args.join(' ')}: ${stderr || err.message}`)) : resolve(out))));

type Tool = 'iptables' | 'ip6tables' | 'ebtables';

/**
 * Removes `chains` (those present) from one table of this namespace: the jumps into them from
 * other chains first, then their rules, then the chains, so no jump ever points at nothing.
 */
async function removeChains(tool: Tool, table: string, chains: (name: string) => boolean): Promise<void> {
  const text = await run(tool === 'ebtables' ? 'ebtables-save' : tool, tool === 'ebtables' ? ['-t', table] : ['-t', table, '-S']).catch(() => '');
  const ours = [...text.matchAll(/^(?::|-N )(\S+)/gm)].map((m) => m[1]!).filter(chains);
  if (!ours.length) return;
  const t = ['-t', table];
  for (const line of text.split('\n')) {
    const rule = /^-A (\S+) (.*)$/.exec(line.trim());
    const target = rule && / -j (\S+)$/.exec(` ${rule[2]}`)?.[1];
    if (rule && target && ours.includes(target) && !ours.includes(rule[1]!)) await run(tool, [...t, '-D', rule[1]!, ...rule[2]!.split(' ')]);
  }
  for (const c of ours) await run(tool, [...t, '-F', c]);
  for (const c of ours) await run(tool, [...t, '-X', c]);
}

/**
 * Removes the rules a router's fast path leaves in this namespace after its stack is gone (on
 * purpose: they keep VXLAN guarded while a router restarts): the iptables chain WEAVE-VXLAN and the
 * ebtables chain WEAVE-FASTPATH, with the jumps into them. For tests that ran a stack on the machine.
 */
export async function removeFastPathGuards(): Promise<void> {
  await removeChains('iptables', 'filter', (c) => c === 'WEAVE-VXLAN');
  await removeChains('ebtables', 'filter', (c) => c === 'WEAVE-FASTPATH');
}

/**
 * Removes every WEAVE-* chain of this namespace, in every table of iptables, ip6tables and
 * ebtables: what the stacks the end-to-end suites ran on the machine leave on purpose (netwire's
 * isolation, DNS and port chains stay across its restarts, as Docker's own do). Only once no
 * stack runs: the suites' global teardown.
 */
export async function removeWeaveChains(): Promise<void> {
  const weave = (c: string) => c.startsWith('WEAVE-');
  for (const tool of ['iptables', 'ip6tables'] as const) for (const table of ['filter', 'nat', 'mangle', 'raw']) await removeChains(tool, table, weave);
  await removeChains('ebtables', 'filter', weave);
}
