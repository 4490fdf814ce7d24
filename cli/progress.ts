/**
 * Follows a deploy, update or scale to the end: polls the node's `ps` and rollouts until every
 * desired replica of the given services runs (healthy, when it has a healthcheck) at the expected
 * generation and its rollout completed, or the rollout stopped (paused, rolled back: a failure), or
 * a failure is clear. A canary that waits for promote is an end too. On a terminal it redraws one
 * line per service; otherwise it prints a line whenever the text changes.
 */
import type { ApiClient } from '../node/api/client.ts'
import type { RolloutView, TaskView } from '../node/api/types.ts'

/** Poll period: fast enough to feel live (and not to add latency), cheap for the node. */
const POLL_MS = 50
/**
 * How long a replica may sit failed or rejected before we call the rollout failed: a restart
 * can take a moment, an image missing on a node will not fix itself.
 */
const FAILURE_PATIENCE_MS = 8000
/** Upper bound on waiting; beyond it the command returns and says how to keep watching. */
export const FOLLOW_TIMEOUT_MS = 5 * 60_000

export interface Expectation {
  service: string
  replicas: number
  generation: number
}

export interface FollowResult {
  ok: boolean
  lines: string[]
}

function bar (done: number, total: number, width = 20): string {
  const filled = total === 0 ? width : Math.round((done / total) * width)
  return '[' + '#'.repeat(filled) + '.'.repeat(width - filled) + ']'
}

export async function follow (client: ApiClient, expect: Expectation[], out: NodeJS.WriteStream = process.stderr): Promise<FollowResult> {
  const tty = out.isTTY === true
  const started = Date.now()
  const firstBad = new Map<string, number>()
  let drawn = 0
  let lastText = ''
  while (true) {
    const tasks = await client.call<TaskView[]>('GET', '/ps')
    const rollouts = new Map((await client.call<RolloutView[]>('GET', '/rollouts')).map((r) => [r.service, r]))
    const lines: string[] = []
    const problems: string[] = []
    const notes: string[] = []
    let allDone = true
    for (const e of expect) {
      const r = rollouts.get(e.service)
      const stopped = r !== undefined && (r.state === 'rolled back' || r.state === 'rollback paused' || (r.state === 'paused' && r.canary === 0) ||
        (r.state === 'paused' && r.canary > 0 && !/^(canary|blue-green)/.test(r.reason)))
      if (stopped) {
        problems.push(`${e.service}: rollout ${r.state}: ${r.reason}`)
        for (const t of tasks) {
          if (t.service === e.service && (t.state === 'failed' || t.state === 'rejected') && t.error !== '') problems.push(`  ${t.service}.${t.slot}${t.nodeName !== '' ? ` on ${t.nodeName}` : ''}: ${t.state}: ${t.error}`)
        }
        lines.push(`${e.service.padEnd(16)} rollout ${r.state}`)
        continue
      }
      if (r !== undefined && r.state === 'rolling back') {
        allDone = false
        lines.push(`${e.service.padEnd(16)} ${bar(r.updated, r.total)} rolling back to generation ${r.generation}: ${r.updated}/${r.total}`)
        continue
      }
      const stopping = tasks.filter((t) => t.service === e.service && t.desired === 'shutdown' && !(r?.canary !== undefined && r.canary >= r.total && t.state === 'running')).length
      if (r !== undefined && r.state === 'paused' && r.canary > 0 && r.generation === e.generation) {
        // a canary's replaced replicas are gone (blue-green keeps the old set running: that is the point)
        if (stopping > 0) allDone = false
        notes.push(`${e.service}: ${r.reason} (\`p2p-orch promote ${e.service}\` / \`p2p-orch rollback ${e.service}\`)`)
        lines.push(`${e.service.padEnd(16)} ${bar(r.updated, r.total)} ${r.updated}/${r.total} on generation ${r.generation}, waiting for promote`)
        continue
      }
      const mine = tasks.filter((t) => t.service === e.service)
      const wanted = mine.filter((t) => t.desired === 'running')
      const running = wanted.filter((t) => t.state === 'running' && t.generation === e.generation).length
      const extra = mine.filter((t) => t.desired === 'shutdown').length
      const total = e.replicas < 0 ? wanted.length : e.replicas
      // a rollout is over once its last batch stayed ready for its monitor period
      const rolling = r !== undefined && r.state !== 'completed' && r.from !== null && r.generation === e.generation
      const done = running === total && wanted.length === total && extra === 0 && !rolling
      if (!done) allDone = false
      const batch = rolling && r.batches > 0 ? ` · batch ${r.batch}/${r.batches} ${r.state}` : ''
      // replicas on their way out that still serve (the old generation in a start-first rollout, a handover)
      const serving = mine.filter((t) => t.desired === 'shutdown' && t.state === 'running').length
      const leaving = [serving > 0 ? `${serving} old serving` : '', extra - serving > 0 ? `${extra - serving} stopping` : ''].filter((x) => x !== '').join(', ')
      const what = rolling ? `updated to generation ${e.generation}` : 'running'
      lines.push(`${e.service.padEnd(16)} ${bar(running, total)} ${running}/${total} ${what}${leaving !== '' ? `, ${leaving}` : ''}${batch}`)
      // a rollout's failures end in its failure action (above), not in our patience
      if (rolling) continue
      for (const t of wanted) {
        const k = `${t.service}/${t.slot}`
        const bad = t.state === 'failed' || t.state === 'rejected' || (t.node === '' && t.error !== '')
        if (!bad) { firstBad.delete(k); continue }
        if (!firstBad.has(k)) firstBad.set(k, Date.now())
        if (Date.now() - firstBad.get(k)! >= FAILURE_PATIENCE_MS || t.state === 'rejected' || t.node === '') {
          problems.push(`${t.service}.${t.slot}${t.nodeName !== '' ? ` on ${t.nodeName}` : ''}: ${t.state === 'pending' ? 'cannot be placed' : t.state}: ${t.error}`)
        }
      }
    }
    const text = lines.join('\n')
    if (tty) {
      if (drawn > 0) out.write(`\x1b[${drawn}A`)
      for (const l of lines) out.write(`\x1b[2K${l}\n`)
      drawn = lines.length
    } else if (text !== lastText) {
      out.write(text + '\n')
    }
    lastText = text
    if (allDone && problems.length === 0) return { ok: true, lines: [...lines, ...notes] }
    const stoppedRollout = problems.some((p) => / rollout (paused|rolled back|rollback paused): /.test(p))
    if (stoppedRollout) return { ok: false, lines: problems }
    const settled = problems.length > 0 && Date.now() - started >= FAILURE_PATIENCE_MS / 2
    if (settled) return { ok: false, lines: problems }
    if (Date.now() - started > FOLLOW_TIMEOUT_MS) return { ok: false, lines: [`still converging after ${FOLLOW_TIMEOUT_MS / 1000}s; watch with \`p2p-orch ps\``] }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS))
  }
}
