/**
 * dockerode's SSH transport and BuildKit session load on first use, not at import
 * (node/runtime/defer-dockerode-extras.ts), and still work when used.
 */
import assert from 'node:assert/strict'
import { Agent } from 'node:http'
import { createRequire } from 'node:module'
import { describe, it } from 'node:test'
import '../../node/runtime/docker.ts'

const require = createRequire(import.meta.url)
const loaded = (pattern: RegExp): string[] => Object.keys(require.cache).filter((k) => pattern.test(k))

describe('dockerode extras are deferred', () => {
  it('importing the Docker runtime loads dockerode but neither ssh2 nor gRPC', () => {
    assert.ok(loaded(/node_modules\/dockerode\//).length > 0, 'dockerode itself is loaded')
    assert.deepEqual(loaded(/node_modules\/(ssh2|@grpc|protobufjs)\//), [])
  })

  it('docker-modem got the SSH stand-in, which loads the real transport on first use', () => {
    const modem = require.cache[require.resolve('docker-modem/lib/modem.js')]
    assert.ok(modem?.children.some((c) => c.filename.endsWith('/deferred/ssh.cjs')), 'modem.js required the stand-in')
    const ssh = require('../../node/runtime/deferred/ssh.cjs') as (o: object) => unknown
    assert.ok(ssh({ host: '127.0.0.1', port: 1 }) instanceof Agent)
    assert.ok(loaded(/node_modules\/ssh2\//).length > 0, 'ssh2 loaded once used')
  })

  it('the session stand-in forwards to dockerode\'s session module', () => {
    const docker = require.cache[require.resolve('dockerode/lib/docker.js')]
    assert.ok(docker?.children.some((c) => c.filename.endsWith('/deferred/session.cjs')), 'docker.js required the stand-in')
    const withSession = require('../../node/runtime/deferred/session.cjs') as (...a: unknown[]) => unknown
    assert.equal(typeof withSession, 'function')
    const real = createRequire(require.resolve('dockerode'))('./session.js') as (...a: unknown[]) => unknown
    assert.equal(typeof real, 'function')
    assert.ok(loaded(/node_modules\/@grpc\/grpc-js\//).length > 0)
  })
})
