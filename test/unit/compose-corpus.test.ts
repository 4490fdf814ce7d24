/**
 * Conformance corpus: real Compose files (test/fixtures/compose/, sources and licences in its
 * README) through `p2p-orch deploy --dry-run`, the command users run. No agent answers, so a file
 * the translation accepts ends at "no agent"; each file's stderr is checked against its
 * `.expected` beside it. `COMPOSE_CORPUS_UPDATE=1` rewrites the `.expected` files.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..')
const DIR = join(ROOT, 'test', 'fixtures', 'compose')
const NO_AGENT = join(DIR, 'no-agent-here')
const ACCEPTED = 'accepted (no agent was asked)'

function dryRun (file: string): Promise<string> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'cli', 'main.js'), 'deploy', '--dry-run', '-f', join(DIR, file), '--data', NO_AGENT],
      { env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 },
      (_err, _stdout, stderr) => {
        const lines = stderr.trimEnd().split('\n').map((l) => (l.startsWith('error: no p2p-orch agent answers at') ? ACCEPTED : l))
        resolve(`${lines.join('\n')}\n`)
      })
  })
}

async function pool<T, R> (items: T[], n: number, f: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length)
  let next = 0
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await f(items[i])
    }
  }))
  return out
}

test('every corpus file gets its checked-in outcome from deploy --dry-run', { timeout: 120_000 }, async () => {
  const files = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f)).sort()
  assert.ok(files.length >= 40, `${files.length} files`)
  const outcomes = await pool(files, 8, dryRun)
  const update = process.env.COMPOSE_CORPUS_UPDATE === '1'
  const wrong: string[] = []
  files.forEach((f, i) => {
    const expectedFile = join(DIR, f.replace(/\.ya?ml$/, '.expected'))
    if (update) writeFileSync(expectedFile, outcomes[i])
    let expected = ''
    try {
      expected = readFileSync(expectedFile, 'utf8')
    } catch {
      expected = '(no .expected file)'
    }
    if (expected !== outcomes[i]) wrong.push(`${f}:\n--- expected\n${expected}--- got\n${outcomes[i]}`)
    // the outcome is one of the two, and a refusal says why in located lines
    const last = outcomes[i].trimEnd().split('\n').pop() ?? ''
    assert.ok(last === ACCEPTED || /^error: /.test(last), `${f}: ${last}`)
  })
  assert.deepEqual(wrong, [])
})
