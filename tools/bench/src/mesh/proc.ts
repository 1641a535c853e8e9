import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** CPU time (user + system, all threads) in clock ticks, from the text of /proc/<pid>/stat. */
export function cpuTicks(statText: string): number {
  // Field 2 (comm) is in parentheses and may contain spaces; count fields after the last ')'.
  const rest = statText.slice(statText.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so utime (field 14) is rest[11] and stime (field 15) rest[12].
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`unexpected /proc/<pid>/stat: ${statText.slice(0, 80)}`);
  return utime + stime;
}

/** A memory field of /proc/<pid>/status in bytes: VmHWM (peak resident set size) or VmRSS (now). */
export function statusBytes(statusText: string, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, 'm').exec(statusText);
  if (!m) throw new Error(`no ${field} in /proc/<pid>/status`);
  return Number(m[1]) * 1024;
}

let ticksPerSecond: number | undefined;
const clockTicks = (): number => (ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100);

/** Seconds of CPU process `pid` has used so far. */
export const cpuSeconds = (pid: number): number => cpuTicks(readFileSync(`/proc/${pid}/stat`, 'utf8')) / clockTicks();

export const memory = (pid: number, field: 'VmHWM' | 'VmRSS'): number => statusBytes(readFileSync(`/proc/${pid}/status`, 'utf8'), field);

/** The command name of `pid` (to check that `ip netns exec` really became the program it ran). */
export const comm = (pid: number): string => readFileSync(`/proc/${pid}/comm`, 'utf8').trim();

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
