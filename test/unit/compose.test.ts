import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import fc from 'fast-check'
import { stringify } from 'yaml'
import {
  envFilesReferenced,
  formatIssue,
  parseBytes,
  parseConstraint,
  parseDurationNs,
  parseEnvFile,
  shellSplit,
  translateCompose
} from '../../protocol/compose.ts'
import type { ComposeInput, ComposeIssue, ComposeResult } from '../../protocol/compose.ts'
import { DEFAULT_RESTART_POLICY, MAX_REPLICAS } from '../../protocol/spec.ts'
import type { ServiceSpec } from '../../protocol/spec.ts'

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8')

/** YAML from lines, so the line numbers in assertions are easy to count. */
const y = (...lines: string[]): string => `${lines.join('\n')}\n`

function run(text: string, opts: Partial<ComposeInput> = {}): ComposeResult {
  return translateCompose({ fileName: '/srv/stack.yaml', text, variables: {}, ...opts })
}

const errors = (r: ComposeResult): ComposeIssue[] => r.issues.filter((i) => i.severity === 'error')
const warnings = (r: ComposeResult): ComposeIssue[] => r.issues.filter((i) => i.severity === 'warning')

/** The only service of a stack that must translate without errors. */
function one(text: string, opts: Partial<ComposeInput> = {}): ServiceSpec {
  const r = run(text, opts)
  assert.deepEqual(errors(r), [], JSON.stringify(r.issues))
  assert.equal(r.services.length, 1)
  return r.services[0]
}

/** A one-service stack: `web` with image busybox plus the given (already indented) lines. */
const web = (...lines: string[]): string => y('services:', '  web:', '    image: busybox', ...lines)

function issue(r: ComposeResult, path: string, severity?: 'error' | 'warning'): ComposeIssue {
  const found = r.issues.find((i) => i.path === path && (severity === undefined || i.severity === severity))
  assert.ok(found, `no ${severity ?? ''} issue at ${path}; got ${JSON.stringify(r.issues)}`)
  return found
}

function expectError(r: ComposeResult, path: string, line: number | undefined, col: number | undefined, message: RegExp | string): void {
  const i = issue(r, path, 'error')
  assert.equal(i.line, line, `line of ${path}: ${JSON.stringify(i)}`)
  if (col !== undefined) assert.equal(i.col, col, `col of ${path}: ${JSON.stringify(i)}`)
  if (typeof message === 'string') assert.equal(i.message, message)
  else assert.match(i.message, message)
}

describe('fixtures', () => {
  test('stack.yaml: busybox web (2 replicas) and api', () => {
    const r = translateCompose({ fileName: 'test/fixtures/stack.yaml', text: fixture('stack.yaml'), variables: { HOSTNAME: 'cli-host' } })
    assert.deepEqual(r.issues, [])
    assert.equal(r.stack, 'stack')
    assert.deepEqual(r.envFilesNeeded, [])
    const base = {
      stack: 'stack',
      image: 'p2p-orch/busybox:latest',
      env: [],
      labels: {},
      mounts: [],
      mode: 'replicated',
      limits: {},
      reservations: {},
      restartPolicy: DEFAULT_RESTART_POLICY,
      constraints: [],
      maxReplicasPerNode: 0
    }
    assert.deepEqual(r.services, [
      {
        ...base,
        name: 'web',
        // $$ keeps $HOSTNAME for the container's shell: the CLI's variables are not used
        command: ['sh', '-c', 'mkdir -p /www && echo hello from $HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www'],
        ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }],
        replicas: 2
      },
      { ...base, name: 'api', command: ['sleep', '3600'], ports: [], replicas: 1 }
    ].map((s) => ({
      name: s.name, stack: s.stack, image: s.image, command: s.command, env: s.env, labels: s.labels, ports: s.ports,
      mounts: s.mounts, mode: s.mode, replicas: s.replicas, limits: s.limits, reservations: s.reservations,
      restartPolicy: s.restartPolicy, constraints: s.constraints, maxReplicasPerNode: s.maxReplicasPerNode
    })))
  })

  test('full.yaml: every supported key', () => {
    const r = translateCompose({
      fileName: '/srv/stacks/full.yaml',
      text: fixture('full.yaml'),
      envFiles: { './api.env': '# api settings\nDB_URL=postgres://db/shop\nLOG_LEVEL=debug\n' },
      variables: { HOME: '/root' }
    })
    assert.deepEqual(r.issues, [])
    assert.equal(r.stack, 'shop')
    assert.deepEqual(r.envFilesNeeded, ['./api.env'])
    const [api, agent] = r.services
    assert.deepEqual(api, {
      name: 'api',
      stack: 'shop',
      image: 'registry.example.com/shop/api:1.4.2',
      command: ['serve', '--port', '8080'],
      entrypoint: ['/usr/bin/tini', '--'],
      env: ['DB_URL=postgres://db/shop', 'EMPTY=', 'LOG_LEVEL=info', 'VERSION=1.10'],
      labels: { 'com.example.team': 'payments' },
      ports: [
        { target: 8080, published: 8080, protocol: 'tcp', mode: 'ingress' },
        { target: 9090, published: 9090, protocol: 'tcp', mode: 'host' }
      ],
      healthcheck: { test: ['CMD-SHELL', 'curl -fsS http://localhost:8080/healthz'], intervalMs: 90_000, timeoutMs: 10_000, retries: 5, startPeriodMs: 500 },
      mounts: [
        { type: 'volume', source: 'shop_data', target: '/var/lib/api', readOnly: false },
        { type: 'volume', source: 'cache', target: '/cache', readOnly: true },
        { type: 'volume', source: 'shop-logs', target: '/logs', readOnly: false },
        { type: 'bind', source: '/srv/stacks/config', target: '/etc/api', readOnly: true },
        { type: 'tmpfs', source: '', target: '/scratch', readOnly: false }
      ],
      user: '1000:1000',
      workingDir: '/srv',
      stopSignal: 'SIGINT',
      stopGracePeriodMs: 60_000,
      mode: 'replicated',
      replicas: 3,
      limits: { cpus: 1.5, memoryBytes: 512 * 1024 ** 2 },
      reservations: { cpus: 0.25, memoryBytes: 128 * 1024 ** 2 },
      restartPolicy: { ...DEFAULT_RESTART_POLICY, condition: 'on-failure' },
      constraints: [
        { attribute: 'labels.zone', op: '==', value: 'eu-west' },
        { attribute: 'name', op: '!=', value: 'edge-1' }
      ],
      maxReplicasPerNode: 2
    })
    assert.deepEqual(agent, {
      name: 'agent',
      stack: 'shop',
      image: 'busybox',
      command: ['sleep', 'infinity'],
      env: ['HOME=/root', 'MODE=agent'],
      labels: { monitored: '', role: 'agent' },
      ports: [],
      healthcheck: { test: ['NONE'], intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 },
      mounts: [],
      mode: 'global',
      replicas: 1,
      limits: {},
      reservations: {},
      restartPolicy: { condition: 'on-failure', delayMs: 10_000, maxAttempts: 3, windowMs: 120_000 },
      constraints: [],
      maxReplicasPerNode: 0
    })
  })
})

describe('defaults and canonical output', () => {
  test('a minimal service gets the defaults and omits optional fields', () => {
    const s = one(web())
    assert.deepEqual(s, {
      name: 'web',
      stack: 'stack',
      image: 'busybox',
      env: [],
      labels: {},
      ports: [],
      mounts: [],
      mode: 'replicated',
      replicas: 1,
      limits: {},
      reservations: {},
      restartPolicy: DEFAULT_RESTART_POLICY,
      constraints: [],
      maxReplicasPerNode: 0
    })
    for (const k of ['command', 'entrypoint', 'healthcheck', 'user', 'workingDir', 'stopSignal', 'stopGracePeriodMs']) {
      assert.equal(Object.hasOwn(s, k), false, k)
    }
    assert.notEqual(s.restartPolicy, DEFAULT_RESTART_POLICY, 'a copy, not the shared default')
  })

  test('env and labels are sorted; equal inputs give equal output', () => {
    const text = web('    environment: {Z: 1, A: 2, M: 3}', '    labels: {z: 1, a: 2}')
    const a = one(text)
    assert.deepEqual(a.env, ['A=2', 'M=3', 'Z=1'])
    assert.deepEqual(Object.keys(a.labels), ['a', 'z'])
    assert.deepEqual(one(text), a)
    const reordered = one(web('    labels: {a: 2, z: 1}', '    environment: {A: 2, M: 3, Z: 1}'))
    assert.deepEqual(JSON.stringify(reordered), JSON.stringify(a))
  })

  test('services keep file order', () => {
    const r = run(y('services:', '  b: {image: x}', '  a: {image: x}', '  c: {image: x}'))
    assert.deepEqual(r.services.map((s) => s.name), ['b', 'a', 'c'])
  })
})

describe('command and entrypoint', () => {
  test('strings are split into words like Compose', () => {
    const s = one(web(`    command: echo "hello world" 'a b' c\\ d "q\\"x" ''`, '    entrypoint: /bin/sh -c'))
    assert.deepEqual(s.command, ['echo', 'hello world', 'a b', 'c d', 'q"x', ''])
    assert.deepEqual(s.entrypoint, ['/bin/sh', '-c'])
  })

  test('lists are kept; the schema wants strings in them', () => {
    const s = one(web('    command: ["sleep", "3600", "1.50"]', '    entrypoint: []'))
    assert.deepEqual(s.command, ['sleep', '3600', '1.50'])
    assert.deepEqual(s.entrypoint, [])
    const r = run(web('    command: ["sleep", 3600, 1.50]'))
    expectError(r, 'services.web.command[1]', 4, 24, 'must be a string, got 3600')
    expectError(r, 'services.web.command[2]', 4, 30, 'must be a string, got 1.5')
  })

  test('unquoted shell operators and open quotes are errors', () => {
    const r = run(web('    command: echo a; echo b', '    entrypoint: "sh -c \'oops"'))
    expectError(r, 'services.web.command', 4, 14, /unquoted shell operator ";"/)
    expectError(r, 'services.web.entrypoint', 5, 17, /unterminated single quote/)
  })

  test('non-string items are errors', () => {
    const r = run(web('    command: ["a", {b: 1}]'))
    expectError(r, 'services.web.command[1]', 4, 20, 'must be a string, got a mapping')
  })

  test('shellSplit', () => {
    assert.deepEqual(shellSplit('  a   b  '), { words: ['a', 'b'] })
    assert.deepEqual(shellSplit('"a\\$b" \\"x'), { words: ['a$b', '"x'] })
    assert.deepEqual(shellSplit(''), { words: [] })
    assert.ok('error' in shellSplit('"abc'))
  })
})

describe('environment, env_file, labels', () => {
  test('list form: K=V and K (from variables, or dropped)', () => {
    const s = one(web('    environment:', '      - A=1', '      - B=x=y', '      - HOME', '      - UNSET', '      - EMPTY='), {
      variables: { HOME: '/home/me' }
    })
    assert.deepEqual(s.env, ['A=1', 'B=x=y', 'EMPTY=', 'HOME=/home/me'])
  })

  test('map form: null takes the variable or drops; scalars keep their text', () => {
    const s = one(web('    environment:', '      HOME:', '      UNSET: ~', '      V: 1.10', '      T: true', '      HEX: 0x1F', '      S: "x"'), {
      variables: { HOME: '/home/me' }
    })
    assert.deepEqual(s.env, ['HEX=0x1F', 'HOME=/home/me', 'S=x', 'T=true', 'V=1.10'])
  })

  test('wrong types are errors', () => {
    const r = run(web('    environment:', '      A: [1]', '    labels: 3'))
    expectError(r, 'services.web.environment.A', 5, 10, 'must be a string, a number or true or false, got a list')
    expectError(r, 'services.web.labels', 6, 13, 'must be a mapping or a list, got 3')
  })

  test('labels: list and map', () => {
    assert.deepEqual(one(web('    labels: ["b=2", "a", "c=x=y"]')).labels, { a: '', b: '2', c: 'x=y' })
    assert.deepEqual(one(web('    labels: {b: 2, a: null, "__proto__": x}')).labels, JSON.parse('{"__proto__":"x","a":"","b":"2"}'))
  })

  test('env_file: files merge in order, environment wins', () => {
    const text = web('    env_file: [one.env, {path: two.env}, {path: opt.env, required: false}]', '    environment: [C=env]')
    const envFiles = { 'one.env': 'A=1\nB=1\nC=1\n', 'two.env': 'B=2\n' }
    const s = one(text, { envFiles })
    assert.deepEqual(s.env, ['A=1', 'B=2', 'C=env'])
    assert.deepEqual(run(text, { envFiles }).envFilesNeeded, ['one.env', 'two.env', 'opt.env'])
    assert.deepEqual(envFilesReferenced(text), ['one.env', 'two.env', 'opt.env'])
  })

  test('env_file: string form, interpolated path, missing file', () => {
    const text = web('    env_file: ${DIR}/app.env')
    assert.deepEqual(envFilesReferenced(text, { DIR: 'conf' }), ['conf/app.env'])
    assert.deepEqual(one(text, { variables: { DIR: 'conf' }, envFiles: { 'conf/app.env': 'X=1' } }).env, ['X=1'])
    const r = run(text, { variables: { DIR: 'conf' } })
    expectError(r, 'services.web.env_file', 4, 15, 'env file "conf/app.env" not found')
  })

  test('the same text with other variables is interpolated again', () => {
    const text = web('    env_file: ${DIR}/app.env', '    environment: ["X=${X}"]')
    assert.deepEqual(envFilesReferenced(text, { DIR: 'a', X: '1' }), ['a/app.env'])
    const vars = { DIR: 'b', X: '2' }
    assert.deepEqual(envFilesReferenced(text, vars), ['b/app.env'])
    assert.deepEqual(one(text, { variables: vars, envFiles: { 'b/app.env': 'Y=1' } }).env, ['X=2', 'Y=1'])
    vars.X = '3'
    assert.deepEqual(one(text, { variables: vars, envFiles: { 'b/app.env': 'Y=1' } }).env, ['X=3', 'Y=1'])
  })

  test('env_file: syntax errors name the file and line', () => {
    const r = run(web('    env_file: [a.env]'), { envFiles: { 'a.env': 'OK=1\nnot valid\n' } })
    expectError(r, 'services.web.env_file[0]', 4, 16, 'a.env:2: invalid variable name "not valid"')
  })

  test('parseEnvFile: comments, export, quotes, escapes, interpolation', () => {
    const content = [
      '# comment',
      '',
      'export A=1',
      'B = spaced   # trailing comment',
      "C='literal ${A} # not a comment'",
      'D="line\\nbreak \\"q\\" ${A}"',
      'E="multi',
      'line"',
      'F=${A}-${FROM_ENV}',
      'G=a#b',
      'H',
      'I=',
      '  J=indented'
    ].join('\n')
    const r = parseEnvFile(content, { FROM_ENV: 'env', H: 'from-vars' })
    assert.deepEqual(r.errors, [])
    assert.deepEqual(Object.fromEntries(r.entries), {
      A: '1',
      B: 'spaced',
      C: 'literal ${A} # not a comment',
      D: 'line\nbreak "q" 1',
      E: 'multi\nline',
      F: '1-env',
      G: 'a#b',
      H: 'from-vars',
      I: '',
      J: 'indented'
    })
    assert.deepEqual(parseEnvFile('X=${NOPE}').unset, ['NOPE'])
    assert.deepEqual(parseEnvFile('X="open').errors, [{ line: 1, message: 'unterminated double quote' }])
    assert.deepEqual(parseEnvFile('A=1\nX=${NEED:?missing}').errors, [{ line: 2, message: 'required variable NEED is not set: missing' }])
  })
})

describe('ports', () => {
  test('short syntax', () => {
    const s = one(web('    ports: ["80", "8080:80", "0.0.0.0:8081:81", "9000:90/udp", "[::]:9001:91/tcp", 7000]'))
    assert.deepEqual(s.ports, [
      { target: 80, protocol: 'tcp', mode: 'ingress' },
      { target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' },
      { target: 81, published: 8081, protocol: 'tcp', mode: 'ingress' },
      { target: 90, published: 9000, protocol: 'udp', mode: 'ingress' },
      { target: 91, published: 9001, protocol: 'tcp', mode: 'ingress' },
      { target: 7000, protocol: 'tcp', mode: 'ingress' }
    ])
  })

  test('long syntax', () => {
    const s = one(web('    ports:', '      - {target: 80, published: "8080", protocol: UDP, mode: host}', '      - target: "443"'))
    assert.deepEqual(s.ports, [
      { target: 80, published: 8080, protocol: 'udp', mode: 'host' },
      { target: 443, protocol: 'tcp', mode: 'ingress' }
    ])
  })

  test('invalid ports are errors at their item', () => {
    const r = run(web('    ports:', '      - "0:80"', '      - "8080:70000"', '      - "8000-8001:80"', '      - "80/sctp"', '      - "a:b:c:d"', '      - {published: 80}', '      - {target: 80, mode: vip}', '      - 65536'))
    expectError(r, 'services.web.ports[0]', 5, 9, /"0" is not a port number between 1 and 65535/)
    expectError(r, 'services.web.ports[1]', 6, 9, /"70000" is not a port number between 1 and 65535/)
    expectError(r, 'services.web.ports[2]', 7, 9, /port ranges are not supported/)
    expectError(r, 'services.web.ports[3]', 8, 9, /unsupported protocol "sctp"/)
    expectError(r, 'services.web.ports[4]', 9, 9, /expected \[\[HOST_IP:\]PUBLISHED:\]TARGET/)
    expectError(r, 'services.web.ports[5].target', 10, 9, 'required')
    expectError(r, 'services.web.ports[6].mode', 11, 28, /must be "ingress" or "host"/)
    expectError(r, 'services.web.ports[7]', 12, 9, 'must be a port number between 1 and 65535, got 65536')
    assert.deepEqual(r.services[0].ports, [])
  })

  test('a specific host IP is an error (the port would open everywhere)', () => {
    const r = run(web('    ports: ["127.0.0.1:8080:80", {target: 81, host_ip: 10.0.0.1}]'))
    expectError(r, 'services.web.ports[0]', 4, 13, /host IP "127.0.0.1" is not supported/)
    expectError(r, 'services.web.ports[1].host_ip', 4, 56, /host IP "10.0.0.1"/)
  })

  test('x-p2p-orch proxy_protocol on a published ingress port; an error elsewhere', () => {
    const s = one(web('    ports:', '      - {target: 80, published: 8080, x-p2p-orch: {proxy_protocol: true}}', '      - {target: 81, published: 8081, x-p2p-orch: {proxy_protocol: v2}}', '      - {target: 82, published: 8082, x-p2p-orch: {proxy_protocol: false}}'))
    assert.deepEqual(s.ports, [
      { target: 80, published: 8080, protocol: 'tcp', mode: 'ingress', proxyProtocol: true },
      { target: 81, published: 8081, protocol: 'tcp', mode: 'ingress', proxyProtocol: true },
      { target: 82, published: 8082, protocol: 'tcp', mode: 'ingress' }
    ])
    const r = run(web('    ports:', '      - {target: 80, published: 8080, mode: host, x-p2p-orch: {proxy_protocol: true}}', '      - {target: 81, published: 8081, x-p2p-orch: {proxy_protocol: maybe}}', '      - {target: 82, published: 8082, x-p2p-orch: {nope: 1}}'))
    expectError(r, 'services.web.ports[0].x-p2p-orch.proxy_protocol', 5, undefined, /published ingress ports only/)
    expectError(r, 'services.web.ports[1].x-p2p-orch.proxy_protocol', 6, undefined, /must be true, false or "v2"/)
    expectError(r, 'services.web.ports[2].x-p2p-orch.nope', 7, undefined, 'unknown key')
  })

  test('expose: container ports reached by name', () => {
    assert.deepEqual(one(web('    expose: ["3000", "53/udp", 8080]')).expose, [
      { target: 3000, protocol: 'tcp' }, { target: 53, protocol: 'udp' }, { target: 8080, protocol: 'tcp' }
    ])
    assert.equal(one(web()).expose, undefined)
    const r = run(web('    expose: ["3000-3005", 0, "x"]'))
    expectError(r, 'services.web.expose[0]', 4, 14, /container port like "3000"/)
    expectError(r, 'services.web.expose[1]', 4, undefined, /not a port number/)
    expectError(r, 'services.web.expose[2]', 4, undefined, /container port like "3000"/)
  })

  test('two services cannot publish the same ingress port', () => {
    const r = run(y('services:', '  a: {image: x, ports: ["8080:80"]}', '  b:', '    image: x', '    ports: ["8080:81", "8080:82/udp"]'))
    expectError(r, 'services.b.ports[0]', 5, 13, 'published port 8080/tcp is already used by service "a"')
    assert.equal(errors(r).length, 1)
  })
})

describe('healthcheck', () => {
  test('string test → CMD-SHELL, durations, retries', () => {
    const s = one(web('    healthcheck:', '      test: wget -q -O- localhost', '      interval: 1m30s', '      timeout: 2.5s', '      retries: 2', '      start_period: 500ms'))
    assert.deepEqual(s.healthcheck, { test: ['CMD-SHELL', 'wget -q -O- localhost'], intervalMs: 90_000, timeoutMs: 2_500, retries: 2, startPeriodMs: 500 })
  })

  test('list test kept, defaults applied; disable → NONE', () => {
    assert.deepEqual(one(web('    healthcheck: {test: [CMD, "true"]}')).healthcheck, { test: ['CMD', 'true'], intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 })
    assert.deepEqual(one(web('    healthcheck: {disable: true}')).healthcheck?.test, ['NONE'])
    assert.deepEqual(one(web('    healthcheck: {interval: 5s}')).healthcheck?.test, [], 'no test: keep the image test')
  })

  test('errors', () => {
    // the schema first: a number where a duration string goes
    const s = run(web('    healthcheck:', '      interval: 10'))
    expectError(s, 'services.web.healthcheck.interval', 5, 17, 'must be a duration like "10s", "1m30s" or "500ms", got 10')
    const r = run(web('    healthcheck:', '      test: [curl, x]', '      interval: 10x', '      timeout: 5 s', '      retries: -1', '      start_interval: 1s'))
    expectError(r, 'services.web.healthcheck.test', 5, 13, /must start with "CMD", "CMD-SHELL" or "NONE", got "curl"/)
    expectError(r, 'services.web.healthcheck.interval', 6, 17, 'must be a duration like "10s", "1m30s" or "500ms", got "10x"')
    expectError(r, 'services.web.healthcheck.timeout', 7, 16, /got "5 s"/)
    expectError(r, 'services.web.healthcheck.retries', 8, 16, 'must be a non-negative integer, got -1')
    const w = issue(r, 'services.web.healthcheck.start_interval', 'warning')
    assert.equal(w.line, 9)
  })
})

describe('volumes', () => {
  const vols = (...lines: string[]): string => y('volumes:', '  data: {}', '  ext: {external: true}', 'services:', '  web:', '    image: busybox', ...lines)

  test('short syntax: named, read-only, absolute and relative binds, anonymous', () => {
    const s = one(vols('    volumes: ["data:/data", "ext:/ext:ro", "/etc/hosts:/h:ro,z", "./conf:/conf:rw", "../up:/up", "/anon"]'))
    assert.deepEqual(s.mounts, [
      { type: 'volume', source: 'stack_data', target: '/data', readOnly: false },
      { type: 'volume', source: 'ext', target: '/ext', readOnly: true },
      { type: 'bind', source: '/etc/hosts', target: '/h', readOnly: true },
      { type: 'bind', source: '/srv/conf', target: '/conf', readOnly: false },
      { type: 'bind', source: '/up', target: '/up', readOnly: false },
      { type: 'volume', source: '', target: '/anon', readOnly: false }
    ])
  })

  test('long syntax and tmpfs', () => {
    const s = one(vols(
      '    volumes:',
      '      - {type: volume, source: data, target: /d, read_only: true}',
      '      - {type: bind, source: ./x, target: /x}',
      '      - {type: tmpfs, target: /t, tmpfs: {size: 1000}}',
      '    tmpfs: [/run, "/tmp:size=64m"]'
    ))
    assert.deepEqual(s.mounts, [
      { type: 'volume', source: 'stack_data', target: '/d', readOnly: true },
      { type: 'bind', source: '/srv/x', target: '/x', readOnly: false },
      { type: 'tmpfs', source: '', target: '/t', readOnly: false },
      { type: 'tmpfs', source: '', target: '/run', readOnly: false },
      { type: 'tmpfs', source: '', target: '/tmp', readOnly: false }
    ])
  })

  test('an undeclared named volume is an error, like Compose', () => {
    const r = run(vols('    volumes:', '      - data:/ok', '      - missing:/m', '      - {type: volume, source: gone, target: /g}'))
    expectError(r, 'services.web.volumes[1]', 9, 9, 'volume "missing" is not declared under the top-level volumes key')
    expectError(r, 'services.web.volumes[2].source', 10, 32, /volume "gone" is not declared/)
  })

  test('other mount errors', () => {
    const r = run(vols('    volumes: ["data:rel", "data:/x:rx", "~/h:/h", {type: npipe, target: /p}, {type: bind, target: /b}]'), { fileName: 'stack.yaml' })
    expectError(r, 'services.web.volumes[0]', 7, 15, 'mount target must be an absolute path, got "rel"')
    expectError(r, 'services.web.volumes[1]', 7, 27, /unknown volume option "rx"/)
    expectError(r, 'services.web.volumes[2]', 7, 41, /home-relative/)
    expectError(r, 'services.web.volumes[3].type', 7, 58, /must be volume, bind or tmpfs, got "npipe"/)
    expectError(r, 'services.web.volumes[4].source', 7, 78, 'required for type bind')
    const rel = run(vols('    volumes: ["./x:/x"]'), { fileName: 'stack.yaml' })
    expectError(rel, 'services.web.volumes[0]', 7, 15, /relative bind source "\.\/x" cannot be resolved/)
  })

  test('top-level declarations: name, external, driver', () => {
    const r = run(y('volumes:', '  a: {name: custom}', '  b: {external: {name: old}}', '  c: {driver: nfs}', '  d: {driver_opts: {o: x}}', 'services:', '  web:', '    image: x', '    volumes: [a:/a, b:/b]'))
    assert.deepEqual(r.services[0].mounts.map((m) => m.source), ['custom', 'old'])
    expectError(r, 'volumes.c.driver', 4, 15, /only the local driver/)
    expectError(r, 'volumes.d.driver_opts', 5, 7, /not supported yet/)
  })
})

describe('other service keys', () => {
  test('user, working_dir, stop_signal, stop_grace_period', () => {
    const s = one(web('    user: "1000"', '    working_dir: /app', '    stop_signal: SIGUSR1', '    stop_grace_period: 1m30s'))
    assert.equal(s.user, '1000')
    assert.equal(s.workingDir, '/app')
    assert.equal(s.stopSignal, 'SIGUSR1')
    assert.equal(s.stopGracePeriodMs, 90_000)
  })

  test('their errors', () => {
    expectError(run(web('    user: [a]')), 'services.web.user', 4, 11, 'must be a string, got a list')
    expectError(run(web('    user: 1000')), 'services.web.user', 4, 11, 'must be a string, got 1000')
    const r = run(web('    working_dir: app', '    stop_signal: "SIG TERM"', '    stop_grace_period: soon'))
    expectError(r, 'services.web.working_dir', 4, 18, 'must be an absolute path, got "app"')
    expectError(r, 'services.web.stop_signal', 5, 18, /signal name/)
    expectError(r, 'services.web.stop_grace_period', 6, 24, /got "soon"/)
  })

  test('restart shorthand maps to the restart policy', () => {
    const cond = (v: string): unknown => one(web(`    restart: ${v}`)).restartPolicy
    assert.deepEqual(cond('always'), DEFAULT_RESTART_POLICY)
    assert.deepEqual(cond('unless-stopped'), DEFAULT_RESTART_POLICY)
    assert.deepEqual(cond('"no"'), { ...DEFAULT_RESTART_POLICY, condition: 'none' })
    assert.deepEqual(cond('no'), { ...DEFAULT_RESTART_POLICY, condition: 'none' })
    assert.deepEqual(cond('on-failure'), { ...DEFAULT_RESTART_POLICY, condition: 'on-failure' })
    assert.deepEqual(cond('on-failure:4'), { ...DEFAULT_RESTART_POLICY, condition: 'on-failure', maxAttempts: 4 })
    const r = run(web('    restart: sometimes'))
    expectError(r, 'services.web.restart', 4, 14, /must be "no", "always"/)
  })

  test('deploy.restart_policy takes precedence over restart', () => {
    const r = run(web('    restart: "no"', '    deploy: {restart_policy: {condition: any}}'))
    assert.equal(r.services[0].restartPolicy.condition, 'any')
    assert.equal(issue(r, 'services.web.restart', 'warning').line, 4)
  })

  test('scale, cpus, mem_limit, mem_reservation as shorthands', () => {
    const s = one(web('    scale: 4', '    cpus: 0.5', '    mem_limit: 1g', '    mem_reservation: 100k'))
    assert.equal(s.replicas, 4)
    assert.deepEqual(s.limits, { cpus: 0.5, memoryBytes: 1024 ** 3 })
    assert.deepEqual(s.reservations, { memoryBytes: 100 * 1024 })
    const r = run(web('    scale: 4', '    deploy: {replicas: 2}'))
    expectError(r, 'services.web.scale', 4, 12, 'conflicts with deploy.replicas (2)')
  })
})

describe('deploy', () => {
  test('mode and replicas', () => {
    assert.equal(one(web('    deploy: {mode: global}')).mode, 'global')
    assert.equal(one(web('    deploy: {replicas: 0}')).replicas, 0)
    assert.equal(one(web(`    deploy: {replicas: ${MAX_REPLICAS}}`)).replicas, MAX_REPLICAS)
    assert.equal(one(web('    deploy: {replicas: "3"}')).replicas, 3)
  })

  test('replicas and mode errors', () => {
    const bad = (v: string): ComposeResult => run(web('    deploy:', `      replicas: ${v}`))
    expectError(bad('abc'), 'services.web.deploy.replicas', 5, 17, 'must be a non-negative integer, got "abc"')
    expectError(bad('-1'), 'services.web.deploy.replicas', 5, 17, 'must be a non-negative integer, got -1')
    expectError(bad('1.5'), 'services.web.deploy.replicas', 5, 17, 'must be an integer, got 1.5')
    expectError(bad(String(MAX_REPLICAS + 1)), 'services.web.deploy.replicas', 5, 17, `must be at most ${MAX_REPLICAS}, got ${MAX_REPLICAS + 1}`)
    const m = run(web('    deploy:', '      mode: sharded'))
    expectError(m, 'services.web.deploy.mode', 5, 13, 'must be replicated or global, got "sharded"')
    const g = run(web('    deploy: {mode: global, replicas: 2}'))
    assert.deepEqual(errors(g), [])
    assert.equal(issue(g, 'services.web.deploy.replicas', 'warning').line, 4)
  })

  test('resources: cpus and memory units', () => {
    const res = (cpus: string, memory: string): unknown => one(web(`    deploy: {resources: {limits: {cpus: ${cpus}, memory: ${memory}}}}`)).limits
    assert.deepEqual(res('"0.5"', '512M'), { cpus: 0.5, memoryBytes: 512 * 1024 ** 2 })
    assert.deepEqual(res('2', '1g'), { cpus: 2, memoryBytes: 1024 ** 3 })
    assert.deepEqual(res('0.25', '100k'), { cpus: 0.25, memoryBytes: 102_400 })
    assert.deepEqual(res('1', '1.5GB'), { cpus: 1, memoryBytes: 1.5 * 1024 ** 3 })
    assert.deepEqual(res('1', '"2048"'), { cpus: 1, memoryBytes: 2048 })
    assert.deepEqual(res('1', '64MiB'), { cpus: 1, memoryBytes: 64 * 1024 ** 2 })
  })

  test('resources errors', () => {
    const r = run(web('    deploy:', '      resources:', '        limits: {cpus: lots, memory: 12X, pids: 10}', '        reservations: {memory: 2g, devices: []}', '      endpoint_mode: dnsrr'))
    expectError(r, 'services.web.deploy.resources.limits.cpus', 6, 24, /must be a non-negative number of CPUs/)
    expectError(r, 'services.web.deploy.resources.limits.memory', 6, 38, 'must be a size like "512M", "1g", "100k" or "1.5GB", got "12X"')
    expectError(r, 'services.web.deploy.resources.reservations.devices', 7, 36, /not supported yet/)
    expectError(r, 'services.web.deploy.endpoint_mode', 8, 7, /not supported yet/)
    assert.equal(issue(r, 'services.web.deploy.resources.limits.pids', 'warning').line, 6)
  })

  test('reservation above limit is an error', () => {
    const r = run(web('    deploy: {resources: {limits: {memory: 1m}, reservations: {memory: 2m}}}'))
    issue(r, 'services.web.deploy.resources.reservations.memory', 'error')
  })

  test('restart_policy', () => {
    const s = one(web('    deploy:', '      restart_policy: {condition: none, delay: "0", max_attempts: 2, window: 30s}'))
    assert.deepEqual(s.restartPolicy, { condition: 'none', delayMs: 0, maxAttempts: 2, windowMs: 30_000 })
    const partial = one(web('    deploy: {restart_policy: {max_attempts: 5}}'))
    assert.deepEqual(partial.restartPolicy, { ...DEFAULT_RESTART_POLICY, maxAttempts: 5 })
    const r = run(web('    deploy:', '      restart_policy:', '        condition: always', '        delay: 1x'))
    expectError(r, 'services.web.deploy.restart_policy.condition', 6, 20, 'must be none, on-failure or any, got "always"')
    expectError(r, 'services.web.deploy.restart_policy.delay', 7, 16, /duration/)
  })

  test('placement constraints and max_replicas_per_node', () => {
    const s = one(web(
      '    deploy:',
      '      placement:',
      '        constraints:',
      '          - node.labels.zone==eu',
      '          - "node.labels.disk != hdd"',
      '          - node.name == n1',
      '          - node.hostname==h1',
      '          - node.id!=abc',
      '        max_replicas_per_node: 1'
    ))
    assert.deepEqual(s.constraints, [
      { attribute: 'labels.zone', op: '==', value: 'eu' },
      { attribute: 'labels.disk', op: '!=', value: 'hdd' },
      { attribute: 'name', op: '==', value: 'n1' },
      { attribute: 'name', op: '==', value: 'h1' },
      { attribute: 'id', op: '!=', value: 'abc' }
    ])
    assert.equal(s.maxReplicasPerNode, 1)
  })

  test('placement errors', () => {
    const s = run(web('    deploy:', '      placement:', '        constraints: [node.role==manager, "node.labels.a=b", 3]'))
    expectError(s, 'services.web.deploy.placement.constraints[2]', 6, 62, 'must be a string, got 3')
    const r = run(web('    deploy:', '      placement:', '        constraints: [node.role==manager, "node.labels.a=b"]', '        max_replicas_per_node: -2', '        preferences: [{spread: node.labels.zone}]'))
    expectError(r, 'services.web.deploy.placement.constraints[0]', 6, 23, /unsupported constraint "node.role==manager"/)
    expectError(r, 'services.web.deploy.placement.constraints[1]', 6, 43, /unsupported constraint/)
    expectError(r, 'services.web.deploy.placement.max_replicas_per_node', 7, 32, 'must be a non-negative integer, got -2')
    assert.equal(issue(r, 'services.web.deploy.placement.preferences', 'warning').line, 8)
  })

  test('parseConstraint', () => {
    assert.deepEqual(parseConstraint('  node.labels.k.x  ==  v w '), { attribute: 'labels.k.x', op: '==', value: 'v w' })
    assert.equal(parseConstraint('node.labels.==x'), undefined)
    assert.equal(parseConstraint('node.name=='), undefined)
    assert.equal(parseConstraint('engine.labels.a==b'), undefined)
  })
})

describe('unsupported and unknown keys', () => {
  test('harmless keys are warnings at the key', () => {
    const r = run(web('    depends_on: [db]', '    container_name: web1', '    networks: [front]', '    logging: {driver: json-file}', '    hostname: w', '    deploy:', '      labels: {a: b}'))
    assert.deepEqual(errors(r), [])
    for (const [path, line] of [
      ['services.web.depends_on', 4],
      ['services.web.container_name', 5],
      ['services.web.networks', 6],
      ['services.web.logging', 7],
      ['services.web.hostname', 8],
      ['services.web.deploy.labels', 10]
    ] as const) {
      const w = issue(r, path, 'warning')
      assert.equal(w.line, line, path)
      assert.equal(w.col, path.includes('deploy') ? 7 : 5)
      assert.match(w.message, /^ignored: not supported yet/)
    }
    assert.equal(r.services.length, 1)
  })

  test('behaviour-changing keys are errors', () => {
    const r = run(web('    network_mode: host', '    ipc: host', '    security_opt: [no-new-privileges]'))
    const keys = ['network_mode', 'ipc', 'security_opt']
    keys.forEach((k, i) => expectError(r, `services.web.${k}`, 4 + i, 5, /^not supported yet: /))
  })

  test('host and privilege keys: read_only, privileged, cap_add, cap_drop, devices, pid: host', () => {
    const s = one(web('    read_only: true', '    privileged: "true"', '    cap_add: [net_admin, SYS_TIME]', '    cap_drop: [ALL]',
      '    devices: ["/dev/ttyUSB0", "/dev/fuse:/dev/fuse:rw", {source: /dev/snd, permissions: r}]', '    pid: host'))
    assert.equal(s.readOnly, true)
    assert.equal(s.privileged, true)
    assert.deepEqual(s.capAdd, ['NET_ADMIN', 'SYS_TIME'])
    assert.deepEqual(s.capDrop, ['ALL'])
    assert.deepEqual(s.devices, [
      { source: '/dev/ttyUSB0', target: '/dev/ttyUSB0', permissions: 'rwm' },
      { source: '/dev/fuse', target: '/dev/fuse', permissions: 'rw' },
      { source: '/dev/snd', target: '/dev/snd', permissions: 'r' }
    ])
    assert.equal(s.pid, 'host')
    const plain = one(web('    read_only: false', '    privileged: false', '    cap_add: []'))
    for (const k of ['readOnly', 'privileged', 'capAdd', 'capDrop', 'devices', 'pid'] as const) assert.equal(plain[k], undefined, k)
  })

  test('bad host and privilege values get one error at their place', () => {
    const r = run(web('    cap_add: ["NET ADMIN"]', '    devices: ["dev/fuse", "/dev/a:/dev/b:rwx", "/a:/b:/c:/d"]', '    pid: "service:db"', '    privileged: maybe'))
    expectError(r, 'services.web.cap_add[0]', 4, 15, /invalid capability "NET ADMIN"/)
    expectError(r, 'services.web.devices[0]', 5, 15, /device source must be an absolute path/)
    expectError(r, 'services.web.devices[1]', 5, 27, /invalid device permissions "rwx"/)
    expectError(r, 'services.web.devices[2]', 5, 48, /expected HOST_PATH/)
    expectError(r, 'services.web.pid', 6, 10, /only pid: host/)
    expectError(r, 'services.web.privileged', 7, 17, /must be true or false/)
  })

  test('build: a warning with an image, an error without', () => {
    const w = run(web('    build: .'))
    assert.equal(issue(w, 'services.web.build', 'warning').line, 4)
    assert.deepEqual(errors(w), [])
    const e = run(y('services:', '  web:', '    build: ./web'))
    expectError(e, 'services.web.build', 3, 5, /set image:/)
    assert.equal(e.issues.some((i) => i.path === 'services.web.image'), false, 'one error is enough')
  })

  test('unknown keys are errors; x-* anywhere and x-p2p-orch are ignored', () => {
    const r = run(y('x-top: {a: $UNSET}', 'version: "3.8"', 'bogus: 1', 'services:', '  web:', '    image: x', '    imagee: y', '    x-p2p-orch: {whatever: [1, 2]}', '    x-note: $ALSO_UNSET', '    deploy: {x-ext: 1, replicaz: 2}'))
    expectError(r, 'bogus', 3, 1, 'unknown key')
    expectError(r, 'services.web.imagee', 7, 5, 'unknown key')
    expectError(r, 'services.web.deploy.replicaz', 10, 24, 'unknown key')
    // the schema refuses the file: its support warnings (version:) are not reached
    assert.equal(r.issues.length, 3, JSON.stringify(r.issues))
    const ok = run(y('x-top: {a: $UNSET}', 'version: "3.8"', 'services:', '  web:', '    image: x', '    x-p2p-orch: {whatever: [1, 2]}', '    x-note: $ALSO_UNSET', '    deploy: {x-ext: 1}'))
    assert.equal(issue(ok, 'version', 'warning').line, 2)
    assert.equal(ok.issues.length, 1, JSON.stringify(ok.issues))
  })
})

describe('validation', () => {
  test('bad service names', () => {
    // the schema's name pattern first, then ours (no leading "-", at most 63 characters)
    expectError(run(y('services:', '  ok: {image: x}', '  "has space": {image: x}')), 'services.has space', 3, 3, /invalid service name "has space"/)
    const r = run(y('services:', '  ok: {image: x}', '  "-bad": {image: x}', `  ${'a'.repeat(64)}: {image: x}`))
    expectError(r, 'services.-bad', 3, 3, /invalid service name "-bad"/)
    expectError(r, `services.${'a'.repeat(64)}`, 4, 3, /invalid service name/)
  })

  test('missing or wrong image; service not a mapping', () => {
    const s = run(y('services:', '  b:', '    image: [x]', '  c: busybox'))
    expectError(s, 'services.b.image', 3, 12, 'must be a string, got a list')
    expectError(s, 'services.c', 4, 6, 'must be a mapping, got "busybox"')
    const r = run(y('services:', '  a:', '    command: x', '  d:', '    image: "bad image"'))
    expectError(r, 'services.a.image', 2, 3, 'required: every service needs an image')
    expectError(r, 'services.d.image', 5, 12, /invalid image reference/)
  })

  test('YAML syntax errors are issues with a location', () => {
    const r = run(y('services:', '  web:', '    image: x', '   bad: [1, 2'))
    assert.ok(errors(r).length >= 1)
    const first = errors(r)[0]
    assert.equal(first.path, '')
    assert.match(first.message, /^invalid YAML: /)
    assert.equal(typeof first.line, 'number')
    assert.deepEqual(r.services, [])
    assert.equal(r.stack, 'stack')
  })

  test('duplicate keys', () => {
    const r = run(y('services:', '  web: {image: x}', '  web: {image: y}'))
    expectError(r, '', 3, 3, 'duplicate key "web"')
  })

  test('empty file, comments only, no services, wrong top level', () => {
    for (const text of ['', '# nothing\n', '\n\n']) expectError(run(text), '', undefined, undefined, 'empty file: no services defined')
    expectError(run(y('name: x')), 'services', 1, 1, 'no services defined')
    expectError(run(y('name: x', 'services: {}')), 'services', 2, 1, 'no services defined')
    expectError(run(y('services:')), 'services', 1, 1, 'must be a mapping, got null')
    expectError(run(y('services: [a]')), 'services', 1, 11, 'must be a mapping, got a list')
    expectError(run(y('- a', '- b')), '', 1, 1, /top level must be a mapping/)
  })

  test('recursive aliases and unknown tags do not throw', () => {
    const r = run(y('services:', '  web: &w', '    image: x', '    labels: {self: *w}'))
    assert.ok(errors(r).length >= 1)
    const t = run(web('    user: !reset x'))
    assert.equal(t.services[0].user, 'x')
    assert.match(warnings(t)[0].message, /^YAML: /)
  })
})

describe('interpolation', () => {
  const cmd = (expr: string, variables: Record<string, string>): ComposeResult => run(web(`    command: ["${expr}"]`), { variables })

  test('forms', () => {
    const vars = { SET: 'v', EMPTY: '' }
    const cases: [string, string][] = [
      ['${SET}', 'v'],
      ['$SET', 'v'],
      ['$SET.x', 'v.x'],
      ['a${SET}b', 'avb'],
      ['${UNSET:-d}', 'd'],
      ['${EMPTY:-d}', 'd'],
      ['${EMPTY-d}', ''],
      ['${UNSET-d}', 'd'],
      ['${SET:-d}', 'v'],
      ['${UNSET:-${SET}}', 'v'],
      ['${UNSET:-a ${SET} b}', 'a v b'],
      ['${SET:+r}', 'r'],
      ['${EMPTY:+r}', ''],
      ['${EMPTY+r}', 'r'],
      ['${UNSET+r}', ''],
      ['$$', '$'],
      ['$${SET}', '${SET}'],
      ['$$$SET', '$v'],
      ['cost: 5$$', 'cost: 5$']
    ]
    for (const [expr, expected] of cases) {
      const r = cmd(expr, vars)
      assert.deepEqual(r.issues, [], expr)
      assert.deepEqual(r.services[0].command, [expected], expr)
    }
  })

  test('unset variable → empty string and a warning', () => {
    const r = cmd('x${NOPE}y$NOPE2', {})
    assert.deepEqual(r.services[0].command, ['xy'])
    const w = warnings(r)
    assert.deepEqual(w.map((i) => i.message), ['variable NOPE is not set; substituting an empty string', 'variable NOPE2 is not set; substituting an empty string'])
    assert.equal(w[0].path, 'services.web.command[0]')
    assert.equal(w[0].line, 4)
  })

  test(':? and ? are errors when the variable is missing', () => {
    expectError(cmd('${NEED:?set NEED please}', {}), 'services.web.command[0]', 4, 15, 'required variable NEED is not set: set NEED please')
    expectError(cmd('${NEED:?}', { NEED: '' }), 'services.web.command[0]', 4, 15, 'required variable NEED is empty')
    assert.deepEqual(errors(cmd('${NEED?}', { NEED: '' })), [])
  })

  test('invalid templates are errors', () => {
    for (const expr of ['${', '${1}', '${A:x}', '${}', '${ A}', '${A }', '${A!}']) {
      const r = cmd(expr, {})
      expectError(r, 'services.web.command[0]', 4, 15, /^invalid interpolation/)
    }
    // a $ that starts no name is kept, as in Compose (compose-go's TestUnescaped)
    for (const expr of ['$1', 'a $ b', 'x$', '^REGEX$', '$}']) assert.deepEqual(one(web(`    command: ["${expr}"]`)).command, [expr])
  })

  test('typed fields accept interpolated numbers; keys are not interpolated', () => {
    const s = one(web('    deploy: {replicas: "${N:-3}"}', '    labels: {"$KEY": "${VAL}"}', '    ports: ["${P}:80"]'), { variables: { VAL: 'v', P: '8080', KEY: 'k' } })
    assert.equal(s.replicas, 3)
    assert.deepEqual(s.labels, { $KEY: 'v' })
    assert.equal(s.ports[0].published, 8080)
  })

  test('variables are looked up as own properties only', () => {
    const r = cmd('${constructor}${toString:-d}', {})
    assert.deepEqual(r.services[0].command, ['d'])
  })
})

describe('stack name', () => {
  const text = y('name: from-file', 'services:', '  web: {image: x}')
  test('option, then name:, then the file base name', () => {
    assert.equal(run(text, { stackName: 'opt' }).stack, 'opt')
    assert.equal(run(text).stack, 'from-file')
    assert.equal(run(y('services:', '  web: {image: x}'), { fileName: '/a/b/My Stack.v2.yml' }).stack, 'mystackv2')
    assert.equal(run(y('services:', '  web: {image: x}'), { fileName: 'compose.yaml' }).stack, 'compose')
    assert.equal(run(y('name: ${PROJECT}', 'services:', '  web: {image: x}'), { variables: { PROJECT: 'p1' } }).stack, 'p1')
    assert.equal(run(text, { stackName: 'opt' }).services[0].stack, 'opt')
  })

  test('invalid explicit names are errors', () => {
    expectError(run(y('name: Bad_Name', 'services:', '  web: {image: x}')), 'name', 1, 7, /invalid stack name "Bad_Name"/)
    const r = run(text, { stackName: '-x' })
    assert.match(errors(r)[0].message, /invalid stack name "-x" \(from --name\)/)
    expectError(run(y('services:', '  web: {image: x}'), { fileName: '/x/-.yaml' }), '', 1, 1, /cannot derive a stack name/)
  })

  test('named volumes are prefixed with the stack', () => {
    const s = one(y('volumes: {data: }', 'services:', '  web: {image: x, volumes: ["data:/d"]}'), { stackName: 'prod' })
    assert.equal(s.mounts[0].source, 'prod_data')
  })
})

describe('helpers', () => {
  test('formatIssue', () => {
    const i: ComposeIssue = { severity: 'error', path: 'services.web.deploy.replicas', line: 12, col: 7, message: 'must be a non-negative integer, got "abc"' }
    assert.equal(formatIssue('stack.yaml', i), 'stack.yaml:12:7: error: services.web.deploy.replicas: must be a non-negative integer, got "abc"')
    assert.equal(formatIssue('s.yaml', { severity: 'warning', path: '', message: 'm' }), 's.yaml: warning: m')
    const r = run(web('    deploy:', '      replicas: abc'))
    assert.deepEqual(r.issues.map((x) => formatIssue('stack.yaml', x)), ['stack.yaml:5:17: error: services.web.deploy.replicas: must be a non-negative integer, got "abc"'])
  })

  test('parseDurationNs', () => {
    assert.equal(parseDurationNs('1m30s'), 90e9)
    assert.equal(parseDurationNs('500ms'), 500e6)
    assert.equal(parseDurationNs('1h2m3.5s'), 3723.5e9)
    assert.equal(parseDurationNs('10us'), 10e3)
    assert.equal(parseDurationNs('0'), 0)
    for (const bad of ['', '10', 's', '1d', '-1s', '1 s', '1.2.3s']) assert.equal(parseDurationNs(bad), undefined, bad)
  })

  test('parseBytes', () => {
    assert.equal(parseBytes('512M'), 512 * 1024 ** 2)
    assert.equal(parseBytes('1g'), 1024 ** 3)
    assert.equal(parseBytes('100k'), 102_400)
    assert.equal(parseBytes('1.5GB'), 1.5 * 1024 ** 3)
    assert.equal(parseBytes('10b'), 10)
    assert.equal(parseBytes('7'), 7)
    for (const bad of ['', 'M', '-1m', '1x', '1e3', '99999999999p']) assert.equal(parseBytes(bad), undefined, bad)
  })
})

describe('never throws', () => {
  const check = (r: ComposeResult): void => {
    assert.equal(typeof r.stack, 'string')
    assert.ok(Array.isArray(r.services))
    assert.ok(Array.isArray(r.issues))
    assert.ok(Array.isArray(r.envFilesNeeded))
    for (const i of r.issues) {
      assert.ok(i.severity === 'error' || i.severity === 'warning')
      assert.equal(typeof i.message, 'string')
      assert.equal(typeof formatIssue('f.yaml', i), 'string')
    }
  }

  test('arbitrary strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (text) => {
        check(translateCompose({ fileName: 'f.yaml', text }))
      }),
      { numRuns: 400 }
    )
  })

  test('arbitrary YAML-ish text made of compose tokens', () => {
    const token = fc.constantFrom('services:', 'web:', 'image: x', '  ', '    ', '\n', '- ', '"', "'", '[', ']', '{', '}', ',', ':', '&a ', '*a', '<<: ', '${X', '$$', '#', 'deploy:', 'replicas: -1', 'ports:', '"80:80"', 'volumes:', 'env_file: a.env', '!!binary ', '? ')
    fc.assert(
      fc.property(fc.array(token, { maxLength: 40 }), (parts) => {
        check(translateCompose({ fileName: 'f.yaml', text: parts.join('') }))
      }),
      { numRuns: 400 }
    )
  })

  test('arbitrary JSON-ish objects stringified as YAML', () => {
    const keys = fc.constantFrom(
      'services', 'volumes', 'name', 'web', 'image', 'command', 'entrypoint', 'environment', 'env_file', 'labels', 'ports', 'healthcheck',
      'test', 'interval', 'retries', 'disable', 'deploy', 'mode', 'replicas', 'resources', 'limits', 'reservations', 'cpus', 'memory',
      'restart_policy', 'condition', 'placement', 'constraints', 'max_replicas_per_node', 'user', 'working_dir', 'stop_signal',
      'stop_grace_period', 'restart', 'target', 'published', 'protocol', 'type', 'source', 'read_only', 'external', 'tmpfs', 'build',
      'x-p2p-orch', 'constructor', '__proto__', 'path', 'required'
    )
    const value = fc.letrec((tie) => ({
      node: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('80:80', '1g', '10s', 'global', 'node.name==a', '$X', '${Y:-1}', 'a=b'), fc.integer(), fc.double(), fc.boolean(), fc.constant(null)),
        fc.array(tie('node'), { maxLength: 4 }),
        fc.dictionary(fc.oneof(keys, fc.string({ maxLength: 6 })), tie('node'), { maxKeys: 5 })
      )
    })).node
    const doc = fc.oneof(value, fc.record({ services: fc.dictionary(fc.oneof(keys, fc.string({ maxLength: 6 })), value, { maxKeys: 3 }) }, { requiredKeys: [] }))
    fc.assert(
      fc.property(doc, fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 })), (obj, envFiles) => {
        let text: string
        try {
          text = stringify(obj)
        } catch {
          return
        }
        check(translateCompose({ fileName: 'f.yaml', text, envFiles, variables: { X: '1' } }))
      }),
      { numRuns: 400 }
    )
  })

  test('non-string input fields', () => {
    check(translateCompose({ fileName: undefined, text: 42, envFiles: 'x', variables: null } as unknown as ComposeInput))
  })
})
