/**
 * Test hosts in network namespaces: one namespace per node, each with a veth into a bridge in
 * the root namespace, so every node has its own address (10.77.0.11, .12, …) and packets between
 * them can really be dropped (iptables inside each namespace). On one machine, loopback cannot
 * do that: every outgoing loopback connection comes from 127.0.0.1.
 *
 * Faults go into a chain of our own in each namespace (`P2P_CHAOS`), so healing is one flush.
 * Everything is torn down at the end, also after a failed test, and a lab left by a killed run
 * is removed before a new one is made. Needs root and Debian's iproute2 and iptables.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)
/** Our chain in each namespace: every fault rule lives here. */
const CHAIN = 'P2P_CHAOS'

async function sh (cmd: string, args: string[]): Promise<string> {
  try {
    return (await run(cmd, args, { timeout: 10_000 })).stdout.trim()
  } catch (err) {
    const e = err as { stderr?: string, message: string }
    throw new Error(`${cmd} ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`)
  }
}

export class NetnsLab {
  readonly prefix: string
  readonly subnet: string
  private count = 0

  /** `prefix` names the bridge and namespaces (≤ 8 characters: interface names are short); `subnet` is the first three octets. */
  constructor (prefix = 'p2pch', subnet = '10.77.0') {
    this.prefix = prefix
    this.subnet = subnet
  }

  ns (i: number): string { return `${this.prefix}${i}` }
  ip (i: number): string { return `${this.subnet}.${11 + i}` }
  private get bridge (): string { return `${this.prefix}br` }

  /** Whether this machine can host a lab (root, iproute2, iptables, netns). */
  static async available (): Promise<string | null> {
    if (process.getuid?.() !== 0) return 'needs root'
    try {
      await sh('ip', ['netns', 'list'])
      await sh('iptables', ['-w', '-S', 'FORWARD'])
      return null
    } catch (err) {
      return (err as Error).message
    }
  }

  async setup (n: number): Promise<void> {
    await this.teardown(8)
    this.count = n
    await sh('ip', ['link', 'add', this.bridge, 'type', 'bridge'])
    await sh('ip', ['addr', 'add', `${this.subnet}.1/24`, 'dev', this.bridge])
    await sh('ip', ['link', 'set', this.bridge, 'up'])
    // Docker sets FORWARD to DROP, and with br_netfilter bridged frames pass through it
    await sh('iptables', ['-w', '-I', 'FORWARD', '-i', this.bridge, '-o', this.bridge, '-j', 'ACCEPT'])
    for (let i = 0; i < n; i++) {
      const ns = this.ns(i)
      const host = `${this.prefix}h${i}`
      const peer = `${this.prefix}p${i}`
      await sh('ip', ['netns', 'add', ns])
      await sh('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', peer])
      await sh('ip', ['link', 'set', peer, 'netns', ns])
      await sh('ip', ['link', 'set', host, 'master', this.bridge])
      await sh('ip', ['link', 'set', host, 'up'])
      await sh('ip', ['-n', ns, 'addr', 'add', `${this.ip(i)}/24`, 'dev', peer])
      await sh('ip', ['-n', ns, 'link', 'set', peer, 'up'])
      await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
      await this.inNs(i, 'iptables', ['-w', '-N', CHAIN])
      await this.inNs(i, 'iptables', ['-w', '-I', 'INPUT', '-j', CHAIN])
      await this.inNs(i, 'iptables', ['-w', '-I', 'OUTPUT', '-j', CHAIN])
    }
  }

  private async inNs (i: number, cmd: string, args: string[]): Promise<string> {
    return await sh('ip', ['netns', 'exec', this.ns(i), cmd, ...args])
  }

  /** Cut the nodes into groups: packets between groups are dropped both ways, within a group they pass. */
  async partition (groups: number[][]): Promise<void> {
    const groupOf = new Map<number, number>()
    groups.forEach((g, k) => { for (const i of g) groupOf.set(i, k) })
    for (let i = 0; i < this.count; i++) {
      for (let j = 0; j < this.count; j++) {
        if (i === j || groupOf.get(i) === groupOf.get(j)) continue
        await this.inNs(i, 'iptables', ['-w', '-A', CHAIN, '-s', this.ip(j), '-j', 'DROP'])
        await this.inNs(i, 'iptables', ['-w', '-A', CHAIN, '-d', this.ip(j), '-j', 'DROP'])
      }
    }
  }

  /** Drop this fraction of node i's packets, both ways, to and from the other nodes. */
  async loss (i: number, fraction: number): Promise<void> {
    for (const dir of ['-s', '-d']) {
      await this.inNs(i, 'iptables', ['-w', '-A', CHAIN, dir, `${this.subnet}.0/24`, '-m', 'statistic', '--mode', 'random', '--probability', String(fraction), '-j', 'DROP'])
    }
  }

  /** Every fault removed. */
  async heal (): Promise<void> {
    for (let i = 0; i < this.count; i++) await this.inNs(i, 'iptables', ['-w', '-F', CHAIN])
  }

  /** Remove the namespaces, the bridge and our FORWARD rule (also those of a lab a killed run left, up to `max` nodes). */
  async teardown (max = this.count): Promise<void> {
    for (let i = 0; i < Math.max(max, this.count); i++) await sh('ip', ['netns', 'del', this.ns(i)]).catch(() => '')
    await sh('iptables', ['-w', '-D', 'FORWARD', '-i', this.bridge, '-o', this.bridge, '-j', 'ACCEPT']).catch(() => '')
    await sh('ip', ['link', 'del', this.bridge]).catch(() => '')
    this.count = 0
  }
}
