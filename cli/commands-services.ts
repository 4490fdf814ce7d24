/**
 * Service commands: deploy, scale, services, ps, inspect, rm, logs.
 */
import { existsSync, readFileSync } from 'node:fs'
import { basename, dirname, resolve } from 'node:path'
import { createInterface } from 'node:readline/promises'
import type { Command } from 'commander'
import type { ApiClient } from '../node/api/client.ts'
import type { DeployResponse, InspectResponse, ScaleResponse, ServiceChange, ServiceView, TaskView } from '../node/api/types.ts'
import type { ComposeResult } from '../protocol/compose.ts'
import { MAX_REPLICAS } from '../protocol/spec.ts'
import { clientFor, type GlobalOptions } from './context.ts'
import { CliUserError } from './errors.ts'
import { age, shortId, table } from './format.ts'
import { follow, type Expectation } from './progress.ts'

export function printChanges (changes: ServiceChange[]): void {
  for (const c of changes) {
    const head = `${c.action.padEnd(9)} ${c.service}`
    console.log(c.details.length > 0 ? `${head}: ${c.details.join('; ')}` : head)
  }
}

async function confirm (question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  try {
    const a = await rl.question(`${question} [y/N] `)
    return /^y(es)?$/i.test(a.trim())
  } finally {
    rl.close()
  }
}

export async function followOrDetach (client: ApiClient, g: GlobalOptions, o: { detach?: boolean }, expect: Expectation[]): Promise<void> {
  if (o.detach === true || expect.length === 0) return
  const r = await follow(client, expect, g.json === true ? process.stderr : process.stderr)
  if (!r.ok) {
    if (/ rollout (paused|rolled back|rollback paused): /.test(r.lines[0] ?? '')) throw new CliUserError(r.lines.join('\n'))
    throw new CliUserError(`not all replicas are running:\n  ${r.lines.join('\n  ')}`)
  }
  const waiting = r.lines.filter((l) => l.includes('promote'))
  if (g.json !== true) console.error(waiting.length > 0 ? waiting.join('\n') : 'all replicas running')
}

/** Parse `web=10 api=3` (Swarm's syntax) with one clear message per mistake. */
export function parseScaleArgs (args: string[]): Record<string, number> {
  if (args.length === 0) throw new CliUserError('give at least one SERVICE=REPLICAS, e.g. `p2p-orch scale web=10`')
  const out: Record<string, number> = {}
  for (const a of args) {
    const m = /^([^=]+)=(.*)$/.exec(a)
    if (m === null) throw new CliUserError(`"${a}" is not SERVICE=REPLICAS (e.g. web=3)`)
    const [, name, count] = m
    if (!/^\d+$/.test(count)) throw new CliUserError(`replicas for ${name} must be a whole number from 0 to ${MAX_REPLICAS}, got "${count}"`)
    const n = Number(count)
    if (n > MAX_REPLICAS) throw new CliUserError(`replicas for ${name} must be at most ${MAX_REPLICAS}, got ${n}`)
    out[name] = n
  }
  return out
}

/** Loaded only by `deploy`: the Compose translator and its YAML parser cost every other command startup time. */
async function readCompose (file: string, stackName: string | undefined): Promise<ComposeResult & { fileName: string, formatIssue: (i: ComposeResult['issues'][number]) => string }> {
  const { envFilesReferenced, formatIssue, translateCompose } = await import('../protocol/compose.ts')
  const path = resolve(file)
  if (!existsSync(path)) throw new CliUserError(`no such file: ${file}`)
  const text = readFileSync(path, 'utf8')
  const vars = Object.fromEntries(Object.entries(process.env).filter(([, v]) => v !== undefined)) as Record<string, string>
  const envFiles: Record<string, string> = {}
  for (const f of envFilesReferenced(text, vars)) {
    const p = resolve(dirname(path), f)
    if (!existsSync(p)) throw new CliUserError(`${file}: env_file ${f} not found (looked at ${p})`)
    envFiles[f] = readFileSync(p, 'utf8')
  }
  // the absolute path lets relative bind mounts resolve against the file's directory
  const r = translateCompose({ fileName: path, text, envFiles, stackName, variables: vars })
  return { ...r, fileName: basename(path), formatIssue: (i) => formatIssue(basename(path), i) }
}

export function registerServiceCommands (program: Command, g: () => GlobalOptions): void {
  program.command('deploy')
    .description('deploy or update a stack from a Compose file')
    .requiredOption('-f, --file <compose.yaml>', 'Compose file')
    .option('-n, --name <stack>', 'stack name (default: the file\'s name:, else its base name)')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('-d, --detach', 'return at once instead of following the rollout')
    .option('--prune', 'remove services of this stack that are no longer in the file')
    .option('--dry-run', 'only show what would change')
    .action(async (o) => {
      const compose = await readCompose(o.file, o.name)
      const errors = compose.issues.filter((i) => i.severity === 'error')
      for (const i of compose.issues) console.error(compose.formatIssue(i))
      if (errors.length > 0) throw new CliUserError(`${compose.fileName}: ${errors.length} error(s); nothing was changed`)
      const client = clientFor(g())
      const req = { stack: compose.stack, services: compose.services, prune: o.prune === true }
      const { ensureComposeFiles } = await import('./commands-secrets.ts')
      const plan = await client.call<DeployResponse>('POST', '/deploy', { ...req, dryRun: true })
      const fileChanges = await ensureComposeFiles(client, g(), compose.files, true)
      if (g().json !== true) {
        console.log(`stack ${plan.stack}:`)
        for (const l of fileChanges) console.log(l)
        printChanges(plan.changes)
      }
      if (o.dryRun === true) { if (g().json === true) console.log(JSON.stringify(plan, null, 2)); return }
      if (plan.changes.every((c) => c.action === 'unchanged') && fileChanges.length === 0) { if (g().json === true) console.log(JSON.stringify(plan, null, 2)); else console.log('nothing to change'); return }
      if (o.yes !== true && process.stdin.isTTY === true && !(await confirm('apply these changes?'))) throw new CliUserError('cancelled; nothing was changed')
      const { write } = await import('./credentials.ts')
      for (const l of await ensureComposeFiles(client, g(), compose.files, false)) if (g().json !== true) console.log(l)
      const done = await write<DeployResponse>(client, g(), 'POST', '/deploy', req)
      if (g().json === true) console.log(JSON.stringify(done, null, 2))
      const byName = new Map(compose.services.map((s) => [s.name, s]))
      await followOrDetach(client, g(), o, done.changes.filter((c) => c.action !== 'remove').map((c) => ({
        service: c.service, replicas: byName.get(c.service)?.mode === 'global' ? -1 : c.replicas, generation: c.generation
      })))
    })

  program.command('scale')
    .description('set the number of replicas: p2p-orch scale web=10 api=3')
    .argument('<service=replicas...>')
    .option('-d, --detach', 'return at once instead of following the rollout')
    .action(async (args: string[], o) => {
      const client = clientFor(g())
      const { write } = await import('./credentials.ts')
      const r = await write<ScaleResponse>(client, g(), 'POST', '/scale', { scales: parseScaleArgs(args) })
      if (g().json === true) console.log(JSON.stringify(r, null, 2))
      else printChanges(r.changes)
      await followOrDetach(client, g(), o, r.changes.map((c) => ({ service: c.service, replicas: c.replicas, generation: c.generation })))
    })

  program.command('services')
    .alias('ls')
    .description('list services')
    .action(async () => {
      const list = await clientFor(g()).call<ServiceView[]>('GET', '/services')
      if (g().json === true) { console.log(JSON.stringify(list, null, 2)); return }
      console.log(table(['NAME', 'STACK', 'MODE', 'REPLICAS', 'IMAGE', 'PORTS', 'GEN'], list.map((s) => [
        s.name, s.stack, s.mode, `${s.running}/${s.replicas}`, s.image, s.ports.join(',') || '-', String(s.generation)
      ])))
      for (const s of list) {
        for (const e of s.portErrors ?? []) console.log(`warning: ${s.name} on ${e.nodeName || shortId(e.node)}: ${e.error}`)
      }
    })

  program.command('ps')
    .description('list replicas (tasks), optionally of one service')
    .argument('[service]')
    .option('-a, --all', 'also show each slot\'s recent exits')
    .action(async (service: string | undefined, o) => {
      const tasks = await clientFor(g()).call<TaskView[]>('GET', `/ps${service !== undefined ? `?service=${encodeURIComponent(service)}` : ''}`)
      if (g().json === true) { console.log(JSON.stringify(tasks, null, 2)); return }
      const rows: string[][] = []
      for (const t of tasks) {
        rows.push([
          `${t.service}.${t.slot}`, t.nodeName || '-', t.desired, t.state, t.health, t.container.slice(0, 12) || '-',
          String(t.generation), age(t.startedAt), t.error || ''
        ])
        if (o.all === true) {
          for (const h of t.history) rows.push([` \\_ ${t.service}.${t.slot}`, t.nodeName || '-', 'shutdown', 'exited', '', '', '', age(h.at) + ' ago', h.reason])
        }
      }
      console.log(table(['SLOT', 'NODE', 'DESIRED', 'STATE', 'HEALTH', 'CONTAINER', 'GEN', 'AGE', 'ERROR'], rows))
    })

  program.command('inspect')
    .description('show a service\'s spec and replicas')
    .argument('<service>')
    .action(async (service: string) => {
      const r = await clientFor(g()).call<InspectResponse>('GET', `/services/${encodeURIComponent(service)}`)
      console.log(JSON.stringify(r, null, 2))
    })

  program.command('rm')
    .description('remove services')
    .argument('<service...>')
    .action(async (names: string[]) => {
      const client = clientFor(g())
      const { write } = await import('./credentials.ts')
      for (const n of names) {
        await write(client, g(), 'DELETE', `/services/${encodeURIComponent(n)}`)
        console.log(`removed ${n}`)
      }
    })

  program.command('logs')
    .description('print the logs of a service\'s replicas on this node')
    .argument('<service>')
    .option('--tail <n>', 'lines per replica', '100')
    .action(async (service: string, o) => {
      const r = await clientFor(g()).call<{ logs: Array<{ slot: number, container: string, text: string }>, remoteNodes: string[] }>('GET', `/services/${encodeURIComponent(service)}/logs?tail=${encodeURIComponent(o.tail)}`)
      for (const l of r.logs) {
        for (const line of l.text.split('\n')) if (line.length > 0) console.log(`${service}.${l.slot}@${shortId(l.container)} | ${line}`)
      }
      if (r.remoteNodes.length > 0) console.error(`(replicas on ${r.remoteNodes.join(', ')} are not shown: run logs against those nodes with --data or --api)`)
    })
}
