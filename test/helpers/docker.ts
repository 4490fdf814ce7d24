/**
 * The Docker CLI, for tests that check results independently of our own API, and cleanup of what
 * a test's nodes leave on the engine (containers, and the per-node mesh networks).
 */
import { execFile } from 'node:child_process'
import { request } from 'node:http'
import { promisify } from 'node:util'

const exec = promisify(execFile)

export async function docker (...args: string[]): Promise<string> {
  const { stdout } = await exec('docker', args, { maxBuffer: 16 * 1024 * 1024 })
  return stdout.trim()
}

export interface DockerReplica { id: string, name: string, node: string, ports: string }

/** Running containers of a service that belong to the given nodes, as `docker ps` reports them. */
export async function dockerReplicas (service: string, nodeIds: readonly string[]): Promise<DockerReplica[]> {
  const out = await docker('ps', '--filter', `label=p2p-orch.service=${service}`, '--format', '{{.ID}}\t{{.Names}}\t{{.Label "p2p-orch.node"}}\t{{.Ports}}')
  const all = out === '' ? [] : out.split('\n').map((l) => { const [id, name, node, ports] = l.split('\t'); return { id, name, node, ports } })
  return all.filter((r) => nodeIds.includes(r.node))
}

/** Remove every container and network labelled with one of these node ids (after a test). */
export async function removeNodeArtifacts (nodeIds: readonly string[]): Promise<void> {
  for (const id of nodeIds) {
    const containers = await docker('ps', '-aq', '--filter', `label=p2p-orch.node=${id}`).catch(() => '')
    if (containers !== '') await docker('rm', '-f', ...containers.split('\n')).catch(() => '')
    const networks = await docker('network', 'ls', '-q', '--filter', `label=p2p-orch.node=${id}`).catch(() => '')
    for (const n of networks === '' ? [] : networks.split('\n')) await docker('network', 'rm', n).catch(() => '')
  }
}

/** One HTTP GET on a fresh connection (no keep-alive, so every request is a new mesh connection). */
export function httpGet (url: string, timeoutMs = 5_000): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers: { connection: 'close' }, timeout: timeoutMs }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error(`GET ${url} timed out after ${timeoutMs} ms`)) })
    req.on('error', reject)
    req.end()
  })
}
