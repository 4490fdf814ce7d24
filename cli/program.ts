/**
 * The `p2p-orch` program: parses arguments (commander), talks to a node's control API, and maps
 * every failure to a message and exit code in one place (errors.ts). Loaded by main.js.
 */
import { Command, CommanderError } from 'commander'
import { VERSION } from '../node/version.ts'
import { registerClusterCommands } from './commands-cluster.ts'
import { registerKeyCommands } from './commands-keys.ts'
import { registerSecretCommands } from './commands-secrets.ts'
import { registerNetworkKeyCommands } from './commands-network-keys.ts'
import { registerServiceCommands } from './commands-services.ts'
import { registerRolloutCommands } from './commands-rollouts.ts'
import type { GlobalOptions } from './context.ts'
import { report } from './errors.ts'

const program = new Command()
program.name('p2p-orch')
  .description('decentralized container orchestrator: every node equal, no manager, no quorum')
  .version(VERSION)
  .option('--data <dir>', 'the local node\'s data directory (or P2P_ORCH_DATA)')
  .option('--api <socket|url>', 'talk to the node at this control socket, or at https://HOST:PORT (with P2P_ORCH_API_TOKEN) instead')
  .option('--json', 'machine-readable output')
  .option('--key <file>', 'sign changes with the credential in this file (or P2P_ORCH_KEY; default: the user\'s ~/.config/p2p-orch/credentials.json)')
  .showHelpAfterError('(run `p2p-orch --help` for usage)')
  .exitOverride()

const globals = (): GlobalOptions => program.opts<GlobalOptions>()
registerClusterCommands(program, globals)
registerServiceCommands(program, globals)
registerRolloutCommands(program, globals)
registerKeyCommands(program, globals)
registerSecretCommands(program, globals)
registerNetworkKeyCommands(program, globals)

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help' ? 0 : 2)
  process.exitCode = report(err)
}
