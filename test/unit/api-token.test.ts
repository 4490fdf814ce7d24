/**
 * The TCP control API's token and certificate on temp dirs: the token format, the files the agent
 * keeps (modes, stable across restarts), an older version's plain token replaced, rotation, and
 * a corrupt key refused.
 */
import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { API_TOKEN_PREFIX, decodeApiToken, encodeApiToken, pinOf } from '../../node/api/api-token.ts'
import { ApiAccess } from '../../node/api-access.ts'

const dirs: string[] = []
async function tempDir (): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'p2p-orch-apitoken-'))
  dirs.push(d)
  return d
}
after(async () => { await Promise.all(dirs.map(async (d) => { await rm(d, { recursive: true, force: true }) })) })

const load = async (dir: string): Promise<{ access: ApiAccess, replaced: boolean }> => await ApiAccess.load({ dir, url: 'https://127.0.0.1:1', subject: 'test' })
const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777

describe('API token format', () => {
  const pin = 'ab'.repeat(32)

  it('round-trips, ignoring surrounding whitespace', () => {
    const t = { secret: 'A-b_c'.repeat(8), pin }
    const text = encodeApiToken(t)
    assert.ok(text.startsWith(`${API_TOKEN_PREFIX}.`))
    assert.deepEqual(decodeApiToken(` ${text}\n`), t)
  })

  it('refuses what is not a token: older plain tokens, wrong prefix, bad pin or secret', () => {
    for (const bad of ['', 'abcdefghijklmnopqrstuvwxyz012345', `p2porchapi2.${'a'.repeat(43)}.${pin}`, `${API_TOKEN_PREFIX}.${'a'.repeat(43)}.${pin.slice(1)}`,
      `${API_TOKEN_PREFIX}.${'a'.repeat(43)}.${pin.toUpperCase()}`, `${API_TOKEN_PREFIX}.short.${pin}`, `${API_TOKEN_PREFIX}.${'a'.repeat(43)}.${pin}.x`, `${API_TOKEN_PREFIX}.a+b/${'a'.repeat(40)}.${pin}`]) {
      assert.equal(decodeApiToken(bad), null, bad)
    }
  })

  it('a pin is Node\'s fingerprint256 without colons, in lowercase', () => {
    assert.equal(pinOf('AB:CD:0F'), 'abcd0f')
  })
})

describe('API key, certificate and token in the data directory', () => {
  it('made on first use (key and token 0600), the same on every later load', async () => {
    const dir = await tempDir()
    const first = await load(dir)
    assert.equal(first.replaced, false)
    assert.equal(await mode(join(dir, 'api.key')), 0o600)
    assert.equal(await mode(join(dir, 'api.token')), 0o600)
    const cert = new X509Certificate(await readFile(join(dir, 'api.crt')))
    assert.equal(first.access.cert.pin, pinOf(cert.fingerprint256))
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
    assert.ok(cert.checkPrivateKey(createPrivateKey(first.access.cert.keyPem)))
    const token = (await readFile(join(dir, 'api.token'), 'utf8')).trim()
    assert.equal(token, first.access.token())
    assert.deepEqual(decodeApiToken(token), { secret: first.access.secret(), pin: first.access.cert.pin })

    const again = await load(dir)
    assert.equal(again.access.token(), token)
    assert.equal(again.access.cert.certPem, first.access.cert.certPem)
  })

  it('an older version\'s plain token is replaced by a new one', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, 'api.token'), 'oldplaintoken0123456789abcdefgh\n', { mode: 0o600 })
    const { access, replaced } = await load(dir)
    assert.equal(replaced, true)
    assert.equal((await readFile(join(dir, 'api.token'), 'utf8')).trim(), access.token())
    assert.notEqual(access.secret(), 'oldplaintoken0123456789abcdefgh')
  })

  it('a new certificate keeps the secret and puts the new pin in the token', async () => {
    const dir = await tempDir()
    const first = (await load(dir)).access
    await rm(join(dir, 'api.crt'))
    const second = (await load(dir)).access
    assert.notEqual(second.cert.pin, first.cert.pin)
    assert.equal(second.secret(), first.secret())
    assert.equal(decodeApiToken(await readFile(join(dir, 'api.token'), 'utf8'))?.pin, second.cert.pin)
  })

  it('rotate writes a new secret to api.token and puts it in force; concurrent rotations each get their own', async () => {
    const dir = await tempDir()
    let rotations = 0
    const { access } = await ApiAccess.load({ dir, url: 'https://127.0.0.1:1', subject: 'test', onRotate: () => { rotations++ } })
    const before = access.token()
    const after = await access.rotate()
    assert.notEqual(after, before)
    assert.equal(access.token(), after)
    assert.equal((await readFile(join(dir, 'api.token'), 'utf8')).trim(), after)
    assert.equal(await mode(join(dir, 'api.token')), 0o600)
    const many = await Promise.all([access.rotate(), access.rotate(), access.rotate()])
    assert.equal(new Set(many).size, 3)
    assert.equal((await readFile(join(dir, 'api.token'), 'utf8')).trim(), access.token())
    assert.equal(access.token(), many[2])
    assert.equal(rotations, 4)
  })

  it('a corrupt or mismatched key is an error, never silently a new certificate', async () => {
    const dir = await tempDir()
    await load(dir)
    const other = await tempDir()
    await load(other)
    await writeFile(join(dir, 'api.key'), await readFile(join(other, 'api.key')))
    await assert.rejects(load(dir), { name: 'DataDirError' })
    await writeFile(join(dir, 'api.key'), 'not a key')
    await assert.rejects(load(dir), { name: 'DataDirError' })
  })
})
