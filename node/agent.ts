/**
 * The long-running agent process: starts a node, prints how to join, and stops gracefully on
 * SIGTERM/SIGINT (announcing `left`). A second signal exits at once.
 */
import { createNode, type NodeOptions } from './node.ts'

/** A repeated stop signal within this gap is treated as the same request. */
const SECOND_SIGNAL_MIN_GAP_MS = 1000

export async function runAgent (opts: NodeOptions, print: (line: string) => void): Promise<void> {
  const node = await createNode(opts)
  if (node.identity.created) print(`Created a new cluster. Cluster id: ${node.identity.cluster.clusterId}`)
  const cred = node.credential
  if (cred !== null && cred.added) {
    // said once: the next start finds the entry already there
    print(`The cluster's admin credential (key "${cred.name}") is in ${cred.path} (0600); p2p-orch commands run by this user sign with it.`)
    if (node.identity.legacyOperatorKey) print(`${opts.dataDir}/operator.key is no longer used by the agent: the key now lives in ${cred.path}; delete operator.key.`)
    print('Give other people their own keys: p2p-orch key create NAME --role admin|deployer|viewer')
  }
  // The token holds the cluster's network key: printed once, when the cluster is created, not at
  // every start of every node (where it would end up in every journal).
  if (node.identity.created) {
    print('To add a node to this cluster, run on it:')
    print(`  p2p-orch agent --data DIR --join ${node.joinToken(true)}`)
    print('(It admits nodes until you run `p2p-orch join-token --rotate`; `p2p-orch join-token` makes another.)')
  }
  let stoppingSince = 0
  const stop = (signal: string): void => {
    // Some supervisors (timeout(1), process-group kills) deliver one stop twice in a row;
    // only a second signal sent deliberately later means "exit now".
    if (stoppingSince > 0 && Date.now() - stoppingSince < SECOND_SIGNAL_MIN_GAP_MS) return
    if (stoppingSince > 0) {
      node.logger.warn('second signal: exiting now')
      process.exit(1)
    }
    stoppingSince = Date.now()
    node.logger.info({ signal }, 'stopping: announcing leave')
    node.stop().then(() => process.exit(0), (err) => {
      node.logger.error({ err }, 'error while stopping')
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}
