/**
 * Hostile and broken Compose files: each is refused with one precise line (file:line:col), fast,
 * and as an error (so `deploy` changes nothing in the cluster).
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { MAX_COMPOSE_BYTES, formatIssue, parseEnvFile, translateCompose } from '../../protocol/compose.ts'
import type { ComposeResult } from '../../protocol/compose.ts'

const y = (...lines: string[]): string => `${lines.join('\n')}\n`
const web = (...lines: string[]): string => y('services:', '  web:', '    image: busybox', ...lines)

/**
 * Translates, checks it is refused quickly with exactly one error, and returns that error's line.
 * (Any error makes `deploy` change nothing: cli/commands-services.ts stops before the first request.)
 */
function refused (text: string, opts: { variables?: Record<string, string>, envFiles?: Record<string, string> } = {}): string {
  const t0 = performance.now()
  const r: ComposeResult = translateCompose({ fileName: '/srv/stack.yaml', text, variables: opts.variables ?? {}, envFiles: opts.envFiles ?? {} })
  const ms = performance.now() - t0
  assert.ok(ms < 2000, `took ${ms.toFixed(0)} ms`)
  const errors = r.issues.filter((i) => i.severity === 'error')
  assert.equal(errors.length, 1, JSON.stringify(r.issues))
  assert.equal(typeof errors[0].line, 'number', 'located')
  return formatIssue('stack.yaml', errors[0])
}

describe('bad input is refused in one precise line', () => {
  test('wrong types', () => {
    assert.equal(refused(web('    deploy: {replicas: [3]}')), 'stack.yaml:4:24: error: services.web.deploy.replicas: must be an integer, got a list')
    assert.equal(refused(web('    ports: {http: 80}')), 'stack.yaml:4:12: error: services.web.ports: must be a list, got a mapping')
    assert.equal(refused(web('    environment: "A=1"')), 'stack.yaml:4:18: error: services.web.environment: must be a mapping or a list, got "A=1"')
    assert.equal(refused(web('    healthcheck: {retries: true}')), 'stack.yaml:4:28: error: services.web.healthcheck.retries: must be a number, got true')
    assert.equal(refused(web('    volumes: [{type: cluster2, target: /x}]')), 'stack.yaml:4:22: error: services.web.volumes[0].type: must be one of "bind", "volume", "tmpfs", "cluster", "npipe", "image", got "cluster2"')
  })

  test('a value of none of the allowed forms; a form with a fault inside; a duplicate item', () => {
    assert.equal(refused(web('    depends_on: db')), 'stack.yaml:4:17: error: services.web.depends_on: must be a list or a mapping, got "db"')
    assert.equal(refused(web('    tmpfs: {a: 1}')), 'stack.yaml:4:12: error: services.web.tmpfs: must be a string or a list, got a mapping')
    assert.equal(refused(web('    volumes: [{target: /x}]')), 'stack.yaml:4:15: error: services.web.volumes[0].type: required')
    assert.equal(refused(web('    labels: [a, a]')), 'stack.yaml:4:17: error: services.web.labels[1]: duplicate of item 0')
  })

  test('unknown keys', () => {
    assert.equal(refused(web('    imagee: x')), 'stack.yaml:4:5: error: services.web.imagee: unknown key')
    assert.equal(refused(web('    deploy:', '      resources: {limits: {gpu: 1}}')), 'stack.yaml:5:28: error: services.web.deploy.resources.limits.gpu: unknown key')
    assert.equal(refused(web('    ports: [{target: 80, publish: 8080}]')), 'stack.yaml:4:26: error: services.web.ports[0].publish: unknown key')
    assert.equal(refused(y('servics:', '  web: {image: x}')), 'stack.yaml:1:1: error: servics: unknown key')
  })

  test('bad durations and sizes', () => {
    assert.equal(refused(web('    stop_grace_period: 10')), 'stack.yaml:4:24: error: services.web.stop_grace_period: must be a duration like "10s", "1m30s" or "500ms", got 10')
    assert.equal(refused(web('    stop_grace_period: 10 minutes')), 'stack.yaml:4:24: error: services.web.stop_grace_period: must be a duration like "10s", "1m30s" or "500ms", got "10 minutes"')
    assert.equal(refused(web('    healthcheck: {interval: -5s}')), 'stack.yaml:4:29: error: services.web.healthcheck.interval: must be a duration like "10s", "1m30s" or "500ms", got "-5s"')
    assert.equal(refused(web('    deploy: {resources: {limits: {memory: 512}}}')), 'stack.yaml:4:43: error: services.web.deploy.resources.limits.memory: must be a size like "512M", "1g", "100k" or "1.5GB", got 512')
    assert.equal(refused(web('    mem_limit: 1 gigabyte')), 'stack.yaml:4:16: error: services.web.mem_limit: must be a size like "512M", "1g", "100k" or "1.5GB", got "1 gigabyte"')
  })

  test('undefined ${VAR:?msg}', () => {
    assert.equal(refused(web('    environment: {DB: "${DB_URL:?set DB_URL to the database}"}')), 'stack.yaml:4:23: error: services.web.environment.DB: required variable DB_URL is not set: set DB_URL to the database')
    assert.equal(refused(y('services:', '  web:', '    image: ${TAG?}')), 'stack.yaml:3:12: error: services.web.image: required variable TAG is not set')
    assert.deepEqual(parseEnvFile('A=${NEED:?}').errors, [{ line: 1, message: 'required variable NEED is not set' }])
  })

  test('a 10 MB file', () => {
    const line = '# padding padding padding padding padding padding padding padding padding padding\n'
    const text = web() + line.repeat(Math.ceil(10e6 / line.length))
    assert.ok(text.length >= 10e6)
    const at = refused(text)
    const lineNo = Math.floor((MAX_COMPOSE_BYTES - web().length) / line.length) + 4
    assert.match(at, new RegExp(`^stack.yaml:${lineNo}:\\d+: error: file too large: \\d+ bytes, at most ${MAX_COMPOSE_BYTES} \\(1 MiB\\)$`))
  })

  test('billion laughs (exponential anchors)', () => {
    const lines = ['x-a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for (let i = 1; i <= 9; i++) lines.push(`x-a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]`)
    lines.push('services:', '  web:', '    image: busybox', '    command: *a9')
    assert.equal(refused(y(...lines)), 'stack.yaml:2:12: error: YAML aliases expand too much (more than 1000 expansions); is this an alias bomb?')
  })

  test('duplicate keys', () => {
    assert.equal(refused(web('    ports: ["80:80"]', '    image: nginx')), 'stack.yaml:5:5: error: duplicate key "image"')
    assert.equal(refused(y('services:', '  web: {image: x}', '  "web": {image: y}')), 'stack.yaml:3:3: error: duplicate key "web"')
  })

  test('deep nesting', () => {
    const text = web(`    labels: ${'['.repeat(5000)}${']'.repeat(5000)}`)
    const t0 = performance.now()
    const r = translateCompose({ fileName: '/srv/stack.yaml', text })
    assert.ok(performance.now() - t0 < 2000)
    assert.ok(r.issues.some((i) => i.severity === 'error'))
    assert.deepEqual(r.services, [])
  })
})
