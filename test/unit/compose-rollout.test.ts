/**
 * `deploy.update_config`, `deploy.rollback_config` and `deploy.x-p2p-orch.canary` → the spec's
 * `update`, `rollback` and `canary` (protocol/compose/rollout.ts).
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { translateCompose } from '../../protocol/compose.ts'
import type { ComposeIssue, ComposeResult } from '../../protocol/compose.ts'
import { DEFAULT_ROLLBACK_POLICY, DEFAULT_UPDATE_POLICY, MAX_REPLICAS } from '../../protocol/spec.ts'
import type { ServiceSpec } from '../../protocol/spec.ts'

const y = (...lines: string[]): string => `${lines.join('\n')}\n`
/** A one-service stack: `web` with image busybox plus the given (already indented) lines. */
const web = (...lines: string[]): string => y('services:', '  web:', '    image: busybox', ...lines)

const run = (text: string): ComposeResult => translateCompose({ fileName: '/srv/stack.yaml', text, variables: {} })
const errors = (r: ComposeResult): ComposeIssue[] => r.issues.filter((i) => i.severity === 'error')

function one (text: string): ServiceSpec {
  const r = run(text)
  assert.deepEqual(r.issues, [])
  assert.equal(r.services.length, 1)
  return r.services[0]
}

/** The file is refused with exactly one error, at `path` (located), whose message matches. */
function refused (text: string, path: string, message: RegExp): void {
  const es = errors(run(text))
  assert.equal(es.length, 1, JSON.stringify(es))
  assert.equal(es[0].path, path, JSON.stringify(es[0]))
  assert.equal(typeof es[0].line, 'number')
  assert.match(es[0].message, message)
}

describe('update_config and rollback_config', () => {
  test('a file that says nothing leaves the spec without them (it encodes as before)', () => {
    const s = one(web('    deploy: {replicas: 2}'))
    assert.equal(s.update, undefined)
    assert.equal(s.rollback, undefined)
    assert.equal(s.canary, undefined)
    assert.ok(!('update' in s) && !('rollback' in s) && !('canary' in s))
  })

  test('keys left out take Swarm\'s defaults', () => {
    const s = one(web('    deploy:', '      update_config: {parallelism: 2}', '      rollback_config: {}'))
    assert.deepEqual(s.update, { ...DEFAULT_UPDATE_POLICY, parallelism: 2 })
    assert.deepEqual(s.rollback, DEFAULT_ROLLBACK_POLICY)
  })

  test('every key is read; durations in milliseconds', () => {
    const s = one(web('    deploy:',
      '      update_config:',
      '        parallelism: 0',
      '        delay: 1m30s',
      '        failure_action: rollback',
      '        monitor: 500ms',
      '        max_failure_ratio: 0.25',
      '        order: start-first',
      '      rollback_config:',
      '        parallelism: "3"',
      '        delay: 10s',
      '        failure_action: continue',
      '        monitor: 1h',
      '        max_failure_ratio: "1"',
      '        order: stop-first'))
    assert.deepEqual(s.update, { parallelism: 0, delayMs: 90_000, failureAction: 'rollback', monitorMs: 500, maxFailureRatio: 0.25, order: 'start-first' })
    assert.deepEqual(s.rollback, { parallelism: 3, delayMs: 10_000, failureAction: 'continue', monitorMs: 3_600_000, maxFailureRatio: 1, order: 'stop-first' })
  })

  test('start-first is fine with ingress ports and with host ports that publish nothing fixed', () => {
    const s = one(web('    ports: ["8080:80", {target: 81, mode: host}]', '    deploy:', '      update_config: {order: start-first}'))
    assert.equal(s.update?.order, 'start-first')
  })

  test('bad values: one error each, at the key', () => {
    const u = (...lines: string[]): string => web('    deploy:', '      update_config:', ...lines)
    refused(u('        order: fast'), 'services.web.deploy.update_config.order', /start-first.*stop-first.*"fast"/)
    refused(u('        parallelism: -1'), 'services.web.deploy.update_config.parallelism', /^must be a non-negative integer, got -1$/)
    refused(u(`        parallelism: ${MAX_REPLICAS + 1}`), 'services.web.deploy.update_config.parallelism', /^must be at most/)
    refused(u('        max_failure_ratio: 1.5'), 'services.web.deploy.update_config.max_failure_ratio', /^must be a number from 0 to 1, got 1.5$/)
    refused(u('        max_failure_ratio: "-0.1"'), 'services.web.deploy.update_config.max_failure_ratio', /^must be a number from 0 to 1/)
    refused(u('        delay: 10'), 'services.web.deploy.update_config.delay', /^must be a duration like/)
    refused(u('        delay: -1s'), 'services.web.deploy.update_config.delay', /^must be a duration like/)
    refused(u('        monitor: 25h'), 'services.web.deploy.update_config.monitor', /^must be at most 24h, got "25h"$/)
    refused(u('        failure_action: retry'), 'services.web.deploy.update_config.failure_action', /^must be pause, continue or rollback, got "retry"$/)
    refused(web('    deploy:', '      rollback_config: {failure_action: retry}'), 'services.web.deploy.rollback_config.failure_action', /^must be pause or continue, got "retry"$/)
  })

  test('a rollback cannot roll back', () => {
    refused(web('    deploy:', '      rollback_config: {failure_action: rollback}'), 'services.web.deploy.rollback_config.failure_action', /use pause or continue/)
  })

  test('start-first with a fixed host-mode port is refused (both replicas would bind it on one node)', () => {
    const host = '    ports: [{target: 80, published: 8080, mode: host}]'
    refused(web(host, '    deploy:', '      update_config: {order: start-first}'), 'services.web.deploy.update_config.order', /host-mode port 8080\/tcp.*use stop-first or an ingress port/)
    refused(web(host, '    deploy:', '      rollback_config: {order: start-first}'), 'services.web.deploy.rollback_config.order', /use stop-first or an ingress port/)
    assert.equal(one(web(host, '    deploy:', '      update_config: {order: stop-first}')).update?.order, 'stop-first')
  })
})

describe('deploy.x-p2p-orch', () => {
  test('canary is read; at or above the replica count it is blue-green, still accepted', () => {
    assert.equal(one(web('    deploy:', '      replicas: 4', '      x-p2p-orch: {canary: 1}')).canary, 1)
    assert.equal(one(web('    deploy:', '      replicas: 2', '      x-p2p-orch: {canary: "2"}')).canary, 2)
    assert.equal(one(web('    deploy:', '      replicas: 2', '      x-p2p-orch: {canary: 5}')).canary, 5)
    // a canary alone sets no policy: the defaults apply where the rollout reads them
    assert.equal(one(web('    deploy:', '      x-p2p-orch: {canary: 1}')).update, undefined)
  })

  test('an empty extension sets nothing', () => {
    assert.equal(one(web('    deploy:', '      x-p2p-orch: {}')).canary, undefined)
  })

  test('bad values', () => {
    const p = 'services.web.deploy.x-p2p-orch'
    refused(web('    deploy:', '      x-p2p-orch: {canary: 0}'), `${p}.canary`, /^must be an integer of at least 1, got 0$/)
    refused(web('    deploy:', `      x-p2p-orch: {canary: ${MAX_REPLICAS + 1}}`), `${p}.canary`, /^must be at most/)
    refused(web('    deploy:', '      x-p2p-orch: {canary: one}'), `${p}.canary`, /^must be an integer of at least 1/)
    refused(web('    deploy:', '      mode: global', '      x-p2p-orch: {canary: 1}'), `${p}.canary`, /replicated services only.*global/)
    refused(web('    deploy:', '      x-p2p-orch: {canarie: 1}'), `${p}.canarie`, /^unknown key$/)
    refused(web('    deploy:', '      x-p2p-orch: 3'), p, /^must be a mapping/)
  })
})
