import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { cp, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { pack } from '../../protocol/codec.ts'
import { decodeToken, encodeToken, type JoinToken } from '../../protocol/token.ts'
import { FILES, loadIdentity, type Identity } from '../../node/identity.ts'
import { LevelStore } from '../../node/store.ts'
import { credentialSigner, encodeCredential } from '../../protocol/credential.ts'
import { signRecord } from '../../protocol/sign.ts'
import { TempDirs, makeOperatorSigner } from '../helpers/cluster.ts'

const dirs = new TempDirs()
after(async () => { await dirs.cleanup() })

const peerOf = (i: Identity): string => peerIdFromPrivateKey(i.privateKey).toString()

/** The token a node of `i`'s cluster hands out; `withAdmin`: with the founding credential (`join-token --with-admin-key`). */
function tokenOf (i: Identity, withAdmin = false): string {
  const t: JoinToken = { clusterId: i.cluster.clusterId, networkKey: i.cluster.networkKey, seeds: ['/ip4/127.0.0.1/tcp/4001'], operator: i.cluster.operator }
  if (withAdmin && i.admin !== null) t.credential = encodeCredential(i.admin)
  return encodeToken(t)
}

async function expectError (p: Promise<unknown>, name: string, what: string, message?: RegExp): Promise<Error> {
  let threw: unknown
  try {
    await p
  } catch (err) {
    threw = err
  }
  assert.ok(threw !== undefined, `${what}: no error`)
  assert.equal((threw as Error).name, name, `${what}: ${(threw as Error).name}: ${(threw as Error).message}`)
  if (message !== undefined) assert.match((threw as Error).message, message)
  return threw as Error
}

const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777

/** Can this key still sign something its own public key verifies? */
async function keyWorks (i: Identity): Promise<boolean> {
  const msg = new TextEncoder().encode('probe')
  return await i.privateKey.publicKey.verify(msg, await i.privateKey.sign(msg))
}

describe('identity (data directory)', () => {
  it('creates a cluster with a founding admin credential it keeps nowhere in the data dir, then loads the same peer id and cluster', async () => {
    const dir = await dirs.make()
    const a = await loadIdentity(dir, undefined, [])
    assert.equal(a.created, true)
    assert.ok(a.admin !== null && credentialSigner(a.admin).id === a.cluster.operator)
    assert.equal(a.admin.clusterId, a.cluster.clusterId)
    for (const f of [FILES.nodeKey, FILES.cluster]) assert.equal(await mode(join(dir, f)), 0o600, `${f} mode`)
    assert.equal(existsSync(join(dir, FILES.operatorKey)), false, 'no operator key in the data dir')

    const b = await loadIdentity(dir, undefined, ['/ip4/10.0.0.9/tcp/1'])
    assert.equal(b.created, false)
    assert.equal(b.admin, null, 'a restart brings no credential')
    assert.equal(peerOf(b), peerOf(a))
    assert.equal(b.cluster.clusterId, a.cluster.clusterId)
    assert.deepEqual(b.cluster.networkKey, a.cluster.networkKey)
    assert.equal(b.cluster.operator, a.cluster.operator)
    assert.deepEqual(b.cluster.seeds, ['/ip4/10.0.0.9/tcp/1'])
    assert.ok(await keyWorks(b))
  })

  it('joins with a token, and keeps its peer id on every restart (with or without the token)', async () => {
    const first = await loadIdentity(await dirs.make(), undefined, [])
    const dir = await dirs.make()
    const token = tokenOf(first, true)
    const j = await loadIdentity(dir, token, [])
    assert.equal(j.created, false)
    assert.equal(j.cluster.clusterId, first.cluster.clusterId)
    assert.deepEqual(j.cluster.seeds, decodeToken(token).seeds)
    assert.ok(j.admin !== null && credentialSigner(j.admin).id === first.cluster.operator, 'a token made --with-admin-key brings the credential')
    assert.equal(existsSync(join(dir, FILES.operatorKey)), false)
    assert.notEqual(peerOf(j), peerOf(first))

    assert.equal(peerOf(await loadIdentity(dir, token, [])), peerOf(j))
    assert.equal(peerOf(await loadIdentity(dir, undefined, [])), peerOf(j))
  })

  it('joins with a default token, which carries no private key', async () => {
    const first = await loadIdentity(await dirs.make(), undefined, [])
    const token = tokenOf(first)
    assert.equal(decodeToken(token).credential, undefined)
    assert.equal(decodeToken(token).operatorKey, undefined)
    const j = await loadIdentity(await dirs.make(), token, [])
    assert.equal(j.admin, null)
    assert.equal(j.cluster.operator, first.cluster.operator)
  })

  it('an older full token (operator PEM) and an older data dir (operator.key) bring the founding credential, to be moved out', async () => {
    const op = makeOperatorSigner()
    const base = { clusterId: 'old-cluster', networkKey: new Uint8Array(32).fill(7), seeds: [], operator: op.id }
    const j = await loadIdentity(await dirs.make(), encodeToken({ ...base, operatorKey: op.pem }), [])
    assert.ok(j.admin !== null && credentialSigner(j.admin).id === op.id)
    const dir = await dirs.make()
    await loadIdentity(dir, encodeToken(base), [])
    await writeFile(join(dir, FILES.operatorKey), op.pem)
    const old = await loadIdentity(dir, undefined, [])
    assert.equal(old.legacyOperatorKey, true)
    assert.ok(old.admin !== null && credentialSigner(old.admin).id === op.id)
  })

  it('a token whose admin credential is not the founding key is refused', async () => {
    const first = await loadIdentity(await dirs.make(), undefined, [])
    const other = await loadIdentity(await dirs.make(), undefined, [])
    const t = decodeToken(tokenOf(first))
    const forged = encodeToken({ ...t, credential: encodeCredential({ ...other.admin!, clusterId: first.cluster.clusterId }) })
    await expectError(loadIdentity(await dirs.make(), forged, []), 'TokenError', 'foreign admin key', /founding key/)
  })

  it('refuses a join token for another cluster on an existing data dir, and leaves it untouched', async () => {
    const dir = await dirs.make()
    const mine = await loadIdentity(dir, undefined, [])
    const clusterJson = await readFile(join(dir, FILES.cluster), 'utf8')
    const other = await loadIdentity(await dirs.make(), undefined, [])
    await expectError(loadIdentity(dir, tokenOf(other), []), 'DataDirError', 'token of another cluster', /belongs to cluster/)
    assert.equal(await readFile(join(dir, FILES.cluster), 'utf8'), clusterJson)
    assert.equal(peerOf(await loadIdentity(dir, undefined, [])), peerOf(mine))
  })

  it('refuses an unreadable token with TokenError before creating any identity', async () => {
    const dir = join(await dirs.make(), 'sub')
    await expectError(loadIdentity(dir, 'p2porch1.garbage.0000000000000000', []), 'TokenError', 'corrupt token')
    for (const f of [FILES.nodeKey, FILES.cluster, FILES.operatorKey]) assert.equal(existsSync(join(dir, f)), false, `${f} was written`)
  })

  describe('a corrupt node.key is a DataDirError, never a new identity', () => {
    const corruptions: Array<[string, (orig: Buffer) => Uint8Array]> = [
      ['empty file', () => new Uint8Array(0)],
      ['text', () => new TextEncoder().encode('not a key\n')],
      ['truncated', (o) => o.subarray(0, o.length - 20)],
      ['only the header', (o) => o.subarray(0, 4)],
      ['unknown key type', (o) => { const b = Buffer.from(o); b[1] = 0x07; return b }],
      ['another key type (secp256k1)', (o) => { const b = Buffer.from(o); b[1] = 0x02; return b }],
      ['random bytes', () => new Uint8Array(68).map((_, i) => (i * 73 + 11) & 0xff)],
      ['a protobuf with no key data', () => new Uint8Array([0x08, 0x01])]
    ]
    for (const [what, corrupt] of corruptions) {
      it(what, async () => {
        const dir = await dirs.make()
        await loadIdentity(dir, undefined, [])
        const path = join(dir, FILES.nodeKey)
        const bad = corrupt(await readFile(path))
        await writeFile(path, bad)
        await expectError(loadIdentity(dir, undefined, []), 'DataDirError', what, /node\.key is corrupt/)
        assert.deepEqual(new Uint8Array(await readFile(path)), new Uint8Array(bad), 'the corrupt file was replaced')
      })
    }

    it('a flipped bit anywhere in node.key: DataDirError, or the same peer id with a key that still signs', async () => {
      const base = await dirs.make()
      const orig = await loadIdentity(base, undefined, [])
      const bytes = await readFile(join(base, FILES.nodeKey))
      const silent: string[] = []
      for (let i = 0; i < bytes.length; i++) {
        const dir = await dirs.make()
        await cp(base, dir, { recursive: true })
        const b = Buffer.from(bytes)
        b[i] ^= 0x01
        await writeFile(join(dir, FILES.nodeKey), b)
        let loaded: Identity
        try {
          loaded = await loadIdentity(dir, undefined, [])
        } catch (err) {
          assert.equal((err as Error).name, 'DataDirError', `byte ${i}: ${(err as Error).message}`)
          continue
        }
        if (peerOf(loaded) !== peerOf(orig)) silent.push(`byte ${i}: loaded as a NEW peer id`)
        else if (!(await keyWorks(loaded))) silent.push(`byte ${i}: same peer id, but its signatures do not verify`)
      }
      const shown = silent.length > 6 ? [...silent.slice(0, 3), '…', ...silent.slice(-3)] : silent
      assert.equal(silent.length, 0, `${silent.length} of ${bytes.length} single-bit corruptions of node.key were accepted:\n${shown.join('\n')}`)
    })
  })

  it('a corrupt cluster.json is a DataDirError', async () => {
    for (const text of ['{', '{}', JSON.stringify({ clusterId: 'x', networkKey: 'abcd', operator: 'op:1', seeds: [] }), 'null']) {
      const dir = await dirs.make()
      await loadIdentity(dir, undefined, [])
      await writeFile(join(dir, FILES.cluster), text)
      await expectError(loadIdentity(dir, undefined, []), 'DataDirError', `cluster.json = ${text}`, /cluster\.json is corrupt/)
    }
  })

  it('a corrupt operator.key is a DataDirError; another cluster\'s operator key is refused', async () => {
    const dir = await dirs.make()
    await loadIdentity(dir, undefined, [])
    await writeFile(join(dir, FILES.operatorKey), '-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n')
    await expectError(loadIdentity(dir, undefined, []), 'DataDirError', 'corrupt operator.key')
    await writeFile(join(dir, FILES.operatorKey), makeOperatorSigner().pem)
    await expectError(loadIdentity(dir, undefined, []), 'UserError', 'foreign operator.key', /not this cluster's operator key/)
  })
})

describe('LevelStore', () => {
  it('refuses a directory that is already open, with a DataDirError saying it is in use', async () => {
    const dir = await dirs.make()
    const a = new LevelStore(join(dir, FILES.db))
    await a.open()
    try {
      const b = new LevelStore(join(dir, FILES.db))
      await expectError(b.open(), 'DataDirError', 'second open of the same store', /in use/)
    } finally {
      await a.close()
    }
    const c = new LevelStore(join(dir, FILES.db))
    await c.open()
    await c.close()
  })

  it('persists records and meta across close and reopen', async () => {
    const dir = await dirs.make()
    const op = makeOperatorSigner()
    const recs = ['web', 'db', 'api'].map((s, i) => signRecord('c', op, `scale/${s}`, [i + 1, 0], pack({ replicas: i })))
    const a = new LevelStore(join(dir, FILES.db))
    await a.open()
    for (const r of recs) a.putRecord(r)
    a.deleteRecord('scale/db')
    await a.putMeta('incarnation', 7)
    await a.close()

    const b = new LevelStore(join(dir, FILES.db))
    await b.open()
    try {
      const back = (await b.loadRecords()).sort((x, y) => (x.k < y.k ? -1 : 1))
      assert.deepEqual(back.map((r) => r.k), ['scale/api', 'scale/web'])
      const plain = (r: typeof recs[0]): unknown => ({ ...r, p: new Uint8Array(r.p), s: new Uint8Array(r.s) })
      assert.deepEqual(plain(back[1]), plain(recs[0]))
      assert.equal(await b.getMeta<number>('incarnation'), 7)
      assert.equal(await b.getMeta('missing'), undefined)
    } finally {
      await b.close()
    }
  })
})
