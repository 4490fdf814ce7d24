/**
 * Rollout commands: `update SERVICE` (image, environment, replicas; --pause, --resume),
 * `rollback SERVICE`, `promote SERVICE`, `rollout status SERVICE`. Changes follow the rollout
 * live, batch by batch, like `deploy`, and exit non-zero when it ends paused or rolled back.
 */
import type { Command } from 'commander'
import type { RolloutView, UpdateRequest, UpdateResponse } from '../node/api/types.ts'
import { isImageReference, MAX_REPLICAS } from '../protocol/spec.ts'
import { clientFor, type GlobalOptions } from './context.ts'
import { CliUserError } from './errors.ts'
import { followOrDetach, printChanges } from './commands-services.ts'

/** How often `rollout status` redraws while it follows. */
const STATUS_POLL_MS = 250
/** `rollout status` stops following after this long and says how to look again. */
const STATUS_FOLLOW_LIMIT_MS = 30 * 60_000

const collect = (v: string, prev: string[]): string[] => [...prev, v]

/** The request `update` sends; CLI-side checks give the user one line before anything is asked of a node. */
export function updateRequest (service: string, o: { image?: string, env: string[], envRm: string[], replicas?: string, pause?: boolean, resume?: boolean }): UpdateRequest {
  if (o.image !== undefined && !isImageReference(o.image)) throw new CliUserError(`"${o.image}" is not a valid image reference (e.g. busybox:1.37 or registry.local:5000/team/web:2)`)
  for (const e of o.env) if (e.indexOf('=') <= 0) throw new CliUserError(`--env takes KEY=VALUE, got "${e}"`)
  let replicas: number | undefined
  if (o.replicas !== undefined) {
    if (!/^\d+$/.test(o.replicas) || Number(o.replicas) > MAX_REPLICAS) throw new CliUserError(`--replicas must be a whole number from 0 to ${MAX_REPLICAS}, got "${o.replicas}"`)
    replicas = Number(o.replicas)
  }
  if (o.pause === true && o.resume === true) throw new CliUserError('--pause and --resume exclude each other')
  const changes = o.image !== undefined || o.env.length > 0 || o.envRm.length > 0 || replicas !== undefined
  if ((o.pause === true || o.resume === true) && changes) throw new CliUserError('--pause and --resume take no other change; run them on their own')
  if (!changes && o.pause !== true && o.resume !== true) throw new CliUserError('nothing to update: give --image, --env, --env-rm, --replicas, --pause or --resume')
  return {
    service,
    ...(o.image !== undefined ? { image: o.image } : {}),
    ...(o.env.length > 0 ? { env: o.env } : {}),
    ...(o.envRm.length > 0 ? { envRm: o.envRm } : {}),
    ...(replicas !== undefined ? { replicas } : {}),
    ...(o.pause === true ? { pause: true } : {}),
    ...(o.resume === true ? { resume: true } : {})
  }
}

/** One line per rollout: where it stands and why. */
export function describeRollout (r: RolloutView): string {
  const from = r.from === null ? '' : ` (from ${r.from})`
  const batch = r.batches > 0 && r.state !== 'completed' ? `, batch ${r.batch} of ${r.batches}` : ''
  const policy = `parallelism ${r.policy.parallelism}, ${r.policy.order}, monitor ${r.policy.monitorMs / 1000}s, on failure ${r.policy.failureAction}`
  return `${r.service}: ${r.kind} to generation ${r.generation}${from}: ${r.state}${batch}; ${r.updated}/${r.total} updated${r.failures > 0 ? `, ${r.failures} failed` : ''}\n  ${r.reason}\n  ${policy}${r.canary > 0 ? `, canary ${r.canary}${r.promoted ? ' (promoted)' : ''}` : ''}`
}

const FINAL_STATES = new Set(['completed', 'paused', 'rolled back', 'rollback paused'])

export function registerRolloutCommands (program: Command, g: () => GlobalOptions): void {
  program.command('update')
    .description('change a service and roll it out: p2p-orch update web --image busybox:1.37 --env MODE=fast')
    .argument('<service>')
    .option('--image <image>', 'new image reference')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable)', collect, [])
    .option('--env-rm <KEY>', 'remove an environment variable (repeatable)', collect, [])
    .option('--replicas <n>', 'also set the number of replicas')
    .option('--pause', 'pause the rollout under way (no further batch starts)')
    .option('--resume', 'resume a paused rollout')
    .option('-d, --detach', 'return at once instead of following the rollout')
    .action(async (service: string, o) => {
      const req = updateRequest(service, o)
      const client = clientFor(g())
      const { write } = await import('./credentials.ts')
      const r = await write<UpdateResponse>(client, g(), 'POST', '/update', req)
      if (g().json === true) console.log(JSON.stringify(r, null, 2))
      else printChanges([r.change])
      if (r.change.action === 'unchanged' || req.pause === true) return
      await followOrDetach(client, g(), o, [{ service, replicas: r.change.replicas, generation: r.change.generation }])
    })

  /** `rollback` and `promote`: one record written, then the rollout it starts followed like an update. */
  const action = (name: 'rollback' | 'promote', description: string): void => {
    program.command(name)
      .description(description)
      .argument('<service>')
      .option('-d, --detach', 'return at once instead of following the rollout')
      .action(async (service: string, o) => {
        const client = clientFor(g())
        const { write } = await import('./credentials.ts')
        const r = await write<UpdateResponse>(client, g(), 'POST', `/${name}`, { service })
        if (g().json === true) console.log(JSON.stringify(r, null, 2))
        else printChanges([r.change])
        await followOrDetach(client, g(), o, [{ service, replicas: r.change.replicas, generation: r.change.generation }])
      })
  }
  action('rollback', 'go back to the previous generation of a service (or discard a canary)')
  action('promote', 'let a canary (or blue-green) rollout go on to every replica')

  const rollout = program.command('rollout').description('rollouts of services')
  rollout.command('status')
    .description('where a service\'s rollout stands: batch, state and reason; follows it live until it ends')
    .argument('[service]', 'one service (default: every service)')
    .option('--no-watch', 'print once and return')
    .action(async (service: string | undefined, o: { watch: boolean }) => {
      const client = clientFor(g())
      const get = async (): Promise<RolloutView[]> => service !== undefined
        ? [await client.call<RolloutView>('GET', `/rollouts/${encodeURIComponent(service)}`)]
        : await client.call<RolloutView[]>('GET', '/rollouts')
      const started = Date.now()
      const tty = process.stdout.isTTY === true && g().json !== true
      let drawn = 0
      let last = ''
      while (true) {
        const views = await get()
        const text = g().json === true ? JSON.stringify(service !== undefined ? views[0] : views, null, 2) : views.map(describeRollout).join('\n')
        if (tty) {
          if (drawn > 0) process.stdout.write(`\x1b[${drawn}A\x1b[J`)
          process.stdout.write(text + '\n')
          drawn = text.split('\n').length
        } else if (text !== last) console.log(text)
        last = text
        if (!o.watch || views.every((v) => FINAL_STATES.has(v.state))) {
          const bad = views.filter((v) => v.state === 'rolled back' || v.state === 'rollback paused' || (v.state === 'paused' && !/^(canary|blue-green)/.test(v.reason)))
          if (o.watch && bad.length > 0) process.exitCode = 1
          return
        }
        if (Date.now() - started > STATUS_FOLLOW_LIMIT_MS) throw new CliUserError(`still rolling out after ${STATUS_FOLLOW_LIMIT_MS / 60_000} min; run \`p2p-orch rollout status\` again to keep watching`)
        await new Promise((resolve) => setTimeout(resolve, STATUS_POLL_MS))
      }
    })
}
