/**
 * What the agent and the CLI load at start stays lean: node:http is taken through
 * process.getBuiltinModule (node/http.ts), because an ES import of it reads http.WebSocket and so
 * loads undici (~12 MB). Checked in a fresh process: the test runner itself may have loaded it.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..')

function loadsUndici (modules: string[]): boolean {
  const script = `${modules.map((m) => `await import(${JSON.stringify(join(ROOT, m))})`).join('; ')}; console.log(process.moduleLoadList.some((m) => m.includes('undici')))`
  return execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }).trim() === 'true'
}

describe('lean imports', () => {
  it('the control API server and client do not load undici', () => {
    assert.equal(loadsUndici(['node/control.ts', 'node/api/client.ts']), false)
  })

  it('(the check works: an ES import of node:http does load it)', () => {
    const script = 'await import("node:http"); console.log(process.moduleLoadList.some((m) => m.includes("undici")))'
    assert.equal(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }).trim(), 'true')
  })
})
