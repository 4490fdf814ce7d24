/**
 * Network key rotation over real libp2p TCP, 3 in-process nodes: the keyring protector speaks
 * pnet's wire format with several keys; install → use → remove moves every node and every
 * connection to the new key with no node ever cut off; a node with the old key cannot connect
 * afterwards; a restart dials with the key it was using.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { key, NETKEY_PRIMARY } from '../../protocol/keys.ts'
import { createHost } from '../../node/host.ts'
import { networkKeyFingerprint, networkKeyId, NetworkKeyring } from '../../node/network-keyring.ts'
import type { P2pNode } from '../../node/node.ts'
import { adminSigner, converged, describeCluster, LOOPBACK_LISTEN, membersWith, startNode, stopAll, TempDirs, waitFor } from '../helpers/cluster.ts'

describe('network key rotation', { timeout: 60_000 }, () => {
  const dirs = new TempDirs()
  const nodes: P2pNode[] = []
  const dataDirs: string[] = []
  const ids = (): string[] => nodes.map((n) => n.id)
  let oldKey: Uint8Array
  let newKey: Uint8Array

  before(async () => {
    for (let i = 0; i < 3; i++) dataDirs.push(await dirs.make())
    nodes.push(await startNode({ dataDir: dataDirs[0], name: 'k0' }))
    const token = nodes[0].joinToken(true)
    for (const i of [1, 2]) nodes.push(await startNode({ dataDir: dataDirs[i], name: `k${i}`, join: token }))
    await waitFor(() => converged(nodes, ids()), 15_000, () => describeCluster(nodes))
    oldKey = new Uint8Array(nodes[0].keyring.primary)
  })
  after(async () => {
    await stopAll(nodes)
    await dirs.cleanup()
  })

  it('the keyring protector accepts any installed key and dials with the primary', async () => {
    const k1 = new Uint8Array(randomBytes(32))
    const k2 = new Uint8Array(randomBytes(32))
    const listener = new NetworkKeyring(k1, [k2])
    const hosts = await Promise.all([listener, new NetworkKeyring(k2), new NetworkKeyring(k1), new NetworkKeyring(new Uint8Array(randomBytes(32)))]
      .map(async (ring) => await createHost({ privateKey: await generateKeyPair('Ed25519'), networkKey: ring, listen: LOOPBACK_LISTEN })))
    try {
      for (const h of hosts) await h.start()
      const addr = hosts[0].getMultiaddrs()[0]
      await hosts[1].dial(addr)
      await hosts[2].dial(addr)
      await assert.rejects(hosts[3].dial(multiaddr(addr.toString())))
      assert.deepEqual([...listener.connectionsByKey()].sort(), [[networkKeyId(k1), 1], [networkKeyId(k2), 1]].sort())
      listener.remove(networkKeyId(k2))
      await waitFor(() => hosts[1].getConnections().length === 0, 5_000, 'the k2 connection to close')
      assert.equal(hosts[2].getConnections().length, 1, 'the k1 connection stays')
    } finally {
      await Promise.all(hosts.map(async (h) => { await h.stop() }))
    }
  })

  it('install → use → remove: every node and every connection ends on the new key, none is ever cut off', async () => {
    const op = adminSigner(nodes[0])
    newKey = new Uint8Array(randomBytes(32))
    const id = networkKeyId(newKey)
    const oldId = networkKeyId(oldKey)
    let cutOff = ''
    const watch = setInterval(() => {
      // cut off = declared dead; a passing suspicion on a loaded machine (tests run in parallel) is not
      for (const n of nodes) if (membersWith(n, 'dead').length > 0) cutOff ||= `${n.name} sees ${membersWith(n, 'dead').length} dead`
    }, 50)
    try {
      nodes[0].states.write(key.netkey(id), { fingerprint: networkKeyFingerprint(newKey), stage: 'install' }, op)
      nodes[0].networkKeys.adopt(id, newKey)
      await waitFor(() => nodes.every((n) => n.keyring.has(id)), 15_000, () => `installed: ${nodes.filter((n) => n.keyring.has(id)).map((n) => n.name).join(',')}`)
      nodes[1].states.write(key.netkey(NETKEY_PRIMARY), { keyId: id }, op)
      await waitFor(() => nodes.every((n) => n.keyring.primaryKeyId === id), 10_000, 'every node to dial with the new key')
      nodes[2].states.write(key.netkey(oldId), { fingerprint: networkKeyFingerprint(oldKey), stage: 'remove' }, op)
      await waitFor(() => nodes.every((n) => !n.keyring.has(oldId) && (n.keyring.connectionsByKey().get(oldId) ?? 0) === 0), 10_000, 'the old key to go')
      await waitFor(() => converged(nodes, ids()) && nodes.every((n) => [...n.keyring.connectionsByKey().keys()].every((k) => k === id) &&
        nodes.every((m) => m === n || n.host.getConnections(m.host.peerId).length > 0)), 15_000,
        () => `connections by key: ${nodes.map((n) => JSON.stringify([...n.keyring.connectionsByKey()])).join(' ')}`)
    } finally {
      clearInterval(watch)
    }
    assert.equal(cutOff, '', cutOff)
    // no share of the key is left in the state: each node withdrew its own once installed
    await waitFor(() => nodes[0].states.state.family('share').every(([, v]) => v === null), 5_000, 'the shares to be withdrawn')
  })

  it('a node with the old key cannot connect; a restarted node dials with the new key', async () => {
    const stranger = await createHost({ privateKey: await generateKeyPair('Ed25519'), networkKey: oldKey, listen: LOOPBACK_LISTEN })
    await stranger.start()
    try {
      await assert.rejects(stranger.dial(nodes[0].host.getMultiaddrs()[0]))
    } finally {
      await stranger.stop()
    }
    await nodes[2].stop()
    nodes[2] = await startNode({ dataDir: dataDirs[2], name: 'k2' })
    assert.equal(nodes[2].keyring.primaryKeyId, networkKeyId(newKey))
    assert.equal(nodes[2].keyring.has(networkKeyId(oldKey)), false)
    await waitFor(() => converged(nodes, ids()), 15_000, () => describeCluster(nodes))
  })
})
